/* Picks OpenBLAS's fastest correct kernels. Debian's OpenBLAS chooses its kernels when it loads,
 * and on some CPUs with AVX-512 it settles for the AVX2 ones (Haswell/Zen), which run at about
 * half the speed. When the CPU has every AVX-512 subset the SkylakeX kernels use and the user
 * has not chosen (OPENBLAS_CORETYPE unset), ropex sets OPENBLAS_CORETYPE=SkylakeX and re-executes
 * itself once, before any work, so the library loads those kernels. */
#include "cpu.h"

#include <cblas.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int has_avx512_for_skylakex(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

void cpu_keep_freed_memory(void) {
#ifdef __GLIBC__
    /* 32 MiB is the largest mmap threshold glibc accepts on 64-bit; larger blocks stay mmapped.
     * Measured (SmolLM-135M shape, T=2048, 3 steps): 1.35 M page faults instead of 1.78 M. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

/* whether the CPU runs the SkylakeX kernels and OpenBLAS loaded slower ones */
static int faster_kernels_available(const char *core) {
    return has_avx512_for_skylakex() && core && !strstr(core, "SkylakeX") && !strstr(core, "Cooperlake") &&
           !strstr(core, "SapphireRapids");
}

void cpu_pick_blas_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("ROPEX_BLAS_PICKED")) return;
    if (!faster_kernels_available(openblas_get_corename())) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    setenv("ROPEX_BLAS_PICKED", "1", 1);   /* once: never loop */
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels we have */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("ROPEX_BLAS_PICKED");
}

const char *cpu_blas_kernels(void) {
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

const char *cpu_blas_choice(void) {
    if (getenv("ROPEX_BLAS_PICKED")) return "picked by ropex";
    if (!getenv("OPENBLAS_CORETYPE")) return "picked by OpenBLAS";
    if (faster_kernels_available(openblas_get_corename()))
        return "set by OPENBLAS_CORETYPE in the environment; this CPU runs the faster SkylakeX kernels: "
               "unset it to let ropex pick them";
    return "set by OPENBLAS_CORETYPE in the environment";
}
