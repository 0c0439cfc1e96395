/* ropex data: long documents from text to packed training sequences.
 *   tokenizer.h  Hugging Face tokenizer.json BPE (byte-level and SentencePiece-style)
 *   shard.h      zstd shard format with a document index and checksums
 *   stream.h     mixed, packed, prefetched, exactly resumable sequence stream
 *   this file    `ropex data prepare`: inputs -> filters -> tokens -> shards + manifest.json;
 *                `ropex data synth`: synthetic retrieval documents (passkey, key-value)
 * Needs zstd, cJSON, PCRE2 and pthreads; never model/.
 *
 * A dataset directory holds manifest.json ({"format": "ropex-data", "version": 1, "tokenizer":
 * "tokenizer.json", "vocab_size", "bos_id", "eos_id", "domains": [{"name", "shards": [...],
 * "heldout_shards": [...], "documents", "tokens", ...}]}), the tokenizer.json it was made with, and
 * the shards NAME-train.rxs and NAME-heldout.rxs of each domain.
 */
#ifndef ROPEX_DATA_H
#define ROPEX_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "shard.h"
#include "stream.h"
#include "tokenizer.h"

typedef struct {
    const char *tokenizer;         /* tokenizer.json */
    const char *domain;            /* domain name (letters, digits, _ and -) */
    const char *const *inputs; int n_inputs;
    const char *out_dir;
    int64_t min_tokens;            /* drop documents shorter than this */
    double max_nontext;            /* drop documents whose share of control bytes exceeds this */
    double max_repeated;           /* ... or whose share of repeated lines exceeds this */
    int dedup;                     /* drop exact duplicates */
    int aggregate;                 /* a directory's files become one document, in order */
    double heldout;                /* share of documents (by content hash) kept for evaluation */
    int level;                     /* zstd level */
    int progress;                  /* progress and ETA on stderr */
} PrepareConfig;

typedef struct {
    uint64_t docs_in, docs_out, docs_heldout;
    uint64_t dropped_duplicate, dropped_incoherent, dropped_short;
    uint64_t tokens_out, tokens_heldout;
    uint64_t bytes_in, bytes_tokens, bytes_compressed;
} PrepareSummary;

/* Adds (or replaces) one domain in out_dir. 0, or -1 with a message naming file/line/field. */
int data_prepare(const PrepareConfig *cfg, PrepareSummary *sum, char *err, size_t errlen);

typedef enum { SYNTH_PASSKEY, SYNTH_KV, SYNTH_REPEAT, SYNTH_COPY, SYNTH_RECALL } SynthKind;
typedef struct {
    SynthKind kind;        /* passkey hidden in varied filler, key-value lookup, repeated strings, or one copy line */
    int64_t docs;
    int64_t min_chars, max_chars;   /* document length range, in characters */
    int64_t questions;     /* kv: questions at the end; passkey: times the key is asked (1: once, at the end) */
    int min_pairs, max_pairs; /* recall: pairs a document, 2 <= min <= max <= 52 (skewed towards min) */
    int mixed;                /* recall: keys and values drawn from letters and digits (default: letter keys, digit values) */
    int statements;           /* passkey, recall: half the filler's sentences "X is Y." (default: none has " is ") */
    double min_depth, max_depth; /* passkey: where the key sits, a share of the filler, drawn uniformly (0 <= min <= max <= 1) */
    uint64_t seed;
    const char *out;       /* JSON lines ({"text": ...}) for data_prepare */
} SynthConfig;
/* Writes synthetic retrieval documents, deterministic in the seed. */
int data_synth(const SynthConfig *cfg, char *err, size_t errlen);

#endif
