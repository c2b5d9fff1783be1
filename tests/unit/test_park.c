/* Unit tests of parking: a task blocked longer than park_after_ms gives its
 * stack's pages back and gets its frames back, unchanged, before it runs
 * again, however it is woken (its deadline, a kill, a channel peer that
 * reads or writes the element on its stack).
 *
 * Tasks never call cmocka's asserts (see task_check.h). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#else
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

#define PARK_AFTER_MS 40
#define FRAME_BYTES 3000 /* spans a page boundary wherever it lands */

static const co_options parking = {.park_after_ms = PARK_AFTER_MS};

#ifdef CORO_ASAN
/* A local whose address is taken would live on ASan's fake stack (on the
 * heap, never parked) and the residency checks would see it resident. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_stack_use_after_return=0"; }
#endif
static const co_options no_parking = {.park_after_ms = -1};

static size_t parked_now(void) {
    co_stats st;
    co_get_stats(&st);
    return st.parked;
}

/* Waits, in short sleeps, until want tasks are parked; false after 5 s. */
static bool wait_parked(size_t want) {
    for (int64_t end = co_now() + 5000; co_now() < end;) {
        if (parked_now() == want)
            return true;
        co_sleep(co_now() + 5);
    }
    return false;
}

/* Whether the page holding addr is resident (mincore), or -1. */
static int resident(const void *addr) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned char vec = 0;
    void *lo = (void *)((uintptr_t)addr & ~(uintptr_t)(page - 1));
    if (mincore(lo, (size_t)page, &vec) != 0)
        return -1;
    return vec & 1;
}

