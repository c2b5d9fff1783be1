/* The connection handler: echoes every byte back, in order, with one buffer
 * that exists only while the connection has data in flight. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/log.h"
#include "server/server.h"

enum { BUFFERS_CACHED = 256 };

/* Buffers of the current buffer_size, kept for reuse; a buffer of another
 * size (from before a reload) is freed on return. */
static struct {
    void *free[BUFFERS_CACHED];
    size_t count;
    size_t size;
} buffers;

static void *buffer_get(size_t size) {
    if (buffers.size == size && buffers.count)
        return buffers.free[--buffers.count];
    return malloc(size);
}

static void buffers_drain(void) {
    while (buffers.count)
        free(buffers.free[--buffers.count]);
}

static void buffer_put(void *buf, size_t size) {
    if (buffers.size != srv.cfg.buffer_size) { /* a reload changed the size */
        buffers_drain();
        buffers.size = srv.cfg.buffer_size;
    }
    if (size == buffers.size && buffers.count < BUFFERS_CACHED)
        buffers.free[buffers.count++] = buf;
    else
        free(buf);
}

void echo_release_buffers(void) { buffers_drain(); }

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
    srv.stats.bytes_in += (uint64_t)n;
    /* Reading stops while the write is pending, so a client that never
     * reads costs this one buffer plus the kernel's socket buffers. */
    for (ssize_t done = 0; done < n;) {
        /* A short count means an error stopped it; the next call says which. */
        ssize_t w = co_write(c->fd, buf + done, (size_t)(n - done), deadline);
        if (w < 0)
            return (int)w;
        srv.stats.bytes_out += (uint64_t)w;
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

int echo_handle_client(void *arg) {
    connection_start start = *(connection_start *)arg;
    free(arg);
    connection c = {.tid = co_self(), .fd = start.fd, .peer = start.peer};
    list_push_back(&srv.connections, &c.link);

    /* Spawned, but first run only after every connection was killed. */
    int r = srv.connections_killed ? -ECANCELED : serve(&c, start.idle_timeout_ms, start.buffer_size);
    int status = 0;
    switch (r) {
    case 0:           /* the client closed its side; everything was echoed */
    case -ECONNRESET: /* resets and broken pipes are how clients leave */
    case -EPIPE:
    case -ECANCELED:  /* shutdown_grace ran out */
        break;
    case -ETIMEDOUT:
        srv.stats.timed_out++;
        break;
    default:
        log_warn("connection %llu: %s", (unsigned long long)c.tid, strerror(-r));
        status = -r;
    }
    co_close(c.fd);
    list_remove(&c.link);
    ipcount_remove(&srv.per_ip, &c.peer);
    srv.active--;
    srv.stats.closed++;
    accept_gate_open();
    return status;
}

void echo_kill_all(void) {
    for (list_link *l = srv.connections.next; l != &srv.connections; l = l->next)
        co_kill(container_of(l, connection, link)->tid);
}
