/* Learning-rate schedules and gradient clipping (optim.h). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "optim.h"

double schedule_lr(const Schedule *s, int64_t t) {
    if (t < s->warmup)   /* from lr * warmup_start at t = 0 to lr at t = warmup */
        return s->lr * (s->warmup_start + (1.0 - s->warmup_start) * (double)t / (double)s->warmup);
    if (s->kind == SCHED_CONSTANT) return s->lr;
    int64_t span = s->total - 1 - s->warmup;
    double p = span > 0 ? (double)(t - s->warmup) / (double)span : 1.0;
    if (p > 1) p = 1;
    double floor = s->lr * s->min_ratio;
    if (s->kind == SCHED_COSINE) return floor + (s->lr - floor) * 0.5 * (1.0 + cos(M_PI * p));
    return s->lr + (floor - s->lr) * p;
}

double grad_norm(const float *g, size_t n) {
    /* per-thread partial sums over static blocks, added in thread order: deterministic */
    int nt = omp_get_max_threads();
    double *part = calloc((size_t)nt, sizeof *part);
    #pragma omp parallel num_threads(nt)
    {
        int id = omp_get_thread_num(), k = omp_get_num_threads();
        size_t lo = n * (size_t)id / (size_t)k, hi = n * (size_t)(id + 1) / (size_t)k;
        double acc = 0;
        for (size_t i = lo; i < hi; i++) acc += (double)g[i] * g[i];
        part[id] = acc;
    }
    double s = 0;
    for (int i = 0; i < nt; i++) s += part[i];
    free(part);
    return sqrt(s);
}

void scale_grads(float *g, size_t n, float s) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

double clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = grad_norm(g, n);
    if (max_norm > 0 && norm > max_norm) scale_grads(g, n, (float)(max_norm / (norm + 1e-6)));
    return norm;
}
