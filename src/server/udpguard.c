#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/udpguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

enum { MILLIS_PER_DATAGRAM = 1000 };

bool udp_port_answered(uint16_t port) { return port >= UDP_LOWEST_ANSWERED_PORT; }

uint16_t udp_source_port(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void udp_limiter_init(udp_limiter *l, uint32_t seed) {
    memset(l->sets, 0, sizeof l->sets);
    l->seed = seed;
}

/* FNV-1a over the seed and the key. */
static uint32_t hash(const udp_limiter *l, const ip_key *key) {
    uint32_t h = 2166136261u ^ l->seed;
    for (size_t i = 0; i < sizeof key->bytes; i++)
        h = (h ^ key->bytes[i]) * 16777619u;
    return h ^ (h >> 15);
}

/* The key's bucket in its set, or the least recently used one, emptied
 * and given to the key. */
static udp_bucket *bucket_for(udp_limiter *l, const ip_key *key, uint32_t rate, int64_t now) {
    udp_bucket *set = l->sets[hash(l, key) & (UDP_LIMITER_SETS - 1)];
    udp_bucket *oldest = &set[0];
    for (int i = 0; i < UDP_LIMITER_WAYS; i++) {
        if (set[i].last_ms != 0 && memcmp(&set[i].key, key, sizeof *key) == 0)
            return &set[i];
        if (set[i].last_ms < oldest->last_ms)
            oldest = &set[i];
    }
    oldest->key = *key;
    oldest->last_ms = now;
    oldest->millis = (uint64_t)rate * MILLIS_PER_DATAGRAM; /* a full second's worth */
    return oldest;
}

bool udp_limiter_allow(udp_limiter *l, const struct sockaddr *sa, uint32_t rate, int64_t now_ms) {
    if (rate == 0)
        return true;
    ip_key key;
    ip_key_from_sockaddr(&key, sa, UDP_LIMITER_IPV6_PREFIX);
    udp_bucket *b = bucket_for(l, &key, rate, now_ms);
    uint64_t cap = (uint64_t)rate * MILLIS_PER_DATAGRAM;
    if (b->millis > cap)
        b->millis = cap; /* the rate went down in a reload */
    if (now_ms > b->last_ms) {
        /* rate datagrams a second is rate thousandths a millisecond. */
        uint64_t earned = (uint64_t)(now_ms - b->last_ms) * rate;
        b->millis = earned >= cap - b->millis ? cap : b->millis + earned;
        b->last_ms = now_ms;
    }
    if (b->millis < MILLIS_PER_DATAGRAM)
        return false;
    b->millis -= MILLIS_PER_DATAGRAM;
    return true;
}
