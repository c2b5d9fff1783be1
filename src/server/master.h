/* The main process with workers > 1: it holds the listening sockets, forks
 * the workers and supervises them.
 *
 * Owns the worker table, their heartbeats, restarts and crash-loop count,
 * and what the workers report; the configuration in force stays with
 * settings, which every worker it starts inherits. */
#ifndef COECHO_MASTER_H
#define COECHO_MASTER_H

#include <stdbool.h>
#include <stddef.h>

/* fds: nworkers sets of nfds listening sockets, or one set all share
 * (shared); closed at shutdown. Returns the process's exit status. */
int master_run(int nworkers, int *fds, size_t nfds, bool shared);

#endif
