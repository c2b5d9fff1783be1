/* Unit tests of the per-address connection counts: keys (IPv4, IPv6 cut
 * to a prefix, IPv4-mapped) and the map (add, get, remove, growth). */
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
#include <string.h>

#include <cmocka.h>

#include "server/ipcount.h"

static ip_key key6(const char *text, unsigned prefix) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, text, &sa.sin6_addr), 1);
    ip_key k;
    ip_key_from_sockaddr(&k, (struct sockaddr *)&sa, prefix);
    return k;
}

static ip_key key4(const char *text) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, text, &sa.sin_addr), 1);
    ip_key k;
    ip_key_from_sockaddr(&k, (struct sockaddr *)&sa, 64);
    return k;
}

static bool same(ip_key a, ip_key b) { return memcmp(&a, &b, sizeof a) == 0; }

static void ipv6_is_cut_to_its_prefix(void **state) {
    (void)state;
    assert_true(same(key6("2001:db8:1:2::1", 64), key6("2001:db8:1:2:ffff::9", 64)));
    assert_false(same(key6("2001:db8:1:2::1", 64), key6("2001:db8:1:3::1", 64)));
    assert_true(same(key6("2001:db8:1:2::1", 56), key6("2001:db8:1:ff::1", 56)));
    assert_false(same(key6("2001:db8:1:2::1", 56), key6("2001:db8:1:100::1", 56)));
    assert_true(same(key6("2001:db8::1", 61), key6("2001:db8:0:7::1", 61)));
    assert_false(same(key6("2001:db8::1", 61), key6("2001:db8:0:8::1", 61)));
    assert_false(same(key6("2001:db8::1", 128), key6("2001:db8::2", 128)));
    assert_true(same(key6("2001:db8::1", 1), key6("7fff::1", 1)));
    assert_true(same(key6("2001:db8::1", 64), key6("2001:db8::", 128)));
}

static void ipv4_stays_one_address(void **state) {
    (void)state;
    assert_false(same(key4("10.0.0.1"), key4("10.0.0.2")));
    /* An IPv4-mapped IPv6 peer is that IPv4 client, whatever the prefix. */
    assert_true(same(key4("10.0.0.1"), key6("::ffff:10.0.0.1", 64)));
    assert_false(same(key6("::ffff:10.0.0.1", 64), key6("::ffff:10.0.0.2", 64)));
}

static void counts_add_and_leave(void **state) {
    (void)state;
    ipcount m;
    ipcount_init(&m);
    ip_key keys[500];
    for (int i = 0; i < 500; i++) { /* past several growths */
        char text[32];
        snprintf(text, sizeof text, "10.0.%d.%d", i / 256, i % 256);
        keys[i] = key4(text);
        assert_int_equal(ipcount_add(&m, &keys[i]), 1);
    }
    assert_int_equal(ipcount_add(&m, &keys[7]), 2);
    for (int i = 0; i < 500; i += 2)
        ipcount_remove(&m, &keys[i]);
    for (int i = 0; i < 500; i++)
        assert_int_equal(ipcount_get(&m, &keys[i]), i % 2 ? (i == 7 ? 2 : 1) : 0);
    ipcount_remove(&m, &keys[7]);
    assert_int_equal(ipcount_get(&m, &keys[7]), 1);
    assert_int_equal(m.used, 250);
    ipcount_destroy(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv6_is_cut_to_its_prefix),
        cmocka_unit_test(ipv4_stays_one_address),
        cmocka_unit_test(counts_add_and_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
