/* ropex eval: perplexity vs length, passkey retrieval, token log-probabilities. */
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/ckpt.h"
#include "../data/util.h"
#include "../model/rng.h"
#include "commands.h"
#include "eval.h"

static const char HELP[] =
    "usage: ropex eval CHECKPOINT [--data DIR] [--domains a,b] [--lengths 2048,4096,8192] [--stride 256]\n"
    "                  [--max-windows N] [--passkey] [--depths 0,0.25,0.5,0.75,1] [--trials N]\n"
    "                  [--tokenizer tokenizer.json] [--set rope.KEY=VALUE ...] [--json OUT.json]\n"
    "                  [--label NAME] [--progress SECONDS]\n"
    "       ropex eval CHECKPOINT --tokens IDS.json [--generate N [--eos ID|none]] [--set rope.KEY=VALUE ...]\n"
    "\n"
    "CHECKPOINT: a ropex .h5 file or hf:DIR (a Hugging Face model directory).\n"
    "Perplexity at each window length over the held-out documents of DIR: sliding windows with a\n"
    "stride, each counting the loss of its last `stride` tokens; with several lengths, only documents\n"
    "longer than the longest are used and windows end at the same places, so every length scores the\n"
    "same tokens with more or less context (with one length, a document's first window counts every\n"
    "token). --max-windows (default 16) bounds the windows per length, spread over the documents.\n"
    "With --passkey, also the passkey retrieval accuracy per (length, depth) cell with random 5-digit\n"
    "keys, plus k_max (the largest length at which every depth succeeds at least 20%). --set\n"
    "changes the RoPE for the evaluation (e.g. PI without training, or dynamic NTK). --tokens\n"
    "prints log p(token | prefix) for a JSON array of ids (as `ropex data tokenize` prints); with\n"
    "--generate N, the N tokens greedy decoding appends to them instead (one forward over the ids,\n"
    "then one row per token against a KV cache; dynamic NTK across its original length, whose\n"
    "frequencies change with the length, runs a full forward per token); it stops after the end-of-\n"
    "sequence token, printed last: --eos ID, else generation_config.json's eos_token_id, else the\n"
    "EOS of the checkpoint's tokenizer.json (--eos none: always N tokens). --domains limits the\n"
    "perplexity to those domains' held-out documents (default: every domain); --label names the\n"
    "model in the JSON (and in `ropex plot`'s legends). A progress line (share of the work done,\n"
    "weighted by each forward's FLOPs, and the time left) goes to stderr every --progress seconds\n"
    "(default 10; 0: after every forward).\n";

/* A comma-separated list of numbers in [lo, hi] (integers when whole), at most cap of them. */
static int64_t parse_list(const char *opt, const char *s, double *out, int cap, double lo, double hi, int whole) {
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        if (n == cap) die("eval %s %s: at most %d values", opt, s, cap);
        out[n] = strtod(t, &end);
        if (end == t || *end) die("eval %s: '%s' in '%s' is not a number", opt, t, s);
        if (!(out[n] >= lo && out[n] <= hi) || (whole && out[n] != floor(out[n])))
            die("eval %s: '%s' in '%s' is not %s %.15g..%.15g", opt, t, s, whole ? "an integer in" : "in", lo, hi);
        n++;
    }
    free(copy);
    if (!n) die("eval %s: no value in '%s'", opt, s);
    return n;
}

/* Held-out documents of every domain of DIR, concatenated. */
static int in_list(const char *list, const char *name) {   /* list: comma-separated; NULL: everything */
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (c != NULL);
    }
    return 0;
}

static int has_domain(const cJSON *manifest, const char *name, size_t len) {
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(manifest, "domains")) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "name"));
        if (n && strlen(n) == len && !strncmp(n, name, len)) return 1;
    }
    return 0;
}

