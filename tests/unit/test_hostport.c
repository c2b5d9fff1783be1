/* Unit tests of src/common/hostport: splitting HOST:PORT, ports, IP
 * literals, coechod's -l form with its messages, name resolution of
 * literals, and formatting. */
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

#include "common/hostport.h"

/* hostport_split on arg: whether it split, and the parts. */
static void expect_split(const char *arg, const char *host, const char *port, bool bracketed) {
    char got_host[64];
    const char *got_port = NULL;
    bool got_bracketed = !bracketed;
    assert_true(hostport_split(arg, got_host, sizeof got_host, &got_port, &got_bracketed));
    assert_string_equal(got_host, host);
    assert_string_equal(got_port, port);
    assert_int_equal(got_bracketed, bracketed);
}

static void expect_no_split(const char *arg, size_t hostsize, bool bracketed) {
    char host[64];
    const char *port;
    bool got_bracketed = !bracketed;
    assert_false(hostport_split(arg, host, hostsize, &port, &got_bracketed));
    assert_int_equal(got_bracketed, bracketed);
}

static void test_split(void **state) {
    (void)state;
    expect_split("127.0.0.1:7007", "127.0.0.1", "7007", false);
    expect_split("localhost:80", "localhost", "80", false);
    expect_split("[::1]:7007", "::1", "7007", true);
    expect_split("[fe80::1%eth0]:1", "fe80::1%eth0", "1", true);
    /* Empty parts are the caller's to judge. */
    expect_split(":80", "", "80", false);
    expect_split("host:", "host", "", false);
    expect_split("[]:80", "", "80", true);
    expect_split("[::1]:", "::1", "", true);

    expect_no_split("noport", 64, false);
    expect_no_split("", 64, false);
    expect_no_split("::1:80", 64, false); /* IPv6 outside brackets */
    expect_no_split("a:b:c", 64, false);
    expect_no_split("[::1]", 64, true);
    expect_no_split("[::1]x80", 64, true);
    expect_no_split("[::1:80", 64, true);
    /* The host must fit with its NUL. */
    expect_split("abc:1", "abc", "1", false);
    expect_no_split("abcd:1", 4, false);
    expect_no_split("[abcd]:1", 4, true);
}

static void test_parse_port(void **state) {
    (void)state;
    uint16_t port = 1;
    assert_true(hostport_parse_port("0", &port));
    assert_int_equal(port, 0);
    assert_true(hostport_parse_port("65535", &port));
    assert_int_equal(port, 65535);
    assert_true(hostport_parse_port("007", &port));
    assert_int_equal(port, 7);
    const char *bad[] = {
        "", "65536", "-1", "+80", " 80", "80 ", "0x10", "8O", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        port = 42;
        assert_false(hostport_parse_port(bad[i], &port));
        assert_int_equal(port, 42); /* untouched */
    }
}

