#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/access.h"
#include "server/metrics_server.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/hostport.h"
#include "server/conn.h"
#include "server/echo.h"
#include "server/listeners.h"
#include "server/log.h"
#include "server/metrics_text.h"
#include "server/settings.h"
#include "server/udp.h"

enum {
    PUBLISH_EVERY_MS = 200,
    FDS_EVERY = 5,            /* publishes: descriptors are counted once a second */
    HEAD_MAX = 8 * 1024,      /* bytes of request head */
    SCRAPE_TIMEOUT_MS = 5000, /* to read the request, and again to answer it */
    LINGER_MS = 1000,         /* after an error: the client's rest is read, then closed */
    LINGER_MAX = 64 * 1024,
    MAX_SCRAPES = 4, /* at once; more get 503 */
    METRICS_BACKLOG = 64,
    EXHAUSTED_PAUSE_MS = 100
};

static struct {
    int fd; /* the listening socket, -1: none */
    char bound[72];
    co_tid publish_tid, accept_tid;
    co_tid scrapes[MAX_SCRAPES]; /* 0: free */
    co_tid parent;
    bool stopped;
} ms = {.fd = -1};

/* ---- the listener ------------------------------------------------------------ */

int metrics_listener_open(const config *cfg) {
    if (!cfg->metrics_enabled)
        return 0;
    char err[256];
    int fd = listeners_open_extra(&cfg->metrics, METRICS_BACKLOG, err, sizeof err);
    if (fd < 0) {
        log_error("metrics: %s", err);
        return fd;
    }
    struct sockaddr_storage bound; /* with the port the kernel chose for port 0 */
    socklen_t len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == 0)
        hostport_format(&bound, ms.bound, sizeof ms.bound);
    else
        snprintf(ms.bound, sizeof ms.bound, "%s", cfg->metrics.text);
    ms.fd = fd;
    log_info("metrics on http://%s/metrics", ms.bound);
    return 0;
}

void metrics_listener_close(void) {
    if (ms.fd >= 0)
        close(ms.fd);
    ms.fd = -1;
}

/* ---- publishing ---------------------------------------------------------------- */

void metrics_collect(metrics_values *v, bool fds_too) {
    static int64_t last_fds;
    conn_stats c;
    co_stats rt;
    conn_get_stats(&c);
    co_get_stats(&rt);
    memset(v, 0, sizeof *v);
    v->v[MV_ACCEPTED] = c.accepted;
    v->v[MV_CLOSED] = c.closed;
    v->v[MV_REJECTED_PER_IP] = c.rejected_per_ip;
    v->v[MV_REJECTED_ACCESS] = access_refused();
    v->v[MV_REJECTED_PROXY_HEADER] = c.rejected_proxy_header;
    v->v[MV_SPAWN_FAILURES] = listeners_spawn_failures();
    v->v[MV_ACCEPT_ERRORS] = listeners_accept_errors();
    v->v[MV_TIMED_OUT] = c.timed_out;
    v->v[MV_BYTES_IN] = c.bytes_in;
    v->v[MV_BYTES_OUT] = c.bytes_out;
    v->v[MV_RT_SPAWNS] = rt.spawned;
    v->v[MV_RT_SWITCHES] = rt.switches;
    v->v[MV_RT_BATCHES] = rt.batches;
    udp_stats u;
    udp_get_stats(&u);
    v->v[MV_UDP_IN] = u.datagrams_in;
    v->v[MV_UDP_OUT] = u.datagrams_out;
    v->v[MV_UDP_BYTES_IN] = u.bytes_in;
    v->v[MV_UDP_BYTES_OUT] = u.bytes_out;
    v->v[MV_UDP_DROP_SOURCE_PORT] = u.dropped_source_port;
    v->v[MV_UDP_DROP_RATE_LIMIT] = u.dropped_rate_limit;
    v->v[MV_UDP_DROP_SEND_FULL] = u.dropped_send_full;
    v->v[MV_UDP_DROP_SEND_ERROR] = u.dropped_send_error;
    v->v[MV_UDP_DROP_TRUNCATED] = u.dropped_truncated;
    v->v[MV_UDP_DROP_ACCESS] = u.dropped_access;
    v->v[MV_ACTIVE] = c.active;
    v->v[MV_TASKS] = rt.tasks;
    v->v[MV_PARKED] = rt.parked;
    v->v[MV_LISTENERS] = listeners_count();
    v->v[MV_UDP_LISTENERS] = listeners_udp_count();
    v->v[MV_ACCEPTS_PAUSED] = c.accepts_paused;
    v->v[MV_BUFFERS_CACHED] = echo_cached_buffer_bytes();
    int64_t rss, fds;
    metrics_process_figures(&rss, fds_too ? &fds : NULL);
    if (fds_too && fds >= 0)
        last_fds = fds;
    v->v[MV_RSS_BYTES] = rss > 0 ? (uint64_t)rss : 0;
    v->v[MV_OPEN_FDS] = (uint64_t)last_fds;
}

