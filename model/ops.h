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

/* Causal grouped-query attention, reference kernel: rows of length T per sequence.
 * out (B, T, NH, HS); lse (B, NH, T) log-sum-exp of each score row (the only saved statistic;
 * backward recomputes the probabilities); q (B, T, NH, HS); k, v (B, T, NKV, HS).
 * scores = q.k / sqrt(HS); query head h reads kv head h / (NH/NKV). */
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS);

/* out (N, H) = silu(gate) * up */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t H);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int64_t N, int64_t H);

/* out (n) = a + b */
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
