/* Op-level tests: every backward against central finite differences, and the sgemm linear and the
 * attention kernel against naive double-precision references. Shapes are deliberately not
 * multiples of any block size (odd T, C not a multiple of 64 or 16). */
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/ops.h"
#include "../model/rope.h"
#include "../model/vexp.h"
#include "testutil.h"

/* Tolerances for fp32 ops checked by fp32 central differences with the objective in double.
 * h = 1e-2 keeps the truncation error O(h^2) near 1e-4 relative for these smooth ops while the
 * rounding noise of f (about 1e-7 relative per output) over 2h stays near 1e-5; rtol 1e-2 and atol
 * 1e-3 sit an order of magnitude above the worst errors measured for correct gradients (err/tol
 * below 0.1 in every case) and far below what a wrong term gives (err/tol > 10). */
static const FdTol FD_TOL = {1e-2, 1e-3, 1e-2};
/* Cross-entropy's objective is curved more sharply (log-sum-exp over V): a smaller step. */
static const FdTol FD_TOL_CE = {1e-3, 1e-3, 1e-2};

static Rng rng;

static float *vec(size_t n, double scale) {
    float *p = malloc(n * sizeof(float) + 64);
    tu_fill(&rng, p, n, scale);
    return p;
}
static float *zeros(size_t n) { return calloc(n + 16, sizeof(float)); }

static double weighted_sum(const float *out, const float *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

/* ---- embedding ---- */
typedef struct { int64_t N, C; int32_t *tok; float *wte, *dwte, *out, *r; } EmbCtx;
static double emb_f(void *p) {
    EmbCtx *c = p;
    embed_forward(c->out, c->tok, c->wte, c->N, c->C);
    return weighted_sum(c->out, c->r, (size_t)(c->N * c->C));
}
static void emb_g(void *p) { EmbCtx *c = p; embed_backward(c->dwte, c->r, c->tok, c->N, c->C); }
static void test_embed(void) {
    EmbCtx c = {.N = 9, .C = 70};
    int32_t tok[9] = {3, 0, 4, 3, 3, 1, 4, 0, 2};   /* repeats: gradients must add up */
    c.tok = tok;
    c.wte = vec(5 * 70, 1); c.dwte = zeros(5 * 70); c.out = zeros(9 * 70); c.r = vec(9 * 70, 1);
    FdVar v[] = {{"wte", c.wte, c.dwte, 5 * 70}};
    fd_check("embed_backward finite differences", &c, emb_f, emb_g, v, 1, FD_TOL);
    free(c.wte); free(c.dwte); free(c.out); free(c.r);
}

/* ---- rmsnorm ---- */
typedef struct { int64_t N, C; float *x, *w, *dx, *dw, *out, *rstd, *r; } NormCtx;
static double norm_f(void *p) {
    NormCtx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5);
    return weighted_sum(c->out, c->r, (size_t)(c->N * c->C));
}
static void norm_g(void *p) {
    NormCtx *c = p;
    norm_f(p);
    rmsnorm_backward(c->dx, c->dw, c->r, c->x, c->w, c->rstd, c->N, c->C);
}
static void test_rmsnorm(void) {
    NormCtx c = {.N = 5, .C = 67};
    size_t n = 5 * 67;
    c.x = vec(n, 1); c.w = vec(67, 1); c.dx = zeros(n); c.dw = zeros(67);
    c.out = zeros(n); c.rstd = zeros(5); c.r = vec(n, 1);
    FdVar v[] = {{"x", c.x, c.dx, n}, {"w", c.w, c.dw, 67}};
    fd_check("rmsnorm_backward finite differences", &c, norm_f, norm_g, v, 2, FD_TOL);
    free(c.x); free(c.w); free(c.dx); free(c.dw); free(c.out); free(c.rstd); free(c.r);
}

