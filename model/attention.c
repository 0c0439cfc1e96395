/* Tiled online-softmax attention (the FlashAttention algorithm on a CPU). Forward keeps only the
 * output and the per-row log-sum-exp; backward recomputes each score block. Blocks of ATT_BLOCK
 * queries x ATT_BLOCK keys go through AVX-512 or AVX2 register tiles (sgemm where the CPU lacks
 * AVX2 or HS is not a multiple of the tile width, 32 or 16); exp is a vectorised polynomial
 * (vexp.h) where the CPU has AVX2; blocks that the mask hides entirely are skipped, so work shrinks with the mask.
 * Inside a diagonal block (queries and keys from the same rows) the tiles also skip the slabs
 * and rows that lie wholly after the query (every mask here is causal): they hold -inf scores,
 * zero probabilities and zero dS, so the results are bit-identical to computing them.
 * Shapes and rules in ops.h. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "util.h"

#include "vexp.h"

/* ---- block products ----
 * Per-block sgemm calls spend much of their time packing and zeroing small operands (one core
 * here: 39-53 GFLOP/s for a 128x128x64 Q K^T block against 78-83 for a large sgemm). So each K,
 * V, Q and dO block is packed once per call into the layout its product reads, and the products
 * run as 6-row x SW-column register tiles (12 accumulators, two vectors a row): SW = 32 with
 * AVX-512 (16-float vectors), 16 with AVX2. Two packed layouts of a block of ATT_BLOCK rows x HS,
 * zero beyond the rows it holds:
 *   kt (right operand of S = A B^T): tiles (ATT_BLOCK/SW, HS, SW), else (HS, ATT_BLOCK);
 *   rows (right operand of C += X Y): tiles (HS/SW, ATT_BLOCK, SW), else (ATT_BLOCK, HS).
 * Slabs of SW columns are contiguous because a plain row stride maps the rows a tile reads onto a
 * few cache sets (measured: 40 against 67 GFLOP/s). On a CPU whose FMA units are 512 bits wide
 * the AVX-512 tiles do twice the work per instruction (Zen 5 here: FMA peak 372 against 222
 * GFLOP/s with 256-bit vectors, 2 threads). */
#if defined(__AVX512F__)
#include <immintrin.h>
#define SW 32
typedef __m512 vf;
#define vzero _mm512_setzero_ps
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vset1 _mm512_set1_ps
#define vfma _mm512_fmadd_ps
#define vmul _mm512_mul_ps
#define vadd _mm512_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SW 16
typedef __m256 vf;
#define vzero _mm256_setzero_ps
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vset1 _mm256_set1_ps
#define vfma _mm256_fmadd_ps
#define vmul _mm256_mul_ps
#define vadd _mm256_add_ps
#endif
#ifdef SW
#define VW (SW / 2)   /* floats in one vector; defined only where the tiles are built */
#define TR 6          /* tile rows */
static int use_tiles(int64_t HS) { return HS % SW == 0; }
#else
#define SW 1   /* no tiles: the packers keep the plain layouts */
static int use_tiles(int64_t HS) { (void)HS; return 0; }
#endif
#define PACKED ((size_t)ATT_BLOCK * (size_t)HS)   /* floats in one packed block */

/* (Written as plain loops over slabs: one index formula for both layouts made GCC build slow
 * gather code; the packs took a fifth of the forward's time outside the tiles.) */
static void pack_kt(float *dst, const float *x, int64_t ld, int64_t n, int64_t HS, int tiles) {
    const int64_t w = tiles ? SW : ATT_BLOCK;   /* keys in one slab */
    for (int64_t j0 = 0; j0 < ATT_BLOCK; j0 += w) {
        float *slab = dst + j0 * HS;
        for (int64_t jj = 0; jj < w; jj++) {
            const int64_t j = j0 + jj;
            if (j < n)
                for (int64_t d = 0; d < HS; d++) slab[d * w + jj] = x[j * ld + d];
            else
                for (int64_t d = 0; d < HS; d++) slab[d * w + jj] = 0.0f;
        }
    }
}

