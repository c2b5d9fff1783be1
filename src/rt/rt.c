/* rt: tasks on stackful coroutines, scheduled on one libev loop.
 *
 * The loop runs on the thread's own stack ("main"). A check watcher, invoked
 * after every poll, runs a batch of ready tasks; tasks switch directly to the
 * next ready task and return to main only when the queue is empty or the
 * batch budget (the tasks ready when it began, at least 1024) is spent, so
 * a yielding task cannot starve I/O. An idle
 * watcher, active while tasks are ready, keeps the poll from blocking. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <ev.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coro/coro.h"
#include "coro/stack.h"
#include "list.h"
#include "taskmap.h"

enum {
    BATCH_BUDGET = 1024, /* least task runs between two polls of the loop */
    TASK_MAGIC = 0x7a5c0de5u
};

#define DEFAULT_STACK_SIZE (64 * 1024)
#define DEFAULT_STACK_CACHE 1024

/* A task lives at the top of its own stack, on the page its first frames
 * use anyway, so an idle task costs one resident page. */
typedef struct task {
    unsigned magic;       /* TASK_MAGIC once its lists and watchers are set up */
    coro co;
    list_link qlink;      /* on the ready queue or on waitq */
    list_link *waitq;     /* the wait list qlink is on, if any */
    list_link sibling;    /* in the parent's children or zombies list */
    list_link children;   /* live children */
    list_link zombies;    /* exited children not yet reaped */
    list_link joiners;    /* tasks blocked in co_join on this one */
    struct task *parent;
    co_tid id;
    co_fn fn;
    void *arg;
    void *chan_elem;      /* channel source or destination while waiting */
    int64_t deadline;
    int64_t last_run;
    int status;
    int wake_result;
    int join_status;      /* status handed to a joiner at wake-up */
    unsigned char state;  /* co_state */
    unsigned char waiting; /* co_wait_kind */
    bool killed;
    ev_io io;
    ev_timer timer;
    coro_stack stack;
    char name[24];
} task;

static struct sched {
    struct ev_loop *loop;
    ev_prepare prepare;
    ev_check check;
    ev_idle idle;
    coro main_co;
    task *current;       /* NULL while main runs */
    list_link ready;
    size_t nready;
    int budget;
    task *dead;          /* exited task nobody reaps: released after the switch */
    coro_stack_pool pool;
    taskmap map;
    task *reaper;
    task *root;
    int root_status;
    co_tid last_id;
    size_t nlive;        /* tasks that have not exited */
    int64_t tick;        /* co_now() at the start of the current batch */
    ev_signal signals[64]; /* watchers by signal number, for co_signal_watch */
    uint64_t signals_pending;
    list_link signal_waiters;
    uint64_t spawned;
    uint64_t switches;
    uint64_t batches;
} S;

int64_t co_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- ready queue and switching ------------------------------------------ */

static inline void make_ready(task *t) {
    t->state = CO_READY;
    list_push_back(&S.ready, &t->qlink);
    S.nready++;
}

static void task_release(task *t);

/* Releases a finished task that nobody will reap, once off its stack. */
static inline void after_switch(void) {
    if (S.dead) {
        task_release(S.dead);
        S.dead = NULL;
    }
}

/* Picks the coroutine to run after from gives up the CPU. */
static inline coro *pick_next(void) {
    if (S.budget > 0 && S.nready) {
        task *next = container_of(list_pop_front(&S.ready), task, qlink);
        S.nready--;
        S.budget--;
        next->state = CO_RUNNING;
        next->last_run = S.tick;
        S.current = next;
        return &next->co;
    }
    S.current = NULL;
    return &S.main_co;
}

/* The caller has queued or parked itself; run whoever is next. */
static void run_next(coro *from) {
    coro *to = pick_next();
    if (to == from)
        return;
    S.switches++;
    coro_transfer(from, to);
    after_switch();
}

