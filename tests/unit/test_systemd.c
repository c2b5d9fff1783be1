/* Unit tests of the systemd protocols (src/server/systemd.c): socket
 * activation with real sockets placed at descriptor 3 and up, and sd_notify
 * datagrams read back from a socket this test owns. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/systemd.h"

/* ---- socket activation --------------------------------------------------- */

static int listening_socket(int family) {
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        len = sizeof *s6;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) { /* no IPv6 here */
        close(fd);
        return -1;
    }
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* Moves fd to exactly descriptor at (as systemd passes them). */
static void place_at(int fd, int at) {
    if (fd == at)
        return;
    assert_int_equal(dup2(fd, at), at);
    close(fd);
}

static void set_listen_env(const char *fds, const char *names, bool ours) {
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", ours ? (long)getpid() : (long)getpid() + 1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", fds, 1);
    if (names)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}

static void assert_listen_env_gone(void) {
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_FDNAMES"));
}

static void test_activation_takes_sockets(void **state) {
    (void)state;
    int a = listening_socket(AF_INET), b = listening_socket(AF_INET);
    place_at(a, 3);
    place_at(b, 4);
    set_listen_env("2", "echo:other", true);
    passed_socket got[4];
    char err[256] = "";
    assert_int_equal(systemd_take_sockets(got, 4, err, sizeof err), 2);
    assert_int_equal(got[0].fd, 3);
    assert_int_equal(got[1].fd, 4);
    assert_string_equal(got[0].name, "echo");
    assert_string_equal(got[1].name, "other");
    for (int fd = 3; fd <= 4; fd++) {
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    }
    assert_listen_env_gone();
    close(3);
    close(4);
}

static void test_activation_names_optional(void **state) {
    (void)state;
    int fd6 = listening_socket(AF_INET6);
    int fd = fd6 >= 0 ? fd6 : listening_socket(AF_INET);
    place_at(fd, 3);
    set_listen_env("1", NULL, true);
    passed_socket got[1];
    char err[256] = "";
    assert_int_equal(systemd_take_sockets(got, 1, err, sizeof err), 1);
    assert_string_equal(got[0].name, "");
    close(3);
}

static void test_activation_not_ours(void **state) {
    (void)state;
    set_listen_env("1", "echo", false);
    passed_socket got[1];
    char err[256] = "";
    assert_int_equal(systemd_take_sockets(got, 1, err, sizeof err), 0);
    assert_listen_env_gone();
    /* Nothing set at all: nothing taken. */
    assert_int_equal(systemd_take_sockets(got, 1, err, sizeof err), 0);
}