static void pack_rows(float *dst, const float *x, int64_t ld, int64_t n, int64_t HS, int tiles) {
    const int64_t w = tiles ? SW : HS;   /* columns in one slab */
    for (int64_t e0 = 0; e0 < HS; e0 += w) {
        float *slab = dst + e0 * ATT_BLOCK;
        for (int64_t p = 0; p < ATT_BLOCK; p++) {
            if (p < n) memcpy(slab + p * w, x + p * ld + e0, sizeof(float) * (size_t)w);
            else memset(slab + p * w, 0, sizeof(float) * (size_t)w);
        }
    }
}

#ifdef VW   /* register tiles */
/* s[i][0..SW) = scale * sum_d a[i][d] bt[d][0..SW) for R rows; a the tile's first row in a block
 * packed as rows (so the R rows of each SW-wide slab of d are one contiguous run), bt one SW-key
 * slab of kt */
static inline __attribute__((always_inline)) void tile_abt(float *s, const float *a, const float *bt,
                                                           int64_t HS, float scale, int R) {
    vf c0[TR], c1[TR];
    for (int i = 0; i < R; i++) c0[i] = c1[i] = vzero();
    for (int64_t d0 = 0; d0 < HS; d0 += SW) {
        const float *as = a + d0 * ATT_BLOCK, *bs = bt + d0 * SW;
        for (int dd = 0; dd < SW; dd++) {
            vf b0 = vload(bs + dd * SW), b1 = vload(bs + dd * SW + VW);
            for (int i = 0; i < R; i++) {
                vf x = vset1(as[i * SW + dd]);
                c0[i] = vfma(x, b0, c0[i]);
                c1[i] = vfma(x, b1, c1[i]);
            }
        }
    }
    vf sc = vset1(scale);
    for (int i = 0; i < R; i++) {
        vstore(s + i * ATT_BLOCK, vmul(c0[i], sc));
        vstore(s + i * ATT_BLOCK + VW, vmul(c1[i], sc));
    }
}

/* c[r][0..SW) += sum_p X(r, p) y[p][0..SW) for R rows; y one SW-column slab of rows;
 * X(r, p) = x[r * ldx + p], or x[p * ldx + r] with trans. (No scale factor: one more live
 * register made GCC spill a y row to the stack, measured 10% slower.) */
