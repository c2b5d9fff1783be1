/* Unit tests of the scheduler: spawn, self, yield, sleep, task info, join,
 * wait_child, kill, orphans and reapers, co_run itself.
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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

/* ---- small task bodies reused by several tests --------------------------- */

static int return_arg(void *arg) { return (int)(intptr_t)arg; }

static int sleep_forever(void *arg) {
    int *result = arg;
    int r = co_sleep(CO_NEVER);
    if (result)
        *result = r;
    return 11;
}

/* Yields (intptr_t)arg times, then exits with status 100 + that count. */
static int yield_n_times(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++)
        co_yield();
    return 100 + n;
}

/* Receives one int from the channel and returns it (or the error). */
static int recv_one(void *arg) {
    co_chan *ch = arg;
    int v = 0;
    int r = co_chan_recv(ch, &v, CO_NEVER);
    return r < 0 ? r : v;
}

/* ---- spawn, self, yield --------------------------------------------------- */

struct spawn_self {
    co_tid root;
    co_tid child_spawned; /* what co_spawn stored */
    co_tid child_self;    /* what the child's co_self returned */
    int child_ran_before_yield;
    int child_ran_after_yield;
    int yield_result;
    int join_result;
    int child_status;
};

static int spawn_self_child(void *arg) {
    struct spawn_self *r = arg;
    r->child_self = co_self();
    return 7;
}

static int spawn_self_root(void *arg) {
    struct spawn_self *r = arg;
    r->root = co_self();
    co_spawn(&r->child_spawned, spawn_self_child, r);
    /* The child is only queued: the caller keeps running until it yields. */
    r->child_ran_before_yield = r->child_self != 0;
    r->yield_result = co_yield();
    r->child_ran_after_yield = r->child_self != 0;
    r->join_result = co_join(r->child_spawned, &r->child_status, CO_NEVER);
    return 0;
}

static void test_spawn_self_yield(void **state) {
    (void)state;
    struct spawn_self r = {0};
    run_root(spawn_self_root, &r);
    assert_true(r.root != 0);
    assert_true(r.child_spawned != 0);
    assert_true(r.child_spawned != r.root);
    assert_true(r.child_self == r.child_spawned);
    assert_false(r.child_ran_before_yield);
    assert_true(r.child_ran_after_yield);
    assert_int_equal(r.yield_result, 0);
    assert_int_equal(r.join_result, 0);
    assert_int_equal(r.child_status, 7);
}

/* ---- FIFO ready queue ----------------------------------------------------- */

struct fifo_log {
    char text[64];
    size_t len;
};

struct fifo_writer {
    struct fifo_log *log;
    char letter;
};

static void fifo_append(struct fifo_log *log, char c) {
    if (log->len + 1 < sizeof log->text)
        log->text[log->len++] = c;
}

static int fifo_writer_task(void *arg) {
    struct fifo_writer *w = arg;
    for (int i = 0; i < 3; i++) {
        fifo_append(w->log, w->letter);
        CHECK_EQ(co_yield(), 0);
    }
    return 0;
}

static int fifo_root(void *arg) {
    struct fifo_log *log = arg;
    static struct fifo_writer writers[3];
    for (int i = 0; i < 3; i++) {
        writers[i] = (struct fifo_writer){log, (char)('A' + i)};
        CHECK(co_spawn(NULL, fifo_writer_task, &writers[i]) == 0);
    }
    /* The root takes part: each yield lets A, B and C run once, in spawn order. */
    for (int i = 0; i < 3; i++) {
        fifo_append(log, 'R');
        CHECK_EQ(co_yield(), 0);
    }
    for (int i = 0; i < 3; i++)
        CHECK_EQ(co_wait_child(NULL, NULL, CO_NEVER), 0);
    return 0;
}

static void test_ready_queue_is_fifo(void **state) {
    (void)state;
    struct fifo_log log = {0};
    run_root(fifo_root, &log);
    assert_string_equal(log.text, "RABCRABCRABC");
}

/* ---- batches ------------------------------------------------------------- */

/* Every task ready when a batch begins runs in it, even beyond 1024 (as
 * when one poll wakes thousands of connections); a task that yields waits
 * for the next batch (after a poll). The tasks all wait for one pipe, so
 * one poll wakes them together. */
#define MANY_READY 3000

struct batch_log {
    int pipe[2];
    size_t waiting;
    uint64_t first_run[MANY_READY];
    uint64_t after_yield[MANY_READY];
};

static struct batch_log *batch_log;

static uint64_t current_batch(void) {
    co_stats st;
    co_get_stats(&st);
    return st.batches;
}

static int record_batch(void *arg) {
    size_t i = (size_t)(uintptr_t)arg;
    batch_log->waiting++;
    if (co_wait_fd(batch_log->pipe[0], CO_READ, CO_NEVER) < 0)
        return 1;
    batch_log->first_run[i] = current_batch();
    co_yield();
    batch_log->after_yield[i] = current_batch();
    return 0;
}

static int many_ready_root(void *arg) {
    (void)arg;
    for (size_t i = 0; i < MANY_READY; i++)
        assert_true(co_spawn(NULL, record_batch, (void *)(uintptr_t)i) == 0);
    while (batch_log->waiting < MANY_READY) /* each blocks as it counts itself */
        co_yield();
    assert_int_equal(write(batch_log->pipe[1], "x", 1), 1);
    int status;
    while (co_wait_child(NULL, &status, CO_NEVER) == 0)
        assert_int_equal(status, 0);
    return 0;
}

static void test_batch_runs_every_task_ready_at_its_start(void **state) {
    (void)state;
    static struct batch_log log;
    batch_log = &log;
    assert_int_equal(pipe2(log.pipe, O_CLOEXEC | O_NONBLOCK), 0);
    run_root(many_ready_root, NULL);
    close(log.pipe[0]);
    close(log.pipe[1]);
    for (size_t i = 1; i < MANY_READY; i++) {
        assert_int_equal(log.first_run[i], log.first_run[0]);
        assert_int_equal(log.after_yield[i], log.first_run[0] + 1);
    }
}

/* ---- task ids ------------------------------------------------------------- */

#define ID_ROUNDS 200

struct ids {
    co_tid root;
    co_tid ids[ID_ROUNDS];
    int spawn_failures;
    int reap_failures;
};

static int ids_root(void *arg) {
    struct ids *r = arg;
    r->root = co_self();
    for (int i = 0; i < ID_ROUNDS; i++) {
        /* Reap each task before spawning the next, so an id could be reused. */
        co_spawn(&r->ids[i], return_arg, NULL);
        if (r->ids[i] == 0)
            r->spawn_failures++;
        if (co_join(r->ids[i], NULL, CO_NEVER) != 0)
            r->reap_failures++;
    }
    return 0;
}