static void fill(volatile unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static bool intact(const volatile unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            return false;
    return true;
}

/* The address of a frame of the task under test: read by the test only
 * through mincore, never dereferenced (rt.h's rule). */
static const volatile void *frame_address;

/* ---- woken by its deadline and by a kill --------------------------------- */

/* Fills a frame, sleeps until arg ms from now (or forever when 0), and
 * returns 0 with the frame intact, 1 without, and the sleep's result
 * shifted left by 8 otherwise. */
static int sleep_with_frame(void *arg) {
    int64_t ms = (int64_t)(intptr_t)arg;
    volatile unsigned char frame[FRAME_BYTES];
    fill(frame, sizeof frame, 13);
    frame_address = frame;
    int r = co_sleep(ms ? co_now() + ms : CO_NEVER);
    if (!intact(frame, sizeof frame, 13))
        return 1;
    return r == 0 ? 0 : (-r) << 8;
}

struct wake_case {
    bool kill;
    bool parks;
};

static int park_then_wake(void *arg) {
    const struct wake_case *wc = arg;
    co_tid tid;
    CHECK_EQ(co_spawn(&tid, sleep_with_frame, (void *)(intptr_t)(wc->kill ? 0 : 600)), 0);
    if (wc->parks) {
        CHECK(wait_parked(1));
        CHECK_EQ(resident((const void *)frame_address), 0);
    } else {
        co_sleep(co_now() + 6 * PARK_AFTER_MS);
        CHECK_EQ(parked_now(), 0);
        CHECK_EQ(resident((const void *)frame_address), 1);
    }
    if (wc->kill)
        CHECK_EQ(co_kill(tid), 0);
    int status = -1;
    CHECK_EQ(co_join(tid, &status, CO_NEVER), 0);
    CHECK_EQ(status, wc->kill ? ECANCELED << 8 : 0);
    CHECK_EQ(parked_now(), 0);
    return 0;
}

static void test_a_parked_sleeper_wakes_with_its_frames(void **state) {
    (void)state;
    struct wake_case wc = {.kill = false, .parks = true};
    run_root_with(park_then_wake, &wc, &parking);
}

static void test_a_killed_parked_task_wakes_with_its_frames(void **state) {
    (void)state;
    struct wake_case wc = {.kill = true, .parks = true};
    run_root_with(park_then_wake, &wc, &parking);
}

static void test_park_after_negative_never_parks(void **state) {
    (void)state;
    struct wake_case wc = {.kill = false, .parks = false};
    run_root_with(park_then_wake, &wc, &no_parking);
}

/* ---- channels: the peer copies from or to the parked task's stack -------- */

static int send_from_frame(void *arg) {
    co_chan *ch = arg;
    volatile unsigned char frame[FRAME_BYTES];
    fill(frame, sizeof frame, 29);
    frame_address = frame;
    long value = 0x5eed5eed; /* on this task's stack, read by the receiver */
    int r = co_chan_send(ch, &value, CO_NEVER);
    return r != 0 ? 2 : intact(frame, sizeof frame, 29) ? 0 : 1;
}

static int recv_into_frame(void *arg) {
    co_chan *ch = arg;
    volatile unsigned char frame[FRAME_BYTES];
    fill(frame, sizeof frame, 31);
    frame_address = frame;
    long value = 0; /* on this task's stack, written by the sender */
    int r = co_chan_recv(ch, &value, CO_NEVER);
    if (r != 0)
        return 2;
    if (!intact(frame, sizeof frame, 31))
        return 1;
    return value == 0x7e110 ? 0 : 3;
}

static int parked_channel_peers(void *arg) {
    (void)arg;
    co_chan *unbuffered = NULL, *buffered = NULL;
    CHECK_EQ(co_chan_new(&unbuffered, sizeof(long), 0), 0);
    CHECK_EQ(co_chan_new(&buffered, sizeof(long), 1), 0);
    co_tid tid;
    int status = -1;
    long got = 0;

    /* A parked sender, its element read by a receive. */
    CHECK_EQ(co_spawn(&tid, send_from_frame, unbuffered), 0);
    CHECK(wait_parked(1));
    CHECK_EQ(co_chan_recv(unbuffered, &got, CO_NEVER), 0);
    CHECK_EQ(got, 0x5eed5eed);
    CHECK_EQ(co_join(tid, &status, CO_NEVER), 0);
    CHECK_EQ(status, 0);

    /* A parked sender on a full buffered channel: a receive moves its
     * element into the buffer. */
    long first = 1;
    CHECK_EQ(co_chan_send(buffered, &first, CO_NEVER), 0);
    CHECK_EQ(co_spawn(&tid, send_from_frame, buffered), 0);
    CHECK(wait_parked(1));
    CHECK_EQ(co_chan_recv(buffered, &got, CO_NEVER), 0);
    CHECK_EQ(got, 1);
    CHECK_EQ(co_chan_recv(buffered, &got, CO_NEVER), 0);
    CHECK_EQ(got, 0x5eed5eed);
    CHECK_EQ(co_join(tid, &status, CO_NEVER), 0);
    CHECK_EQ(status, 0);

    /* A parked receiver, its element written by a send. */
    CHECK_EQ(co_spawn(&tid, recv_into_frame, unbuffered), 0);
    CHECK(wait_parked(1));
    long value = 0x7e110;
    CHECK_EQ(co_chan_send(unbuffered, &value, CO_NEVER), 0);
    CHECK_EQ(co_join(tid, &status, CO_NEVER), 0);
    CHECK_EQ(status, 0);

    co_chan_free(unbuffered);
    co_chan_free(buffered);
    return 0;
}

static void test_parked_channel_peers_keep_their_elements(void **state) {
    (void)state;
    run_root_with(parked_channel_peers, NULL, &parking);
}

/* ---- many at once --------------------------------------------------------- */

#define MANY 5000

static int sleep_and_check(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    volatile unsigned char frame[256];
    fill(frame, sizeof frame, seed);
    int r = co_sleep(CO_NEVER);
    return r == -ECANCELED && intact(frame, sizeof frame, seed) ? 0 : 1;
}

/* More tasks than a round parks or a system call gives back: every one is
 * parked, and every one wakes with its own frames. */
static int many_parked(void *arg) {
    (void)arg;
    static co_tid tids[MANY];
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(co_spawn(&tids[i], sleep_and_check, (void *)(uintptr_t)i), 0);
    CHECK(wait_parked(MANY));
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(co_kill(tids[i]), 0);
    int bad = 0;
    for (int i = 0; i < MANY; i++) {
        int status = -1;
        CHECK_EQ(co_join(tids[i], &status, CO_NEVER), 0);
        bad += status != 0;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(parked_now(), 0);
    return 0;
}

static void test_many_parked_tasks_wake_with_their_own_frames(void **state) {
    (void)state;
    run_root_with(many_parked, NULL, &parking);
}

int main(void) {
#ifdef CORO_UCONTEXT
    /* swapcontext keeps the stack pointer in the context: no parking. */
    printf("1..0 # SKIP the ucontext build does not park tasks\n");
    return 77;
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_parked_sleeper_wakes_with_its_frames),
        cmocka_unit_test(test_a_killed_parked_task_wakes_with_its_frames),
        cmocka_unit_test(test_park_after_negative_never_parks),
        cmocka_unit_test(test_parked_channel_peers_keep_their_elements),
        cmocka_unit_test(test_many_parked_tasks_wake_with_their_own_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
