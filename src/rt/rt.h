/* rt: a scheduler of coroutine tasks on one libev loop, and the "system
 * calls" tasks use to cooperate: spawn, self, yield, sleep, fd waits, reads
 * and writes, join, wait_child, kill and channels.
 *
 * Error convention, for every call of this header: success is 0, or a
 * count, id or signal number >= 0; failure is a negative errno. errno
 * itself is not part of the result: the rt never sets it to report, and
 * the system calls made inside may change it. Calls that create an object
 * (co_spawn, co_spawn_with, co_chan_new) return it through their first
 * argument, an out parameter. The blocking calls fail with -ETIMEDOUT at the deadline,
 * -ECANCELED once the task was killed (and from then on, at once, on every
 * blocking call), -EPIPE on a closed channel, -ESRCH for an unknown task
 * id. Deadlines are absolute co_now() milliseconds; CO_NEVER waits forever,
 * and a deadline in the past makes a call that would block fail at once
 * with -ETIMEDOUT.
 *
 * Every call except co_run and co_now must be made from inside a task.
 *
 * One runtime per thread: several threads may each be inside their own
 * co_run at once, each with its own loop, tasks and stacks. A task,
 * channel or fd wait belongs to the thread that made it: tasks never move
 * between threads, and no call here may name another thread's task or
 * channel. Threads share nothing through the rt; they hand data over with
 * their own locks or atomics. Signals are the exception: libev lets only
 * one loop watch a given signal, so co_signal_watch belongs to one thread.
 *
 * A task's stack is its own. A task that has waited longer than
 * co_options.park_after_ms is parked: its live frames are copied aside and
 * its stack's pages given back to the kernel, then copied back, to the same
 * addresses, before it runs again. So no task may keep a pointer into
 * another task's stack (a local variable's address) where another task
 * reads or writes it while the owner waits: state shared between tasks
 * lives on the heap or in static storage. Passing a local's address to a
 * call of this header that the owner blocks in (co_chan_send's element,
 * co_read's buffer) is fine: the runtime brings the frames back first. */
#ifndef COECHO_RT_H
#define COECHO_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef uint64_t co_tid; /* never reused; 0 is never a task */
typedef int (*co_fn)(void *arg);

#define CO_NEVER ((int64_t)-1)

enum { CO_READ = 1, CO_WRITE = 2 };

typedef struct co_options {
    size_t stack_size;       /* per task, plus a 64 KiB guard region; 0: 64 KiB */
    size_t stack_cache;      /* idle stacks kept with their pages; 0: 1024 */
    int64_t park_after_ms;   /* park tasks blocked this long; 0: 1000; < 0: never */
} co_options;

/* Creates the runtime, runs root(arg) as the first task and drives the loop
 * until every task has exited. Tasks that block forever with nothing left to
 * wake them are killed (they see -ECANCELED) so the run always ends. Returns
 * the root task's exit status, or a negative errno if the runtime could not
 * start (-EBUSY when called from inside a run). opts may be NULL. */
int co_run(co_fn root, void *arg, const co_options *opts);

/* Monotonic clock in milliseconds. */
int64_t co_now(void);

typedef struct co_spawn_attr {
    const char *name;  /* copied, truncated to 23 bytes; NULL: "task" */
    co_tid parent;     /* 0: the caller */
} co_spawn_attr;

/* Starts fn(arg) as a new task, a child of the caller (or attr->parent),
 * queued after the tasks already ready; the caller keeps running. Its return
 * value is its exit status, kept (zombie) until the parent reaps it with
 * co_wait_child() or co_join(). Returns 0 and stores the new task's id in
 * *tid, or -ENOMEM, -ESRCH for an unknown or exited attr->parent, -EINVAL
 * for a NULL fn or a call outside co_run (*tid is then 0). tid may be
 * NULL. */
int co_spawn(co_tid *tid, co_fn fn, void *arg);
int co_spawn_with(co_tid *tid, co_fn fn, void *arg, const co_spawn_attr *attr);

co_tid co_self(void);

/* Lets every other ready task run once, then resumes. Returns 0, or
 * -ECANCELED if the caller has been killed (it still yields). */
int co_yield(void);

/* Sleeps until deadline. 0 at the deadline, -ECANCELED if killed. */
int co_sleep(int64_t deadline);

/* Waits until fd is readable and/or writable (CO_READ | CO_WRITE). Returns
 * the ready subset of events (> 0), -ETIMEDOUT or -ECANCELED. */
int co_wait_fd(int fd, int events, int64_t deadline);

/* Closes fd. A task's fd watcher stays armed between its waits on the same
 * fd, so a task closes what it waited on with co_close, which disarms it
 * first (a plain close() of such an fd followed by a wait on a new fd with
 * the same number could miss events). 0 or -errno. Callable outside tasks. */
int co_close(int fd);

/* Reads up to n bytes from the non-blocking fd, waiting while it has none.
 * Returns the count (0 at EOF) or a negative errno. */
ssize_t co_read(int fd, void *buf, size_t n, int64_t deadline);

/* Writes all n bytes to the non-blocking fd, waiting for the write watcher
 * whenever the kernel buffer is full. Returns n; if an error or the
 * deadline stops it after some bytes went out, returns that short count
 * (the next call reports the error); with nothing written, a negative errno. */
