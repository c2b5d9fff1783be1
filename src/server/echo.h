/* The connection handler: echoes every byte back, in order, with one
 * buffer that exists only while the connection has data in flight.
 *
 * Owns the buffer cache (bounded in bytes, trimmed when idle). The
 * connection's slot and counters belong to conn. */
#ifndef COECHO_ECHO_H
#define COECHO_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "server/ipcount.h"

/* What a handler starts with: admitted by conn, limits as they were then. */
typedef struct connection_start {
    int fd;
    ip_key peer;
    int64_t idle_timeout_ms;
    size_t buffer_size;
} connection_start;

/* The handler task; arg: a malloc'd connection_start, freed here. */
int echo_handle_client(void *arg);

/* Frees the cached buffers that went unused since the last call. */
void echo_trim_buffers(void);
void echo_release_buffers(void);
size_t echo_cached_buffer_bytes(void);

#endif