static void test_task_ids_increase_and_are_never_reused(void **state) {
    (void)state;
    struct ids r = {0};
    run_root(ids_root, &r);
    assert_int_equal(r.spawn_failures, 0);
    assert_int_equal(r.reap_failures, 0);
    assert_true(r.root != 0);
    co_tid prev = r.root;
    for (int i = 0; i < ID_ROUNDS; i++) {
        if (r.ids[i] <= prev)
            fail_msg("id %d is %llu, not above the previous %llu", i, (unsigned long long)r.ids[i],
                     (unsigned long long)prev);
        prev = r.ids[i];
    }
}

/* ---- sleep ---------------------------------------------------------------- */

struct sleep_result {
    int64_t deadline;
    int64_t woke;
    int result;
    int64_t past_elapsed;
    int past_result;
};

static int sleep_root(void *arg) {
    struct sleep_result *r = arg;
    r->deadline = co_now() + 20;
    r->result = co_sleep(r->deadline);
    r->woke = co_now();

    int64_t start = co_now();
    r->past_result = co_sleep(past_deadline());
    r->past_elapsed = co_now() - start;
    return 0;
}

static void test_sleep_returns_zero_at_the_deadline(void **state) {
    (void)state;
    struct sleep_result r = {0};
    run_root(sleep_root, &r);
    assert_int_equal(r.result, 0);
    assert_true(r.woke >= r.deadline);
    assert_true(r.woke - r.deadline < LONG_DEADLINE_MS);
}

static void test_sleep_with_past_deadline_returns_at_once(void **state) {
    (void)state;
    struct sleep_result r = {0};
    run_root(sleep_root, &r);
    assert_int_equal(r.past_result, 0);
    assert_true(r.past_elapsed < AT_ONCE_MS);
}

/* ---- killed task: yield and sleep ---------------------------------------- */

struct killed_calls {
    int first_sleep; /* the call that was blocked when the kill came */
    int yield_after;
    int sleep_after;
    int past_sleep_after;
    int64_t sleep_after_elapsed;
    int kill_result;
    int join_result;
    int status;
};

static int killed_calls_task(void *arg) {
    struct killed_calls *r = arg;
    r->first_sleep = co_sleep(CO_NEVER);
    r->yield_after = co_yield();
    int64_t start = co_now();
    r->sleep_after = co_sleep(co_now() + LONG_DEADLINE_MS);
    r->sleep_after_elapsed = co_now() - start;
    r->past_sleep_after = co_sleep(past_deadline());
    return 5;
}

static int killed_calls_root(void *arg) {
    struct killed_calls *r = arg;
    co_tid t;
    co_spawn(&t, killed_calls_task, r);
    co_yield(); /* t blocks in co_sleep(CO_NEVER) */
    r->kill_result = co_kill(t);
    r->join_result = co_join(t, &r->status, CO_NEVER);
    return 0;
}

static void test_yield_and_sleep_after_kill_return_ecanceled(void **state) {
    (void)state;
    struct killed_calls r = {0};
    run_root(killed_calls_root, &r);
    assert_int_equal(r.kill_result, 0);
    assert_int_equal(r.first_sleep, -ECANCELED);
    assert_int_equal(r.yield_after, -ECANCELED);
    assert_int_equal(r.sleep_after, -ECANCELED);
    assert_true(r.sleep_after_elapsed < AT_ONCE_MS);
    assert_int_equal(r.past_sleep_after, -ECANCELED);
    assert_int_equal(r.join_result, 0);
    assert_int_equal(r.status, 5);
}

/* Killed before it ever ran: it still runs, and its first yield says so. */
struct killed_early {
    int ran;
    int yield_result;
    int status;
};

static int killed_early_task(void *arg) {
    struct killed_early *r = arg;
    r->ran = 1;
    r->yield_result = co_yield();
    return 3;
}

static int killed_early_root(void *arg) {
    struct killed_early *r = arg;
    co_tid t;
    co_spawn(&t, killed_early_task, r);
    CHECK_EQ(co_kill(t), 0);
    CHECK_EQ(co_join(t, &r->status, CO_NEVER), 0);
    return 0;
}

static void test_task_killed_before_it_runs_sees_ecanceled(void **state) {
    (void)state;
    struct killed_early r = {0};
    run_root(killed_early_root, &r);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.yield_result, -ECANCELED);
    assert_int_equal(r.status, 3);
}

/* ---- task info ------------------------------------------------------------ */

struct info_result {
    co_tid root;
    co_task_info root_info;
    int root_info_result;

    co_task_info ready;         /* just spawned */
    co_task_info asleep;        /* blocked in co_sleep */
    co_task_info sleeping;      /* later: blocked in co_chan_recv after its sleep */
    co_task_info zombie;        /* exited with 42, not reaped */
    co_task_info killed;        /* killed, not yet run since */
    co_task_info joining;       /* blocked in co_join */
    co_task_info waiting_child; /* blocked in co_wait_child */
    co_task_info receiving;     /* blocked in co_chan_recv */
    co_task_info sending;       /* blocked in co_chan_send */
    co_task_info default_name;
    co_task_info long_name;
    int info_results[16];
    int info_calls;

    co_tid sleeper;
    int64_t sleeper_woke_deadline; /* the sleeper's last run was at or after this */
    int64_t sleeper_checked_at;

    int unknown_zero;
    int unknown_big;
    int reaped;
};

/* Sleeps until *deadline, then blocks on the channel until released. */
struct sleeper_arg {
    int64_t deadline;
    co_chan *ch;
};

static int sleeper_then_recv(void *arg) {
    struct sleeper_arg *a = arg;
    CHECK_EQ(co_sleep(a->deadline), 0);
    int v;
    CHECK_EQ(co_chan_recv(a->ch, &v, CO_NEVER), 0);
    return 0;
}

static int join_forever(void *arg) {
    co_tid *target = arg;
    return co_join(*target, NULL, CO_NEVER);
}

static int wait_child_until_released(void *arg) {
    co_chan *ch = arg;
    co_tid c;
    co_spawn(&c, recv_one, ch); /* blocks until the root sends */
    CHECK(c != 0);
    co_tid got = 0;
    int r = co_wait_child(&got, NULL, CO_NEVER);
    CHECK_EQ(got, c);
    return r;
}

static int send_one(void *arg) {
    co_chan *ch = arg;
    int v = 1;
    return co_chan_send(ch, &v, CO_NEVER);
}

