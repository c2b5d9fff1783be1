/* Unit tests of UDP echo's drop counters (udp_admit, udp_send_replies),
 * each driven by a real socket that truncates, refuses or fills up.
 *
 * Why here and not against the daemon over loopback UDP:
 *  - truncated: the receive buffer (UDP_MAX_DATAGRAM, 64 KiB) holds the
 *    largest UDP payload there is (65507 B over IPv4, 65527 B over IPv6
 *    without jumbograms, which loopback's MTU never carries), so no
 *    datagram from outside can be truncated. An AF_UNIX datagram socket
 *    carries larger ones through the same recvmmsg.
 *  - send_full: on loopback a sent datagram leaves the sender's buffer as
 *    soon as the loopback device takes it (a full receiver drops it
 *    there), so the daemon's sendmmsg never sees EAGAIN. An AF_UNIX
 *    datagram stays charged to the sender until the peer reads it.
 *  - send_error: the daemon replies to the address the kernel gave it,
 *    which any IPv4 or IPv6 socket can send to; only a firewall rule or a
 *    route taken away (host-wide changes) would make it fail. Here the
 *    reply addresses are ones the kernel refuses: port 0 (EINVAL) and an
 *    IPv6 address on an IPv4 socket (EAFNOSUPPORT). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/udp.h"

static udp_limiter lim; /* 100+ KiB: not on the stack */
static unsigned char buf[UDP_MAX_DATAGRAM];

/* Receives one datagram as udp_serve does (recvmmsg into a
 * UDP_MAX_DATAGRAM buffer); its header, pointing at from. */
static struct mmsghdr receive_one(int fd, struct sockaddr_storage *from) {
    static struct iovec iov;
    iov = (struct iovec){.iov_base = buf, .iov_len = sizeof buf};
    struct mmsghdr m = {
        .msg_hdr = {
            .msg_name = from, .msg_namelen = sizeof *from, .msg_iov = &iov, .msg_iovlen = 1}};
    assert_int_equal(recvmmsg(fd, &m, 1, 0, NULL), 1);
    return m;
}

/* A bound loopback UDP socket, with a receive timeout so that a missing
 * datagram fails the test instead of hanging it. */
static int udp_socket(struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    struct timeval tv = {.tv_sec = 5};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return fd;
}

static void oversized_datagram_is_truncated(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    size_t big = UDP_MAX_DATAGRAM + 4000;
    unsigned char *payload = calloc(1, big);
    assert_non_null(payload);
    assert_int_equal(send(sv[0], payload, big, 0), (ssize_t)big);
    struct sockaddr_storage from;
    struct mmsghdr m = receive_one(sv[1], &from);
    udp_stats st = {0};
    assert_false(udp_admit(&st, &lim, &m, 0, 1, NULL, NULL));
    assert_int_equal(st.dropped_truncated, 1);
    assert_int_equal(st.datagrams_in, 1);
    assert_int_equal(st.dropped_source_port, 0); /* truncation is checked first */
    free(payload);
    close(sv[0]);
    close(sv[1]);
}

/* The largest IPv4 UDP datagram fits the buffer: why truncation needs the
 * AF_UNIX socket above. */
static void largest_udp_datagram_is_whole(void **state) {
    (void)state;
    struct sockaddr_in a, b;
    int fa = udp_socket(&a), fb = udp_socket(&b);
    static unsigned char payload[65507];
    assert_int_equal(sendto(fa, payload, sizeof payload, 0, (struct sockaddr *)&b, sizeof b),
                     (ssize_t)sizeof payload);
    struct sockaddr_storage from;
    struct mmsghdr m = receive_one(fb, &from);
    udp_stats st = {0};
    assert_true(udp_admit(&st, &lim, &m, 0, 1, NULL, NULL));
    assert_int_equal(st.dropped_truncated, 0);
    assert_int_equal(st.bytes_in, sizeof payload);
    close(fa);
    close(fb);
}

static bool deny_everyone(const void *ctx, const struct sockaddr *from) {
    (void)from;
    (*(int *)ctx)++;
    return false;
}

/* A refused source is counted as such, before the rate limit sees it (a
 * flood from a denied address shows as access drops, not rate ones). */
