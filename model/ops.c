/* The Llama block's ops, each forward followed by its backward (rules in ops.h). */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vexp.h"

/* Columns handled together when a gradient sums over rows: each thread owns whole column blocks,
 * so the sum order (rows ascending) never depends on the thread count. */
#define COL_BLOCK 64

void embed_forward(float *out, const int32_t *tokens, const float *wte, int64_t N, int64_t C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, wte + (int64_t)tokens[n] * C, (size_t)C * sizeof(float));
}

void embed_backward(float *dwte, const float *dout, const int32_t *tokens, int64_t N, int64_t C) {
    /* forward: out[n, :] = wte[tokens[n], :] */
    int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int64_t n = 0; n < N; n++) {
            float *d = dwte + (int64_t)tokens[n] * C;
            const float *g = dout + n * C;
            for (int64_t c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                     int64_t N, int64_t C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xn[c] * xn[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        rstd[n] = r;
        float *o = out + n * C;
        for (int64_t c = 0; c < C; c++) o[c] = xn[c] * r * w[c];
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t N, int64_t C) {
    /* forward: o[c] = x[c] * r * w[c],  r = (mean(x^2) + eps)^-1/2,  dr/dx[c] = -r^3 x[c] / C
     * => dx[c] = r * (w[c] d[c] - x[c] r^2 mean_j(w[j] d[j] x[j])),  dw[c] = sum_n d[c] x[c] r */
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C, *d = dout + n * C;
        float r = rstd[n];
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)w[c] * d[c] * xn[c];
        float k = (float)(dot / (double)C) * r * r;
        float *g = dx + n * C;
        for (int64_t c = 0; c < C; c++) g[c] += r * (w[c] * d[c] - xn[c] * k);
    }
    int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *xn = x + n * C, *d = dout + n * C;
            float r = rstd[n];
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += (double)(d[c] * xn[c] * r);
        }
        for (int64_t c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
    }
}

void linear_forward(float *out, const float *x, const float *w, int64_t N, int64_t IC, int64_t OC,
                    int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)OC, (blasint)IC,
                1.0f, x, (blasint)IC, w, (blasint)IC, accumulate ? 1.0f : 0.0f, out, (blasint)OC);
}

void linear_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                     int64_t N, int64_t IC, int64_t OC) {
    /* forward: out = x @ w^T  =>  dx += dout @ w,  dw += dout^T @ x */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)IC, (blasint)OC,
                    1.0f, dout, (blasint)OC, w, (blasint)IC, 1.0f, dx, (blasint)IC);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)OC, (blasint)IC, (blasint)N,
                    1.0f, dout, (blasint)OC, x, (blasint)IC, 1.0f, dw, (blasint)IC);
}

void linear_forward_naive(float *out, const float *x, const float *w, int64_t N, int64_t IC, int64_t OC) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double acc = 0;
            for (int64_t i = 0; i < IC; i++) acc += (double)x[n * IC + i] * w[o * IC + i];
            out[n * OC + o] = (float)acc;
        }
}

static float dot(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void attention_ref_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    const int64_t G = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel
    {
        float *row = malloc((size_t)T * sizeof(float));
        ASSERT(row);
        #pragma omp for schedule(static) collapse(2)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < NH; h++) {
                const int64_t kh = h / G;
                const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
                for (int64_t t = 0; t < T; t++) {
                    const float *qt = q + ((b * T + t) * NH + h) * HS;
                    float m = -INFINITY;
                    for (int64_t j = 0; j <= t; j++) {
                        row[j] = attn_allowed(mk, doc, t, j)
                                 ? dot(qt, k + ((b * T + j) * NKV + kh) * HS, HS) * scale : -INFINITY;
                        if (row[j] > m) m = row[j];
                    }
                    float sum = 0;
                    for (int64_t j = 0; j <= t; j++) { row[j] = expf(row[j] - m); sum += row[j]; }
                    float *o = out + ((b * T + t) * NH + h) * HS;
                    memset(o, 0, (size_t)HS * sizeof(float));
                    for (int64_t j = 0; j <= t; j++) {
                        const float p = row[j] / sum, *vj = v + ((b * T + j) * NKV + kh) * HS;
                        for (int64_t d = 0; d < HS; d++) o[d] += p * vj[d];
                    }
                    lse[(b * NH + h) * T + t] = m + logf(sum);
                }
            }
        free(row);
    }
}

void attention_ref_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    /* forward: s_j = q.k_j * scale;  p_j = exp(s_j - lse);  o = sum_j p_j v_j
     * => dv_j += p_j do;  dp_j = do.v_j;  ds_j = p_j (dp_j - do.o);  dq += ds_j scale k_j;
     *    dk_j += ds_j scale q.  One task per (b, kv head): the heads of a group share dk, dv. */
    const int64_t G = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel for schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < NKV; kh++)
            for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                for (int64_t t = 0; t < T; t++) {
                    const int64_t qi = ((b * T + t) * NH + h) * HS;
                    const float *qt = q + qi, *dot_ = dout + qi;
                    const float D = dot(dot_, out + qi, HS), l = lse[(b * NH + h) * T + t];
                    const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
                    float *dqt = dq + qi;
                    for (int64_t j = 0; j <= t; j++) {
                        if (!attn_allowed(mk, doc, t, j)) continue;
                        const int64_t ki = ((b * T + j) * NKV + kh) * HS;
                        const float p = expf(dot(qt, k + ki, HS) * scale - l);
                        const float ds = p * (dot(dot_, v + ki, HS) - D) * scale;
                        float *dkj = dk + ki, *dvj = dv + ki;
                        const float *kj = k + ki;
                        for (int64_t d = 0; d < HS; d++) {
                            dvj[d] += p * dot_[d];
                            dqt[d] += ds * kj[d];
                            dkj[d] += ds * qt[d];
                        }
                    }
                }
}