static int info_root(void *arg) {
    struct info_result *r = arg;
    int n = 0;
    r->root = co_self();
    r->root_info_result = co_task_get_info(r->root, &r->root_info);

    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 0);
    CHECK(ch != NULL);
    co_chan *wait_ch;
    co_chan_new(&wait_ch, sizeof(int), 0);
    CHECK(wait_ch != NULL);
    co_chan *send_ch;
    co_chan_new(&send_ch, sizeof(int), 0);
    CHECK(send_ch != NULL);

    struct sleeper_arg sa = {co_now() + 20, ch};
    co_spawn_attr attr = {.name = "sleeper"};
    co_spawn_with(&r->sleeper, sleeper_then_recv, &sa, &attr);
    r->info_results[n++] = co_task_get_info(r->sleeper, &r->ready);

    /* Let it run into its sleep. */
    co_yield();
    r->info_results[n++] = co_task_get_info(r->sleeper, &r->asleep);

    co_tid z;
    co_spawn(&z, return_arg, (void *)(intptr_t)42);
    co_tid k;
    co_spawn(&k, sleep_forever, NULL);
    co_tid j;
    co_spawn(&j, join_forever, &r->sleeper);
    co_tid w;
    co_spawn(&w, wait_child_until_released, wait_ch);
    co_tid s;
    co_spawn(&s, send_one, send_ch);
    co_tid rv;
    co_spawn(&rv, recv_one, ch);
    co_yield(); /* z exits, the others block */
    r->info_results[n++] = co_task_get_info(z, &r->zombie);
    r->info_results[n++] = co_task_get_info(j, &r->joining);
    r->info_results[n++] = co_task_get_info(w, &r->waiting_child);
    r->info_results[n++] = co_task_get_info(s, &r->sending);

    /* The sleeper wakes after its deadline and blocks on the channel,
     * queued behind rv. */
    CHECK_EQ(co_sleep(sa.deadline + 10), 0);
    r->info_results[n++] = co_task_get_info(rv, &r->receiving);
    r->sleeper_woke_deadline = sa.deadline;
    r->sleeper_checked_at = co_now();
    r->info_results[n++] = co_task_get_info(r->sleeper, &r->sleeping);

    CHECK_EQ(co_kill(k), 0);
    r->info_results[n++] = co_task_get_info(k, &r->killed);

    co_tid d;
    co_spawn(&d, return_arg, NULL);
    r->info_results[n++] = co_task_get_info(d, &r->default_name);
    attr.name = "a-name-that-is-longer-than-twenty-three-bytes";
    co_tid l;
    co_spawn_with(&l, return_arg, NULL, &attr);
    r->info_results[n++] = co_task_get_info(l, &r->long_name);

    r->unknown_zero = co_task_get_info(0, &(co_task_info){0});
    r->unknown_big = co_task_get_info((co_tid)1 << 62, &(co_task_info){0});

    /* Release everything: the sleeper and rv get an element each, the
     * sender's element goes to nobody (close), w's child gets one. */
    int v = 0;
    CHECK_EQ(co_chan_send(ch, &v, CO_NEVER), 0);
    CHECK_EQ(co_chan_send(ch, &v, CO_NEVER), 0);
    CHECK_EQ(co_chan_send(wait_ch, &v, CO_NEVER), 0);
    CHECK_EQ(co_chan_close(send_ch), 0);
    int reaped = 0;
    while (co_wait_child(NULL, NULL, CO_NEVER) == 0)
        reaped++;
    CHECK_EQ(reaped, 9);
    r->reaped = co_task_get_info(z, &(co_task_info){0});
    r->info_calls = n;
    co_chan_free(ch);
    co_chan_free(wait_ch);
    co_chan_free(send_ch);
    return 0;
}

static void assert_info_ok(const struct info_result *r) {
    assert_int_equal(r->info_calls, 11);
    for (int i = 0; i < r->info_calls; i++)
        if (r->info_results[i] != 0)
            fail_msg("co_task_get_info call %d returned %d", i, r->info_results[i]);
}

static void test_task_info_states_and_fields(void **state) {
    (void)state;
    struct info_result r = {0};
    run_root(info_root, &r);
    assert_info_ok(&r);

    assert_int_equal(r.root_info_result, 0);
    assert_true(r.root_info.tid == r.root);
    assert_int_equal(r.root_info.state, CO_RUNNING);
    assert_false(r.root_info.killed);

    assert_true(r.ready.tid == r.sleeper);
    assert_int_equal(r.ready.state, CO_READY);
    assert_true(r.ready.parent == r.root);
    assert_string_equal(r.ready.name, "sleeper");
    assert_false(r.ready.killed);

    assert_int_equal(r.asleep.state, CO_BLOCKED);
    assert_int_equal(r.asleep.waiting, CO_WAIT_SLEEP);

    /* Second look at the sleeper: blocked on the channel after its sleep. */
    assert_int_equal(r.sleeping.state, CO_BLOCKED);
    assert_int_equal(r.sleeping.waiting, CO_WAIT_RECV);
    assert_true(r.sleeping.last_run >= r.sleeper_woke_deadline);
    assert_true(r.sleeping.last_run <= r.sleeper_checked_at);

    assert_int_equal(r.zombie.state, CO_ZOMBIE);
    assert_int_equal(r.zombie.status, 42);
    assert_true(r.zombie.parent == r.root);

    assert_int_equal(r.joining.state, CO_BLOCKED);
    assert_int_equal(r.joining.waiting, CO_WAIT_JOIN);
    assert_int_equal(r.waiting_child.state, CO_BLOCKED);
    assert_int_equal(r.waiting_child.waiting, CO_WAIT_CHILD);
    assert_int_equal(r.sending.state, CO_BLOCKED);
    assert_int_equal(r.sending.waiting, CO_WAIT_SEND);
    assert_int_equal(r.receiving.state, CO_BLOCKED);
    assert_int_equal(r.receiving.waiting, CO_WAIT_RECV);

    assert_true(r.killed.killed);
    assert_string_equal(r.default_name.name, "task");
    assert_string_equal(r.long_name.name, "a-name-that-is-longer-t");
    assert_int_equal(strlen(r.long_name.name), 23);

    assert_int_equal(r.unknown_zero, -ESRCH);
    assert_int_equal(r.unknown_big, -ESRCH);
    assert_int_equal(r.reaped, -ESRCH);
}

/* ---- co_join -------------------------------------------------------------- */

struct join_basic {
    int first, second, info_after;
    int status;
};

