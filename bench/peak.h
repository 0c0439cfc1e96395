/* The machine's fp32 FMA peak, measured: each thread runs independent chains of vector FMAs
 * (enough to cover the FMA latency on every port) for a fixed time. */
#ifndef ROPEX_BENCH_PEAK_H
#define ROPEX_BENCH_PEAK_H

#include <omp.h>
#include <time.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static double peak_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
/* GFLOP/s of `threads` threads doing only FMAs (8 lanes x 2 flops each). */
static double fma_peak_gflops(int threads) {
    double total = 0;
    #pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        /* distinct starting values, so the compiler cannot merge the chains */
        __m256 a0 = _mm256_set1_ps(1.00f), a1 = _mm256_set1_ps(1.01f), a2 = _mm256_set1_ps(1.02f);
        __m256 a3 = _mm256_set1_ps(1.03f), a4 = _mm256_set1_ps(1.04f), a5 = _mm256_set1_ps(1.05f);
        __m256 a6 = _mm256_set1_ps(1.06f), a7 = _mm256_set1_ps(1.07f), a8 = _mm256_set1_ps(1.08f);
        __m256 a9 = _mm256_set1_ps(1.09f), a10 = _mm256_set1_ps(1.10f), a11 = _mm256_set1_ps(1.11f);
        const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
        long iters = 0;
        double t0 = peak_now(), t;
        do {
            for (int i = 0; i < 1000; i++) {
                a0 = _mm256_fmadd_ps(a0, x, y); a1 = _mm256_fmadd_ps(a1, x, y); a2 = _mm256_fmadd_ps(a2, x, y);
                a3 = _mm256_fmadd_ps(a3, x, y); a4 = _mm256_fmadd_ps(a4, x, y); a5 = _mm256_fmadd_ps(a5, x, y);
                a6 = _mm256_fmadd_ps(a6, x, y); a7 = _mm256_fmadd_ps(a7, x, y); a8 = _mm256_fmadd_ps(a8, x, y);
                a9 = _mm256_fmadd_ps(a9, x, y); a10 = _mm256_fmadd_ps(a10, x, y); a11 = _mm256_fmadd_ps(a11, x, y);
            }
            iters += 1000;
            t = peak_now() - t0;
        } while (t < 0.3);
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
        s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
        float keep[8];
        _mm256_storeu_ps(keep, s);
        total = (double)iters * 12 * 16 / t / 1e9 + (keep[0] == 12345.0f ? 1e-9 : 0);
    }
    return total;
}
#else
static double fma_peak_gflops(int threads) { (void)threads; return 0; }
#endif

#endif
