/* The connection handler: echoes every byte back, in order, with one
 * buffer that exists only while the connection has data in flight.
 *
 * Owns the buffer cache (bounded in bytes, trimmed when idle). The
 * connection's slot and counters belong to conn. */
#ifndef COECHO_ECHO_H
#define COECHO_ECHO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/conn.h"
#include "server/connlog.h"

/* What a handler starts with: the connection (fd and peer, admitted by
 * conn), the limits as they were then and its connection log record. On
 * the heap for the connection's life, as rt.h asks: conn's list of live
 * connections is read by other tasks while the handler waits. */
typedef struct connection_start {
    connection conn;
    int64_t idle_timeout_ms;
    size_t buffer_size;
    bool proxy_protocol; /* a PROXY header first (proxyconn.h); conn not keyed yet */
    connlog log;         /* see connlog_accepted */
} connection_start;

/* The handler task; arg: a malloc'd connection_start, freed when it ends. */
int echo_handle_client(void *arg);

/* Frees the cached buffers that went unused since the last call. */
void echo_trim_buffers(void);
void echo_release_buffers(void);
size_t echo_cached_buffer_bytes(void);

#endif
