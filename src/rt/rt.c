/* rt: tasks on stackful coroutines, scheduled on one libev loop.
 *
 * The loop runs on the thread's own stack ("main"). A check watcher, invoked
 * after every poll, runs a batch of ready tasks; tasks switch directly to the
 * next ready task and return to main only when the queue is empty or the
 * batch budget (the tasks ready when it began, at least 1024) is spent, so
 * a yielding task cannot starve I/O. An idle
 * watcher, active while tasks are ready, keeps the poll from blocking.
 *
 * This file owns the ready queue, switching, block/wake, batches and co_run;
 * sched.h lists the files that own the rest. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

enum {
    BATCH_BUDGET = 1024 /* least task runs between two polls of the loop */
};

#define DEFAULT_STACK_SIZE (64 * 1024)
#define DEFAULT_STACK_CACHE 1024
#define DEFAULT_PARK_AFTER_MS 1000

__thread struct rt_sched rt_sched;

void rt_assert_failed(const char *invariant, const char *cond, const char *file, int line) {
    fprintf(stderr, "coecho rt: invariant violated: %s (%s, %s:%d)\n", invariant, cond, file, line);
    abort();
}

/* ---- ready queue and switching ------------------------------------------ */

/* Releases a finished task that nobody will reap, once off its stack. */
void rt_after_switch(void) {
    if (rt_sched.dead) {
        rt_task_release(rt_sched.dead);
        rt_sched.dead = NULL;
    }
}

/* Picks the coroutine to run after from gives up the CPU. */
coro *rt_pick_next(void) {
    if (rt_sched.budget > 0 && rt_sched.nready) {
        task *next = container_of(list_pop_front(&rt_sched.ready), task, qlink);
        RT_ASSERT(next->state == CO_READY, "a task on the ready queue is ready");
        rt_sched.nready--;
        rt_sched.budget--;
        next->state = CO_RUNNING;
        next->last_run = rt_sched.tick;
        rt_sched.current = next;
        if (__builtin_expect(!next->started || next->co.parked, 0))
            rt_task_prepare(next);
        return &next->co;
    }
    rt_sched.current = NULL;
    return &rt_sched.main_co;
}

/* The caller has queued or parked itself; run whoever is next. */
void rt_run_next(coro *from) {
    coro *to = rt_pick_next();
    if (to == from)
        return;
    rt_sched.switches++;
    coro_transfer(from, to);
    rt_after_switch();
}

/* Wakes a blocked task with result; ignores tasks already woken. */
void rt_wake(task *t, int result) {
    if (t->state != CO_BLOCKED)
        return;
    RT_ASSERT(t->waiting != CO_WAIT_NONE, "a blocked task has a wait kind");
    if (t->waitq) {
        RT_ASSERT(linked(&t->qlink), "a task with a wait list is linked on it");
        list_remove(&t->qlink);
        t->waitq = NULL;
    }
    t->wake_result = result;
    make_ready(t);
}

/* Parks the caller on waitq (or nowhere) until woken or the deadline. The
 * caller has checked may_block(). */
int rt_block(task *self, list_link *waitq, co_wait_kind kind, int64_t deadline) {
    RT_ASSERT(kind != CO_WAIT_NONE, "a task blocks with a wait kind");
    RT_ASSERT(self == rt_sched.current && self->state == CO_RUNNING,
              "only the running task blocks");
    self->deadline = deadline;
    if (deadline != CO_NEVER)
        rt_arm_timer(self, deadline);
    else if (ev_is_active(&self->timer)) /* would keep a deadlocked run alive */
        ev_timer_stop(rt_sched.loop, &self->timer);
    if (kind != CO_WAIT_FD && ev_is_active(&self->io))
        ev_io_stop(rt_sched.loop, &self->io); /* likewise, and nobody would read it */
    if (waitq)
        list_push_back(waitq, &self->qlink);
    if (rt_sched.park_after) {
        self->blocked_at = rt_sched.tick;
        list_push_back(&rt_sched.blocked, &self->blocked);
    }
    self->waitq = waitq;
    self->state = CO_BLOCKED;
    self->waiting = (unsigned char)kind;
    rt_run_next(&self->co);
    self->waiting = CO_WAIT_NONE;
    /* Killed after the wake-up but before running: the call is cancelled
     * too, unless a channel already moved the element (that must count). */
    if (self->killed && self->wake_result >= 0 && kind != CO_WAIT_SEND && kind != CO_WAIT_RECV)
        return -ECANCELED;
    return self->wake_result;
}

