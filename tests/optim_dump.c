/* 20 optimizer steps (clip, schedule, AdamW with decay on some ranges) on random parameters and
 * gradients, dumped for tests/ref/test_optim.py. usage: optim_dump OUT SEED */
#include <stdio.h>
#include <stdlib.h>

#include "../model/rng.h"
#include "../optim/optim.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: optim_dump OUT SEED\n"); return 2; }
    Rng r = {strtoull(argv[2], NULL, 10)};
    enum { N = 1000, STEPS = 20 };
    float p[N], g[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) p[i] = (float)rng_normal(&r);
    OptimRange ranges[3] = {{0, 300, 1}, {300, 200, 0}, {500, 500, 1}};
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.1};
    Schedule s = {SCHED_COSINE, 1e-2, 0.1, 0.1, 5, STEPS};
    FILE *f = fopen(argv[1], "wb");
    fwrite(p, 4, N, f);
    for (int t = 0; t < STEPS; t++) {
        float scale = t % 3 == 0 ? 5.0f : 0.05f;   /* some steps clip, some do not */
        for (int i = 0; i < N; i++) g[i] = (float)rng_normal(&r) * scale;
        fwrite(g, 4, N, f);
        double norm = clip_grad_norm(g, N, 1.0);
        double lr = schedule_lr(&s, t);
        adamw_step(p, g, m, v, ranges, 3, &ac, lr, t + 1);
        float meta[2] = {(float)lr, (float)norm};
        fwrite(meta, 4, 2, f);
        fwrite(p, 4, N, f);
    }
    fclose(f);
    return 0;
}
