/* Import of Karpathy's llama2.c checkpoints (float32): the legacy format run.c reads and the
 * "version 1" export (magic "ak42"). Their RoPE rotates interleaved pairs (2p, 2p+1); ropex uses
 * rotate_half (p, p + HS/2), so the rows of Wq and Wk are permuted once per head:
 * new[e * HS/2 + p] = old[2p + e]. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"

typedef struct { FILE *f; const char *path; uint64_t size, pos; RxError *err; } Reader;

static RxStatus take(Reader *r, void *out, uint64_t bytes, const char *what) {
    if (bytes > r->size - r->pos)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: truncated: %s needs %llu bytes at offset %llu, the "
                       "file has %llu", r->path, what, (unsigned long long)bytes,
                       (unsigned long long)r->pos, (unsigned long long)r->size);
    if (fread(out, 1, bytes, r->f) != bytes)
        return rx_fail(r->err, RX_ERR_IO, "%s: read error at offset %llu", r->path, (unsigned long long)r->pos);
    r->pos += bytes;
    return RX_OK;
}

static RxStatus skip(Reader *r, uint64_t bytes, const char *what) {
    if (bytes > r->size - r->pos)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: truncated in %s", r->path, what);
    r->pos += bytes;
    return fseeko(r->f, (off_t)r->pos, SEEK_SET) == 0 ? RX_OK
           : rx_fail(r->err, RX_ERR_IO, "%s: seek failed", r->path);
}

/* Rows of one (nh*hs, C) projection from interleaved pairs to rotate_half. */
static void permute_rows(float *w, int64_t nh, int64_t hs, int64_t C) {
    float *tmp = malloc((size_t)(hs * C) * sizeof(float));
    for (int64_t h = 0; h < nh; h++) {
        float *head = w + h * hs * C;
        for (int64_t p = 0; p < hs / 2; p++)
            for (int e = 0; e < 2; e++)
                memcpy(tmp + (e * hs / 2 + p) * C, head + (2 * p + e) * C, (size_t)C * sizeof(float));
        memcpy(head, tmp, (size_t)(hs * C) * sizeof(float));
    }
    free(tmp);
}

/* Reads one tensor kind for every layer: llama2.c stores (L, ...) blocks. */
static RxStatus take_layers(Reader *r, Model *m, const char *what) {
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        char name[PARAM_NAME_MAX];
        snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, what);
        const ParamEntry *e = model_param(m, name);
        RxStatus rs = take(r, m->params + e->offset, e->numel * 4, name);
        if (rs != RX_OK) return rs;
    }
    return RX_OK;
}

RxStatus llama2c_import(const char *path, Model *m, RxError *err) {
    Reader r = {.path = path, .err = err};
    struct stat sb;
    if (stat(path, &sb) != 0) return rx_fail(err, RX_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    r.size = (uint64_t)sb.st_size;
    r.f = fopen(path, "rb");
    if (!r.f) return rx_fail(err, RX_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    int32_t h[7];
    uint32_t magic = 0;
    int version = 0, shared = 0;
    RxStatus rs = take(&r, &magic, 4, "the header");
    if (rs == RX_OK && magic == 0x616b3432) {   /* "ak42": version 1 export */
        int32_t v;
        uint8_t flag;
        if ((rs = take(&r, &v, 4, "the version")) == RX_OK && v != 1)
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: llama2.c format version %d: only the float32 "
                         "formats (legacy and version 1) can be imported", path, v);
        if (rs == RX_OK) rs = take(&r, h, 28, "the header");
        if (rs == RX_OK) rs = take(&r, &flag, 1, "the header");
        if (rs == RX_OK) rs = skip(&r, 256 - r.pos, "the header padding");
        version = 1;
        shared = flag;
    } else if (rs == RX_OK) {
        memcpy(&h[0], &magic, 4);
        rs = take(&r, h + 1, 24, "the header");
        shared = h[5] > 0;   /* legacy: a negative vocab size means a separate classifier */
        if (h[5] < 0) h[5] = -h[5];
    }
    if (rs != RX_OK) { fclose(r.f); return rs; }
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.dim = h[0]; c.hidden_dim = h[1]; c.n_layers = h[2]; c.n_heads = h[3]; c.n_kv_heads = h[4];
    c.vocab = h[5]; c.tied = shared; c.norm_eps = 1e-5;
    rope_config_default(&c.rope);
    c.rope.original_max_len = h[6];
    c.rope.max_len = h[6];
    if (c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.vocab <= 0 || h[6] <= 0) {
        fclose(r.f);
        return rx_fail(err, RX_ERR_FORMAT, "%s: header dim=%d hidden=%d layers=%d heads=%d kv_heads=%d "
                       "vocab=%d seq_len=%d is not a llama2.c model", path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    }
    RxError verr;
    if ((rs = model_init(m, &c, &verr)) != RX_OK) {
        fclose(r.f);
        return rx_fail(err, RX_ERR_FORMAT, "%s: %s", path, verr.msg);
    }
    const int64_t C = c.dim, HS = m->cfg.head_dim;
    const ParamEntry *emb = model_param(m, "model.embed_tokens.weight");
    const ParamEntry *norm = model_param(m, "model.norm.weight");
    if (version == 0) {
        rs = take(&r, m->params + emb->offset, emb->numel * 4, "token_embedding_table");
        if (rs == RX_OK) rs = take_layers(&r, m, "input_layernorm.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.q_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.k_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.v_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.o_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "post_attention_layernorm.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.gate_proj.weight");   /* w1 */
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.down_proj.weight");   /* w2 */
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.up_proj.weight");     /* w3 */
        if (rs == RX_OK) rs = take(&r, m->params + norm->offset, norm->numel * 4, "rms_final_weight");
        /* freq_cis_real and freq_cis_imag: (seq_len, HS/2) each, recomputed by ropex */
        if (rs == RX_OK) rs = skip(&r, (uint64_t)h[6] * (uint64_t)(HS / 2) * 8, "freq_cis tables");
    } else {
        rs = take_layers(&r, m, "input_layernorm.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "post_attention_layernorm.weight");
        if (rs == RX_OK) rs = take(&r, m->params + norm->offset, norm->numel * 4, "norm");
        if (rs == RX_OK) rs = take(&r, m->params + emb->offset, emb->numel * 4, "tok_embeddings");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.q_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.k_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.v_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "self_attn.o_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.gate_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.down_proj.weight");
        if (rs == RX_OK) rs = take_layers(&r, m, "mlp.up_proj.weight");
    }
    if (rs == RX_OK && !shared) {
        const ParamEntry *head = model_param(m, "lm_head.weight");
        rs = take(&r, m->params + head->offset, head->numel * 4, "the classifier weights");
    }
    if (rs == RX_OK && r.pos != r.size)
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: %llu bytes left after the last tensor (header and size "
                     "disagree)", path, (unsigned long long)(r.size - r.pos));
    fclose(r.f);
    if (rs != RX_OK) { model_free(m); return rs; }
    for (int64_t l = 0; l < c.n_layers; l++) {
        permute_rows(m->w.layer[l].wq, c.n_heads, HS, C);
        permute_rows(m->w.layer[l].wk, c.n_kv_heads, HS, C);
    }
    return RX_OK;
}