/* ---- linear ---- */
typedef struct { int64_t N, IC, OC; float *x, *w, *dx, *dw, *out, *r; } LinCtx;
static double lin_f(void *p) {
    LinCtx *c = p;
    linear_forward(c->out, c->x, c->w, c->N, c->IC, c->OC, 0);
    return weighted_sum(c->out, c->r, (size_t)(c->N * c->OC));
}
static void lin_g(void *p) {
    LinCtx *c = p;
    linear_backward(c->dx, c->dw, c->r, c->x, c->w, c->N, c->IC, c->OC);
}
static void test_linear(void) {
    LinCtx c = {.N = 7, .IC = 19, .OC = 11};
    size_t nx = 7 * 19, nw = 11 * 19, no = 7 * 11;
    c.x = vec(nx, 1); c.w = vec(nw, 1); c.dx = zeros(nx); c.dw = zeros(nw);
    c.out = zeros(no); c.r = vec(no, 1);
    FdVar v[] = {{"x", c.x, c.dx, nx}, {"w", c.w, c.dw, nw}};
    fd_check("linear_backward finite differences", &c, lin_f, lin_g, v, 2, FD_TOL);

    /* sgemm path vs the naive loop, and the accumulate flag, on a larger odd shape */
    int64_t N = 37, IC = 131, OC = 77;
    float *x = vec((size_t)(N * IC), 1), *w = vec((size_t)(OC * IC), 1);
    float *o1 = zeros((size_t)(N * OC)), *o2 = zeros((size_t)(N * OC));
    linear_forward(o1, x, w, N, IC, OC, 0);
    linear_forward_naive(o2, x, w, N, IC, OC);
    double worst = 0;
    for (int64_t i = 0; i < N * OC; i++) worst = fmax(worst, fabs(o1[i] - o2[i]) / (1e-5 + 1e-5 * fabs(o2[i])));
    linear_forward(o1, x, w, N, IC, OC, 1);   /* now 2x */
    double worst_acc = 0;
    for (int64_t i = 0; i < N * OC; i++)
        worst_acc = fmax(worst_acc, fabs(o1[i] - 2 * o2[i]) / (2e-5 + 1e-5 * fabs(2 * o2[i])));
    /* atol 1e-5, rtol 1e-5: sums of 131 products of O(1) values in fp32 vs double */
    tu_report(worst <= 1 && worst_acc <= 1, "linear_forward sgemm equals naive loop",
              "worst err/tol %.3f, with accumulate %.3f", worst, worst_acc);
    free(x); free(w); free(o1); free(o2);
    free(c.x); free(c.w); free(c.dx); free(c.dw); free(c.out); free(c.r);
}

/* ---- rotary ---- */
typedef struct { int64_t N, nh, hs; RopeTable *rt; int32_t *pos; float *x, *dx, *out, *r; } RopeCtx;
static double rope_f(void *p) {
    RopeCtx *c = p;
    rope_forward(c->out, c->x, c->rt, c->pos, c->N, c->nh, c->hs);
    return weighted_sum(c->out, c->r, (size_t)(c->N * c->nh * c->hs));
}
static void rope_g(void *p) { RopeCtx *c = p; rope_backward(c->dx, c->r, c->rt, c->pos, c->N, c->nh, c->hs); }
static void test_rope_method(const char *name, const RopeConfig *rc) {
    RopeTable rt = {0};
    char err[256];
    int64_t hs = 10, T = 41;
    if (rope_table_build(&rt, rc, hs, T, err, sizeof err) != 0) { tu_report(0, name, "%s", err); return; }
    RopeCtx c = {.N = 6, .nh = 3, .hs = hs, .rt = &rt};
    int32_t pos[6] = {0, 1, 7, 40, 13, 2};
    c.pos = pos;
    size_t n = 6 * 3 * 10;
    c.x = vec(n, 1); c.dx = zeros(n); c.out = zeros(n); c.r = vec(n, 1);
    FdVar v[] = {{"x", c.x, c.dx, n}};
    char title[128];
    snprintf(title, sizeof title, "rope_backward finite differences (%s, attention factor %.4f)",
             name, rt.attention_factor);
    fd_check(title, &c, rope_f, rope_g, v, 1, FD_TOL);
    /* in place equals out of place */
    float *y = zeros(n);
    memcpy(y, c.x, n * sizeof(float));
    rope_forward(y, y, &rt, pos, c.N, c.nh, c.hs);
    rope_forward(c.out, c.x, &rt, pos, c.N, c.nh, c.hs);
    snprintf(title, sizeof title, "rope_forward in place (%s)", name);
    tu_report(memcmp(y, c.out, n * sizeof(float)) == 0, title, NULL);
    free(y); free(c.x); free(c.dx); free(c.out); free(c.r);
    rope_table_free(&rt);
}
static void test_rope(void) {
    RopeConfig rc;
    rope_config_default(&rc);
    test_rope_method("none", &rc);
    rope_config_default(&rc);
    rc.method = ROPE_YARN; rc.factor = 4; rc.original_max_len = 16;
    test_rope_method("yarn", &rc);
    rope_config_default(&rc);
    rc.method = ROPE_LONGROPE; rc.factor = 8; rc.original_max_len = 16; rc.keep_positions = 4;
    rc.n_short = rc.n_long = 5;
    for (int i = 0; i < 5; i++) { rc.short_factor[i] = 1 + 0.1 * i; rc.long_factor[i] = 1 + 2.0 * i; }
    test_rope_method("longrope", &rc);
}

