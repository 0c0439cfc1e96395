/* Data-parallel ranks (issue 9). Built with MPI (`make MPI=1`, ROPEX_MPI defined) these wrap
 * Open MPI; built without, they describe the one process there is (rank 0 of 1) and refuse to
 * run under mpirun, where every copy would think it is alone and write the same checkpoints.
 * MPI starts only for `ropex train` launched by mpirun (or any MPI launcher setting the usual
 * environment), so the other commands never initialise it. */
#ifndef ROPEX_DIST_H
#define ROPEX_DIST_H

#include <stddef.h>
#include <stdint.h>

int dist_init(void);                 /* returns the world size; dies when a launcher is found without MPI */
int dist_rank(void);
int dist_size(void);
const char *dist_build(void);        /* "Open MPI 4.1.4" or "none" */
/* In-place sums over the ranks (no-ops for one rank). Floats go in buckets of at most 2^26. */
void dist_sum_floats(float *x, size_t n);
void dist_sum_doubles(double *x, int n);
int64_t dist_max_int(int64_t v);
void dist_barrier(void);
void dist_abort(int code);           /* ends every rank (MPI_Abort); returns when there is one rank */
void dist_finalize(void);

#endif
