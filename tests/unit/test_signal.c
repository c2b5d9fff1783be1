/* Unit tests of co_signal_watch / co_signal_wait / co_signal_unwatch. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

static int raise_later(void *arg) {
    int signo = (int)(intptr_t)arg;
    co_sleep(co_now() + 10);
    CHECK_EQ(raise(signo), 0);
    return 0;
}

/* A waiting task wakes with the signal another task raised. */
static int wait_wakes_root(void *arg) {
    (void)arg;
    CHECK_EQ(co_signal_watch(SIGUSR1), 0);
    co_spawn(NULL, raise_later, (void *)(intptr_t)SIGUSR1);
    CHECK_EQ(co_signal_wait(co_now() + 5000), SIGUSR1);
    CHECK_EQ(co_wait_child(NULL, NULL, CO_NEVER), 0);
    CHECK_EQ(co_signal_unwatch(SIGUSR1), 0);
    return 0;
}

static void test_wait_wakes_on_a_raised_signal(void **state) {
    (void)state;
    run_root(wait_wakes_root, NULL);
}

/* Pending signals are taken lowest first, without waiting; repeats merge. */
static int pending_root(void *arg) {
    (void)arg;
    CHECK_EQ(co_signal_watch(SIGUSR2), 0);
    CHECK_EQ(co_signal_watch(SIGHUP), 0);
    raise(SIGUSR2);
    raise(SIGUSR2);
    raise(SIGHUP);
    co_yield(); /* the loop turns and sees them */
    co_sleep(co_now() + 5);
    CHECK_EQ(co_signal_wait(0), SIGHUP);
    CHECK_EQ(co_signal_wait(0), SIGUSR2);
    CHECK_EQ(co_signal_wait(0), -ETIMEDOUT);
    co_signal_unwatch(SIGUSR2);
    co_signal_unwatch(SIGHUP);
    return 0;
}

static void test_pending_signals_lowest_first(void **state) {
    (void)state;
    run_root(pending_root, NULL);
}

static int timeout_root(void *arg) {
    (void)arg;
    CHECK_EQ(co_signal_watch(SIGUSR1), 0);
    int64_t deadline = co_now() + 20;
    CHECK_EQ(co_signal_wait(deadline), -ETIMEDOUT);
    CHECK(co_now() >= deadline);
    CHECK_EQ(co_signal_watch(SIGKILL), -EINVAL);
    CHECK_EQ(co_signal_watch(0), -EINVAL);
    CHECK_EQ(co_signal_watch(64), -EINVAL); /* beyond the 63-bit pending mask */
    CHECK_EQ(co_signal_watch(65), -EINVAL);
    return 0;
}

static void test_wait_times_out_and_bad_signals(void **state) {
    (void)state;
    run_root(timeout_root, NULL);
}

static int blocked_waiter(void *arg) {
    int *seen = arg;
    *seen = co_signal_wait(CO_NEVER);
    return 0;
}

/* A killed waiter returns -ECANCELED; watching alone does not keep co_run
 * going once every task is done. */
static int killed_root(void *arg) {
    int *seen = arg;
    CHECK_EQ(co_signal_watch(SIGUSR1), 0);
    co_tid t;
    co_spawn(&t, blocked_waiter, seen);
    co_yield();
    CHECK_EQ(co_kill(t), 0);
    CHECK_EQ(co_join(t, NULL, co_now() + 1000), 0);
    return 0;
}

static void test_killed_waiter_is_canceled(void **state) {
    (void)state;
    int seen = 0;
    run_root(killed_root, &seen);
    assert_int_equal(seen, -ECANCELED);
}

/* After co_run, the signal's default disposition is back. */
static void test_disposition_restored_after_run(void **state) {
    (void)state;
    run_root(wait_wakes_root, NULL);
    struct sigaction now;
    assert_int_equal(sigaction(SIGUSR1, NULL, &now), 0);
    assert_true(now.sa_handler == SIG_DFL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_wakes_on_a_raised_signal),
        cmocka_unit_test(test_pending_signals_lowest_first),
        cmocka_unit_test(test_wait_times_out_and_bad_signals),
        cmocka_unit_test(test_killed_waiter_is_canceled),
        cmocka_unit_test(test_disposition_restored_after_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
