/* ropex model: a Llama-family decoder-only transformer in fp32, forward and hand-written backward.
 *
 * Dimension legend (used in every shape comment under model/):
 *   B batch, T sequence, C model dim, NH query heads, NKV kv heads, HS head size, H ffn hidden,
 *   L layers, V vocab.
 *
 * One parameter buffer holds every tensor under its Hugging Face name (see ParamTable); gradients
 * use the same layout in a second buffer. model_forward saves what backward needs; model_backward
 * ACCUMULATES (+=) into the gradient buffer: the caller zeroes it (model_zero_grad) between steps.
 *
 * Needs: libc, OpenMP, a CBLAS (OpenBLAS). No other module of ropex.
 */
#ifndef ROPEX_MODEL_H
#define ROPEX_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rope.h"

/* ---- errors: I/O and config functions return an RxStatus and fill an RxError ---- */
typedef enum { RX_OK = 0, RX_ERR_CONFIG, RX_ERR_IO, RX_ERR_FORMAT, RX_ERR_NOMEM } RxStatus;
typedef struct { RxStatus code; char msg[512]; } RxError;
/* Sets err (may be NULL) and returns code. */
RxStatus rx_fail(RxError *err, RxStatus code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- configuration ---- */
typedef struct {
    int64_t vocab;        /* V */
    int64_t dim;          /* C */
    int64_t n_layers;     /* L */
    int64_t n_heads;      /* NH */
    int64_t n_kv_heads;   /* NKV; NH must be a multiple of it (grouped-query attention) */
    int64_t head_dim;     /* HS; 0 means C/NH */
    int64_t hidden_dim;   /* H */
    double norm_eps;      /* RMSNorm epsilon */
    int tied;             /* 1: lm_head shares model.embed_tokens.weight */
    RopeConfig rope;      /* theta, scaling method and its keys (rope.h) */
} ModelConfig;

/* Checks that the shape is possible; fills in head_dim when 0. Names the bad field. */
RxStatus model_config_validate(ModelConfig *cfg, RxError *err);
/* Named shapes: "tiny" (the demo fixture's shape, with a 1024-token vocabulary), "smollm-135m",
 * "tinyllama-1.1b". RX_ERR_CONFIG if unknown. */
RxStatus model_config_preset(ModelConfig *cfg, const char *name, RxError *err);

/* Reads a Hugging Face config.json (or DIR/config.json): Llama layout, GQA, head_dim, tied
 * embeddings, rope_theta and rope_scaling. Refuses biases, sliding windows, partial rotary and
 * other architectures by name. Errors name the file and key. */
RxStatus hf_config_load(ModelConfig *cfg, const char *path, RxError *err);

/* ---- parameter table: {HF name, shape, offset} ---- */
#define PARAM_NAME_MAX 96
typedef struct {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[2];
    size_t offset;        /* in floats, into the parameter (or gradient, m, v) buffer */
    size_t numel;
    int decay;            /* 1 for matrices (weight decay applies), 0 for norms and embeddings */
} ParamEntry;

typedef struct {
    ParamEntry *entries;
    int count;
    size_t total;         /* floats in the whole buffer */
} ParamTable;

/* Pointers into one buffer laid out by a ParamTable. */
typedef struct {
    float *ln1;     /* (C)        input_layernorm.weight */
    float *wq;      /* (NH*HS, C) self_attn.q_proj.weight */
    float *wk;      /* (NKV*HS, C) */
    float *wv;      /* (NKV*HS, C) */
    float *wo;      /* (C, NH*HS) self_attn.o_proj.weight */
    float *ln2;     /* (C)        post_attention_layernorm.weight */
    float *wgate;   /* (H, C)     mlp.gate_proj.weight */
    float *wup;     /* (H, C) */
    float *wdown;   /* (C, H) */
} LayerWeights;

typedef struct {
    float *embed;          /* (V, C) model.embed_tokens.weight */
    float *final_norm;     /* (C)    model.norm.weight */
    float *lm_head;        /* (V, C) lm_head.weight, == embed when tied */
    LayerWeights *layer;   /* [L] */
} Weights;

/* Saved activations of one forward pass of B x T tokens (N = B*T rows). The per-layer arrays
 * hold L slots, or one when the model recomputes layers in backward (Model.recompute); the
 * residual stream always keeps every layer's input. */
typedef struct {
    float *resid;   /* (L+1, N, C) residual stream entering each layer; [L] leaves the last */
    float *ln1;     /* (L, N, C) */
    float *rstd1;   /* (L, N) */
    float *q;       /* (L, N, NH*HS) after RoPE */
    float *k;       /* (L, N, NKV*HS) after RoPE */
    float *v;       /* (L, N, NKV*HS) */
    float *att;     /* (L, N, NH*HS) attention output before o_proj */
    float *lse;     /* (L, B, NH, T) per-row log-sum-exp of the attention scores */
    float *mid;     /* (L, N, C) residual after attention */
    float *ln2;     /* (L, N, C) */
    float *rstd2;   /* (L, N) */
    float *gate;    /* (L, N, H) */
    float *up;      /* (L, N, H) */
    float *act;     /* (L, N, H) silu(gate) * up */
    float *lnf;     /* (N, C) final norm output */
    float *rstdf;   /* (N) */
} Activations;

/* Scratch for the backward pass (reused across layers). */
typedef struct {
    float *dresid;  /* (N, C) gradient of the residual stream (and of mid, in a layer's backward) */
    float *dln;     /* (N, C) */
    float *dq;      /* (N, NH*HS) */
    float *dk;      /* (N, NKV*HS) */
    float *dv;      /* (N, NKV*HS) */
    float *datt;    /* (N, NH*HS) */
    float *dgate;   /* (N, H) */
    float *dup;     /* (N, H) */
    float *dact;    /* (N, H) */
    float *dq_pre;  /* (N, NH*HS) gradient before RoPE */
    float *dk_pre;  /* (N, NKV*HS) */
    float *proj;    /* (N, C) forward: output of o_proj / down_proj before the residual add */
    float *logits;  /* (CE_CHUNK, V) one chunk of logits, never T x V */
    float *losses;  /* (CE_CHUNK) */
} Scratch;

typedef struct {
    ModelConfig cfg;
    ParamTable table;
    float *params;         /* table.total floats */
    float *grads;          /* table.total floats, same layout; NULL until model_alloc_grads */
    Weights w, g;          /* views of params and grads */
    /* per-pass state */
    int recompute;         /* 1: keep each layer's input and attention output (and lse) only,
                            * recompute the rest of the layer in backward */
    int64_t B, T;          /* shape the activation buffers were sized for (0 = none) */
    size_t act_slots;      /* layers whose activations the buffer holds (L, or 1) */
    float *act_mem; size_t act_floats;
    float *scr_mem; size_t scr_floats;
    Activations acts;
    Scratch scr;
    RopeTable rope;        /* cos/sin for positions 0..T-1, or 0..pos_len-1 with positions */
    int32_t *pos;          /* (N) position of each row */
    const int32_t *positions; /* (B, T) position id of each token, or NULL for t (0..T-1); borrowed.
                            * Set (with pos_len) for skip-wise positions (PoSE): rows of T tokens
                            * that stand for distances of a longer sequence */
    int64_t pos_len;       /* with positions: every id is < pos_len, and the RoPE table is built
                            * for a sequence of pos_len tokens (dynamic NTK and LongRoPE choose
                            * their frequencies by it) */
    const int32_t *docs;   /* (B, T) document id of each token (non-decreasing per row), or NULL:
                            * when set, attention stays within documents; borrowed */
    int64_t rows_from;     /* model_forward only (evaluation; backward refuses it): rows t <
                            * rows_from of each sequence are not read after the forward, so the
                            * last layer computes attention for rows >= rows_from only (and, with
                            * B = 1, its projections and MLP too); the loss, logits and final
                            * activations of the later rows are then those of rows_from = 0 up to
                            * float32 rounding (shorter matmuls), the earlier rows' are not
                            * meaningful. 0: every row */
    const int32_t *tokens; /* (B, T) of the last forward, borrowed */
    const int32_t *targets;/* (B, T) or NULL; -1 = not counted */
    int64_t n_counted;     /* targets counted in the last forward's loss */
    float loss;            /* mean loss of the last forward (NAN when nothing is counted) */
    int head_done;         /* 1: the last forward already put the LM head's gradient in
                            * scr.dln and grads (model_forward_backward) */
} Model;

/* Tokens per chunk of the LM head + cross-entropy; T x V logits never exist at once. */
#define CE_CHUNK 256

RxStatus model_init(Model *m, const ModelConfig *cfg, RxError *err);   /* params zeroed */
void model_free(Model *m);
RxStatus model_alloc_grads(Model *m, RxError *err);
void model_zero_grad(Model *m);
/* Llama-style init: normal(0, std) matrices and embeddings, ones for norms. Deterministic in seed. */
void model_init_random(Model *m, uint64_t seed, float std);
const ParamEntry *model_param(const Model *m, const char *name);   /* NULL if absent */

/* Exact byte counts for a pass of B x T (computed before any allocation). */
/* attn: attention's transient buffers for one call at the current OpenMP thread count */
typedef struct { size_t params, grads, acts, acts_recompute, scratch, rope, attn; } ModelMemory;
ModelMemory model_memory(const ModelConfig *cfg, int64_t B, int64_t T);
/* Model FLOPs of one training step (forward + backward) per token of a T-token sequence:
 * 6 N_matmul + 6 L T C, N_matmul every matrix weight including the LM head (the embedding when
 * tied; the input embedding lookup is not a matmul), 6 L T C causal attention's QK^T and PV
 * forward and backward. The bench's MFU and the trainer's ETA before a phase has run use it. */
double model_flops_per_token(const ModelConfig *cfg, int64_t T);

/* Forward over tokens (B, T). targets (B, T) may be NULL (no loss: returns NAN). Returns the mean
 * cross-entropy over targets != -1 (NAN if none). Keeps pointers to tokens/targets until backward. */
RxStatus model_forward(Model *m, const int32_t *tokens, const int32_t *targets,
                       int64_t B, int64_t T, float *loss, RxError *err);
/* d(mean loss) into m->grads (accumulating). Needs the forward's targets and model_alloc_grads. */
void model_backward(Model *m);
/* model_forward then model_backward, with the LM head's logits computed once: each chunk's
 * cross-entropy gradient is taken in the forward, as soon as its logits exist, instead of the
 * backward recomputing them (one V x C product per token fewer). Loss and gradients are
 * bit-identical to the two calls. */
RxStatus model_forward_backward(Model *m, const int32_t *tokens, const int32_t *targets,
                                int64_t B, int64_t T, float *loss, RxError *err);
/* Logits (n, V) for rows [row0, row0+n) of the last forward (row = b*T + t). */
void model_logits(Model *m, int64_t row0, int64_t n, float *out);

/* Frees the forward's activation and scratch buffers (the next forward allocates them again):
 * an evaluation that moves from full forwards to a KV cache does not hold both. */
void model_drop_buffers(Model *m);

/* ---- incremental evaluation: a KV cache (nothing trains through it) ----
 * The cache keeps every layer's keys (after RoPE) and values of the tokens it has seen, so
 * tokens appended later cost their own rows through each matrix and their attention rows over
 * the cache instead of a forward over the whole sequence: greedy generation one token at a time,
 * and passkey trials that share their start (the filler before the key) with the trial before.
 * Positions are 0..len-1; setting len lower drops the later positions (attention is causal, so the
 * keys before stay valid). The logits equal the full forward's up to float32 rounding. */
typedef struct KVCache {
    int64_t cap;       /* positions it can hold */
    int64_t len;       /* positions filled */
    float *k, *v;      /* (L, cap, NKV*HS) keys after RoPE, values */
    int32_t *tokens;   /* (cap) the tokens at those positions */
    int32_t *pos;      /* (cap) 0..cap-1 */
    RopeTable rope;    /* the frequencies of the sequence length given to model_cache_for */
    /* the last extension's rows (up to cap): */
    int64_t n, from;   /* rows appended; rows >= from have final-norm outputs */
    float *x, *ln, *mid, *proj;   /* (cap, C) residual, norm outputs (ln: the final norm's at the end), ... */
    float *gate, *up;  /* (cap, H) */
    float *rstd;       /* (cap) */
    float *q, *att;    /* (cap, NH*HS) by position */
    float *lse;        /* (NH, cap) attention's log-sum-exp, or one query's scores */
} KVCache;

/* Allocates a cache of cap positions (RX_ERR_NOMEM with the size); empty, for no length yet. */
RxStatus model_cache_init(const Model *m, KVCache *kc, int64_t cap, RxError *err);
void model_cache_free(KVCache *kc);
/* Prepares kc for a sequence of T tokens: the RoPE table of T (dynamic NTK and LongRoPE choose
 * their frequencies by the length). When those frequencies differ from the cached keys', the
 * cache is emptied (len 0): under dynamic NTK past its original length every new length starts
 * again, which is the full forward's cost and result. */
RxStatus model_cache_for(const Model *m, KVCache *kc, int64_t T, RxError *err);
/* Appends tokens (n) at positions len..len+n-1 (len + n <= the T of model_cache_for); rows before
 * `from` (0 <= from < n) are not read afterwards, so the last layer computes rows >= from only
 * (as Model.rows_from). */
RxStatus model_extend(Model *m, KVCache *kc, const int32_t *tokens, int64_t n, int64_t from, RxError *err);
/* Logits (rows, V) of rows [i, i+rows) of the last extension (i >= its from). */
void model_cache_logits(const Model *m, const KVCache *kc, int64_t i, int64_t rows, float *out);

/* Skip-wise positions (PoSE, Zhu et al. 2024) for Model.positions: rows (rows, T) of T tokens
 * that stand for sequences of len >= T tokens. Each document of a row (docs (rows, T), as
 * Model.docs; NULL: the row is one document) counts from 0, is cut at a point drawn inside it,
 * and its tokens after the cut move on by a skip drawn in 0..len - its length: its relative
 * distances then reach those of len tokens while attention costs those of T. Without document
 * masks pass docs NULL (positions must grow along the row). The draws hash (seed, key, row0 + r):
 * the same arguments give the same positions, with no state to keep. */
void model_pose_positions(int32_t *pos, const int32_t *docs, int64_t rows, int64_t T, int64_t len,
                          uint64_t seed, uint64_t key, int64_t row0);

#endif
