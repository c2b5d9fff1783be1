/* UDP echo (RFC 862): the task that serves one UDP socket, echoing each
 * datagram to its sender, in batches (recvmmsg, sendmmsg).
 *
 * Owns the UDP counters of this process and its rate limiter (one for
 * every UDP socket of the process, so that a source address has one
 * budget; see udpguard.h for the guards and why). A datagram is never
 * waited on: one the kernel cannot take now (its send buffer full) is
 * dropped and counted, so a slow or absent receiver cannot stall the
 * socket. */
#ifndef COECHO_UDP_H
#define COECHO_UDP_H

#include <stdint.h>

enum {
    UDP_BATCH = 32,           /* datagrams per recvmmsg and sendmmsg */
    UDP_MAX_DATAGRAM = 65536, /* bytes of a receive buffer: the largest UDP payload */
    UDP_BATCHES_PER_TURN = 8  /* then other tasks run */
};

typedef struct udp_stats {
    uint64_t datagrams_in, datagrams_out, bytes_in, bytes_out;
    uint64_t dropped_source_port; /* from port 0 or below 1024 */
    uint64_t dropped_access;      /* refused by the listener's access list */
    uint64_t dropped_rate_limit;  /* over limits.udp_rate_limit for their source */
    uint64_t dropped_send_full;   /* the send buffer was full (EAGAIN) */
    uint64_t dropped_send_error;  /* sendmmsg refused it (EPERM, unreachable...) */
    uint64_t dropped_truncated;   /* larger than a receive buffer */
} udp_stats;

/* Serves fd (a bound, non-blocking UDP socket; bound names it in logs)
 * until the task is cancelled (-ECANCELED) or a receive fails for good
 * (-errno, logged). The rate limit is read from settings() at every batch,
 * so that reloads apply at once. */
int udp_serve(int fd, const char *bound);

void udp_get_stats(udp_stats *st);

#endif
