/* The start of a connection on a proxy_protocol listener: its PROXY
 * header read off the socket (exactly the header: the payload behind it
 * stays for the echo), and the client it names made the connection's
 * peer for the access list, the per-IP limit and the connection log.
 *
 * Owns nothing: the parsing is proxyproto's, the counts conn's, the log
 * record the connection's own. */
#ifndef COECHO_PROXYCONN_H
#define COECHO_PROXYCONN_H

#include "server/conn.h"
#include "server/connlog.h"

/* How long a client (the balancer) has to send the whole header from the
 * first moment the handler runs. A constant: balancers send it at once. */
enum { PROXYCONN_HEADER_TIMEOUT_MS = 3000 };

/* Reads conn's header and counts conn (admitted without a peer) under its
 * client: the header's source address, or the socket's peer for v1
 * UNKNOWN and v2 LOCAL (a balancer's health check). NULL to go on and
 * serve, or why the connection is to be closed, as the connection log
 * names it: CONNLOG_PROXY_HEADER (missing, malformed, oversized or not
 * whole within the timeout; counted), CONNLOG_ACCESS_DENIED (the client,
 * not a LOCAL or UNKNOWN one, refused by the listener's access list;
 * counted by access), CONNLOG_PER_IP_LIMIT (counted by conn),
 * CONNLOG_SHUTDOWN or CONNLOG_ERROR (logged). */
const char *proxyconn_accept(connection *conn, connlog *log);

#endif
