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

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/udpguard.h"

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

/* The two steps of udp_serve that count drops, apart so that the unit
 * tests (tests/unit/test_udp.c) can drive them on sockets that really
 * truncate, refuse or fill up; loopback UDP can do none of these from
 * outside (see there). */

/* Whether a datagram from `from` may be answered (the access list). */
typedef bool udp_access_fn(const void *ctx, const struct sockaddr *from);

/* Whether the datagram received in `in` (by recvmmsg) is to be answered:
 * not truncated, from a port answered, allowed (allowed(ctx, source), if
 * allowed is not NULL), within its source's rate. Counts it, and why it is
 * dropped, in st. */
bool udp_admit(udp_stats *st, udp_limiter *lim, const struct mmsghdr *in, uint32_t rate,
               int64_t now_ms, udp_access_fn *allowed, const void *ctx);
/* Sends the k replies in out without waiting, counting in st: a full send
 * buffer drops the rest (dropped_send_full), a datagram refused is skipped
 * (dropped_send_error) and the next ones still go. */
void udp_send_replies(udp_stats *st, int fd, const char *bound, struct mmsghdr *out, int k);

#endif