/* ---- attention ---- */
typedef struct {
    int64_t B, T, NH, NKV, HS;
    const AttnMask *mk;
    int flash;   /* 1: tiled kernel, 0: reference kernel */
    int nested;  /* run the tiled kernel from one thread of a parallel region: nested parallelism
                  * is off, so its team (1) is smaller than omp_get_max_threads() */
    float *q, *k, *v, *dq, *dk, *dv, *out, *lse, *r;
} AttCtx;
static double att_f(void *p) {
    AttCtx *c = p;
    (c->flash ? attention_forward : attention_ref_forward)(c->out, c->lse, c->q, c->k, c->v, c->mk,
                                                           c->B, c->T, c->NH, c->NKV, c->HS);
    return weighted_sum(c->out, c->r, (size_t)(c->B * c->T * c->NH * c->HS));
}
static void att_g(void *p) {
    AttCtx *c = p;
    if (c->nested) {
        c->nested = 0;
        #pragma omp parallel num_threads(2)
        #pragma omp single
        att_g(p);
        c->nested = 1;
        return;
    }
    att_f(p);
    (c->flash ? attention_backward : attention_ref_backward)(c->dq, c->dk, c->dv, c->r, c->q, c->k, c->v,
                                                             c->out, c->lse, c->mk, c->B, c->T, c->NH,
                                                             c->NKV, c->HS);
}
static void att_alloc(AttCtx *c) {
    size_t nq = (size_t)(c->B * c->T * c->NH * c->HS), nk = (size_t)(c->B * c->T * c->NKV * c->HS);
    c->q = vec(nq, 1); c->k = vec(nk, 1); c->v = vec(nk, 1);
    c->dq = zeros(nq); c->dk = zeros(nk); c->dv = zeros(nk);
    c->out = zeros(nq); c->lse = zeros((size_t)(c->B * c->NH * c->T)); c->r = vec(nq, 1);
}
static void att_free(AttCtx *c) {
    free(c->q); free(c->k); free(c->v); free(c->dq); free(c->dk); free(c->dv);
    free(c->out); free(c->lse); free(c->r);
}
/* The attention definition with the T x T matrix written out, in double, masks included. */
static double attention_naive_maxerr(const AttCtx *c) {
    const int64_t B = c->B, T = c->T, NH = c->NH, NKV = c->NKV, HS = c->HS, G = NH / NKV;
    double worst = 0;
    double *s = malloc((size_t)T * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < T; t++) {
                const int32_t *doc = c->mk && c->mk->doc ? c->mk->doc + b * T : NULL;
                double m = -INFINITY, z = 0;
                for (int64_t j = 0; j < T; j++) {
                    if (!attn_allowed(c->mk, doc, t, j)) { s[j] = -INFINITY; continue; }
                    double d = 0;
                    for (int64_t e = 0; e < HS; e++)
                        d += (double)c->q[((b * T + t) * NH + h) * HS + e] *
                             c->k[((b * T + j) * NKV + h / G) * HS + e];
                    s[j] = d / sqrt((double)HS);
                    m = fmax(m, s[j]);
                }
                for (int64_t j = 0; j < T; j++) z += s[j] == -INFINITY ? 0 : exp(s[j] - m);
                for (int64_t e = 0; e < HS; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < T; j++)
                        if (s[j] != -INFINITY) o += exp(s[j] - m) / z * c->v[((b * T + j) * NKV + h / G) * HS + e];
                    double got = c->out[((b * T + t) * NH + h) * HS + e];
                    worst = fmax(worst, fabs(got - o) / (1e-6 + 1e-5 * fabs(o)));
                }
                worst = fmax(worst, fabs(c->lse[(b * NH + h) * T + t] - (m + log(z))) / 1e-5);
            }
    free(s);
    return worst;
}
static void test_attention_case(const char *name, int flash, int64_t B, int64_t T, int64_t NH,
                                int64_t NKV, int64_t HS, const AttnMask *mk) {
    AttCtx c = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .mk = mk, .flash = flash};
    att_alloc(&c);
    size_t nq = (size_t)(B * T * NH * HS), nk = (size_t)(B * T * NKV * HS);
    FdVar v[] = {{"q", c.q, c.dq, nq}, {"k", c.k, c.dk, nk}, {"v", c.v, c.dv, nk}};
    char title[200];
    snprintf(title, sizeof title, "%s attention_backward finite differences (%s)", flash ? "tiled" : "reference", name);
    fd_check(title, &c, att_f, att_g, v, 3, FD_TOL);
    att_f(&c);
    double worst = attention_naive_maxerr(&c);
    snprintf(title, sizeof title, "%s attention_forward equals the written-out T x T definition (%s)",
             flash ? "tiled" : "reference", name);
    /* atol 1e-6 / rtol 1e-5 on outputs, 1e-5 on log-sum-exp: fp32 softmax over at most T terms */
    tu_report(worst <= 1, title, "worst err/tol %.3f", worst);
    att_free(&c);
}

