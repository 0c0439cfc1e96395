/* AdamW (optim.h). Elementwise, so any split over threads gives the same bits. */
#include <math.h>

#include "optim.h"

void adamw_step(float *p, const float *g, float *m, float *v, const OptimRange *ranges, int nranges,
                const AdamWConfig *cfg, double lr, int64_t t) {
    const float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2, eps = (float)cfg->eps;
    /* in torch's order: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps */
    const float step = (float)(lr / (1.0 - pow(cfg->beta1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(cfg->beta2, (double)t));
    const float decay = (float)(lr * cfg->weight_decay);
    for (int r = 0; r < nranges; r++) {
        const size_t o = ranges[r].offset, n = ranges[r].numel;
        const float wd = ranges[r].decay ? decay : 0.0f;
        float *pp = p + o, *mm = m + o, *vv = v + o;
        const float *gg = g + o;
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = gg[i], pi = pp[i] * (1.0f - wd);
            mm[i] = mm[i] * b1 + (1.0f - b1) * gi;
            vv[i] = vv[i] * b2 + (1.0f - b2) * gi * gi;
            pp[i] = pi - step * mm[i] / (sqrtf(vv[i]) / bc2_sqrt + eps);
        }
    }
}
