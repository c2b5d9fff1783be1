/* Restart delays for something that keeps dying (an accept task, a worker
 * process): the first delay, doubling up to a maximum; a run that lasted
 * healthy_ms or more starts the series over. Times in ms, any clock. */
#ifndef COECHO_BACKOFF_H
#define COECHO_BACKOFF_H

#include <stdint.h>

typedef struct backoff {
    int64_t first_ms, max_ms, healthy_ms; /* the policy */
    int64_t delay_ms;                     /* the last delay; 0: none yet */
    int64_t started_at;                   /* the current run's start */
} backoff;

#define BACKOFF_POLICY(first, max, healthy)                                                        \
    (backoff) { .first_ms = (first), .max_ms = (max), .healthy_ms = (healthy) }

/* It (re)started at now. */
void backoff_started(backoff *b, int64_t now);
/* It died at now: the delay before starting it again. */
int64_t backoff_next(backoff *b, int64_t now);

#endif