/* Tiled kernel against the reference kernel: outputs, lse and all three input gradients.
 * Both are fp32 with different summation orders (register tiles or sgemm on blocks vs per-row
 * loops) and the tiled exp is a polynomial (7e-8 relative): atol 2e-6 and rtol 1e-4 cover them
 * with margin (measured err/tol is printed) while a wrong block, mask or rescale gives errors of
 * order 1. */
static void flash_vs_ref(const char *name, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                         const AttnMask *mk, int nested) {
    AttCtx a = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .mk = mk, .flash = 1, .nested = nested}, r = a;
    r.flash = 0;
    r.nested = 0;
    att_alloc(&a);
    att_alloc(&r);
    size_t nq = (size_t)(B * T * NH * HS), nk = (size_t)(B * T * NKV * HS), nl = (size_t)(B * NH * T);
    memcpy(r.q, a.q, nq * 4); memcpy(r.k, a.k, nk * 4); memcpy(r.v, a.v, nk * 4); memcpy(r.r, a.r, nq * 4);
    if (nested) {   /* leave NaNs in freed heap memory: a per-thread buffer the kernel reads but no
                     * thread zeroed would bring them back */
        size_t n = (size_t)omp_get_max_threads() * nq;
        float *junk = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) junk[i] = NAN;
        free(junk);
    }
    att_g(&a);
    att_g(&r);
    struct { const char *n; const float *x, *y; size_t len; } t[] = {
        {"out", a.out, r.out, nq}, {"lse", a.lse, r.lse, nl}, {"dq", a.dq, r.dq, nq},
        {"dk", a.dk, r.dk, nk}, {"dv", a.dv, r.dv, nk}};
    double worst = 0;
    const char *wn = "";
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        for (size_t j = 0; j < t[i].len; j++) {
            double e = fabs((double)t[i].x[j] - t[i].y[j]) / (2e-6 + 1e-4 * fabs(t[i].y[j]));
            if (!(e <= worst)) { worst = e; wn = t[i].n; }   /* NaN counts as the worst */
        }
    char title[200];
    snprintf(title, sizeof title, "tiled attention equals the reference: out, lse, dq, dk, dv (%s)", name);
    tu_report(worst <= 1, title, "worst err/tol %.3f in %s", worst, wn);
    att_free(&a);
    att_free(&r);
}
static void test_flash_vs_ref(const char *name, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                              int64_t HS, const AttnMask *mk) {
    flash_vs_ref(name, B, T, NH, NKV, HS, mk, 0);
}

