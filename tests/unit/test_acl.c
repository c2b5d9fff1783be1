/* Unit tests of the access rules: parsing (good forms, bad networks,
 * prefixes too long, host bits set) and the matcher (first match wins,
 * IPv4-mapped peers, "all", long lists checked against a plain scan). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/acl.h"

typedef union peer {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} peer;

static peer peer_of(const char *text) {
    peer p;
    memset(&p, 0, sizeof p);
    if (strchr(text, ':')) {
        p.in6.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &p.in6.sin6_addr), 1);
    } else {
        p.in4.sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &p.in4.sin_addr), 1);
    }
    return p;
}

static acl *compile_texts(const char *const *texts, size_t n) {
    acl_rule *rules = calloc(n ? n : 1, sizeof *rules);
    assert_non_null(rules);
    char err[160];
    for (size_t i = 0; i < n; i++)
        if (acl_parse_rule(texts[i], &rules[i], err, sizeof err) != 0)
            fail_msg("%s: %s", texts[i], err);
    acl *a;
    assert_int_equal(acl_compile(rules, n, &a), 0);
    free(rules);
    return a;
}

static long first(const acl *a, const char *addr) {
    peer p = peer_of(addr);
    return acl_first_match(a, &p.sa);
}

static void expect_parse_error(const char *text, const char *expected) {
    acl_rule r;
    char err[160];
    assert_int_equal(acl_parse_rule(text, &r, err, sizeof err), -1);
    assert_string_equal(err, expected);
}

static void expect_round_trip(const char *text, const char *formatted) {
    acl_rule r;
    char err[160], out[96];
    if (acl_parse_rule(text, &r, err, sizeof err) != 0)
        fail_msg("%s: %s", text, err);
    acl_format_rule(&r, out, sizeof out);
    assert_string_equal(out, formatted);
}

static void parses_good_rules(void **state) {
    (void)state;
    expect_round_trip("allow 10.0.0.0/8", "allow 10.0.0.0/8");
    expect_round_trip("deny 127.0.0.3", "deny 127.0.0.3/32");
    expect_round_trip("deny ::1", "deny ::1/128");
    expect_round_trip("allow 2001:db8::/32", "allow 2001:db8::/32");
    expect_round_trip("deny all", "deny all");
    expect_round_trip("allow   0.0.0.0/0", "allow 0.0.0.0/0");
    expect_round_trip("allow ::ffff:10.0.0.0/104", "allow ::ffff:10.0.0.0/104");
}

static void refuses_bad_rules(void **state) {
    (void)state;
    expect_parse_error("permit all", "expected \"allow NETWORK\" or \"deny NETWORK\", got "
                                     "\"permit all\"");
    expect_parse_error("allow", "expected \"allow NETWORK\" or \"deny NETWORK\", got \"allow\"");
    expect_parse_error("allow 10.0.0.256", "\"10.0.0.256\" is not an IPv4 address");
    expect_parse_error("allow 1.2.3", "\"1.2.3\" is not an IPv4 address");
    expect_parse_error("deny fe80::1::2", "\"fe80::1::2\" is not an IPv6 address");
    expect_parse_error("deny 10.0.0.0/33", "prefix /33 is longer than an IPv4 address (/32)");
    expect_parse_error("deny ::/129", "prefix /129 is longer than an IPv6 address (/128)");
    expect_parse_error("deny 10.0.0.0/", "expected a prefix length after /, got \"\"");
    expect_parse_error("deny 10.0.0.0/-1", "expected a prefix length after /, got \"-1\"");
    expect_parse_error("deny 10.0.0.0/8x", "expected a prefix length after /, got \"8x\"");
    expect_parse_error("deny /8", "expected an address such as 10.0.0.0/8 or ::1");
    expect_parse_error("allow 10.1.0.0/8",
                       "10.1.0.0/8 has host bits set past /8; did you mean 10.0.0.0/8?");
    expect_parse_error("allow 2001:db8::1/64",
                       "2001:db8::1/64 has host bits set past /64; did you mean 2001:db8::/64?");
}

static void first_match_wins(void **state) {
    (void)state;
    const char *rules[] = {"deny 127.0.0.3", "allow 127.0.0.0/8", "deny all"};
    acl *a = compile_texts(rules, 3);
    assert_int_equal(first(a, "127.0.0.3"), 0);
    assert_int_equal(first(a, "127.0.0.2"), 1);
    assert_int_equal(first(a, "10.0.0.1"), 2);
    assert_int_equal(first(a, "::1"), 2);
    peer p = peer_of("127.0.0.3");
    assert_false(acl_allows(a, &p.sa));
    p = peer_of("127.0.0.2");
    assert_true(acl_allows(a, &p.sa));
    acl_free(a);
    /* A broader rule first shadows the narrower one after it. */
    const char *shadow[] = {"allow 10.0.0.0/8", "deny 10.1.2.3"};
    a = compile_texts(shadow, 2);
    assert_int_equal(first(a, "10.1.2.3"), 0);
    acl_free(a);
}

