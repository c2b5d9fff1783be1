/* Connections per client address: an open-addressing map from a 16-byte
 * address (IPv4 as ::ffff:a.b.c.d, IPv6 as its prefix) to a count; entries
 * leave at count 0.
 *
 * Owns nothing global: each map is its caller's (conn keeps the one in
 * force). rt's taskmap is the same kind of table for another key (an
 * 8-byte task id to a pointer, Fibonacci-hashed); one generic map would
 * put a hash callback on the runtime's spawn and join paths. */
#ifndef COECHO_IPCOUNT_H
#define COECHO_IPCOUNT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct ip_key {
    uint8_t bytes[16];
} ip_key;

typedef struct ipcount_slot {
    ip_key key;
    uint32_t count; /* 0: empty slot */
} ipcount_slot;

typedef struct ipcount {
    ipcount_slot *slots;
    size_t mask;
    size_t used;
} ipcount;

/* The key of a client address: IPv4 as ::ffff:a.b.c.d, IPv6 cut to its
 * first ipv6_prefix bits (one user commonly holds a whole /64). */
void ip_key_from_sockaddr(ip_key *key, const struct sockaddr *sa, unsigned ipv6_prefix);
void ipcount_init(ipcount *m);
void ipcount_destroy(ipcount *m);
uint32_t ipcount_get(const ipcount *m, const ip_key *key);
/* Adds one; returns the new count, or 0 when memory ran out. */
uint32_t ipcount_add(ipcount *m, const ip_key *key);
void ipcount_remove(ipcount *m, const ip_key *key);

#endif