static void test_attention(void) {
    test_attention_case("GQA NH=4 NKV=2, B=2, T=13, HS=6", 0, 2, 13, 4, 2, 6, NULL);
    test_attention_case("MHA NH=3 NKV=3, B=1, T=7, HS=5", 0, 1, 7, 3, 3, 5, NULL);
    test_attention_case("MQA NH=3 NKV=1, B=1, T=1, HS=4", 0, 1, 1, 3, 1, 4, NULL);
    test_attention_case("GQA NH=4 NKV=2, B=2, T=13 (one partial block), HS=6", 1, 2, 13, 4, 2, 6, NULL);
    /* documents [0,5) [5,9) [9,13) in row 0, [0,13) in row 1 */
    static int32_t doc_small[26] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    AttnMask docs = {.doc = doc_small};
    test_attention_case("document mask, B=2, T=13", 1, 2, 13, 4, 2, 6, &docs);
    AttnMask lam = {.sink = 2, .window = 4};
    test_attention_case("Lambda mask sink 2 window 4, T=13", 1, 1, 13, 2, 1, 6, &lam);

    /* several blocks, odd T, masks crossing block edges */
    test_flash_vs_ref("causal GQA NH=6 NKV=2, B=2, T=203, HS=16", 2, 203, 6, 2, 16, NULL);
    test_flash_vs_ref("causal MHA, B=1, T=64 (exactly one block), HS=8", 1, 64, 2, 2, 8, NULL);
    test_flash_vs_ref("causal, T=5 (smaller than a block)", 1, 5, 2, 1, 8, NULL);
    /* HS a multiple of the tile width (32 in an AVX-512 build, 16 in an AVX2 one) takes the
     * register tiles, other HS the sgemm path: so HS=16 and 48 test the tiles in an AVX2 build
     * and sgemm in an AVX-512 one, HS=32 and 64 the tiles in both (several slabs; the diagonal
     * blocks skip the slabs and rows the causal mask hides). T=389 leaves a last block of 5 rows
     * (tiles of 6 rows with a remainder), T=262 one of 6 */
    test_flash_vs_ref("causal GQA NH=4 NKV=2, B=1, T=389, HS=64", 1, 389, 4, 2, 64, NULL);
    test_flash_vs_ref("causal MQA NH=3 NKV=1, B=2, T=262, HS=48", 2, 262, 3, 1, 48, NULL);
    test_flash_vs_ref("causal MQA NH=3 NKV=1, B=2, T=262, HS=32", 2, 262, 3, 1, 32, NULL);
    flash_vs_ref("called inside a parallel region, a team smaller than omp_get_max_threads, T=100, HS=16",
                 1, 100, 2, 1, 16, NULL, 1);
    int32_t *doc = malloc(2 * 203 * sizeof(int32_t));
    for (int b = 0; b < 2; b++) {
        int32_t id = 0;
        for (int t = 0; t < 203; t++) {
            if (t > 0 && rng_uniform(&rng) < (b ? 0.005 : 0.03)) id++;
            doc[b * 203 + t] = id;
        }
    }
    AttnMask dm = {.doc = doc};
    test_flash_vs_ref("document mask, random boundaries, B=2, T=203", 2, 203, 6, 2, 16, &dm);
    AttnMask lm = {.sink = 4, .window = 70};
    test_flash_vs_ref("Lambda mask sink 4 window 70, T=203", 2, 203, 6, 3, 16, &lm);
    AttnMask both = {.doc = doc, .sink = 3, .window = 50};
    test_flash_vs_ref("document + Lambda mask, T=203", 2, 203, 4, 2, 16, &both);
    /* the same masks through the register tiles of either build */
    test_flash_vs_ref("document mask, random boundaries, B=2, T=203, HS=32", 2, 203, 6, 2, 32, &dm);
    test_flash_vs_ref("Lambda mask sink 4 window 70, T=203, HS=32", 2, 203, 6, 3, 32, &lm);
    test_flash_vs_ref("document + Lambda mask, T=203, HS=64", 2, 203, 4, 2, 64, &both);
    flash_vs_ref("called inside a parallel region, a team smaller than omp_get_max_threads, T=100, HS=32",
                 1, 100, 2, 1, 32, NULL, 1);
    free(doc);
}

