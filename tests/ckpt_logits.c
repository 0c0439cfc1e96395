/* Loads a ropex checkpoint, runs the forward pass on random tokens and dumps tokens and logits
 * (tensor dump format of parity_dump.c), for the Python checkpoint tests.
 * usage: ckpt_logits CHECKPOINT.h5 OUT B T SEED */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/ckpt.h"
#include "../model/rng.h"

static void put(FILE *f, const char *name, int dtype, int ndim, const int64_t *dims, const void *data) {
    uint32_t nl = (uint32_t)strlen(name), dt = (uint32_t)dtype, nd = (uint32_t)ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    fwrite(&nl, 4, 1, f); fwrite(name, 1, nl, f); fwrite(&dt, 4, 1, f); fwrite(&nd, 4, 1, f);
    fwrite(dims, 8, (size_t)ndim, f); fwrite(data, 4, n, f);
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: ckpt_logits CHECKPOINT OUT B T SEED\n"); return 2; }
    Model m;
    RxError err;
    if (ckpt_load(argv[1], &m, NULL, NULL, NULL, NULL, &err) != RX_OK) { fprintf(stderr, "%s\n", err.msg); return 2; }
    int64_t B = atoll(argv[3]), T = atoll(argv[4]), N = B * T;
    Rng rng = {strtoull(argv[5], NULL, 10)};
    int32_t *tok = malloc((size_t)N * 4);
    for (int64_t i = 0; i < N; i++) tok[i] = (int32_t)(rng_next(&rng) % (uint64_t)m.cfg.vocab);
    if (model_forward(&m, tok, NULL, B, T, NULL, &err) != RX_OK) { fprintf(stderr, "%s\n", err.msg); return 2; }
    float *logits = malloc((size_t)(N * m.cfg.vocab) * 4);
    model_logits(&m, 0, N, logits);
    FILE *f = fopen(argv[2], "wb");
    if (!f) { perror(argv[2]); return 2; }
    uint32_t version = 1, count = 2;
    fwrite("RPXTDUMP", 1, 8, f); fwrite(&version, 4, 1, f); fwrite(&count, 4, 1, f);
    int64_t dt[2] = {B, T}, dl[2] = {N, m.cfg.vocab};
    put(f, "tokens", 1, 2, dt, tok);
    put(f, "logits", 0, 2, dl, logits);
    if (fclose(f) != 0) { perror(argv[2]); return 2; }
    free(tok); free(logits);
    model_free(&m);
    return 0;
}
