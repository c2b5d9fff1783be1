#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/ipcount.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Clears the bits of key past its first prefix bits. */
static void keep_prefix(ip_key *key, unsigned prefix) {
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = prefix > i * 8 ? prefix - i * 8 : 0; /* bits of byte i */
        if (keep < 8)
            key->bytes[i] &= (uint8_t)(0xff00u >> keep);
    }
}

void ip_key_from_sockaddr(ip_key *key, const struct sockaddr *sa, unsigned ipv6_prefix) {
    memset(key, 0, sizeof *key);
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        memcpy(key->bytes, a, 16);
        if (!IN6_IS_ADDR_V4MAPPED(a)) /* an IPv4 client stays one address */
            keep_prefix(key, ipv6_prefix);
    } else if (sa->sa_family == AF_INET) {
        key->bytes[10] = key->bytes[11] = 0xff;
        memcpy(key->bytes + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

static size_t hash(const ip_key *key) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key->bytes[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static bool same(const ip_key *a, const ip_key *b) { return memcmp(a, b, sizeof *a) == 0; }

void ipcount_init(ipcount *m) { memset(m, 0, sizeof *m); }

void ipcount_destroy(ipcount *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static ipcount_slot *find(const ipcount *m, const ip_key *key) {
    if (!m->slots)
        return NULL;
    for (size_t i = hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slots[i].count == 0)
            return NULL;
        if (same(&m->slots[i].key, key))
            return &m->slots[i];
    }
}

uint32_t ipcount_get(const ipcount *m, const ip_key *key) {
    ipcount_slot *s = find(m, key);
    return s ? s->count : 0;
}

static void place(ipcount *m, const ip_key *key, uint32_t count) {
    size_t i = hash(key) & m->mask;
    while (m->slots[i].count)
        i = (i + 1) & m->mask;
    m->slots[i].key = *key;
    m->slots[i].count = count;
    m->used++;
}

static bool grow(ipcount *m) {
    size_t cap = m->slots ? (m->mask + 1) * 2 : 64;
    ipcount bigger = {calloc(cap, sizeof(ipcount_slot)), cap - 1, 0};
    if (!bigger.slots)
        return false;
    for (size_t i = 0; m->slots && i <= m->mask; i++)
        if (m->slots[i].count)
            place(&bigger, &m->slots[i].key, m->slots[i].count);
    free(m->slots);
    *m = bigger;
    return true;
}

uint32_t ipcount_add(ipcount *m, const ip_key *key) {
    ipcount_slot *s = find(m, key);
    if (s)
        return ++s->count;
    if ((!m->slots || (m->used + 1) * 4 > (m->mask + 1) * 3) && !grow(m))
        return 0;
    place(m, key, 1);
    return 1;
}

void ipcount_remove(ipcount *m, const ip_key *key) {
    ipcount_slot *s = find(m, key);
    if (!s || --s->count > 0)
        return;
    /* Backward-shift deletion keeps every probe run unbroken. */
    size_t i = (size_t)(s - m->slots);
    for (size_t j = (i + 1) & m->mask; m->slots[j].count; j = (j + 1) & m->mask) {
        size_t home = hash(&m->slots[j].key) & m->mask;
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].count = 0;
    m->used--;
}