/* attention_decode (one query against cached keys, inference only: no backward) against the
 * reference kernel's last row of the causal sequence those keys and values make; the same
 * tolerance as the tiled kernel's (sgemv sums in another order than the per-row loop) */
static void test_attention_decode(void) {
    const int64_t shapes[][4] = {{1, 4, 2, 6}, {13, 4, 2, 6}, {203, 6, 2, 16}, {300, 9, 3, 64}};   /* T, NH, NKV, HS */
    double worst = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t T = shapes[c][0], NH = shapes[c][1], NKV = shapes[c][2], HS = shapes[c][3];
        float *q = vec((size_t)(T * NH * HS), 1.0), *k = vec((size_t)(T * NKV * HS), 1.0);
        float *v = vec((size_t)(T * NKV * HS), 1.0), *out = zeros((size_t)(T * NH * HS));
        float *lse = zeros((size_t)(NH * T)), *got = zeros((size_t)(NH * HS)), *scores = zeros((size_t)(NH * T));
        attention_ref_forward(out, lse, q, k, v, NULL, 1, T, NH, NKV, HS);
        attention_decode(got, scores, q + (T - 1) * NH * HS, k, v, T, NH, NKV, HS);
        const float *want = out + (T - 1) * NH * HS;
        for (int64_t i = 0; i < NH * HS; i++) {
            double e = fabs((double)got[i] - want[i]) / (2e-6 + 1e-4 * fabs(want[i]));
            if (!(e <= worst)) worst = e;
        }
        free(q); free(k); free(v); free(out); free(lse); free(got); free(scores);
    }
    tu_report(worst <= 1, "attention_decode equals the reference kernel's last row (T = 1, 13, 203, 300; GQA; HS 6, 16, 64)",
              "worst err/tol %.3f", worst);
}

/* ---- swiglu ---- */
typedef struct { int64_t N, H; float *gate, *up, *dgate, *dup, *out, *r; } SwiCtx;
static double swi_f(void *p) {
    SwiCtx *c = p;
    swiglu_forward(c->out, c->gate, c->up, c->N, c->H);
    return weighted_sum(c->out, c->r, (size_t)(c->N * c->H));
}
static void swi_g(void *p) { SwiCtx *c = p; swiglu_backward(c->dgate, c->dup, c->r, c->gate, c->up, c->N, c->H); }
static void test_swiglu(void) {
    SwiCtx c = {.N = 3, .H = 29};
    size_t n = 3 * 29;
    c.gate = vec(n, 3); c.up = vec(n, 1); c.dgate = zeros(n); c.dup = zeros(n);
    c.out = zeros(n); c.r = vec(n, 1);
    FdVar v[] = {{"gate", c.gate, c.dgate, n}, {"up", c.up, c.dup, n}};
    fd_check("swiglu_backward finite differences", &c, swi_f, swi_g, v, 2, FD_TOL);
    /* finite differences only tie the backward to the forward: the forward itself (vector
     * polynomial for 24 columns of a row, expf for the last 5) against the definition in double */
    swiglu_forward(c.out, c.gate, c.up, c.N, c.H);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double g = c.gate[i], want = g / (1.0 + exp(-g)) * c.up[i];
        double err = fabs(c.out[i] - want) / (1e-6 * fabs(want) + 1e-7);
        if (err > worst) { worst = err; at = i; }
    }
    tu_report(worst <= 1.0, "swiglu_forward equals g sigmoid(g) u (double) within 1e-6 relative",
              "worst err/tol %.3f at [%zu]", worst, at);
    free(c.gate); free(c.up); free(c.dgate); free(c.dup); free(c.out); free(c.r);
}

