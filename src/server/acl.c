/* Access rules and their matcher; see acl.h.
 *
 * The trie: node 0 is the IPv4 root, node 1 the IPv6 root; a node's
 * children follow the next bit of the address (most significant first).
 * A rule of prefix P marks the node P bits below its root with its index
 * ("first": the smallest index ending there, as rules go in in order), and
 * every node on the way keeps the smallest index in its subtree ("below"),
 * so that a lookup stops as soon as nothing deeper can beat what it has.
 * The first matching rule is the smallest index among the nodes on the
 * address's path. Nodes live in one array (indices, not pointers: one
 * allocation grown by doubling). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/acl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NONE = UINT32_MAX, ROOT4 = 0, ROOT6 = 1 };

typedef struct node {
    uint32_t child[2]; /* 0: none (the roots are never anyone's child) */
    uint32_t first;    /* the first rule ending here, or NONE */
    uint32_t below;    /* the first rule ending here or deeper, or NONE */
} node;

struct acl {
    node *nodes;
    size_t n, cap;
    uint8_t *allow; /* per rule */
};

/* ---- parsing ---------------------------------------------------------------- */

/* Splits "ADDR[/LEN]" into addr (a copy) and the prefix length (-1: none). */
static int split_prefix(const char *s, char *addr, size_t size, long *len, char *err,
                        size_t errlen) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    *len = -1;
    if (n == 0 || n >= size) {
        snprintf(err, errlen, "expected an address such as 10.0.0.0/8 or ::1");
        return -1;
    }
    memcpy(addr, s, n);
    addr[n] = '\0';
    if (!slash)
        return 0;
    char *end;
    const char *digits = slash + 1;
    if (*digits < '0' || *digits > '9' || strlen(digits) > 3) {
        snprintf(err, errlen, "expected a prefix length after /, got \"%s\"", digits);
        return -1;
    }
    *len = strtol(digits, &end, 10);
    if (*end != '\0') {
        snprintf(err, errlen, "expected a prefix length after /, got \"%s\"", digits);
        return -1;
    }
    return 0;
}

/* Whether the bits of addr past prefix are all zero. */
static bool host_bits_clear(const uint8_t *addr, unsigned bytes, unsigned prefix) {
    for (unsigned i = prefix; i < bytes * 8; i++)
        if (addr[i / 8] >> (7 - i % 8) & 1)
            return false;
    return true;
}

static void clear_host_bits(uint8_t *addr, unsigned bytes, unsigned prefix) {
    for (unsigned i = prefix; i < bytes * 8; i++)
        addr[i / 8] &= (uint8_t) ~(1u << (7 - i % 8));
}

/* The address part of a rule into out. 0 or -1 (err). */
static int parse_network(const char *s, acl_rule *out, char *err, size_t errlen) {
    char addr[INET6_ADDRSTRLEN + 1];
    long len;
    if (split_prefix(s, addr, sizeof addr, &len, err, errlen) != 0)
        return -1;
    bool v6 = strchr(addr, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, out->addr) != 1) {
        snprintf(err, errlen, "\"%s\" is not an IPv%d address", addr, v6 ? 6 : 4);
        return -1;
    }
    unsigned bytes = v6 ? 16 : 4, max = bytes * 8;
    if (len > (long)max) {
        snprintf(err, errlen, "prefix /%ld is longer than an IPv%d address (/%u)", len, v6 ? 6 : 4,
                 max);
        return -1;
    }
    out->family = v6 ? ACL_IPV6 : ACL_IPV4;
    out->prefix = (uint8_t)(len < 0 ? (long)max : len);
    if (!host_bits_clear(out->addr, bytes, out->prefix)) {
        acl_rule meant = *out;
        clear_host_bits(meant.addr, bytes, meant.prefix);
        char text[64];
        acl_format_rule(&meant, text, sizeof text);
        snprintf(err, errlen, "%s has host bits set past /%u; did you mean %s?", s, out->prefix,
                 strchr(text, ' ') + 1);
        return -1;
    }
    return 0;
}

int acl_parse_rule(const char *text, acl_rule *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const char *rest;
    if (strncmp(text, "allow ", 6) == 0) {
        out->allow = 1;
        rest = text + 6;
    } else if (strncmp(text, "deny ", 5) == 0) {
        rest = text + 5;
    } else {
        snprintf(err, errlen, "expected \"allow NETWORK\" or \"deny NETWORK\", got \"%.64s\"",
                 text);
        return -1;
    }
    while (*rest == ' ')
        rest++;
    if (strcmp(rest, "all") == 0) {
        out->family = ACL_ALL;
        return 0;
    }
    return parse_network(rest, out, err, errlen);
}

