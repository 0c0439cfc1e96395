/* RoPE frequencies, attention factor and position rules per scaling method, and the rotary op. */
#include "rope.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void rope_config_default(RopeConfig *rc) {
    memset(rc, 0, sizeof *rc);
    rc->method = ROPE_NONE;
    rc->theta = 10000.0;
    rc->factor = 1.0;
    rc->beta_fast = 32.0;
    rc->beta_slow = 1.0;
    rc->truncate = 1;
    rc->low_freq_factor = 1.0;
    rc->high_freq_factor = 4.0;
}

static const char *const METHOD_NAMES[ROPE_METHOD_COUNT] = {
    [ROPE_NONE] = "default", [ROPE_LINEAR] = "linear", [ROPE_NTK] = "ntk",
    [ROPE_DYNAMIC] = "dynamic", [ROPE_YARN] = "yarn", [ROPE_LONGROPE] = "longrope",
    [ROPE_LLAMA3] = "llama3",
};

const char *rope_method_name(RopeMethod m) {
    return m >= 0 && m < ROPE_METHOD_COUNT ? METHOD_NAMES[m] : "?";
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* HF's get_mscale: 0.1*m*ln(s) + 1, and 1 when s <= 1. */
static double yarn_mscale(double s, double m) { return s <= 1.0 ? 1.0 : 0.1 * m * log(s) + 1.0; }

/* Dimension (in units of the full rotary dim) whose wavelength makes n rotations in length L. */
static double yarn_correction_dim(double n, double dim, double theta, double L) {
    return dim * log(L / (n * 2.0 * M_PI)) / (2.0 * log(theta));
}

int rope_frequencies(RopeTable *rt, const RopeConfig *rc, int64_t hs, int64_t seq_len,
                            char *err, size_t errlen) {
    const int64_t half = hs / 2;
    const double dim = (double)hs;
    const double L0 = (double)rc->original_max_len;
    double theta = rc->theta;
    if (!(theta > 1.0)) return fail(err, errlen, "rope.theta = %g: expected a base > 1", theta);
    if (!(rc->factor >= 1.0))
        return fail(err, errlen, "rope.factor = %g: expected a factor >= 1", rc->factor);
    int needs_L0 = rc->method == ROPE_DYNAMIC || rc->method == ROPE_YARN ||
                   rc->method == ROPE_LONGROPE || rc->method == ROPE_LLAMA3;
    if (needs_L0 && rc->original_max_len <= 0)
        return fail(err, errlen, "rope.original_max_position_embeddings is required for this "
                    "method (the length the checkpoint was pretrained at, e.g. 2048)");
    rt->half = half;
    rt->attention_factor = 1.0;
    rt->keep_positions = 0;

    if (rc->method == ROPE_NTK) theta = theta * pow(rc->factor, dim / (dim - 2.0));
    if (rc->method == ROPE_DYNAMIC) {
        double L = (double)(seq_len > rc->original_max_len ? seq_len : rc->original_max_len);
        theta = theta * pow(rc->factor * L / L0 - (rc->factor - 1.0), dim / (dim - 2.0));
    }
    for (int64_t i = 0; i < half; i++) {
        /* HF: 1 / theta^(2i/dim) */
        rt->inv_freq_orig[i] = 1.0 / pow(rc->theta, (double)(2 * i) / dim);
        rt->inv_freq[i] = 1.0 / pow(theta, (double)(2 * i) / dim);
    }

    switch (rc->method) {
    case ROPE_NONE: case ROPE_NTK: case ROPE_DYNAMIC:
        break;
    case ROPE_LINEAR:
        for (int64_t i = 0; i < half; i++) rt->inv_freq[i] /= rc->factor;
        break;
    case ROPE_YARN: {
        double low = yarn_correction_dim(rc->beta_fast, dim, theta, L0);
        double high = yarn_correction_dim(rc->beta_slow, dim, theta, L0);
        if (rc->truncate) { low = floor(low); high = ceil(high); }
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        for (int64_t i = 0; i < half; i++) {
            double ramp = ((double)i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double extrap = rt->inv_freq[i], interp = extrap / rc->factor;
            rt->inv_freq[i] = interp * ramp + extrap * (1.0 - ramp);
        }
        if (rc->attention_factor > 0) rt->attention_factor = rc->attention_factor;
        else if (rc->mscale > 0 && rc->mscale_all_dim > 0)
            rt->attention_factor = yarn_mscale(rc->factor, rc->mscale) /
                                   yarn_mscale(rc->factor, rc->mscale_all_dim);
        else rt->attention_factor = yarn_mscale(rc->factor, 1.0);
        break;
    }
    case ROPE_LONGROPE: {
        int use_long = seq_len > rc->original_max_len;
        int n = use_long ? rc->n_long : rc->n_short;
        const double *ext = use_long ? rc->long_factor : rc->short_factor;
        if (n != half)
            return fail(err, errlen, "rope.%s has %d values: expected head_dim/2 = %lld",
                        use_long ? "long_factor" : "short_factor", n, (long long)half);
        for (int64_t i = 0; i < half; i++) {
            if (!(ext[i] > 0))
                return fail(err, errlen, "rope.%s[%lld] = %g: expected a factor > 0",
                            use_long ? "long_factor" : "short_factor", (long long)i, ext[i]);
            rt->inv_freq[i] /= ext[i];
        }
        if (rc->attention_factor > 0) rt->attention_factor = rc->attention_factor;
        else if (rc->factor > 1.0) rt->attention_factor = sqrt(1.0 + log(rc->factor) / log(L0));
        rt->keep_positions = rc->keep_positions;
        break;
    }
    case ROPE_LLAMA3: {
        if (!(rc->high_freq_factor > rc->low_freq_factor))
            return fail(err, errlen, "rope.high_freq_factor = %g must exceed rope.low_freq_factor = %g",
                        rc->high_freq_factor, rc->low_freq_factor);
        double low_wl = L0 / rc->low_freq_factor, high_wl = L0 / rc->high_freq_factor;
        for (int64_t i = 0; i < half; i++) {
            double f = rt->inv_freq[i], wl = 2.0 * M_PI / f;
            if (wl < high_wl) continue;
            if (wl > low_wl) { rt->inv_freq[i] = f / rc->factor; continue; }
            double sm = (L0 / wl - rc->low_freq_factor) / (rc->high_freq_factor - rc->low_freq_factor);
            rt->inv_freq[i] = (1.0 - sm) * f / rc->factor + sm * f;
        }
        break;
    }
    default:
        return fail(err, errlen, "rope.scaling: unknown method %d", (int)rc->method);
    }

    if (rc->trunc_b > 0) {
        /* Base truncation (Giraffe): keep f >= b, set a < f < b to rho, zero f <= a. */
        if (!(rc->trunc_a >= 0 && rc->trunc_a < rc->trunc_b))
            return fail(err, errlen, "rope.trunc_a = %g: expected 0 <= trunc_a < trunc_b = %g",
                        rc->trunc_a, rc->trunc_b);
        double rho = rc->trunc_rho > 0 ? rc->trunc_rho : rc->trunc_b;
        for (int64_t i = 0; i < half; i++) {
            double f = rt->inv_freq[i];
            if (f >= rc->trunc_b) continue;
            rt->inv_freq[i] = f > rc->trunc_a ? rho : 0.0;
        }
    }
    return 0;
}

int rope_table_build(RopeTable *rt, const RopeConfig *rc, int64_t hs, int64_t seq_len,
                     char *err, size_t errlen) {
    if (hs <= 0 || hs % 2 != 0 || hs / 2 > ROPE_MAX_PAIRS)
        return fail(err, errlen, "head_dim = %lld: expected an even size in 2..%d",
                    (long long)hs, 2 * ROPE_MAX_PAIRS);
    if (seq_len <= 0) return fail(err, errlen, "sequence length %lld must be > 0", (long long)seq_len);
    if (rope_frequencies(rt, rc, hs, seq_len, err, errlen) != 0) return -1;
    const int64_t half = hs / 2;
    size_t need = (size_t)seq_len * (size_t)half;
    if (need > rt->cap) {
        free(rt->cos); free(rt->sin);
        rt->cos = malloc(need * sizeof(float));
        rt->sin = malloc(need * sizeof(float));
        if (!rt->cos || !rt->sin) {
            free(rt->cos); free(rt->sin); rt->cos = rt->sin = NULL; rt->cap = 0;
            return fail(err, errlen, "out of memory for a RoPE table of %zu entries", need);
        }
        rt->cap = need;
    }
    rt->half = half;
    rt->T = seq_len;
    const double af = rt->attention_factor;
    /* Angles in double from integer positions: exact rotation even at long positions. */
    #pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < seq_len; p++) {
        const double *inv = p < rt->keep_positions ? rt->inv_freq_orig : rt->inv_freq;
        for (int64_t i = 0; i < half; i++) {
            double a = (double)p * inv[i];
            rt->cos[p * half + i] = (float)(cos(a) * af);
            rt->sin[p * half + i] = (float)(sin(a) * af);
        }
    }
    return 0;
}

void rope_table_free(RopeTable *rt) {
    free(rt->cos); free(rt->sin);
    rt->cos = rt->sin = NULL;
    rt->cap = 0;
}

void rope_forward(float *out, const float *x, const RopeTable *rt, const int32_t *pos,
                  int64_t N, int64_t nh, int64_t hs) {
    const int64_t half = hs / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        ASSERT(pos[n] >= 0 && pos[n] < rt->T);
        const float *c = rt->cos + (int64_t)pos[n] * half, *s = rt->sin + (int64_t)pos[n] * half;
        for (int64_t h = 0; h < nh; h++) {
            const float *xi = x + (n * nh + h) * hs;
            float *o = out + (n * nh + h) * hs;
            for (int64_t i = 0; i < half; i++) {
                float a = xi[i], b = xi[i + half];
                o[i] = a * c[i] - b * s[i];
                o[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void rope_backward(float *dx, const float *dout, const RopeTable *rt, const int32_t *pos,
                   int64_t N, int64_t nh, int64_t hs) {
    /* forward: o[i] = a*c - b*s;  o[i+half] = b*c + a*s  (c, s carry the attention factor) */
    const int64_t half = hs / 2;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *c = rt->cos + (int64_t)pos[n] * half, *s = rt->sin + (int64_t)pos[n] * half;
        for (int64_t h = 0; h < nh; h++) {
            const float *d = dout + (n * nh + h) * hs;
            float *g = dx + (n * nh + h) * hs;
            for (int64_t i = 0; i < half; i++) {
                g[i] += d[i] * c[i] + d[i + half] * s[i];
                g[i + half] += d[i + half] * c[i] - d[i] * s[i];
            }
        }
    }
}

int rope_config_check(const RopeConfig *rc, int64_t hs, char *err, size_t errlen) {
    if (hs <= 0 || hs % 2 != 0 || hs / 2 > ROPE_MAX_PAIRS)
        return fail(err, errlen, "head_dim = %lld: expected an even size in 2..%d",
                    (long long)hs, 2 * ROPE_MAX_PAIRS);
    RopeTable rt;
    memset(&rt, 0, sizeof rt);
    if (rope_frequencies(&rt, rc, hs, 1, err, errlen) != 0) return -1;
    /* LongRoPE switches lists past the original length: check the long one too */
    if (rc->original_max_len > 0 &&
        rope_frequencies(&rt, rc, hs, rc->original_max_len + 1, err, errlen) != 0) return -1;
    return 0;
}

/* ---- keys ---- */

static int parse_double(const char *key, const char *v, double *out, char *err, size_t errlen) {
    char *end;
    double x = strtod(v, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == v || *end != '\0' || !isfinite(x))
        return fail(err, errlen, "rope.%s = '%s': expected a number", key, v);
    *out = x;
    return 0;
}

static int parse_int(const char *key, const char *v, int64_t *out, char *err, size_t errlen) {
    double x = 0;
    if (parse_double(key, v, &x, err, errlen) != 0 || x != floor(x) || x < 0 || x > 1e15)
        return fail(err, errlen, "rope.%s = '%s': expected a whole number >= 0", key, v);
    *out = (int64_t)x;
    return 0;
}

static int parse_list(const char *key, const char *v, double *out, int *n, int append,
                      char *err, size_t errlen) {
    if (!append) *n = 0;
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '[' || *p == ']' || *p == '\n') p++;
        if (*p == '\0') return 0;
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x))
            return fail(err, errlen, "rope.%s: '%.20s' is not a number (expected a list of "
                        "head_dim/2 numbers separated by commas)", key, p);
        if (*n >= ROPE_MAX_PAIRS)
            return fail(err, errlen, "rope.%s: more than %d values", key, ROPE_MAX_PAIRS);
        out[(*n)++] = x;
        p = end;
    }
}

