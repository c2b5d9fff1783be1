/* Access control at accept: the configuration's access lists (the
 * top-level one, or a listener's own when it has one), checked before a
 * connection is admitted.
 *
 * Owns the lists compiled from the configuration in force (rebuilt when it
 * changes: a reload applies to connections accepted after it), the count
 * of refused connections and the rate limit of the line that reports them
 * (at most one a second). Only the accept tasks call access_check. */
#ifndef COECHO_ACCESS_H
#define COECHO_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/config.h"

/* Whether peer may connect to the listener configured as addr (bound: its
 * name for the log). A refusal is counted and reported, at most once a
 * second with the number since the last report. */
bool access_check(const listen_addr *addr, const char *bound, const struct sockaddr *peer);

/* Connections refused so far. */
uint64_t access_refused(void);

/* Frees the compiled lists. */
void access_destroy(void);

#endif