void acl_format_rule(const acl_rule *r, char *buf, size_t size) {
    const char *verb = r->allow ? "allow" : "deny";
    if (r->family == ACL_ALL) {
        snprintf(buf, size, "%s all", verb);
        return;
    }
    char addr[INET6_ADDRSTRLEN] = "?";
    inet_ntop(r->family == ACL_IPV6 ? AF_INET6 : AF_INET, r->addr, addr, sizeof addr);
    snprintf(buf, size, "%s %s/%u", verb, addr, r->prefix);
}

/* ---- compiling ---------------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static uint32_t new_node(acl *a) {
    if (a->n == a->cap) {
        size_t cap = a->cap * 2;
        node *bigger = realloc(a->nodes, cap * sizeof *bigger);
        if (!bigger)
            return 0;
        a->nodes = bigger;
        a->cap = cap;
    }
    a->nodes[a->n] = (node){{0, 0}, NONE, NONE};
    return (uint32_t)a->n++;
}

static unsigned bit_at(const uint8_t *addr, unsigned i) { return addr[i / 8] >> (7 - i % 8) & 1; }

/* Marks rule index at the node bits deep along addr from root. 0 or -ENOMEM. */
static int insert(acl *a, uint32_t root, const uint8_t *addr, unsigned bits, uint32_t index) {
    uint32_t at = root;
    for (unsigned i = 0;; i++) {
        if (a->nodes[at].below == NONE)
            a->nodes[at].below = index; /* rules go in in order: the first is the smallest */
        if (i == bits)
            break;
        unsigned b = bit_at(addr, i);
        if (!a->nodes[at].child[b]) {
            uint32_t fresh = new_node(a);
            if (!fresh)
                return -ENOMEM;
            a->nodes[at].child[b] = fresh;
        }
        at = a->nodes[at].child[b];
    }
    if (a->nodes[at].first == NONE)
        a->nodes[at].first = index;
    return 0;
}

/* One rule into the trie(s): "all" at both roots, an IPv4-mapped IPv6
 * network (::ffff:0:0/96 and longer) as the IPv4 network it maps. */
static int insert_rule(acl *a, const acl_rule *r, uint32_t index) {
    if (r->family == ACL_ALL) {
        int e = insert(a, ROOT4, r->addr, 0, index);
        return e ? e : insert(a, ROOT6, r->addr, 0, index);
    }
    if (r->family == ACL_IPV4)
        return insert(a, ROOT4, r->addr, r->prefix, index);
    if (r->prefix >= 96 && memcmp(r->addr, v4_mapped_prefix, 12) == 0)
        return insert(a, ROOT4, r->addr + 12, r->prefix - 96u, index);
    return insert(a, ROOT6, r->addr, r->prefix, index);
}

int acl_compile(const acl_rule *rules, size_t n, acl **out) {
    acl *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->cap = 64;
    a->nodes = malloc(a->cap * sizeof *a->nodes);
    a->allow = malloc(n ? n : 1);
    if (!a->nodes || !a->allow || n >= NONE) {
        acl_free(a);
        return -ENOMEM;
    }
    a->n = 2;
    a->nodes[ROOT4] = a->nodes[ROOT6] = (node){{0, 0}, NONE, NONE};
    for (size_t i = 0; i < n; i++) {
        a->allow[i] = rules[i].allow;
        if (insert_rule(a, &rules[i], (uint32_t)i) != 0) {
            acl_free(a);
            return -ENOMEM;
        }
    }
    *out = a;
    return 0;
}

void acl_free(acl *a) {
    if (!a)
        return;
    free(a->nodes);
    free(a->allow);
    free(a);
}

/* ---- lookups ------------------------------------------------------------------- */

static uint32_t walk(const acl *a, uint32_t at, const uint8_t *addr, unsigned bits) {
    uint32_t best = a->nodes[at].first;
    for (unsigned i = 0; i < bits; i++) {
        at = a->nodes[at].child[bit_at(addr, i)];
        if (!at || a->nodes[at].below >= best)
            break; /* nothing deeper comes before best */
        if (a->nodes[at].first < best)
            best = a->nodes[at].first;
    }
    return best;
}

long acl_first_match(const acl *a, const struct sockaddr *peer) {
    uint32_t found = NONE;
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)peer;
        found = walk(a, ROOT4, (const uint8_t *)&in4->sin_addr, 32);
    } else if (peer->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)peer)->sin6_addr.s6_addr;
        if (memcmp(b, v4_mapped_prefix, 12) == 0)
            found = walk(a, ROOT4, b + 12, 32);
        else
            found = walk(a, ROOT6, b, 128);
    }
    return found == NONE ? -1 : (long)found;
}

bool acl_allows(const acl *a, const struct sockaddr *peer) {
    long i = acl_first_match(a, peer);
    return i < 0 || a->allow[i];
}
