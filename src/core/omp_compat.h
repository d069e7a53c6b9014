/* OpenMP, or single-thread stand-ins when built without it (KILN_MINIMAL): sources include this
 * instead of <omp.h>. Without -fopenmp the `#pragma omp` lines are ignored and the few runtime
 * calls Kiln makes resolve to src/core/omp_compat.c (one thread, never in a parallel region).
 * The declarations match <omp.h>'s, so a file may include both in either order. */
#ifndef KILN_CORE_OMP_COMPAT_H
#define KILN_CORE_OMP_COMPAT_H

#ifdef _OPENMP
#include <omp.h>
#else
int omp_get_max_threads(void);
int omp_get_num_threads(void);
int omp_get_thread_num(void);
int omp_in_parallel(void);
void omp_set_num_threads(int n);
double omp_get_wtime(void);
#endif

#endif
