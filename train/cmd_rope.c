/* ropex rope: the per-dimension table of a scaled RoPE, as text or JSON. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"

static const char HELP[] =
    "usage: ropex rope SOURCE [--set rope.KEY=VALUE ...] [--seq-len T] [--json]\n"
    "\n"
    "Shows what a RoPE configuration does, pair of dimensions by pair: original and scaled\n"
    "inverse frequency and wavelength (tokens per full turn), their ratio, and whether the pair\n"
    "completes a full rotation within the original and the new length; then the attention factor\n"
    "and any per-position rule.\n"
    "\n"
    "SOURCE is one of\n"
    "  CONFIG.ini        a run config ([model] init = ... or preset = NAME, and [rope])\n"
    "  CHECKPOINT.h5     a ropex checkpoint (its stored RoPE configuration)\n"
    "  DIR | config.json a Hugging Face model directory or its config.json (rope_scaling applies)\n"
    "  preset:NAME       a built-in shape: tiny, smollm-135m, tinyllama-1.1b (plain RoPE, 2048)\n"
    "Options\n"
    "  --set rope.KEY=VALUE  override a key (Hugging Face names: rope_type, factor, rope_theta,\n"
    "                    original_max_position_embeddings, max_position_embeddings, beta_fast,\n"
    "                    beta_slow, mscale, mscale_all_dim, attention_factor, truncate,\n"
    "                    short_factor, long_factor, low_freq_factor, high_freq_factor;\n"
    "                    ropex's keep_positions, trunc_a, trunc_b, trunc_rho)\n"
    "  --seq-len T       sequence length for the length-dependent methods (dynamic, longrope);\n"
    "                    default max_position_embeddings\n"
    "  --json            machine-readable output (inv_freq, attention_factor, position rules)\n";

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int load_source(RunConfig *rc, const char *src, char *err, size_t errlen) {
    if (!strncmp(src, "preset:", 7)) {
        snprintf(rc->model_preset, sizeof rc->model_preset, "%s", src + 7);
        snprintf(rc->model_origin, sizeof rc->model_origin, "%s", src);
        return 0;
    }
    if (has_suffix(src, ".ini")) return config_load(rc, src, err, errlen);
    if (has_suffix(src, ".h5")) {
        snprintf(rc->model_init, sizeof rc->model_init, "%s", src);
        snprintf(rc->model_origin, sizeof rc->model_origin, "%s", src);
        return 0;
    }
    snprintf(rc->model_init, sizeof rc->model_init, "hf:%s", src);
    snprintf(rc->model_origin, sizeof rc->model_origin, "%s", src);
    return 0;
}

static double wavelength(double inv) { return inv > 0 ? 2.0 * M_PI / inv : INFINITY; }

int cmd_rope(int argc, char **argv) {
    const char *src = NULL;
    int json = 0;
    int64_t seq_len = 0;
    char err[1024];
    RunConfig rc;
    config_init(&rc);
    /* the source first, so that --set lands on top of it whatever the argument order */
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { fputs(HELP, stdout); return 0; }
        if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--seq-len")) { i++; continue; }
        if (!strcmp(argv[i], "--json")) continue;
        if (argv[i][0] == '-') die("rope: unknown option '%s' (see ropex rope --help)", argv[i]);
        if (src) die("rope: more than one SOURCE ('%s')", argv[i]);
        src = argv[i];
    }
    if (!src) die("rope: missing SOURCE (see ropex rope --help)");
    if (load_source(&rc, src, err, sizeof err) != 0) die("%s", err);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) die("rope: --set needs section.key=value");
            if (config_set(&rc, argv[++i], err, sizeof err) != 0) die("%s", err);
        } else if (!strcmp(argv[i], "--seq-len")) {
            if (i + 1 >= argc) die("rope: --seq-len needs a value");
            seq_len = parse_positive("--seq-len", argv[++i]);
        }
    }
    ModelConfig mc;
    if (config_model(&rc, &mc, err, sizeof err) != 0) die("%s", err);
    config_free(&rc);
    const RopeConfig *r = &mc.rope;
    if (seq_len == 0) seq_len = r->max_len > 0 ? r->max_len : r->original_max_len > 0 ? r->original_max_len : 2048;
    RopeTable t;
    memset(&t, 0, sizeof t);
    if (rope_frequencies(&t, r, mc.head_dim, seq_len, err, sizeof err) != 0) die("%s", err);
    const int64_t L0 = r->original_max_len, L1 = r->max_len;
    int64_t critical = -1;   /* first pair that never completes a turn within the original length */
    for (int64_t i = 0; i < t.half && L0 > 0; i++)
        if (wavelength(t.inv_freq_orig[i]) > (double)L0) { critical = i; break; }

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "rope_type", rope_method_name(r->method));
        cJSON_AddNumberToObject(o, "head_dim", (double)mc.head_dim);
        cJSON_AddNumberToObject(o, "rope_theta", r->theta);
        cJSON_AddNumberToObject(o, "factor", r->factor);
        cJSON_AddNumberToObject(o, "original_max_position_embeddings", (double)L0);
        cJSON_AddNumberToObject(o, "max_position_embeddings", (double)L1);
        cJSON_AddNumberToObject(o, "seq_len", (double)seq_len);
        cJSON_AddNumberToObject(o, "attention_factor", t.attention_factor);
        cJSON *inv = cJSON_AddArrayToObject(o, "inv_freq");
        cJSON *orig = cJSON_AddArrayToObject(o, "inv_freq_original");
        cJSON *wl = cJSON_AddArrayToObject(o, "wavelength");
        for (int64_t i = 0; i < t.half; i++) {
            cJSON_AddItemToArray(inv, cJSON_CreateNumber(t.inv_freq[i]));
            cJSON_AddItemToArray(orig, cJSON_CreateNumber(t.inv_freq_orig[i]));
            double w = wavelength(t.inv_freq[i]);
            cJSON_AddItemToArray(wl, isfinite(w) ? cJSON_CreateNumber(w) : cJSON_CreateNull());
        }
        cJSON_AddNumberToObject(o, "critical_pair", (double)critical);
        cJSON *rules = cJSON_AddObjectToObject(o, "position_rules");
        if (t.keep_positions > 0) cJSON_AddNumberToObject(rules, "keep_positions", (double)t.keep_positions);
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
        return 0;
    }
    printf("rope_type %s, rope_theta %g, factor %g, original length %lld, new length %lld, "
           "head_dim %lld; table for %lld tokens\n", rope_method_name(r->method), r->theta,
           r->factor, (long long)L0, (long long)L1, (long long)mc.head_dim, (long long)seq_len);
    printf("attention factor %.6f (multiplies q and k: attention logits scale by %.6f)\n",
           t.attention_factor, t.attention_factor * t.attention_factor);
    if (t.keep_positions > 0)
        printf("positions < %lld keep the original frequencies (LongRoPE n-hat)\n", (long long)t.keep_positions);
    printf("%5s %14s %14s %14s %14s %8s %9s %9s\n", "pair", "inv_freq", "wavelength", "scaled inv",
           "scaled wl", "ratio", "turn<L0", "turn<L");
    for (int64_t i = 0; i < t.half; i++) {
        double w0 = wavelength(t.inv_freq_orig[i]), w1 = wavelength(t.inv_freq[i]);
        printf("%5lld %14.6e %14.2f %14.6e %14.2f %8.3f %9s %9s\n", (long long)i, t.inv_freq_orig[i],
               w0, t.inv_freq[i], w1, w1 / w0, L0 > 0 ? (w0 <= (double)L0 ? "yes" : "no") : "-",
               L1 > 0 ? (w1 <= (double)L1 ? "yes" : "no") : "-");
    }
    if (critical >= 0)
        printf("critical pair %lld: from it on, no pair completed a full turn within the %lld "
               "pretraining tokens\n", (long long)critical, (long long)L0);
    return 0;
}
