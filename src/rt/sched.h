/* rt/sched.h: the scheduler's private state, shared by the files of src/rt
 * and included by nothing outside it. One owner per piece of state:
 *   rt.c      the scheduler: ready queue, switching, block/wake, batches,
 *             the loop and co_run
 *   task.c    task life: spawn, exit, join, wait_child, kill, the reaper
 *   io.c      fd waits, co_read, co_write, co_close (the task's io watcher)
 *   timer.c   the clock, deadlines (the task's timer) and co_sleep
 *   signal.c  co_signal_* (the signal watchers and the pending set)
 *   chan.c    channels
 * Every file includes <config.h> before this header. */
#ifndef COECHO_RT_SCHED_H
#define COECHO_RT_SCHED_H

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "coro/coro.h"
#include "coro/stack.h"
#include "rt.h"
#include "rt/list.h"
#include "rt/taskmap.h"

/* Invariant checks, as libev and libdill make them: on unless NDEBUG, and
 * always in the sanitizer build. A failure names the invariant and aborts. */
#if !defined(NDEBUG) || defined(COECHO_SANITIZERS)
#define RT_ASSERT(cond, invariant)                                                                 \
    ((cond) ? (void)0 : rt_assert_failed(invariant, #cond, __FILE__, __LINE__))
#else
#define RT_ASSERT(cond, invariant) ((void)0)
#endif

_Noreturn void rt_assert_failed(const char *invariant, const char *cond, const char *file,
                                int line);

/* A task lives on the heap, not on its stack: a task that waits long is
 * parked (its live frames copied aside, its stack's pages given back), and
 * what the loop and the lists point at must stay put meanwhile. */
typedef struct task {
    coro co;
    list_link qlink;    /* on the ready queue or on waitq */
    list_link *waitq;   /* the wait list qlink is on, if any */
    list_link sibling;  /* in the parent's children or zombies list */
    list_link children; /* live children */
    list_link zombies;  /* exited children not yet reaped */
    list_link joiners;  /* tasks blocked in co_join on this one */
    list_link blocked;  /* on rt_sched.blocked while blocked and not parked */
    int64_t blocked_at; /* batch start (co_now) when it blocked */
    struct task *parent;
    co_tid id;
    co_fn fn;
    void *arg;
    void *chan_elem; /* channel source or destination while waiting */
    int64_t deadline;
    int64_t last_run;
    int status;
    int wake_result;
    int join_status;       /* status handed to a joiner at wake-up */
    unsigned char state;   /* co_state, TASK_NEW or TASK_FREED */
    unsigned char waiting; /* co_wait_kind */
    bool killed;
    bool started; /* its coroutine was set up on its stack (first run) */
    ev_io io;
    ev_timer timer;
    coro_stack stack;
    char name[24];
} task;

/* Task states beside co_state: created but not yet queued, and released
 * (its stack went back to the pool). */
enum { TASK_NEW = 0xfe, TASK_FREED = 0xff };

struct rt_sched {
    struct ev_loop *loop;
    ev_prepare prepare;
    ev_check check;
    ev_idle idle;
    coro main_co;
    task *current; /* NULL while main runs */
    list_link ready;
    size_t nready;
    int budget;
    task *dead; /* exited task nobody reaps: released after the switch */
    coro_stack_pool pool;
    task *free_tasks; /* released tasks kept for reuse, linked by parent */
    size_t nfree_tasks;
    list_link blocked;      /* blocked tasks not parked, oldest first */
    ev_timer park_timer;    /* parks the tasks blocked longer than park_after */
    int64_t park_after;     /* ms; 0: never park */
    size_t nparked;
    taskmap map;
    task *reaper;
    task *root;
    int root_status;
    co_tid last_id;
    size_t nlive;          /* tasks that have not exited */
    int64_t tick;          /* co_now() at the start of the current batch */
    ev_signal signals[64]; /* watchers by signal number, for co_signal_watch */
    uint64_t signals_pending;
    list_link signal_waiters;
    uint64_t spawned;
    uint64_t switches;
    uint64_t batches;
};

/* One scheduler per thread (rt.h): each thread's co_run owns its own
 * loop, pool and tasks. In an executable a thread-local is reached by a
 * thread-pointer-relative load (local- or initial-exec), no call. */
extern __thread struct rt_sched rt_sched;

static inline bool linked(const list_link *l) { return l->next != l; }

static inline void make_ready(task *t) {
    RT_ASSERT(!linked(&t->qlink), "a task made ready is on no queue (not made ready twice)");
    RT_ASSERT(t->state == CO_RUNNING || t->state == CO_BLOCKED || t->state == TASK_NEW,
              "only a new, running or blocked task is made ready");
    if (linked(&t->blocked))
        list_remove(&t->blocked);
    t->state = CO_READY;
    list_push_back(&rt_sched.ready, &t->qlink);
    rt_sched.nready++;
}

/* Fails fast for the calls that may block: killed, or the deadline passed. */
static inline int may_block(const task *self, int64_t deadline) {
    if (self->killed)
        return -ECANCELED;
    if (deadline != CO_NEVER && deadline <= co_now())
        return -ETIMEDOUT;
    return 0;
}

/* Shared by the files of src/rt only, but visible to the linker: the rt_
 * prefix keeps them out of the programs' namespace. */

/* rt.c: switching and blocking. */
coro *rt_pick_next(void);
void rt_after_switch(void);
void rt_run_next(coro *from);
void rt_wake(task *t, int result);
int rt_block(task *self, list_link *waitq, co_wait_kind kind, int64_t deadline);

/* task.c */
int rt_task_create(task **out, co_fn fn, void *arg, task *parent, const char *name);
void rt_task_release(task *t);
void rt_task_free_cached(void);
/* Sets a task's coroutine up on its first run, or brings a parked one's
 * frames back; run by rt_pick_next before switching to it. */
void rt_task_prepare(task *t);

/* Brings a parked task's frames back now, for code that must read or write
 * them while it still waits (a channel's element). The task is then on no
 * blocked list, so the caller wakes it next, as chan.c does. */
static inline void rt_unpark(task *t) {
    if (t->co.parked)
        rt_task_prepare(t);
}

/* io.c and timer.c: the callbacks of a task's own watchers. */
void rt_task_io_cb(struct ev_loop *loop, ev_io *w, int revents);
void rt_task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void rt_arm_timer(task *t, int64_t deadline);

/* signal.c: stops every signal watcher when the run ends. */
void rt_signals_unwatch_all(void);

#endif