static void no_match_is_allowed(void **state) {
    (void)state;
    const char *rules[] = {"deny 192.168.0.0/16"};
    acl *a = compile_texts(rules, 1);
    peer p = peer_of("10.0.0.1");
    assert_int_equal(acl_first_match(a, &p.sa), -1);
    assert_true(acl_allows(a, &p.sa));
    acl_free(a);
    a = compile_texts(NULL, 0);
    assert_true(acl_allows(a, &p.sa));
    acl_free(a);
}

static void mapped_ipv4_matches_ipv4_rules(void **state) {
    (void)state;
    const char *rules[] = {"deny 127.0.0.3", "allow ::ffff:10.0.0.0/104", "deny 10.0.0.0/8"};
    acl *a = compile_texts(rules, 3);
    assert_int_equal(first(a, "::ffff:127.0.0.3"), 0);
    assert_int_equal(first(a, "::ffff:127.0.0.4"), -1);
    assert_int_equal(first(a, "10.9.9.9"), 1); /* the mapped rule is its IPv4 network */
    assert_int_equal(first(a, "::ffff:10.9.9.9"), 1);
    assert_int_equal(first(a, "::127.0.0.3"), -1); /* IPv4-compatible is not mapped */
    acl_free(a);
}

static void ipv6_prefixes(void **state) {
    (void)state;
    const char *rules[] = {"allow ::1", "deny 2001:db8::/32", "allow 2001:db8:1::/48", "deny ::/0"};
    acl *a = compile_texts(rules, 4);
    assert_int_equal(first(a, "::1"), 0);
    assert_int_equal(first(a, "2001:db8:1::5"), 1);
    assert_int_equal(first(a, "2001:db9::"), 3);
    assert_int_equal(first(a, "127.0.0.1"), -1); /* ::/0 is IPv6 only */
    acl_free(a);
}

/* Random rules and addresses: the trie agrees with a scan of the list. */
static bool rule_matches(const acl_rule *r, const peer *p) {
    if (r->family == ACL_ALL)
        return true;
    const uint8_t *b =
        r->family == ACL_IPV4 ? (const uint8_t *)&p->in4.sin_addr : p->in6.sin6_addr.s6_addr;
    if ((r->family == ACL_IPV4) != (p->sa.sa_family == AF_INET))
        return false;
    for (unsigned i = 0; i < r->prefix; i++)
        if ((b[i / 8] >> (7 - i % 8) & 1) != (r->addr[i / 8] >> (7 - i % 8) & 1))
            return false;
    return true;
}

static void random_rule(acl_rule *r, unsigned seed_bits) {
    memset(r, 0, sizeof *r);
    bool v6 = seed_bits & 1;
    r->family = v6 ? ACL_IPV6 : ACL_IPV4;
    unsigned max = v6 ? 128 : 32;
    r->prefix = (uint8_t)(rand() % (max + 1));
    r->allow = (uint8_t)(rand() & 1);
    for (unsigned i = 0; i < max / 8; i++) /* few distinct high bits: many overlaps */
        r->addr[i] = (uint8_t)(i < 2 ? rand() % 4 : rand());
    for (unsigned i = r->prefix; i < max; i++)
        r->addr[i / 8] &= (uint8_t) ~(1u << (7 - i % 8));
}

static void long_lists_agree_with_a_scan(void **state) {
    (void)state;
    enum { N = 10000, PROBES = 2000 };
    srand(15);
    acl_rule *rules = calloc(N, sizeof *rules);
    assert_non_null(rules);
    for (size_t i = 0; i < N; i++)
        random_rule(&rules[i], (unsigned)rand());
    acl *a;
    assert_int_equal(acl_compile(rules, N, &a), 0);
    for (int k = 0; k < PROBES; k++) {
        peer p;
        memset(&p, 0, sizeof p);
        acl_rule probe;
        random_rule(&probe, (unsigned)rand());
        if (probe.family == ACL_IPV4) {
            p.in4.sin_family = AF_INET;
            memcpy(&p.in4.sin_addr, rules[k % N].addr, 4); /* near a rule */
            ((uint8_t *)&p.in4.sin_addr)[3] ^= probe.addr[3];
        } else {
            p.in6.sin6_family = AF_INET6;
            memcpy(&p.in6.sin6_addr, rules[k % N].addr, 16);
            p.in6.sin6_addr.s6_addr[15] ^= probe.addr[15];
        }
        long want = -1;
        for (size_t i = 0; i < N && want < 0; i++)
            if (rule_matches(&rules[i], &p))
                want = (long)i;
        assert_int_equal(acl_first_match(a, &p.sa), want);
    }
    acl_free(a);
    free(rules);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_good_rules),
        cmocka_unit_test(refuses_bad_rules),
        cmocka_unit_test(first_match_wins),
        cmocka_unit_test(no_match_is_allowed),
        cmocka_unit_test(mapped_ipv4_matches_ipv4_rules),
        cmocka_unit_test(ipv6_prefixes),
        cmocka_unit_test(long_lists_agree_with_a_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