/* Wakes a blocked task with result; ignores tasks already woken. */
static void wake(task *t, int result) {
    if (t->state != CO_BLOCKED)
        return;
    if (t->waitq) {
        list_remove(&t->qlink);
        t->waitq = NULL;
    }
    t->wake_result = result;
    make_ready(t);
}

/* Fails fast for the calls that may block: killed, or the deadline passed. */
static inline int may_block(const task *self, int64_t deadline) {
    if (self->killed)
        return -ECANCELED;
    if (deadline != CO_NEVER && deadline <= co_now())
        return -ETIMEDOUT;
    return 0;
}

/* Arms the task's timer to fire no later than deadline. A timer still armed
 * from an earlier wait is kept when it fires first: timer_cb then re-arms it
 * for the rest. Waits that push their deadline forward (an idle timeout
 * renewed on every read) so cost no timer-heap work at all. */
static void arm_timer(task *t, int64_t deadline) {
    int64_t now = co_now();
    ev_timer *w = &t->timer;
    if (ev_is_active(w)) {
        if (now + (int64_t)(ev_timer_remaining(S.loop, w) * 1e3) <= deadline)
            return;
        ev_timer_stop(S.loop, w);
    }
    ev_timer_set(w, (double)(deadline - now) / 1e3, 0.);
    ev_timer_start(S.loop, w);
}

/* Parks the caller on waitq (or nowhere) until woken or the deadline. The
 * caller has checked may_block(). */
static int block(task *self, list_link *waitq, co_wait_kind kind, int64_t deadline) {
    self->deadline = deadline;
    if (deadline != CO_NEVER)
        arm_timer(self, deadline);
    else if (ev_is_active(&self->timer)) /* would keep a deadlocked run alive */
        ev_timer_stop(S.loop, &self->timer);
    if (kind != CO_WAIT_FD && ev_is_active(&self->io))
        ev_io_stop(S.loop, &self->io); /* likewise, and nobody would read it */
    if (waitq)
        list_push_back(waitq, &self->qlink);
    self->waitq = waitq;
    self->state = CO_BLOCKED;
    self->waiting = (unsigned char)kind;
    run_next(&self->co);
    self->waiting = CO_WAIT_NONE;
    /* Killed after the wake-up but before running: the call is cancelled
     * too, unless a channel already moved the element (that must count). */
    if (self->killed && self->wake_result >= 0 && kind != CO_WAIT_SEND && kind != CO_WAIT_RECV)
        return -ECANCELED;
    return self->wake_result;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    task *t = container_of(w, task, timer);
    if (t->state != CO_BLOCKED || t->deadline == CO_NEVER)
        return; /* left armed by an earlier wait: nothing to do, stays stopped */
    int64_t left = t->deadline - co_now();
    if (left > 0) { /* armed for an earlier deadline, or the loop's clock lags */
        ev_timer_set(w, (double)left / 1e3, 0.);
        ev_timer_start(loop, w);
        return;
    }
    wake(t, -ETIMEDOUT);
}

/* A task's watcher stays armed between its waits on the same fd (starting
 * one costs an epoll_ctl); it is stopped when it fires with nobody waiting. */
static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    task *t = container_of(w, task, io);
    /* Woken but not yet run (the batch budget ran out): stay armed, the task
     * is about to read. A task that blocks on anything else disarms it. */
    if (t->state == CO_BLOCKED && t->waiting == CO_WAIT_FD)
        wake(t, (revents & EV_READ ? CO_READ : 0) | (revents & EV_WRITE ? CO_WRITE : 0));
}

static void run_batch(void) {
    S.tick = co_now();
    S.batches++;
    /* At least every task the last poll woke: polling again before they
     * ran would only make the kernel re-check their (level-triggered)
     * sockets, which costs more than running them. */
    S.budget = S.nready > BATCH_BUDGET ? (int)S.nready : BATCH_BUDGET;
    run_next(&S.main_co);
    /* Budget spent with tasks still queued: keep the next poll from blocking
     * (and the loop from ending) even if no watcher is left. */
    if (S.nready && !ev_is_active(&S.idle))
        ev_idle_start(S.loop, &S.idle);
}

