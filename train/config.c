/* INI run configuration (inih) and --set overrides; see config.h. */
#include "config.h"

#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/ckpt.h"

/* ---- the key table (every key but [rope]'s, which rope.c owns) ---- */

typedef enum { K_STR, K_INT, K_DOUBLE, K_BOOL, K_ENUM, K_PAIR } KeyType;
typedef struct {
    const char *section, *name;
    KeyType type;
    size_t offset, size;      /* field in RunConfig (size for strings) */
    double min, max;          /* numbers */
    const char *choices;      /* K_ENUM: "a|b|c" */
    int frozen;               /* a resumed run may not change it */
    const char *dflt;         /* default as text ("" = empty / none) */
    const char *help;
} Key;

#define F(field) offsetof(RunConfig, field), sizeof(((RunConfig *)0)->field)
static const Key KEYS[] = {
    {"model", "init", K_STR, F(model_init), 0, 0, NULL, 1, "", "CHECKPOINT.h5, hf:DIR or llama2c:FILE to start from"},
    {"model", "preset", K_STR, F(model_preset), 0, 0, NULL, 1, "", "or a built-in shape trained from scratch: tiny, smollm-135m, tinyllama-1.1b"},
    {"model", "vocab_size", K_INT, F(vocab_size), -1, 2147483647, NULL, 1, "-1", "preset override (-1: the preset's)"},
    {"model", "hidden_size", K_INT, F(hidden_size), -1, 1 << 20, NULL, 1, "-1", "preset override"},
    {"model", "num_hidden_layers", K_INT, F(num_hidden_layers), -1, 4096, NULL, 1, "-1", "preset override"},
    {"model", "num_attention_heads", K_INT, F(num_attention_heads), -1, 4096, NULL, 1, "-1", "preset override"},
    {"model", "num_key_value_heads", K_INT, F(num_key_value_heads), -1, 4096, NULL, 1, "-1", "preset override"},
    {"model", "intermediate_size", K_INT, F(intermediate_size), -1, 1 << 22, NULL, 1, "-1", "preset override"},
    {"model", "tie_word_embeddings", K_INT, F(tie_word_embeddings), -1, 1, NULL, 1, "-1", "preset override (0 or 1)"},
    {"model", "init_seed", K_INT, F(init_seed), 0, 1e15, NULL, 1, "1", "seed of a from-scratch initialisation"},
    {"model", "init_std", K_DOUBLE, F(init_std), 0, 1, NULL, 1, "0.02", "std of a from-scratch initialisation"},
    {"data", "dir", K_STR, F(data_dir), 0, 0, NULL, 1, "", "dataset made by `ropex data prepare` (required)"},
    {"data", "mix", K_STR, F(data_mix), 0, 0, NULL, 1, "", "domain weights, e.g. books:0.4 code:0.3 passkey:0.3 (empty: by tokens)"},
    {"data", "seq_len", K_INT, F(seq_len), 1, 1 << 24, NULL, 1, "0", "tokens per sequence (required)"},
    {"data", "short_seq_len", K_INT, F(short_seq_len), 0, 1 << 24, NULL, 0, "0", "warmup: the first short_steps steps cut each sequence into rows of this many tokens"},
    {"data", "short_steps", K_INT, F(short_steps), 0, 1e12, NULL, 0, "0", "... (same data, same tokens per step; 0: off)"},
    {"data", "short_mix", K_STR, F(short_mix), 0, 0, NULL, 1, "", "set: the warmup reads a stream of its own, short_seq_len-token sequences of these weights (whole_docs apply to its rows), and the later steps data.mix from its start"},
    {"data", "pose_len", K_INT, F(pose_len), 0, 1 << 24, NULL, 1, "0", "skip-wise positions (PoSE): training rows shorter than this many tokens take positions whose distances reach it (each document cut at a random point, its rest moved on by a random skip); 0: off. data.seq_len: the warmup's rows; more: every step"},
    {"data", "upsample_below", K_INT, F(upsample_below), 0, 1e15, NULL, 1, "0", "documents shorter than this many tokens ..."},
    {"data", "upsample_keep", K_DOUBLE, F(upsample_keep), 0, 1, NULL, 1, "1", "... are kept with this probability (Fu et al. 2024: 4096, 0.1)"},
    {"data", "whole_docs", K_STR, F(whole_docs), 0, 0, NULL, 1, "", "domains (separated by spaces or commas, * for all) whose documents never cross a sequence boundary: one that does not fit the rest of a sequence starts the next, the rest is padding (no target)"},
    {"data", "add_bos", K_BOOL, F(add_bos), 0, 1, NULL, 1, "true", "start each document with the tokenizer's BOS"},
    {"data", "doc_mask", K_BOOL, F(doc_mask), 0, 1, NULL, 1, "true", "tokens attend only within their document"},
    {"data", "on_corrupt", K_ENUM, F(on_corrupt), 0, 0, "error|skip", 0, "error", "a corrupt document stops the run, or is logged and skipped"},
    {"data", "eval_sequences", K_INT, F(eval_sequences), 0, 1e9, NULL, 0, "8", "held-out sequences per evaluation"},
    {"optim", "lr", K_DOUBLE, F(lr), 0, 10, NULL, 0, "2e-5", "peak learning rate"},
    {"optim", "warmup_steps", K_INT, F(warmup_steps), 0, 1e12, NULL, 0, "20", "linear warmup steps"},
    {"optim", "warmup_start", K_DOUBLE, F(warmup_start), 0, 1, NULL, 0, "0.1", "warmup starts at this fraction of lr"},
    {"optim", "schedule", K_ENUM, F(schedule), 0, 0, "constant|cosine|linear", 0, "constant", "after warmup"},
    {"optim", "min_lr_ratio", K_DOUBLE, F(min_lr_ratio), 0, 1, NULL, 0, "0.1", "cosine/linear decay ends at lr * this"},
    {"optim", "decay_steps", K_INT, F(decay_steps), 0, 1e12, NULL, 0, "0", "steps the cosine/linear decay spans (0: train.steps); more: the run stops part way down it, as that longer run would at train.steps"},
    {"optim", "betas", K_PAIR, F(beta1), 0, 1, NULL, 0, "0.9 0.95", "AdamW beta1 beta2"},
    {"optim", "eps", K_DOUBLE, F(eps), 0, 1, NULL, 0, "1e-8", "AdamW epsilon"},
    {"optim", "weight_decay", K_DOUBLE, F(weight_decay), 0, 10, NULL, 0, "0", "decoupled weight decay (matrices only)"},
    {"optim", "decay_embeddings", K_BOOL, F(decay_embeddings), 0, 1, NULL, 0, "false", "also decay the embedding"},
    {"optim", "decay_norms", K_BOOL, F(decay_norms), 0, 1, NULL, 0, "false", "also decay norm weights"},
    {"optim", "grad_clip", K_DOUBLE, F(grad_clip), 0, 1e12, NULL, 0, "1.0", "global gradient-norm clip (0: off)"},
    {"train", "steps", K_INT, F(steps), 1, 1e12, NULL, 0, "0", "optimizer steps (required)"},
    {"train", "micro_batch", K_INT, F(micro_batch), 1, 1 << 20, NULL, 1, "1", "sequences per forward pass"},
    {"train", "grad_accum", K_INT, F(grad_accum), 1, 1 << 20, NULL, 1, "1", "micro-batches per step"},
    {"train", "out_dir", K_STR, F(out_dir), 0, 0, NULL, 0, "", "run directory: checkpoints, metrics.jsonl (required)"},
    {"train", "save_every", K_INT, F(save_every), 1, 1e12, NULL, 0, "100", "steps between checkpoints"},
    {"train", "keep_last", K_INT, F(keep_last), 1, 1e6, NULL, 0, "3", "checkpoints kept"},
    {"train", "eval_every", K_INT, F(eval_every), 0, 1e12, NULL, 0, "200", "steps between held-out evaluations (0: off)"},
    {"train", "seed", K_INT, F(seed), 0, 1e15, NULL, 1, "1", "data order"},
    {"train", "threads", K_INT, F(threads), 0, 4096, NULL, 0, "0", "OpenMP threads (0: all cores)"},
    {"train", "recompute", K_ENUM, F(recompute), 0, 0, "none|layer", 0, "none", "recompute layers in backward to save memory"},
    {"train", "max_bad_steps", K_INT, F(max_bad_steps), 1, 1e6, NULL, 0, "5", "non-finite steps in a row that stop the run"},
};
#undef F
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static int set_key(RunConfig *rc, const Key *k, const char *v, const char *origin, char *err, size_t errlen) {
    char *field = (char *)rc + k->offset, *end;
    while (*v == ' ' || *v == '\t') v++;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->size) { snprintf(err, errlen, "%s: %s.%s: longer than %zu characters", origin, k->section, k->name, k->size - 1); return -1; }
        snprintf(field, k->size, "%s", v);
        return 0;
    case K_ENUM: {
        size_t n = strlen(v);
        const char *c = k->choices;
        while (c) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            if (len == n && !strncmp(c, v, n)) { snprintf(field, k->size, "%s", v); return 0; }
            c = bar ? bar + 1 : NULL;
        }
        snprintf(err, errlen, "%s: %s.%s = '%s': expected one of %s", origin, k->section, k->name, v, k->choices);
        return -1;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int64_t *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int64_t *)field = 0;
        else { snprintf(err, errlen, "%s: %s.%s = '%s': expected true or false", origin, k->section, k->name, v); return -1; }
        return 0;
    case K_INT: {
        long long x = strtoll(v, &end, 10);
        while (*end == ' ') end++;
        if (end == v || *end || (double)x < k->min || (double)x > k->max) {
            snprintf(err, errlen, "%s: %s.%s = '%s': expected a whole number in %.0f..%.0f", origin, k->section, k->name, v, k->min, k->max);
            return -1;
        }
        *(int64_t *)field = x;
        return 0;
    }
    case K_DOUBLE: case K_PAIR: {
        int n = k->type == K_PAIR ? 2 : 1;
        const char *p = v;
        double x[2];
        for (int i = 0; i < n; i++) {
            x[i] = strtod(p, &end);
            if (end == p || !isfinite(x[i]) || x[i] < k->min || x[i] > k->max) {
                snprintf(err, errlen, "%s: %s.%s = '%s': expected %s in [%g, %g]", origin, k->section, k->name, v,
                         n == 2 ? "two numbers" : "a number", k->min, k->max);
                return -1;
            }
            p = end;
            while (*p == ' ' || *p == ',') p++;
        }
        if (*p) { snprintf(err, errlen, "%s: %s.%s = '%s': unexpected '%s'", origin, k->section, k->name, v, p); return -1; }
        memcpy(field, x, sizeof(double) * (size_t)n);
        return 0;
    }
    }
    return -1;
}

