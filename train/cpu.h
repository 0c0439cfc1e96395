/* CPU-dependent choices made once at start-up (see cpu.c). */
#ifndef ROPEX_CPU_H
#define ROPEX_CPU_H

/* Re-executes the program with OPENBLAS_CORETYPE=SkylakeX when the CPU supports those kernels
 * and OpenBLAS picked slower ones; returns otherwise. Call first thing in main. */
void cpu_pick_blas_kernels(char **argv);
/* The OpenBLAS kernel family in use (e.g. "Zen", "Haswell", "SkylakeX"). */
const char *cpu_blas_kernels(void);

#endif
