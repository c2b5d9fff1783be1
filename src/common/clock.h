/* The monotonic clock, for every program: deadlines, rates, intervals. */
#ifndef COECHO_CLOCK_H
#define COECHO_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t clock_monotonic_ns(void);

static inline int64_t clock_monotonic_ms(void) { return clock_monotonic_ns() / 1000000; }
static inline uint64_t clock_monotonic_us(void) { return (uint64_t)clock_monotonic_ns() / 1000u; }

#endif
