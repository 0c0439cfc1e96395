/* Checkpoint formats: ropex's HDF5 file (weights, optimizer moments, training state, tokenizer
 * files), Hugging Face directories (config.json + safetensors, single or sharded), and llama2.c
 * .bin files. Layout of the HDF5 file (../shared/DESIGN.md, decision 5):
 *   /                attrs format = "ropex", version
 *   /config          attrs: model dimensions and every [rope] key under its HF name
 *   /model/<name>    float32 datasets, HF tensor names
 *   /optim/m/<name>, /optim/v/<name>   AdamW moments (training checkpoints only)
 *   /state           attrs step, tokens_seen, rng_state, world_size; datasets data_cursor
 *                    (opaque bytes) and config.ini (the resolved run config)
 *   /tokenizer/<file> the tokenizer files given at import, as bytes, copied out at export
 * Saving writes PATH.tmp, flushes and fsyncs it, renames it over PATH and fsyncs the directory:
 * a crash leaves either the old file or the new one under PATH, never a part.
 * Every reader checks sizes and offsets against the file before using them.
 */
#ifndef ROPEX_CKPT_H
#define ROPEX_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define CKPT_FORMAT "ropex"
#define CKPT_VERSION 1

typedef struct {
    int64_t step;
    int64_t tokens_seen;
    uint64_t rng_state;
    int64_t world_size;
    uint8_t *data_cursor; size_t data_cursor_len;   /* opaque, owned */
    char *config_text;                              /* resolved run config, owned, may be NULL */
} TrainState;

typedef struct { char name[128]; uint8_t *data; size_t len; } FileBlob;
typedef struct { FileBlob *items; int n; } FileBlobs;   /* tokenizer files, owned */

void train_state_free(TrainState *st);
void file_blobs_free(FileBlobs *b);

/* Saves weights; adam_m/adam_v (table.total floats each) and st may be NULL (weights-only). */
RxStatus ckpt_save(const char *path, const Model *m, const float *adam_m, const float *adam_v,
                   const TrainState *st, const FileBlobs *tok, RxError *err);
/* Reads the config only. */
RxStatus ckpt_read_config(const char *path, ModelConfig *cfg, RxError *err);
/* Loads into a fresh model (model_init inside). adam_m/adam_v/st/tok may be NULL when not
 * wanted; *adam_m is set to NULL when the file has no optimizer state. */
RxStatus ckpt_load(const char *path, Model *m, float **adam_m, float **adam_v, TrainState *st,
                   FileBlobs *tok, RxError *err);

/* Hugging Face directory -> model (+ the tokenizer files found beside it). */
RxStatus hf_import(const char *dir, Model *m, FileBlobs *tok, RxError *err);
/* Model -> Hugging Face directory: model.safetensors (f32 or bf16) + config.json + tokenizer. */
RxStatus hf_export(const char *dir, const Model *m, const FileBlobs *tok, int bf16, RxError *err);
/* Karpathy's llama2.c checkpoint (legacy and version 1 float32 formats); Wq/Wk rows are permuted
 * from interleaved RoPE pairs to rotate_half. */
RxStatus llama2c_import(const char *path, Model *m, RxError *err);

/* ---- safetensors (used by hf_import/hf_export; exposed for tests and inspect) ---- */
typedef enum { ST_F32, ST_F16, ST_BF16 } StDtype;
typedef struct {
    char name[PARAM_NAME_MAX];
    StDtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;     /* byte offsets into the data section */
} StTensor;
typedef struct {
    char path[4096];
    int fd;
    uint64_t file_size, data_start;   /* data section starts after 8 + header length */
    StTensor *tensors; int n;
} StFile;
RxStatus st_open(StFile *f, const char *path, RxError *err);   /* parses and validates the header */
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
/* Reads a tensor converted to float32 (out has numel floats). */
RxStatus st_read_f32(const StFile *f, const StTensor *t, float *out, RxError *err);

#endif