static void test_parse_ip(void **state) {
    (void)state;
    struct sockaddr_storage addr;
    socklen_t len = 0;
    memset(&addr, 0xa5, sizeof addr);
    assert_true(hostport_parse_ip("10.1.2.3", AF_UNSPEC, 7007, &addr, &len));
    assert_int_equal(addr.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr;
    assert_int_equal(sin->sin_addr.s_addr, htonl(0x0a010203));
    assert_int_equal(hostport_port(&addr), 7007);
    /* Zeroed beyond the address: equal addresses compare equal bytewise. */
    const unsigned char *rest = (const unsigned char *)&addr + len;
    for (size_t i = 0; i < sizeof addr - len; i++)
        assert_int_equal(rest[i], 0);

    assert_true(hostport_parse_ip("::1", AF_UNSPEC, 0, &addr, &len));
    assert_int_equal(addr.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_true(IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&addr)->sin6_addr));

    /* The family asked for only. */
    assert_true(hostport_parse_ip("1.2.3.4", AF_INET, 1, &addr, &len));
    assert_false(hostport_parse_ip("1.2.3.4", AF_INET6, 1, &addr, &len));
    assert_true(hostport_parse_ip("::", AF_INET6, 1, &addr, &len));
    assert_false(hostport_parse_ip("::", AF_INET, 1, &addr, &len));
    /* No names, no brackets, no short forms. */
    const char *bad[] = {"", "localhost", "[::1]", "1.2.3", "1.2.3.256", "01.2.3.4", " 1.2.3.4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(hostport_parse_ip(bad[i], AF_UNSPEC, 1, &addr, &len));
}

static void expect_numeric(const char *arg, int family, const char *text) {
    struct sockaddr_storage addr;
    socklen_t len;
    char err[256] = "";
    if (hostport_parse_numeric(arg, &addr, &len, err, sizeof err) != 0)
        fail_msg("%s: %s", arg, err);
    assert_int_equal(addr.ss_family, family);
    char buf[HOSTPORT_TEXT_SIZE];
    hostport_format(&addr, buf, sizeof buf);
    assert_string_equal(buf, text);
}

static void expect_numeric_error(const char *arg, const char *message) {
    struct sockaddr_storage addr;
    memset(&addr, 0xa5, sizeof addr);
    struct sockaddr_storage before = addr;
    socklen_t len = 99;
    char err[256] = "";
    assert_int_equal(hostport_parse_numeric(arg, &addr, &len, err, sizeof err), -1);
    assert_string_equal(err, message);
    assert_memory_equal(&addr, &before, sizeof addr); /* written only on success */
    assert_int_equal(len, 99);
    assert_int_equal(hostport_parse_numeric(arg, &addr, &len, NULL, 0), -1); /* no room: fine */
}

static void test_parse_numeric(void **state) {
    (void)state;
    expect_numeric("127.0.0.1:7007", AF_INET, "127.0.0.1:7007");
    expect_numeric("0.0.0.0:0", AF_INET, "0.0.0.0:0");
    expect_numeric("[::1]:65535", AF_INET6, "[::1]:65535");
    expect_numeric("[0:0::1]:80", AF_INET6, "[::1]:80"); /* formatted canonically */

    const char *shape = "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got ";
    char want[256];
    snprintf(want, sizeof want, "%s\"localhost\"", shape);
    expect_numeric_error("localhost", want);
    snprintf(want, sizeof want, "%s\"::1:80\" (IPv6 addresses go in brackets)", shape);
    expect_numeric_error("::1:80", want);
    snprintf(want, sizeof want, "%s\"[::1]:\"", shape);
    expect_numeric_error("[::1]:", want);
    expect_numeric_error("\x01:1", /* quoted, on one line */
                         "expected an IPv4 address in \"\\x01:1\", got \"\\x01\"");
    expect_numeric_error("localhost:80", "expected an IPv4 address in \"localhost:80\", got "
                                         "\"localhost\"");
    expect_numeric_error("[1.2.3.4]:80", "expected an IPv6 address in \"[1.2.3.4]:80\", got "
                                         "\"1.2.3.4\"");
    expect_numeric_error(":80", "expected an IPv4 address in \":80\", got \"\"");
    expect_numeric_error("1.2.3.4:65536", "expected a port from 0 to 65535 in "
                                          "\"1.2.3.4:65536\", got \"65536\"");
    expect_numeric_error("1.2.3.4:+1", "expected a port from 0 to 65535 in \"1.2.3.4:+1\", got "
                                       "\"+1\"");
}

static void test_resolve_literals(void **state) {
    (void)state;
    struct sockaddr_storage addr;
    socklen_t len;
    assert_int_equal(hostport_resolve("127.0.0.1", "7007", &addr, &len), 0);
    assert_int_equal(addr.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(hostport_port(&addr), 7007);
    assert_int_equal(hostport_resolve("::1", "80", &addr, &len), 0);
    assert_int_equal(addr.ss_family, AF_INET6);
    assert_int_equal(hostport_port(&addr), 80);
    assert_int_not_equal(hostport_resolve("127.0.0.1", "no-such-service-i11", &addr, &len), 0);
}

static void test_format_and_set_port(void **state) {
    (void)state;
    struct sockaddr_storage addr;
    socklen_t len;
    char buf[HOSTPORT_TEXT_SIZE];
    assert_true(hostport_parse_ip("192.0.2.1", AF_UNSPEC, 1, &addr, &len));
    hostport_set_port(&addr, 65535);
    hostport_format(&addr, buf, sizeof buf);
    assert_string_equal(buf, "192.0.2.1:65535");
    hostport_format_ip(&addr, buf, sizeof buf);
    assert_string_equal(buf, "192.0.2.1");

    /* The longest text there is fits HOSTPORT_TEXT_SIZE. */
    const char *longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    assert_true(hostport_parse_ip(longest, AF_INET6, 0, &addr, &len));
    hostport_set_port(&addr, 65535);
    hostport_format(&addr, buf, sizeof buf);
    assert_true(strlen(buf) < sizeof buf);
    assert_int_equal(buf[0], '[');
    assert_string_equal(buf + strlen(buf) - 7, "]:65535");
    hostport_format_ip(&addr, buf, sizeof buf);
    assert_int_equal(buf[0], 'f');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_parse_port),
        cmocka_unit_test(test_parse_ip),
        cmocka_unit_test(test_parse_numeric),
        cmocka_unit_test(test_resolve_literals),
        cmocka_unit_test(test_format_and_set_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
