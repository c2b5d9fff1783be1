#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/echo.h"

#include "server/conn.h"
#include "server/log.h"
#include "server/proxyconn.h"
#include "server/settings.h"

enum {
    /* Buffers kept for reuse, in bytes: 256 of the default 16 KiB. Larger
     * buffers fit fewer times; one over the bound is never kept. */
    BUFFER_CACHE_BYTES = 4 * 1024 * 1024,
    DRAIN_FIRST_PAUSE_MS = 1, /* the first look at a draining send queue */
    DRAIN_MAX_PAUSE_MS = 250
};

/* Buffers of the current buffer_size, kept for reuse; a buffer of another
 * size (from before a reload) is freed on return. low is the fewest the
 * cache held since the last trim: that many sat unused all along. */
static struct {
    void **free;
    size_t count, capacity, low;
    size_t size;
} buffers;

static void *buffer_get(size_t size) {
    if (buffers.size != size || !buffers.count)
        return malloc(size);
    void *buf = buffers.free[--buffers.count];
    if (buffers.count < buffers.low)
        buffers.low = buffers.count;
    return buf;
}

static void buffers_drain(void) {
    while (buffers.count)
        free(buffers.free[--buffers.count]);
    free(buffers.free);
    buffers.free = NULL;
    buffers.capacity = buffers.low = 0;
}

/* A cache sized for size: capacity 0 when one buffer is over the bound. */
static void buffers_resize(size_t size) {
    buffers_drain();
    buffers.size = size;
    size_t capacity = BUFFER_CACHE_BYTES / size;
    if (capacity && (buffers.free = malloc(capacity * sizeof *buffers.free)))
        buffers.capacity = capacity;
}

static void buffer_put(void *buf, size_t size) {
    if (buffers.size != settings()->buffer_size) /* a reload changed the size */
        buffers_resize(settings()->buffer_size);
    if (size == buffers.size && buffers.count < buffers.capacity)
        buffers.free[buffers.count++] = buf;
    else
        free(buf);
}

void echo_release_buffers(void) { buffers_drain(); }

size_t echo_cached_buffer_bytes(void) { return buffers.count * buffers.size; }

void echo_trim_buffers(void) {
    bool freed = buffers.low > 0;
    while (buffers.low) {
        buffers.low--;
        free(buffers.free[--buffers.count]);
    }
    buffers.low = buffers.count;
    if (freed)
        malloc_trim(0); /* glibc keeps freed heap pages otherwise */
}

static int64_t deadline_after(int64_t ms) { return ms ? co_now() + ms : CO_NEVER; }

/* One read, and all of it written back: 1 to go on, 0 at the client's EOF,
 * or a negative errno. Reading once per readiness (level-triggered, so any
 * rest is reported again) costs no read that ends in EAGAIN, and a client
 * that floods us goes back through the loop after every buffer, so every
 * other connection gets its turn. */
static int echo_once(connection *c, char *buf, size_t size, int64_t deadline) {
    ssize_t n;
    while ((n = read(c->fd, buf, size)) < 0 && errno == EINTR)
        ;
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
    conn_count_in(c, (size_t)n);
    /* Reading stops while the write is pending, so a client that never
     * reads costs this one buffer plus the kernel's socket buffers. */
    for (ssize_t done = 0; done < n;) {
        /* A short count means an error stopped it; the next call says which. */
        ssize_t w = co_write(c->fd, buf + done, (size_t)(n - done), deadline);
        if (w < 0)
            return (int)w;
        conn_count_out(c, (size_t)w);
        done += w;
    }
    return 1;
}

static int serve(connection *c, int64_t idle_ms, size_t size) {
    for (;;) {
        /* One deadline serves the wait and the echo's write: a peer that
         * neither sends nor takes its echo for idle_ms is idle. */
        int64_t deadline = deadline_after(idle_ms);
        int r = co_wait_fd(c->fd, CO_READ, deadline);
        if (r < 0)
            return r;
        char *buf = buffer_get(size);
        if (!buf)
            return -ENOMEM;
        r = echo_once(c, buf, size, deadline);
        buffer_put(buf, size);
        if (r <= 0)
            return r;
    }
}

/* The count of bytes in fd's send queue not yet acknowledged, or -errno. */
static int unacknowledged(int fd) {
    int queued;
    return ioctl(fd, SIOCOUTQ, &queued) == 0 ? queued : -errno;
}