static int join_basic_root(void *arg) {
    struct join_basic *r = arg;
    co_tid t;
    co_spawn(&t, yield_n_times, (void *)(intptr_t)3);
    r->first = co_join(t, &r->status, CO_NEVER);
    /* The parent's join reaped it. */
    r->second = co_join(t, NULL, CO_NEVER);
    r->info_after = co_task_get_info(t, &(co_task_info){0});
    return 0;
}

static void test_join_returns_status_and_reaps(void **state) {
    (void)state;
    struct join_basic r = {0};
    run_root(join_basic_root, &r);
    assert_int_equal(r.first, 0);
    assert_int_equal(r.status, 103);
    assert_int_equal(r.second, -ESRCH);
    assert_int_equal(r.info_after, -ESRCH);
}

struct join_zombie {
    int state_before;
    int result;
    int status;
    int64_t elapsed;
};

static int join_zombie_root(void *arg) {
    struct join_zombie *r = arg;
    co_tid t;
    co_spawn(&t, return_arg, (void *)(intptr_t)5);
    co_yield();
    co_task_info info;
    CHECK_EQ(co_task_get_info(t, &info), 0);
    r->state_before = info.state;
    /* A past deadline: only an answer that needs no waiting can succeed. */
    int64_t start = co_now();
    r->result = co_join(t, &r->status, past_deadline());
    r->elapsed = co_now() - start;
    return 0;
}

static void test_join_zombie_answers_at_once(void **state) {
    (void)state;
    struct join_zombie r = {0};
    run_root(join_zombie_root, &r);
    assert_int_equal(r.state_before, CO_ZOMBIE);
    assert_int_equal(r.result, 0);
    assert_int_equal(r.status, 5);
    assert_true(r.elapsed < AT_ONCE_MS);
}

struct join_observer {
    co_tid target;
    int observer_result;
    int observer_status;
    int target_state_after; /* still a zombie for its parent */
    co_tid reaped;
    int reaped_status;
    int wait_result;
};

static int observer_task(void *arg) {
    struct join_observer *r = arg;
    r->observer_result = co_join(r->target, &r->observer_status, CO_NEVER);
    return 0;
}

static int join_observer_root(void *arg) {
    struct join_observer *r = arg;
    co_spawn(&r->target, yield_n_times, (void *)(intptr_t)2);
    co_tid obs;
    co_spawn(&obs, observer_task, r);
    CHECK_EQ(co_join(obs, NULL, CO_NEVER), 0);
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(r->target, &info), 0);
    r->target_state_after = info.state;
    r->wait_result = co_wait_child(&r->reaped, &r->reaped_status, co_now() + LONG_DEADLINE_MS);
    return 0;
}

static void test_join_by_non_parent_does_not_reap(void **state) {
    (void)state;
    struct join_observer r = {0};
    run_root(join_observer_root, &r);
    assert_int_equal(r.observer_result, 0);
    assert_int_equal(r.observer_status, 102);
    assert_int_equal(r.target_state_after, CO_ZOMBIE);
    assert_int_equal(r.wait_result, 0);
    assert_true(r.reaped == r.target);
    assert_int_equal(r.reaped_status, 102);
}

struct join_errors {
    int self, zero, unknown;
    int timeout;
    int64_t deadline, woke;
};

static int join_errors_root(void *arg) {
    struct join_errors *r = arg;
    r->self = co_join(co_self(), NULL, CO_NEVER);
    r->zero = co_join(0, NULL, CO_NEVER);
    r->unknown = co_join((co_tid)1 << 62, NULL, CO_NEVER);

    co_tid t;
    co_spawn(&t, sleep_forever, NULL);
    r->deadline = co_now() + 20;
    r->timeout = co_join(t, NULL, r->deadline);
    r->woke = co_now();
    CHECK_EQ(co_kill(t), 0);
    CHECK_EQ(co_join(t, NULL, CO_NEVER), 0);
    return 0;
}

static void test_join_errors_and_timeout(void **state) {
    (void)state;
    struct join_errors r = {0};
    run_root(join_errors_root, &r);
    assert_int_equal(r.self, -EDEADLK);
    assert_int_equal(r.zero, -ESRCH);
    assert_int_equal(r.unknown, -ESRCH);
    assert_int_equal(r.timeout, -ETIMEDOUT);
    assert_true(r.woke >= r.deadline);
}

struct join_killed {
    co_tid target;
    int join_result;
    int joiner_status;
    int target_sleep;
};

static int killed_joiner(void *arg) {
    struct join_killed *r = arg;
    r->join_result = co_join(r->target, NULL, CO_NEVER);
    return 9;
}

static int join_killed_root(void *arg) {
    struct join_killed *r = arg;
    co_spawn(&r->target, sleep_forever, &r->target_sleep);
    co_tid j;
    co_spawn(&j, killed_joiner, r);
    co_yield(); /* both block */
    CHECK_EQ(co_kill(j), 0);
    CHECK_EQ(co_join(j, &r->joiner_status, CO_NEVER), 0);
    /* The target was not disturbed by its joiner's death. */
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(r->target, &info), 0);
    CHECK_EQ(info.state, CO_BLOCKED);
    CHECK_EQ(co_kill(r->target), 0);
    CHECK_EQ(co_join(r->target, NULL, CO_NEVER), 0);
    return 0;
}

static void test_join_killed_while_joining_returns_ecanceled(void **state) {
    (void)state;
    struct join_killed r = {0};
    run_root(join_killed_root, &r);
    assert_int_equal(r.join_result, -ECANCELED);
    assert_int_equal(r.joiner_status, 9);
    assert_int_equal(r.target_sleep, -ECANCELED);
}

/* ---- co_wait_child -------------------------------------------------------- */

struct wait_order {
    co_tid spawned[3];
    co_tid reaped[3];
    int status[3];
    int results[3];
    int after;
};

static int wait_order_root(void *arg) {
    struct wait_order *r = arg;
    /* Exit order follows the number of yields: 1 exits first, then 2, then 0. */
    static const int yields[3] = {5, 1, 3};
    for (int i = 0; i < 3; i++)
        co_spawn(&r->spawned[i], yield_n_times, (void *)(intptr_t)yields[i]);
    for (int i = 0; i < 3; i++)
        r->results[i] = co_wait_child(&r->reaped[i], &r->status[i], co_now() + LONG_DEADLINE_MS);
    r->after = co_wait_child(NULL, NULL, CO_NEVER);
    return 0;
}

static void test_wait_child_reaps_in_exit_order(void **state) {
    (void)state;
    struct wait_order r = {0};
    run_root(wait_order_root, &r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.results[i], 0);
    assert_true(r.reaped[0] == r.spawned[1]);
    assert_int_equal(r.status[0], 101);
    assert_true(r.reaped[1] == r.spawned[2]);
    assert_int_equal(r.status[1], 103);
    assert_true(r.reaped[2] == r.spawned[0]);
    assert_int_equal(r.status[2], 105);
    assert_int_equal(r.after, -ECHILD);
}

