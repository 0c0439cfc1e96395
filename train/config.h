/* Run configuration: an INI file (inih) plus --set section.key=value overrides.
 * Every key is checked when read; an error names the file and line (or the --set argument).
 * Sections today: [model] (where the weights and shape come from) and [rope] (the scaled RoPE,
 * Hugging Face rope_scaling key names). */
#ifndef ROPEX_CONFIG_H
#define ROPEX_CONFIG_H

#include <stddef.h>

#include "../model/model.h"

#define CONFIG_MAX_ENTRIES 256
#define CONFIG_VALUE_MAX 8192

typedef struct {
    char section[32];
    char key[64];
    char *value;          /* owned */
    char origin[300];     /* "file:line" or "--set ARG" */
    int append;           /* INI continuation line of a list */
} ConfigEntry;

typedef struct {
    char source[1024];       /* the config file read, if any */
    char model_init[1024];   /* [model] init: CHECKPOINT.h5, hf:DIR or llama2c:FILE */
    char model_preset[64];   /* [model] preset: tiny, smollm-135m, tinyllama-1.1b */
    char model_origin[300];
    ConfigEntry rope[CONFIG_MAX_ENTRIES];   /* [rope] keys in order, replayed onto the model's rope */
    int n_rope;
} RunConfig;

void config_init(RunConfig *rc);
void config_free(RunConfig *rc);
/* Reads an INI file. Returns 0, or -1 with "FILE:LINE: message" in err. */
int config_load(RunConfig *rc, const char *path, char *err, size_t errlen);
/* Applies "section.key=value". Returns 0, or -1 with "--set ARG: message" in err. */
int config_set(RunConfig *rc, const char *assignment, char *err, size_t errlen);
/* The model's configuration: from [model] (preset, checkpoint, hf:DIR, llama2c:FILE), then the
 * [rope] keys on top. */
int config_model(const RunConfig *rc, ModelConfig *out, char *err, size_t errlen);

#endif