/* After the client's EOF everything read has been written, but it may still
 * sit in the send queue: a close() now would hand the kernel an orphan that
 * holds it outside every limit. Instead shut our side down and keep the
 * connection, slot and all, until the client has taken it all, or has taken
 * nothing of it for idle_ms. 0 when drained, -ETIMEDOUT, -ECANCELED. */
static int drain_after_eof(connection *c, int64_t idle_ms) {
    int queued = unacknowledged(c->fd);
    if (queued <= 0) /* the common case: nothing left to wait for */
        return queued < 0 && queued != -ENOTCONN ? queued : 0;
    if (shutdown(c->fd, SHUT_WR) != 0)
        return errno == ENOTCONN ? 0 : -errno; /* reset meanwhile: nothing to keep */
    int64_t deadline = deadline_after(idle_ms);
    int64_t pause = DRAIN_FIRST_PAUSE_MS;
    /* No event says "send queue empty": look again with a growing pause. */
    for (int last = INT_MAX; (queued = unacknowledged(c->fd)) > 0; last = queued) {
        if (queued < last) /* the client reads: its idle time starts over */
            deadline = deadline_after(idle_ms);
        int64_t wake = co_now() + pause;
        if (deadline != CO_NEVER && wake >= deadline)
            wake = deadline;
        if (co_sleep(wake) == -ECANCELED)
            return -ECANCELED;
        if (deadline != CO_NEVER && co_now() >= deadline)
            return -ETIMEDOUT;
        pause = pause * 2 < DRAIN_MAX_PAUSE_MS ? pause * 2 : DRAIN_MAX_PAUSE_MS;
    }
    return queued < 0 && queued != -ENOTCONN ? queued : 0;
}

/* Data still queued: a reset frees it now (close would leave an orphan). */
static void close_connection(connection *c, bool reset) {
    struct linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
    if (reset)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    co_close(c->fd);
}

/* Why the handler ended (r: serve's, then the drain's), as the
 * connection log names it. */
static const char *close_reason(int r) {
    switch (r) {
    case 0:
        return CONNLOG_EOF;
    case -ECONNRESET:
    case -EPIPE:
        return CONNLOG_RESET;
    case -ETIMEDOUT:
        return CONNLOG_IDLE_TIMEOUT;
    case -ECANCELED:
        return CONNLOG_SHUTDOWN;
    default:
        return CONNLOG_ERROR;
    }
}

/* A connection closed before it was served: no bytes echoed, nothing
 * queued; reason as the connection log names it. */
static int refuse(connection_start *start, const char *reason) {
    if (start->log.on)
        connlog_closed(&start->log, 0, 0, reason, 0);
    close_connection(&start->conn, false);
    conn_release(&start->conn);
    free(start);
    return 0;
}

int echo_handle_client(void *arg) {
    connection_start *start = arg;
    connection *c = &start->conn;
    c->tid = co_self();
    conn_register(c);

    /* Spawned, but first run only after every connection was killed. */
    if (conn_all_killed())
        return refuse(start, CONNLOG_SHUTDOWN);
    const char *refused = start->proxy_protocol ? proxyconn_accept(c, &start->log) : NULL;
    if (refused)
        return refuse(start, refused);
    int r = serve(c, start->idle_timeout_ms, start->buffer_size);
    if (r == 0)
        r = drain_after_eof(c, start->idle_timeout_ms);
    int status = 0;
    switch (r) {
    case 0:           /* the client closed its side and took every byte back */
    case -ECONNRESET: /* resets and broken pipes are how clients leave */
    case -EPIPE:
    case -ECANCELED:  /* shutdown_grace ran out */
        break;
    case -ETIMEDOUT:
        conn_count_timeout();
        break;
    default:
        log_warn("connection %llu: %s", (unsigned long long)c->tid, strerror(-r));
        status = -r;
    }
    if (start->log.on) /* the one check the close path makes with the log off */
        connlog_closed(&start->log, c->bytes_in, c->bytes_out, close_reason(r),
                       r == -ECONNRESET || r == -EPIPE || status ? -r : 0);
    close_connection(c, r != 0 && unacknowledged(c->fd) > 0);
    conn_release(c);
    free(start);
    return status;
}
