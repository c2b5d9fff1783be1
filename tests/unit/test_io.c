/* Unit tests of the fd calls: co_wait_fd, co_read, co_write, on pipes and a
 * socketpair.
 *
 * Tasks never call cmocka's asserts (see task_check.h): they record what they
 * see with CHECK* or in fields of a result struct, and the test function
 * asserts after co_run has returned. Every test also checks that it left no
 * file descriptor open (its own or the runtime's). */
#ifdef HAVE_CONFIG_H
#include <config.h> /* _GNU_SOURCE, for pipe2 */
#else
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

/* Open descriptors among the first 4096: equal before and after a test when
 * nothing leaked, wherever the leaked one sits. */
static int count_open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    return n;
}

static int fds_before;

static int mark_fds(void **state) {
    (void)state;
    fds_before = count_open_fds();
    return 0;
}

/* After each test (which has closed what it opened): the runtime's own
 * descriptors (its loop) must be gone too. */
static int check_no_fd_leaked(void **state) {
    (void)state;
    int now = count_open_fds();
    if (now != fds_before)
        fail_msg("descriptor leak: %d open, %d before the test", now, fds_before);
    return 0;
}

static void close_pair(int fds[2]) {
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* Opens fds as a non-blocking pipe, runs root, then closes the ends still open. */
static void run_root_on_pipe(co_fn root, void *arg, int fds[2]) {
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    run_root(root, arg);
    close_pair(fds);
}

/* ---- co_wait_fd ----------------------------------------------------------- */

struct wait_fd {
    int fds[2];
    int64_t deadline, woke, elapsed;
    int result;
};

static int wait_fd_timeout_root(void *arg) {
    struct wait_fd *r = arg;
    r->deadline = co_now() + 20;
    r->result = co_wait_fd(r->fds[0], CO_READ, r->deadline);
    r->woke = co_now();
    return 0;
}

static void test_wait_fd_times_out_on_empty_pipe(void **state) {
    (void)state;
    struct wait_fd r = {0};
    run_root_on_pipe(wait_fd_timeout_root, &r, r.fds);
    assert_int_equal(r.result, -ETIMEDOUT);
    assert_true(r.woke >= r.deadline);
}

static int write_one_byte(void *arg) {
    int fd = *(int *)arg;
    return (int)write(fd, "x", 1);
}

static int wait_fd_readable_root(void *arg) {
    struct wait_fd *r = arg;
    /* The writer runs only once the root blocks. */
    co_tid w;
    co_spawn(&w, write_one_byte, &r->fds[1]);
    r->deadline = co_now() + LONG_DEADLINE_MS;
    r->result = co_wait_fd(r->fds[0], CO_READ, r->deadline);
    r->woke = co_now();
    int st = 0;
    CHECK_EQ(co_join(w, &st, CO_NEVER), 0);
    CHECK_EQ(st, 1);
    return 0;
}

static void test_wait_fd_wakes_when_another_task_writes(void **state) {
    (void)state;
    struct wait_fd r = {0};
    run_root_on_pipe(wait_fd_readable_root, &r, r.fds);
    assert_int_equal(r.result, CO_READ);
    assert_true(r.woke < r.deadline);
}

static int wait_fd_writable_root(void *arg) {
    struct wait_fd *r = arg;
    int64_t start = co_now();
    r->deadline = start + LONG_DEADLINE_MS;
    r->result = co_wait_fd(r->fds[1], CO_WRITE, r->deadline);
    r->elapsed = co_now() - start;
    return 0;
}

static void test_wait_fd_write_on_pipe_with_space_returns_at_once(void **state) {
    (void)state;
    struct wait_fd r = {0};
    run_root_on_pipe(wait_fd_writable_root, &r, r.fds);
    assert_int_equal(r.result, CO_WRITE);
    assert_true(r.elapsed < AT_ONCE_MS);
}

/* Like poll() with a zero timeout: a past deadline fails only a call that
 * would have to wait, and a ready fd needs no waiting (as co_read with data,
 * co_join on a zombie or a channel with a waiting partner answer at once). */
static int wait_fd_ready_past_deadline_root(void *arg) {
    struct wait_fd *r = arg;
    r->deadline = past_deadline();
    r->result = co_wait_fd(r->fds[1], CO_WRITE, r->deadline);
    return 0;
}

static void test_wait_fd_with_past_deadline_reports_a_ready_fd(void **state) {
    (void)state;
    struct wait_fd r = {0};
    run_root_on_pipe(wait_fd_ready_past_deadline_root, &r, r.fds);
    if (r.result != CO_WRITE)
        fail_msg("co_wait_fd(pipe with space, CO_WRITE, past deadline) returned %d, want CO_WRITE",
                 r.result);
}

struct wait_fd_killed {
    int fds[2];
    int result;
    int kill_result;
    int join_result;
    int status;
};

static int wait_fd_forever(void *arg) {
    struct wait_fd_killed *r = arg;
    r->result = co_wait_fd(r->fds[0], CO_READ, CO_NEVER);
    return 6;
}

static int wait_fd_killed_root(void *arg) {
    struct wait_fd_killed *r = arg;
    co_tid t;
    co_spawn(&t, wait_fd_forever, r);
    co_yield(); /* t blocks on the empty pipe */
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(t, &info), 0);
    CHECK_EQ(info.state, CO_BLOCKED);
    CHECK_EQ(info.waiting, CO_WAIT_FD);
    r->kill_result = co_kill(t);
    r->join_result = co_join(t, &r->status, co_now() + LONG_DEADLINE_MS);
    return 0;
}

