/* Forward and backward ops of the Llama block. Shapes use the legend in model.h; N = B*T rows.
 *
 * Convention: X_forward(outputs, saved caches, inputs, weights, dims) is followed by
 * X_backward(d-inputs, d-weights, d-output, inputs, weights, caches, dims). Every backward
 * ACCUMULATES (+=) into its gradient arguments; callers zero them.
 */
#ifndef ROPEX_OPS_H
#define ROPEX_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out (N, C) = wte[tokens] */
void embed_forward(float *out, const int32_t *tokens, const float *wte, int64_t N, int64_t C);
void embed_backward(float *dwte, const float *dout, const int32_t *tokens, int64_t N, int64_t C);

/* out (N, C) = x * rstd * w,  rstd (N) = 1/sqrt(mean(x^2) + eps) */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                     int64_t N, int64_t C, double eps);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t N, int64_t C);

/* out (N, OC) (= or +=, by accumulate) x (N, IC) @ w^T, w (OC, IC) in HF layout. sgemm. */
void linear_forward(float *out, const float *x, const float *w, int64_t N, int64_t IC, int64_t OC,
                    int accumulate);
void linear_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                     int64_t N, int64_t IC, int64_t OC);
/* Naive triple loop of linear_forward (accumulate = 0), the test oracle for the sgemm path. */
void linear_forward_naive(float *out, const float *x, const float *w, int64_t N, int64_t IC, int64_t OC);

/* Which keys a query sees, beside causality (key j <= query i):
 *   doc:    (B, T) document id of each token, non-decreasing along t (packed sequences); a query
 *           sees only keys of its own document. NULL: one document per row.
 *   window: > 0 for the Lambda-shaped mask: query i sees key j only if i - j < window or
 *           j < sink (the first `sink` tokens stay visible). 0: no window. */
typedef struct {
    const int32_t *doc;
    int64_t sink, window;
    int64_t q_from;   /* attention_forward only: query rows t < q_from of each sequence are not
                       * needed; query blocks wholly before it are skipped (output and lse
                       * written as 0), every other row is computed as without it */
} AttnMask;

static inline int attn_allowed(const AttnMask *mk, const int32_t *doc_row, int64_t i, int64_t j) {
    if (j > i) return 0;
    if (doc_row && doc_row[i] != doc_row[j]) return 0;
    if (mk && mk->window > 0 && i - j >= mk->window && j >= mk->sink) return 0;
    return 1;
}

/* Grouped-query attention with a causal mask (and optionally document / window masks).
 * out (B, T, NH, HS); lse (B, NH, T) log-sum-exp of each score row (the only saved statistic;
 * backward recomputes the probabilities); q (B, T, NH, HS); k, v (B, T, NKV, HS).
 * scores = q.k / sqrt(HS); query head h reads kv head h / (NH/NKV). mk may be NULL (causal).
 *
 * attention_forward/backward: the tiled online-softmax kernel (FlashAttention on CPU): blocks of
 * ATT_BLOCK queries x ATT_BLOCK keys as AVX2 register tiles on packed blocks (sgemm without AVX2
 * or when HS is not a multiple of 16), a vectorised exp, fully masked blocks skipped;
 * nothing of size T x T is ever allocated. attention_ref_*: the plain per-row loops, kept as the
 * test oracle. Both write the same outputs. */
#define ATT_BLOCK 128
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);
/* Bytes the larger of attention_forward and attention_backward allocates for one call with
 * nthreads threads (freed before it returns): the packed K, V blocks (forward) or Q, dO blocks,
 * the per-thread dQ sums and D (backward), and each thread's block buffers. */
size_t attention_work_bytes(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, int nthreads);
void attention_ref_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);
void attention_ref_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);

/* One query row against n cached keys (inference only: no backward, nothing trains through a
 * cache). out (NH, HS) = softmax(q.k_j / sqrt(HS)) v over keys j < n for each head, q (NH, HS),
 * k, v (n, NKV, HS), scores (NH, n) scratch. Equals attention_ref_forward's row n-1 of a causal
 * sequence whose keys and values are k, v. */
void attention_decode(float *out, float *scores, const float *q, const float *k, const float *v,
                      int64_t n, int64_t NH, int64_t NKV, int64_t HS);
/* out (N, H) = silu(gate) * up */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t H);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int64_t N, int64_t H);

/* out (n) = a + b. Its backward (da += dout, db += dout) is the op's definition and tested; the
 * model's layer backward does the same sum in place, without the copies (model.c). */
void residual_forward(float *out, const float *a, const float *b, size_t n);
void residual_backward(float *da, float *db, const float *dout, size_t n);

/* Cross-entropy over one chunk of logits (n, V) with targets (n) (-1 = not counted).
 * Forward: losses (n) = logsumexp(row) - row[target] (0 where not counted).
 * Backward: dlogits (n, V) = scale * (softmax(row) - onehot(target)) for counted rows, else 0;
 * computed in place over the logits (which it overwrites), unlike the accumulate rule, since the
 * chunk is scratch. scale is d(loss)/d(per-row loss), e.g. 1/n_counted for a mean. */
void crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                          int64_t n, int64_t V);
void crossentropy_backward(float *logits_to_dlogits, const int32_t *targets, float scale,
                           int64_t n, int64_t V);

#endif
