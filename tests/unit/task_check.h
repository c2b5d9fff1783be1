/* Checks made inside tasks, shared by the unit tests.
 *
 * cmocka's asserts (assert_*, fail_msg) report a failure by longjmp-ing back to
 * the test runner. Called inside a task, that jump would leave the coroutine's
 * stack for the main one behind the scheduler's back, so tasks must never call
 * them. Tasks only record what they see, with CHECK and CHECK_EQ below (or in
 * fields of a result struct); run_root() then fails the test, outside co_run,
 * with the first failed check's file:line, expression, and the values it got
 * and wanted. */
#ifndef TASK_CHECK_H
#define TASK_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rt/rt.h"

/* Failed checks since the last run_root(), and the first one's message. */
static struct {
    int count;
    char first[512];
} task_checks;

static inline void check_failed(const char *file, int line, const char *expr, long long got,
                                long long want) {
    if (task_checks.count++ == 0)
        snprintf(task_checks.first, sizeof task_checks.first, "%s:%d: %s: got %lld, want %lld",
                 file, line, expr, got, want);
}

/* Records a failure (with both values) when got != want; never leaves the task. */
#define CHECK_EQ(got, want)                                                                        \
    do {                                                                                           \
        long long got_ = (long long)(got), want_ = (long long)(want);                              \
        if (got_ != want_)                                                                         \
            check_failed(__FILE__, __LINE__, #got " == " #want, got_, want_);                      \
    } while (0)

/* Records a failure (got 0, want 1) when cond is false; never leaves the task. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            check_failed(__FILE__, __LINE__, #cond, 0, 1);                                         \
    } while (0)

/* Runs root under co_run with opts (NULL for the defaults) and fails the test
 * if co_run did not return 0 or if any check inside a task failed. */
static inline void run_root_with(co_fn root, void *arg, const co_options *opts) {
    memset(&task_checks, 0, sizeof task_checks);
    int rc = co_run(root, arg, opts);
    if (task_checks.count)
        fail_msg("%d failed check(s) inside tasks; first: %s", task_checks.count,
                 task_checks.first);
    assert_int_equal(rc, 0);
}

static inline void run_root(co_fn root, void *arg) { run_root_with(root, arg, NULL); }

/* ---- timing ---------------------------------------------------------------- */

/* Generous bound for "returns at once": far below any deadline used with it. */
#define AT_ONCE_MS 500
#define LONG_DEADLINE_MS 2000

/* A deadline already in the past (co_now() is never negative, and -1 is CO_NEVER). */
static inline int64_t past_deadline(void) {
    int64_t now = co_now();
    return now > 1000 ? now - 1000 : 0;
}

#endif /* TASK_CHECK_H */
