/* Unit tests of the server's modules without a process around them: the
 * restart backoff, the workers' report codec, the signal table, connection
 * admission, and the echo handler over a socketpair (echo, half-close, an
 * unread echo after the client's EOF). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/backoff.h"
#include "server/conn.h"
#include "server/echo.h"
#include "server/settings.h"
#include "server/signals.h"
#include "task_check.h"

/* ---- backoff ---------------------------------------------------------------- */

static void backoff_doubles_caps_and_starts_over(void **state) {
    (void)state;
    backoff b = BACKOFF_POLICY(100, 1000, 5000);
    backoff_started(&b, 0);
    int64_t want[] = {100, 200, 400, 800, 1000, 1000};
    int64_t now = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        now += 10; /* dies young each time */
        assert_int_equal(backoff_next(&b, now), want[i]);
        backoff_started(&b, now);
    }
    assert_int_equal(backoff_next(&b, now + 4999), 1000); /* not healthy yet */
    backoff_started(&b, now + 5000);
    assert_int_equal(backoff_next(&b, now + 10000), 100); /* ran 5 s: over */
}

/* ---- the signal table --------------------------------------------------------- */

static void signals_have_one_meaning(void **state) {
    (void)state;
    assert_int_equal(signal_action_of(SIGTERM), SIGNAL_STOP);
    assert_int_equal(signal_action_of(SIGINT), SIGNAL_STOP);
    assert_int_equal(signal_action_of(SIGHUP), SIGNAL_RELOAD);
    assert_int_equal(signal_action_of(SIGUSR1), SIGNAL_STATS);
    assert_int_equal(signal_action_of(SIGUSR2), SIGNAL_NONE);
    assert_int_equal(signal_action_of(SIGCHLD), SIGNAL_NONE);
    sigset_t set;
    server_signal_set(&set);
    for (size_t i = 0; i < server_signal_count; i++)
        assert_true(sigismember(&set, server_signals[i].signo));
    assert_false(sigismember(&set, SIGCHLD));
}

/* ---- admission ------------------------------------------------------------------ */

static void use_settings(uint32_t per_ip, uint32_t prefix, int64_t idle_ms) {
    config cfg;
    config_defaults(&cfg);
    cfg.max_connections_per_ip = per_ip;
    cfg.per_ip_ipv6_prefix = prefix;
    cfg.idle_timeout_ms = idle_ms;
    settings_init(&cfg, NULL);
}

static struct sockaddr_in6 peer6(const char *text) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, text, &sa.sin6_addr);
    return sa;
}

static int admission_task(void *arg) {
    (void)arg;
    CHECK_EQ(conn_init(), 0);
    struct sockaddr_in6 a = peer6("2001:db8::1"), b = peer6("2001:db8::2"),
                        other = peer6("2001:db8:0:1::1");
    ip_key ka, kb, kc, kd;
    CHECK_EQ(conn_admit((struct sockaddr *)&a, &ka), 0);
    CHECK_EQ(conn_admit((struct sockaddr *)&b, &kb), 0); /* the same /64: the second */
    CHECK_EQ(conn_admit((struct sockaddr *)&a, &kc), -EDQUOT);
    CHECK_EQ(conn_admit((struct sockaddr *)&other, &kd), 0);
    conn_stats st;
    conn_get_stats(&st);
    CHECK_EQ(st.active, 3);
    CHECK_EQ(st.rejected_per_ip, 1);
    conn_unadmit(&kb);
    CHECK_EQ(conn_admit((struct sockaddr *)&b, &kc), 0); /* a slot of that /64 again */
    conn_unadmit(&ka);
    conn_unadmit(&kc);
    conn_unadmit(&kd);
    CHECK_EQ(conn_active(), 0);
    conn_destroy();
    return 0;
}

static void admission_counts_per_prefix(void **state) {
    (void)state;
    use_settings(2, 64, 0);
    run_root(admission_task, NULL);
}

/* ---- the echo handler ---------------------------------------------------------- */

typedef struct echo_case {
    size_t size;    /* bytes the client sends before its EOF */
    bool read_echo; /* reads it back before its EOF, or never */
} echo_case;

/* A handler on sv[1], as an accept task would start it. */
static co_tid start_handler(int fd, int64_t idle_ms) {
    connection_start *start = calloc(1, sizeof *start); /* the connection log off */
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    if (!start || conn_admit((struct sockaddr *)&peer, &start->conn.peer) != 0)
        return 0;
    start->conn.keyed = true;
    start->conn.fd = fd;
    start->idle_timeout_ms = idle_ms;
    start->buffer_size = 512;
    co_tid tid;
    return co_spawn(&tid, echo_handle_client, start) == 0 ? tid : 0;
}

static int echo_task(void *arg) {
    const echo_case *ec = arg;
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    CHECK_EQ(conn_init(), 0);
    co_tid handler = start_handler(sv[1], 300);
    CHECK(handler != 0);
    char *out = malloc(ec->size), *in = malloc(ec->size);
    for (size_t i = 0; i < ec->size; i++)
        out[i] = (char)(i * 7 + 1);
    CHECK_EQ(co_write(sv[0], out, ec->size, co_now() + LONG_DEADLINE_MS), ec->size);
    size_t got = 0;
    while (ec->read_echo && got < ec->size) {
        ssize_t n = co_read(sv[0], in + got, ec->size - got, co_now() + LONG_DEADLINE_MS);
        CHECK(n > 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    CHECK_EQ(shutdown(sv[0], SHUT_WR), 0);
    int64_t eof_at = co_now();
    int status = -1;
    CHECK_EQ(co_join(handler, &status, co_now() + LONG_DEADLINE_MS), 0);
    CHECK_EQ(status, 0);
    conn_stats st;
    conn_get_stats(&st);
    CHECK_EQ(st.active, 0);
    CHECK_EQ(st.bytes_in, ec->size);
    CHECK_EQ(st.bytes_out, ec->size);
    /* A reader is let go at once; a non-reader after idle_timeout (300 ms). */
    CHECK_EQ(st.timed_out, ec->read_echo ? 0 : 1);
    CHECK(ec->read_echo ? co_now() - eof_at < AT_ONCE_MS : co_now() - eof_at >= 290);
    CHECK(!ec->read_echo || memcmp(in, out, ec->size) == 0);
    free(out);
    free(in);
    co_close(sv[0]);
    conn_destroy();
    echo_release_buffers();
    return 0;
}

static void echo_then_eof(void **state) {
    (void)state;
    use_settings(0, 64, 300);
    echo_case ec = {.size = 3000, .read_echo = true};
    run_root(echo_task, &ec);
}

/* The client half-closes and never reads: the handler keeps the connection
 * until idle_timeout instead of closing with the echo queued. */
static void unread_echo_after_eof_waits_for_idle_timeout(void **state) {
    (void)state;
    use_settings(0, 64, 300);
    echo_case ec = {.size = 3000, .read_echo = false};
    run_root(echo_task, &ec);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_caps_and_starts_over),
        cmocka_unit_test(signals_have_one_meaning),
        cmocka_unit_test(admission_counts_per_prefix),
        cmocka_unit_test(echo_then_eof),
        cmocka_unit_test(unread_echo_after_eof_waits_for_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
