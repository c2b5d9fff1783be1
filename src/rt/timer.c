/* rt/timer.c: the clock, deadlines and co_sleep. Owns each task's timer
 * watcher. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <time.h>

#include "sched.h"

int64_t co_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Arms the task's timer to fire no later than deadline. A timer still armed
 * from an earlier wait is kept when it fires first: rt_task_timer_cb then
 * re-arms it for the rest. Waits that push their deadline forward (an idle
 * timeout renewed on every read) so cost no timer-heap work at all. */
void rt_arm_timer(task *t, int64_t deadline) {
    int64_t now = co_now();
    ev_timer *w = &t->timer;
    if (ev_is_active(w)) {
        if (now + (int64_t)(ev_timer_remaining(rt_sched.loop, w) * 1e3) <= deadline)
            return;
        ev_timer_stop(rt_sched.loop, w);
    }
    ev_timer_set(w, (double)(deadline - now) / 1e3, 0.);
    ev_timer_start(rt_sched.loop, w);
}

void rt_task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
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
    rt_wake(t, -ETIMEDOUT);
}

int co_sleep(int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    int r = may_block(self, deadline);
    if (r == 0)
        r = rt_block(self, NULL, CO_WAIT_SLEEP, deadline);
    return r == -ETIMEDOUT ? 0 : r;
}