static void check_cb(struct ev_loop *loop, ev_check *w, int revents) {
    (void)loop, (void)w, (void)revents;
    run_batch();
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)w, (void)revents;
    if (S.nready && !ev_is_active(&S.idle))
        ev_idle_start(loop, &S.idle);
    else if (!S.nready && ev_is_active(&S.idle))
        ev_idle_stop(loop, &S.idle);
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)loop, (void)w, (void)revents; /* only keeps the poll non-blocking */
}

/* ---- task life ----------------------------------------------------------- */

/* Returns the task's stack, and with it the task, to the pool. */
static void task_release(task *t) {
    coro_stack stack = t->stack;
    coro_stack_put_inline(&S.pool, &stack);
}

/* Removes a zombie for good. */
static void reap(task *t) {
    list_remove(&t->sibling);
    taskmap_remove(&S.map, t->id);
    task_release(t);
}

static void adopt(task *parent, task *child, bool zombie) {
    child->parent = parent;
    list_push_back(zombie ? &parent->zombies : &parent->children, &child->sibling);
}

/* Hands the exiting task's children to the reaper, or lets them go. */
static void pass_orphans(task *t) {
    task *reaper = S.reaper;
    list_link *l;
    while ((l = list_pop_front(&t->children))) {
        task *c = container_of(l, task, sibling);
        if (reaper && reaper != c)
            adopt(reaper, c, false);
        else
            c->parent = NULL;
    }
    while ((l = list_pop_front(&t->zombies))) {
        task *z = container_of(l, task, sibling);
        if (reaper) {
            adopt(reaper, z, true);
            if (reaper->state == CO_BLOCKED && reaper->waiting == CO_WAIT_CHILD)
                wake(reaper, 0);
        } else {
            z->parent = NULL;
            taskmap_remove(&S.map, z->id);
            task_release(z);
        }
    }
}

static _Noreturn void task_exit(task *t, int status) {
    if (ev_is_active(&t->io))
        ev_io_stop(S.loop, &t->io);
    if (ev_is_active(&t->timer))
        ev_timer_stop(S.loop, &t->timer);
    t->status = status;
    t->state = CO_ZOMBIE;
    S.nlive--;
    if (t == S.root) {
        S.root_status = status;
        S.root = NULL;
    }
    if (S.reaper == t)
        S.reaper = NULL;
    list_link *l;
    while ((l = list_pop_front(&t->joiners))) {
        task *j = container_of(l, task, qlink);
        j->waitq = NULL;
        j->join_status = status;
        wake(j, 0);
    }
    pass_orphans(t);
    task *parent = t->parent;
    if (parent) {
        list_remove(&t->sibling);
        list_push_back(&parent->zombies, &t->sibling);
        if (parent->state == CO_BLOCKED && parent->waiting == CO_WAIT_CHILD)
            wake(parent, 0);
    } else {
        taskmap_remove(&S.map, t->id);
        S.dead = t;
    }
    coro *to = pick_next();
    S.switches++;
    coro_transfer_final(&t->co, to);
    abort();
}

static void task_entry(void *arg) {
    task *t = arg;
    after_switch();
    task_exit(t, t->fn(t->arg));
}

/* Takes a stack from the pool and places the task at its top. A recycled
 * stack still holds its last task, with stopped watchers and empty lists:
 * those are set up only the first time a stack carries a task. */
static task *task_alloc(void) {
    coro_stack stack;
    int err = coro_stack_get_inline(&S.pool, &stack);
    if (err) {
        errno = -err;
        return NULL;
    }
    uintptr_t at = ((uintptr_t)coro_stack_top_inline(&stack) - sizeof(task)) & ~(uintptr_t)63;
    task *t = (task *)at;
    if (t->magic != TASK_MAGIC) {
        t->magic = TASK_MAGIC;
        list_init(&t->qlink);
        list_init(&t->sibling);
        list_init(&t->children);
        list_init(&t->zombies);
        list_init(&t->joiners);
        ev_init(&t->io, io_cb);
        ev_init(&t->timer, timer_cb);
    }
    t->stack = stack;
    return t;
}

