/* The guards of UDP echo against reflection and loops: which source ports
 * are never answered, and a per-source-address rate limit.
 *
 * A UDP source address is not proven (unlike TCP's, after the handshake):
 * anyone can send a datagram that claims to come from a victim, and echo
 * sends the victim as many bytes as it received. Two echo services pointed
 * at each other (or at chargen, daytime, qotd...) answer each other
 * forever. So:
 *  - datagrams from port 0 or from a port below 1024 are dropped. Those
 *    are services' ports (echo 7, discard 9, daytime 13, qotd 17, chargen
 *    19, time 37, DNS 53, NTP 123, SNMP 161...), many of which answer any
 *    datagram, so replying could start a loop or an amplification; real
 *    clients send from ephemeral ports (Linux: 32768-60999).
 *  - each source address (IPv6: its /64) gets a token bucket of `rate`
 *    datagrams a second, with a burst of one second's worth.
 *
 * Owns nothing global: a udp_limiter is its caller's. Its memory is fixed
 * (UDP_LIMITER_SETS x UDP_LIMITER_WAYS buckets, set-associative by a
 * keyed hash of the address): an address not in the table takes the
 * bucket of its set that was used least recently, so a flood of spoofed
 * addresses costs no memory, only evicts (each evicted address starts
 * again with a full bucket). */
#ifndef COECHO_UDPGUARD_H
#define COECHO_UDPGUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/ipcount.h"

enum {
    UDP_LOWEST_ANSWERED_PORT = 1024,
    UDP_LIMITER_SETS = 1024, /* a power of two */
    UDP_LIMITER_WAYS = 4,
    UDP_LIMITER_IPV6_PREFIX = 64
};

/* Whether a datagram from this source port (host order) may be answered. */
bool udp_port_answered(uint16_t port);
/* The source port of sa (AF_INET or AF_INET6), host order; 0 otherwise. */
uint16_t udp_source_port(const struct sockaddr *sa);

typedef struct udp_bucket {
    ip_key key;
    int64_t last_ms; /* last refill; 0: an unused bucket */
    uint64_t millis; /* tokens, in thousandths of a datagram */
} udp_bucket;

typedef struct udp_limiter {
    udp_bucket sets[UDP_LIMITER_SETS][UDP_LIMITER_WAYS];
    uint32_t seed; /* keys the hash, so that colliding addresses cannot be chosen */
} udp_limiter;

/* Empties the table; seed keys its hash. */
void udp_limiter_init(udp_limiter *l, uint32_t seed);
/* Whether one more datagram from sa is allowed at now_ms (a monotonic
 * clock, > 0) at `rate` datagrams a second; rate 0: always. */
bool udp_limiter_allow(udp_limiter *l, const struct sockaddr *sa, uint32_t rate, int64_t now_ms);

#endif