/* ---- residual ---- */
typedef struct { size_t n; float *a, *b, *da, *db, *out, *r; } ResCtx;
static double res_f(void *p) {
    ResCtx *c = p;
    residual_forward(c->out, c->a, c->b, c->n);
    return weighted_sum(c->out, c->r, c->n);
}
static void res_g(void *p) { ResCtx *c = p; residual_backward(c->da, c->db, c->r, c->n); }
static void test_residual(void) {
    ResCtx c = {.n = 53};
    c.a = vec(53, 1); c.b = vec(53, 1); c.da = zeros(53); c.db = zeros(53);
    c.out = zeros(53); c.r = vec(53, 1);
    FdVar v[] = {{"a", c.a, c.da, 53}, {"b", c.b, c.db, 53}};
    fd_check("residual_backward finite differences", &c, res_f, res_g, v, 2, FD_TOL);
    free(c.a); free(c.b); free(c.da); free(c.db); free(c.out); free(c.r);
}

/* ---- cross-entropy ---- */
typedef struct { int64_t n, V; float scale; int32_t *tgt; float *logits, *dlogits, *losses; } CeCtx;
static double ce_f(void *p) {
    CeCtx *c = p;
    crossentropy_forward(c->losses, c->logits, c->tgt, c->n, c->V);
    double s = 0;
    for (int64_t i = 0; i < c->n; i++) s += (double)c->losses[i] * c->scale;
    return s;
}
static void ce_g(void *p) {
    CeCtx *c = p;
    float *tmp = malloc((size_t)(c->n * c->V) * sizeof(float));
    memcpy(tmp, c->logits, (size_t)(c->n * c->V) * sizeof(float));
    crossentropy_backward(tmp, c->tgt, c->scale, c->n, c->V);
    for (int64_t i = 0; i < c->n * c->V; i++) c->dlogits[i] += tmp[i];
    free(tmp);
}
static void test_crossentropy(void) {
    int32_t tgt[5] = {2, -1, 0, 30, 2};   /* one ignored row */
    CeCtx c = {.n = 5, .V = 31, .scale = 0.25f, .tgt = tgt};
    size_t n = 5 * 31;
    c.logits = vec(n, 3); c.dlogits = zeros(n); c.losses = zeros(5);
    FdVar v[] = {{"logits", c.logits, c.dlogits, n}};
    fd_check("crossentropy_backward finite differences (one target ignored)", &c, ce_f, ce_g, v, 1, FD_TOL_CE);
    /* ignored rows add nothing and get zero gradient */
    crossentropy_forward(c.losses, c.logits, tgt, 5, 31);
    int ok = c.losses[1] == 0;
    for (int i = 0; i < 31; i++) ok &= c.dlogits[31 + i] == 0;
    tu_report(ok, "crossentropy ignores targets marked -1", NULL);
    free(c.logits); free(c.dlogits); free(c.losses);
}

/* ---- attention's transient memory ----
 * test_ops is linked with -Wl,--wrap=malloc,--wrap=free (Makefile): while mem_track is set,
 * every block our objects allocate is counted, so the peak that the kernel really holds can be
 * compared with attention_work_bytes, the term the memory estimate (ropex shape, ropex train)
 * adds for it. Only the kernel runs while tracking is on, and it frees all it allocates. */
void *__real_malloc(size_t n);
void __real_free(void *p);
static atomic_int mem_track;
static atomic_size_t mem_now, mem_peak;

void *__wrap_malloc(size_t n) {
    void *p = __real_malloc(n);
    if (p && atomic_load(&mem_track)) {
        const size_t n_held = malloc_usable_size(p);
        size_t now = atomic_fetch_add(&mem_now, n_held) + n_held;
        size_t peak = atomic_load(&mem_peak);
        while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {}
    }
    return p;
}

void __wrap_free(void *p) {
    if (p && atomic_load(&mem_track)) atomic_fetch_sub(&mem_now, malloc_usable_size(p));
    __real_free(p);
}

