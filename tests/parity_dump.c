/* Writes everything the PyTorch parity test (tests/ref/test_parity.py) compares: a random model
 * (weights under their HF names), tokens and targets, then ropex's logits, loss, the residual
 * stream entering every layer, and every parameter gradient.
 *
 * usage: parity_dump OUT V C L NH NKV H TIED B T SEED [POS_LEN]
 * POS_LEN > 0: skip-wise positions (model_pose_positions, each row one document) standing for
 * POS_LEN tokens, dumped as "positions".
 * File: "RPXTDUMP" u32 version=1 u32 count, then per tensor: u32 name_len, name, u32 dtype
 * (0 f32, 1 i32), u32 ndim, i64 dims[ndim], data (little-endian). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/model.h"
#include "../model/rng.h"

static FILE *out;
static uint32_t count;

static void put(const char *name, int dtype, int ndim, const int64_t *dims, const void *data) {
    uint32_t nl = (uint32_t)strlen(name), dt = (uint32_t)dtype, nd = (uint32_t)ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    fwrite(&nl, 4, 1, out); fwrite(name, 1, nl, out);
    fwrite(&dt, 4, 1, out); fwrite(&nd, 4, 1, out);
    fwrite(dims, 8, (size_t)ndim, out);
    fwrite(data, 4, n, out);
    count++;
}

int main(int argc, char **argv) {
    if (argc != 12 && argc != 13) {
        fprintf(stderr, "usage: parity_dump OUT V C L NH NKV H TIED B T SEED [POS_LEN]\n");
        return 2;
    }
    ModelConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab = atoll(argv[2]); cfg.dim = atoll(argv[3]); cfg.n_layers = atoll(argv[4]);
    cfg.n_heads = atoll(argv[5]); cfg.n_kv_heads = atoll(argv[6]); cfg.hidden_dim = atoll(argv[7]);
    cfg.tied = atoi(argv[8]); cfg.norm_eps = 1e-5;
    rope_config_default(&cfg.rope);
    const int64_t B = atoll(argv[9]), T = atoll(argv[10]), N = B * T;
    const uint64_t seed = strtoull(argv[11], NULL, 10);
    Model m;
    RxError err;
    if (model_init(&m, &cfg, &err) != RX_OK || model_alloc_grads(&m, &err) != RX_OK) {
        fprintf(stderr, "parity_dump: %s\n", err.msg);
        return 2;
    }
    /* weights large enough that every nonlinearity matters; norm weights away from 1 */
    model_init_random(&m, seed, 0.3f);
    Rng rng = {seed ^ 0x5eedull};
    for (int i = 0; i < m.table.count; i++) {
        const ParamEntry *e = &m.table.entries[i];
        if (e->ndim == 1)
            for (size_t j = 0; j < e->numel; j++) m.params[e->offset + j] = (float)(0.5 + rng_uniform(&rng));
    }
    int32_t *tokens = malloc((size_t)N * 4), *targets = malloc((size_t)N * 4);
    for (int64_t n = 0; n < N; n++) tokens[n] = (int32_t)(rng_next(&rng) % (uint64_t)cfg.vocab);
    for (int64_t n = 0; n < N; n++) {
        int64_t t = n % T;
        targets[n] = t + 1 < T ? tokens[n + 1] : -1;
        if (rng_uniform(&rng) < 0.1) targets[n] = -1;   /* some ignored targets */
    }
    const int64_t pos_len = argc == 13 ? atoll(argv[12]) : 0;
    int32_t *positions = malloc((size_t)N * 4);
    if (pos_len > 0) {
        model_pose_positions(positions, NULL, B, T, pos_len, seed, 1, 0);
        m.positions = positions; m.pos_len = pos_len;
    }
    float loss;
    if (model_forward(&m, tokens, targets, B, T, &loss, &err) != RX_OK) {
        fprintf(stderr, "parity_dump: %s\n", err.msg);
        return 2;
    }
    model_zero_grad(&m);
    model_backward(&m);

    out = fopen(argv[1], "wb");
    if (!out) { perror(argv[1]); return 2; }
    fwrite("RPXTDUMP", 1, 8, out);
    uint32_t version = 1;
    fwrite(&version, 4, 1, out);
    long count_pos = ftell(out);
    fwrite(&count, 4, 1, out);

    int32_t conf[9] = {(int32_t)cfg.vocab, (int32_t)cfg.dim, (int32_t)cfg.n_layers,
                       (int32_t)cfg.n_heads, (int32_t)cfg.n_kv_heads, (int32_t)m.cfg.head_dim,
                       (int32_t)cfg.hidden_dim, cfg.tied, 0};
    int64_t d9[1] = {9}, dBT[2] = {B, T}, d1[1] = {1}, dNV[2] = {N, cfg.vocab}, dNC[2] = {N, cfg.dim};
    put("config", 1, 1, d9, conf);
    double theta_eps[2] = {cfg.rope.theta, cfg.norm_eps};
    float te[2] = {(float)theta_eps[0], (float)theta_eps[1]};
    int64_t d2[1] = {2};
    put("theta_eps", 0, 1, d2, te);
    put("tokens", 1, 2, dBT, tokens);
    put("targets", 1, 2, dBT, targets);
    if (pos_len > 0) put("positions", 1, 2, dBT, positions);
    for (int i = 0; i < m.table.count; i++) {
        const ParamEntry *e = &m.table.entries[i];
        put(e->name, 0, e->ndim, e->shape, m.params + e->offset);
    }
    float *logits = malloc((size_t)(N * cfg.vocab) * 4);
    model_logits(&m, 0, N, logits);
    put("logits", 0, 2, dNV, logits);
    put("loss", 0, 1, d1, &loss);
    char name[PARAM_NAME_MAX + 8];
    for (int64_t l = 0; l <= cfg.n_layers; l++) {
        snprintf(name, sizeof name, "hidden.%lld", (long long)l);
        put(name, 0, 2, dNC, m.acts.resid + l * N * cfg.dim);
    }
    put("hidden.final_norm", 0, 2, dNC, m.acts.lnf);
    for (int i = 0; i < m.table.count; i++) {
        const ParamEntry *e = &m.table.entries[i];
        snprintf(name, sizeof name, "grad.%s", e->name);
        put(name, 0, e->ndim, e->shape, m.grads + e->offset);
    }
    fseek(out, count_pos, SEEK_SET);
    fwrite(&count, 4, 1, out);
    if (fclose(out) != 0) { perror(argv[1]); return 2; }
    free(logits); free(tokens); free(targets); free(positions);
    model_free(&m);
    return 0;
}