static void publish(bool fds_too) {
    metrics_values v;
    metrics_collect(&v, fds_too);
    metrics_publish(&v);
}

static int publish_task(void *arg) {
    (void)arg;
    for (unsigned n = 0;; n++) {
        publish(n % FDS_EVERY == 0);
        if (co_sleep(co_now() + PUBLISH_EVERY_MS) == -ECANCELED)
            return 0;
    }
}

/* ---- one scrape ------------------------------------------------------------------ */

static int write_all(int fd, const char *buf, size_t len, int64_t deadline) {
    ssize_t w = co_write(fd, buf, len, deadline);
    return w == (ssize_t)len ? 0 : w < 0 ? (int)w : -EIO;
}

static int respond(int fd, int status, const char *body, size_t len, bool head_only,
                   int64_t deadline) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, metrics_reason(status),
                     status == 200 ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8", len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    int r = write_all(fd, head, (size_t)n, deadline);
    if (r == 0 && !head_only && len)
        r = write_all(fd, body, len, deadline);
    return r;
}

static int respond_error(int fd, int status, int64_t deadline) {
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s\n", status, metrics_reason(status));
    return respond(fd, status, body, (size_t)n, false, deadline);
}

/* The whole service, as text: this process's numbers first, fresh. */
static int respond_metrics(int fd, bool head_only, int64_t deadline) {
    publish(true);
    metrics_snapshot *snap = metrics_snapshot_take();
    size_t len = 0;
    char *text = snap ? metrics_render(snap, PACKAGE_VERSION, &len) : NULL;
    free(snap);
    if (!text)
        return respond_error(fd, 503, deadline);
    int r = respond(fd, 200, text, len, head_only, deadline);
    free(text);
    return r;
}

/* Reads the request head: its status (0: the client left). */
static int read_request(int fd, char *buf, int64_t deadline, bool *head_only) {
    size_t n = 0;
    for (;;) {
        ssize_t got = co_read(fd, buf + n, HEAD_MAX - n, deadline);
        if (got == -ETIMEDOUT)
            return 408;
        if (got <= 0)
            return 0;
        n += (size_t)got;
        size_t end = metrics_head_end(buf, n);
        if (end) {
            buf[end] = '\0';
            return metrics_request_status(buf, head_only);
        }
        if (n == HEAD_MAX)
            return 431;
    }
}

/* After an error response: shut our side and read what the client still
 * sends, for a while, so that closing does not reset the connection
 * before it has read the response. */
static void linger(int fd) {
    char sink[4096];
    size_t total = 0;
    int64_t deadline = co_now() + LINGER_MS;
    if (shutdown(fd, SHUT_WR) != 0)
        return;
    for (ssize_t got; total < LINGER_MAX && (got = co_read(fd, sink, sizeof sink, deadline)) > 0;)
        total += (size_t)got;
}

