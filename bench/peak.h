/* The machine's fp32 FMA peak, measured: each thread runs independent chains of vector FMAs
 * (enough to cover the FMA latency on every port) for a fixed time. */
#ifndef ROPEX_BENCH_PEAK_H
#define ROPEX_BENCH_PEAK_H

#include <omp.h>
#include <time.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#if defined(__AVX512F__)   /* the widest FMA the build may use: the peak of the code we run */
typedef __m512 pk_vf;
#define PK_LANES 16
#define pk_set1 _mm512_set1_ps
#define pk_fma _mm512_fmadd_ps
#define pk_add _mm512_add_ps
#define pk_store _mm512_storeu_ps
#else
typedef __m256 pk_vf;
#define PK_LANES 8
#define pk_set1 _mm256_set1_ps
#define pk_fma _mm256_fmadd_ps
#define pk_add _mm256_add_ps
#define pk_store _mm256_storeu_ps
#endif
static double peak_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
/* GFLOP/s of `threads` threads doing only FMAs (PK_LANES lanes x 2 flops each). */
static double fma_peak_gflops(int threads) {
    double total = 0;
    #pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        /* distinct starting values, so the compiler cannot merge the chains */
        pk_vf a0 = pk_set1(1.00f), a1 = pk_set1(1.01f), a2 = pk_set1(1.02f), a3 = pk_set1(1.03f);
        pk_vf a4 = pk_set1(1.04f), a5 = pk_set1(1.05f), a6 = pk_set1(1.06f), a7 = pk_set1(1.07f);
        pk_vf a8 = pk_set1(1.08f), a9 = pk_set1(1.09f), a10 = pk_set1(1.10f), a11 = pk_set1(1.11f);
        const pk_vf x = pk_set1(0.999999f), y = pk_set1(1e-7f);
        long iters = 0;
        double t0 = peak_now(), t;
        do {
            for (int i = 0; i < 1000; i++) {
                a0 = pk_fma(a0, x, y); a1 = pk_fma(a1, x, y); a2 = pk_fma(a2, x, y);
                a3 = pk_fma(a3, x, y); a4 = pk_fma(a4, x, y); a5 = pk_fma(a5, x, y);
                a6 = pk_fma(a6, x, y); a7 = pk_fma(a7, x, y); a8 = pk_fma(a8, x, y);
                a9 = pk_fma(a9, x, y); a10 = pk_fma(a10, x, y); a11 = pk_fma(a11, x, y);
            }
            iters += 1000;
            t = peak_now() - t0;
        } while (t < 0.3);
        pk_vf s = pk_add(pk_add(pk_add(a0, a1), pk_add(a2, a3)), pk_add(pk_add(a4, a5), pk_add(a6, a7)));
        s = pk_add(s, pk_add(pk_add(a8, a9), pk_add(a10, a11)));
        float keep[PK_LANES];
        pk_store(keep, s);
        total = (double)iters * 12 * 2 * PK_LANES / t / 1e9 + (keep[0] == 12345.0f ? 1e-9 : 0);
    }
    return total;
}
#else
static double fma_peak_gflops(int threads) { (void)threads; return 0; }
#endif

#endif