static int32_t *heldout_docs(const char *dir, const char *domains, int64_t **lens, int64_t *n_docs, char *err,
                             size_t errlen) {
    char path[1200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    char *text = data_read_file(path, NULL);
    if (!text) { data_fail(err, errlen, "%s: cannot read", path); return NULL; }
    const cJSON *d, *sh;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); data_fail(err, errlen, "%s: not a JSON object", path); return NULL; }
    for (const char *p = domains; p && *p;) {   /* every domain asked for is in the manifest */
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (!has_domain(root, p, len)) {
            data_fail(err, errlen, "%s: no domain '%.*s' (--domains %s)", path, (int)len, p, domains);
            cJSON_Delete(root);
            return NULL;
        }
        p += len + (c != NULL);
    }
    int32_t *all = NULL;
    size_t total = 0;
    *lens = NULL;
    *n_docs = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(root, "domains")) {
        if (!in_list(domains, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "name")))) continue;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(d, "heldout_shards")) {
            char sp[1400];
            snprintf(sp, sizeof sp, "%s/%s", dir, cJSON_GetStringValue(sh));
            ShardReader r;
            if (shard_open(&r, sp, err, errlen)) { cJSON_Delete(root); free(all); return NULL; }
            all = realloc(all, sizeof(int32_t) * (total + r.n_tokens + 1));
            *lens = realloc(*lens, sizeof(int64_t) * (size_t)(*n_docs + (int64_t)r.n_docs + 1));
            for (uint64_t i = 0; i < r.n_docs; i++) {
                if (shard_read(&r, i, 0, r.doc_len[i], all + total, err, errlen)) { shard_close(&r); cJSON_Delete(root); return NULL; }
                total += r.doc_len[i];
                (*lens)[(*n_docs)++] = (int64_t)r.doc_len[i];
            }
            shard_close(&r);
        }
    }
    cJSON_Delete(root);
    if (!*n_docs) { data_fail(err, errlen, "%s: no held-out documents", dir); return NULL; }
    return all;
}

/* Progress on stderr: a line every `every` seconds (0: after each forward) with the share of the
 * planned work done, each forward weighted by its FLOPs (attention grows with the length, so a
 * window of 8192 tokens weighs more than four of 2048; a passkey trial counts the rows after the
 * start it shares with the trial before), and the time left at the pace so far. */
typedef struct {
    const ModelConfig *cfg;
    double every, t0, last, done, total;
    char what[48];      /* the part running: "perplexity at 8192" */
    int64_t i, n, T;    /* forwards of T tokens done / planned in this part */
} Progress;

/* FLOPs of the first T positions of a forward, up to a constant factor (model_flops_per_token
 * counts a training step: 3x a forward); the rows p..T-1 after a cached start cost W(T) - W(p) */
static double forward_work(const ModelConfig *c, int64_t T) { return model_flops_per_token(c, T) * (double)T; }

static void progress_part(Progress *p, const char *what, int64_t length, int64_t n, int64_t T) {
    snprintf(p->what, sizeof p->what, "%s at %lld", what, (long long)length);
    p->i = 0; p->n = n; p->T = T;
}

static void progress_add(Progress *p, double work) {
    p->i++;
    p->done += work;
    const double now = now_s();
    if (now - p->last < p->every) return;
    p->last = now;
    char el[32], left[32];
    fmt_time(now - p->t0, el, sizeof el);
    fmt_time((now - p->t0) * (p->total - p->done) / p->done, left, sizeof left);
    fprintf(stderr, "eval: %3.0f%%  %s %lld/%lld  elapsed %s  ETA %s\n", 100.0 * p->done / p->total, p->what,
            (long long)p->i, (long long)p->n, el, left);
    fflush(stderr);
}

/* positions two prompts share from their start, short of the last of b (passkey_trial computes
 * the answer rows from there) */
static int64_t common_start(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    int64_t c = 0;
    while (a && c < na && c < nb - 1 && a[c] == b[c]) c++;
    return c;
}

static void progress_tick(void *ctx) {   /* one forward of the part's T tokens */
    Progress *p = ctx;
    progress_add(p, forward_work(p->cfg, p->T));
}

/* The token that ends --generate: --eos ID, else generation_config.json's eos_token_id (the
 * first, when a list), else the EOS of the stored tokenizer.json; -1 for none. */
