/* Stress and machine-level tests: many tasks at once, a million spawn/reap
 * cycles with bounded stacks, floating-point control state per coroutine,
 * deep recursion close to the stack size, and the guard overflow report, also
 * for a big libc frame that runs past a small stack, in both guard kinds.
 *
 * Tasks never call cmocka's asserts (see task_check.h): they record what they
 * see with CHECK* or in fields of a result struct, and the test function
 * asserts after co_run has returned. */
#ifdef HAVE_CONFIG_H
#include <config.h> /* _GNU_SOURCE, for pipe2 */
#else
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

#define KIB 1024

/* ---- 10,000 tasks alive at once ------------------------------------------- */

#define MANY 10000

struct many {
    co_chan *gate;
    co_stats after_spawn;
    co_stats all_blocked;
    co_stats after_reap;
    int blocked_sampled; /* of a few sampled tasks, how many were blocked */
    int reaped;
    int bad_status;
    int duplicates;
    int wait_error;
    unsigned char seen[MANY];
};

static struct many many_result;

/* Blocks on the shared gate until it is closed; exits with its index. */
static int many_task(void *arg) {
    int index = (int)(intptr_t)arg;
    int v;
    int r = co_chan_recv(many_result.gate, &v, CO_NEVER);
    return r == -EPIPE ? index : -1 - index;
}

static int many_root(void *arg) {
    struct many *r = arg;
    co_chan_new(&r->gate, sizeof(int), 0);
    CHECK(r->gate != NULL);
    co_tid sample[4] = {0};
    for (int i = 0; i < MANY; i++) {
        co_tid t;
        int err = co_spawn(&t, many_task, (void *)(intptr_t)i);
        if (err) {
            check_failed(__FILE__, __LINE__, "co_spawn failed", err, 0);
            break;
        }
        if (i % (MANY / 4) == 0)
            sample[i / (MANY / 4)] = t;
    }
    co_get_stats(&r->after_spawn);
    co_yield(); /* every task runs once, into the channel */
    co_get_stats(&r->all_blocked);
    for (int i = 0; i < 4; i++) {
        co_task_info info = {0};
        if (co_task_get_info(sample[i], &info) == 0 && info.state == CO_BLOCKED &&
            info.waiting == CO_WAIT_RECV)
            r->blocked_sampled++;
    }

    CHECK_EQ(co_chan_close(r->gate), 0); /* releases them all */
    for (;;) {
        int st;
        int w = co_wait_child(NULL, &st, co_now() + 10000);
        if (w != 0) {
            if (w != -ECHILD)
                r->wait_error = w;
            break;
        }
        r->reaped++;
        if (st < 0 || st >= MANY)
            r->bad_status++;
        else if (r->seen[st]++)
            r->duplicates++;
    }
    co_get_stats(&r->after_reap);
    co_chan_free(r->gate);
    return 0;
}

static void test_ten_thousand_tasks_alive_at_once(void **state) {
    (void)state;
    struct many *r = &many_result;
    memset(r, 0, sizeof *r);
    run_root(many_root, r);
    assert_int_equal(r->after_spawn.tasks, MANY + 1); /* and the root */
    assert_int_equal(r->after_spawn.ready, MANY);
    assert_int_equal(r->all_blocked.tasks, MANY + 1);
    assert_int_equal(r->all_blocked.ready, 0);
    assert_true(r->all_blocked.stacks_mapped >= MANY + 1);
    assert_int_equal(r->blocked_sampled, 4);
    assert_int_equal(r->wait_error, 0);
    assert_int_equal(r->reaped, MANY);
    assert_int_equal(r->bad_status, 0);
    assert_int_equal(r->duplicates, 0);
    assert_int_equal(r->after_reap.tasks, 1);
}

/* ---- a million spawn/exit/reap cycles ------------------------------------- */

/* Fast enough as is under ASan+UBSan too (well under a second), so the
 * count is not scaled down for sanitizer builds. */
#define CYCLES 1000000
#define BATCH 100
#define CACHE 128

struct cycles {
    uint64_t spawned_before, spawned_after;
    uint64_t switches_before, switches_after;
    size_t max_mapped;
    size_t mapped_after_first_batches;
    size_t tasks_after;
    long reaped;
    int spawn_failures;
    int bad_status;
    int wait_errors;
};

