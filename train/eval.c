/* Perplexity, passkey retrieval, log-probabilities (eval.h). */
#include "eval.h"
#include "../data/util.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../model/ckpt.h"
#include "../model/rng.h"

int eval_perplexity(Model *m, const int32_t *tokens, const int64_t *doc_len, int64_t n_docs,
                    int64_t window, int64_t stride, int64_t align, int64_t max_windows,
                    EvalTick tick, void *ctx, PplResult *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->window = window;
    out->stride = stride;
    const int aligned = align > 0;   /* compare lengths on the same targets */
    if (aligned && align < window) { data_fail(err, errlen, "perplexity: align %lld < window %lld", (long long)align, (long long)window); return -1; }
    const int64_t need = aligned ? align : window;
    /* max_windows spread over the documents long enough: at most ceil(max / eligible) each */
    int64_t eligible = 0;
    for (int64_t d = 0; d < n_docs; d++) eligible += doc_len[d] >= need + 1;
    const int64_t per_doc = eligible ? (max_windows + eligible - 1) / eligible : 0;
    int32_t *tgt = malloc(sizeof(int32_t) * (size_t)window);
    RxError e;
    const int32_t *doc = tokens;
    for (int64_t d = 0; d < n_docs && out->windows < max_windows; doc += doc_len[d], d++) {
        if (doc_len[d] < need + 1) continue;   /* window tokens + the last target */
        out->docs++;
        const int64_t doc_windows_end = out->windows + per_doc;
        /* windows end at need, need + stride, ...; unaligned, the first window of a document
         * counts every target and the next ones the last `stride`; aligned, every window counts
         * its last `stride`, the same targets whatever the window length */
        for (int64_t end = need; end + 1 <= doc_len[d] && out->windows < max_windows && out->windows < doc_windows_end;
             end += stride) {
            int64_t start = end - window;
            int64_t first_counted = !aligned && end == need ? 0 : window - stride;
            out->windows++;
            if (!m) { out->tokens += window - first_counted; continue; }
            for (int64_t t = 0; t < window; t++) tgt[t] = t >= first_counted ? doc[start + t + 1] : -1;
            float loss;
            m->rows_from = first_counted;   /* only the counted rows' logits are read */
            RxStatus st = model_forward(m, doc + start, tgt, 1, window, &loss, &e);
            m->rows_from = 0;
            if (st != RX_OK) { free(tgt); return data_fail(err, errlen, "%s", e.msg); }
            out->nll += (double)loss * (double)m->n_counted;
            out->tokens += m->n_counted;
            if (tick) tick(ctx);
        }
    }
    free(tgt);
    out->ppl = out->tokens && m ? exp(out->nll / (double)out->tokens) : NAN;
    return 0;
}

static const char FILLER[] = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

static int encode(const Tokenizer *t, const char *s, int32_t **ids, size_t *cap, char *err, size_t errlen) {
    int64_t n = tokenizer_encode(t, s, strlen(s), ids, cap, err, errlen);
    return (int)n;
}