#define RK(name, alias, kind, field) {name, alias, kind, offsetof(RopeConfig, field)}
const RopeKey ROPE_KEYS[] = {
    RK("rope_type", "scaling", RK_METHOD, method),
    RK("rope_theta", "theta", RK_DOUBLE, theta),
    RK("factor", NULL, RK_DOUBLE, factor),
    RK("original_max_position_embeddings", "original_max_len", RK_INT, original_max_len),
    RK("max_position_embeddings", "max_len", RK_INT, max_len),
    RK("beta_fast", NULL, RK_DOUBLE, beta_fast),
    RK("beta_slow", NULL, RK_DOUBLE, beta_slow),
    RK("mscale", NULL, RK_DOUBLE, mscale),
    RK("mscale_all_dim", NULL, RK_DOUBLE, mscale_all_dim),
    RK("attention_factor", NULL, RK_DOUBLE, attention_factor),
    RK("truncate", NULL, RK_BOOL, truncate),
    RK("short_factor", NULL, RK_LIST, short_factor),
    RK("long_factor", NULL, RK_LIST, long_factor),
    RK("keep_positions", NULL, RK_INT, keep_positions),
    RK("low_freq_factor", NULL, RK_DOUBLE, low_freq_factor),
    RK("high_freq_factor", NULL, RK_DOUBLE, high_freq_factor),
    RK("trunc_a", NULL, RK_DOUBLE, trunc_a),
    RK("trunc_b", NULL, RK_DOUBLE, trunc_b),
    RK("trunc_rho", NULL, RK_DOUBLE, trunc_rho),
};
#undef RK
const int ROPE_NKEYS = (int)(sizeof ROPE_KEYS / sizeof ROPE_KEYS[0]);