static void set_name(task *t, const char *name) {
    size_t i = 0;
    for (; name[i] && i < sizeof t->name - 1; i++)
        t->name[i] = name[i];
    t->name[i] = '\0';
}

static task *task_create(co_fn fn, void *arg, task *parent, const char *name) {
    task *t = task_alloc();
    if (!t)
        return NULL;
    if (taskmap_put(&S.map, S.last_id + 1, t) != 0) {
        task_release(t);
        errno = ENOMEM;
        return NULL;
    }
    t->id = ++S.last_id;
    t->fn = fn;
    t->arg = arg;
    t->waitq = NULL;
    t->parent = NULL;
    t->last_run = 0;
    t->status = 0;
    t->wake_result = 0;
    t->waiting = CO_WAIT_NONE;
    t->killed = false;
    if (parent)
        adopt(parent, t, false);
    set_name(t, name ? name : "task");
    coro_init_below(&t->co, &t->stack, (char *)t, task_entry, t);
    t->co.id = t->id;
    t->co.name = t->name;
    S.nlive++;
    S.spawned++;
    make_ready(t);
    return t;
}

static task *lookup(co_tid tid) { return tid ? taskmap_get(&S.map, tid) : NULL; }

co_tid co_spawn_with(co_fn fn, void *arg, const co_spawn_attr *attr) {
    task *parent = S.current;
    if (!S.loop || !fn) {
        errno = EINVAL;
        return 0;
    }
    if (attr && attr->parent) {
        parent = lookup(attr->parent);
        if (!parent || parent->state == CO_ZOMBIE) {
            errno = ESRCH;
            return 0;
        }
    }
    task *t = task_create(fn, arg, parent, attr ? attr->name : NULL);
    return t ? t->id : 0;
}

co_tid co_spawn(co_fn fn, void *arg) { return co_spawn_with(fn, arg, NULL); }

co_tid co_self(void) { return S.current ? S.current->id : 0; }

/* ---- system calls -------------------------------------------------------- */

int co_yield(void) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    make_ready(self);
    run_next(&self->co);
    return self->killed ? -ECANCELED : 0;
}

int co_sleep(int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    int r = may_block(self, deadline);
    if (r == 0)
        r = block(self, NULL, CO_WAIT_SLEEP, deadline);
    return r == -ETIMEDOUT ? 0 : r;
}

/* With the deadline gone, a wait still reports an fd that is ready now. */
static int poll_now(int fd, int want) {
    struct pollfd p = {.fd = fd, .events = (short)((want & EV_READ ? POLLIN : 0) |
                                                   (want & EV_WRITE ? POLLOUT : 0))};
    int n;
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    if (p.revents & POLLNVAL)
        return -EBADF;
    /* Errors and hang-ups make both directions "ready": the next read or
     * write reports them, as with a libev watcher. */
    int bad = p.revents & (POLLERR | POLLHUP);
    int ready = (p.revents & POLLIN || bad ? CO_READ : 0) | (p.revents & POLLOUT || bad ? CO_WRITE : 0);
    ready &= (want & EV_READ ? CO_READ : 0) | (want & EV_WRITE ? CO_WRITE : 0);
    return ready ? ready : -ETIMEDOUT;
}

