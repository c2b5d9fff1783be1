/* bench/switch: cost of the runtime's basic operations, one
 * "name value unit" line each, the median of several runs:
 *   switch      one coro_switch between two coroutines (ns)
 *   yield       two tasks yielding to each other through the scheduler (ns/yield)
 *   spawn_exit  spawn a task that returns at once, run it, reap it (ns/task)
 *   chan        one message over an unbuffered channel between two tasks (ns)
 * Built twice: bench/switch (the configured switch) and, in an asm build,
 * bench/switch-ucontext, which prints the same names prefixed "ucontext_".
 * bench/switch runs its sibling after itself so one run compares both.
 * Usage: bench/switch [-n ITERATIONS] [-r RUNS] */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "coro/coro.h"
#include "rt/rt.h"

#ifndef BENCH_PREFIX
#define BENCH_PREFIX ""
#define BENCH_RUNS_SIBLING 1
#endif

static long iterations = 2000000;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- switch: raw coroutine ping-pong ------------------------------------ */

/* Two coroutines bounce between each other from one call site, as tasks do
 * in the scheduler; main only starts the game and gets control back. */
static coro main_co, bounce_co[2];
static long bounces_left;

static void bounce(void *arg) {
    int me = (int)(intptr_t)arg;
    while (bounces_left-- > 0)
        coro_transfer(&bounce_co[me], &bounce_co[!me]);
    coro_transfer(&bounce_co[me], &main_co);
}

static double bench_switch(void) {
    coro_stack_pool pool;
    coro_stack stacks[2];
    coro_stack_pool_init(&pool, 64 * 1024, 2);
    for (int i = 0; i < 2; i++) {
        if (coro_stack_get(&pool, &stacks[i]) != 0) {
            perror("bench/switch: stack");
            exit(1);
        }
        coro_init(&bounce_co[i], &stacks[i], bounce, (void *)(intptr_t)i);
    }
    coro_init_thread(&main_co);
    bounces_left = 2 * iterations;
    double t0 = now_ns();
    coro_transfer(&main_co, &bounce_co[0]);
    double ns = (now_ns() - t0) / (2.0 * (double)iterations);
    for (int i = 0; i < 2; i++)
        coro_stack_put(&pool, &stacks[i]);
    coro_stack_pool_destroy(&pool);
    return ns;
}

/* ---- yield ---------------------------------------------------------------- */

static int yielder(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++)
        co_yield();
    return 0;
}

static double result_ns;

static int yield_root(void *arg) {
    (void)arg;
    co_spawn(NULL, yielder, NULL);
    co_spawn(NULL, yielder, NULL);
    co_yield(); /* let both start, so the timed part is theirs alone */
    double t0 = now_ns();
    while (co_wait_child(NULL, NULL, CO_NEVER) == 0)
        ;
    result_ns = (now_ns() - t0) / (2.0 * (double)iterations);
    return 0;
}

/* ---- spawn_exit ----------------------------------------------------------- */

static int noop(void *arg) {
    (void)arg;
    return 0;
}

static int spawn_root(void *arg) {
    (void)arg;
    enum { BATCH = 100 };
    long rounds = iterations / BATCH;
    double t0 = now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++)
            if (co_spawn(NULL, noop, NULL) != 0)
                return errno;
        for (int i = 0; i < BATCH; i++)
            co_wait_child(NULL, NULL, CO_NEVER);
    }
    result_ns = (now_ns() - t0) / (double)(rounds * BATCH);
    return 0;
}

/* ---- chan ----------------------------------------------------------------- */

static co_chan *chan;

static int sender(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++)
        co_chan_send(chan, &i, CO_NEVER);
    return 0;
}

static int receiver(void *arg) {
    (void)arg;
    long v;
    for (long i = 0; i < iterations; i++)
        if (co_chan_recv(chan, &v, CO_NEVER) != 0 || v != i)
            return 1;
    return 0;
}

static int chan_root(void *arg) {
    (void)arg;
    co_chan_new(&chan, sizeof(long), 0);
    if (!chan)
        return ENOMEM;
    co_spawn(NULL, sender, NULL);
    co_spawn(NULL, receiver, NULL);
    double t0 = now_ns();
    int status, bad = 0;
    while (co_wait_child(NULL, &status, CO_NEVER) == 0)
        bad |= status;
    result_ns = (now_ns() - t0) / (double)iterations;
    co_chan_free(chan);
    return bad;
}

static double run_rt(co_fn root) {
    int rc = co_run(root, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "bench/switch: run failed: %d\n", rc);
        exit(1);
    }
    return result_ns;
}

static double bench_yield(void) { return run_rt(yield_root); }
static double bench_spawn_exit(void) { return run_rt(spawn_root); }
static double bench_chan(void) { return run_rt(chan_root); }

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double (*fn)(void), int runs) {
    double samples[64];
    for (int i = 0; i < runs; i++)
        samples[i] = fn();
    qsort(samples, (size_t)runs, sizeof samples[0], compare_double);
    printf("%s%s %.2f ns\n", BENCH_PREFIX, name, samples[runs / 2]);
    fflush(stdout);
}

static long parse_count(const char *s, const char *what, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > max) {
        fprintf(stderr, "bench/switch: %s must be an integer from 1 to %ld, got \"%s\"\n", what,
                max, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    int runs = 7, opt;
    while ((opt = getopt(argc, argv, "n:r:h")) != -1) {
        switch (opt) {
        case 'n':
            iterations = parse_count(optarg, "-n ITERATIONS", LONG_MAX / 4);
            break;
        case 'r':
            runs = (int)parse_count(optarg, "-r RUNS", 63);
            break;
        default:
            fprintf(stderr, "usage: %s [-n ITERATIONS] [-r RUNS]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (iterations < 100)
        iterations = 100;
    report("switch", bench_switch, runs);
    report("yield", bench_yield, runs);
    report("spawn_exit", bench_spawn_exit, runs);
    report("chan", bench_chan, runs);
#ifdef BENCH_RUNS_SIBLING
    /* Run the swapcontext build beside us, with the same arguments. */
    char self[PATH_MAX], sibling[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(sibling, sizeof sibling, "%s-ucontext", self);
        if (access(sibling, X_OK) == 0) {
            pid_t pid = fork();
            if (pid == 0) {
                argv[0] = sibling;
                execv(sibling, argv);
                perror(sibling);
                _exit(127);
            }
            int status;
            if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                return 1;
        }
    }
#endif
    return 0;
}