static int scrape(int fd) {
    char *buf = malloc(HEAD_MAX + 1);
    if (!buf)
        return respond_error(fd, 503, co_now() + SCRAPE_TIMEOUT_MS);
    bool head_only = false;
    int status = read_request(fd, buf, co_now() + SCRAPE_TIMEOUT_MS, &head_only);
    free(buf);
    int64_t deadline = co_now() + SCRAPE_TIMEOUT_MS;
    if (status == 0)
        return 0;
    if (status == 200)
        return respond_metrics(fd, head_only, deadline);
    log_debug("metrics: answered %d %s", status, metrics_reason(status));
    int r = respond_error(fd, status, deadline);
    if (r == 0)
        linger(fd);
    return r;
}

static int scrape_task(void *arg) {
    int fd = (int)(intptr_t)arg;
    int r = ms.stopped ? -ECANCELED : scrape(fd);
    co_close(fd);
    for (int i = 0; i < MAX_SCRAPES; i++)
        if (ms.scrapes[i] == co_self())
            ms.scrapes[i] = 0;
    if (r < 0 && r != -ECANCELED && r != -EPIPE && r != -ECONNRESET && r != -ETIMEDOUT)
        log_debug("metrics: scrape: %s", strerror(-r));
    return 0;
}

/* ---- accepting ------------------------------------------------------------------ */

static co_tid *free_scrape(void) {
    for (int i = 0; i < MAX_SCRAPES; i++)
        if (!ms.scrapes[i])
            return &ms.scrapes[i];
    return NULL;
}

/* Over the cap (or no task could start): a 503 if the socket takes it at
 * once, then closed. */
static void refuse(int fd) {
    char sink[1024]; /* what the client sent already: unread, it would make close() a reset */
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Retry-After: 1\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < 64 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    if (send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("metrics: 503: %s", strerror(errno));
    close(fd);
}

static void start_scrape(int fd) {
    co_tid *slot = free_scrape();
    if (!slot) {
        refuse(fd);
        return;
    }
    co_spawn_attr attr = {.name = "scrape", .parent = ms.parent};
    int err = co_spawn_with(slot, scrape_task, (void *)(intptr_t)fd, &attr);
    if (err) {
        *slot = 0;
        refuse(fd);
    }
}

static int accept_ready(void) {
    for (;;) {
        int fd = accept4(ms.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            start_scrape(fd);
            continue;
        }
        switch (listeners_accept_failure(errno)) {
        case ACCEPT_DRAINED:
            return 0;
        case ACCEPT_RETRY:
            continue;
        case ACCEPT_EXHAUSTED:
            return co_sleep(co_now() + EXHAUSTED_PAUSE_MS) == -ECANCELED ? -ECANCELED : 0;
        case ACCEPT_FATAL:
            return -errno;
        }
    }
}

static int accept_task(void *arg) {
    (void)arg;
    int r = 0;
    while (r == 0) {
        r = co_wait_fd(ms.fd, CO_READ, CO_NEVER);
        if (r > 0)
            r = accept_ready();
    }
    if (r != -ECANCELED)
        log_error("metrics: accept: %s; no more scrapes in this process", strerror(-r));
    return 0;
}

/* ---- start and stop ------------------------------------------------------------ */

int metrics_server_start(co_tid parent) {
    ms.parent = parent;
    ms.stopped = false;
    co_spawn_attr attr = {.name = "metrics", .parent = parent};
    int err = co_spawn_with(&ms.publish_tid, publish_task, NULL, &attr);
    if (!err && ms.fd >= 0) {
        co_spawn_attr aattr = {.name = "metrics-accept", .parent = parent};
        err = co_spawn_with(&ms.accept_tid, accept_task, NULL, &aattr);
    }
    if (err)
        log_error("metrics: cannot start: %s", strerror(-err));
    return err;
}

void metrics_server_stop(void) {
    publish(false); /* again at the very end: what closed during the grace period counts */
    if (ms.stopped)
        return;
    ms.stopped = true;
    if (ms.publish_tid)
        co_kill(ms.publish_tid);
    if (ms.accept_tid)
        co_kill(ms.accept_tid);
    for (int i = 0; i < MAX_SCRAPES; i++)
        if (ms.scrapes[i])
            co_kill(ms.scrapes[i]);
    if (ms.fd >= 0)
        co_close(ms.fd);
    ms.fd = -1;
    ms.publish_tid = ms.accept_tid = 0;
}