static int64_t generation_eos(const char *opt, const FileBlobs *files, const char *ckpt, int64_t vocab) {
    if (opt && !strcmp(opt, "none")) return -1;
    if (opt) {
        char *end;
        long long v = strtoll(opt, &end, 10);
        if (*opt == '\0' || *end || v < 0 || v >= vocab)
            die("eval --eos: '%s' is not none or a token id in 0..%lld", opt, (long long)vocab - 1);
        return v;
    }
    for (int i = 0; i < files->n; i++) {
        if (strcmp(files->items[i].name, "generation_config.json")) continue;
        cJSON *root = cJSON_ParseWithLength((const char *)files->items[i].data, files->items[i].len);
        const cJSON *e = root ? cJSON_GetObjectItemCaseSensitive(root, "eos_token_id") : NULL;
        if (cJSON_IsArray(e)) e = cJSON_GetArrayItem(e, 0);
        const double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        const int bad = root && e && !(d >= 0 && d < (double)vocab && d == floor(d));
        const int64_t v = bad ? -1 : (int64_t)d;
        cJSON_Delete(root);
        if (!root) die("%s: generation_config.json is not valid JSON (pass --eos ID or --eos none)", ckpt);
        if (bad) die("%s: generation_config.json: eos_token_id is not a token id in 0..%lld (pass --eos ID or --eos none)",
                     ckpt, (long long)vocab - 1);
        if (e) return v;
    }
    for (int i = 0; i < files->n; i++) {
        if (strcmp(files->items[i].name, "tokenizer.json")) continue;
        char name[1300], err[1024];
        snprintf(name, sizeof name, "%s (its tokenizer.json)", ckpt);
        Tokenizer *t = tokenizer_parse(name, (const char *)files->items[i].data, files->items[i].len, err, sizeof err);
        if (!t) die("%s (pass --eos ID or --eos none)", err);
        int64_t v = tokenizer_eos(t);
        tokenizer_free(t);
        return v < vocab ? v : -1;
    }
    return -1;
}