struct wait_errors {
    int no_children;
    int timeout;
    int64_t deadline, woke;
};

static int wait_errors_root(void *arg) {
    struct wait_errors *r = arg;
    r->no_children = co_wait_child(NULL, NULL, CO_NEVER);
    co_tid t;
    co_spawn(&t, sleep_forever, NULL);
    r->deadline = co_now() + 20;
    r->timeout = co_wait_child(NULL, NULL, r->deadline);
    r->woke = co_now();
    CHECK_EQ(co_kill(t), 0);
    co_tid got = 0;
    int st = 0;
    CHECK_EQ(co_wait_child(&got, &st, CO_NEVER), 0);
    CHECK_EQ(got, t);
    CHECK_EQ(st, 11);
    return 0;
}

static void test_wait_child_errors_and_timeout(void **state) {
    (void)state;
    struct wait_errors r = {0};
    run_root(wait_errors_root, &r);
    assert_int_equal(r.no_children, -ECHILD);
    assert_int_equal(r.timeout, -ETIMEDOUT);
    assert_true(r.woke >= r.deadline);
}

struct wait_killed {
    co_tid grandchild;
    int wait_result;
    int waiter_status;
    int grandchild_sleep;
    int grandchild_gone;
};

static int killed_waiter(void *arg) {
    struct wait_killed *r = arg;
    co_spawn(&r->grandchild, sleep_forever, &r->grandchild_sleep);
    r->wait_result = co_wait_child(NULL, NULL, CO_NEVER);
    return 4;
}

static int wait_killed_root(void *arg) {
    struct wait_killed *r = arg;
    co_tid w;
    co_spawn(&w, killed_waiter, r);
    co_yield(); /* w and its child block */
    CHECK_EQ(co_kill(w), 0);
    CHECK_EQ(co_join(w, &r->waiter_status, CO_NEVER), 0);
    /* The grandchild is now an orphan without a reaper: it vanishes on exit. */
    CHECK_EQ(co_kill(r->grandchild), 0);
    for (int i = 0; i < 10 && co_task_get_info(r->grandchild, &(co_task_info){0}) == 0; i++)
        co_yield();
    r->grandchild_gone = co_task_get_info(r->grandchild, &(co_task_info){0});
    return 0;
}

static void test_wait_child_killed_while_waiting_returns_ecanceled(void **state) {
    (void)state;
    struct wait_killed r = {0};
    run_root(wait_killed_root, &r);
    assert_int_equal(r.wait_result, -ECANCELED);
    assert_int_equal(r.waiter_status, 4);
    assert_int_equal(r.grandchild_sleep, -ECANCELED);
    assert_int_equal(r.grandchild_gone, -ESRCH);
}

/* ---- co_kill -------------------------------------------------------------- */

struct kill_basic {
    int zero, unknown;
    int zombie_kill;
    int zombie_status;
};

static int kill_basic_root(void *arg) {
    struct kill_basic *r = arg;
    r->zero = co_kill(0);
    r->unknown = co_kill((co_tid)1 << 62);
    co_tid t;
    co_spawn(&t, return_arg, (void *)(intptr_t)3);
    co_yield(); /* t exits */
    r->zombie_kill = co_kill(t);
    CHECK_EQ(co_join(t, &r->zombie_status, CO_NEVER), 0);
    return 0;
}

static void test_kill_unknown_and_zombie(void **state) {
    (void)state;
    struct kill_basic r = {0};
    run_root(kill_basic_root, &r);
    assert_int_equal(r.zero, -ESRCH);
    assert_int_equal(r.unknown, -ESRCH);
    assert_int_equal(r.zombie_kill, 0);
    assert_int_equal(r.zombie_status, 3); /* killing a zombie leaves its status */
}

struct kill_wakes {
    co_tid victim;
    int victim_sleep;
    int joiner_result;
    int joiner_status;
    int joiner_state_before_kill;
    int victim_status;
};

static int kill_wakes_joiner(void *arg) {
    struct kill_wakes *r = arg;
    r->joiner_result = co_join(r->victim, &r->joiner_status, CO_NEVER);
    return 0;
}

static int kill_wakes_root(void *arg) {
    struct kill_wakes *r = arg;
    co_spawn(&r->victim, sleep_forever, &r->victim_sleep);
    co_tid j;
    co_spawn(&j, kill_wakes_joiner, r);
    co_yield(); /* victim sleeps, j joins it */
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(j, &info), 0);
    r->joiner_state_before_kill = info.state;
    CHECK_EQ(co_kill(r->victim), 0);
    CHECK_EQ(co_join(j, NULL, co_now() + LONG_DEADLINE_MS), 0);
    /* j is not the victim's parent: the root still reaps it. */
    CHECK_EQ(co_join(r->victim, &r->victim_status, co_now() + LONG_DEADLINE_MS), 0);
    return 0;
}

static void test_kill_wakes_the_joiner(void **state) {
    (void)state;
    struct kill_wakes r = {0};
    run_root(kill_wakes_root, &r);
    assert_int_equal(r.joiner_state_before_kill, CO_BLOCKED);
    assert_int_equal(r.victim_sleep, -ECANCELED);
    assert_int_equal(r.joiner_result, 0);
    assert_int_equal(r.joiner_status, 11);
    assert_int_equal(r.victim_status, 11);
}

/* After a kill, every blocking call fails at once, whatever it waits for. */
struct kill_later {
    co_chan *ch;
    int pipe_fds[2];
    int first;
    int results[8];
    int64_t elapsed;
    co_tid other;
};

static int sleep_briefly(void *arg) {
    (void)arg;
    co_sleep(co_now() + 30);
    return 0;
}

static int kill_later_task(void *arg) {
    struct kill_later *r = arg;
    CHECK(co_spawn(NULL, sleep_briefly, NULL) == 0); /* so co_wait_child would block */
    r->first = co_sleep(CO_NEVER);
    int64_t start = co_now();
    int64_t d = co_now() + LONG_DEADLINE_MS;
    int v = 0;
    char byte;
    int n = 0;
    r->results[n++] = co_yield();
    r->results[n++] = co_sleep(d);
    r->results[n++] = co_join(r->other, NULL, d);
    r->results[n++] = co_wait_child(NULL, NULL, d);
    r->results[n++] = co_chan_recv(r->ch, &v, d);
    r->results[n++] = co_chan_send(r->ch, &v, d);
    r->results[n++] = co_wait_fd(r->pipe_fds[0], CO_READ, d);
    r->results[n++] = (int)co_read(r->pipe_fds[0], &byte, 1, d);
    r->elapsed = co_now() - start;
    return 0;
}

