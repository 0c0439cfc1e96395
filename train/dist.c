/* Data-parallel ranks over MPI, or the single process (dist.h). */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>

#include "commands.h"

static int rank = 0, size = 1;

/* A launcher's world size from its environment (Open MPI, MPICH/Hydra, Slurm's PMI). */
static int launcher_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) return atoi(v);
    }
    return 1;
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }

#ifdef ROPEX_MPI
#include <mpi.h>

static int started = 0;

int dist_init(void) {
    if (started || launcher_size() == 1) return size;
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);   /* only the main thread calls MPI */
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    started = 1;
    return size;
}

const char *dist_build(void) {
    static char name[MPI_MAX_LIBRARY_VERSION_STRING];
    int len;
    MPI_Get_library_version(name, &len);
    for (int i = 0; i < len; i++) if (name[i] == ',' || name[i] == '\n') { name[i] = 0; break; }
    return name;
}

void dist_sum_floats(float *x, size_t n) {
    if (size == 1) return;
    const size_t bucket = (size_t)1 << 26;
    for (size_t i = 0; i < n; i += bucket) {
        int c = (int)(n - i < bucket ? n - i : bucket);
        MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void dist_sum_doubles(double *x, int n) {
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int64_t dist_max_int(int64_t v) {
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

void dist_barrier(void) { if (size > 1) MPI_Barrier(MPI_COMM_WORLD); }
void dist_abort(int code) { if (started && size > 1) MPI_Abort(MPI_COMM_WORLD, code); }
void dist_finalize(void) { if (started) { MPI_Finalize(); started = 0; } }

#else

int dist_init(void) {
    int n = launcher_size();
    if (n > 1)
        die("this ropex was built without MPI but runs as one of %d processes under an MPI launcher: "
            "build it with `make MPI=1` (see README, \"Several processes: MPI\")", n);
    return 1;
}
const char *dist_build(void) { return "none"; }
void dist_sum_floats(float *x, size_t n) { (void)x; (void)n; }
void dist_sum_doubles(double *x, int n) { (void)x; (void)n; }
int64_t dist_max_int(int64_t v) { return v; }
void dist_barrier(void) {}
void dist_abort(int code) { (void)code; }
void dist_finalize(void) {}

#endif
