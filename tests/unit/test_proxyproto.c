/* Unit tests of src/server/proxyproto: PROXY protocol v1 and v2 headers,
 * whole, cut short at every length, oversized, and not headers at all. */
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

#include "server/proxyproto.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The text of addr ("1.2.3.4:5"), for comparisons. */
static const char *text(const struct sockaddr_storage *ss, char *buf, size_t size) {
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, ntohs(s4->sin_port));
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%u", ip, ntohs(s6->sin6_port));
    }
    return buf;
}

/* Every proper prefix of a good header asks for more; the whole one is done,
 * and so is the header with payload behind it, with the same length. */
static proxyproto_result whole(const void *hdr, size_t len) {
    proxyproto_result r;
    unsigned char buf[2048];
    for (size_t n = 0; n < len; n++)
        assert_int_equal(proxyproto_parse(hdr, n, &r), PROXYPROTO_MORE);
    memcpy(buf, hdr, len);
    memcpy(buf + len, "payload\r\n", 9);
    assert_int_equal(proxyproto_parse(buf, len + 9, &r), PROXYPROTO_DONE);
    assert_int_equal(r.length, len);
    assert_int_equal(proxyproto_parse(hdr, len, &r), PROXYPROTO_DONE);
    assert_int_equal(r.length, len);
    return r;
}

static void expect_error(const void *buf, size_t len) {
    proxyproto_result r;
    assert_int_equal(proxyproto_parse(buf, len, &r), PROXYPROTO_ERROR);
    assert_non_null(r.error);
}

static void test_v1_tcp4(void **state) {
    (void)state;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 7007\r\n";
    proxyproto_result r = whole(h, strlen(h));
    char buf[64];
    assert_false(r.local);
    assert_string_equal(text(&r.src, buf, sizeof buf), "192.0.2.7:56324");
    assert_string_equal(text(&r.dst, buf, sizeof buf), "198.51.100.1:7007");
    assert_int_equal(r.srclen, sizeof(struct sockaddr_in));
}

static void test_v1_tcp6(void **state) {
    (void)state;
    const char *h = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    proxyproto_result r = whole(h, strlen(h));
    char buf[80];
    assert_false(r.local);
    assert_string_equal(text(&r.src, buf, sizeof buf), "[2001:db8::1]:65535");
    assert_string_equal(text(&r.dst, buf, sizeof buf), "[::1]:0");
    /* The longest TCP line, 104 bytes. */
    const char *max = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(max), 104);
    whole(max, strlen(max));
    /* The longest line of all, 107 bytes: an UNKNOWN one. */
    char unknown[PROXYPROTO_V1_MAX + 1];
    memset(unknown, 'x', sizeof unknown);
    memcpy(unknown, "PROXY UNKNOWN ", 14);
    memcpy(unknown + PROXYPROTO_V1_MAX - 2, "\r\n", 3);
    assert_true(whole(unknown, PROXYPROTO_V1_MAX).local);
}

static void test_v1_unknown(void **state) {
    (void)state;
    assert_true(whole("PROXY UNKNOWN\r\n", 15).local);
    const char *h = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_true(whole(h, strlen(h)).local);
}

static void test_v1_bad(void **state) {
    (void)state;
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", /* port out of range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",    /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",     /* a field missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", /* one too many */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", /* an empty field */
        "PROXY TCP4 ::1 ::1 1 2\r\n",          /* IPv6 under TCP4 */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r",
        "PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        "GET / HTTP/1.0\r\n\r\n", /* plain data: no header */
        "hello",
        "PROXX",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_message("%s\n", bad[i]);
        expect_error(bad[i], strlen(bad[i]));
    }
    /* No CRLF within 107 bytes: too long, however it goes on. */
    char longline[200];
    memset(longline, 'A', sizeof longline);
    memcpy(longline, "PROXY UNKNOWN ", 14);
    proxyproto_result r;
    assert_int_equal(proxyproto_parse(longline, PROXYPROTO_V1_MAX - 1, &r), PROXYPROTO_MORE);
    expect_error(longline, PROXYPROTO_V1_MAX);
    expect_error(longline, sizeof longline);
}

/* A v2 header: version/command, family/protocol, then body bytes. */
static size_t v2(unsigned char *buf, unsigned char vc, unsigned char fam, const void *body,
                 size_t blen) {
    memcpy(buf, sig, 12);
    buf[12] = vc;
    buf[13] = fam;
    buf[14] = (unsigned char)(blen >> 8);
    buf[15] = (unsigned char)blen;
    if (blen)
        memcpy(buf + 16, body, blen);
    return 16 + blen;
}

