/* Single-thread stand-ins for the OpenMP runtime calls Kiln makes, for builds without OpenMP
 * (see omp_compat.h). Compiled to nothing when OpenMP is on. */
#include "core/omp_compat.h"

#ifndef _OPENMP
#include <time.h>

int omp_get_max_threads(void) { return 1; }
int omp_get_num_threads(void) { return 1; }
int omp_get_thread_num(void) { return 0; }
int omp_in_parallel(void) { return 0; }
void omp_set_num_threads(int n) { (void)n; }

double omp_get_wtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#else
typedef int kiln_omp_compat_unused;   /* ISO C wants a translation unit to declare something */
#endif