static int kill_later_root(void *arg) {
    struct kill_later *r = arg;
    co_chan_new(&r->ch, sizeof(int), 0);
    CHECK(r->ch != NULL);
    co_spawn(&r->other, sleep_forever, NULL);
    co_tid t;
    co_spawn(&t, kill_later_task, r);
    co_yield();
    CHECK_EQ(co_kill(t), 0);
    CHECK_EQ(co_join(t, NULL, co_now() + LONG_DEADLINE_MS), 0);
    CHECK_EQ(co_kill(r->other), 0);
    CHECK_EQ(co_join(r->other, NULL, CO_NEVER), 0);
    co_chan_free(r->ch);
    return 0;
}

static void test_every_blocking_call_after_kill_returns_ecanceled(void **state) {
    (void)state;
    struct kill_later r = {0};
    assert_int_equal(pipe2(r.pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);
    run_root(kill_later_root, &r);
    close(r.pipe_fds[0]);
    close(r.pipe_fds[1]);
    static const char *const names[8] = {
        "co_yield",     "co_sleep",     "co_join",    "co_wait_child",
        "co_chan_recv", "co_chan_send", "co_wait_fd", "co_read",
    };
    assert_int_equal(r.first, -ECANCELED);
    for (int i = 0; i < 8; i++)
        if (r.results[i] != -ECANCELED)
            fail_msg("%s after kill returned %d, want -ECANCELED (%d)", names[i], r.results[i],
                     -ECANCELED);
    assert_true(r.elapsed < AT_ONCE_MS);
}

/* ---- orphans and the reaper ---------------------------------------------- */

struct orphans {
    co_chan *gate;
    co_tid root;
    co_tid parent;
    co_tid kids[2];
    int reaper_result;
    int second_reaper;
    co_tid kid_parent_after[2];
    int reaped_count;
    int kid_status_seen[2];
    int kid_info_after_exit[2];
    int parent_status;
    int after;
};

/* Spawns two children that wait on the gate, then exits at once. */
static int orphaning_parent(void *arg) {
    struct orphans *r = arg;
    for (int i = 0; i < 2; i++)
        co_spawn(&r->kids[i], recv_one, r->gate);
    return 1;
}

static int try_become_reaper(void *arg) {
    int *result = arg;
    *result = co_become_reaper();
    return 0;
}

static int reaper_root(void *arg) {
    struct orphans *r = arg;
    co_chan_new(&r->gate, sizeof(int), 0);
    CHECK(r->gate != NULL);
    r->root = co_self();
    r->reaper_result = co_become_reaper();
    co_tid other;
    co_spawn(&other, try_become_reaper, &r->second_reaper);
    CHECK_EQ(co_join(other, NULL, CO_NEVER), 0);

    co_spawn(&r->parent, orphaning_parent, r);
    int st = 0;
    CHECK_EQ(co_join(r->parent, &st, CO_NEVER), 0);
    r->parent_status = st;
    for (int i = 0; i < 2; i++) {
        co_task_info info = {0};
        CHECK_EQ(co_task_get_info(r->kids[i], &info), 0);
        r->kid_parent_after[i] = info.parent;
    }
    /* Release the orphans; they exit with the values sent. */
    for (int v = 21; v <= 22; v++)
        CHECK_EQ(co_chan_send(r->gate, &v, CO_NEVER), 0);
    co_tid got;
    while (co_wait_child(&got, &st, co_now() + LONG_DEADLINE_MS) == 0) {
        r->reaped_count++;
        for (int i = 0; i < 2; i++)
            if (got == r->kids[i])
                r->kid_status_seen[i] = st;
    }
    r->after = co_wait_child(NULL, NULL, CO_NEVER);
    co_chan_free(r->gate);
    return 0;
}

static void test_orphans_pass_to_the_reaper(void **state) {
    (void)state;
    struct orphans r = {0};
    run_root(reaper_root, &r);
    assert_int_equal(r.reaper_result, 0);
    assert_int_equal(r.second_reaper, -EBUSY);
    assert_int_equal(r.parent_status, 1);
    for (int i = 0; i < 2; i++)
        assert_true(r.kid_parent_after[i] == r.root);
    assert_int_equal(r.reaped_count, 2);
    /* The first receiver waiting gets the first value sent. */
    assert_int_equal(r.kid_status_seen[0], 21);
    assert_int_equal(r.kid_status_seen[1], 22);
    assert_int_equal(r.after, -ECHILD);
}

static int no_reaper_root(void *arg) {
    struct orphans *r = arg;
    co_chan_new(&r->gate, sizeof(int), 0);
    CHECK(r->gate != NULL);
    co_spawn(&r->parent, orphaning_parent, r);
    CHECK_EQ(co_join(r->parent, &r->parent_status, CO_NEVER), 0);
    for (int i = 0; i < 2; i++) {
        co_task_info info = {0};
        CHECK_EQ(co_task_get_info(r->kids[i], &info), 0);
        r->kid_parent_after[i] = info.parent;
        /* Still alive: nobody has exited yet. */
        CHECK_EQ(info.state, CO_BLOCKED);
    }
    CHECK_EQ(co_chan_close(r->gate), 0);
    for (int i = 0; i < 10; i++)
        co_yield();
    for (int i = 0; i < 2; i++)
        r->kid_info_after_exit[i] = co_task_get_info(r->kids[i], &(co_task_info){0});
    r->after = co_wait_child(NULL, NULL, CO_NEVER);
    co_chan_free(r->gate);
    return 0;
}

static void test_orphans_without_reaper_vanish(void **state) {
    (void)state;
    struct orphans r = {0};
    run_root(no_reaper_root, &r);
    assert_int_equal(r.parent_status, 1);
    assert_true(r.kid_parent_after[0] == 0);
    assert_true(r.kid_parent_after[1] == 0);
    assert_int_equal(r.kid_info_after_exit[0], -ESRCH);
    assert_int_equal(r.kid_info_after_exit[1], -ESRCH);
    assert_int_equal(r.after, -ECHILD); /* they were never the root's children */
}

/* The reaper's own parent exits: the reaper is an orphan like any other, and
 * must not be handed to itself. */
struct orphaned_reaper {
    co_chan *gate;
    co_tid reaper;
    int become;
    int reaper_wait; /* the reaper has no children: -ECHILD at once */
    co_tid parent_after;
    int reaper_status;
};

static int gated_reaper(void *arg) {
    struct orphaned_reaper *r = arg;
    r->become = co_become_reaper();
    int v;
    CHECK_EQ(co_chan_recv(r->gate, &v, CO_NEVER), 0);
    r->reaper_wait = co_wait_child(NULL, NULL, co_now() + 50);
    return 0;
}

static int reaper_parent(void *arg) {
    struct orphaned_reaper *r = arg;
    co_spawn(&r->reaper, gated_reaper, r);
    co_yield(); /* the reaper registers and blocks on the gate */
    return 0;
}

static int orphaned_reaper_root(void *arg) {
    struct orphaned_reaper *r = arg;
    co_chan_new(&r->gate, sizeof(int), 0);
    CHECK(r->gate != NULL);
    r->reaper_wait = 1;
    co_tid p;
    co_spawn(&p, reaper_parent, r);
    CHECK_EQ(co_join(p, NULL, CO_NEVER), 0);
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(r->reaper, &info), 0);
    r->parent_after = info.parent;
    int v = 1;
    CHECK_EQ(co_chan_send(r->gate, &v, CO_NEVER), 0);
    /* The reaper exits on its own; the root is not its parent. */
    for (int i = 0; i < 10 && r->reaper_wait == 1; i++)
        co_sleep(co_now() + 10);
    co_chan_free(r->gate);
    return 0;
}

