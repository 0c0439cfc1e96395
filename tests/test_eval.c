/* Evaluation checks in C: perplexity equals exp(mean loss) of the training forward on the same
 * windows; the passkey prompt puts the key at the requested depth.
 * usage: test_eval TOKENIZER.json */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/model.h"
#include "../model/util.h"
#include "../train/eval.h"
#include "testutil.h"

static void count_tick(void *ctx) { ++*(int *)ctx; }

static void test_ppl(void) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vocab = 97; c.dim = 32; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.hidden_dim = 48; c.norm_eps = 1e-5;
    rope_config_default(&c.rope);
    Model m;
    RxError e;
    ASSERT(model_init(&m, &c, &e) == RX_OK);
    model_init_random(&m, 3, 0.3f);
    const int64_t W = 40, n0 = 3 * W + 1, n1 = W;   /* doc 1 is too short for a window (needs W + 1) */
    int32_t tok[3 * 40 + 1 + 40], tgt[40];
    int64_t lens[2] = {n0, n1};
    Rng r = {8};
    for (int64_t i = 0; i < n0 + n1; i++) tok[i] = (int32_t)(rng_next(&r) % 97);
    PplResult res;
    char err[256];
    ASSERT(eval_perplexity(&m, tok, lens, 2, W, W, 0, 100, NULL, NULL, &res, err, sizeof err) == 0);
    double sum = 0;   /* the same windows through the training forward, every target counted */
    for (int64_t w = 0; w < 3; w++) {
        for (int64_t t = 0; t < W; t++) tgt[t] = tok[w * W + t + 1];
        float loss;
        ASSERT(model_forward(&m, tok + w * W, tgt, 1, W, &loss, &e) == RX_OK);
        sum += loss;
    }
    double want = exp(sum / 3);
    /* equal within 1e-6 relative, not to the bit: the evaluation's forwards are shaped unlike these
     * (OpenBLAS's AVX-512 kernels sum in an order that depends on the matrix shape; measured
     * 1.6e-7 with its Cooperlake kernels, 0 with Haswell's), while one wrong target moves the
     * perplexity by more than 1e-3 */
    const double rel = 1e-6;
    tu_report(fabs(res.ppl - want) <= rel * want && res.windows == 3 && res.docs == 1 && res.tokens == 3 * W,
              "perplexity with stride = window equals exp(mean loss) of the training forward",
              "%.9f vs %.9f, %lld windows over %lld documents", res.ppl, want, (long long)res.windows, (long long)res.docs);
    /* stride < window: the first window counts W targets, each later one `stride` */
    ASSERT(eval_perplexity(&m, tok, lens, 2, W, 16, 0, 100, NULL, NULL, &res, err, sizeof err) == 0);
    tu_report(res.windows == 6 && res.tokens == W + 5 * 16, "sliding windows: the first counts every target, then the last stride",
              "%lld windows, %lld tokens", (long long)res.windows, (long long)res.tokens);
    /* aligned to 2W: windows of W end where windows of 2W do and count the same last 16 targets */
    PplResult a, b;
    ASSERT(eval_perplexity(&m, tok, lens, 2, W, 16, 2 * W, 100, NULL, NULL, &a, err, sizeof err) == 0);
    ASSERT(eval_perplexity(&m, tok, lens, 2, 2 * W, 16, 2 * W, 100, NULL, NULL, &b, err, sizeof err) == 0);
    sum = 0;
    int64_t nw = 0;
    for (int64_t end = 2 * W; end + 1 <= n0; end += 16, nw++) {   /* by hand: window [end - W, end), last 16 */
        for (int64_t t = 0; t < W; t++) tgt[t] = t >= W - 16 ? tok[end - W + t + 1] : -1;
        float loss;
        ASSERT(model_forward(&m, tok + end - W, tgt, 1, W, &loss, &e) == RX_OK);
        sum += loss * 16;
    }
    want = exp(sum / (double)(16 * nw));
    tu_report(a.tokens == b.tokens && a.windows == b.windows && a.tokens == 16 * nw && fabs(a.ppl - want) <= rel * want,
              "aligned windows: every length scores the same targets (the last stride of windows ending together)",
              "%lld windows of %lld and %lld tokens, %lld targets each; ppl %.9f vs %.9f", (long long)a.windows,
              (long long)W, (long long)(2 * W), (long long)a.tokens, a.ppl, want);
    /* the count without a model (ropex eval's progress plan) is the run's, and the tick comes once
     * per window */
    int ok = 1, ticks = 0;
    for (int aligned = 0; aligned <= 1; aligned++)
        for (int64_t mw = 2; mw <= 100; mw += 98) {
            PplResult run, count;
            ticks = 0;
            ASSERT(eval_perplexity(&m, tok, lens, 2, W, 16, aligned ? 2 * W : 0, mw, count_tick, &ticks, &run, err, sizeof err) == 0);
            ASSERT(eval_perplexity(NULL, tok, lens, 2, W, 16, aligned ? 2 * W : 0, mw, NULL, NULL, &count, err, sizeof err) == 0);
            ok = ok && count.windows == run.windows && count.docs == run.docs && count.tokens == run.tokens &&
                 ticks == run.windows && isnan(count.ppl) && run.windows == (mw == 2 ? 2 : aligned ? nw : 6);
        }
    tu_report(ok, "perplexity without a model counts the windows, documents and tokens a run uses; one tick per window",
              NULL);
    model_free(&m);
}

static void test_passkey(const char *tok_path) {
    char err[512];
    Tokenizer *t = tokenizer_load(tok_path, err, sizeof err);
    if (!t) { tu_report(0, "passkey prompt", "%s", err); return; }
    int ok = 1;
    char detail[512] = "";
    for (int d = 0; d <= 4; d++) {
        double depth = d / 4.0;
        int64_t n, kp, na;
        int32_t *ans;
        int32_t *p = passkey_prompt(t, 1000, depth, 54321, &n, &kp, &ans, &na, err, sizeof err);
        ASSERT(p);
        size_t len;
        char *key = tokenizer_decode(t, p + kp, 30, &len, err, sizeof err);
        char *a = tokenizer_decode(t, ans, na, &len, err, sizeof err);
        /* the filler is what is neither the key sentence nor the question (nor BOS) */
        int32_t *tmp = NULL;
        size_t cap = 0;
        const char *ks = " The pass key is 54321. Remember it. 54321 is the pass key.", *qs = " What is the pass key? The pass key is";
        int64_t nk = tokenizer_encode(t, ks, strlen(ks), &tmp, &cap, err, sizeof err);
        int64_t nq = tokenizer_encode(t, qs, strlen(qs), &tmp, &cap, err, sizeof err);
        free(tmp);
        double filler = (double)(n - nk - nq);
        /* the key sentence starts at depth x filler, to within one filler sentence (~25 tokens) */
        int here = fabs((double)kp - depth * filler) <= 30 && strstr(key, "pass key is 54321") &&
                   !strcmp(a, " 54321") && n >= 900 && n <= 1000;
        if (!here) snprintf(detail, sizeof detail, "depth %.2f: key at %lld of %lld ('%s'), answer '%s'", depth,
                            (long long)kp, (long long)n, key, a);
        ok &= here;
        free(key); free(a); free(p); free(ans);
    }
    tu_report(ok, "passkey prompt: the key sentence sits at the requested depth, about the requested length", "%s", detail);
    tokenizer_free(t);
}

int main(int argc, char **argv) {
    tu_seed(0);
    test_ppl();
    if (argc > 1) test_passkey(argv[1]);
    return tu_exit();
}
