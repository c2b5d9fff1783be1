/* Unit tests of one runtime per thread: two threads each inside their own
 * co_run at the same time, each spawning many tasks that sleep, pass values
 * over a channel and move bytes through a pipe with fd waits. Each run
 * records what it saw in its own struct; the test asserts after joining.
 * (task_check.h's recorder is one global, so tasks here do not use it.) */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"

enum {
    THREADS = 2,
    WORKERS = 300,       /* tasks per runtime sending over the channel */
    PIPE_BYTES = 200000, /* more than a pipe holds: the writer must wait */
    DEADLINE_MS = 20000  /* bounds every wait, so a bug fails instead of hanging */
};

/* Both roots are running once this reaches THREADS. */
static int roots_started;

typedef struct run {
    int index;
    int status; /* co_run's result */
    co_chan *ch;
    long long sum; /* of the values the collector received */
    long received;
    int fds[2];
    long bytes_read;
    long bytes_written;
    uint32_t read_hash, write_hash;
    bool saw_other;   /* the other root was running while this one ran */
    bool alt_stack;   /* a signal stack was installed for this thread */
    bool ids_ok;      /* task ids are this runtime's own, counting from 1 */
    long sent_values; /* workers started sending, to number them */
    co_stats stats;
} run;

static uint32_t hash_byte(uint32_t h, unsigned char b) { return (h ^ b) * 16777619u; }

static unsigned char byte_at(const run *r, long i) {
    return (unsigned char)(i * 31 + r->index * 7);
}

/* Sleeps a little, then sends the next value: workers wake in mixed order. */
static int worker(void *arg) {
    run *r = arg;
    long v = ++r->sent_values;
    if (co_sleep(co_now() + v % 7) != 0)
        return 1;
    return co_chan_send(r->ch, &v, co_now() + DEADLINE_MS) == 0 ? 0 : 1;
}

static int collector(void *arg) {
    run *r = arg;
    long v;
    while (r->received < WORKERS && co_chan_recv(r->ch, &v, co_now() + DEADLINE_MS) == 0) {
        r->sum += v;
        r->received++;
    }
    return 0;
}

static int pipe_writer(void *arg) {
    run *r = arg;
    unsigned char buf[4096];
    while (r->bytes_written < PIPE_BYTES) {
        size_t n = 0;
        for (; n < sizeof buf && r->bytes_written + (long)n < PIPE_BYTES; n++) {
            buf[n] = byte_at(r, r->bytes_written + (long)n);
            r->write_hash = hash_byte(r->write_hash, buf[n]);
        }
        ssize_t w = co_write(r->fds[1], buf, n, co_now() + DEADLINE_MS);
        if (w != (ssize_t)n)
            return 1;
        r->bytes_written += (long)n;
    }
    return co_close(r->fds[1]) == 0 ? 0 : 1;
}

/* Waits for the fd, then reads: the fd-wait path, not just co_read's. */
static int pipe_reader(void *arg) {
    run *r = arg;
    unsigned char buf[3000];
    for (;;) {
        if (co_wait_fd(r->fds[0], CO_READ, co_now() + DEADLINE_MS) < 0)
            return 1;
        ssize_t n = read(r->fds[0], buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return n == 0 ? 0 : 1;
        for (ssize_t i = 0; i < n; i++)
            r->read_hash = hash_byte(r->read_hash, buf[i]);
        r->bytes_read += n;
    }
}

/* Waits, sleeping, until every thread's root runs: proves the runs overlap. */
static void wait_for_other_roots(run *r) {
    __atomic_add_fetch(&roots_started, 1, __ATOMIC_SEQ_CST);
    int64_t give_up = co_now() + DEADLINE_MS;
    while (__atomic_load_n(&roots_started, __ATOMIC_SEQ_CST) < THREADS && co_now() < give_up)
        co_sleep(co_now() + 1);
    r->saw_other = __atomic_load_n(&roots_started, __ATOMIC_SEQ_CST) >= THREADS;
}

static int root(void *arg) {
    run *r = arg;
    stack_t ss;
    r->alt_stack = sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE);
    r->ids_ok = co_self() == 1;
    wait_for_other_roots(r);
    if (co_chan_new(&r->ch, sizeof(long), 8) != 0)
        return 1;
    int failed = 0;
    failed |= co_spawn(NULL, collector, r) != 0;
    failed |= co_spawn(NULL, pipe_writer, r) != 0;
    failed |= co_spawn(NULL, pipe_reader, r) != 0;
    for (int i = 0; i < WORKERS; i++)
        failed |= co_spawn(NULL, worker, r) != 0;
    int status;
    while (co_wait_child(NULL, &status, co_now() + DEADLINE_MS) == 0)
        failed |= status != 0;
    co_chan_free(r->ch);
    co_close(r->fds[0]);
    co_get_stats(&r->stats);
    return failed;
}

