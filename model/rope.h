/* Rotary position embedding: from a [rope] config (Hugging Face `rope_scaling` keys) to the
 * per-dimension inverse frequencies, the attention factor and per-position rules, and from those
 * to cos/sin tables the rotary op applies. Pairing is HF's rotate_half: element i pairs with
 * i + HS/2. The math for every method is in ../shared/REFERENCES.md.
 */
#ifndef ROPEX_ROPE_H
#define ROPEX_ROPE_H

#include <stddef.h>
#include <stdint.h>

#define ROPE_MAX_PAIRS 512   /* HS/2 at most; head sizes up to 1024 */

typedef enum {
    ROPE_NONE = 0,   /* plain RoPE with rope_theta */
    ROPE_LINEAR,     /* Position Interpolation */
    ROPE_NTK,        /* NTK-aware static base change */
    ROPE_DYNAMIC,    /* dynamic NTK: evaluation only */
    ROPE_YARN,
    ROPE_LONGROPE,
    ROPE_LLAMA3,
    ROPE_METHOD_COUNT
} RopeMethod;

typedef struct {
    RopeMethod method;
    double theta;                /* rope_theta (set it directly for ABF) */
    double factor;               /* s >= 1 */
    int64_t original_max_len;    /* original_max_position_embeddings (0 = unset) */
    int64_t max_len;             /* max_position_embeddings after extension (0 = unset) */
    /* yarn */
    double beta_fast, beta_slow; /* 32, 1 */
    double mscale, mscale_all_dim;   /* 0 = unset */
    double attention_factor;     /* 0 = derive from the method */
    int truncate;                /* yarn: floor/ceil the correction range (default 1) */
    /* longrope */
    int n_short, n_long;         /* lengths of the lists below (must equal HS/2) */
    double short_factor[ROPE_MAX_PAIRS], long_factor[ROPE_MAX_PAIRS];
    int64_t keep_positions;      /* LongRoPE n-hat: positions < this stay unscaled */
    /* llama3 */
    double low_freq_factor, high_freq_factor;   /* 1, 4 */
    /* base truncation (any method): applied after the method when trunc_b > 0 */
    double trunc_a, trunc_b, trunc_rho;
} RopeConfig;

/* Defaults: method none, theta 10000, factor 1, yarn betas 32/1, truncate on, llama3 1/4. */
void rope_config_default(RopeConfig *rc);

/* Method names as Hugging Face writes them in rope_type ("default" for none; "su" is accepted for
 * longrope; "ntk" is ropex's name for the static NTK-aware base change). */
const char *rope_method_name(RopeMethod m);
/* Sets one key from its text value. Keys are Hugging Face's names: rope_type (or type, scaling),
 * rope_theta (or theta), factor, original_max_position_embeddings (or original_max_len),
 * max_position_embeddings (or max_len), beta_fast, beta_slow, mscale, mscale_all_dim,
 * attention_factor, truncate, short_factor, long_factor, low_freq_factor, high_freq_factor, and
 * ropex's keep_positions (LongRoPE n-hat), trunc_a, trunc_b, trunc_rho (base truncation).
 * Lists are comma- or space-separated, with optional [ ]; append = 1 adds to a list instead of
 * replacing it (INI continuation lines). Returns 0, or -1 with a message naming key and form. */
int rope_config_set(RopeConfig *rc, const char *key, const char *value, int append,
                    char *err, size_t errlen);
/* The keys, for code that stores or writes every one (checkpoints, config.json). */
typedef enum { RK_METHOD, RK_DOUBLE, RK_INT, RK_BOOL, RK_LIST } RopeKeyKind;
typedef struct {
    const char *name;     /* Hugging Face's name */
    const char *alias;    /* DESIGN.md's short name, or NULL */
    RopeKeyKind kind;     /* field type: RopeMethod, double, int64_t, int, double[] */
    size_t offset;        /* of the field in RopeConfig */
} RopeKey;
extern const RopeKey ROPE_KEYS[];
extern const int ROPE_NKEYS;
const RopeKey *rope_key_find(const char *name);   /* by name, alias or legacy "type" */
int *rope_list_len(RopeConfig *rc, const RopeKey *k);   /* n_short or n_long for an RK_LIST key */
int rope_method_parse(const char *name, RopeMethod *out);   /* 0, or -1 if unknown */

/* Dynamic NTK depends on the sequence length at inference time and cannot be trained. */
int rope_check_trainable(const RopeConfig *rc, char *err, size_t errlen);

/* What the rotary op applies for one sequence length. */
typedef struct {
    int64_t half;                /* HS/2 */
    int64_t T;                   /* positions 0..T-1 */
    double inv_freq[ROPE_MAX_PAIRS];      /* scaled inverse frequencies */
    double inv_freq_orig[ROPE_MAX_PAIRS]; /* unscaled (theta only), for positions kept unscaled */
    double attention_factor;     /* multiplies both q and k */
    int64_t keep_positions;      /* positions < this use inv_freq_orig */
    float *cos;                  /* (T, HS/2) cos(p * inv) * attention_factor */
    float *sin;                  /* (T, HS/2) */
    size_t cap;                  /* floats allocated in each of cos and sin */
} RopeTable;

/* Only the frequencies, factor and position rule (no cos/sin) for a sequence of seq_len tokens.
 * Returns 0, or -1 with a message in err (errlen bytes) naming the bad key. */
int rope_frequencies(RopeTable *rt, const RopeConfig *rc, int64_t hs, int64_t seq_len,
                     char *err, size_t errlen);
/* Checks a config for head size hs at every sequence length it distinguishes. */
int rope_config_check(const RopeConfig *rc, int64_t hs, char *err, size_t errlen);

/* Fills frequencies and factor for head size hs and a sequence of seq_len tokens (dynamic NTK and
 * LongRoPE depend on it), then the cos/sin for positions 0..seq_len-1. Returns 0, or -1 with a
 * message in err (errlen bytes) naming the bad key. */
int rope_table_build(RopeTable *rt, const RopeConfig *rc, int64_t hs, int64_t seq_len,
                     char *err, size_t errlen);
void rope_table_free(RopeTable *rt);

/* Rotary op, in rows of (N, nh, HS) with positions given per row by pos (N) into the table.
 * out = (x*cos + rotate_half(x)*sin) per head; out may be x (each pair is read before written). */
void rope_forward(float *out, const float *x, const RopeTable *rt, const int32_t *pos,
                  int64_t N, int64_t nh, int64_t hs);
/* dx += d(out)/dx^T dout */
void rope_backward(float *dx, const float *dout, const RopeTable *rt, const int32_t *pos,
                   int64_t N, int64_t nh, int64_t hs);

#endif