int32_t *passkey_prompt(const Tokenizer *t, int64_t length, double depth, int key, int64_t *n,
                        int64_t *key_pos, int32_t **answer, int64_t *n_answer, char *err, size_t errlen) {
    char keytxt[160], q[] = " What is the pass key? The pass key is";
    snprintf(keytxt, sizeof keytxt, " The pass key is %05d. Remember it. %05d is the pass key.", key, key);
    int32_t *f = NULL, *k = NULL, *qq = NULL, *a = NULL;
    size_t cf = 0, ck = 0, cq = 0, ca = 0;
    int nf = encode(t, FILLER, &f, &cf, err, errlen), nk = encode(t, keytxt, &k, &ck, err, errlen);
    int nq = encode(t, q, &qq, &cq, err, errlen);
    char ans[32];
    snprintf(ans, sizeof ans, " %05d", key);
    int na = encode(t, ans, &a, &ca, err, errlen);
    if (nf <= 0 || nk <= 0 || nq <= 0 || na <= 0) { free(f); free(k); free(qq); free(a); data_fail(err, errlen, "passkey: the tokenizer cannot encode the prompt"); return NULL; }
    int bos = tokenizer_bos(t) >= 0 && tokenizer_bos(t) != tokenizer_eos(t);
    int64_t reps = (length - bos - nk - nq) / nf;
    if (reps < 1) {
        free(f); free(k); free(qq); free(a);
        data_fail(err, errlen, "passkey: length %lld is too short: the key, the question and one filler sentence take %lld tokens",
                  (long long)length, (long long)(bos + nk + nq + nf));
        return NULL;
    }
    int64_t before = (int64_t)floor(depth * (double)reps + 0.5);
    if (before > reps) before = reps;
    int64_t total = bos + reps * nf + nk + nq;
    int32_t *p = malloc(sizeof(int32_t) * (size_t)total), *w = p;
    if (bos) *w++ = tokenizer_bos(t);
    for (int64_t r = 0; r < before; r++) { memcpy(w, f, sizeof(int32_t) * (size_t)nf); w += nf; }
    *key_pos = w - p;
    memcpy(w, k, sizeof(int32_t) * (size_t)nk); w += nk;
    for (int64_t r = before; r < reps; r++) { memcpy(w, f, sizeof(int32_t) * (size_t)nf); w += nf; }
    memcpy(w, qq, sizeof(int32_t) * (size_t)nq); w += nq;
    *n = w - p;
    *answer = a;
    *n_answer = na;
    free(f); free(k); free(qq);
    return p;
}

int passkey_trial(Model *m, KVCache *kc, const int32_t *prompt, int64_t n, const int32_t *answer,
                  int64_t n_answer, char *err, size_t errlen) {
    int64_t T = n + n_answer - 1;
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)T);
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)n);
    memcpy(seq + n, answer, sizeof(int32_t) * (size_t)(n_answer - 1));
    float *logits = malloc(sizeof(float) * (size_t)(n_answer * m->cfg.vocab));
    RxError e;
    RxStatus st;
    if (kc && T <= kc->cap) {
        st = model_cache_for(m, kc, T, &e);
        int64_t same = 0;   /* positions whose keys and values are cached already; the answer rows are computed */
        while (st == RX_OK && same < kc->len && same < n - 1 && kc->tokens[same] == seq[same]) same++;
        kc->len = same;
        if (st == RX_OK) st = model_extend(m, kc, seq + same, T - same, n - 1 - same, &e);
        if (st == RX_OK) model_cache_logits(m, kc, n - 1 - same, n_answer, logits);
    } else {
        m->rows_from = n - 1;   /* only the answer positions' logits are read */
        st = model_forward(m, seq, NULL, 1, T, NULL, &e);
        m->rows_from = 0;
        if (st == RX_OK) model_logits(m, n - 1, n_answer, logits);
    }
    if (st != RX_OK) { free(seq); free(logits); return data_fail(err, errlen, "%s", e.msg); }
    int ok = 1;
    for (int64_t i = 0; i < n_answer; i++) {
        const float *row = logits + i * m->cfg.vocab;
        int64_t best = 0;
        for (int64_t v = 1; v < m->cfg.vocab; v++) if (row[v] > row[best]) best = v;
        ok &= best == answer[i];
    }
    free(seq);
    free(logits);
    return ok;
}

int eval_logprobs(Model *m, const int32_t *tokens, int64_t n, double *logp, char *err, size_t errlen) {
    RxError e;
    if (n < 1) return data_fail(err, errlen, "no tokens");
    if (model_forward(m, tokens, NULL, 1, n, NULL, &e) != RX_OK) return data_fail(err, errlen, "%s", e.msg);
    const int64_t V = m->cfg.vocab;
    float *row = malloc(sizeof(float) * (size_t)V);
    logp[0] = NAN;
    for (int64_t i = 0; i + 1 < n; i++) {
        model_logits(m, i, 1, row);
        float mx = row[0];
        for (int64_t v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
        double s = 0;
        for (int64_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
        logp[i + 1] = (double)row[tokens[i + 1]] - mx - log(s);
    }
    free(row);
    return 0;
}

