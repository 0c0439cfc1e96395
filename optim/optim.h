/* Optimiser: AdamW over a flat parameter view (one float buffer laid out by the model's
 * ParamTable; gradients and both moments share that layout). Depends on nothing of ours but
 * that view.
 *
 * AdamW (Loshchilov & Hutter), as torch.optim.AdamW computes it:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * wd * p                      (decoupled decay, only where decay[i] says so)
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 */
#ifndef ROPEX_OPTIM_H
#define ROPEX_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double beta1, beta2, eps, weight_decay;
} AdamWConfig;

/* A contiguous range of the buffer with its own decay switch (a tensor of the table). */
typedef struct { size_t offset, numel; int decay; } OptimRange;

/* One step t (1-based) over every range. p, g, m, v each hold the whole buffer. */
void adamw_step(float *p, const float *g, float *m, float *v, const OptimRange *ranges, int nranges,
                const AdamWConfig *cfg, double lr, int64_t t);

/* Learning rate at step t (0-based) of `total`: linear warmup over `warmup` steps from
 * lr * warmup_start (PI's recipe starts at 10%), then constant, cosine or linear decay to
 * lr * min_ratio at the last step. */
typedef enum { SCHED_CONSTANT, SCHED_COSINE, SCHED_LINEAR } SchedKind;
typedef struct {
    SchedKind kind;
    double lr, warmup_start, min_ratio;
    int64_t warmup, total;
} Schedule;
double schedule_lr(const Schedule *s, int64_t t);

/* Global L2 norm of n gradients (summed in double, in a fixed order per thread count). */
double grad_norm(const float *g, size_t n);
/* Scales gradients so their norm is at most max_norm (torch's clip_grad_norm_: by
 * max_norm / (norm + 1e-6) when norm > max_norm). Returns the norm before clipping. */
double clip_grad_norm(float *g, size_t n, double max_norm);
void scale_grads(float *g, size_t n, float s);

#endif
