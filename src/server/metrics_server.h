/* The metrics endpoint (HTTP GET /metrics) of a single-process coechod or
 * of one worker, and the task that publishes this process's numbers into
 * its slot of the metrics region.
 *
 * Owns the metrics listening socket (opened by the main process before
 * any fork, so that every worker inherits the same one; whichever worker
 * accepts a scrape answers it for the whole service), the publish task,
 * the accept task and the scrape tasks. Each scrape is a task of its own
 * with a deadline on every read and write, and at most a few run at once,
 * so scrapes never hold up echoing. */
#ifndef COECHO_METRICS_SERVER_H
#define COECHO_METRICS_SERVER_H

#include "rt/rt.h"
#include "server/config.h"
#include "server/metrics.h"

/* Opens cfg's metrics listener if it has one (logs "metrics on
 * http://ADDR:PORT/metrics"). 0, or -errno (logged). Before any fork. */
int metrics_listener_open(const config *cfg);
/* Closes it in a process that does not serve it (the main process of
 * workers, at shutdown). */
void metrics_listener_close(void);

/* This process's numbers now (fds too: reads /proc/self/fd). */
void metrics_collect(metrics_values *v, bool fds_too);

/* Starts the publish task and, with a listener, the accept task, children
 * of parent (the reaper). 0, or -errno (logged). */
int metrics_server_start(co_tid parent);
/* Publishes once more (every call: the last one, at the end, counts what
 * closed during the grace period), closes the listener and ends every task
 * of this module. */
void metrics_server_stop(void);

#endif
