#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/clock.h"

#include <time.h>

int64_t clock_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail for this clock */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