static void refused_source_is_counted_before_the_rate(void **state) {
    (void)state;
    struct sockaddr_in a, b;
    int fa = udp_socket(&a), fb = udp_socket(&b);
    assert_int_equal(sendto(fa, "x", 1, 0, (struct sockaddr *)&b, sizeof b), 1);
    struct sockaddr_storage from;
    struct mmsghdr m = receive_one(fb, &from);
    udp_stats st = {0};
    int asked = 0;
    assert_false(udp_admit(&st, &lim, &m, 1, 1, deny_everyone, &asked));
    assert_int_equal(asked, 1);
    assert_int_equal(st.dropped_access, 1);
    assert_int_equal(st.dropped_rate_limit, 0);
    close(fa);
    close(fb);
}

static struct mmsghdr reply_to(void *addr, socklen_t len, struct iovec *iov) {
    return (struct mmsghdr){
        .msg_hdr = {.msg_name = addr, .msg_namelen = len, .msg_iov = iov, .msg_iovlen = 1}};
}

static void refused_reply_is_skipped(void **state) {
    (void)state;
    struct sockaddr_in srv, peer;
    int fs = udp_socket(&srv), fp = udp_socket(&peer);
    struct sockaddr_in port0 = peer;
    port0.sin_port = 0; /* EINVAL */
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6,
                              .sin6_port = htons(40000),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT}; /* EAFNOSUPPORT */
    struct iovec iov[4] = {{"first", 5}, {"x", 1}, {"third", 5}, {"y", 1}};
    struct mmsghdr out[4] = {
        reply_to(&peer, sizeof peer, &iov[0]), reply_to(&port0, sizeof port0, &iov[1]),
        reply_to(&peer, sizeof peer, &iov[2]), reply_to(&v6, sizeof v6, &iov[3])};
    udp_stats st = {0};
    udp_send_replies(&st, fs, "test", out, 4);
    assert_int_equal(st.dropped_send_error, 2);
    assert_int_equal(st.datagrams_out, 2);
    assert_int_equal(st.bytes_out, 10);
    assert_int_equal(st.dropped_send_full, 0);
    char got[16];
    assert_int_equal(recv(fp, got, sizeof got, 0), 5);
    assert_memory_equal(got, "first", 5);
    assert_int_equal(recv(fp, got, sizeof got, 0), 5);
    assert_memory_equal(got, "third", 5);
    close(fs);
    close(fp);
}

/* Datagrams waiting in fd's receive queue. */
static uint64_t drain(int fd) {
    uint64_t n = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        n++;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return n;
}

static void full_send_buffer_drops_the_rest(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 4096; /* a few datagrams' worth: full quickly */
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    static unsigned char payload[1000];
    struct iovec iov = {payload, sizeof payload};
    struct mmsghdr out[UDP_BATCH];
    for (int i = 0; i < UDP_BATCH; i++)
        out[i] = reply_to(NULL, 0, &iov); /* the socket is connected */
    udp_stats st = {0};
    /* The peer reads nothing: the sent datagrams stay charged to sv[0]. */
    udp_send_replies(&st, sv[0], "test", out, UDP_BATCH);
    assert_true(st.datagrams_out >= 1);
    assert_true(st.dropped_send_full >= 1);
    assert_int_equal(st.datagrams_out + st.dropped_send_full, UDP_BATCH);
    assert_int_equal(st.dropped_send_error, 0);
    uint64_t before = st.datagrams_out;
    udp_send_replies(&st, sv[0], "test", out, UDP_BATCH); /* still full: all dropped */
    assert_int_equal(st.datagrams_out, before);
    assert_int_equal(st.dropped_send_full, 2 * UDP_BATCH - before);
    assert_int_equal(drain(sv[1]), before); /* exactly those counted out arrived */
    close(sv[0]);
    close(sv[1]);
}

int main(void) {
    udp_limiter_init(&lim, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oversized_datagram_is_truncated),
        cmocka_unit_test(largest_udp_datagram_is_whole),
        cmocka_unit_test(refused_source_is_counted_before_the_rate),
        cmocka_unit_test(refused_reply_is_skipped),
        cmocka_unit_test(full_send_buffer_drops_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
