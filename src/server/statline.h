/* The service's numbers as text for people: the SIGUSR1 "stats:" line and
 * systemd's STATUS=. One formatter for the single process, a worker and
 * the main process of workers, so that their lines never drift apart.
 * Pure functions over metrics values, no state. */
#ifndef COECHO_STATLINE_H
#define COECHO_STATLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/metrics.h"

enum {
    STATLINE_SIZE = 1024 /* bytes: room for either line, whatever its numbers */
};

/* The worker processes, as the line tells them. */
typedef struct statline_workers {
    int running, total; /* 0 total: no workers (a single process) */
    uint64_t restarts;
} statline_workers;

/* "connections=N accepted=N ... udp_dropped_truncated=N" (without the
 * "stats: " prefix) into buf. With total 0, "workers=1/1". The length
 * snprintf(3) returns: >= size when cut. */
int statline_stats(char *buf, size_t size, const metrics_values *v, const statline_workers *w);

/* STATUS='s text (without "STATUS="): "stopping: " while stopping, "R/T
 * workers; " with workers, then the connections, listeners and tasks, and
 * "; udp: ..." once there is a UDP listener or a datagram. As
 * statline_stats for the result. */
int statline_status(char *buf, size_t size, const metrics_values *v, const statline_workers *w,
                    bool stopping);

#endif
