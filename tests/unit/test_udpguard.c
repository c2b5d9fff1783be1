/* Unit tests of UDP echo's guards: the source ports never answered and the
 * per-address rate limiter (refill, burst, addresses apart, IPv6 /64,
 * eviction with bounded memory, rate 0). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/udpguard.h"

static udp_limiter lim; /* 100+ KiB: not on the stack */

static struct sockaddr_in v4(const char *ip, uint16_t port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    return sa;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
    return sa;
}

/* How many of n datagrams from sa at now are allowed. */
static int allowed(const void *sa, uint32_t rate, int64_t now, int n) {
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += udp_limiter_allow(&lim, sa, rate, now);
    return ok;
}

static void service_ports_are_not_answered(void **state) {
    (void)state;
    const uint16_t refused[] = {0, 7, 9, 13, 17, 19, 37, 53, 123, 161, 1023};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_false(udp_port_answered(refused[i]));
    assert_true(udp_port_answered(1024));
    assert_true(udp_port_answered(40000));
    assert_true(udp_port_answered(65535));
}

static void source_port_of_both_families(void **state) {
    (void)state;
    struct sockaddr_in a = v4("127.0.0.1", 7);
    struct sockaddr_in6 b = v6("::1", 54321);
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(udp_source_port((struct sockaddr *)&a), 7);
    assert_int_equal(udp_source_port((struct sockaddr *)&b), 54321);
    assert_int_equal(udp_source_port(&other), 0);
}

static void burst_then_refill(void **state) {
    (void)state;
    udp_limiter_init(&lim, 1);
    struct sockaddr_in a = v4("192.0.2.1", 40000);
    assert_int_equal(allowed(&a, 100, 1000, 150), 100); /* a second's worth */
    assert_int_equal(allowed(&a, 100, 1000, 1), 0);
    assert_int_equal(allowed(&a, 100, 1100, 20), 10);    /* 100 ms: 10 more */
    assert_int_equal(allowed(&a, 100, 60000, 500), 100); /* capped at the burst */
}

static void addresses_have_their_own_buckets(void **state) {
    (void)state;
    udp_limiter_init(&lim, 2);
    struct sockaddr_in a = v4("192.0.2.1", 40000), b = v4("192.0.2.2", 40000);
    struct sockaddr_in a_other_port = v4("192.0.2.1", 50000);
    assert_int_equal(allowed(&a, 10, 1000, 20), 10);
    assert_int_equal(allowed(&a_other_port, 10, 1000, 1), 0); /* same address */
    assert_int_equal(allowed(&b, 10, 1000, 20), 10);
}

static void ipv6_counts_per_64(void **state) {
    (void)state;
    udp_limiter_init(&lim, 3);
    struct sockaddr_in6 a = v6("2001:db8:1:2::1", 40000), b = v6("2001:db8:1:2:ffff::9", 40000);
    struct sockaddr_in6 c = v6("2001:db8:1:3::1", 40000);
    assert_int_equal(allowed(&a, 10, 1000, 10), 10);
    assert_int_equal(allowed(&b, 10, 1000, 1), 0);
    assert_int_equal(allowed(&c, 10, 1000, 10), 10);
}

static void rate_zero_is_off(void **state) {
    (void)state;
    udp_limiter_init(&lim, 4);
    struct sockaddr_in a = v4("192.0.2.1", 40000);
    assert_int_equal(allowed(&a, 0, 1000, 100000), 100000);
}

static void a_lower_rate_applies_at_once(void **state) {
    (void)state;
    udp_limiter_init(&lim, 5);
    struct sockaddr_in a = v4("192.0.2.1", 40000);
    assert_int_equal(allowed(&a, 1000, 1000, 1), 1);
    assert_int_equal(allowed(&a, 5, 1000, 100), 5);
}

/* Many more addresses than buckets: the table stays the same size, and an
 * address that came back after eviction starts with a full bucket. */
static void spoofed_floods_only_evict(void **state) {
    (void)state;
    udp_limiter_init(&lim, 6);
    struct sockaddr_in first = v4("10.0.0.1", 40000);
    assert_int_equal(allowed(&first, 3, 1000, 5), 3);
    int64_t now = 1001;
    for (uint32_t i = 2; i < 100000; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons(40000),
                                 .sin_addr.s_addr = htonl(0x0a000000u + i)};
        assert_true(udp_limiter_allow(&lim, (struct sockaddr *)&sa, 3, now));
    }
    assert_int_equal(allowed(&first, 3, now, 5), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(service_ports_are_not_answered),
        cmocka_unit_test(source_port_of_both_families),
        cmocka_unit_test(burst_then_refill),
        cmocka_unit_test(addresses_have_their_own_buckets),
        cmocka_unit_test(ipv6_counts_per_64),
        cmocka_unit_test(rate_zero_is_off),
        cmocka_unit_test(a_lower_rate_applies_at_once),
        cmocka_unit_test(spoofed_floods_only_evict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