ssize_t co_write(int fd, const void *buf, size_t n, int64_t deadline);

/* Waits for task tid to exit and stores its status. Any task may join any
 * other; when the caller is tid's parent the join also reaps it. An exited
 * task that is not yet reaped answers at once. -ESRCH for an unknown or
 * reaped id, -EDEADLK for the caller itself. status may be NULL. */
int co_join(co_tid tid, int *status, int64_t deadline);

/* Waits for any child of the caller to exit and reaps it, like waitpid(-1).
 * -ECHILD when the caller has no children. tid and status may be NULL. */
int co_wait_child(co_tid *tid, int *status, int64_t deadline);

/* Cancels tid: its current blocking call, if any, and every later one
 * returns -ECANCELED, so it unwinds and exits; whoever joins it wakes when
 * it does. A call that had already completed but not yet returned also
 * returns -ECANCELED, except a channel send or receive whose element moved
 * (it returns 0; the next call is cancelled). 0, or -ESRCH for an unknown
 * id. Killing an exited task is 0. */
int co_kill(co_tid tid);

/* Makes the caller the reaper: children of tasks that exit pass to it, like
 * orphans to init. Without a reaper, orphans are reaped automatically when
 * they exit. 0, or -EBUSY if another live task is the reaper. */
int co_become_reaper(void);

typedef enum co_state {
    CO_READY,   /* queued to run */
    CO_RUNNING, /* the caller itself */
    CO_BLOCKED, /* in a blocking call */
    CO_ZOMBIE,  /* exited, status not yet reaped */
} co_state;

typedef enum co_wait_kind {
    CO_WAIT_NONE,
    CO_WAIT_YIELD,
    CO_WAIT_SLEEP,
    CO_WAIT_FD,
    CO_WAIT_JOIN,
    CO_WAIT_CHILD,
    CO_WAIT_SEND,
    CO_WAIT_RECV,
    CO_WAIT_SIGNAL,
} co_wait_kind;

typedef struct co_task_info {
    co_tid tid;
    co_tid parent;         /* 0 once orphaned without a reaper */
    co_state state;
    co_wait_kind waiting;  /* what a CO_BLOCKED task waits for */
    bool killed;
    int status;            /* valid for CO_ZOMBIE */
    int64_t last_run;      /* co_now() ms when it was last scheduled */
    char name[24];
} co_task_info;

/* Fills *info for a live or zombie task. 0 or -ESRCH. */
int co_task_get_info(co_tid tid, co_task_info *info);

typedef struct co_stats {
    size_t tasks;         /* live and zombie tasks */
    size_t ready;         /* tasks queued to run */
    size_t stacks_mapped; /* stacks holding memory: in use or cached */
    uint64_t spawned;     /* tasks created since co_run started */
    uint64_t switches;    /* context switches since co_run started */
    uint64_t batches;     /* batches of task runs (one per loop iteration) */
    size_t parked;        /* blocked tasks whose stacks gave their pages back */
} co_stats;

void co_get_stats(co_stats *stats);

/* How stacks are guarded: "madvise" (guard regions cost no mapping) or
 * "mprotect" (each task costs two of vm.max_map_count's mappings;
 * COECHO_STACK_GUARD=mprotect forces it). And how many more tasks fit in
 * the mappings left: -1 when guards cost none. Callable outside a run;
 * the budget reads /proc, so not on a fast path. */
const char *co_stack_guard_kind(void);
long co_stack_budget(void);

/* Signals, delivered through the loop instead of interrupting a task.
 * co_signal_watch(signo) stops signo's default action and queues each
 * arrival (the same signal arriving twice before it is taken counts once);
 * co_signal_wait() takes the lowest pending signal, waiting for one if
 * none is. Watching does not keep co_run alive. 0 / signo, or -EINVAL for a
 * signal that cannot be watched (SIGKILL, SIGSTOP, outside 1-63). */
int co_signal_watch(int signo);
int co_signal_unwatch(int signo);
int co_signal_wait(int64_t deadline);

/* Channels: Go-style, FIFO among waiting senders and receivers. capacity 0
 * is unbuffered: a send completes when a receiver takes the element. */
typedef struct co_chan co_chan;

/* Stores a new channel in *ch: 0, or -ENOMEM, or -EINVAL for elem_size 0
 * or a buffer too large to size (*ch is then NULL). */
int co_chan_new(co_chan **ch, size_t elem_size, size_t capacity);

/* Copies elem into the channel. 0, -EPIPE once closed, -ETIMEDOUT,
 * -ECANCELED. */
int co_chan_send(co_chan *ch, const void *elem, int64_t deadline);

/* Copies the next element into elem. Receivers drain what is buffered after
 * a close, then get -EPIPE. */
int co_chan_recv(co_chan *ch, void *elem, int64_t deadline);

/* Closes: waiting senders get -EPIPE, waiting receivers -EPIPE. 0, or -EPIPE
 * if it was already closed. */
int co_chan_close(co_chan *ch);

/* Closes (waking any waiter) and frees. Safe to call from any task. */
void co_chan_free(co_chan *ch);

size_t co_chan_len(const co_chan *ch); /* elements buffered now */

#endif