void config_init(RunConfig *rc) {
    memset(rc, 0, sizeof *rc);
    for (int i = 0; i < NKEYS; i++) set_key(rc, &KEYS[i], KEYS[i].dflt, "default", NULL, 0);
}

void config_free(RunConfig *rc) {
    for (int i = 0; i < rc->n_rope; i++) free(rc->rope[i].value);
    rc->n_rope = 0;
}

static const char *section_list = "[model], [rope], [data], [optim] or [train]";

/* One key: checked now, so that the error carries where it came from. */
static int apply(RunConfig *rc, const char *section, const char *key, const char *value,
                 int append, const char *origin, char *err, size_t errlen) {
    char msg[600];
    if (!strcmp(section, "rope")) {
        RopeConfig probe;
        rope_config_default(&probe);
        if (rope_config_set(&probe, key, value, 0, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: %s", origin, msg);
            return -1;
        }
        if (rc->n_rope >= CONFIG_MAX_ENTRIES) {
            snprintf(err, errlen, "%s: more than %d [rope] settings", origin, CONFIG_MAX_ENTRIES);
            return -1;
        }
        ConfigEntry *e = &rc->rope[rc->n_rope++];
        snprintf(e->key, sizeof e->key, "%s", key);
        snprintf(e->origin, sizeof e->origin, "%s", origin);
        e->value = strdup(value);
        e->append = append;
        return 0;
    }
    int known_section = 0;
    for (int i = 0; i < NKEYS; i++) {
        if (strcmp(KEYS[i].section, section)) continue;
        known_section = 1;
        if (strcmp(KEYS[i].name, key)) continue;
        if (set_key(rc, &KEYS[i], value, origin, err, errlen)) return -1;
        if (!strcmp(section, "model") && (!strcmp(key, "init") || !strcmp(key, "preset")))
            snprintf(rc->model_origin, sizeof rc->model_origin, "%s", origin);
        return 0;
    }
    if (!known_section) {
        snprintf(err, errlen, "%s: unknown section [%s] (expected %s)", origin, section, section_list);
        return -1;
    }
    size_t used = (size_t)snprintf(err, errlen, "%s: unknown key %s.%s (expected one of:", origin, section, key);
    for (int i = 0; i < NKEYS && used < errlen; i++)
        if (!strcmp(KEYS[i].section, section)) used += (size_t)snprintf(err + used, errlen - used, " %s", KEYS[i].name);
    if (used < errlen) snprintf(err + used, errlen - used, ")");
    return -1;
}

typedef struct {
    RunConfig *rc;
    const char *origin;
    FILE *f;
    const char *text; size_t pos;   /* or a string */
    int line;               /* lines read so far: the handler runs right after its line is read */
    char err[1200];
    int failed;
    char last_section[32], last_key[64];
} IniCtx;

static char *read_counted_line(char *buf, int size, void *stream) {
    IniCtx *c = stream;
    char *s;
    if (c->f) s = fgets(buf, size, c->f);
    else {
        if (!c->text[c->pos]) return NULL;
        int n = 0;
        while (n < size - 1 && c->text[c->pos]) { char ch = c->text[c->pos++]; buf[n++] = ch; if (ch == '\n') break; }
        buf[n] = 0;
        s = buf;
    }
    if (s) c->line++;
    return s;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    IniCtx *c = user;
    if (c->failed) return 1;   /* keep the first error */
    int append = !strcmp(section, c->last_section) && !strcmp(name, c->last_key);
    snprintf(c->last_section, sizeof c->last_section, "%s", section);
    snprintf(c->last_key, sizeof c->last_key, "%s", name);
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", c->origin, c->line);
    if (apply(c->rc, section, name, value, append, origin, c->err, sizeof c->err) != 0) {
        c->failed = 1;
        return 0;
    }
    return 1;
}

static int parse(IniCtx *c, char *err, size_t errlen) {
    int line = ini_parse_stream(read_counted_line, c, on_key, c);
    if (line == 0) return 0;
    if (line < 0) { snprintf(err, errlen, "%s: cannot read the config", c->origin); return -1; }
    if (c->failed) snprintf(err, errlen, "%s", c->err);
    else snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value; lines are "
                  "limited to %d characters, so continue long lists on indented lines)",
                  c->origin, line, INI_MAX_LINE);
    return -1;
}