static void test_reaper_orphaned_by_its_parent_is_not_its_own_child(void **state) {
    (void)state;
    struct orphaned_reaper r = {0};
    run_root(orphaned_reaper_root, &r);
    assert_int_equal(r.become, 0);
    if (r.parent_after == r.reaper)
        fail_msg("the orphaned reaper (tid %llu) became its own parent",
                 (unsigned long long)r.reaper);
    assert_true(r.parent_after == 0);
    assert_int_equal(r.reaper_wait, -ECHILD);
}

/* Once the reaper exits, another task may take the role. */
struct reaper_handover {
    int first, second_while_first_lives, second_after;
};

static int first_reaper(void *arg) {
    struct reaper_handover *r = arg;
    r->first = co_become_reaper();
    co_yield();
    return 0;
}

static int second_reaper(void *arg) {
    struct reaper_handover *r = arg;
    r->second_while_first_lives = co_become_reaper();
    co_sleep(co_now() + 5); /* the first one exits meanwhile */
    r->second_after = co_become_reaper();
    return 0;
}

static int reaper_handover_root(void *arg) {
    struct reaper_handover *r = arg;
    co_spawn(NULL, first_reaper, r);
    co_spawn(NULL, second_reaper, r);
    while (co_wait_child(NULL, NULL, co_now() + LONG_DEADLINE_MS) == 0)
        ;
    return 0;
}

static void test_reaper_role_is_free_again_after_the_reaper_exits(void **state) {
    (void)state;
    struct reaper_handover r = {1, 1, 1};
    run_root(reaper_handover_root, &r);
    assert_int_equal(r.first, 0);
    assert_int_equal(r.second_while_first_lives, -EBUSY);
    assert_int_equal(r.second_after, 0);
}

/* ---- co_spawn_with -------------------------------------------------------- */

struct spawn_with {
    co_tid adopter;
    co_tid child;
    co_task_info child_info;
    int adopter_wait;
    co_tid adopter_got;
    int adopter_got_status;
    co_tid bad_parent;
    int bad_parent_err;
    co_tid zombie_parent;
    int zombie_parent_err;
    int root_wait_after;
};

static int adopter_task(void *arg) {
    struct spawn_with *r = arg;
    r->adopter_wait = co_wait_child(&r->adopter_got, &r->adopter_got_status, CO_NEVER);
    return 0;
}

static int spawn_with_root(void *arg) {
    struct spawn_with *r = arg;
    co_spawn(&r->adopter, adopter_task, r);
    co_spawn_attr attr = {.name = "named-child", .parent = r->adopter};
    co_spawn_with(&r->child, return_arg, (void *)(intptr_t)77, &attr);
    CHECK_EQ(co_task_get_info(r->child, &r->child_info), 0);

    attr.parent = (co_tid)1 << 62;
    r->bad_parent_err = co_spawn_with(&r->bad_parent, return_arg, NULL, &attr);

    CHECK_EQ(co_join(r->adopter, NULL, co_now() + LONG_DEADLINE_MS), 0);

    /* An exited (zombie) parent cannot take children either. */
    co_tid z;
    co_spawn(&z, return_arg, NULL);
    co_yield();
    attr.parent = z;
    r->zombie_parent_err = co_spawn_with(&r->zombie_parent, return_arg, NULL, &attr);
    CHECK_EQ(co_join(z, NULL, CO_NEVER), 0);
    r->root_wait_after = co_wait_child(NULL, NULL, CO_NEVER);
    return 0;
}

static void test_spawn_with_name_and_parent(void **state) {
    (void)state;
    struct spawn_with r = {0};
    run_root(spawn_with_root, &r);
    assert_true(r.child != 0);
    assert_string_equal(r.child_info.name, "named-child");
    assert_true(r.child_info.parent == r.adopter);
    assert_int_equal(r.adopter_wait, 0);
    assert_true(r.adopter_got == r.child);
    assert_int_equal(r.adopter_got_status, 77);
    assert_true(r.bad_parent == 0);
    assert_int_equal(r.bad_parent_err, -ESRCH);
    assert_true(r.zombie_parent == 0);
    assert_int_equal(r.zombie_parent_err, -ESRCH);
    assert_int_equal(r.root_wait_after, -ECHILD);
}

/* ---- co_run --------------------------------------------------------------- */

static void test_run_returns_root_status(void **state) {
    (void)state;
    assert_int_equal(co_run(return_arg, (void *)(intptr_t)123, NULL), 123);
    assert_int_equal(co_run(return_arg, (void *)(intptr_t)0, NULL), 0);
}

static int nested_run_root(void *arg) {
    int *result = arg;
    *result = co_run(return_arg, (void *)(intptr_t)5, NULL);
    return 0;
}

static void test_run_inside_a_task_is_ebusy(void **state) {
    (void)state;
    int result = 0;
    run_root(nested_run_root, &result);
    assert_int_equal(result, -EBUSY);
}

struct deadlock {
    co_chan *ch;
    int results[2];
    int started;
    int finished;
};

static int deadlocked_receiver(void *arg) {
    struct deadlock *d = arg;
    int v;
    int i = d->started++;
    d->results[i] = 1;
    d->results[i] = co_chan_recv(d->ch, &v, CO_NEVER);
    if (++d->finished == 2)
        co_chan_free(d->ch);
    return 0;
}

