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

/* Whether peer may reach the socket at local: a listener's bound address,
 * or a connection's own local address (getsockname), which picks the
 * listener's list too, a wildcard listener's included; udp: a UDP
 * listener's list rather than a TCP one's on the same address. where
 * names the socket in the log. A refusal is reported, at most once a
 * second with the number since the last report, and a connection's is
 * counted here (a datagram's by udp). */
bool access_check(const struct sockaddr_storage *local, bool udp, const char *where,
                  const struct sockaddr *peer);

/* Connections (not datagrams) refused so far. */
uint64_t access_refused(void);

/* Frees the compiled lists. */
void access_destroy(void);

#endif
