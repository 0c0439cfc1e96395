/* RoPE scaling at the level of rotations: the Position Interpolation worked example (extending
 * 2048 -> 8192, position 4096 rotates exactly as position 1024 did), the scaled-scores property
 * of linear scaling, and the refusal to train dynamic NTK. (Per-method frequencies are checked
 * against the numpy oracle in tests/ref/test_rope.py; gradients in test_ops.c.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/rope.h"
#include "testutil.h"

static Rng rng;

static RopeTable table(RopeMethod m, double factor, int64_t hs, int64_t T) {
    RopeConfig rc;
    rope_config_default(&rc);
    rc.method = m;
    rc.factor = factor;
    rc.original_max_len = 2048;
    RopeTable t = {0};
    char err[256];
    if (rope_table_build(&t, &rc, hs, T, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); exit(1); }
    return t;
}

static float dotf(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

/* q rotated at pq and k at pk under table t; returns their dot product */
static float score(const RopeTable *t, const float *q, const float *k, int32_t pq, int32_t pk, int64_t hs) {
    float qr[128], kr[128];
    rope_forward(qr, q, t, &pq, 1, 1, hs);
    rope_forward(kr, k, t, &pk, 1, 1, hs);
    return dotf(qr, kr, hs);
}

static void test_pi_worked_example(void) {
    const int64_t hs = 64;
    RopeTable pi = table(ROPE_LINEAR, 4, hs, 8192), base = table(ROPE_NONE, 1, hs, 2048);
    float q[64], k[64], a[64], b[64];
    tu_fill(&rng, q, hs, 1);
    tu_fill(&rng, k, hs, 1);
    int32_t p_new = 4096, p_old = 1024;
    rope_forward(a, q, &pi, &p_new, 1, 1, hs);
    rope_forward(b, q, &base, &p_old, 1, 1, hs);
    int same_rotation = memcmp(a, b, sizeof a) == 0;
    /* q at 4096 against k at 4000 and 0, and the same pair at 1024 / 1000 / 0 unscaled */
    float s1 = score(&pi, q, k, 4096, 4000, hs), s2 = score(&base, q, k, 1024, 1000, hs);
    float s3 = score(&pi, q, k, 4096, 0, hs), s4 = score(&base, q, k, 1024, 0, hs);
    tu_report(same_rotation && s1 == s2 && s3 == s4,
              "PI 2048->8192: position 4096 is rotated exactly as position 1024 of the original model",
              "q.k at (4096, 4000) = %.9g vs (1024, 1000) = %.9g; (4096, 0) = %.9g vs (1024, 0) = %.9g",
              s1, s2, s3, s4);
    rope_table_free(&pi);
    rope_table_free(&base);
}

static void test_linear_scores_property(void) {
    /* linear scaling by s: scores at positions p equal the unscaled model's at p / s */
    const int64_t hs = 128, n = 12;
    const double s = 2.5;
    RopeTable sc = table(ROPE_LINEAR, s, hs, 10000), base = table(ROPE_NONE, 1, hs, 4000);
    double worst = 0;
    for (int trial = 0; trial < 20; trial++) {
        float q[128], k[128];
        int32_t pos[12];
        tu_fill(&rng, q, hs, 1);
        tu_fill(&rng, k, hs, 1);
        for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(5 * (rng_next(&rng) % 2000));  /* p/s whole */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                float a = score(&sc, q, k, pos[i], pos[j], hs);
                float b = score(&base, q, k, (int32_t)(pos[i] / s), (int32_t)(pos[j] / s), hs);
                /* fp32 cos/sin of angles equal in exact arithmetic: one rounding apart */
                worst = fmax(worst, fabs(a - b) / (1e-5 * sqrt(dotf(q, q, hs) * dotf(k, k, hs))));
            }
    }
    tu_report(worst <= 1, "linear s=2.5: attention scores at positions p equal the unscaled model's at p/s",
              "20 x 144 random q.k pairs, worst err/tol %.3f (tol 1e-5 |q||k|)", worst);
    rope_table_free(&sc);
    rope_table_free(&base);
}

static void test_dynamic_not_trainable(void) {
    RopeConfig rc;
    rope_config_default(&rc);
    char err[400] = "";
    int ok = rope_check_trainable(&rc, err, sizeof err) == 0;
    rc.method = ROPE_DYNAMIC;
    ok &= rope_check_trainable(&rc, err, sizeof err) != 0 && strstr(err, "rope.rope_type = dynamic") != NULL;
    tu_report(ok, "dynamic NTK is refused for training with a message", "%s", err);
}

static void test_longrope_keep_positions(void) {
    RopeConfig rc;
    rope_config_default(&rc);
    rc.method = ROPE_LONGROPE; rc.factor = 4; rc.original_max_len = 16; rc.keep_positions = 3;
    rc.n_short = rc.n_long = 4;
    for (int i = 0; i < 4; i++) { rc.short_factor[i] = 1; rc.long_factor[i] = 2 + i; }
    RopeTable t = {0};
    char err[256];
    int ok = rope_table_build(&t, &rc, 8, 40, err, sizeof err) == 0;
    /* positions 0..2 unscaled (original frequency, but still the attention factor), 3.. scaled */
    for (int p = 0; p < 6 && ok; p++)
        for (int i = 0; i < 4; i++) {
            double inv = p < 3 ? t.inv_freq_orig[i] : t.inv_freq_orig[i] / (2 + i);
            ok &= fabsf(t.cos[p * 4 + i] - (float)(cos(p * inv) * t.attention_factor)) < 1e-6f;
        }
    tu_report(ok, "longrope: positions below keep_positions use the original frequencies", NULL);
    rope_table_free(&t);
}

int main(void) {
    rng.state = tu_seed(99);
    test_pi_worked_example();
    test_linear_scores_property();
    test_dynamic_not_trainable();
    test_longrope_keep_positions();
    return tu_exit();
}