int co_wait_fd(int fd, int events, int64_t deadline) {
    task *self = S.current;
    int want = (events & CO_READ ? EV_READ : 0) | (events & CO_WRITE ? EV_WRITE : 0);
    if (!self)
        return -EPERM;
    if (fd < 0 || !want)
        return -EINVAL;
    int r = may_block(self, deadline);
    if (r == -ETIMEDOUT)
        return poll_now(fd, want);
    if (r)
        return r;
    ev_io *io = &self->io;
    if (ev_is_active(io) && (io->fd != fd || (io->events & (EV_READ | EV_WRITE)) != want))
        ev_io_stop(S.loop, io);
    if (!ev_is_active(io)) {
        ev_io_set(io, fd, want);
        ev_io_start(S.loop, io);
    }
    return block(self, NULL, CO_WAIT_FD, deadline);
}

int co_close(int fd) {
    task *self = S.current;
    if (self && ev_is_active(&self->io) && self->io.fd == fd)
        ev_io_stop(S.loop, &self->io);
    return close(fd) == 0 ? 0 : -errno;
}

ssize_t co_read(int fd, void *buf, size_t n, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int w = co_wait_fd(fd, CO_READ, deadline);
        if (w < 0)
            return w;
    }
}

ssize_t co_write(int fd, const void *buf, size_t n, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const char *)buf + done, n - done);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        int err = r < 0 ? -errno : -EIO;
        if (err == -EINTR)
            continue;
        if (err == -EAGAIN || err == -EWOULDBLOCK) {
            err = co_wait_fd(fd, CO_WRITE, deadline);
            if (err >= 0)
                continue;
        }
        return done ? (ssize_t)done : err;
    }
    return (ssize_t)done;
}

int co_join(co_tid tid, int *status, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (tid == self->id)
        return -EDEADLK;
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    int st;
    if (t->state == CO_ZOMBIE) {
        st = t->status;
    } else {
        int r = may_block(self, deadline);
        if (r == 0)
            r = block(self, &t->joiners, CO_WAIT_JOIN, deadline);
        if (r)
            return r;
        st = self->join_status;
    }
    /* Only the parent reaps; t may be gone already if someone else was. */
    t = lookup(tid);
    if (t && t->parent == self && t->state == CO_ZOMBIE)
        reap(t);
    if (status)
        *status = st;
    return 0;
}

int co_wait_child(co_tid *tid, int *status, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    for (;;) {
        if (!list_empty(&self->zombies)) {
            task *z = container_of(self->zombies.next, task, sibling);
            if (tid)
                *tid = z->id;
            if (status)
                *status = z->status;
            reap(z);
            return 0;
        }
        if (list_empty(&self->children))
            return -ECHILD;
        int r = may_block(self, deadline);
        if (r == 0)
            r = block(self, NULL, CO_WAIT_CHILD, deadline);
        if (r)
            return r;
    }
}

int co_kill(co_tid tid) {
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    if (t->state == CO_ZOMBIE)
        return 0;
    t->killed = true;
    wake(t, -ECANCELED);
    return 0;
}

int co_become_reaper(void) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (S.reaper && S.reaper != self)
        return -EBUSY;
    S.reaper = self;
    return 0;
}

int co_task_get_info(co_tid tid, co_task_info *info) {
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    memset(info, 0, sizeof *info);
    info->tid = t->id;
    info->parent = t->parent ? t->parent->id : 0;
    info->state = (co_state)t->state;
    info->waiting = t->state == CO_BLOCKED ? (co_wait_kind)t->waiting : CO_WAIT_NONE;
    info->killed = t->killed;
    info->status = t->state == CO_ZOMBIE ? t->status : 0;
    info->last_run = t->last_run;
    memcpy(info->name, t->name, sizeof info->name);
    return 0;
}

void co_get_stats(co_stats *stats) {
    stats->tasks = S.map.count;
    stats->ready = S.nready;
    stats->stacks_mapped = S.pool.mapped;
    stats->spawned = S.spawned;
    stats->switches = S.switches;
    stats->batches = S.batches;
}

/* ---- signals ------------------------------------------------------------- */

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop, (void)revents;
    S.signals_pending |= 1ull << w->signum;
    task *t = list_empty(&S.signal_waiters)
                  ? NULL
                  : container_of(S.signal_waiters.next, task, qlink);
    if (t)
        wake(t, 0);
}

