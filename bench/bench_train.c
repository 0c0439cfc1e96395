/* One full training step (forward, backward, AdamW) of a model shape at a sequence length:
 * tokens/s, model FLOPs per token, achieved GFLOP/s, MFU against the FMA peak measured here, and
 * the peak RSS of the process. Prints one JSON line (for bench/run.sh) after a human line.
 * usage: bench_train PRESET T STEPS RECOMPUTE(0|1)
 * Model FLOPs per token (state once, used everywhere): 6 * N_matmul + 6 * L * T * C, where
 * N_matmul counts the weights of every matrix multiply (all projections and the LM head, not
 * the embedding lookup) and 6 L T C is causal attention's QK^T and PV, forward and backward. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../model/model.h"
#include "../model/rng.h"
#include "../optim/optim.h"
#include "../train/cpu.h"
#include "peak.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    cpu_pick_blas_kernels(argv);
    cpu_keep_freed_memory();
    if (argc != 5) { fprintf(stderr, "usage: bench_train PRESET T STEPS RECOMPUTE\n"); return 2; }
    const char *preset = argv[1];
    int64_t T = atoll(argv[2]);
    int steps = atoi(argv[3]), recompute = atoi(argv[4]);
    ModelConfig cfg;
    RxError err;
    if (model_config_preset(&cfg, preset, &err) != RX_OK) { fprintf(stderr, "%s\n", err.msg); return 2; }
    Model m;
    if (model_init(&m, &cfg, &err) != RX_OK || model_alloc_grads(&m, &err) != RX_OK) { fprintf(stderr, "%s\n", err.msg); return 2; }
    m.recompute = recompute;
    model_init_random(&m, 1, 0.02f);
    size_t n = m.table.total;
    float *am = calloc(n, 4), *av = calloc(n, 4);
    OptimRange *ranges = malloc(sizeof(OptimRange) * (size_t)m.table.count);
    for (int i = 0; i < m.table.count; i++)
        ranges[i] = (OptimRange){m.table.entries[i].offset, m.table.entries[i].numel, m.table.entries[i].decay};
    AdamWConfig ac = {0.9, 0.95, 1e-8, 0.0};
    int32_t *tok = malloc((size_t)T * 4), *tgt = malloc((size_t)T * 4);
    Rng r = {7};
    for (int64_t i = 0; i < T; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)cfg.vocab);
    for (int64_t i = 0; i < T; i++) tgt[i] = i + 1 < T ? tok[i + 1] : -1;
    double tf = 0, tb = 0, to = 0, best = 1e30;
    float loss = 0;
    for (int s = 0; s <= steps; s++) {   /* step 0 warms up (allocation, page faults) */
        double t0 = now();
        /* the trainer's call: forward with the LM head's gradient, then backward */
        model_zero_grad(&m);
        double t1 = now();   /* zeroing timed apart ("zero" in the line below) */
        if (model_forward_backward(&m, tok, tgt, 1, T, &loss, &err) != RX_OK) { fprintf(stderr, "%s\n", err.msg); return 2; }
        double t2 = now();
        adamw_step(m.params, m.grads, am, av, ranges, m.table.count, &ac, 1e-5, s + 1);
        double t3 = now();
        if (s == 0) continue;
        tf += t1 - t0; tb += t2 - t1; to += t3 - t2;
        if (t3 - t0 < best) best = t3 - t0;
    }
    double step = (tf + tb + to) / steps;
    double flops_tok = model_flops_per_token(&cfg, T);
    double tps = (double)T / step, gflops = flops_tok * tps / 1e9;
    double peak = fma_peak_gflops(omp_get_max_threads());
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = (double)ru.ru_maxrss / 1024.0;
    ModelMemory mm = model_memory(&cfg, 1, T);
    printf("ropex %-12s T=%-5lld recompute=%d: %8.1f tokens/s  step %.2f s (zero %.2f fwd+bwd %.2f adamw %.2f)  "
           "%.2f GFLOP/token  %.1f GFLOP/s  MFU %.1f%% of %.0f  peak RSS %.0f MiB (predicted %.0f)  loss %.4f\n",
           preset, (long long)T, recompute, tps, step, tf / steps, tb / steps, to / steps, flops_tok / 1e9,
           gflops, 100 * gflops / peak, peak, rss_mib,
           (4.0 * (double)mm.params + (double)(recompute ? mm.acts_recompute : mm.acts) + (double)mm.scratch + (double)mm.rope +
            (double)mm.attn) / 1048576.0,
           loss);
    printf("{\"impl\": \"ropex\", \"shape\": \"%s\", \"T\": %lld, \"recompute\": %d, \"tokens_per_s\": %.3f, "
           "\"step_s\": %.4f, \"flops_per_token\": %.6g, \"gflops\": %.3f, \"mfu\": %.4f, \"peak_gflops\": %.2f, "
           "\"peak_rss_mib\": %.1f, \"threads\": %d, \"blas\": \"%s\"}\n", preset, (long long)T, recompute, tps, step,
           flops_tok, gflops, gflops / peak, peak, rss_mib, omp_get_max_threads(), cpu_blas_kernels());
    return 0;
}