static int trivial_task(void *arg) { return (int)(intptr_t)arg; }

static int cycles_root(void *arg) {
    struct cycles *r = arg;
    co_stats st;
    co_get_stats(&st);
    r->spawned_before = st.spawned;
    r->switches_before = st.switches;
    for (long done = 0; done < CYCLES; done += BATCH) {
        for (int i = 0; i < BATCH; i++)
            if (co_spawn(NULL, trivial_task, (void *)(intptr_t)(i + 1)) != 0)
                r->spawn_failures++;
        co_get_stats(&st);
        if (st.stacks_mapped > r->max_mapped)
            r->max_mapped = st.stacks_mapped;
        for (int i = 0; i < BATCH; i++) {
            int status = 0;
            int w = co_wait_child(NULL, &status, CO_NEVER);
            if (w != 0) {
                r->wait_errors++;
                break;
            }
            r->reaped++;
            if (status < 1 || status > BATCH)
                r->bad_status++;
        }
        co_get_stats(&st);
        if (st.stacks_mapped > r->max_mapped)
            r->max_mapped = st.stacks_mapped;
        if (done == 10 * BATCH)
            r->mapped_after_first_batches = r->max_mapped;
        if (r->wait_errors)
            break;
    }
    co_get_stats(&st);
    r->spawned_after = st.spawned;
    r->switches_after = st.switches;
    r->tasks_after = st.tasks;
    return 0;
}

static void test_million_spawn_reap_cycles_keep_stacks_bounded(void **state) {
    (void)state;
    struct cycles r = {0};
    co_options opts = {.stack_size = 0, .stack_cache = CACHE};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_root_with(cycles_root, &r, &opts);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("      %d spawn/exit/reap cycles in %.2f s, %llu switches\n", CYCLES, secs,
                  (unsigned long long)(r.switches_after - r.switches_before));

    assert_int_equal(r.spawn_failures, 0);
    assert_int_equal(r.wait_errors, 0);
    assert_int_equal(r.bad_status, 0);
    assert_int_equal(r.reaped, CYCLES);
    assert_int_equal(r.spawned_after - r.spawned_before, CYCLES);
    /* Each task was switched to at least once. */
    assert_true(r.switches_after - r.switches_before >= (uint64_t)CYCLES);
    assert_int_equal(r.tasks_after, 1);
    /* At most a batch plus the root in use, plus the cache. */
    if (r.max_mapped > BATCH + 1 + CACHE)
        fail_msg("stacks_mapped reached %zu, bound %d", r.max_mapped, BATCH + 1 + CACHE);
    /* No growth at all once the first batches have warmed the cache. */
    assert_int_equal(r.max_mapped, r.mapped_after_first_batches);
}

/* ---- floating-point control state per coroutine -------------------------- */

#ifdef __x86_64__
static unsigned x87_control_word(void) {
    uint16_t cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw;
}

/* MXCSR without the sticky exception flags (bits 0-5), which are status. */
static unsigned sse_control(void) {
    uint32_t mx;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    return mx & ~0x3fu;
}
#else
static unsigned x87_control_word(void) { return 0; }
static unsigned sse_control(void) { return 0; }
#endif

#define FP_ROUNDS 4

struct fp_view {
    int round;
    unsigned cw, mx;
};

static struct fp_view fp_now(void) {
    return (struct fp_view){fegetround(), x87_control_word(), sse_control()};
}

struct fp {
    struct fp_view a_set, b_start, b_set;
    struct fp_view a[FP_ROUNDS], b[FP_ROUNDS];
    struct fp_view root_end;
    double a_third, b_third; /* 1/3 as each task rounds it */
};

static volatile double fp_one = 1.0, fp_three = 3.0; /* volatile: no constant folding */

/* Yields FP_ROUNDS + 1 times, taking a sample between each two yields. */
static void fp_sample_across_yields(struct fp_view views[FP_ROUNDS]) {
    co_yield();
    for (int i = 0; i < FP_ROUNDS; i++) {
        views[i] = fp_now();
        co_yield();
    }
}

static int fp_task_a(void *arg) {
    struct fp *r = arg;
    fesetround(FE_DOWNWARD);
    r->a_set = fp_now();
    fp_sample_across_yields(r->a);
    r->a_third = fp_one / fp_three;
    return 0;
}

