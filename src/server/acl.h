/* Access rules (allow/deny by CIDR prefix) and the matcher that finds the
 * first rule a peer address matches.
 *
 * Plain data and pure functions: no sockets, no runtime, no globals. A
 * rule list is compiled into an acl (one binary trie per family; each node
 * keeps the smallest index of the rules whose prefix ends there), so that
 * a lookup walks at most 32 or 128 bits whatever the number of rules, and
 * still answers with the first rule in list order that matches. The
 * caller owns each acl it compiles. */
#ifndef COECHO_ACL_H
#define COECHO_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum acl_family { ACL_ALL = 0, ACL_IPV4 = 4, ACL_IPV6 = 6 };

typedef struct acl_rule {
    uint8_t addr[16]; /* network bytes: 4 used for IPv4; host bits zero */
    uint8_t family;   /* enum acl_family; ACL_ALL matches every peer */
    uint8_t prefix;   /* 0-32 or 0-128 */
    uint8_t allow;    /* 1: allow, 0: deny */
} acl_rule;

/* "allow 10.0.0.0/8", "deny ::1", "deny all" -> rule. A bare address is a
 * /32 or /128. A prefix with host bits set (10.1.0.0/8) is refused, the
 * message naming the network meant. 0, or -1 with a one-line reason. */
int acl_parse_rule(const char *text, acl_rule *out, char *err, size_t errlen);

/* The rule as acl_parse_rule reads it back: "allow 10.0.0.0/8". */
void acl_format_rule(const acl_rule *r, char *buf, size_t size);

typedef struct acl acl;

/* Compiles n rules (n may be 0: nothing matches). 0, or -ENOMEM. */
int acl_compile(const acl_rule *rules, size_t n, acl **out);
void acl_free(acl *a);

/* The index of the first rule that matches peer (AF_INET or AF_INET6; an
 * IPv4-mapped IPv6 address matches as its IPv4 address), or -1. */
long acl_first_match(const acl *a, const struct sockaddr *peer);

/* Whether peer may connect: the first matching rule says, and a peer no
 * rule matches is allowed. */
bool acl_allows(const acl *a, const struct sockaddr *peer);

#endif
