/* The text of the metrics endpoint: a snapshot in the Prometheus text
 * exposition format (version 0.0.4), and the one HTTP request it answers.
 * Pure functions, no state. */
#ifndef COECHO_METRICS_TEXT_H
#define COECHO_METRICS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "server/metrics.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* snap as exposition text (HELP and TYPE lines, coechod_ names; with
 * workers, per-worker coechod_worker_ series labelled worker="N" after the
 * totals): a NUL-terminated string on the heap (free() it), its length in
 * *len; NULL when out of memory. */
char *metrics_render(const metrics_snapshot *snap, const char *version, size_t *len);

/* Where a request head ends: the length of head up to and including its
 * blank line ("\r\n\r\n" or "\n\n"), or 0 when it has not ended yet. */
size_t metrics_head_end(const char *buf, size_t len);

/* The status for a complete request head (NUL-terminated): 200 for GET or
 * HEAD of /metrics (a query string is ignored; *head_only for HEAD), 404
 * for another path, 405 for another method, 400 when the request line is
 * not METHOD SP /TARGET SP HTTP/1.x. */
int metrics_request_status(const char *head, bool *head_only);

/* "Not Found" and the like, for the status line. */
const char *metrics_reason(int status);

#endif