int co_yield(void) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    make_ready(self);
    rt_run_next(&self->co);
    return self->killed ? -ECANCELED : 0;
}

/* ---- parking ------------------------------------------------------------- */

enum {
    PARK_MAX_PER_ROUND = 4096, /* bounds the pause one round makes */
    PARK_BATCH = 256           /* stacks given back per system call */
};

/* Parks the tasks blocked longer than park_after, oldest first, at most
 * PARK_MAX_PER_ROUND a round; with more left, the next round comes soon. */
static void park_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    int64_t cutoff = co_now() - rt_sched.park_after;
    coro *batch[PARK_BATCH];
    size_t n = 0, done = 0;
    while (!list_empty(&rt_sched.blocked) && done < PARK_MAX_PER_ROUND) {
        task *t = container_of(rt_sched.blocked.next, task, blocked);
        if (t->blocked_at > cutoff)
            break;
        RT_ASSERT(t->state == CO_BLOCKED && t->started && !t->co.parked,
                  "only a blocked task that ran is parked, once");
        list_remove(&t->blocked);
        done++;
        int err = coro_park(&t->co);
        if (err == -ENOTSUP) { /* this build cannot: stop trying */
            rt_sched.park_after = 0;
            break;
        }
        if (err) { /* no memory for the frames: try again next round */
            t->blocked_at = co_now();
            list_push_back(&rt_sched.blocked, &t->blocked);
            break;
        }
        rt_sched.nparked++;
        batch[n++] = &t->co;
        if (n == PARK_BATCH) {
            coro_discard_stacks(batch, n);
            n = 0;
        }
    }
    if (n)
        coro_discard_stacks(batch, n);
    bool more = done == PARK_MAX_PER_ROUND;
    w->repeat = more ? 0.01 : (double)rt_sched.park_after / 2000.0;
    if (rt_sched.park_after) {
        ev_timer_again(loop, w);
    } else {
        ev_ref(loop); /* balances the unref at start */
        ev_timer_stop(loop, w);
    }
}

/* ---- batches ------------------------------------------------------------- */

static void run_batch(void) {
    rt_sched.tick = co_now();
    rt_sched.batches++;
    /* At least every task the last poll woke: polling again before they
     * ran would only make the kernel re-check their (level-triggered)
     * sockets, which costs more than running them. */
    rt_sched.budget = rt_sched.nready > BATCH_BUDGET ? (int)rt_sched.nready : BATCH_BUDGET;
    rt_run_next(&rt_sched.main_co);
    /* Budget spent with tasks still queued: keep the next poll from blocking
     * (and the loop from ending) even if no watcher is left. */
    if (rt_sched.nready && !ev_is_active(&rt_sched.idle))
        ev_idle_start(rt_sched.loop, &rt_sched.idle);
}

static void check_cb(struct ev_loop *loop, ev_check *w, int revents) {
    (void)loop, (void)w, (void)revents;
    run_batch();
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)w, (void)revents;
    if (rt_sched.nready && !ev_is_active(&rt_sched.idle))
        ev_idle_start(loop, &rt_sched.idle);
    else if (!rt_sched.nready && ev_is_active(&rt_sched.idle))
        ev_idle_stop(loop, &rt_sched.idle);
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)loop, (void)w, (void)revents; /* only keeps the poll non-blocking */
}

void co_get_stats(co_stats *stats) {
    stats->tasks = rt_sched.map.count;
    stats->ready = rt_sched.nready;
    stats->stacks_mapped = rt_sched.pool.mapped;
    stats->spawned = rt_sched.spawned;
    stats->switches = rt_sched.switches;
    stats->batches = rt_sched.batches;
    stats->parked = rt_sched.nparked;
}

const char *co_stack_guard_kind(void) { return coro_stack_guard_kind(); }

long co_stack_budget(void) { return coro_stack_budget(); }

/* ---- run ----------------------------------------------------------------- */

/* Cancels every live task; used when the loop ran dry with tasks still
 * blocked on each other, so that co_run always ends. */
static void kill_all(void) {
    for (size_t i = 0; i <= rt_sched.map.mask; i++) {
        task *t = rt_sched.map.slots[i].value;
        if (rt_sched.map.slots[i].key && t->state != CO_ZOMBIE) {
            t->killed = true;
            rt_wake(t, -ECANCELED);
        }
    }
}