static void test_wait_fd_killed_while_waiting_returns_ecanceled(void **state) {
    (void)state;
    struct wait_fd_killed r = {0};
    run_root_on_pipe(wait_fd_killed_root, &r, r.fds);
    assert_int_equal(r.kill_result, 0);
    assert_int_equal(r.result, -ECANCELED);
    assert_int_equal(r.join_result, 0);
    assert_int_equal(r.status, 6);
}

/* ---- co_read / co_write: 1 MiB through a pipe ----------------------------- */

#define BIG_SIZE (1024 * 1024)
#define READ_CHUNK 1000 /* small and odd, so chunks straddle the writes */

/* xorshift64: the writer and the reader generate the same byte stream. */
static uint8_t next_byte(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint8_t)(*s >> 24);
}

struct big_transfer {
    int fds[2];
    ssize_t written;
    bool writer_done;
    size_t read_total;
    size_t first_mismatch; /* offset, or SIZE_MAX */
    int reads;
    bool read_while_writer_busy;
    ssize_t last_read;
};

static int big_writer(void *arg) {
    struct big_transfer *r = arg;
    uint8_t *buf = malloc(BIG_SIZE);
    CHECK(buf != NULL);
    if (!buf)
        return 1;
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < BIG_SIZE; i++)
        buf[i] = next_byte(&s);
    r->written = co_write(r->fds[1], buf, BIG_SIZE, co_now() + 10 * LONG_DEADLINE_MS);
    r->writer_done = true;
    free(buf);
    close(r->fds[1]); /* the reader sees EOF */
    r->fds[1] = -1;
    return 0;
}

static int big_reader(void *arg) {
    struct big_transfer *r = arg;
    uint64_t s = 0x9e3779b97f4a7c15u;
    uint8_t chunk[READ_CHUNK];
    r->first_mismatch = SIZE_MAX;
    for (;;) {
        ssize_t n = co_read(r->fds[0], chunk, sizeof chunk, co_now() + LONG_DEADLINE_MS);
        r->last_read = n;
        if (n <= 0)
            break;
        r->reads++;
        if (!r->writer_done)
            r->read_while_writer_busy = true;
        for (ssize_t i = 0; i < n; i++)
            if (chunk[i] != next_byte(&s) && r->first_mismatch == SIZE_MAX)
                r->first_mismatch = r->read_total + (size_t)i;
        r->read_total += (size_t)n;
    }
    return 0;
}

static int big_transfer_root(void *arg) {
    struct big_transfer *r = arg;
    co_tid w;
    co_spawn(&w, big_writer, r);
    co_tid rd;
    co_spawn(&rd, big_reader, r);
    CHECK_EQ(co_join(w, NULL, CO_NEVER), 0);
    CHECK_EQ(co_join(rd, NULL, CO_NEVER), 0);
    return 0;
}

static void test_read_write_one_mib_through_pipe(void **state) {
    (void)state;
    struct big_transfer r = {0};
    run_root_on_pipe(big_transfer_root, &r, r.fds);
    assert_int_equal(r.written, BIG_SIZE);
    assert_int_equal(r.read_total, BIG_SIZE);
    if (r.first_mismatch != SIZE_MAX)
        fail_msg("byte %zu differs from what was written", r.first_mismatch);
    assert_int_equal(r.last_read, 0); /* ended at EOF, not on an error */
    /* 1 MiB does not fit a pipe: the writer had to wait for the reader. */
    assert_true(r.read_while_writer_busy);
    assert_true(r.reads >= BIG_SIZE / READ_CHUNK);
}

/* ---- co_read / co_write: timeouts, EOF, errors ---------------------------- */

struct read_timeout {
    int fds[2];
    int64_t deadline, woke;
    ssize_t result;
};