static void test_v2_inet(void **state) {
    (void)state;
    unsigned char body[12 + 7] = {127,
                                  0,
                                  0,
                                  2,
                                  10,
                                  0,
                                  0,
                                  1,
                                  0x1F,
                                  0x90,
                                  0x1B,
                                  0x5F,
                                  /* a TLV (PP2_TYPE_NOOP), skipped */ 0x04,
                                  0x00,
                                  0x04,
                                  1,
                                  2,
                                  3,
                                  4};
    unsigned char buf[64];
    size_t n = v2(buf, 0x21, 0x11, body, sizeof body);
    proxyproto_result r = whole(buf, n);
    char t[64];
    assert_false(r.local);
    assert_string_equal(text(&r.src, t, sizeof t), "127.0.0.2:8080");
    assert_string_equal(text(&r.dst, t, sizeof t), "10.0.0.1:7007");
}

static void test_v2_inet6(void **state) {
    (void)state;
    unsigned char body[36] = {0x20, 0x01, 0x0d, 0xb8};
    body[31] = 1;
    body[32] = 0x12;
    body[33] = 0x34;
    unsigned char buf[64];
    size_t n = v2(buf, 0x21, 0x21, body, sizeof body);
    proxyproto_result r = whole(buf, n);
    char t[80];
    assert_false(r.local);
    assert_string_equal(text(&r.src, t, sizeof t), "[2001:db8::]:4660");
    assert_string_equal(text(&r.dst, t, sizeof t), "[::1]:0");
}

static void test_v2_local_and_unspec(void **state) {
    (void)state;
    unsigned char buf[64];
    assert_true(whole(buf, v2(buf, 0x20, 0x00, NULL, 0)).local); /* LOCAL */
    unsigned char junk[12] = {1, 2, 3};
    assert_true(whole(buf, v2(buf, 0x20, 0x11, junk, 12)).local); /* LOCAL ignores addresses */
    assert_true(whole(buf, v2(buf, 0x21, 0x00, NULL, 0)).local);  /* PROXY, AF_UNSPEC */
}

static void test_v2_bad(void **state) {
    (void)state;
    unsigned char buf[2048] = {0};
    unsigned char body[36] = {0};
    expect_error(buf, v2(buf, 0x11, 0x11, body, 12)); /* version 1 in binary */
    expect_error(buf, v2(buf, 0x31, 0x11, body, 12));
    expect_error(buf, v2(buf, 0x22, 0x11, body, 12)); /* command 2 */
    expect_error(buf, v2(buf, 0x21, 0x11, body, 11)); /* too short for IPv4 */
    expect_error(buf, v2(buf, 0x21, 0x21, body, 12)); /* too short for IPv6 */
    expect_error(buf, v2(buf, 0x21, 0x41, body, 36)); /* family 4 */
    expect_error(buf, v2(buf, 0x21, 0x12, body, 12)); /* UDP */
    /* Oversized: an error as soon as the length is read. */
    v2(buf, 0x21, 0x11, body, 12);
    buf[14] = (unsigned char)((PROXYPROTO_MAX_HEADER - 16 + 1) >> 8);
    buf[15] = (unsigned char)(PROXYPROTO_MAX_HEADER - 16 + 1);
    expect_error(buf, 16);
    buf[14] = buf[15] = 0xFF;
    expect_error(buf, 16);
    /* The largest accepted. */
    size_t n = v2(buf, 0x21, 0x11, body, 12);
    buf[14] = (unsigned char)((PROXYPROTO_MAX_HEADER - 16) >> 8);
    buf[15] = (unsigned char)(PROXYPROTO_MAX_HEADER - 16);
    (void)n;
    whole(buf, PROXYPROTO_MAX_HEADER);
    /* A wrong signature byte, at each place. */
    for (size_t i = 0; i < 12; i++) {
        v2(buf, 0x21, 0x11, body, 12);
        buf[i] ^= 0x40;
        expect_error(buf, i + 1);
    }
}

static void test_empty(void **state) {
    (void)state;
    proxyproto_result r;
    assert_int_equal(proxyproto_parse("", 0, &r), PROXYPROTO_MORE);
    expect_error("\0\0\0\0", 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6),
        cmocka_unit_test(test_v2_local_and_unspec),
        cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