static int fp_task_b(void *arg) {
    struct fp *r = arg;
    r->b_start = fp_now();
    fesetround(FE_UPWARD);
    r->b_set = fp_now();
    fp_sample_across_yields(r->b);
    r->b_third = fp_one / fp_three;
    return 0;
}

static int fp_root(void *arg) {
    struct fp *r = arg;
    co_tid a;
    co_spawn(&a, fp_task_a, r);
    co_tid b;
    co_spawn(&b, fp_task_b, r);
    CHECK_EQ(co_join(a, NULL, CO_NEVER), 0);
    CHECK_EQ(co_join(b, NULL, CO_NEVER), 0);
    r->root_end = fp_now();
    return 0;
}

static void assert_fp_view_equal(const char *what, int i, struct fp_view got, struct fp_view want) {
    if (got.round != want.round || got.cw != want.cw || got.mx != want.mx)
        fail_msg("%s[%d]: rounding %#x cw %#x mxcsr %#x, want %#x %#x %#x", what, i, got.round,
                 got.cw, got.mx, want.round, want.cw, want.mx);
}

static void test_fp_control_state_stays_with_its_coroutine(void **state) {
    (void)state;
    struct fp r;
    memset(&r, 0, sizeof r);
    assert_int_equal(fegetround(), FE_TONEAREST);
    struct fp_view main_before = fp_now();
    run_root(fp_root, &r);
    struct fp_view main_after = fp_now();
    fesetround(FE_TONEAREST); /* in case the test is about to fail */

    assert_int_equal(r.a_set.round, FE_DOWNWARD);
    assert_int_equal(r.b_start.round, FE_TONEAREST);
    assert_int_equal(r.b_set.round, FE_UPWARD);
#ifdef __x86_64__
    /* The probes see what fesetround wrote: rounding control bits of both units. */
    assert_int_equal(r.a_set.cw & 0x0c00, 0x0400);
    assert_int_equal(r.a_set.mx & 0x6000, 0x2000);
    assert_int_equal(r.b_start.cw & 0x0c00, 0);
    assert_int_equal(r.b_start.mx & 0x6000, 0);
    assert_int_equal(r.b_set.cw & 0x0c00, 0x0800);
    assert_int_equal(r.b_set.mx & 0x6000, 0x4000);
#endif
    for (int i = 0; i < FP_ROUNDS; i++) {
        assert_fp_view_equal("task A after yields", i, r.a[i], r.a_set);
        assert_fp_view_equal("task B after yields", i, r.b[i], r.b_set);
    }
    assert_true(r.a_third < r.b_third);
    assert_fp_view_equal("root task at the end", 0, r.root_end, main_before);
    assert_fp_view_equal("main after co_run", 0, main_after, main_before);
}

/* ---- recursion close to the stack size ------------------------------------ */

#define DEEP_STACK (64 * KIB)
#define DEEP_LIMIT (DEEP_STACK - 8 * KIB)
#define DEEP_FRAME_BYTES 256
#define DEEP_MAX_DEPTH 100000 /* only a safety net; the distance ends it */

struct deep {
    const char *top; /* frame address of the first recursive call */
    size_t max_distance;
    unsigned max_depth;
    uint64_t checksum;
};

static uint8_t deep_byte(unsigned depth, unsigned i) { return (uint8_t)(depth * 31u + i * 7u); }

/* Distances are taken from frame addresses, not a call count: sanitizer
 * builds have bigger frames, and ASan may keep arrays on a separate fake
 * stack, whereas the frame address is always on the coroutine's own. */
static uint64_t recurse_near_limit(struct deep *d, unsigned depth) {
    volatile uint8_t buf[DEEP_FRAME_BYTES];
    for (unsigned i = 0; i < DEEP_FRAME_BYTES; i++)
        buf[i] = deep_byte(depth, i);
    const char *here = __builtin_frame_address(0);
    if (depth == 0)
        d->top = here;
    size_t distance = (size_t)(d->top - here);
    uint64_t sum = 0;
    if (distance < DEEP_LIMIT && depth < DEEP_MAX_DEPTH) {
        sum = recurse_near_limit(d, depth + 1);
    } else {
        d->max_distance = distance;
        d->max_depth = depth;
    }
    /* Read back after the deeper calls returned: they must not have
     * clobbered this frame. */
    for (unsigned i = 0; i < DEEP_FRAME_BYTES; i++)
        sum += buf[i];
    return sum;
}

