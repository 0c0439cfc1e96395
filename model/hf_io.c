/* Hugging Face directories: import (config.json + safetensors, single or sharded, F32/F16/BF16)
 * and export (model.safetensors in f32 or bf16 + config.json + tokenizer files). */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "fsutil.h"

/* Tokenizer and generation files travel with the weights. */
static const char *const TOKENIZER_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "generation_config.json",
};
#define TOKENIZER_MAX_BYTES (256u << 20)

void file_blobs_free(FileBlobs *b) {
    for (int i = 0; i < b->n; i++) free(b->items[i].data);
    free(b->items);
    b->items = NULL;
    b->n = 0;
}

static RxStatus read_tokenizer_files(const char *dir, FileBlobs *tok, RxError *err) {
    size_t nf = sizeof TOKENIZER_FILES / sizeof TOKENIZER_FILES[0];
    tok->items = calloc(nf, sizeof(FileBlob));
    tok->n = 0;
    if (!tok->items) return rx_fail(err, RX_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nf; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, TOKENIZER_FILES[i]);
        size_t len;
        uint8_t *data;
        if (!fs_exists(path)) continue;
        RxStatus rs = fs_read_file(path, TOKENIZER_MAX_BYTES, &data, &len, err);
        if (rs != RX_OK) return rs;
        FileBlob *b = &tok->items[tok->n++];
        snprintf(b->name, sizeof b->name, "%s", TOKENIZER_FILES[i]);
        b->data = data;
        b->len = len;
    }
    return RX_OK;
}

/* Tensors a Llama checkpoint may carry beyond ropex's table, ignored on import. */
static int ignorable(const char *name, int tied) {
    size_t n = strlen(name);
    const char *suf = ".rotary_emb.inv_freq";
    if (n > strlen(suf) && !strcmp(name + n - strlen(suf), suf)) return 1;   /* older HF saves */
    return tied && !strcmp(name, "lm_head.weight");   /* some tied checkpoints store the copy */
}

typedef struct { char file[256]; StFile st; int open; } Shard;

RxStatus hf_import(const char *dir, Model *m, FileBlobs *tok, RxError *err) {
    ModelConfig cfg;
    RxStatus rs = hf_config_load(&cfg, dir, err);
    if (rs != RX_OK) return rs;
    if ((rs = model_init(m, &cfg, err)) != RX_OK) return rs;

    char path[4200];
    Shard *shards = NULL;
    int nshards = 0;
    char **owner = calloc((size_t)m->table.count, sizeof(char *));   /* shard file per tensor */
    cJSON *index = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        shards = calloc(1, sizeof(Shard));
        snprintf(shards[0].file, sizeof shards[0].file, "model.safetensors");
        nshards = 1;
        for (int i = 0; i < m->table.count; i++) owner[i] = shards[0].file;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        uint8_t *text;
        size_t len;
        if ((rs = fs_read_file(path, 64u << 20, &text, &len, err)) != RX_OK) {
            rs = rx_fail(err, RX_ERR_IO, "%s: no model.safetensors and no model.safetensors.index.json", dir);
            goto done;
        }
        index = cJSON_ParseWithLength((const char *)text, len);
        free(text);
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
        if (!cJSON_IsObject(map)) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: expected an object with \"weight_map\"", path);
            goto done;
        }
        shards = calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(Shard));
        const cJSON *it;
        cJSON_ArrayForEach(it, map) {
            if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || strlen(it->valuestring) >= sizeof shards[0].file) {
                rs = rx_fail(err, RX_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file name in the "
                             "same directory", path, it->string);
                goto done;
            }
            int s = 0;
            while (s < nshards && strcmp(shards[s].file, it->valuestring)) s++;
            if (s == nshards) snprintf(shards[nshards++].file, sizeof shards[0].file, "%s", it->valuestring);
            const ParamEntry *e = model_param(m, it->string);
            if (e) owner[e - m->table.entries] = shards[s].file;
            else if (!ignorable(it->string, cfg.tied)) {
                rs = rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s is not part of a Llama model with this "
                             "config.json (another architecture?)", path, it->string);
                goto done;
            }
        }
    }
    for (int s = 0; s < nshards; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, shards[s].file);
        if ((rs = st_open(&shards[s].st, path, err)) != RX_OK) goto done;
        shards[s].open = 1;
        for (int t = 0; t < shards[s].st.n; t++) {
            const char *name = shards[s].st.tensors[t].name;
            const ParamEntry *e = model_param(m, name);
            if (!e && !ignorable(name, cfg.tied)) {
                rs = rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s is not part of a Llama model with this "
                             "config.json (another architecture?)", path, name);
                goto done;
            }
        }
    }
    for (int i = 0; i < m->table.count; i++) {
        const ParamEntry *e = &m->table.entries[i];
        if (!owner[i]) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: missing tensor %s (not in the weight_map)", dir, e->name);
            goto done;
        }
        int s = 0;
        while (strcmp(shards[s].file, owner[i])) s++;
        const StTensor *t = st_find(&shards[s].st, e->name);
        if (!t) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s/%s: missing tensor %s", dir, shards[s].file, e->name);
            goto done;
        }
        int same = t->ndim == e->ndim && t->shape[0] == e->shape[0] && (e->ndim == 1 || t->shape[1] == e->shape[1]);
        if (!same) {
            char got[96] = "";
            size_t u = 0;
            for (int d = 0; d < t->ndim && u < sizeof got; d++)
                u += (size_t)snprintf(got + u, sizeof got - u, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            rs = rx_fail(err, RX_ERR_FORMAT, "%s/%s: tensor %s has shape [%s], config.json implies "
                         "[%lld%s%.0lld]", dir, shards[s].file, e->name, got, (long long)e->shape[0],
                         e->ndim == 2 ? ", " : "", e->ndim == 2 ? (long long)e->shape[1] : 0LL);
            goto done;
        }
        if ((rs = st_read_f32(&shards[s].st, t, m->params + e->offset, err)) != RX_OK) goto done;
    }
    if (tok) rs = read_tokenizer_files(dir, tok, err);
