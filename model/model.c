/* Model composition: configuration, the parameter table, buffers, forward and backward. */
#include <omp.h>
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "rng.h"
#include "util.h"

RxStatus rx_fail(RxError *err, RxStatus code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* ---- configuration ---- */

RxStatus model_config_validate(ModelConfig *c, RxError *err) {
#define NEED(cond, ...) do { if (!(cond)) return rx_fail(err, RX_ERR_CONFIG, __VA_ARGS__); } while (0)
    NEED(c->vocab > 0 && c->vocab <= INT32_MAX, "model.vocab_size = %lld: expected 1..%d",
         (long long)c->vocab, INT32_MAX);
    NEED(c->dim > 0, "model.hidden_size = %lld: expected > 0", (long long)c->dim);
    NEED(c->n_layers > 0, "model.num_hidden_layers = %lld: expected > 0", (long long)c->n_layers);
    NEED(c->n_heads > 0, "model.num_attention_heads = %lld: expected > 0", (long long)c->n_heads);
    NEED(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
         "model.num_key_value_heads = %lld: expected a divisor of num_attention_heads = %lld",
         (long long)c->n_kv_heads, (long long)c->n_heads);
    if (c->head_dim == 0) {
        NEED(c->dim % c->n_heads == 0, "model.hidden_size = %lld is not divisible by "
             "num_attention_heads = %lld; set model.head_dim", (long long)c->dim, (long long)c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    NEED(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim / 2 <= ROPE_MAX_PAIRS,
         "model.head_dim = %lld: expected an even size in 2..%d (RoPE rotates pairs)",
         (long long)c->head_dim, 2 * ROPE_MAX_PAIRS);
    NEED(c->hidden_dim > 0, "model.intermediate_size = %lld: expected > 0", (long long)c->hidden_dim);
    NEED(c->norm_eps > 0 && c->norm_eps < 1, "model.rms_norm_eps = %g: expected 0 < eps < 1", c->norm_eps);
    char msg[400];
    if (rope_config_check(&c->rope, c->head_dim, msg, sizeof msg) != 0)
        return rx_fail(err, RX_ERR_CONFIG, "%s", msg);
    return RX_OK;
#undef NEED
}

RxStatus model_config_preset(ModelConfig *c, const char *name, RxError *err) {
    static const struct { const char *name; int64_t V, C, L, NH, NKV, H; int tied; } presets[] = {
        /* the demo fixture's shape, 3.4M parameters (the fixture sets vocab_size 258: 3.2M) */
        {"tiny", 1024, 256, 4, 4, 2, 768, 1},
        {"smollm-135m", 49152, 576, 30, 9, 3, 1536, 1},
        {"tinyllama-1.1b", 32000, 2048, 22, 32, 4, 5632, 0},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(presets[i].name, name) != 0) continue;
        memset(c, 0, sizeof *c);
        c->vocab = presets[i].V; c->dim = presets[i].C; c->n_layers = presets[i].L;
        c->n_heads = presets[i].NH; c->n_kv_heads = presets[i].NKV; c->hidden_dim = presets[i].H;
        c->tied = presets[i].tied; c->norm_eps = 1e-5;
        rope_config_default(&c->rope);
        c->rope.original_max_len = 2048;
        return model_config_validate(c, err);
    }
    return rx_fail(err, RX_ERR_CONFIG, "unknown model preset '%s': expected tiny, smollm-135m "
                   "or tinyllama-1.1b", name);
}

/* ---- parameter table ---- */

static void table_add(ParamTable *t, const char *name, int ndim, int64_t d0, int64_t d1, int decay) {
    ParamEntry *e = &t->entries[t->count++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim == 2 ? d1 : 1;
    e->numel = (size_t)d0 * (size_t)e->shape[1];
    e->offset = t->total;
    e->decay = decay;
    t->total += e->numel;
}

/* Tensors in the order of a Hugging Face LlamaForCausalLM state dict. */
static RxStatus table_build(ParamTable *t, const ModelConfig *c, RxError *err) {
    memset(t, 0, sizeof *t);
    t->entries = calloc((size_t)(9 * c->n_layers + 3), sizeof(ParamEntry));
    if (!t->entries) return rx_fail(err, RX_ERR_NOMEM, "out of memory for the parameter table");
    const int64_t C = c->dim, QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    const int64_t H = c->hidden_dim;
    char n[PARAM_NAME_MAX];
    table_add(t, "model.embed_tokens.weight", 2, c->vocab, C, 0);
    for (int64_t l = 0; l < c->n_layers; l++) {
#define ADD(suffix, nd, d0, d1, decay) \
        snprintf(n, sizeof n, "model.layers.%lld." suffix, (long long)l); table_add(t, n, nd, d0, d1, decay)
        ADD("input_layernorm.weight", 1, C, 1, 0);
        ADD("self_attn.q_proj.weight", 2, QD, C, 1);
        ADD("self_attn.k_proj.weight", 2, KD, C, 1);
        ADD("self_attn.v_proj.weight", 2, KD, C, 1);
        ADD("self_attn.o_proj.weight", 2, C, QD, 1);
        ADD("post_attention_layernorm.weight", 1, C, 1, 0);
        ADD("mlp.gate_proj.weight", 2, H, C, 1);
        ADD("mlp.up_proj.weight", 2, H, C, 1);
        ADD("mlp.down_proj.weight", 2, C, H, 1);
#undef ADD
    }
    table_add(t, "model.norm.weight", 1, C, 1, 0);
    if (!c->tied) table_add(t, "lm_head.weight", 2, c->vocab, C, 1);
    return RX_OK;
}

static RxStatus weights_bind(Weights *w, const ParamTable *t, const ModelConfig *c, float *base,
                             RxError *err) {
    w->layer = calloc((size_t)c->n_layers, sizeof(LayerWeights));
    if (!w->layer) return rx_fail(err, RX_ERR_NOMEM, "out of memory");
    const ParamEntry *e = t->entries;
    w->embed = base + (e++)->offset;
    for (int64_t l = 0; l < c->n_layers; l++) {
        LayerWeights *lw = &w->layer[l];
        float **slots[] = {&lw->ln1, &lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->ln2,
                           &lw->wgate, &lw->wup, &lw->wdown};
        for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) *slots[i] = base + (e++)->offset;
    }
    w->final_norm = base + (e++)->offset;
    w->lm_head = c->tied ? w->embed : base + (e++)->offset;
    ASSERT(e == t->entries + t->count);
    return RX_OK;
}

const ParamEntry *model_param(const Model *m, const char *name) {
    for (int i = 0; i < m->table.count; i++)
        if (strcmp(m->table.entries[i].name, name) == 0) return &m->table.entries[i];
    return NULL;
}

static void *alloc_floats(size_t n) {
    /* 64-byte aligned for the vector units; zeroed */
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

RxStatus model_init(Model *m, const ModelConfig *cfg, RxError *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    RxStatus st = model_config_validate(&m->cfg, err);
    if (st != RX_OK) return st;
    if ((st = table_build(&m->table, &m->cfg, err)) != RX_OK) return st;
    m->params = alloc_floats(m->table.total);
    if (!m->params) {
        model_free(m);
        return rx_fail(err, RX_ERR_NOMEM, "out of memory for %zu parameters (%.1f MiB)",
                       m->table.total, m->table.total * 4.0 / 1048576.0);
    }
    if ((st = weights_bind(&m->w, &m->table, &m->cfg, m->params, err)) != RX_OK) { model_free(m); return st; }
    m->loss = NAN;
    return RX_OK;
}

RxStatus model_alloc_grads(Model *m, RxError *err) {
    if (m->grads) return RX_OK;
    m->grads = alloc_floats(m->table.total);
    if (!m->grads) return rx_fail(err, RX_ERR_NOMEM, "out of memory for %zu gradients", m->table.total);
    return weights_bind(&m->g, &m->table, &m->cfg, m->grads, err);
}

void model_zero_grad(Model *m) {
    if (m->grads) memset(m->grads, 0, m->table.total * sizeof(float));
}

void model_free(Model *m) {
    free(m->table.entries);
    free(m->params); free(m->grads);
    free(m->w.layer); free(m->g.layer);
    free(m->act_mem); free(m->scr_mem); free(m->pos);
    rope_table_free(&m->rope);
    memset(m, 0, sizeof *m);
}

void model_init_random(Model *m, uint64_t seed, float std) {
    Rng rng = {seed};
    for (int i = 0; i < m->table.count; i++) {
        const ParamEntry *e = &m->table.entries[i];
        float *p = m->params + e->offset;
        if (e->ndim == 1) for (size_t j = 0; j < e->numel; j++) p[j] = 1.0f;
        else for (size_t j = 0; j < e->numel; j++) p[j] = (float)(rng_normal(&rng) * std);
    }
}

/* ---- activation and scratch buffers: one layout function both counts and carves ---- */

/* Reserves n floats at *off (64-byte aligned) and returns base + old offset (NULL when counting). */
static float *carve(float *base, size_t *off, size_t n) {
    float *p = base ? base + *off : NULL;
    *off += (n + 15) / 16 * 16;
    return p;
}

/* slots: layers whose activations are kept (L, or 1 when layers are recomputed in backward). */
static size_t acts_layout(Activations *a, float *base, const ModelConfig *c, int64_t B, int64_t T,
                          size_t slots) {
    const size_t N = (size_t)(B * T), L = slots, C = (size_t)c->dim;
    const size_t QD = (size_t)(c->n_heads * c->head_dim), KD = (size_t)(c->n_kv_heads * c->head_dim);
    const size_t H = (size_t)c->hidden_dim, NH = (size_t)c->n_heads;
    size_t off = 0;
    a->resid = carve(base, &off, ((size_t)c->n_layers + 1) * N * C);   /* always every layer */
    a->ln1 = carve(base, &off, L * N * C);
    a->rstd1 = carve(base, &off, L * N);
    a->q = carve(base, &off, L * N * QD);
    a->k = carve(base, &off, L * N * KD);
    a->v = carve(base, &off, L * N * KD);
    /* attention output and log-sum-exp: every layer even when recomputing, so that the
     * recomputation never reruns attention (the costliest op at long T) */
    a->att = carve(base, &off, (size_t)c->n_layers * N * QD);
    a->lse = carve(base, &off, (size_t)c->n_layers * N * NH);
    a->mid = carve(base, &off, L * N * C);
    a->ln2 = carve(base, &off, L * N * C);
    a->rstd2 = carve(base, &off, L * N);
    a->gate = carve(base, &off, L * N * H);
    a->up = carve(base, &off, L * N * H);
    a->act = carve(base, &off, L * N * H);
    a->lnf = carve(base, &off, N * C);
    a->rstdf = carve(base, &off, N);
    return off;
}

static size_t scratch_layout(Scratch *s, float *base, const ModelConfig *c, int64_t B, int64_t T) {
    const size_t N = (size_t)(B * T), C = (size_t)c->dim, H = (size_t)c->hidden_dim;
    const size_t QD = (size_t)(c->n_heads * c->head_dim), KD = (size_t)(c->n_kv_heads * c->head_dim);
    size_t off = 0;
    s->dresid = carve(base, &off, N * C);
    s->dln = carve(base, &off, N * C);
    s->proj = carve(base, &off, N * C);
    s->dq = carve(base, &off, N * QD);
    s->dk = carve(base, &off, N * KD);
    s->dv = carve(base, &off, N * KD);
    s->datt = carve(base, &off, N * QD);
    s->dq_pre = carve(base, &off, N * QD);
    s->dk_pre = carve(base, &off, N * KD);
    s->dgate = carve(base, &off, N * H);
    s->dup = carve(base, &off, N * H);
    s->dact = carve(base, &off, N * H);
    s->logits = carve(base, &off, (size_t)CE_CHUNK * (size_t)c->vocab);
    s->losses = carve(base, &off, CE_CHUNK);
    return off;
}

double model_flops_per_token(const ModelConfig *cfg, int64_t T) {
    ModelConfig c = *cfg;
    ParamTable t;
    if (model_config_validate(&c, NULL) != RX_OK || table_build(&t, &c, NULL) != RX_OK) return 0;
    double n_matmul = 0;
    for (int i = 0; i < t.count; i++)
        if (t.entries[i].ndim == 2 && strcmp(t.entries[i].name, "model.embed_tokens.weight"))
            n_matmul += (double)t.entries[i].numel;
    if (c.tied) n_matmul += (double)c.vocab * (double)c.dim;   /* the head is the embedding */
    free(t.entries);
    return 6.0 * n_matmul + 6.0 * (double)c.n_layers * (double)T * (double)c.dim;
}

ModelMemory model_memory(const ModelConfig *cfg, int64_t B, int64_t T) {
    ModelConfig c = *cfg;
    ModelMemory mm = {0};
    if (model_config_validate(&c, NULL) != RX_OK) return mm;
    ParamTable t;
    if (table_build(&t, &c, NULL) != RX_OK) return mm;
    Activations a;
    Scratch s;
    mm.params = t.total * sizeof(float);
    mm.grads = mm.params;
    mm.acts = acts_layout(&a, NULL, &c, B, T, (size_t)c.n_layers) * sizeof(float);
    mm.acts_recompute = acts_layout(&a, NULL, &c, B, T, 1) * sizeof(float);
    mm.scratch = scratch_layout(&s, NULL, &c, B, T) * sizeof(float) + (size_t)(B * T) * sizeof(int32_t);
    mm.rope = 2 * (size_t)T * (size_t)(c.head_dim / 2) * sizeof(float);
    mm.attn = attention_work_bytes(B, T, c.n_heads, c.n_kv_heads, c.head_dim, omp_get_max_threads());
    free(t.entries);
    return mm;
}

static RxStatus ensure_buffers(Model *m, int64_t B, int64_t T, RxError *err) {
    const size_t slots = m->recompute ? 1 : (size_t)m->cfg.n_layers;
    if (m->B == B && m->T == T && m->act_slots == slots) return RX_OK;
    free(m->act_mem); free(m->scr_mem); free(m->pos);
    m->act_mem = m->scr_mem = NULL; m->pos = NULL; m->B = m->T = 0;
    m->act_floats = acts_layout(&m->acts, NULL, &m->cfg, B, T, slots);
    m->scr_floats = scratch_layout(&m->scr, NULL, &m->cfg, B, T);
    m->act_mem = alloc_floats(m->act_floats);
    m->scr_mem = alloc_floats(m->scr_floats);
    m->pos = malloc((size_t)(B * T) * sizeof(int32_t));
    if (!m->act_mem || !m->scr_mem || !m->pos)
        return rx_fail(err, RX_ERR_NOMEM, "out of memory for activations of B=%lld T=%lld "
                       "(%.1f MiB)", (long long)B, (long long)T,
                       (m->act_floats + m->scr_floats) * 4.0 / 1048576.0);
    acts_layout(&m->acts, m->act_mem, &m->cfg, B, T, slots);
    m->act_slots = slots;
    scratch_layout(&m->scr, m->scr_mem, &m->cfg, B, T);
    m->rope.T = 0;   /* built again for the new shape by set_positions */
    m->B = B; m->T = T;
    return RX_OK;
}

/* m->pos and the RoPE table for this pass: positions 0..T-1 of each row, or the caller's
 * Model.positions with a table for pos_len tokens (built again only when its length changes). */
static RxStatus set_positions(Model *m, int64_t B, int64_t T, RxError *err) {
    const int64_t N = B * T, len = m->positions ? m->pos_len : T;
    if (m->positions) {
        if (m->pos_len < T) return rx_fail(err, RX_ERR_CONFIG, "pos_len %lld is shorter than the "
                                           "sequence (%lld)", (long long)m->pos_len, (long long)T);
        for (int64_t n = 0; n < N; n++) {
            if (m->positions[n] < 0 || m->positions[n] >= len)
                return rx_fail(err, RX_ERR_CONFIG, "position %d at row %lld is outside 0..%lld",
                               m->positions[n], (long long)n, (long long)len - 1);
            m->pos[n] = m->positions[n];
        }
    } else {
        for (int64_t n = 0; n < N; n++) m->pos[n] = (int32_t)(n % T);
    }
    if (m->rope.cos && m->rope.T == len) return RX_OK;
    char msg[400];
    if (rope_table_build(&m->rope, &m->cfg.rope, m->cfg.head_dim, len, msg, sizeof msg) != 0)
        return rx_fail(err, RX_ERR_CONFIG, "%s", msg);
    return RX_OK;
}

/* ---- forward ---- */

/* Where layer l's saved activations live: its own slot, or the single slot when recomputing. */
typedef struct {
    float *ln1, *rstd1, *q, *k, *v, *att, *lse, *mid, *ln2, *rstd2, *gate, *up, *act;
} LayerActs;

static LayerActs layer_acts(const Model *m, int64_t l) {
    const ModelConfig *c = &m->cfg;
    const int64_t N = m->B * m->T, C = c->dim, QD = c->n_heads * c->head_dim;
    const int64_t KD = c->n_kv_heads * c->head_dim, H = c->hidden_dim, s = m->recompute ? 0 : l;
    const Activations *a = &m->acts;
    return (LayerActs){a->ln1 + s * N * C, a->rstd1 + s * N, a->q + s * N * QD, a->k + s * N * KD,
                       a->v + s * N * KD, a->att + l * N * QD, a->lse + l * N * c->n_heads,
                       a->mid + s * N * C, a->ln2 + s * N * C, a->rstd2 + s * N, a->gate + s * N * H,
                       a->up + s * N * H, a->act + s * N * H};
}

/* resid[l] -> resid[l+1], saving what backward needs. again = 1 rebuilds the activations in
 * backward: attention's output and log-sum-exp are kept, so attention is not run again (and
 * resid[l+1], already known, is not rewritten). */
static void layer_forward(Model *m, int64_t l, int again) {
    const ModelConfig *c = &m->cfg;
    const int64_t B = m->B, T = m->T, N = B * T;
    const int64_t C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim;
    const int64_t QD = NH * HS, KD = NKV * HS, H = c->hidden_dim;
    const LayerWeights *w = &m->w.layer[l];
    const float *x = m->acts.resid + l * N * C;
    LayerActs s = layer_acts(m, l);
    rmsnorm_forward(s.ln1, s.rstd1, x, w->ln1, N, C, c->norm_eps);
    linear_forward(s.q, s.ln1, w->wq, N, C, QD, 0);
    linear_forward(s.k, s.ln1, w->wk, N, C, KD, 0);
    linear_forward(s.v, s.ln1, w->wv, N, C, KD, 0);
    rope_forward(s.q, s.q, &m->rope, m->pos, N, NH, HS);
    rope_forward(s.k, s.k, &m->rope, m->pos, N, NKV, HS);
    /* the last layer of an evaluation forward skips the rows nobody reads (Model.rows_from) */
    const int64_t skip = !again && l == c->n_layers - 1 && m->rows_from > 0 ? m->rows_from : 0;
    const AttnMask mk = {m->docs, 0, 0, skip};
    if (!again) attention_forward(s.att, s.lse, s.q, s.k, s.v, m->docs || skip ? &mk : NULL, B, T, NH, NKV, HS);
    /* rows r0.. of the row-wise rest: with one sequence, the rows >= rows_from; its rows before
     * are then left as zeros in resid[l+1] (finite, so the final norm stays finite) */
    const int64_t r0 = B == 1 ? skip : 0, n = N - r0;
    float *out = m->acts.resid + (l + 1) * N * C;
    if (r0 > 0) memset(out, 0, sizeof(float) * (size_t)(r0 * C));
    linear_forward(m->scr.proj + r0 * C, s.att + r0 * QD, w->wo, n, QD, C, 0);
    residual_forward(s.mid + r0 * C, x + r0 * C, m->scr.proj + r0 * C, (size_t)(n * C));
    rmsnorm_forward(s.ln2 + r0 * C, s.rstd2 + r0, s.mid + r0 * C, w->ln2, n, C, c->norm_eps);
    linear_forward(s.gate + r0 * H, s.ln2 + r0 * C, w->wgate, n, C, H, 0);
    linear_forward(s.up + r0 * H, s.ln2 + r0 * C, w->wup, n, C, H, 0);
    swiglu_forward(s.act + r0 * H, s.gate + r0 * H, s.up + r0 * H, n, H);
    if (again) return;
    linear_forward(m->scr.proj + r0 * C, s.act + r0 * H, w->wdown, n, H, C, 0);
    residual_forward(out + r0 * C, s.mid + r0 * C, m->scr.proj + r0 * C, (size_t)(n * C));
}

/* LM head + cross-entropy of one chunk of n rows from row r0, logits in scr.logits: the
 * gradient of the mean loss into scr.dln and the head's weights (scale = 1 / counted targets) */
static void head_backward(Model *m, int64_t r0, int64_t n, float scale) {
    const int64_t C = m->cfg.dim, V = m->cfg.vocab;
    crossentropy_backward(m->scr.logits, m->targets + r0, scale, n, V);
    linear_backward(m->scr.dln + r0 * C, m->g.lm_head, m->scr.logits, m->acts.lnf + r0 * C, m->w.lm_head, n, C, V);
}

/* with_grad: also the LM head's backward, chunk by chunk on the logits just computed */
static RxStatus forward(Model *m, const int32_t *tokens, const int32_t *targets, int64_t B, int64_t T,
                        float *loss, int with_grad, RxError *err) {
    const ModelConfig *c = &m->cfg;
    if (B <= 0 || T <= 0) return rx_fail(err, RX_ERR_CONFIG, "batch %lldx%lld: expected B, T > 0",
                                         (long long)B, (long long)T);
    const int64_t N = B * T;
    for (int64_t n = 0; n < N; n++) {
        if (tokens[n] < 0 || tokens[n] >= c->vocab)
            return rx_fail(err, RX_ERR_FORMAT, "token %d at row %lld is outside the vocabulary "
                           "(0..%lld)", tokens[n], (long long)n, (long long)c->vocab - 1);
        if (targets && (targets[n] < -1 || targets[n] >= c->vocab))
            return rx_fail(err, RX_ERR_FORMAT, "target %d at row %lld: expected -1 (ignored) or "
                           "0..%lld", targets[n], (long long)n, (long long)c->vocab - 1);
    }
    RxStatus st = ensure_buffers(m, B, T, err);
    if (st == RX_OK) st = set_positions(m, B, T, err);
    if (st != RX_OK) return st;

    const int64_t C = c->dim;
    Activations *a = &m->acts;
    m->tokens = tokens;
    m->targets = targets;

    embed_forward(a->resid, tokens, m->w.embed, N, C);
    for (int64_t l = 0; l < c->n_layers; l++) layer_forward(m, l, 0);
    rmsnorm_forward(a->lnf, a->rstdf, a->resid + c->n_layers * N * C, m->w.final_norm, N, C, c->norm_eps);

    m->n_counted = 0;
    m->loss = NAN;
    m->head_done = 0;
    if (targets) {
        for (int64_t n = 0; n < N; n++) m->n_counted += targets[n] >= 0;
        if (with_grad) memset(m->scr.dln, 0, (size_t)(N * C) * sizeof(float));
        const int head = with_grad && m->n_counted > 0;
        double sum = 0;   /* summed in row order: independent of the thread count */
        for (int64_t r0 = 0; r0 < N; r0 += CE_CHUNK) {
            int64_t n = N - r0 < CE_CHUNK ? N - r0 : CE_CHUNK;
            if (!head) {   /* forward only: a chunk without a counted target needs no logits */
                int counted = 0;
                for (int64_t i = 0; i < n && !counted; i++) counted = targets[r0 + i] >= 0;
                if (!counted) continue;
            }
            model_logits(m, r0, n, m->scr.logits);
            crossentropy_forward(m->scr.losses, m->scr.logits, targets + r0, n, c->vocab);
            for (int64_t i = 0; i < n; i++) sum += m->scr.losses[i];
            if (head) head_backward(m, r0, n, 1.0f / (float)m->n_counted);
        }
        if (m->n_counted > 0) m->loss = (float)(sum / (double)m->n_counted);
        m->head_done = with_grad;
    }
    if (loss) *loss = m->loss;
    return RX_OK;
}

RxStatus model_forward(Model *m, const int32_t *tokens, const int32_t *targets,
                       int64_t B, int64_t T, float *loss, RxError *err) {
    return forward(m, tokens, targets, B, T, loss, 0, err);
}

RxStatus model_forward_backward(Model *m, const int32_t *tokens, const int32_t *targets,
                                int64_t B, int64_t T, float *loss, RxError *err) {
    if (!targets) return rx_fail(err, RX_ERR_CONFIG, "forward-backward needs targets");
    ASSERT(m->grads);
    RxStatus st = forward(m, tokens, targets, B, T, loss, 1, err);
    if (st == RX_OK) model_backward(m);
    return st;
}

void model_logits(Model *m, int64_t row0, int64_t n, float *out) {
    ASSERT(row0 >= 0 && n >= 0 && row0 + n <= m->B * m->T);
    linear_forward(out, m->acts.lnf + row0 * m->cfg.dim, m->w.lm_head, n, m->cfg.dim, m->cfg.vocab, 0);
}

/* ---- incremental decoding ---- */

RxStatus model_cache_init(const Model *m, KVCache *kc, int64_t cap, RxError *err) {
    const ModelConfig *c = &m->cfg;
    memset(kc, 0, sizeof *kc);
    if (cap < 1) return rx_fail(err, RX_ERR_CONFIG, "KV cache of %lld positions: expected >= 1", (long long)cap);
    const int64_t L = c->n_layers, C = c->dim, NH = c->n_heads, QD = NH * c->head_dim;
    const int64_t KD = c->n_kv_heads * c->head_dim, H = c->hidden_dim;
    const size_t kv = (size_t)(L * cap * KD), rows = (size_t)(cap * (4 * C + 2 * H + 1));
    const size_t byq = (size_t)(2 * cap * QD), lse = (size_t)(NH * cap);
    kc->cap = cap;
    kc->k = alloc_floats(kv);
    kc->v = alloc_floats(kv);
    kc->x = alloc_floats(rows);
    kc->q = alloc_floats(byq);
    kc->lse = alloc_floats(lse);
    kc->tokens = malloc(sizeof(int32_t) * (size_t)cap);
    kc->pos = malloc(sizeof(int32_t) * (size_t)cap);
    if (!kc->k || !kc->v || !kc->x || !kc->q || !kc->lse || !kc->tokens || !kc->pos) {
        model_cache_free(kc);
        return rx_fail(err, RX_ERR_NOMEM, "out of memory for a KV cache of %lld positions (%.1f MiB)",
                       (long long)cap, (double)(2 * kv + rows + byq + lse + 2 * (size_t)cap) * 4.0 / 1048576.0);
    }
    kc->ln = kc->x + cap * C; kc->mid = kc->ln + cap * C; kc->proj = kc->mid + cap * C;
    kc->gate = kc->proj + cap * C; kc->up = kc->gate + cap * H; kc->rstd = kc->up + cap * H;
    kc->att = kc->q + cap * QD;
    for (int64_t i = 0; i < cap; i++) kc->pos[i] = (int32_t)i;
    return RX_OK;
}

void model_cache_free(KVCache *kc) {
    free(kc->k); free(kc->v); free(kc->x); free(kc->q); free(kc->lse); free(kc->tokens); free(kc->pos);
    rope_table_free(&kc->rope);
    memset(kc, 0, sizeof *kc);
}

RxStatus model_cache_for(const Model *m, KVCache *kc, int64_t T, RxError *err) {
    const ModelConfig *c = &m->cfg;
    if (T < 1 || T > kc->cap)
        return rx_fail(err, RX_ERR_CONFIG, "KV cache: a sequence of %lld tokens in a cache of %lld positions",
                       (long long)T, (long long)kc->cap);
    char msg[400];
    RopeTable f;
    memset(&f, 0, sizeof f);
    if (rope_frequencies(&f, &c->rope, c->head_dim, T, msg, sizeof msg) != 0)
        return rx_fail(err, RX_ERR_CONFIG, "%s", msg);
    const int same = kc->rope.cos && !memcmp(f.inv_freq, kc->rope.inv_freq, sizeof(double) * (size_t)f.half) &&
                     f.attention_factor == kc->rope.attention_factor && f.keep_positions == kc->rope.keep_positions;
    if (same && kc->rope.T >= T) return RX_OK;
    if (!same) kc->len = 0;   /* keys rotated by other frequencies: computed again */
    if (rope_table_build(&kc->rope, &c->rope, c->head_dim, T, msg, sizeof msg) != 0)
        return rx_fail(err, RX_ERR_CONFIG, "%s", msg);
    return RX_OK;
}

RxStatus model_extend(Model *m, KVCache *kc, const int32_t *tokens, int64_t n, int64_t from, RxError *err) {
    const ModelConfig *c = &m->cfg;
    const int64_t C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim;
    const int64_t QD = NH * HS, KD = NKV * HS, H = c->hidden_dim, p0 = kc->len, T = p0 + n;
    if (n < 1 || from < 0 || from >= n || T > kc->rope.T)
        return rx_fail(err, RX_ERR_CONFIG, "KV cache: %lld tokens (rows from %lld) after %lld: expected "
                       "0 <= from < n and model_cache_for(%lld or more) first", (long long)n, (long long)from,
                       (long long)p0, (long long)T);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return rx_fail(err, RX_ERR_FORMAT, "token %d at row %lld is outside the vocabulary (0..%lld)",
                           tokens[i], (long long)i, (long long)c->vocab - 1);
    memcpy(kc->tokens + p0, tokens, sizeof(int32_t) * (size_t)n);
    const int32_t *pos = kc->pos + p0;
    float *x = kc->x, *ln = kc->ln, *q = kc->q + p0 * QD, *att = kc->att + p0 * QD;
    embed_forward(x, tokens, m->w.embed, n, C);
    for (int64_t l = 0; l < c->n_layers; l++) {   /* layer_forward's ops on the new rows */
        const LayerWeights *w = &m->w.layer[l];
        float *kl = kc->k + l * kc->cap * KD, *vl = kc->v + l * kc->cap * KD;
        rmsnorm_forward(ln, kc->rstd, x, w->ln1, n, C, c->norm_eps);
        linear_forward(q, ln, w->wq, n, C, QD, 0);
        linear_forward(kl + p0 * KD, ln, w->wk, n, C, KD, 0);
        linear_forward(vl + p0 * KD, ln, w->wv, n, C, KD, 0);
        rope_forward(q, q, &kc->rope, pos, n, NH, HS);
        rope_forward(kl + p0 * KD, kl + p0 * KD, &kc->rope, pos, n, NKV, HS);
        /* the last layer skips the rows nobody reads, as Model.rows_from */
        const int64_t r0 = l == c->n_layers - 1 ? from : 0, nr = n - r0;
        if (n == 1) attention_decode(att, kc->lse, q, kl, vl, T, NH, NKV, HS);
        else {   /* the queries at their positions against every key; rows before p0 + r0 skipped */
            const AttnMask mk = {NULL, 0, 0, p0 + r0};
            attention_forward(kc->att, kc->lse, kc->q, kl, vl, &mk, 1, T, NH, NKV, HS);
        }
        linear_forward(kc->proj + r0 * C, att + r0 * QD, w->wo, nr, QD, C, 0);
        residual_forward(kc->mid + r0 * C, x + r0 * C, kc->proj + r0 * C, (size_t)(nr * C));
        rmsnorm_forward(ln + r0 * C, kc->rstd, kc->mid + r0 * C, w->ln2, nr, C, c->norm_eps);
        linear_forward(kc->gate + r0 * H, ln + r0 * C, w->wgate, nr, C, H, 0);
        linear_forward(kc->up + r0 * H, ln + r0 * C, w->wup, nr, C, H, 0);
        swiglu_forward(kc->gate + r0 * H, kc->gate + r0 * H, kc->up + r0 * H, nr, H);
        linear_forward(kc->proj + r0 * C, kc->gate + r0 * H, w->wdown, nr, H, C, 0);
        residual_forward(x + r0 * C, kc->mid + r0 * C, kc->proj + r0 * C, (size_t)(nr * C));
    }
    rmsnorm_forward(ln + from * C, kc->rstd, x + from * C, m->w.final_norm, n - from, C, c->norm_eps);
    kc->len = T;
    kc->n = n;
    kc->from = from;
    return RX_OK;
}

void model_cache_logits(const Model *m, const KVCache *kc, int64_t i, int64_t rows, float *out) {
    ASSERT(i >= kc->from && rows >= 0 && i + rows <= kc->n);
    linear_forward(out, kc->ln + i * m->cfg.dim, m->w.lm_head, rows, m->cfg.dim, m->cfg.vocab, 0);
}

void model_drop_buffers(Model *m) {
    free(m->act_mem); free(m->scr_mem); free(m->pos);
    m->act_mem = m->scr_mem = NULL; m->pos = NULL;
    m->B = m->T = 0;
    m->act_slots = 0;
}

/* ---- backward ---- */

/* d resid[l+1] (in scr.dresid) -> d resid[l] (in scr.dresid), accumulating layer l's gradients. */
static void layer_backward(Model *m, int64_t l) {
    const ModelConfig *c = &m->cfg;
    const int64_t B = m->B, T = m->T, N = B * T;
    const int64_t C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim;
    const int64_t QD = NH * HS, KD = NKV * HS, H = c->hidden_dim;
    const LayerWeights *w = &m->w.layer[l];
    LayerWeights *g = &m->g.layer[l];
    const float *x = m->acts.resid + l * N * C;
    const LayerActs a = layer_acts(m, l);
    Scratch *s = &m->scr;
    const size_t NC = (size_t)(N * C);
#define ZERO(p, n) memset((p), 0, (size_t)(n) * sizeof(float))
    /* resid[l+1] = mid + down(act): the gradient of both terms is d resid[l+1], read in place
     * from dresid; ln2's backward then adds its part of d mid to it (residual_backward's sum,
     * without copies) */
    ZERO(s->dact, N * H);
    linear_backward(s->dact, g->wdown, s->dresid, a.act, w->wdown, N, H, C);
    ZERO(s->dgate, N * H); ZERO(s->dup, N * H);
    swiglu_backward(s->dgate, s->dup, s->dact, a.gate, a.up, N, H);
    ZERO(s->dln, NC);
    linear_backward(s->dln, g->wgate, s->dgate, a.ln2, w->wgate, N, C, H);
    linear_backward(s->dln, g->wup, s->dup, a.ln2, w->wup, N, C, H);
    rmsnorm_backward(s->dresid, g->ln2, s->dln, a.mid, w->ln2, a.rstd2, N, C);   /* dresid: d mid */
    /* mid = x + o_proj(att): likewise, d mid feeds o_proj's backward, then ln1's adds to it */
    ZERO(s->datt, N * QD);
    linear_backward(s->datt, g->wo, s->dresid, a.att, w->wo, N, QD, C);
    ZERO(s->dq, N * QD); ZERO(s->dk, N * KD); ZERO(s->dv, N * KD);
    const AttnMask mk = {m->docs, 0, 0, 0};
    attention_backward(s->dq, s->dk, s->dv, s->datt, a.q, a.k, a.v, a.att, a.lse, m->docs ? &mk : NULL, B, T, NH,
                       NKV, HS);
    ZERO(s->dq_pre, N * QD); ZERO(s->dk_pre, N * KD);
    rope_backward(s->dq_pre, s->dq, &m->rope, m->pos, N, NH, HS);
    rope_backward(s->dk_pre, s->dk, &m->rope, m->pos, N, NKV, HS);
    ZERO(s->dln, NC);
    linear_backward(s->dln, g->wq, s->dq_pre, a.ln1, w->wq, N, C, QD);
    linear_backward(s->dln, g->wk, s->dk_pre, a.ln1, w->wk, N, C, KD);
    linear_backward(s->dln, g->wv, s->dv, a.ln1, w->wv, N, C, KD);
    rmsnorm_backward(s->dresid, g->ln1, s->dln, x, w->ln1, a.rstd1, N, C);   /* dresid: d resid[l] */
#undef ZERO
}

void model_backward(Model *m) {
    const ModelConfig *c = &m->cfg;
    ASSERT(m->grads && m->targets && m->B > 0);
    ASSERT(m->rows_from == 0);   /* a forward that skipped rows has no backward */
    const int64_t N = m->B * m->T, C = c->dim;
    const Activations *a = &m->acts;
    Scratch *s = &m->scr;
    const size_t NC = (size_t)(N * C);

    /* LM head + cross-entropy, chunk by chunk, logits recomputed (never T x V), unless the
     * forward already did it */
    if (!m->head_done) {
        memset(s->dln, 0, NC * sizeof(float));
        if (m->n_counted > 0)   /* loss = mean over counted targets */
            for (int64_t r0 = 0; r0 < N; r0 += CE_CHUNK) {
                int64_t n = N - r0 < CE_CHUNK ? N - r0 : CE_CHUNK;
                model_logits(m, r0, n, s->logits);
                head_backward(m, r0, n, 1.0f / (float)m->n_counted);
            }
    }
    m->head_done = 0;   /* the next backward needs its own forward */
    memset(s->dresid, 0, NC * sizeof(float));
    rmsnorm_backward(s->dresid, m->g.final_norm, s->dln, a->resid + c->n_layers * N * C,
                     m->w.final_norm, a->rstdf, N, C);

    for (int64_t l = c->n_layers - 1; l >= 0; l--) {
        if (m->recompute) layer_forward(m, l, 1);   /* rebuild this layer's activations from resid[l] */
        layer_backward(m, l);
    }
    embed_backward(m->g.embed, s->dresid, m->tokens, N, C);
}

void model_pose_positions(int32_t *pos, const int32_t *docs, int64_t rows, int64_t T, int64_t len,
                          uint64_t seed, uint64_t key, int64_t row0) {
    ASSERT(len >= T && len <= INT32_MAX);
    for (int64_t r = 0; r < rows; r++) {
        Rng g = {seed ^ (key * 0xD1B54A32D192ED03ull) ^ ((uint64_t)(row0 + r) * 0x8CB92BA72F3D8DD7ull)};
        const int32_t *d = docs ? docs + r * T : NULL;
        for (int64_t a = 0, b; a < T; a = b) {   /* [a, b): one document */
            for (b = a + 1; b < T && (!d || d[b] == d[a]); b++) {}
            const int64_t n = b - a;
            const int64_t cut = n > 1 ? 1 + (int64_t)(rng_next(&g) % (uint64_t)(n - 1)) : n;
            const int64_t skip = (int64_t)(rng_next(&g) % (uint64_t)(len - n + 1));
            for (int64_t i = 0; i < n; i++) pos[r * T + a + i] = (int32_t)(i < cut ? i : i + skip);
        }
    }
}
