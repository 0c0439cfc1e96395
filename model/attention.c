/* Tiled online-softmax attention (the FlashAttention algorithm on a CPU). Forward keeps only the
 * output and the per-row log-sum-exp; backward recomputes each score block. Blocks of ATT_BLOCK
 * queries x ATT_BLOCK keys go through sgemm (OpenBLAS runs single-threaded inside our OpenMP
 * tasks); exp is an AVX2 polynomial where the CPU has it; blocks that the mask hides entirely are
 * skipped, so work shrinks with the mask. Shapes and rules in ops.h. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "util.h"

#include "vexp.h"

enum { BLOCK_SKIP, BLOCK_FULL, BLOCK_PARTIAL };

/* How the mask treats queries [q0, q1) against keys [k0, k1) of one row. */
static int block_kind(const AttnMask *mk, const int32_t *doc, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
    if (k0 > q1 - 1) return BLOCK_SKIP;              /* all keys in the future */
    int full = k1 - 1 <= q0;                          /* all keys at or before every query */
    if (doc) {   /* ids never decrease along the row */
        if (doc[k1 - 1] < doc[q0]) return BLOCK_SKIP; /* every key in an earlier document */
        full = full && doc[k0] == doc[q1 - 1];
    }
    if (mk && mk->window > 0) {
        int all_old = q0 - (k1 - 1) >= mk->window;    /* every key outside every query's window */
        if (all_old && k0 >= mk->sink) return BLOCK_SKIP;
        full = full && ((q1 - 1) - k0 < mk->window || k1 <= mk->sink);
    }
    return full ? BLOCK_FULL : BLOCK_PARTIAL;
}