static inline __attribute__((always_inline)) void tile_xy(float *c, int64_t ldc, const float *x, int64_t ldx,
                                                          int trans, const float *y, int64_t np, int R) {
    vf c0[TR], c1[TR];
    for (int i = 0; i < R; i++) c0[i] = c1[i] = vzero();
    for (int64_t p = 0; p < np; p++) {
        vf y0 = vload(y + p * SW), y1 = vload(y + p * SW + VW);
        for (int i = 0; i < R; i++) {
            vf xv = vset1(trans ? x[p * ldx + i] : x[i * ldx + p]);
            c0[i] = vfma(xv, y0, c0[i]);
            c1[i] = vfma(xv, y1, c1[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        vstore(ci, vadd(c0[i], vload(ci)));
        vstore(ci + VW, vadd(c1[i], vload(ci + VW)));
    }
}

/* the tiles of rows [r0, nr) in steps of TR, then the R < TR left (R a constant in each case so
 * that the accumulators stay in registers) */
#define ROW_TILES(r0, nr, TILE) do { \
        for (; r0 + TR <= nr; r0 += TR) TILE(TR); \
        switch (nr - r0) { \
        case 5: TILE(5); break; case 4: TILE(4); break; case 3: TILE(3); break; \
        case 2: TILE(2); break; case 1: TILE(1); break; default: break; \
        } \
    } while (0)
#endif

/* s (nr, ATT_BLOCK) = scale * a (nr, HS) . bt^T (bt packed kt): with tiles a is a block packed
 * as rows (lda unused) and the columns up to nk rounded up to SW are written; else a has row
 * stride lda. (Read in place, with the tensor's long row stride, a freshly loaded Q or dO block
 * made the backward ~15% slower: 1.84-2.07 s against 1.53-1.75 s at SmolLM's heads, T=8192.)
 * off = q0 - k0 of the block: with tiles, the slabs of keys after every query of a row tile
 * (masked anyway) are not computed. */
static void blk_abt(float *s, const float *a, int64_t lda, const float *bt, int64_t nr, int64_t nk,
                    int64_t HS, float scale, int64_t off, int tiles) {
#ifdef VW   /* register tiles */
    if (tiles) {
#define ABT(R) tile_abt(s + i0 * ATT_BLOCK + j0, a + i0 * SW, bt + j0 * HS, HS, scale, R)
        for (int64_t j0 = 0; j0 < nk; j0 += SW) {
            int64_t i0 = j0 - off > 0 ? j0 - off : 0;   /* rows before it see none of this slab */
            ROW_TILES(i0, nr, ABT);
        }
#undef ABT
        return;
    }
#endif
    (void)tiles; (void)off;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr, (blasint)nk, (blasint)HS, scale,
                a, (blasint)lda, bt, ATT_BLOCK, 0.0f, s, ATT_BLOCK);
}

/* c (nr, HS; row stride ldc) += X . y, y (np, HS) packed rows; X (nr, np) = x (row stride ldx),
 * or with trans x^T (x is (np, nr)). off = q0 - k0 of the block: with tiles, X's entries after
 * the query (key > query + off: zeros) are not read; without trans the rows are queries and p
 * keys, with trans the rows are keys and p queries. */
static void blk_xy(float *c, int64_t ldc, const float *x, int64_t ldx, int trans, const float *y,
                   int64_t nr, int64_t np, int64_t HS, int64_t off, int tiles) {
#ifdef VW   /* register tiles */
    if (tiles) {
#define XY(R) do { \
        if (trans) { \
            const int64_t p0 = r0 - off > 0 ? r0 - off : 0; \
            if (p0 < np) \
                tile_xy(c + r0 * ldc + e0, ldc, x + p0 * ldx + r0, ldx, 1, y + e0 * ATT_BLOCK + p0 * SW, np - p0, R); \
        } else { \
            const int64_t n1 = r0 + (R) + off < np ? r0 + (R) + off : np; \
            tile_xy(c + r0 * ldc + e0, ldc, x + r0 * ldx, ldx, 0, y + e0 * ATT_BLOCK, n1, R); \
        } \
    } while (0)
        for (int64_t e0 = 0; e0 < HS; e0 += SW) {
            int64_t r0 = 0;
            ROW_TILES(r0, nr, XY);
        }
#undef XY
        return;
    }
#endif
    (void)tiles; (void)off;
    cblas_sgemm(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, CblasNoTrans, (blasint)nr, (blasint)HS,
                (blasint)np, 1.0f, x, (blasint)ldx, y, (blasint)HS, 1.0f, c, (blasint)ldc);
}

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

/* How many of the keys k0 .. k0+nk-1 come at or before query q (the causal mask's limit). */
static int64_t keys_upto(int64_t q, int64_t k0, int64_t nk) {
    const int64_t n = q - k0 + 1;
    return n < 0 ? 0 : n < nk ? n : nk;
}

/* Scores of a partial block: masked entries become -inf. s is (nq, ATT_BLOCK). */
static void mask_block(float *s, const AttnMask *mk, const int32_t *doc, int64_t q0, int64_t nq,
                       int64_t k0, int64_t nk) {
    const int other = doc || (mk && mk->window > 0);   /* a mask beside the causal one */
    for (int64_t i = 0; i < nq; i++) {
        float *row = s + i * ATT_BLOCK;
        /* keys after the query (causal), then the others' rule on the keys before */
        const int64_t lim = keys_upto(q0 + i, k0, nk);
        for (int64_t j = lim; j < nk; j++) row[j] = -INFINITY;
        if (other)
            for (int64_t j = 0; j < lim; j++)
                if (!attn_allowed(mk, doc, q0 + i, k0 + j)) row[j] = -INFINITY;
    }
}

size_t attention_work_bytes(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, int nthreads) {
    const size_t nblk = (size_t)((T + ATT_BLOCK - 1) / ATT_BLOCK), blk2 = (size_t)ATT_BLOCK * ATT_BLOCK;
    const size_t fwd = 2 * (size_t)(B * NKV) * nblk * PACKED + (size_t)nthreads * (blk2 + 2 * PACKED);
    const size_t bwd = (size_t)(B * NH * T) + (size_t)nthreads * (size_t)(B * T * NH * HS) +
                       2 * (size_t)(B * NH) * nblk * PACKED + (size_t)nthreads * (2 * blk2 + 5 * PACKED);
    return sizeof(float) * (fwd > bwd ? fwd : bwd);
}

