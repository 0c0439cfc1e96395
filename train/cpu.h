/* CPU-dependent choices made once at start-up (see cpu.c). */
#ifndef ROPEX_CPU_H
#define ROPEX_CPU_H

/* Re-executes the program with OPENBLAS_CORETYPE=SkylakeX when the CPU supports those kernels
 * and OpenBLAS picked slower ones; returns otherwise. Call first thing in main. */
void cpu_pick_blas_kernels(char **argv);
/* Keeps freed blocks of up to 32 MiB in the heap (glibc): the attention kernel's per-call
 * buffers (packed blocks, per-thread dQ) are allocated and freed in every layer, and returned to
 * the kernel each time they were faulted in again page by page, with TLB-shootdown interrupts on
 * the other cores. Call first thing in main; a no-op elsewhere than glibc. */
void cpu_keep_freed_memory(void);
/* The OpenBLAS kernel family in use (e.g. "Zen", "Haswell", "SkylakeX"). */
const char *cpu_blas_kernels(void);
/* Who chose them: ropex, OpenBLAS itself, or OPENBLAS_CORETYPE in the environment (then also
 * whether this CPU could run faster ones). */
const char *cpu_blas_choice(void);

#endif
