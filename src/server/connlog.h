/* The connection log (log.connections): one line when a connection closes,
 * with its addresses, duration, bytes each way and why it closed.
 *
 * Owns nothing but the record it fills: each connection keeps its own (in
 * its connection_start, echo.h). A record is filled at accept only while
 * log.connections is on, and costs nothing otherwise: no clock read, no
 * system call, no formatting. A connection is logged if the log was on when
 * it was accepted and still is when it closes. */
#ifndef COECHO_CONNLOG_H
#define COECHO_CONNLOG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef union connlog_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} connlog_addr;

typedef struct connlog {
    bool on;            /* log.connections was on at accept */
    int64_t started_ms; /* co_now() at accept */
    connlog_addr peer, local;
} connlog;

/* Why a connection closed, as the log names it. */
#define CONNLOG_EOF "eof"
#define CONNLOG_RESET "reset"
#define CONNLOG_ERROR "error"
#define CONNLOG_IDLE_TIMEOUT "idle_timeout"
#define CONNLOG_SHUTDOWN "shutdown"
#define CONNLOG_PER_IP_LIMIT "per_ip_limit"
#define CONNLOG_ACCESS_DENIED "access_denied"
#define CONNLOG_PROXY_HEADER "proxy_header" /* missing, bad or late (proxyconn.h) */

/* Fills l for the connection accepted on fd from peer (peerlen bytes) if
 * log.connections is on; else only marks it off. */
void connlog_accepted(connlog *l, int fd, const struct sockaddr *peer, socklen_t peerlen);

/* The client is peer (peerlen bytes), as a PROXY header named it. */
void connlog_set_peer(connlog *l, const struct sockaddr *peer, socklen_t peerlen);

/* Writes the close line if l is on and log.connections still is. err: the
 * errno that ended it (named in the line), or 0. */
void connlog_closed(const connlog *l, uint64_t bytes_in, uint64_t bytes_out, const char *reason,
                    int err);

/* The errno's symbolic name ("ECONNRESET"), or "E<number>" in buf. */
const char *connlog_errno_name(int err, char *buf, size_t size);

#endif
