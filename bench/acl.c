/* bench/acl-lookup: what an access-list check costs, by list length.
 *
 * For 10, 1,000 and 10,000 rules (random prefixes, half IPv4 /8-/32, half
 * IPv6 /16-/128, allow or deny at random) it compiles the list and times
 * acl_first_match on 1,000,000 addresses of two kinds: random ones (most
 * match nothing, as for a list of bad networks) and ones inside a random
 * rule's network (the lookup walks down to it). A plain scan of the list in
 * order, the simplest matcher, is timed on the same addresses for
 * comparison (fewer of them at 10,000 rules: it is slow). Prints one line
 * per figure, "rules=N kind=K matcher=M ns_per_lookup=X", and the compile
 * time. -s SEED changes the lists (default 15). No environment. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/acl.h"

enum { LOOKUPS = 1000000 };

typedef union peer {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} peer;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint32_t rnd(void) { return (uint32_t)rand() << 16 ^ (uint32_t)rand(); }

static void random_rule(acl_rule *r) {
    memset(r, 0, sizeof *r);
    bool v6 = rnd() & 1;
    unsigned bytes = v6 ? 16 : 4;
    r->family = v6 ? ACL_IPV6 : ACL_IPV4;
    r->prefix = (uint8_t)(v6 ? 16 + rnd() % 113 : 8 + rnd() % 25);
    r->allow = (uint8_t)(rnd() & 1);
    for (unsigned i = 0; i < bytes; i++)
        r->addr[i] = (uint8_t)rnd();
    for (unsigned i = r->prefix; i < bytes * 8; i++)
        r->addr[i / 8] &= (uint8_t) ~(1u << (7 - i % 8));
}

/* An address: random, or inside rule r's network. */
static void make_peer(peer *p, const acl_rule *inside) {
    memset(p, 0, sizeof *p);
    uint8_t bytes[16];
    for (unsigned i = 0; i < 16; i++)
        bytes[i] = (uint8_t)rnd();
    bool v6 = inside ? inside->family == ACL_IPV6 : (rnd() & 1);
    if (inside)
        for (unsigned i = 0; i < inside->prefix; i++) {
            uint8_t bit = (uint8_t)(1u << (7 - i % 8));
            bytes[i / 8] = (uint8_t)((bytes[i / 8] & ~bit) | (inside->addr[i / 8] & bit));
        }
    if (v6) {
        p->in6.sin6_family = AF_INET6;
        memcpy(&p->in6.sin6_addr, bytes, 16);
    } else {
        p->in4.sin_family = AF_INET;
        memcpy(&p->in4.sin_addr, bytes, 4);
    }
}

static bool rule_matches(const acl_rule *r, const peer *p) {
    if (r->family == ACL_ALL)
        return true;
    if ((r->family == ACL_IPV4) != (p->sa.sa_family == AF_INET))
        return false;
    const uint8_t *b =
        r->family == ACL_IPV4 ? (const uint8_t *)&p->in4.sin_addr : p->in6.sin6_addr.s6_addr;
    unsigned full = r->prefix / 8, rest = r->prefix % 8;
    if (memcmp(b, r->addr, full) != 0)
        return false;
    return rest == 0 || ((b[full] ^ r->addr[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

static long scan(const acl_rule *rules, size_t n, const peer *p) {
    for (size_t i = 0; i < n; i++)
        if (rule_matches(&rules[i], p))
            return (long)i;
    return -1;
}

static void run(size_t n) {
    acl_rule *rules = malloc(n * sizeof *rules);
    peer *peers = malloc(LOOKUPS * sizeof *peers);
    if (!rules || !peers) {
        fprintf(stderr, "acl-lookup: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        random_rule(&rules[i]);
    acl *a;
    double t0 = now_ns();
    if (acl_compile(rules, n, &a) != 0) {
        fprintf(stderr, "acl-lookup: cannot compile %zu rules\n", n);
        exit(1);
    }
    printf("rules=%zu compile_us=%.0f\n", n, (now_ns() - t0) / 1e3);
    for (int kind = 0; kind < 2; kind++) {
        for (size_t i = 0; i < LOOKUPS; i++)
            make_peer(&peers[i], kind ? &rules[rnd() % n] : NULL);
        long sink = 0, disagree = 0;
        t0 = now_ns();
        for (size_t i = 0; i < LOOKUPS; i++)
            sink += acl_first_match(a, &peers[i].sa);
        double trie = (now_ns() - t0) / LOOKUPS;
        size_t scans = n >= 10000 ? LOOKUPS / 20 : n >= 1000 ? LOOKUPS / 2 : LOOKUPS;
        t0 = now_ns();
        for (size_t i = 0; i < scans; i++) {
            long s = scan(rules, n, &peers[i]);
            sink += s;
            disagree += s != acl_first_match(a, &peers[i].sa);
        }
        double linear = (now_ns() - t0) / (double)scans - trie; /* less the check's lookup */
        const char *name = kind ? "inside_a_rule" : "random";
        printf("rules=%zu kind=%s matcher=trie ns_per_lookup=%.1f\n", n, name, trie);
        printf("rules=%zu kind=%s matcher=scan ns_per_lookup=%.1f\n", n, name, linear);
        if (disagree) {
            fprintf(stderr, "acl-lookup: the trie and the scan disagree %ld times\n", disagree);
            exit(1);
        }
        if (sink == 42) /* keeps the loops from being optimized away */
            putchar('\n');
    }
    acl_free(a);
    free(rules);
    free(peers);
}

int main(int argc, char **argv) {
    int opt;
    unsigned seed = 15;
    while ((opt = getopt(argc, argv, "s:")) != -1) {
        if (opt != 's') {
            fprintf(stderr, "usage: acl-lookup [-s SEED]\n");
            return 2;
        }
        seed = (unsigned)strtoul(optarg, NULL, 10);
    }
    srand(seed);
    static const size_t sizes[] = {10, 1000, 10000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        run(sizes[i]);
    return 0;
}