void attention_decode(float *out, float *scores, const float *q, const float *k, const float *v,
                      int64_t n, int64_t NH, int64_t NKV, int64_t HS) {
    const int64_t G = NH / NKV, ks = NKV * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    /* one head per task; each head's two matrix-vector products over its kv head's rows */
    #pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < NH; h++) {
        const int64_t kh = h / G;
        float *s = scores + h * n, m = -INFINITY, sum = 0;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)HS, scale, k + kh * HS, (int)ks,
                    q + h * HS, 1, 0.0f, s, 1);
        for (int64_t j = 0; j < n; j++) if (s[j] > m) m = s[j];
        for (int64_t j = 0; j < n; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
        for (int64_t j = 0; j < n; j++) s[j] /= sum;
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)HS, 1.0f, v + kh * HS, (int)ks, s, 1,
                    0.0f, out + h * HS, 1);
    }
}

/* sigmoid of 8 gates: 1 / (1 + exp(-g)), exp by the AVX2 polynomial (scalar expf for the few
 * columns past the last multiple of 8: the split is per row, so independent of the thread count) */
#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 sigmoid8(__m256 g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}
#endif

void swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t H) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *gr = gate + r * H, *ur = up + r * H;
        float *o = out + r * H;
        int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
        for (; i + 8 <= H; i += 8) {
            __m256 g = _mm256_loadu_ps(gr + i);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), _mm256_loadu_ps(ur + i)));
        }
#endif
        for (; i < H; i++) {
            float g = gr[i];
            o[i] = g * (1.0f / (1.0f + expf(-g))) * ur[i];
        }
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                     int64_t N, int64_t H) {
    /* forward: out = g * sig(g) * u  =>  dg += d * u * sig(g) (1 + g (1 - sig(g))),  du += d * g sig(g) */
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const int64_t o = r * H;
        int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
        const __m256 one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= H; i += 8) {
            __m256 g = _mm256_loadu_ps(gate + o + i), sg = sigmoid8(g), d = _mm256_loadu_ps(dout + o + i);
            __m256 u = _mm256_loadu_ps(up + o + i);
            __m256 dg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, u), sg),
                                      _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, sg))));
            _mm256_storeu_ps(dgate + o + i, _mm256_add_ps(_mm256_loadu_ps(dgate + o + i), dg));
            _mm256_storeu_ps(dup + o + i, _mm256_add_ps(_mm256_loadu_ps(dup + o + i), _mm256_mul_ps(_mm256_mul_ps(d, g), sg)));
        }
#endif
        for (; i < H; i++) {
            float g = gate[o + i], sg = 1.0f / (1.0f + expf(-g));
            dgate[o + i] += dout[o + i] * up[o + i] * sg * (1.0f + g * (1.0f - sg));
            dup[o + i] += dout[o + i] * g * sg;
        }
    }
}

void residual_forward(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, size_t n) {
    /* forward: out = a + b */
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { da[i] += dout[i]; db[i] += dout[i]; }
}

/* max and sum of exp(row - max) of one row of logits (vectorised exp, vexp.h) */
static void row_softmax_stats(const float *row, int64_t V, float *max, double *sum) {
    float m = -INFINITY;
    for (int64_t i = 0; i < V; i++) if (row[i] > m) m = row[i];
    *max = m;
    *sum = exp_shift_sum(NULL, row, m, V);
}

void crossentropy_forward(float *losses, const float *logits, const int32_t *targets,
                          int64_t n, int64_t V) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        if (targets[r] < 0) { losses[r] = 0; continue; }
        ASSERT(targets[r] < V);
        const float *row = logits + r * V;
        float m; double s;
        row_softmax_stats(row, V, &m, &s);
        losses[r] = (float)((double)m + log(s) - (double)row[targets[r]]);
    }
}

void crossentropy_backward(float *logits_to_dlogits, const int32_t *targets, float scale,
                           int64_t n, int64_t V) {
    /* forward: loss = logsumexp(row) - row[target]  =>  dlogit_i = softmax_i - [i == target] */
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        float *row = logits_to_dlogits + r * V;
        if (targets[r] < 0) { memset(row, 0, (size_t)V * sizeof(float)); continue; }
        float m = -INFINITY;
        for (int64_t i = 0; i < V; i++) if (row[i] > m) m = row[i];
        const float f = (float)(1.0 / exp_shift_sum(row, row, m, V)) * scale;
        for (int64_t i = 0; i < V; i++) row[i] *= f;
        row[targets[r]] -= scale;
    }
}