static int deep_task(void *arg) {
    struct deep *d = arg;
    d->checksum = recurse_near_limit(d, 0);
    return 0;
}

static int deep_root(void *arg) {
    co_tid t;
    co_spawn(&t, deep_task, arg);
    CHECK_EQ(co_join(t, NULL, CO_NEVER), 0);
    return 0;
}

static void test_recursion_close_to_the_stack_size_works(void **state) {
    (void)state;
    struct deep d = {0};
    co_options opts = {.stack_size = DEEP_STACK};
    run_root_with(deep_root, &d, &opts);
    assert_true(d.max_depth < DEEP_MAX_DEPTH);
    assert_true(d.max_distance >= DEEP_LIMIT);
    uint64_t want = 0;
    for (unsigned depth = 0; depth <= d.max_depth; depth++)
        for (unsigned i = 0; i < DEEP_FRAME_BYTES; i++)
            want += deep_byte(depth, i);
    assert_int_equal(d.checksum, want);
    print_message("      %u frames, %zu bytes deep\n", d.max_depth + 1, d.max_distance);
}

/* ---- stack overflow report ------------------------------------------------ */

/* The overflowing run happens in a fresh process (this program re-executed
 * with OVERFLOW_CHILD_ARG): a forked copy would inherit cmocka's SIGSEGV
 * handler, installed around each test, and the runtime's record that its own
 * handler was already installed by earlier runs. */
#define OVERFLOW_CHILD_ARG "--overflow-child"
#define FPRINTF_CHILD_ARG "--fprintf-overflow-child"
#define OVERFLOW_TIMEOUT_MS 10000

static volatile int keep_recursing = 1; /* never cleared; keeps the recursion unbounded */

static int recurse_forever(int depth) {
    volatile char buf[256];
    buf[depth & 255] = (char)depth;
    int r = keep_recursing ? recurse_forever(depth + 1) : 0;
    return r + buf[(depth * 7) & 255]; /* used after the call: no tail call */
}

static int overflow_task(void *arg) {
    (void)arg;
    return recurse_forever(0);
}

static int overflow_root(void *arg) {
    (void)arg;
    co_spawn_attr attr = {.name = "deep"};
    co_tid t;
    co_spawn_with(&t, overflow_task, NULL, &attr);
    dprintf(STDERR_FILENO, "deep tid=%llu\n", (unsigned long long)t);
    co_join(t, NULL, CO_NEVER);
    return 0;
}

/* Runs in the child; only returns if the overflow was not caught. */
static int overflow_child(void) {
    co_options opts = {.stack_size = 64 * KIB};
    int rc = co_run(overflow_root, NULL, &opts);
    dprintf(STDERR_FILENO, "co_run returned %d\n", rc);
    return 3;
}

/* ---- a big libc frame near the end of a small stack ---------------------- */

/* About 12 KiB of the 16 KiB stack in use, then fprintf to unbuffered
 * stderr, whose frame holds a BUFSIZ (8 KiB) buffer: the call runs past the
 * stack's end. The guard is larger than any such frame, so the process dies
 * with the report instead of writing into the neighbouring stack. */
#define FPRINTF_USE (12 * KIB)

static int fprintf_task(void *arg) {
    (void)arg;
    volatile char used[FPRINTF_USE];
    for (size_t i = 0; i < sizeof used; i += 64)
        used[i] = (char)i;
    fprintf(stderr, "%s %d %g\n", "fprintf reached", used[64], 1.5);
    return used[128]; /* used after the call: the array stays live */
}

static int fprintf_root(void *arg) {
    (void)arg;
    co_spawn_attr attr = {.name = "printer"};
    co_tid t, neighbour;
    /* Spawned first, so it sits in the slot below the printer's. */
    co_spawn_with(&neighbour, trivial_task, (void *)(intptr_t)7, NULL);
    co_spawn_with(&t, fprintf_task, NULL, &attr);
    dprintf(STDERR_FILENO, "printer tid=%llu\n", (unsigned long long)t);
    co_join(t, NULL, CO_NEVER);
    return 0;
}