done:
    for (int s = 0; s < nshards; s++) if (shards[s].open) st_close(&shards[s].st);
    free(shards);
    free(owner);
    cJSON_Delete(index);
    if (rs != RX_OK) model_free(m);
    return rs;
}

/* ---- export ---- */

static uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);   /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);   /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static RxStatus write_safetensors(const char *path, const Model *m, int bf16, RxError *err) {
    cJSON *hdr = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0, es = bf16 ? 2 : 4;
    for (int i = 0; i < m->table.count; i++) {
        const ParamEntry *e = &m->table.entries[i];
        cJSON *t = cJSON_AddObjectToObject(hdr, e->name);
        cJSON_AddStringToObject(t, "dtype", bf16 ? "BF16" : "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += e->numel * es;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;   /* data 8-byte aligned */
    FsWriter w;
    RxStatus rs = fs_writer_open(&w, path, err);
    if (rs == RX_OK) {
        uint8_t lenb[8];
        for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        rs = fs_writer_put(&w, lenb, 8, err);
        if (rs == RX_OK) rs = fs_writer_put(&w, text, hlen, err);
        for (size_t i = hlen; i < padded && rs == RX_OK; i++) rs = fs_writer_put(&w, " ", 1, err);
        for (int i = 0; i < m->table.count && rs == RX_OK; i++) {
            const ParamEntry *e = &m->table.entries[i];
            const float *p = m->params + e->offset;
            if (!bf16) { rs = fs_writer_put(&w, p, e->numel * 4, err); continue; }
            enum { CH = 1 << 16 };
            uint16_t buf[CH];
            for (size_t j = 0; j < e->numel && rs == RX_OK; j += CH) {
                size_t n = e->numel - j < CH ? e->numel - j : CH;
                for (size_t k = 0; k < n; k++) buf[k] = float_to_bf16(p[j + k]);
                rs = fs_writer_put(&w, buf, n * 2, err);
            }
        }
        rs = fs_writer_commit(&w, rs, err);
    }
    free(text);
    return rs;
}

/* rope_scaling for config.json, or NULL when plain RoPE says it all. */
static RxStatus rope_scaling_json(const RopeConfig *rc, int64_t hs, cJSON **out, double *theta, RxError *err) {
    *out = NULL;
    *theta = rc->theta;
    if (rc->trunc_b > 0)
        return rx_fail(err, RX_ERR_CONFIG, "rope.trunc_b: base truncation has no Hugging Face "
                       "rope_scaling equivalent; exporting would change what the model computes");
    if (rc->keep_positions > 0)
        return rx_fail(err, RX_ERR_CONFIG, "rope.keep_positions: LongRoPE's unscaled first positions "
                       "have no Hugging Face equivalent; exporting would change what the model computes");
    if (rc->method == ROPE_NONE) return RX_OK;
    if (rc->method == ROPE_NTK) {   /* a static base change is plain RoPE with another base */
        *theta = rc->theta * pow(rc->factor, (double)hs / (double)(hs - 2));
        return RX_OK;
    }
    cJSON *o = cJSON_CreateObject();
    const char *name = rope_method_name(rc->method);
    cJSON_AddStringToObject(o, "rope_type", name);
    cJSON_AddStringToObject(o, "type", name);   /* older transformers read "type" */
    cJSON_AddNumberToObject(o, "factor", rc->factor);
    cJSON_AddNumberToObject(o, "original_max_position_embeddings", (double)rc->original_max_len);
    if (rc->method == ROPE_YARN) {
        cJSON_AddNumberToObject(o, "beta_fast", rc->beta_fast);
        cJSON_AddNumberToObject(o, "beta_slow", rc->beta_slow);
        cJSON_AddBoolToObject(o, "truncate", rc->truncate);
        if (rc->mscale > 0) cJSON_AddNumberToObject(o, "mscale", rc->mscale);
        if (rc->mscale_all_dim > 0) cJSON_AddNumberToObject(o, "mscale_all_dim", rc->mscale_all_dim);
    }
    if ((rc->method == ROPE_YARN || rc->method == ROPE_LONGROPE) && rc->attention_factor > 0)
        cJSON_AddNumberToObject(o, "attention_factor", rc->attention_factor);
    if (rc->method == ROPE_LONGROPE) {
        cJSON_AddItemToObject(o, "short_factor", cJSON_CreateDoubleArray(rc->short_factor, rc->n_short));
        cJSON_AddItemToObject(o, "long_factor", cJSON_CreateDoubleArray(rc->long_factor, rc->n_long));
    }
    if (rc->method == ROPE_LLAMA3) {
        cJSON_AddNumberToObject(o, "low_freq_factor", rc->low_freq_factor);
        cJSON_AddNumberToObject(o, "high_freq_factor", rc->high_freq_factor);
    }
    *out = o;
    return RX_OK;
}

RxStatus hf_export(const char *dir, const Model *m, const FileBlobs *tok, int bf16, RxError *err) {
    const ModelConfig *c = &m->cfg;
    cJSON *scaling;
    double theta;
    RxStatus rs = rope_scaling_json(&c->rope, c->head_dim, &scaling, &theta, err);
    if (rs != RX_OK) return rs;
    if (fs_mkdir_p(dir) != 0) {
        cJSON_Delete(scaling);
        return rx_fail(err, RX_ERR_IO, "%s: cannot create the directory (%s)", dir, strerror(errno));
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "vocab_size", (double)c->vocab);
    cJSON_AddNumberToObject(j, "hidden_size", (double)c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", (double)c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", (double)c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", (double)c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", (double)c->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", (double)c->head_dim);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", theta);
    int64_t maxpos = c->rope.max_len > 0 ? c->rope.max_len : c->rope.original_max_len;
    cJSON_AddNumberToObject(j, "max_position_embeddings", (double)maxpos);
    if (scaling) cJSON_AddItemToObject(j, "rope_scaling", scaling);
    else cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddBoolToObject(j, "mlp_bias", 0);
    cJSON_AddStringToObject(j, "torch_dtype", bf16 ? "bfloat16" : "float32");
    /* config.json names the special ids as Hugging Face's own do (LlamaConfig otherwise assumes
     * BOS 1 and EOS 2); they come from the generation_config.json that travels with the weights */
    for (int i = 0; tok && i < tok->n; i++) {
        if (strcmp(tok->items[i].name, "generation_config.json")) continue;
        cJSON *g = cJSON_ParseWithLength((const char *)tok->items[i].data, tok->items[i].len);
        const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int k = 0; g && k < 3; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, keys[k]);
            if (cJSON_IsNumber(v) || cJSON_IsArray(v)) cJSON_AddItemToObject(j, keys[k], cJSON_Duplicate(v, 1));
        }
        cJSON_Delete(g);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    rs = fs_write_atomic(path, text, strlen(text), err);
    free(text);
    if (rs != RX_OK) return rs;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rs = write_safetensors(path, m, bf16, err)) != RX_OK) return rs;
    for (int i = 0; tok && i < tok->n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, tok->items[i].name);
        if ((rs = fs_write_atomic(path, tok->items[i].data, tok->items[i].len, err)) != RX_OK) return rs;
    }
    return RX_OK;
}
