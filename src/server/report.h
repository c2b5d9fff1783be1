/* What a worker reports to the main process with every STATUS: its
 * counters, as one notify line the main process sums up for systemd. One
 * encoder and one decoder, so that the two sides cannot drift apart. */
#ifndef COECHO_REPORT_H
#define COECHO_REPORT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct worker_report {
    unsigned long long active, accepted, closed, timed_out, bytes;
} worker_report;

/* "X_COECHO_STATS=..." into buf; the length, as snprintf. */
int worker_report_format(char *buf, size_t size, const worker_report *r);
/* Parses a line worker_report_format wrote; false if it is not one. */
bool worker_report_parse(const char *line, worker_report *r);

#endif