/* the largest of x[0 .. n) (-inf for none) */
static float row_max(const float *x, int64_t n) {
    float mx = -INFINITY;
    int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + j));
    float lanes[8];
    _mm256_storeu_ps(lanes, m8);
    for (int e = 0; e < 8; e++) mx = lanes[e] > mx ? lanes[e] : mx;
#endif
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const AttnMask *mk, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    const int64_t G = NH / NKV, nblk = (T + ATT_BLOCK - 1) / ATT_BLOCK;
    const float scale = 1.0f / sqrtf((float)HS);
    const int64_t qs = NH * HS, ks = NKV * HS;   /* row strides */
    const int tiles = use_tiles(HS);
    /* every K block packed as kt and every V block as rows, once: (B, NKV, nblk) blocks each */
    float *kt = malloc(sizeof(float) * (size_t)(B * NKV * nblk) * PACKED);
    float *vr = malloc(sizeof(float) * (size_t)(B * NKV * nblk) * PACKED);
    ASSERT(kt && vr);
    #pragma omp parallel for schedule(static) collapse(3)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < NKV; kh++)
            for (int64_t kb = 0; kb < nblk; kb++) {
                const int64_t k0 = kb * ATT_BLOCK, nk = T - k0 < ATT_BLOCK ? T - k0 : ATT_BLOCK;
                const size_t at = (size_t)((b * NKV + kh) * nblk + kb) * PACKED;
                pack_kt(kt + at, k + (b * T + k0) * ks + kh * HS, ks, nk, HS, tiles);
                pack_rows(vr + at, v + (b * T + k0) * ks + kh * HS, ks, nk, HS, tiles);
            }
    #pragma omp parallel
    {
        float *s = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *acc = malloc(sizeof(float) * ATT_BLOCK * (size_t)HS);
        float *qa = malloc(sizeof(float) * PACKED);   /* the task's Q block, packed as rows */
        float m[ATT_BLOCK], l[ATT_BLOCK];
        ASSERT(s && acc && qa);
        /* (b, h, query block), the heaviest (last, under the causal triangle) first, handed out
         * as threads free up: each task writes only its own rows, so the result does not depend
         * on which thread ran it */
        #pragma omp for schedule(dynamic, 1) collapse(3)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t rev = 0; rev < nblk; rev++) {
                    const int64_t qb = nblk - 1 - rev;
                    const int64_t q0 = qb * ATT_BLOCK, nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
                    const int64_t kh = h / G;
                    if (mk && q0 + nq <= mk->q_from) {   /* rows nobody reads: zeros, no work */
                        for (int64_t i = 0; i < nq; i++) {
                            memset(out + (b * T + q0 + i) * qs + h * HS, 0, sizeof(float) * (size_t)HS);
                            lse[(b * NH + h) * T + q0 + i] = 0;
                        }
                        continue;
                    }
                    const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
                    const float *qp = q + (b * T + q0) * qs + h * HS;
                    if (tiles) pack_rows(qa, qp, qs, nq, HS, tiles);
                    for (int64_t i = 0; i < nq; i++) { m[i] = -INFINITY; l[i] = 0; }
                    memset(acc, 0, sizeof(float) * (size_t)(nq * HS));
                    for (int64_t kb = 0; kb <= qb; kb++) {
                        const int64_t k0 = kb * ATT_BLOCK, nk = T - k0 < ATT_BLOCK ? T - k0 : ATT_BLOCK;
                        int kind = block_kind(mk, doc, q0, q0 + nq, k0, k0 + nk);
                        if (kind == BLOCK_SKIP) continue;
                        const size_t at = (size_t)((b * NKV + kh) * nblk + kb) * PACKED;
                        /* S = scale * Q K^T */
                        blk_abt(s, tiles ? qa : qp, qs, kt + at, nq, nk, HS, scale, q0 - k0, tiles);
                        if (kind == BLOCK_PARTIAL) mask_block(s, mk, doc, q0, nq, k0, nk);
                        for (int64_t i = 0; i < nq; i++) {
                            float *row = s + i * ATT_BLOCK, mx = row_max(row, nk);
                            mx = mx > m[i] ? mx : m[i];
                            if (mx == -INFINITY) { memset(row, 0, sizeof(float) * (size_t)nk); continue; }
                            float alpha = expf(m[i] - mx);   /* rescale what came before */
                            l[i] = l[i] * alpha + exp_shift_sum(row, row, mx, nk);
                            m[i] = mx;
                            if (alpha != 1.0f) for (int64_t d = 0; d < HS; d++) acc[i * HS + d] *= alpha;
                        }
                        /* acc += P V */
                        blk_xy(acc, HS, s, ATT_BLOCK, 0, vr + at, nq, nk, HS, q0 - k0, tiles);
                    }
                    for (int64_t i = 0; i < nq; i++) {
                        float *o = out + (b * T + q0 + i) * qs + h * HS, inv = 1.0f / l[i];
                        for (int64_t d = 0; d < HS; d++) o[d] = acc[i * HS + d] * inv;
                        lse[(b * NH + h) * T + q0 + i] = m[i] + logf(l[i]);
                    }
                }
        free(s);
        free(acc);
        free(qa);
    }
    free(kt);
    free(vr);
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
    const int nthreads = omp_get_max_threads(), tiles = use_tiles(HS);
    float *D = malloc(sizeof(float) * (size_t)(B * NH * T));
    /* each thread zeroes its own dQ buffer: first touch by a write (calloc's zero pages would
     * fault again, with a TLB shootdown, on the first write into each) */
    float *dq_thr = malloc(sizeof(float) * (size_t)nthreads * nq_all);
    /* every Q and dO block packed as rows, once: (B, NH, nblk) blocks each */
    float *qr = malloc(sizeof(float) * (size_t)(B * NH * nblk) * PACKED);
    float *gr = malloc(sizeof(float) * (size_t)(B * NH * nblk) * PACKED);
    ASSERT(D && dq_thr && qr && gr);
    #pragma omp parallel for schedule(static) collapse(2)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < NH; h++) {
                const float *o = out + (b * T + t) * qs + h * HS, *g = dout + (b * T + t) * qs + h * HS;
                float d = 0;
                for (int64_t e = 0; e < HS; e++) d += o[e] * g[e];
                D[(b * NH + h) * T + t] = d;
            }
    #pragma omp parallel for schedule(static) collapse(3)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t qb = 0; qb < nblk; qb++) {
                const int64_t q0 = qb * ATT_BLOCK, nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
                const size_t at = (size_t)((b * NH + h) * nblk + qb) * PACKED;
                pack_rows(qr + at, q + (b * T + q0) * qs + h * HS, qs, nq, HS, tiles);
                pack_rows(gr + at, dout + (b * T + q0) * qs + h * HS, qs, nq, HS, tiles);
            }
    int team = 1;   /* the threads the region really gets (OpenMP may give fewer than asked) */
    #pragma omp parallel num_threads(nthreads)
    {
        float *p = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *dp = malloc(sizeof(float) * ATT_BLOCK * ATT_BLOCK);
        float *dkacc = malloc(sizeof(float) * PACKED), *dvacc = malloc(sizeof(float) * PACKED);
        float *kt = malloc(sizeof(float) * PACKED), *vt = malloc(sizeof(float) * PACKED);
        float *kr = malloc(sizeof(float) * PACKED);
        ASSERT(p && dp && dkacc && dvacc && kt && vt && kr);
        #pragma omp single
        team = omp_get_num_threads();
        float *myq = dq_thr + (size_t)omp_get_thread_num() * nq_all;
        memset(myq, 0, sizeof(float) * nq_all);
        #pragma omp barrier
        /* tasks (b, kv head, key block), the first key blocks the heaviest; dQ makes the
         * assignment part of the result, so it is static: dealt round by round, every other
         * round in reverse thread order, which evens out the causal triangle's work */
        const int64_t ntask = B * NKV * nblk, nround = (ntask + team - 1) / team;
        #pragma omp for schedule(static, 1)
        for (int64_t slot = 0; slot < nround * team; slot++) {
            const int64_t round = slot / team, pos = slot % team;
            const int64_t task = round * team + (round % 2 ? team - 1 - pos : pos);
            if (task >= ntask) continue;
            const int64_t b = task / (NKV * nblk), kh = task / nblk % NKV, kb = task % nblk;
            const int64_t k0 = kb * ATT_BLOCK, nk = T - k0 < ATT_BLOCK ? T - k0 : ATT_BLOCK;
            const int32_t *doc = mk && mk->doc ? mk->doc + b * T : NULL;
            const float *kp = k + (b * T + k0) * ks + kh * HS, *vp = v + (b * T + k0) * ks + kh * HS;
            pack_kt(kt, kp, ks, nk, HS, tiles);
            pack_kt(vt, vp, ks, nk, HS, tiles);
            pack_rows(kr, kp, ks, nk, HS, tiles);
            memset(dkacc, 0, sizeof(float) * (size_t)(nk * HS));
            memset(dvacc, 0, sizeof(float) * (size_t)(nk * HS));
            for (int64_t h = kh * G; h < (kh + 1) * G; h++)
                for (int64_t qb = kb; qb < nblk; qb++) {
                    const int64_t q0 = qb * ATT_BLOCK, nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
                    int kind = block_kind(mk, doc, q0, q0 + nq, k0, k0 + nk);
                    if (kind == BLOCK_SKIP) continue;
                    const float *qp = q + (b * T + q0) * qs + h * HS, *gp = dout + (b * T + q0) * qs + h * HS;
                    const size_t at = (size_t)((b * NH + h) * nblk + qb) * PACKED;
                    const float *lrow = lse + (b * NH + h) * T + q0, *drow = D + (b * NH + h) * T + q0;
                    blk_abt(p, tiles ? qr + at : qp, qs, kt, nq, nk, HS, scale, q0 - k0, tiles);
                    if (kind == BLOCK_PARTIAL) mask_block(p, mk, doc, q0, nq, k0, nk);
                    for (int64_t i = 0; i < nq; i++) exp_shift_sum(p + i * ATT_BLOCK, p + i * ATT_BLOCK, lrow[i], nk);
                    /* dV += P^T dO */
                    blk_xy(dvacc, HS, p, ATT_BLOCK, 1, gr + at, nk, nq, HS, q0 - k0, tiles);
                    /* dP = dO V^T, then scale dS = scale P o (dP - D) in place */
                    blk_abt(dp, tiles ? gr + at : gp, qs, vt, nq, nk, HS, 1.0f, q0 - k0, tiles);
                    for (int64_t i = 0; i < nq; i++) {
                        /* keys after the query: dS = 0 (their dP may not have been computed) */
                        const int64_t lim = keys_upto(q0 + i, k0, nk);
                        for (int64_t j = 0; j < lim; j++)
                            dp[i * ATT_BLOCK + j] = scale * p[i * ATT_BLOCK + j] * (dp[i * ATT_BLOCK + j] - drow[i]);
                        for (int64_t j = lim; j < nk; j++) dp[i * ATT_BLOCK + j] = 0.0f;
                    }
                    /* dK += scale dS^T Q;  dQ += scale dS K */
                    blk_xy(dkacc, HS, dp, ATT_BLOCK, 1, qr + at, nk, nq, HS, q0 - k0, tiles);
                    blk_xy(myq + (b * T + q0) * qs + h * HS, qs, dp, ATT_BLOCK, 0, kr, nq, nk, HS, q0 - k0, tiles);
                }
            for (int64_t j = 0; j < nk; j++) {
                float *dkr = dk + (b * T + k0 + j) * ks + kh * HS, *dvr = dv + (b * T + k0 + j) * ks + kh * HS;
                for (int64_t e = 0; e < HS; e++) { dkr[e] += dkacc[j * HS + e]; dvr[e] += dvacc[j * HS + e]; }
            }
        }
        free(p); free(dp); free(dkacc); free(dvacc); free(kt); free(vt); free(kr);
    }
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nq_all; i++) {
        float s = dq[i];
        for (int t = 0; t < team; t++) s += dq_thr[(size_t)t * nq_all + i];   /* only buffers a thread zeroed */
        dq[i] = s;
    }
    free(dq_thr);
    free(qr);
    free(gr);
    free(D);
}