int config_load(RunConfig *rc, const char *path, char *err, size_t errlen) {
    IniCtx c = {.rc = rc, .origin = path};
    c.f = fopen(path, "r");
    if (!c.f) { snprintf(err, errlen, "%s: cannot open the config file", path); return -1; }
    int rcode = parse(&c, err, errlen);
    fclose(c.f);
    snprintf(rc->source, sizeof rc->source, "%s", path);
    return rcode;
}

int config_load_string(RunConfig *rc, const char *text, const char *origin, char *err, size_t errlen) {
    IniCtx c = {.rc = rc, .origin = origin, .text = text};
    return parse(&c, err, errlen);
}

int config_set(RunConfig *rc, const char *assignment, char *err, size_t errlen) {
    char origin[300];
    snprintf(origin, sizeof origin, "--set %s", assignment);
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot == assignment || eq == dot + 1) {
        snprintf(err, errlen, "%s: expected section.key=value", origin);
        return -1;
    }
    char section[32], key[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    return apply(rc, section, key, eq + 1, 0, origin, err, errlen);
}

int config_check_train(const RunConfig *rc, char *err, size_t errlen) {
    const char *src = rc->source[0] ? rc->source : "config";
    if (!rc->data_dir[0]) { snprintf(err, errlen, "%s: data.dir is required (a dataset made by `ropex data prepare`)", src); return -1; }
    if (rc->seq_len <= 0) { snprintf(err, errlen, "%s: data.seq_len is required (tokens per sequence, e.g. 8192)", src); return -1; }
    if (rc->short_steps > 0 && (rc->short_seq_len <= 0 || rc->short_seq_len >= rc->seq_len || rc->seq_len % rc->short_seq_len)) {
        snprintf(err, errlen, "%s: data.short_seq_len = %lld must divide data.seq_len = %lld and be smaller (data.short_steps = %lld)",
                 src, (long long)rc->short_seq_len, (long long)rc->seq_len, (long long)rc->short_steps);
        return -1;
    }
    if (rc->short_mix[0] && rc->short_steps == 0) { snprintf(err, errlen, "%s: data.short_mix is set but data.short_steps is 0 (the steps that read it)", src); return -1; }
    if (rc->short_seq_len > 0 && rc->short_steps == 0) { snprintf(err, errlen, "%s: data.short_seq_len is set but data.short_steps is 0 (the steps that use it)", src); return -1; }
    if (rc->pose_len > 0 && rc->pose_len < rc->seq_len) {
        snprintf(err, errlen, "%s: data.pose_len = %lld must be 0 (off) or at least data.seq_len = %lld (the length the rows' positions stand for)",
                 src, (long long)rc->pose_len, (long long)rc->seq_len);
        return -1;
    }
    if (rc->steps <= 0) { snprintf(err, errlen, "%s: train.steps is required (optimizer steps, e.g. 1000)", src); return -1; }
    if (!rc->out_dir[0]) { snprintf(err, errlen, "%s: train.out_dir is required (the run directory)", src); return -1; }
    return 0;
}

