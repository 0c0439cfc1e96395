/* Hugging Face config.json -> ModelConfig, for the Llama layout (LlamaForCausalLM and the
 * variants that share it exactly). What ropex cannot compute exactly is refused by name. */
#include <cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "model.h"

/* Integer key: required (dflt < 0) or defaulted. */
static RxStatus get_int(const cJSON *root, const char *path, const char *key, int64_t dflt,
                        int64_t *out, RxError *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        if (dflt < 0) return rx_fail(err, RX_ERR_FORMAT, "%s: missing required key \"%s\" (an integer)", path, key);
        *out = dflt;
        return RX_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble || it->valuedouble < 0)
        return rx_fail(err, RX_ERR_FORMAT, "%s: \"%s\" must be a whole number >= 0", path, key);
    *out = (int64_t)it->valuedouble;
    return RX_OK;
}

static RxStatus get_double(const cJSON *root, const char *path, const char *key, double dflt,
                           double *out, RxError *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) { *out = dflt; return RX_OK; }
    if (!cJSON_IsNumber(it)) return rx_fail(err, RX_ERR_FORMAT, "%s: \"%s\" must be a number", path, key);
    *out = it->valuedouble;
    return RX_OK;
}

static int get_bool(const cJSON *root, const char *key, int dflt) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : dflt;
}

/* rope_scaling values go through rope_config_set as text, the same path as INI and --set. */
static RxStatus rope_from_json(RopeConfig *rc, const cJSON *rs, const char *path, RxError *err) {
    char text[ROPE_MAX_PAIRS * 26 + 16], msg[400];
    const cJSON *it;
    cJSON_ArrayForEach(it, rs) {
        const char *k = it->string;
        if (cJSON_IsString(it)) snprintf(text, sizeof text, "%s", it->valuestring);
        else if (cJSON_IsBool(it)) snprintf(text, sizeof text, "%s", cJSON_IsTrue(it) ? "true" : "false");
        else if (cJSON_IsNumber(it)) snprintf(text, sizeof text, "%.17g", it->valuedouble);
        else if (cJSON_IsArray(it)) {
            size_t used = 0;
            const cJSON *x;
            text[0] = '\0';
            cJSON_ArrayForEach(x, it) {
                if (!cJSON_IsNumber(x))
                    return rx_fail(err, RX_ERR_FORMAT, "%s: rope_scaling.%s must hold numbers", path, k);
                if (used + 32 >= sizeof text)
                    return rx_fail(err, RX_ERR_FORMAT, "%s: rope_scaling.%s is too long", path, k);
                used += (size_t)snprintf(text + used, sizeof text - used, "%.17g,", x->valuedouble);
            }
        } else if (cJSON_IsNull(it)) continue;
        else return rx_fail(err, RX_ERR_FORMAT, "%s: rope_scaling.%s has an unsupported value", path, k);
        if (rope_config_set(rc, k, text, 0, msg, sizeof msg) != 0)
            return rx_fail(err, RX_ERR_FORMAT, "%s: rope_scaling: %s", path, msg);
    }
    return RX_OK;
}

RxStatus hf_config_load(ModelConfig *c, const char *path_in, RxError *err) {
    char path[4096];
    struct stat st;
    if (stat(path_in, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/config.json", path_in);
    else snprintf(path, sizeof path, "%s", path_in);
    uint8_t *raw;
    size_t raw_len;
    RxStatus rd = fs_read_file(path, 16u << 20, &raw, &raw_len, err);
    if (rd != RX_OK) return rd;
    char *text = (char *)raw;
    cJSON *root = cJSON_Parse(text);
    RxStatus rs = RX_OK;
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: not a JSON object (parse error at byte %td)", path,
                     at && at >= text ? at - text : (ptrdiff_t)0);
        goto done;
    }
    memset(c, 0, sizeof *c);
    rope_config_default(&c->rope);

    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsArray(arch)) {
        const cJSON *a = cJSON_GetArrayItem(arch, 0);
        const char *name = cJSON_IsString(a) ? a->valuestring : "?";
        if (strcmp(name, "LlamaForCausalLM") && strcmp(name, "MistralForCausalLM")) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: architectures[0] = \"%s\" is not supported "
                         "(expected LlamaForCausalLM or MistralForCausalLM)", path, name);
            goto done;
        }
    }
    const char *refuse[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++)
        if (get_bool(root, refuse[i], 0)) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: \"%s\": true is not supported (ropex's Llama has "
                         "no biases)", path, refuse[i]);
            goto done;
        }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu"))) {
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: \"hidden_act\" must be \"silu\" (SwiGLU)", path);
        goto done;
    }
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (sw && !cJSON_IsNull(sw)) {
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: \"sliding_window\" attention is not supported "
                     "(set it to null for full causal attention)", path);
        goto done;
    }
    double prf = 1.0;
    if ((rs = get_double(root, path, "partial_rotary_factor", 1.0, &prf, err)) != RX_OK) goto done;
    if (prf != 1.0) {
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: \"partial_rotary_factor\" = %g is not supported (expected 1)", path, prf);
        goto done;
    }
    int64_t max_pos = 0;
    if ((rs = get_int(root, path, "vocab_size", -1, &c->vocab, err)) != RX_OK ||
        (rs = get_int(root, path, "hidden_size", -1, &c->dim, err)) != RX_OK ||
        (rs = get_int(root, path, "num_hidden_layers", -1, &c->n_layers, err)) != RX_OK ||
        (rs = get_int(root, path, "num_attention_heads", -1, &c->n_heads, err)) != RX_OK ||
        (rs = get_int(root, path, "intermediate_size", -1, &c->hidden_dim, err)) != RX_OK ||
        (rs = get_int(root, path, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err)) != RX_OK ||
        (rs = get_int(root, path, "head_dim", 0, &c->head_dim, err)) != RX_OK ||
        (rs = get_int(root, path, "max_position_embeddings", 2048, &max_pos, err)) != RX_OK ||
        (rs = get_double(root, path, "rms_norm_eps", 1e-6, &c->norm_eps, err)) != RX_OK ||
        (rs = get_double(root, path, "rope_theta", 10000.0, &c->rope.theta, err)) != RX_OK)
        goto done;
    c->tied = get_bool(root, "tie_word_embeddings", 0);
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    /* HF reads max_position_embeddings as the pretrained length unless rope_scaling names
     * original_max_position_embeddings; then max_position_embeddings is the extended length. */
    c->rope.original_max_len = max_pos;
    c->rope.max_len = max_pos;
    if (scaling && !cJSON_IsNull(scaling)) {
        if (!cJSON_IsObject(scaling)) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null", path);
            goto done;
        }
        if ((rs = rope_from_json(&c->rope, scaling, path, err)) != RX_OK) goto done;
        if (!cJSON_GetObjectItemCaseSensitive(scaling, "original_max_position_embeddings"))
            c->rope.max_len = (int64_t)(c->rope.factor * (double)max_pos);
    }
    RxError verr;
    if (model_config_validate(c, &verr) != RX_OK)
        rs = rx_fail(err, RX_ERR_FORMAT, "%s: %s", path, verr.msg);
done:
    cJSON_Delete(root);
    free(text);
    return rs;
}
