/* rt/io.c: fd waits, co_read, co_write and co_close. Owns each task's io
 * watcher. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "sched.h"

/* A task's watcher stays armed between its waits on the same fd (starting
 * one costs an epoll_ctl); it is stopped when it fires with nobody waiting. */
void rt_task_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    task *t = container_of(w, task, io);
    /* Woken but not yet run (the batch budget ran out): stay armed, the task
     * is about to read. A task that blocks on anything else disarms it. */
    if (t->state == CO_BLOCKED && t->waiting == CO_WAIT_FD)
        rt_wake(t, (revents & EV_READ ? CO_READ : 0) | (revents & EV_WRITE ? CO_WRITE : 0));
}

/* With the deadline gone, a wait still reports an fd that is ready now. */
static int poll_now(int fd, int want) {
    struct pollfd p = {
        .fd = fd,
        .events = (short)((want & EV_READ ? POLLIN : 0) | (want & EV_WRITE ? POLLOUT : 0))};
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
    int ready =
        (p.revents & POLLIN || bad ? CO_READ : 0) | (p.revents & POLLOUT || bad ? CO_WRITE : 0);
    ready &= (want & EV_READ ? CO_READ : 0) | (want & EV_WRITE ? CO_WRITE : 0);
    return ready ? ready : -ETIMEDOUT;
}

int co_wait_fd(int fd, int events, int64_t deadline) {
    task *self = rt_sched.current;
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
        ev_io_stop(rt_sched.loop, io);
    if (!ev_is_active(io)) {
        ev_io_set(io, fd, want);
        ev_io_start(rt_sched.loop, io);
    }
    return rt_block(self, NULL, CO_WAIT_FD, deadline);
}

int co_close(int fd) {
    task *self = rt_sched.current;
    if (self && ev_is_active(&self->io) && self->io.fd == fd)
        ev_io_stop(rt_sched.loop, &self->io);
    return close(fd) == 0 ? 0 : -errno;
}

ssize_t co_read(int fd, void *buf, size_t n, int64_t deadline) {
    task *self = rt_sched.current;
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
    task *self = rt_sched.current;
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