int config_model(const RunConfig *rc, ModelConfig *out, char *err, size_t errlen) {
    RxError e;
    if (rc->model_preset[0] && rc->model_init[0]) {
        snprintf(err, errlen, "%s: set either model.init or model.preset, not both", rc->model_origin);
        return -1;
    }
    int overrides = rc->vocab_size >= 0 || rc->hidden_size >= 0 || rc->num_hidden_layers >= 0 ||
                    rc->num_attention_heads >= 0 || rc->num_key_value_heads >= 0 || rc->intermediate_size >= 0 ||
                    rc->tie_word_embeddings >= 0;
    if (overrides && !rc->model_preset[0]) {
        snprintf(err, errlen, "%s: model shape keys (vocab_size, hidden_size, ...) apply to model.preset only; "
                 "a checkpoint brings its own shape", rc->source[0] ? rc->source : "config");
        return -1;
    }
    if (rc->model_preset[0]) {
        if (model_config_preset(out, rc->model_preset, &e) != RX_OK) {
            snprintf(err, errlen, "%s: %s", rc->model_origin, e.msg);
            return -1;
        }
        if (rc->vocab_size >= 0) out->vocab = rc->vocab_size;
        if (rc->hidden_size >= 0) out->dim = rc->hidden_size;
        if (rc->num_hidden_layers >= 0) out->n_layers = rc->num_hidden_layers;
        if (rc->num_attention_heads >= 0) out->n_heads = rc->num_attention_heads;
        if (rc->num_key_value_heads >= 0) out->n_kv_heads = rc->num_key_value_heads;
        if (rc->intermediate_size >= 0) out->hidden_dim = rc->intermediate_size;
        if (rc->tie_word_embeddings >= 0) out->tied = (int)rc->tie_word_embeddings;
        out->head_dim = 0;
    } else if (!strncmp(rc->model_init, "hf:", 3)) {
        if (hf_config_load(out, rc->model_init + 3, &e) != RX_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return -1;
        }
    } else if (!strncmp(rc->model_init, "llama2c:", 8)) {
        Model m;
        if (llama2c_import(rc->model_init + 8, &m, &e) != RX_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return -1;
        }
        *out = m.cfg;
        model_free(&m);
    } else if (rc->model_init[0]) {
        if (ckpt_read_config(rc->model_init, out, &e) != RX_OK) {
            snprintf(err, errlen, "%s: model.init: %s", rc->model_origin, e.msg);
            return -1;
        }
    } else {
        snprintf(err, errlen, "no model given: set [model] init = CHECKPOINT.h5, hf:DIR or llama2c:FILE, or preset = NAME");
        return -1;
    }
    char msg[600];
    for (int i = 0; i < rc->n_rope; i++) {
        const ConfigEntry *en = &rc->rope[i];
        if (rope_config_set(&out->rope, en->key, en->value, en->append, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: %s", en->origin, msg);
            return -1;
        }
    }
    if (model_config_validate(out, &e) != RX_OK) {
        /* a combination of keys, so no single line: name the file */
        if (rc->source[0]) snprintf(err, errlen, "%s: %s", rc->source, e.msg);
        else snprintf(err, errlen, "%s", e.msg);
        return -1;
    }
    return 0;
}

static void key_text(const RunConfig *rc, const Key *k, char *out, size_t n) {
    const char *f = (const char *)rc + k->offset;
    switch (k->type) {
    case K_STR: case K_ENUM: snprintf(out, n, "%s", f); break;
    case K_INT: snprintf(out, n, "%lld", (long long)*(const int64_t *)f); break;
    case K_BOOL: snprintf(out, n, "%s", *(const int64_t *)f ? "true" : "false"); break;
    case K_DOUBLE: snprintf(out, n, "%.17g", *(const double *)f); break;
    case K_PAIR: snprintf(out, n, "%.17g %.17g", ((const double *)f)[0], ((const double *)f)[1]); break;
    }
}

char *config_to_ini(const RunConfig *rc) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    const char *sections[] = {"model", "rope", "data", "optim", "train"};
    for (int si = 0; si < 5; si++) {
        n += (size_t)snprintf(s + n, cap - n, "%s[%s]\n", si ? "\n" : "", sections[si]);
        if (!strcmp(sections[si], "rope")) {
            for (int i = 0; i < rc->n_rope; i++) {
                size_t need = strlen(rc->rope[i].value) + 80;
                if (n + need >= cap) s = realloc(s, cap = (cap + need) * 2);
                /* lists continue on indented lines (inih's 200-character lines) */
                n += (size_t)snprintf(s + n, cap - n, "%s = ", rc->rope[i].key);
                const char *v = rc->rope[i].value;
                size_t col = 0;
                for (const char *p = v; *p; p++) {
                    s[n++] = *p;
                    if (++col > 120 && *p == ',') { n += (size_t)snprintf(s + n, cap - n, "\n  "); col = 0; }
                }
                n += (size_t)snprintf(s + n, cap - n, "\n");
            }
            continue;
        }
        for (int i = 0; i < NKEYS; i++) {
            if (strcmp(KEYS[i].section, sections[si])) continue;
            char v[CONFIG_PATH_MAX + 8];
            key_text(rc, &KEYS[i], v, sizeof v);
            if (n + strlen(v) + 80 >= cap) s = realloc(s, cap *= 2);
            n += (size_t)snprintf(s + n, cap - n, "%s = %s\n", KEYS[i].name, v);
        }
    }
    return s;
}