static void free_everything(void) {
    for (size_t i = 0; i <= rt_sched.map.mask; i++)
        if (rt_sched.map.slots[i].key)
            rt_task_release(rt_sched.map.slots[i].value); /* zombies nobody reaped */
    rt_task_free_cached();
    taskmap_destroy(&rt_sched.map);
    coro_stack_pool_destroy(&rt_sched.pool);
    ev_loop_destroy(rt_sched.loop);
    memset(&rt_sched, 0, sizeof rt_sched);
}

/* Sets up the loop, the map, the pool and the scheduler's own watchers.
 * 0 or -ENOMEM, with nothing left behind on failure. */
static int sched_init(const co_options *opts) {
    memset(&rt_sched, 0, sizeof rt_sched);
    rt_sched.loop = ev_loop_new(EVFLAG_AUTO);
    if (!rt_sched.loop)
        return -ENOMEM;
    if (taskmap_init(&rt_sched.map, 64) != 0) {
        ev_loop_destroy(rt_sched.loop);
        rt_sched.loop = NULL;
        return -ENOMEM;
    }
    size_t stack_size = opts && opts->stack_size ? opts->stack_size : DEFAULT_STACK_SIZE;
    size_t cache = opts && opts->stack_cache ? opts->stack_cache : DEFAULT_STACK_CACHE;
    coro_stack_pool_init(&rt_sched.pool, stack_size, cache);
    coro_init_thread(&rt_sched.main_co);
    list_init(&rt_sched.ready);
    list_init(&rt_sched.signal_waiters);
    list_init(&rt_sched.blocked);
    int64_t park_after = opts && opts->park_after_ms ? opts->park_after_ms : DEFAULT_PARK_AFTER_MS;
    rt_sched.park_after = park_after > 0 ? park_after : 0;
#ifdef CORO_UCONTEXT
    rt_sched.park_after = 0; /* swapcontext hides the stack pointer: no parking */
#endif

    ev_prepare_init(&rt_sched.prepare, prepare_cb);
    ev_prepare_start(rt_sched.loop, &rt_sched.prepare);
    ev_unref(rt_sched.loop);
    ev_check_init(&rt_sched.check, check_cb);
    ev_set_priority(&rt_sched.check, EV_MINPRI); /* after the I/O callbacks */
    ev_check_start(rt_sched.loop, &rt_sched.check);
    ev_unref(rt_sched.loop);
    ev_idle_init(&rt_sched.idle, idle_cb);
    if (rt_sched.park_after) {
        double every = (double)rt_sched.park_after / 2000.0;
        ev_timer_init(&rt_sched.park_timer, park_cb, every, every);
        ev_timer_start(rt_sched.loop, &rt_sched.park_timer);
        ev_unref(rt_sched.loop); /* parking keeps no run alive */
    }
    return 0;
}

/* Stops the scheduler's watchers and frees everything once no task is live. */
static void sched_finish(void) {
    RT_ASSERT(rt_sched.nlive == 0 && rt_sched.nready == 0, "a run ends with no live or ready task");
    rt_signals_unwatch_all();
    ev_ref(rt_sched.loop);
    ev_prepare_stop(rt_sched.loop, &rt_sched.prepare);
    ev_ref(rt_sched.loop);
    ev_check_stop(rt_sched.loop, &rt_sched.check);
    if (ev_is_active(&rt_sched.idle))
        ev_idle_stop(rt_sched.loop, &rt_sched.idle);
    if (ev_is_active(&rt_sched.park_timer)) {
        ev_ref(rt_sched.loop);
        ev_timer_stop(rt_sched.loop, &rt_sched.park_timer);
    }
    free_everything();
}

int co_run(co_fn root, void *arg, const co_options *opts) {
    if (rt_sched.loop)
        return -EBUSY;
    if (!root)
        return -EINVAL;
    int err = coro_guard_install();
    if (err)
        return err;
    err = sched_init(opts);
    if (err)
        return err;
    err = rt_task_create(&rt_sched.root, root, arg, NULL, "root");
    if (err) {
        free_everything();
        return err;
    }
    while (rt_sched.nlive) {
        ev_run(rt_sched.loop, 0);
        if (rt_sched.nlive && !rt_sched.nready)
            kill_all();
    }
    int status = rt_sched.root_status;
    sched_finish();
    return status;
}