/* Scores of a partial block: masked entries become -inf. s is (nq, ATT_BLOCK). */
static void mask_block(float *s, const AttnMask *mk, const int32_t *doc, int64_t q0, int64_t nq,
                       int64_t k0, int64_t nk) {
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++)
            if (!attn_allowed(mk, doc, q0 + i, k0 + j)) s[i * ATT_BLOCK + j] = -INFINITY;
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    const int64_t G = NH / NKV, nblk = (T + ATT_BLOCK - 1) / ATT_BLOCK;
    const float scale = 1.0f / sqrtf((float)HS);
    const int64_t qs = NH * HS, ks = NKV * HS;   /* row strides */
    #pragma omp parallel
    {
        float *s = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *acc = malloc(sizeof(float) * ATT_BLOCK * (size_t)HS);
        float m[ATT_BLOCK], l[ATT_BLOCK];
        ASSERT(s && acc);
        /* (b, h, query block); the causal triangle makes later blocks heavier: a cyclic static
         * assignment spreads them evenly and keeps the run deterministic */
        #pragma omp for schedule(static, 1) collapse(3)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t qb = 0; qb < nblk; qb++) {
                    const int64_t q0 = qb * ATT_BLOCK, nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
                    const int64_t kh = h / G;
                    const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
                    const float *qp = q + (b * T + q0) * qs + h * HS;
                    for (int64_t i = 0; i < nq; i++) { m[i] = -INFINITY; l[i] = 0; }
                    memset(acc, 0, sizeof(float) * (size_t)(nq * HS));
                    for (int64_t kb = 0; kb <= qb; kb++) {
                        const int64_t k0 = kb * ATT_BLOCK, nk = T - k0 < ATT_BLOCK ? T - k0 : ATT_BLOCK;
                        int kind = block_kind(mk, doc, q0, q0 + nq, k0, k0 + nk);
                        if (kind == BLOCK_SKIP) continue;
                        const float *kp = k + (b * T + k0) * ks + kh * HS, *vp = v + (b * T + k0) * ks + kh * HS;
                        /* S = scale * Q K^T */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk,
                                    (blasint)HS, scale, qp, (blasint)qs, kp, (blasint)ks, 0.0f, s, ATT_BLOCK);
                        if (kind == BLOCK_PARTIAL) mask_block(s, mk, doc, q0, nq, k0, nk);
                        for (int64_t i = 0; i < nq; i++) {
                            float *row = s + i * ATT_BLOCK, mx = m[i];
                            for (int64_t j = 0; j < nk; j++) mx = row[j] > mx ? row[j] : mx;
                            if (mx == -INFINITY) { memset(row, 0, sizeof(float) * (size_t)nk); continue; }
                            float alpha = expf(m[i] - mx);   /* rescale what came before */
                            l[i] = l[i] * alpha + exp_shift_sum(row, row, mx, nk);
                            m[i] = mx;
                            if (alpha != 1.0f) for (int64_t d = 0; d < HS; d++) acc[i * HS + d] *= alpha;
                        }
                        /* acc += P V */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nq, (blasint)HS,
                                    (blasint)nk, 1.0f, s, ATT_BLOCK, vp, (blasint)ks, 1.0f, acc, (blasint)HS);
                    }
                    for (int64_t i = 0; i < nq; i++) {
                        float *o = out + (b * T + q0 + i) * qs + h * HS, inv = 1.0f / l[i];
                        for (int64_t d = 0; d < HS; d++) o[d] = acc[i * HS + d] * inv;
                        lse[(b * NH + h) * T + q0 + i] = m[i] + logf(l[i]);
                    }
                }
        free(s);
        free(acc);
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    /* forward: S = scale Q K^T;  P = exp(S - lse);  O = P V
     * => dV += P^T dO;  dP = dO V^T;  dS = P o (dP - D), D = rowsum(dO o O);
     *    dK += scale dS^T Q;  dQ += scale dS K.
     * One task per (b, kv head, key block) owns its dK, dV rows; dQ rows are shared between key
     * blocks, so each thread sums into its own dQ buffer and the buffers are added in thread
     * order at the end (deterministic for a given thread count). */
    const int64_t G = NH / NKV, nblk = (T + ATT_BLOCK - 1) / ATT_BLOCK;
    const float scale = 1.0f / sqrtf((float)HS);
    const int64_t qs = NH * HS, ks = NKV * HS;
    const size_t nq_all = (size_t)(B * T * NH * HS);
    const int nthreads = omp_get_max_threads();
    float *D = malloc(sizeof(float) * (size_t)(B * NH * T));
    float *dq_thr = calloc((size_t)nthreads * nq_all, sizeof(float));
    ASSERT(D && dq_thr);
    #pragma omp parallel for schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < NH; h++) {
                const float *o = out + (b * T + t) * qs + h * HS, *g = dout + (b * T + t) * qs + h * HS;
                float d = 0;
                for (int64_t e = 0; e < HS; e++) d += o[e] * g[e];
                D[(b * NH + h) * T + t] = d;
            }
    #pragma omp parallel num_threads(nthreads)
    {
        float *p = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *dp = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *dkacc = malloc(sizeof(float) * ATT_BLOCK * (size_t)HS);
        float *dvacc = malloc(sizeof(float) * ATT_BLOCK * (size_t)HS);
        ASSERT(p && dp && dkacc && dvacc);
        float *myq = dq_thr + (size_t)omp_get_thread_num() * nq_all;
        #pragma omp for schedule(static, 1) collapse(3)
        for (int64_t b = 0; b < B; b++)
            for (int64_t kh = 0; kh < NKV; kh++)
                for (int64_t kb = 0; kb < nblk; kb++) {
                    const int64_t k0 = kb * ATT_BLOCK, nk = T - k0 < ATT_BLOCK ? T - k0 : ATT_BLOCK;
                    const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
                    const float *kp = k + (b * T + k0) * ks + kh * HS, *vp = v + (b * T + k0) * ks + kh * HS;
                    memset(dkacc, 0, sizeof(float) * (size_t)(nk * HS));
                    memset(dvacc, 0, sizeof(float) * (size_t)(nk * HS));
                    for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                        for (int64_t qb = kb; qb < nblk; qb++) {
                            const int64_t q0 = qb * ATT_BLOCK, nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
                            int kind = block_kind(mk, doc, q0, q0 + nq, k0, k0 + nk);
                            if (kind == BLOCK_SKIP) continue;
                            const float *qp = q + (b * T + q0) * qs + h * HS, *gp = dout + (b * T + q0) * qs + h * HS;
                            const float *lrow = lse + (b * NH + h) * T + q0, *drow = D + (b * NH + h) * T + q0;
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk,
                                        (blasint)HS, scale, qp, (blasint)qs, kp, (blasint)ks, 0.0f, p, ATT_BLOCK);
                            if (kind == BLOCK_PARTIAL) mask_block(p, mk, doc, q0, nq, k0, nk);
                            for (int64_t i = 0; i < nq; i++) exp_shift_sum(p + i * ATT_BLOCK, p + i * ATT_BLOCK, lrow[i], nk);
                            /* dV += P^T dO */
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)nk, (blasint)HS,
                                        (blasint)nq, 1.0f, p, ATT_BLOCK, gp, (blasint)qs, 1.0f, dvacc, (blasint)HS);
                            /* dP = dO V^T, then dS = P o (dP - D) in place */
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nk,
                                        (blasint)HS, 1.0f, gp, (blasint)qs, vp, (blasint)ks, 0.0f, dp, ATT_BLOCK);
                            for (int64_t i = 0; i < nq; i++)
                                for (int64_t j = 0; j < nk; j++)
                                    dp[i * ATT_BLOCK + j] = p[i * ATT_BLOCK + j] * (dp[i * ATT_BLOCK + j] - drow[i]);
                            /* dK += scale dS^T Q;  dQ += scale dS K */
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)nk, (blasint)HS,
                                        (blasint)nq, scale, dp, ATT_BLOCK, qp, (blasint)qs, 1.0f, dkacc, (blasint)HS);
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nq, (blasint)HS,
                                        (blasint)nk, scale, dp, ATT_BLOCK, kp, (blasint)ks, 1.0f,
                                        myq + (b * T + q0) * qs + h * HS, (blasint)qs);
                        }
                    for (int64_t j = 0; j < nk; j++) {
                        float *dkr = dk + (b * T + k0 + j) * ks + kh * HS, *dvr = dv + (b * T + k0 + j) * ks + kh * HS;
                        for (int64_t e = 0; e < HS; e++) { dkr[e] += dkacc[j * HS + e]; dvr[e] += dvacc[j * HS + e]; }
                    }
                }
        free(p); free(dp); free(dkacc); free(dvacc);
    }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nq_all; i++) {
        float s = dq[i];
        for (int t = 0; t < nthreads; t++) s += dq_thr[(size_t)t * nq_all + i];
        dq[i] = s;
    }
    free(dq_thr);
    free(D);
}
