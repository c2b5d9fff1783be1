/* rt/signal.c: signals delivered through the loop. Owns the signal
 * watchers, the pending set and the tasks waiting in co_signal_wait. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <signal.h>

#include "sched.h"

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop, (void)revents;
    rt_sched.signals_pending |= 1ull << w->signum;
    task *t = list_empty(&rt_sched.signal_waiters)
                  ? NULL
                  : container_of(rt_sched.signal_waiters.next, task, qlink);
    if (t)
        rt_wake(t, 0);
}

static bool watchable(int signo) {
    return signo > 0 && signo < 64 && signo != SIGKILL && signo != SIGSTOP;
}

int co_signal_watch(int signo) {
    if (!rt_sched.loop)
        return -EPERM;
    if (!watchable(signo))
        return -EINVAL;
    ev_signal *w = &rt_sched.signals[signo];
    if (!ev_is_active(w)) {
        ev_signal_init(w, signal_cb, signo);
        ev_signal_start(rt_sched.loop, w);
        ev_unref(rt_sched.loop); /* a signal alone is no reason to keep running */
    }
    return 0;
}

int co_signal_unwatch(int signo) {
    if (!rt_sched.loop)
        return -EPERM;
    if (!watchable(signo))
        return -EINVAL;
    ev_signal *w = &rt_sched.signals[signo];
    if (ev_is_active(w)) {
        ev_ref(rt_sched.loop);
        ev_signal_stop(rt_sched.loop, w);
    }
    rt_sched.signals_pending &= ~(1ull << signo);
    return 0;
}

int co_signal_wait(int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    for (;;) {
        if (self->killed)
            return -ECANCELED;
        if (rt_sched.signals_pending) {
            int signo = __builtin_ctzll(rt_sched.signals_pending);
            rt_sched.signals_pending &= ~(1ull << signo);
            return signo;
        }
        int r = may_block(self, deadline);
        if (r == 0)
            r = rt_block(self, &rt_sched.signal_waiters, CO_WAIT_SIGNAL, deadline);
        if (r)
            return r;
    }
}

void rt_signals_unwatch_all(void) {
    for (int signo = 1; signo < 64; signo++)
        if (ev_is_active(&rt_sched.signals[signo]))
            co_signal_unwatch(signo);
}