static int read_timeout_root(void *arg) {
    struct read_timeout *r = arg;
    char buf[16];
    r->deadline = co_now() + 20;
    r->result = co_read(r->fds[0], buf, sizeof buf, r->deadline);
    r->woke = co_now();
    return 0;
}

static void test_read_times_out_on_empty_pipe(void **state) {
    (void)state;
    struct read_timeout r = {0};
    run_root_on_pipe(read_timeout_root, &r, r.fds);
    assert_int_equal(r.result, -ETIMEDOUT);
    assert_true(r.woke >= r.deadline);
}

#define FILL_SIZE (256 * 1024) /* more than the pipe holds by default (64 KiB) */

struct write_timeout {
    int fds[2];
    ssize_t first;  /* stopped by the deadline after some bytes */
    int buffered;   /* bytes the pipe holds afterwards */
    ssize_t second; /* the pipe is full: nothing goes out */
    int64_t deadline, woke;
};

static int write_timeout_root(void *arg) {
    struct write_timeout *r = arg;
    char *buf = calloc(1, FILL_SIZE);
    CHECK(buf != NULL);
    if (!buf)
        return 1;
    r->first = co_write(r->fds[1], buf, FILL_SIZE, co_now() + 20);
    CHECK_EQ(ioctl(r->fds[0], FIONREAD, &r->buffered), 0);
    r->deadline = co_now() + 20;
    r->second = co_write(r->fds[1], buf, 1, r->deadline);
    r->woke = co_now();
    free(buf);
    return 0;
}

static void test_write_to_full_pipe_returns_short_count_then_etimedout(void **state) {
    (void)state;
    struct write_timeout r = {0};
    run_root_on_pipe(write_timeout_root, &r, r.fds);
    /* Some bytes went out before the deadline: the short count, which must be
     * exactly what the pipe holds. */
    assert_true(r.first > 0);
    assert_true(r.first < FILL_SIZE);
    assert_int_equal(r.first, r.buffered);
    /* Nothing could go out: the error itself. */
    assert_int_equal(r.second, -ETIMEDOUT);
    assert_true(r.woke >= r.deadline);
}

struct eof {
    int fds[2];
    ssize_t data, at_eof, again;
    char buf[8];
    ssize_t blocked_read; /* a reader already waiting when the writer closes */
};

static int eof_root(void *arg) {
    struct eof *r = arg;
    CHECK_EQ(write(r->fds[1], "abc", 3), 3);
    close(r->fds[1]);
    r->fds[1] = -1;
    int64_t d = co_now() + LONG_DEADLINE_MS;
    r->data = co_read(r->fds[0], r->buf, sizeof r->buf, d);
    r->at_eof = co_read(r->fds[0], r->buf + 3, sizeof r->buf - 3, d);
    r->again = co_read(r->fds[0], r->buf + 3, sizeof r->buf - 3, d);
    return 0;
}

static void test_read_returns_zero_at_eof(void **state) {
    (void)state;
    struct eof r = {0};
    run_root_on_pipe(eof_root, &r, r.fds);
    assert_int_equal(r.data, 3);
    assert_memory_equal(r.buf, "abc", 3);
    assert_int_equal(r.at_eof, 0);
    assert_int_equal(r.again, 0);
}

static int close_write_end(void *arg) {
    struct eof *r = arg;
    close(r->fds[1]);
    r->fds[1] = -1;
    return 0;
}