int *rope_list_len(RopeConfig *rc, const RopeKey *k) {
    return k->offset == offsetof(RopeConfig, short_factor) ? &rc->n_short : &rc->n_long;
}

const RopeKey *rope_key_find(const char *name) {
    if (!strcmp(name, "type")) name = "rope_type";   /* older transformers' spelling */
    for (int i = 0; i < ROPE_NKEYS; i++)
        if (!strcmp(name, ROPE_KEYS[i].name) || (ROPE_KEYS[i].alias && !strcmp(name, ROPE_KEYS[i].alias)))
            return &ROPE_KEYS[i];
    return NULL;
}

int rope_method_parse(const char *v, RopeMethod *out) {
    static const struct { const char *name; RopeMethod m; } names[] = {
        {"default", ROPE_NONE}, {"none", ROPE_NONE}, {"linear", ROPE_LINEAR},
        {"ntk", ROPE_NTK}, {"dynamic", ROPE_DYNAMIC}, {"yarn", ROPE_YARN},
        {"longrope", ROPE_LONGROPE}, {"su", ROPE_LONGROPE}, {"llama3", ROPE_LLAMA3},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) { *out = names[i].m; return 0; }
    return -1;
}

int rope_config_set(RopeConfig *rc, const char *key, const char *value, int append,
                    char *err, size_t errlen) {
    const char *v = value;
    while (*v == ' ' || *v == '\t') v++;
    const RopeKey *k = rope_key_find(key);
    if (!k) {
        size_t used = (size_t)snprintf(err, errlen, "rope.%s: unknown key (expected", key);
        for (int i = 0; i < ROPE_NKEYS && used < errlen; i++)
            used += (size_t)snprintf(err + used, errlen - used, "%s %s", i ? "," : "", ROPE_KEYS[i].name);
        if (used < errlen) snprintf(err + used, errlen - used, ")");
        return -1;
    }
    char *field = (char *)rc + k->offset;
    switch (k->kind) {
    case RK_METHOD:
        if (rope_method_parse(v, (RopeMethod *)field) == 0) return 0;
        return fail(err, errlen, "rope.%s = '%s': unknown method (expected one of: none, linear, "
                    "ntk, dynamic, yarn, longrope, llama3)", key, v);
    case RK_DOUBLE: return parse_double(key, v, (double *)field, err, errlen);
    case RK_INT: return parse_int(key, v, (int64_t *)field, err, errlen);
    case RK_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(int *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(int *)field = 0;
        else return fail(err, errlen, "rope.%s = '%s': expected true or false", key, v);
        return 0;
    case RK_LIST:
        return parse_list(key, v, (double *)field, rope_list_len(rc, k), append, err, errlen);
    }
    return fail(err, errlen, "rope.%s: unhandled key kind", key);
}

int rope_check_trainable(const RopeConfig *rc, char *err, size_t errlen) {
    if (rc->method == ROPE_DYNAMIC)
        return fail(err, errlen, "rope.rope_type = dynamic is an inference-time method (its base "
                    "changes with the sequence length) and cannot be trained; train with ntk or yarn "
                    "and evaluate with dynamic");
    return 0;
}