static int fprintf_child(void) {
    co_options opts = {.stack_size = 16 * KIB};
    int rc = co_run(fprintf_root, NULL, &opts);
    dprintf(STDERR_FILENO, "co_run returned %d\n", rc);
    return 3;
}

/* Re-executes this program with child_arg (and guard=mprotect, when set, in
 * the environment) and checks that it dies of SIGABRT after reporting that
 * the task it names in "<name> tid=<n>" overflowed its kib KiB stack. */
static void expect_overflow_report(const char *child_arg, const char *name, unsigned kib,
                                   const char *guard) {
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* an abort need not dump core */
        dup2(p[1], STDERR_FILENO);        /* dup2 clears O_CLOEXEC on the copy */
        if (guard)
            setenv("COECHO_STACK_GUARD", guard, 1);
        execl("/proc/self/exe", "test_stress", child_arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);

    /* Read everything the child says until it closes stderr, within a bound. */
    static char out[64 * KIB];
    size_t len = 0;
    bool timed_out = false;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= OVERFLOW_TIMEOUT_MS) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(OVERFLOW_TIMEOUT_MS - elapsed));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF: the child is gone */
        size_t keep = (size_t)n < sizeof out - 1 - len ? (size_t)n : sizeof out - 1 - len;
        memcpy(out + len, tmp, keep);
        len += keep;
    }
    out[len] = '\0';
    close(p[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int wstatus = 0;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    if (timed_out)
        fail_msg("the overflowing child hung for %d ms; it said:\n%s", OVERFLOW_TIMEOUT_MS, out);

    unsigned long long tid = 0;
    char tid_prefix[64];
    snprintf(tid_prefix, sizeof tid_prefix, "%s tid=", name);
    const char *tid_line = strstr(out, tid_prefix);
    if (!tid_line || sscanf(tid_line + strlen(tid_prefix), "%llu", &tid) != 1 || tid == 0)
        fail_msg("the child did not report the task id; it said:\n%s", out);
    char want[128];
    snprintf(want, sizeof want, "coroutine %llu (%s) overflowed its %u KiB stack\n", tid, name,
             kib);
    const char *line = strstr(out, want);
    if (!line || (line != out && line[-1] != '\n'))
        fail_msg("no line \"%.*s\" in the child's stderr:\n%s", (int)strlen(want) - 1, want, out);
    if (!WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGABRT)
        fail_msg("child status %#x: want killed by SIGABRT; it said:\n%s", wstatus, out);
}

static void test_stack_overflow_reports_task_and_aborts(void **state) {
    (void)state;
    expect_overflow_report(OVERFLOW_CHILD_ARG, "deep", 64, NULL);
}

static void test_stack_overflow_with_mprotect_guards(void **state) {
    (void)state;
    expect_overflow_report(OVERFLOW_CHILD_ARG, "deep", 64, "mprotect");
}

static void test_fprintf_past_a_small_stack_is_reported(void **state) {
    (void)state;
    expect_overflow_report(FPRINTF_CHILD_ARG, "printer", 16, NULL);
}

static void test_fprintf_past_a_small_stack_with_mprotect_guards(void **state) {
    (void)state;
    expect_overflow_report(FPRINTF_CHILD_ARG, "printer", 16, "mprotect");
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], OVERFLOW_CHILD_ARG) == 0)
        return overflow_child();
    if (argc == 2 && strcmp(argv[1], FPRINTF_CHILD_ARG) == 0)
        return fprintf_child();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_thousand_tasks_alive_at_once),
        cmocka_unit_test(test_million_spawn_reap_cycles_keep_stacks_bounded),
        cmocka_unit_test(test_fp_control_state_stays_with_its_coroutine),
        cmocka_unit_test(test_recursion_close_to_the_stack_size_works),
        cmocka_unit_test(test_stack_overflow_reports_task_and_aborts),
        cmocka_unit_test(test_stack_overflow_with_mprotect_guards),
        cmocka_unit_test(test_fprintf_past_a_small_stack_is_reported),
        cmocka_unit_test(test_fprintf_past_a_small_stack_with_mprotect_guards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