static bool watchable(int signo) {
    return signo > 0 && signo < 64 && signo != SIGKILL && signo != SIGSTOP;
}

int co_signal_watch(int signo) {
    if (!S.loop)
        return -EPERM;
    if (!watchable(signo))
        return -EINVAL;
    ev_signal *w = &S.signals[signo];
    if (!ev_is_active(w)) {
        ev_signal_init(w, signal_cb, signo);
        ev_signal_start(S.loop, w);
        ev_unref(S.loop); /* a signal alone is no reason to keep running */
    }
    return 0;
}

int co_signal_unwatch(int signo) {
    if (!S.loop)
        return -EPERM;
    if (!watchable(signo))
        return -EINVAL;
    ev_signal *w = &S.signals[signo];
    if (ev_is_active(w)) {
        ev_ref(S.loop);
        ev_signal_stop(S.loop, w);
    }
    S.signals_pending &= ~(1ull << signo);
    return 0;
}

int co_signal_wait(int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    for (;;) {
        if (self->killed)
            return -ECANCELED;
        if (S.signals_pending) {
            int signo = __builtin_ctzll(S.signals_pending);
            S.signals_pending &= ~(1ull << signo);
            return signo;
        }
        int r = may_block(self, deadline);
        if (r == 0)
            r = block(self, &S.signal_waiters, CO_WAIT_SIGNAL, deadline);
        if (r)
            return r;
    }
}

/* ---- channels ------------------------------------------------------------ */

struct co_chan {
    size_t elem_size;
    size_t capacity;
    size_t head;  /* index of the oldest buffered element */
    size_t count; /* elements buffered */
    bool closed;
    list_link senders;
    list_link receivers;
    unsigned char buf[];
};

co_chan *co_chan_new(size_t elem_size, size_t capacity) {
    if (elem_size == 0 || (capacity && elem_size > (SIZE_MAX - sizeof(co_chan)) / capacity)) {
        errno = EINVAL;
        return NULL;
    }
    co_chan *ch = malloc(sizeof *ch + elem_size * capacity);
    if (!ch) {
        errno = ENOMEM;
        return NULL;
    }
    ch->elem_size = elem_size;
    ch->capacity = capacity;
    ch->head = ch->count = 0;
    ch->closed = false;
    list_init(&ch->senders);
    list_init(&ch->receivers);
    return ch;
}

static inline unsigned char *chan_slot(co_chan *ch, size_t i) {
    return ch->buf + ((ch->head + i) % ch->capacity) * ch->elem_size;
}

static inline task *first_waiter(list_link *q) {
    return list_empty(q) ? NULL : container_of(q->next, task, qlink);
}

int co_chan_send(co_chan *ch, const void *elem, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    if (ch->closed)
        return -EPIPE;
    task *r = first_waiter(&ch->receivers);
    if (r) { /* a waiting receiver means the buffer is empty */
        memcpy(r->chan_elem, elem, ch->elem_size);
        wake(r, 0);
        return 0;
    }
    if (ch->count < ch->capacity) {
        memcpy(chan_slot(ch, ch->count), elem, ch->elem_size);
        ch->count++;
        return 0;
    }
    int rc = may_block(self, deadline);
    if (rc)
        return rc;
    self->chan_elem = (void *)elem;
    return block(self, &ch->senders, CO_WAIT_SEND, deadline);
}

int co_chan_recv(co_chan *ch, void *elem, int64_t deadline) {
    task *self = S.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    task *s = first_waiter(&ch->senders);
    if (ch->count) {
        memcpy(elem, chan_slot(ch, 0), ch->elem_size);
        ch->head = (ch->head + 1) % ch->capacity;
        ch->count--;
        if (s) { /* the oldest waiting sender takes the freed slot */
            memcpy(chan_slot(ch, ch->count), s->chan_elem, ch->elem_size);
            ch->count++;
            wake(s, 0);
        }
        return 0;
    }
    if (s) {
        memcpy(elem, s->chan_elem, ch->elem_size);
        wake(s, 0);
        return 0;
    }
    if (ch->closed)
        return -EPIPE;
    int rc = may_block(self, deadline);
    if (rc)
        return rc;
    self->chan_elem = elem;
    return block(self, &ch->receivers, CO_WAIT_RECV, deadline);
}

