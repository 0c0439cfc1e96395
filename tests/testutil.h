/* Helpers shared by the C tests: one line per case ("PASS name" / "FAIL name: why"), which
 * tests/run.sh counts, a replayable seed, and a central finite-difference checker. */
#ifndef ROPEX_TESTUTIL_H
#define ROPEX_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/rng.h"

static int tu_failed = 0, tu_passed = 0;

static inline void tu_report(int ok, const char *name, const char *fmt, ...) {
    char why[512] = "";
    if (fmt) { va_list ap; va_start(ap, fmt); vsnprintf(why, sizeof why, fmt, ap); va_end(ap); }
    printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, why[0] ? ": " : "", why);
    fflush(stdout);
    if (ok) tu_passed++; else tu_failed++;
}

/* Seed from $ROPEX_TEST_SEED (to replay a failure) or the given default; printed either way. */
static inline uint64_t tu_seed(uint64_t dflt) {
    const char *s = getenv("ROPEX_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : dflt;
    printf("seed %llu (replay with ROPEX_TEST_SEED=%llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    return seed;
}

static inline void tu_fill(Rng *r, float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((2.0 * rng_uniform(r) - 1.0) * scale);
}

static inline int tu_exit(void) {
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

/* ---- finite differences ----
 * The op under test defines a scalar objective f = sum(out * r) with fixed random r (computed in
 * double) and a gradient routine that runs its backward with dout = r into zeroed d-buffers.
 * Each variable element is checked against the central difference (f(x+h) - f(x-h)) / 2h. */
typedef struct { const char *name; float *x; float *dx; size_t n; } FdVar;
typedef double (*FdObjective)(void *ctx);
typedef void (*FdGradient)(void *ctx);

typedef struct { double h, atol, rtol; } FdTol;

static inline int fd_check(const char *test, void *ctx, FdObjective f, FdGradient grad,
                           FdVar *vars, int nvars, FdTol tol) {
    for (int v = 0; v < nvars; v++) memset(vars[v].dx, 0, vars[v].n * sizeof(float));
    grad(ctx);
    int ok = 1;
    char detail[512] = "";
    size_t used = 0;
    for (int v = 0; v < nvars; v++) {
        double worst = 0, wa = 0, wn = 0;
        size_t wi = 0;
        int var_ok = 1;
        for (size_t i = 0; i < vars[v].n; i++) {
            float keep = vars[v].x[i];
            vars[v].x[i] = keep + (float)tol.h;
            double fp = f(ctx);
            vars[v].x[i] = keep - (float)tol.h;
            double fm = f(ctx);
            vars[v].x[i] = keep;
            /* divide by the step actually taken after fp32 rounding */
            double step = (double)(keep + (float)tol.h) - (double)(keep - (float)tol.h);
            double num = (fp - fm) / step, ana = vars[v].dx[i];
            double err = fabs(ana - num), lim = tol.atol + tol.rtol * fabs(num);
            if (err / lim > worst) { worst = err / lim; wi = i; wa = ana; wn = num; }
            if (err > lim) var_ok = 0;
        }
        if (!var_ok) ok = 0;
        used += (size_t)snprintf(detail + used, sizeof detail - used,
                                 "%s%s worst err/tol %.3f at [%zu] (analytic %.6g, numeric %.6g)",
                                 v ? "; " : "", vars[v].name, worst, wi, wa, wn);
        if (used >= sizeof detail) used = sizeof detail - 1;
    }
    tu_report(ok, test, "%s", detail);
    return ok;
}

#endif
