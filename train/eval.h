/* Evaluation: perplexity against window length (sliding windows with a stride, as Position
 * Interpolation measured it), passkey retrieval (the PI / Mohtashami & Jaggi protocol) and
 * per-token log-probabilities. Used by `ropex eval`; tests call these directly. */
#ifndef ROPEX_EVAL_H
#define ROPEX_EVAL_H

#include <stdint.h>

#include "../data/data.h"
#include "../model/model.h"

typedef struct {
    int64_t window, stride;
    int64_t docs, windows, tokens;   /* used */
    double nll;                      /* summed over counted tokens */
    double ppl;                      /* exp(nll / tokens); NAN when no document is long enough */
} PplResult;

/* Slides windows of `window` tokens with `stride` over each document (at least `window` long) of
 * the tokens given (docs: concatenated, doc_len per document); the first window of a document
 * counts all its targets, the next ones the last `stride`. With align > 0 (>= window: the longest
 * window being compared), only documents longer than `align` are used, windows end where windows
 * of `align` tokens would, and every window counts its last `stride` targets: all window lengths
 * are then scored on the same tokens, with contexts of window - stride .. window tokens.
 * At most max_windows windows, spread over the documents long enough (at most
 * ceil(max_windows / documents) from each, from its start). tick (may be NULL) is called with
 * ctx after each window's forward (progress reports). m NULL: only counts the documents, windows
 * and tokens a run would use (out's ppl NAN), running nothing. */
typedef void (*EvalTick)(void *ctx);
int eval_perplexity(Model *m, const int32_t *tokens, const int64_t *doc_len, int64_t n_docs,
                    int64_t window, int64_t stride, int64_t align, int64_t max_windows,
                    EvalTick tick, void *ctx, PplResult *out, char *err, size_t errlen);

/* Builds a passkey prompt of about `length` tokens: [BOS] filler with the key sentence at `depth`
 * (0 = start, 1 = end of the filler), then the question; *key_pos is the index of the key
 * sentence's first token, *n its length. answer (n_answer tokens) is what greedy decoding must
 * produce. Returns the malloc'd ids; NULL with a message when `length` cannot hold the key, the
 * question and one filler sentence. */
int32_t *passkey_prompt(const Tokenizer *t, int64_t length, double depth, int key, int64_t *n,
                        int64_t *key_pos, int32_t **answer, int64_t *n_answer, char *err, size_t errlen);

/* 1 when greedy decoding after the prompt produces the answer (checked in one forward pass by
 * teacher forcing: every position's argmax must be the next answer token). With a KV cache kc
 * (NULL: a full forward), the start the prompt shares with the cached tokens (the filler before
 * the key, when the trial before had the same or a later depth) is not computed again. */
int passkey_trial(Model *m, KVCache *kc, const int32_t *prompt, int64_t n, const int32_t *answer,
                  int64_t n_answer, char *err, size_t errlen);

/* log p(tokens[i] | tokens[<i]) for i >= 1 into logp[i] (logp[0] = NAN). */
int eval_logprobs(Model *m, const int32_t *tokens, int64_t n, double *logp, char *err, size_t errlen);

#endif