static int deadlock_root(void *arg) {
    struct deadlock *d = arg;
    co_chan_new(&d->ch, sizeof(int), 0);
    CHECK(d->ch != NULL);
    CHECK(co_spawn(NULL, deadlocked_receiver, d) == 0);
    CHECK(co_spawn(NULL, deadlocked_receiver, d) == 0);
    return 0; /* nobody will ever send */
}

static void test_run_ends_when_tasks_deadlock(void **state) {
    (void)state;
    struct deadlock d = {0};
    run_root(deadlock_root, &d);
    assert_int_equal(d.finished, 2);
    assert_int_equal(d.results[0], -ECANCELED);
    assert_int_equal(d.results[1], -ECANCELED);
}

/* ---- regressions found in review ------------------------------------------ */

/* A task woken by its timer, then yielding past the batch budget while no
 * watcher is left, is still runnable: co_run must not take it for a
 * deadlock and cancel it. */
static int long_yielder(void *arg) {
    int *cancelled_at = arg;
    co_sleep(co_now() + 20);
    for (int i = 0; i < 5000; i++)
        if (co_yield() != 0) {
            *cancelled_at = i;
            return 1;
        }
    return 0;
}

static void test_yielding_past_the_batch_budget_is_not_a_deadlock(void **state) {
    (void)state;
    int cancelled_at = -1;
    assert_int_equal(co_run(long_yielder, &cancelled_at, NULL), 0);
    assert_int_equal(cancelled_at, -1);
}

/* A task that once waited on an fd (its watcher stays armed between waits)
 * and then blocks forever on a channel is still a deadlock to break. */
struct fd_then_chan {
    int fds[2];
    co_chan *ch;
    int wait_result;
    int recv_result;
};

static int fd_then_chan_root(void *arg) {
    struct fd_then_chan *r = arg;
    char c = 'x';
    CHECK_EQ(write(r->fds[1], &c, 1), 1);
    r->wait_result = co_wait_fd(r->fds[0], CO_READ, co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(read(r->fds[0], &c, 1), 1);
    int e;
    r->recv_result = co_chan_recv(r->ch, &e, CO_NEVER);
    return 0;
}

static void test_deadlock_after_an_fd_wait_is_broken(void **state) {
    (void)state;
    struct fd_then_chan r = {.wait_result = 0};
    assert_int_equal(pipe2(r.fds, O_NONBLOCK), 0);
    co_chan_new(&r.ch, sizeof(int), 0);
    assert_non_null(r.ch);
    run_root(fd_then_chan_root, &r);
    assert_int_equal(r.wait_result, CO_READ);
    assert_int_equal(r.recv_result, -ECANCELED);
    co_chan_free(r.ch);
    close(r.fds[0]);
    close(r.fds[1]);
}

/* Killed after its fd wait completed but before it ran: the call still
 * reports the cancellation. */
struct kill_after_wake {
    int fds[2];
    int result;
    int yields;
};

static int fd_waiter(void *arg) {
    struct kill_after_wake *r = arg;
    r->result = co_wait_fd(r->fds[0], CO_READ, co_now() + LONG_DEADLINE_MS);
    return 0;
}

static int kill_after_wake_root(void *arg) {
    struct kill_after_wake *r = arg;
    co_tid t;
    co_spawn(&t, fd_waiter, r);
    co_yield(); /* it starts waiting */
    char c = 'x';
    CHECK_EQ(write(r->fds[1], &c, 1), 1);
    /* Yield until a poll has woken it. We were queued before it was, so we
     * run first in that batch and find it woken but not yet run. */
    co_task_info info;
    do {
        co_yield();
        CHECK_EQ(co_task_get_info(t, &info), 0);
    } while (info.state != CO_READY && ++r->yields < 100000);
    CHECK_EQ(info.state, CO_READY);
    CHECK_EQ(co_kill(t), 0);
    CHECK_EQ(co_join(t, NULL, co_now() + LONG_DEADLINE_MS), 0);
    return 0;
}

static void test_kill_after_wake_cancels_the_call(void **state) {
    (void)state;
    struct kill_after_wake r = {.result = 1};
    assert_int_equal(pipe2(r.fds, O_NONBLOCK), 0);
    run_root(kill_after_wake_root, &r);
    assert_int_equal(r.result, -ECANCELED);
    close(r.fds[0]);
    close(r.fds[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_self_yield),
        cmocka_unit_test(test_ready_queue_is_fifo),
        cmocka_unit_test(test_batch_runs_every_task_ready_at_its_start),
        cmocka_unit_test(test_task_ids_increase_and_are_never_reused),
        cmocka_unit_test(test_sleep_returns_zero_at_the_deadline),
        cmocka_unit_test(test_sleep_with_past_deadline_returns_at_once),
        cmocka_unit_test(test_yield_and_sleep_after_kill_return_ecanceled),
        cmocka_unit_test(test_task_killed_before_it_runs_sees_ecanceled),
        cmocka_unit_test(test_task_info_states_and_fields),
        cmocka_unit_test(test_join_returns_status_and_reaps),
        cmocka_unit_test(test_join_zombie_answers_at_once),
        cmocka_unit_test(test_join_by_non_parent_does_not_reap),
        cmocka_unit_test(test_join_errors_and_timeout),
        cmocka_unit_test(test_join_killed_while_joining_returns_ecanceled),
        cmocka_unit_test(test_wait_child_reaps_in_exit_order),
        cmocka_unit_test(test_wait_child_errors_and_timeout),
        cmocka_unit_test(test_wait_child_killed_while_waiting_returns_ecanceled),
        cmocka_unit_test(test_kill_unknown_and_zombie),
        cmocka_unit_test(test_kill_wakes_the_joiner),
        cmocka_unit_test(test_every_blocking_call_after_kill_returns_ecanceled),
        cmocka_unit_test(test_orphans_pass_to_the_reaper),
        cmocka_unit_test(test_orphans_without_reaper_vanish),
        cmocka_unit_test(test_reaper_orphaned_by_its_parent_is_not_its_own_child),
        cmocka_unit_test(test_reaper_role_is_free_again_after_the_reaper_exits),
        cmocka_unit_test(test_spawn_with_name_and_parent),
        cmocka_unit_test(test_run_returns_root_status),
        cmocka_unit_test(test_run_inside_a_task_is_ebusy),
        cmocka_unit_test(test_run_ends_when_tasks_deadlock),
        cmocka_unit_test(test_yielding_past_the_batch_budget_is_not_a_deadlock),
        cmocka_unit_test(test_deadlock_after_an_fd_wait_is_broken),
        cmocka_unit_test(test_kill_after_wake_cancels_the_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