static void wake_all(list_link *q, int result) {
    task *t;
    while ((t = first_waiter(q)))
        wake(t, result);
}

int co_chan_close(co_chan *ch) {
    if (ch->closed)
        return -EPIPE;
    ch->closed = true;
    wake_all(&ch->senders, -EPIPE);
    wake_all(&ch->receivers, -EPIPE);
    return 0;
}

void co_chan_free(co_chan *ch) {
    if (!ch)
        return;
    co_chan_close(ch);
    free(ch);
}

size_t co_chan_len(const co_chan *ch) { return ch->count; }

/* ---- run ----------------------------------------------------------------- */

/* Cancels every live task; used when the loop ran dry with tasks still
 * blocked on each other, so that co_run always ends. */
static void kill_all(void) {
    for (size_t i = 0; i <= S.map.mask; i++) {
        task *t = S.map.slots[i].value;
        if (S.map.slots[i].key && t->state != CO_ZOMBIE) {
            t->killed = true;
            wake(t, -ECANCELED);
        }
    }
}

static void free_everything(void) {
    for (size_t i = 0; i <= S.map.mask; i++)
        if (S.map.slots[i].key)
            task_release(S.map.slots[i].value); /* zombies nobody reaped */
    taskmap_destroy(&S.map);
    coro_stack_pool_destroy(&S.pool);
    ev_loop_destroy(S.loop);
    memset(&S, 0, sizeof S);
}

int co_run(co_fn root, void *arg, const co_options *opts) {
    if (S.loop)
        return -EBUSY;
    if (!root)
        return -EINVAL;
    int err = coro_guard_install();
    if (err)
        return err;
    memset(&S, 0, sizeof S);
    S.loop = ev_loop_new(EVFLAG_AUTO);
    if (!S.loop)
        return -ENOMEM;
    if (taskmap_init(&S.map, 64) != 0) {
        ev_loop_destroy(S.loop);
        S.loop = NULL;
        return -ENOMEM;
    }
    size_t stack_size = opts && opts->stack_size ? opts->stack_size : DEFAULT_STACK_SIZE;
    size_t cache = opts && opts->stack_cache ? opts->stack_cache : DEFAULT_STACK_CACHE;
    coro_stack_pool_init(&S.pool, stack_size, cache);
    coro_init_thread(&S.main_co);
    list_init(&S.ready);
    list_init(&S.signal_waiters);

    ev_prepare_init(&S.prepare, prepare_cb);
    ev_prepare_start(S.loop, &S.prepare);
    ev_unref(S.loop);
    ev_check_init(&S.check, check_cb);
    ev_set_priority(&S.check, EV_MINPRI); /* after the I/O callbacks */
    ev_check_start(S.loop, &S.check);
    ev_unref(S.loop);
    ev_idle_init(&S.idle, idle_cb);

    S.root = task_create(root, arg, NULL, "root");
    if (!S.root) {
        err = -errno;
        free_everything();
        return err;
    }
    while (S.nlive) {
        ev_run(S.loop, 0);
        if (S.nlive && !S.nready)
            kill_all();
    }
    int status = S.root_status;
    for (int signo = 1; signo < 64; signo++)
        if (ev_is_active(&S.signals[signo]))
            co_signal_unwatch(signo);
    ev_ref(S.loop);
    ev_prepare_stop(S.loop, &S.prepare);
    ev_ref(S.loop);
    ev_check_stop(S.loop, &S.check);
    if (ev_is_active(&S.idle))
        ev_idle_stop(S.loop, &S.idle);
    free_everything();
    return status;
}