static int eof_while_waiting_root(void *arg) {
    struct eof *r = arg;
    co_tid c;
    co_spawn(&c, close_write_end, r);
    /* Blocks: the pipe is empty and still open; the closer runs meanwhile. */
    r->blocked_read = co_read(r->fds[0], r->buf, sizeof r->buf, co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(co_join(c, NULL, CO_NEVER), 0);
    return 0;
}

static void test_waiting_read_wakes_with_zero_at_eof(void **state) {
    (void)state;
    struct eof r = {0};
    run_root_on_pipe(eof_while_waiting_root, &r, r.fds);
    assert_int_equal(r.blocked_read, 0);
}

struct bad_fd {
    int fd;
    ssize_t read_result, write_result;
};

static int bad_fd_root(void *arg) {
    struct bad_fd *r = arg;
    char buf[4] = "abc";
    /* A number just closed, inside the run, so that nothing (such as the
     * runtime's loop) has taken it since. */
    int fds[2];
    CHECK_EQ(pipe2(fds, O_CLOEXEC), 0);
    close(fds[0]);
    close(fds[1]);
    r->fd = fds[0];
    r->read_result = co_read(r->fd, buf, sizeof buf, co_now() + LONG_DEADLINE_MS);
    r->write_result = co_write(r->fd, buf, sizeof buf, co_now() + LONG_DEADLINE_MS);
    return 0;
}

static void test_read_and_write_on_bad_fd_return_ebadf(void **state) {
    (void)state;
    struct bad_fd r = {0};
    run_root(bad_fd_root, &r);
    assert_int_equal(r.read_result, -EBADF);
    assert_int_equal(r.write_result, -EBADF);
}

/* ---- socketpair: an echo round trip --------------------------------------- */

#define ECHO_ROUNDS 50

struct echo {
    int sv[2];
    int echoed_bytes;
    int echo_last;  /* the echo task's last co_read result: 0 at EOF */
    int both_ready; /* co_wait_fd(READ|WRITE) with data pending */
    int rounds_ok;
    int first_bad_round;
};

/* Reads from sv[1] and writes everything back until EOF. */
static int echo_task(void *arg) {
    struct echo *r = arg;
    char buf[64];
    for (;;) {
        ssize_t n = co_read(r->sv[1], buf, sizeof buf, co_now() + LONG_DEADLINE_MS);
        r->echo_last = (int)n;
        if (n <= 0)
            break;
        CHECK_EQ(co_write(r->sv[1], buf, (size_t)n, co_now() + LONG_DEADLINE_MS), n);
        r->echoed_bytes += (int)n;
    }
    return 0;
}

static int echo_root(void *arg) {
    struct echo *r = arg;
    r->first_bad_round = -1;
    co_tid e;
    co_spawn(&e, echo_task, r);
    for (int i = 0; i < ECHO_ROUNDS; i++) {
        char msg[32], back[32];
        int len = snprintf(msg, sizeof msg, "message %d", i);
        CHECK_EQ(co_write(r->sv[0], msg, (size_t)len, co_now() + LONG_DEADLINE_MS), len);
        if (i == 0) {
            /* Let the echo come back, then ask for both directions at once. */
            CHECK_EQ(co_wait_fd(r->sv[0], CO_READ, co_now() + LONG_DEADLINE_MS), CO_READ);
            r->both_ready = co_wait_fd(r->sv[0], CO_READ | CO_WRITE, co_now() + LONG_DEADLINE_MS);
        }
        int got = 0;
        while (got < len) {
            ssize_t n = co_read(r->sv[0], back + got, sizeof back - (size_t)got,
                                co_now() + LONG_DEADLINE_MS);
            if (n <= 0)
                break;
            got += (int)n;
        }
        if (got == len && memcmp(msg, back, (size_t)len) == 0)
            r->rounds_ok++;
        else if (r->first_bad_round < 0)
            r->first_bad_round = i;
    }
    CHECK_EQ(shutdown(r->sv[0], SHUT_WR), 0); /* the echo task reads EOF */
    CHECK_EQ(co_join(e, NULL, co_now() + LONG_DEADLINE_MS), 0);
    return 0;
}

static void test_socketpair_echo_round_trips(void **state) {
    (void)state;
    struct echo r = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r.sv), 0);
    run_root(echo_root, &r);
    close_pair(r.sv);
    if (r.first_bad_round >= 0)
        fail_msg("round %d did not come back intact", r.first_bad_round);
    assert_int_equal(r.rounds_ok, ECHO_ROUNDS);
    assert_int_equal(r.both_ready, CO_READ | CO_WRITE);
    assert_int_equal(r.echo_last, 0);
    assert_true(r.echoed_bytes > 0);
}

/* Every test checks for leaked descriptors around it. */
#define IO_TEST(f) cmocka_unit_test_setup_teardown(f, mark_fds, check_no_fd_leaked)

int main(void) {
    const struct CMUnitTest tests[] = {
        IO_TEST(test_wait_fd_times_out_on_empty_pipe),
        IO_TEST(test_wait_fd_wakes_when_another_task_writes),
        IO_TEST(test_wait_fd_write_on_pipe_with_space_returns_at_once),
        IO_TEST(test_wait_fd_with_past_deadline_reports_a_ready_fd),
        IO_TEST(test_wait_fd_killed_while_waiting_returns_ecanceled),
        IO_TEST(test_read_write_one_mib_through_pipe),
        IO_TEST(test_read_times_out_on_empty_pipe),
        IO_TEST(test_write_to_full_pipe_returns_short_count_then_etimedout),
        IO_TEST(test_read_returns_zero_at_eof),
        IO_TEST(test_waiting_read_wakes_with_zero_at_eof),
        IO_TEST(test_read_and_write_on_bad_fd_return_ebadf),
        IO_TEST(test_socketpair_echo_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
