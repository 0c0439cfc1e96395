/* Run configuration: an INI file (inih) plus --set section.key=value overrides.
 * Every key is checked when read (type and range); an error names the file and line (or the
 * --set argument) and the expected form. Unknown sections and keys are errors. The keys, their
 * defaults and meaning are listed in the README ("Train") and in `ropex train --help`.
 */
#ifndef ROPEX_CONFIG_H
#define ROPEX_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../model/model.h"

#define CONFIG_MAX_ENTRIES 256
#define CONFIG_PATH_MAX 1024

typedef struct {
    char key[64];
    char *value;          /* owned */
    char origin[300];     /* "file:line" or "--set ARG" */
    int append;           /* INI continuation line of a list */
} ConfigEntry;

typedef struct {
    char source[CONFIG_PATH_MAX];   /* the config file read, if any */
    /* [model] */
    char model_init[CONFIG_PATH_MAX];   /* CHECKPOINT.h5, hf:DIR or llama2c:FILE */
    char model_preset[64];              /* or a built-in shape, trained from scratch */
    char model_origin[300];
    int64_t vocab_size, hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
        intermediate_size, tie_word_embeddings;   /* preset overrides; -1 = the preset's */
    int64_t init_seed;
    double init_std;
    /* [rope]: entries in order, replayed onto the model's rope config */
    ConfigEntry rope[CONFIG_MAX_ENTRIES];
    int n_rope;
    /* [data] */
    char data_dir[CONFIG_PATH_MAX], data_mix[1024], whole_docs[1024], short_mix[1024];
    int64_t seq_len, upsample_below, eval_sequences;
    int64_t short_seq_len, short_steps;   /* sequence-length warmup: 0 = off */
    int64_t pose_len;                     /* rows shorter than this take skip-wise positions: 0 = off */
    double upsample_keep;
    int64_t add_bos, doc_mask;
    char on_corrupt[16];
    /* [optim] */
    double lr, warmup_start, min_lr_ratio, beta1, beta2, eps, weight_decay, grad_clip;
    int64_t warmup_steps, decay_steps, decay_embeddings, decay_norms;
    char schedule[16];
    /* [train] */
    int64_t steps, micro_batch, grad_accum, save_every, keep_last, eval_every, seed, threads,
        max_bad_steps;
    char out_dir[CONFIG_PATH_MAX], recompute[16];
} RunConfig;

void config_init(RunConfig *rc);   /* every default */
void config_free(RunConfig *rc);
/* Reads an INI file. Returns 0, or -1 with "FILE:LINE: message" in err. */
int config_load(RunConfig *rc, const char *path, char *err, size_t errlen);
/* Reads INI text (a checkpoint's stored config); origin names it in messages. */
int config_load_string(RunConfig *rc, const char *text, const char *origin, char *err, size_t errlen);
/* Applies "section.key=value". Returns 0, or -1 with "--set ARG: message" in err. */
int config_set(RunConfig *rc, const char *assignment, char *err, size_t errlen);
/* Checks the keys a training run needs (data.dir, data.seq_len, train.steps, train.out_dir). */
int config_check_train(const RunConfig *rc, char *err, size_t errlen);
/* The model's configuration: from [model] (preset, checkpoint, hf:DIR, llama2c:FILE), then the
 * [rope] keys on top. */
int config_model(const RunConfig *rc, ModelConfig *out, char *err, size_t errlen);
/* The resolved configuration as INI text (malloc'd): what a checkpoint stores. */
char *config_to_ini(const RunConfig *rc);
/* The first key a resumed run may not change (model, rope, data, seed, batch) that differs
 * between a and b: 0 if none, else -1 with "section.key: was X, now Y" in err. */
int config_diff_frozen(const RunConfig *saved, const RunConfig *now, char *err, size_t errlen);

/* Every key with its default and meaning (for --help and the README). */
void config_print_keys(FILE *f);

#endif