int config_diff_frozen(const RunConfig *a, const RunConfig *b, char *err, size_t errlen) {
    for (int i = 0; i < NKEYS; i++) {
        if (!KEYS[i].frozen) continue;
        char va[CONFIG_PATH_MAX + 8], vb[CONFIG_PATH_MAX + 8];
        key_text(a, &KEYS[i], va, sizeof va);
        key_text(b, &KEYS[i], vb, sizeof vb);
        if (strcmp(va, vb)) {
            snprintf(err, errlen, "%s.%s: was '%s', now '%s'", KEYS[i].section, KEYS[i].name, va, vb);
            return -1;
        }
    }
    /* [rope]: the settings in order, compared as text */
    for (int i = 0; i < a->n_rope || i < b->n_rope; i++) {
        char xa[300] = "(unset)", xb[300] = "(unset)";
        if (i < a->n_rope) snprintf(xa, sizeof xa, "%s = %.200s", a->rope[i].key, a->rope[i].value);
        if (i < b->n_rope) snprintf(xb, sizeof xb, "%s = %.200s", b->rope[i].key, b->rope[i].value);
        if (strcmp(xa, xb)) {
            snprintf(err, errlen, "[rope] setting %d: was '%s', now '%s'", i + 1, xa, xb);
            return -1;
        }
    }
    return 0;
}

void config_print_keys(FILE *f) {
    const char *last = "";
    for (int i = 0; i < NKEYS; i++) {
        if (strcmp(last, KEYS[i].section)) {
            if (!strcmp(last, "model")) fprintf(f, "[rope]\n  Hugging Face rope_scaling keys (see `ropex rope --help`) [fixed for a run]\n");
            fprintf(f, "[%s]\n", KEYS[i].section);
            last = KEYS[i].section;
        }
        char d[64];
        snprintf(d, sizeof d, "%s", KEYS[i].dflt[0] ? KEYS[i].dflt : "-");
        fprintf(f, "  %-20s %-12s %s%s\n", KEYS[i].name, d, KEYS[i].help, KEYS[i].frozen ? " [fixed for a run]" : "");
    }
}