static void expect_refusal(const char *fds, const char *needle) {
    set_listen_env(fds, NULL, true);
    passed_socket got[2];
    char err[256] = "";
    assert_int_equal(systemd_take_sockets(got, 2, err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("LISTEN_FDS=%s: expected \"%s\" in \"%s\"", fds, needle, err);
    assert_listen_env_gone();
}

static void test_activation_refuses_bad_values(void **state) {
    (void)state;
    expect_refusal("x", "expected a number");
    expect_refusal("", "expected a number");
    expect_refusal("1x", "expected a number");
    expect_refusal("-1", "expected a number");
    expect_refusal("3", "at most 2");

    int fd = open("/dev/null", O_RDONLY); /* not a socket */
    place_at(fd, 3);
    expect_refusal("1", "descriptor 3 is not a socket");

    fd = socket(AF_UNIX, SOCK_DGRAM, 0); /* a datagram socket, but not UDP */
    place_at(fd, 3);
    expect_refusal("1", "neither a listening TCP socket nor a UDP one");

    fd = socket(AF_INET, SOCK_STREAM, 0); /* TCP, but not listening */
    place_at(fd, 3);
    expect_refusal("1", "neither a listening TCP socket nor a UDP one");

    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    place_at(pair[0], 3);
    close(pair[1]);
    expect_refusal("1", "neither a listening TCP socket nor a UDP one");
    close(3);

    expect_refusal("1", "descriptor 3"); /* closed */
}

/* ---- notify ----------------------------------------------------------------- */

typedef struct receiver {
    int fd;
    char env[108];
} receiver;

static void open_receiver(receiver *r, bool abstract) {
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        snprintf(r->env, sizeof r->env, "@coecho-unit-%ld", (long)getpid());
        memcpy(sa.sun_path + 1, r->env + 1, strlen(r->env) - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(r->env));
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(r->env, sizeof r->env, "%s/coecho-unit-%ld.sock", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
        unlink(r->env);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", r->env);
        len = sizeof sa;
    }
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sa, len), 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", r->env, 1);
}

static void close_receiver(receiver *r) {
    close(r->fd);
    if (r->env[0] == '/')
        unlink(r->env);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

static void expect_datagram(receiver *r, const char *want) {
    char buf[2048];
    ssize_t n = recv(r->fd, buf, sizeof buf - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_notify_sends(bool abstract) {
    receiver r;
    open_receiver(&r, abstract);
    char err[256] = "";
    assert_int_equal(notify_init(err, sizeof err), 0);
    assert_true(notify_enabled());
    assert_int_equal(notify_watchdog_interval_ms(), 0);
    assert_int_equal(notify_send("READY=1\nSTATUS=%d connections", 3), 0);
    expect_datagram(&r, "READY=1\nSTATUS=3 connections");
    assert_int_equal(notify_send("STOPPING=1"), 0);
    expect_datagram(&r, "STOPPING=1");
    close_receiver(&r);
}

static void test_notify_abstract(void **state) {
    (void)state;
    test_notify_sends(true);
}

static void test_notify_path(void **state) {
    (void)state;
    test_notify_sends(false);
}

static void test_notify_long_status_cut(void **state) {
    (void)state;
    receiver r;
    open_receiver(&r, true);
    char err[256];
    assert_int_equal(notify_init(err, sizeof err), 0);
    char long_text[3000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    assert_int_equal(notify_send("STATUS=%s", long_text), 0);
    char buf[4096];
    ssize_t n = recv(r.fd, buf, sizeof buf, 0);
    assert_true(n > 100 && n < 1024);
    assert_memory_equal(buf, "STATUS=xxx", 10);
    close_receiver(&r);
}

static void test_notify_absent(void **state) {
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "1000000", 1);
    char err[256];
    assert_int_equal(notify_init(err, sizeof err), 0);
    assert_false(notify_enabled());
    assert_int_equal(notify_watchdog_interval_ms(), 0);
    assert_int_equal(notify_send("READY=1"), 0); /* nothing to tell, no error */
    unsetenv("WATCHDOG_USEC");
}

static void test_notify_watchdog(void **state) {
    (void)state;
    receiver r;
    open_receiver(&r, true);
    char err[256], pid[32];
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(notify_init(err, sizeof err), 0);
    assert_int_equal(notify_watchdog_interval_ms(), 15000); /* half of it */

    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    setenv("WATCHDOG_USEC", "1000", 1); /* 1 ms: every 0.5 ms, kept at 1 ms */
    assert_int_equal(notify_init(err, sizeof err), 0);
    assert_int_equal(notify_watchdog_interval_ms(), 1);

    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* watching another process */
    assert_int_equal(notify_init(err, sizeof err), 0);
    assert_int_equal(notify_watchdog_interval_ms(), 0);
    close_receiver(&r);
}

static void expect_notify_error(const char *var, const char *value, const char *needle) {
    char err[256] = "";
    setenv("NOTIFY_SOCKET", "@coecho-unit-errors", 1);
    setenv(var, value, 1);
    assert_int_equal(notify_init(err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("%s=%s: expected \"%s\" in \"%s\"", var, value, needle, err);
    assert_false(notify_enabled());
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
}

static void test_notify_bad_values(void **state) {
    (void)state;
    expect_notify_error("NOTIFY_SOCKET", "relative.sock", "NOTIFY_SOCKET: expected");
    expect_notify_error("NOTIFY_SOCKET", "@", "NOTIFY_SOCKET: expected");
    char too_long[200];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[0] = '/';
    too_long[sizeof too_long - 1] = '\0';
    expect_notify_error("NOTIFY_SOCKET", too_long, "NOTIFY_SOCKET: expected");
    expect_notify_error("WATCHDOG_USEC", "soon", "WATCHDOG_USEC: expected");
    expect_notify_error("WATCHDOG_USEC", "0", "WATCHDOG_USEC: expected");
    expect_notify_error("WATCHDOG_USEC", "-5", "WATCHDOG_USEC: expected");
}

static void test_notify_monotonic(void **state) {
    (void)state;
    struct timespec ts;
    uint64_t a = notify_monotonic_usec();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t b = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    assert_true(a <= b && b - a < 1000000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_takes_sockets),
        cmocka_unit_test(test_activation_names_optional),
        cmocka_unit_test(test_activation_not_ours),
        cmocka_unit_test(test_activation_refuses_bad_values),
        cmocka_unit_test(test_notify_abstract),
        cmocka_unit_test(test_notify_path),
        cmocka_unit_test(test_notify_long_status_cut),
        cmocka_unit_test(test_notify_absent),
        cmocka_unit_test(test_notify_watchdog),
        cmocka_unit_test(test_notify_bad_values),
        cmocka_unit_test(test_notify_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
