/* Client connections: admission (max_connections, max_connections_per_ip),
 * the list of live connections, the gate that paused accept tasks wait at,
 * and the connection counters.
 *
 * Owns all of it: the accept tasks ask to admit a client, a handler
 * registers its record and releases it when it ends, and nobody else
 * changes these counts. A connection record lives on the heap (other
 * tasks walk this list while handlers wait, and a waiting handler's stack
 * may be parked: see rt.h) and is linked here only while the connection
 * is open. */
#ifndef COECHO_CONN_H
#define COECHO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rt/list.h"
#include "rt/rt.h"
#include "server/ipcount.h"

typedef struct connection {
    list_link link; /* in the live list, between register and release */
    co_tid tid;
    int fd;
    ip_key peer;
    bool keyed;                   /* peer is counted per address (see conn_key) */
    uint64_t bytes_in, bytes_out; /* this connection's, for its close line */
} connection;

typedef struct conn_stats {
    size_t active; /* open now */
    uint64_t accepted;
    uint64_t closed;
    uint64_t rejected_per_ip;
    uint64_t rejected_proxy_header; /* missing, bad or late PROXY header */
    uint64_t timed_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    size_t accepts_paused; /* accept tasks waiting for a slot */
} conn_stats;

/* 0, or -ENOMEM. */
int conn_init(void);
void conn_destroy(void);

/* Admits a client from peer under the limits in force: counts it as open
 * and stores its per-address key. 0, -EDQUOT over max_connections_per_ip
 * (counted), or -ENOMEM. peer NULL (a proxy_protocol listener, whose
 * socket peer is the balancer): only a slot of max_connections is taken,
 * and the per-address count waits for conn_key. */
int conn_admit(const struct sockaddr *peer, ip_key *key);
/* Takes back an admission whose handler could not start (key NULL: one
 * made without a peer). */
void conn_unadmit(const ip_key *key);

/* Counts conn, admitted without a peer, under the client address its
 * PROXY header named: 0 (conn->keyed from then on), -EDQUOT over
 * max_connections_per_ip (counted) or -ENOMEM. The slot stays taken
 * either way, until conn_release. */
int conn_key(connection *conn, const struct sockaddr *peer);
/* A connection closed for its PROXY header (proxyconn.h). */
void conn_count_proxy_reject(void);

/* A handler's record, from its first run to its end (register zeroes its
 * byte counts). */
void conn_register(connection *c);
void conn_release(connection *c);

/* Whether max_connections leaves room for one more. */
bool conn_slot_free(void);
/* Waits until a slot is free. 0, or -ECANCELED. */
int conn_wait_slot(void);
/* The limits changed (a reload): paused accept tasks look again. */
void conn_limits_changed(void);

/* Cancels every open connection's handler; handlers that have not run yet
 * see conn_all_killed() and end at once. */
void conn_kill_all(void);
bool conn_all_killed(void);

/* Bytes read from and written to conn: its counts and the totals. */
void conn_count_in(connection *conn, size_t bytes);
void conn_count_out(connection *conn, size_t bytes);
void conn_count_timeout(void);
size_t conn_active(void);
void conn_get_stats(conn_stats *st);

#endif