static void test_attention_memory(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS) {
    const size_t nq = (size_t)(B * T * NH * HS), nk = (size_t)(B * T * NKV * HS);
    float *q = vec(nq, 1), *k = vec(nk, 1), *v = vec(nk, 1), *g = vec(nq, 1);
    float *o = zeros(nq), *lse = zeros((size_t)(B * NH * T)), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    size_t peak[2];
    for (int pass = 0; pass < 2; pass++) {
        atomic_store(&mem_now, 0);
        atomic_store(&mem_peak, 0);
        atomic_store(&mem_track, 1);
        if (pass == 0) attention_forward(o, lse, q, k, v, NULL, B, T, NH, NKV, HS);
        else attention_backward(dq, dk, dv, g, q, k, v, o, lse, NULL, B, T, NH, NKV, HS);
        atomic_store(&mem_track, 0);
        peak[pass] = atomic_load(&mem_peak);
    }
    const size_t est = attention_work_bytes(B, T, NH, NKV, HS, omp_get_max_threads());
    const size_t most = peak[0] > peak[1] ? peak[0] : peak[1];
    /* the estimate counts requested bytes, malloc_usable_size a few more a block: up to a page
     * for each of the four large (mmap'd) ones, 16 bytes for the small ones. So equal within
     * 24 KiB, less than the smallest buffer a term could miss (one packed block, 32 KiB at HS 64;
     * leaving one out per thread is caught), and never below what was held */
    char name[200], why[200];
    snprintf(name, sizeof name, "attention_work_bytes equals the peak the kernel allocates (B=%lld T=%lld NH=%lld "
             "NKV=%lld HS=%lld, %d threads)", (long long)B, (long long)T, (long long)NH, (long long)NKV,
             (long long)HS, omp_get_max_threads());
    snprintf(why, sizeof why, "estimate %zu bytes, measured peak forward %zu, backward %zu", est, peak[0], peak[1]);
    tu_report(most >= est && most <= est + 24576, name, "%s", why);
    free(q); free(k); free(v); free(g); free(o); free(lse); free(dq); free(dk); free(dv);
}

/* The softmax's vectorised exp (16 lanes with AVX-512, 8 with AVX2, then scalar expf) against exp
 * in double of the shifted argument as fp32 computes it (x - m rounded): each element within
 * 2e-7 relative (Cephes' polynomial: < 1e-7, plus the rounding of n ln2), exactly 0 for -inf and
 * below -87, and the returned sum within 1e-6 of the exact one. n = 45 runs every path: two
 * 16-lane, one 8-lane and five scalar elements. */
static void test_vexp(void) {
    enum { N = 45 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = (float)(-80.0 + 84.0 * rng_uniform(&rng));
    x[3] = -INFINITY; x[20] = -200.0f; x[41] = -INFINITY; x[7] = 0.0f; x[30] = 1.5f;
    const float m = 1.5f;
    float sum = exp_shift_sum(y, x, m, N), only = exp_shift_sum(NULL, x, m, N);
    double worst = 0, exact = 0;
    int zeros_ok = 1;
    for (int i = 0; i < N; i++) {
        const float shifted = x[i] - m;
        double want = exp((double)shifted);
        exact += want;
        if (shifted < -87.0f) { zeros_ok = zeros_ok && y[i] == 0.0f; continue; }
        double rel = fabs(y[i] - want) / want;
        if (rel > worst) worst = rel;
    }
    double sum_err = fabs(sum - exact) / exact;
    tu_report(worst < 2e-7 && zeros_ok && sum_err < 1e-6 && only == sum,
              "exp_shift_sum equals exp(x - m) in double (16-, 8-lane and scalar paths, -inf and < -87 give 0)",
              "worst relative error %.2g, zeros %s, sum error %.2g, sum without output %s", worst,
              zeros_ok ? "exact" : "WRONG", sum_err, only == sum ? "equal" : "DIFFERS");
}

int main(void) {
    rng.state = tu_seed(1234);
    test_embed();
    test_rmsnorm();
    test_linear();
    test_rope();
    test_attention();
    test_attention_decode();
    test_attention_memory(2, 300, 4, 2, 64);
    test_attention_memory(1, 2048, 9, 3, 64);
    test_swiglu();
    test_residual();
    test_crossentropy();
    test_vexp();
    return tu_exit();
}