static void *thread_main(void *arg) {
    run *r = arg;
    r->status = co_run(root, r, NULL);
    return NULL;
}

static void test_two_runtimes_at_once(void **state) {
    (void)state;
    static run runs[THREADS];
    pthread_t threads[THREADS];
    memset(runs, 0, sizeof runs);
    roots_started = 0;
    for (int i = 0; i < THREADS; i++) {
        runs[i].index = i;
        assert_int_equal(pipe2(runs[i].fds, O_NONBLOCK | O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&threads[i], NULL, thread_main, &runs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        run *r = &runs[i];
        assert_int_equal(r->status, 0);
        assert_true(r->saw_other);
        assert_true(r->alt_stack);
        assert_true(r->ids_ok);
        assert_int_equal(r->received, WORKERS);
        assert_int_equal(r->sum, (long long)WORKERS * (WORKERS + 1) / 2);
        assert_int_equal(r->bytes_read, PIPE_BYTES);
        assert_int_equal(r->bytes_written, PIPE_BYTES);
        assert_int_equal(r->read_hash, r->write_hash);
        /* The root, the collector, the pipe pair and the workers: this
         * runtime's tasks only, whatever the other thread spawned. */
        assert_int_equal(r->stats.spawned, WORKERS + 4);
    }
}

/* A thread may run one runtime after another, and the main thread's run
 * is unaffected by a thread's (its own scheduler stays idle meanwhile). */
static int trivial_root(void *arg) {
    (void)arg;
    return co_sleep(co_now() + 1) == 0 ? 7 : 1;
}

static void *two_runs_in_a_row(void *arg) {
    int *status = arg;
    status[0] = co_run(trivial_root, NULL, NULL);
    status[1] = co_run(trivial_root, NULL, NULL);
    return NULL;
}

static void test_runs_in_sequence_per_thread(void **state) {
    (void)state;
    int status[2] = {0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, two_runs_in_a_row, status), 0);
    assert_int_equal(co_run(trivial_root, NULL, NULL), 7);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(status[0], 7);
    assert_int_equal(status[1], 7);
}

/* ---- a stack overflow in a second thread is still reported ------------- */

/* Unbounded in practice: the stack runs into its guard long before. */
static volatile int recursion_limit = 1 << 30;

static int recurse(int depth) {
    volatile char frame[1024];
    frame[0] = (char)depth;
    if (depth >= recursion_limit)
        return frame[0];
    return recurse(depth + 1) + frame[0];
}

static int deep(void *arg) {
    (void)arg;
    return recurse(0);
}

static int overflow_root(void *arg) {
    (void)arg;
    co_spawn_attr attr = {.name = "deep"};
    co_tid tid;
    if (co_spawn_with(&tid, deep, NULL, &attr) != 0)
        return 1;
    return co_join(tid, NULL, CO_NEVER);
}

static void *overflow_thread(void *arg) {
    (void)arg;
    co_run(overflow_root, NULL, NULL);
    return NULL;
}

/* In a child: a thread's task overflows; the child must die of SIGABRT
 * after the report, which needs that thread's own alternate signal stack. */
static void overflow_child(int err_fd) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    dup2(err_fd, STDERR_FILENO);
    pthread_t t;
    if (pthread_create(&t, NULL, overflow_thread, NULL) == 0)
        pthread_join(t, NULL);
    _exit(3); /* not reached when the overflow is reported */
}

/* Everything fd carries until EOF, within DEADLINE_MS. */
static void read_all(int fd, char *out, size_t cap) {
    size_t len = 0;
    while (len < cap - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, DEADLINE_MS) <= 0)
            break;
        ssize_t n = read(fd, out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
}

static void test_overflow_in_a_thread_is_reported(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        overflow_child(p[1]);
    close(p[1]);
    static char out[8192];
    read_all(p[0], out, sizeof out);
    close(p[0]);
    int wstatus = 0;
    if (waitpid(pid, &wstatus, WNOHANG) == 0) {
        kill(pid, SIGKILL); /* hung: fail below */
        waitpid(pid, &wstatus, 0);
    }
    if (!strstr(out, "coroutine 2 (deep) overflowed its 64 KiB stack\n"))
        fail_msg("no overflow report from the thread's task; the child said:\n%s", out);
    if (!WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGABRT)
        fail_msg("child status %#x: want killed by SIGABRT", wstatus);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_runtimes_at_once),
        cmocka_unit_test(test_runs_in_sequence_per_thread),
        cmocka_unit_test(test_overflow_in_a_thread_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