int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *eos_opt = NULL, *data = NULL, *domains = NULL, *label = NULL, *tok_path = NULL, *json_out = NULL, *tokens_path = NULL;
    double lengths[16] = {2048, 4096, 8192}, depths[16] = {0, 0.25, 0.5, 0.75, 1};
    int64_t n_len = 3, n_dep = 5, stride = 256, max_windows = 16, trials = 5, generate = 0;
    int passkey = 0;
    double progress_every = 10;
    char err[1024];
    for (int i = 0; i < argc; i++) if (is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    Model m;
    RxError e;
    FileBlobs tok_files = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--data") && more) data = argv[++i];
        else if (!strcmp(a, "--domains") && more) domains = argv[++i];
        else if (!strcmp(a, "--label") && more) label = argv[++i];
        else if (!strcmp(a, "--lengths") && more) n_len = parse_list(a, argv[++i], lengths, 16, 2, 1 << 30, 1);
        else if (!strcmp(a, "--depths") && more) n_dep = parse_list(a, argv[++i], depths, 16, 0, 1, 0);
        else if (!strcmp(a, "--stride") && more) stride = parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--max-windows") && more) max_windows = parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--trials") && more) trials = parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--tokenizer") && more) tok_path = argv[++i];
        else if (!strcmp(a, "--json") && more) json_out = argv[++i];
        else if (!strcmp(a, "--tokens") && more) tokens_path = argv[++i];
        else if (!strcmp(a, "--generate") && more) generate = parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--eos") && more) eos_opt = argv[++i];
        else if (!strcmp(a, "--passkey")) passkey = 1;
        else if (!strcmp(a, "--progress") && more) {
            char *end;
            const char *v = argv[++i];
            progress_every = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(progress_every >= 0))
                die("eval: --progress expects seconds >= 0, got '%s'", v);
        }
        else if (!strcmp(a, "--set") && more) i++;
        else if (a[0] == '-') die("eval: unknown or incomplete option '%s' (see ropex eval --help)", a);
        else if (!ckpt) ckpt = a;
        else die("eval: more than one CHECKPOINT ('%s')", a);
    }
    if (!ckpt) die("eval: missing CHECKPOINT (see ropex eval --help)");
    if (eos_opt && !generate) die("eval: --eos goes with --generate N");
    if (!strncmp(ckpt, "hf:", 3) ? hf_import(ckpt + 3, &m, &tok_files, &e) != RX_OK
                                 : ckpt_load(ckpt, &m, NULL, NULL, NULL, &tok_files, &e) != RX_OK)
        die("%s", e.msg);
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            const char *s = argv[++i], *eq = strchr(s, '=');
            if (strncmp(s, "rope.", 5) || !eq) die("eval: --set %s: only rope.KEY=VALUE can be changed for an evaluation", s);
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - s - 5), s + 5);
            if (rope_config_set(&m.cfg.rope, key, eq + 1, 0, err, sizeof err)) die("--set %s: %s", s, err);
        }
    if (model_config_validate(&m.cfg, &e) != RX_OK) die("%s", e.msg);
    /* no backward follows: the forward keeps one layer's activations, not every layer's, with
     * the same results (the demo's fixture, --tokens of 32,768 ids: peak 1.44 GB, not 2.82) */
    m.recompute = 1;
    const char *rope = rope_method_name(m.cfg.rope.method);

    if (tokens_path) {
        size_t len;
        char *text = data_read_file(tokens_path, &len);
        if (!text) die("%s: cannot read", tokens_path);
        long long n;
        int32_t *ids = data_parse_ids(tokens_path, text, len, "this model", (long long)m.cfg.vocab, &n, err, sizeof err);
        free(text);
        if (!ids) die("%s", err);
        if (generate > 0) {   /* greedy continuation, up to N tokens or the EOS */
            const int64_t eos = generation_eos(eos_opt, &tok_files, ckpt, m.cfg.vocab);
            ids = realloc(ids, sizeof(int32_t) * (size_t)(n + generate));
            float *row = malloc(sizeof(float) * (size_t)m.cfg.vocab);
            KVCache kc;   /* the last generated token is never fed back: n + generate - 1 positions */
            if (model_cache_init(&m, &kc, n + generate - 1, &e) != RX_OK) die("%s", e.msg);
            printf("[");
            for (int64_t g = 0; g < generate; g++, n++) {
                /* the tokens not cached yet: the prompt, then the last one generated (all of them
                 * again where the RoPE frequencies change with the length: dynamic NTK) */
                if (model_cache_for(&m, &kc, n, &e) != RX_OK) die("%s", e.msg);
                const int64_t done = kc.len;
                if (model_extend(&m, &kc, ids + done, n - done, n - done - 1, &e) != RX_OK) die("%s", e.msg);
                model_cache_logits(&m, &kc, n - done - 1, 1, row);
                int64_t best = 0;
                for (int64_t v = 1; v < m.cfg.vocab; v++) if (row[v] > row[best]) best = v;
                ids[n] = (int32_t)best;
                printf(g ? ", %lld" : "%lld", (long long)best);
                fflush(stdout);
                if (best == eos) break;
            }
            printf("]\n");
            model_cache_free(&kc);
            free(row);
        } else {
            double *lp = malloc(sizeof(double) * (size_t)(n + 1));
            if (eval_logprobs(&m, ids, n, lp, err, sizeof err)) die("%s", err);
            printf("[null");
            for (int64_t k = 1; k < n; k++) printf(", %.9g", lp[k]);
            printf("]\n");
            free(lp);
        }
        free(ids);
        file_blobs_free(&tok_files);
        model_free(&m);
        return 0;
    }

    Progress prog = {.cfg = &m.cfg, .every = progress_every, .t0 = now_s()};
    prog.last = prog.t0;
    Tokenizer *t = NULL;   /* --passkey: loaded and every length checked before any evaluation */
    int64_t pk_cap = 0;    /* the longest trial; with 16 positions to spare for keys of more tokens */
    if (passkey) {
        char tp[1300];
        if (tok_path || data) {
            snprintf(tp, sizeof tp, tok_path ? "%s" : "%s/tokenizer.json", tok_path ? tok_path : data);
            t = tokenizer_load(tp, err, sizeof err);
        } else {   /* the tokenizer.json stored with the checkpoint */
            const FileBlob *b = NULL;
            for (int i = 0; i < tok_files.n; i++) if (!strcmp(tok_files.items[i].name, "tokenizer.json")) b = &tok_files.items[i];
            if (!b) die("eval --passkey: needs a tokenizer (--tokenizer, --data DIR, or one stored in the checkpoint)");
            snprintf(tp, sizeof tp, "%s (its tokenizer.json)", ckpt);
            t = tokenizer_parse(tp, (const char *)b->data, b->len, err, sizeof err);
        }
        if (!t) die("%s", err);
        int32_t *before = NULL;   /* a prompt of the cell before */
        int64_t n_before = 0;
        for (int64_t i = 0; i < n_len; i++)   /* every length holds a prompt, before any is run */
            for (int64_t j = 0; j < n_dep; j++) {
                int64_t n, n2, kp, na;
                int32_t *ans, *p = passkey_prompt(t, (int64_t)lengths[i], depths[j], 12345, &n, &kp, &ans, &na, err, sizeof err);
                if (!p) die("eval --passkey: %s", err);
                free(ans);
                int32_t *p2 = passkey_prompt(t, (int64_t)lengths[i], depths[j], 67890, &n2, &kp, &ans, &na, err, sizeof err);
                if (!p2) die("eval --passkey: %s", err);
                free(ans);
                /* the trials of a cell share the filler before the key (and the words before its
                 * digits); the first shares with the cell before what its prompt has in common */
                const double full = forward_work(&m.cfg, n + na - 1);
                prog.total += full - forward_work(&m.cfg, common_start(before, n_before, p, n)) +
                              (double)(trials - 1) * (full - forward_work(&m.cfg, common_start(p, n, p2, n2)));
                free(before);
                free(p);
                before = p2;
                n_before = n2;
                if (n + na - 1 > pk_cap) pk_cap = n + na - 1;
            }
        free(before);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "checkpoint", ckpt);
    if (label) cJSON_AddStringToObject(out, "label", label);
    cJSON_AddStringToObject(out, "rope_type", rope);
    cJSON_AddNumberToObject(out, "factor", m.cfg.rope.factor);
    cJSON_AddNumberToObject(out, "original_max_len", (double)m.cfg.rope.original_max_len);
    cJSON_AddNumberToObject(out, "max_len", (double)m.cfg.rope.max_len);
    printf("%s (rope %s x%g, trained lengths %lld -> %lld)\n", ckpt, rope, m.cfg.rope.factor,
           (long long)m.cfg.rope.original_max_len, (long long)m.cfg.rope.max_len);
    if (data) {
        int64_t *lens, nd;
        int32_t *all = heldout_docs(data, domains, &lens, &nd, err, sizeof err);
        if (!all) die("%s", err);
        /* every length is scored on the same tokens: windows end together, each counts its last
         * `stride` targets (with one length, the classic sliding window) */
        int64_t align = 0;
        for (int64_t i = 0; n_len > 1 && i < n_len; i++) if ((int64_t)lengths[i] > align) align = (int64_t)lengths[i];
        int64_t windows[16];   /* the windows each length will run, for the progress */
        for (int64_t i = 0; i < n_len; i++) {
            PplResult r;
            if (eval_perplexity(NULL, all, lens, nd, (int64_t)lengths[i], stride, align, max_windows, NULL, NULL, &r, err, sizeof err))
                die("%s", err);
            windows[i] = r.windows;
            prog.total += (double)r.windows * forward_work(&m.cfg, (int64_t)lengths[i]);
        }
        cJSON *pp = cJSON_AddArrayToObject(out, "perplexity");
        printf("%8s %10s %6s %8s %10s\n", "window", "perplexity", "docs", "windows", "tokens");
        for (int64_t i = 0; i < n_len; i++) {
            PplResult r;
            progress_part(&prog, "perplexity", (int64_t)lengths[i], windows[i], (int64_t)lengths[i]);
            if (eval_perplexity(&m, all, lens, nd, (int64_t)lengths[i], stride, align, max_windows, progress_tick, &prog, &r, err, sizeof err))
                die("%s", err);
            printf("%8lld %10.3f %6lld %8lld %10lld%s\n", (long long)r.window, r.ppl, (long long)r.docs,
                   (long long)r.windows, (long long)r.tokens, r.docs ? "" : "  (no held-out document this long)");
            fflush(stdout);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "window", (double)r.window);
            cJSON_AddNumberToObject(o, "stride", (double)r.stride);
            if (isfinite(r.ppl)) cJSON_AddNumberToObject(o, "ppl", r.ppl); else cJSON_AddNullToObject(o, "ppl");
            cJSON_AddNumberToObject(o, "documents", (double)r.docs);
            cJSON_AddNumberToObject(o, "windows", (double)r.windows);
            cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
            cJSON_AddItemToArray(pp, o);
        }
        free(all);
        free(lens);
    }
    if (passkey) {
        Rng rng = {12345};
        /* the trials share their start (BOS and the filler before the key) with the trial before:
         * a KV cache keeps it; the forward's buffers of the perplexity part are given back first */
        model_drop_buffers(&m);
        KVCache kc;
        if (model_cache_init(&m, &kc, pk_cap + 16, &e) != RX_OK) die("%s", e.msg);
        cJSON *pk = cJSON_AddArrayToObject(out, "passkey");
        printf("passkey accuracy (%lld random keys per cell)\n%8s", (long long)trials, "length");
        for (int64_t j = 0; j < n_dep; j++) printf("  depth %.2f", depths[j]);
        printf("\n");
        int64_t kmax = 0;
        int all_ok_so_far = 1;
        for (int64_t i = 0; i < n_len; i++) {
            char row[16 * 16 + 16];   /* printed whole: progress lines go to stderr between rows */
            int at = snprintf(row, sizeof row, "%8lld", (long long)lengths[i]);
            int row_ok = 1;
            for (int64_t j = 0; j < n_dep; j++) {
                int hits = 0;
                double dist = 0;   /* tokens from the key's sentence to the end of the prompt, mean over the trials */
                for (int64_t k = 0; k < trials; k++) {
                    int key = 10000 + (int)(rng_next(&rng) % 90000);
                    int64_t n, kp, na;
                    int32_t *ans;
                    int32_t *p = passkey_prompt(t, (int64_t)lengths[i], depths[j], key, &n, &kp, &ans, &na, err, sizeof err);
                    if (!p) die("%s", err);
                    if (j == 0 && k == 0) progress_part(&prog, "passkey", (int64_t)lengths[i], n_dep * trials, n + na - 1);
                    int r = passkey_trial(&m, &kc, p, n, ans, na, err, sizeof err);
                    progress_add(&prog, forward_work(&m.cfg, n + na - 1) - forward_work(&m.cfg, kc.len - kc.n));
                    if (r < 0) die("%s", err);
                    hits += r;
                    dist += (double)(n - kp) / (double)trials;
                    free(p); free(ans);
                }
                double acc = (double)hits / (double)trials;
                row_ok &= acc >= 0.2;
                at += snprintf(row + at, sizeof row - (size_t)at, "  %10.2f", acc);
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "length", lengths[i]);
                cJSON_AddNumberToObject(o, "depth", depths[j]);
                cJSON_AddNumberToObject(o, "accuracy", acc);
                cJSON_AddNumberToObject(o, "trials", (double)trials);
                cJSON_AddNumberToObject(o, "key_distance", dist);
                cJSON_AddItemToArray(pk, o);
            }
            printf("%s\n", row);
            fflush(stdout);
            all_ok_so_far &= row_ok;
            if (all_ok_so_far) kmax = (int64_t)lengths[i];
        }
        printf("k_max %lld (largest length at which every depth succeeds at least 20%%)\n", (long long)kmax);
        cJSON_AddNumberToObject(out, "k_max", (double)kmax);
        model_cache_free(&kc);
        tokenizer_free(t);
    }
    if (prog.total > 0) {
        char el[32];
        fmt_time(now_s() - prog.t0, el, sizeof el);
        fprintf(stderr, "eval: done in %s\n", el);
    }
    if (json_out) {
        char *text = cJSON_Print(out);
        FILE *f = fopen(json_out, "w");
        if (!f || fputs(text, f) < 0) die("%s: cannot write", json_out);
        fclose(f);
        free(text);
        printf("results: %s\n", json_out);
    }
    cJSON_Delete(out);
    file_blobs_free(&tok_files);
    model_free(&m);
    return 0;
}
