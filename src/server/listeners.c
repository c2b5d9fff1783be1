#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/listeners.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/backoff.h"
#include "common/hostport.h"
#include "server/access.h"
#include "server/conn.h"
#include "server/connlog.h"
#include "server/echo.h"
#include "server/log.h"
#include "server/settings.h"
#include "server/udp.h"

enum {
    EXHAUSTED_PAUSE_MS = 100, /* accept's descriptors ran out */
    EXHAUSTED_LOG_EVERY_MS = 1000,
    BACKOFF_FIRST_MS = 100, /* first restart delay of a dead accept task */
    BACKOFF_MAX_MS = 5000,
    HEALTHY_AFTER_MS = 1000 /* up this long: the next death starts over */
};

enum listener_state {
    LISTENER_FREE,      /* an unused slot */
    LISTENER_IDLE,      /* open, no accept task: not started yet, or due to restart */
    LISTENER_ACCEPTING, /* open, its accept task running */
    LISTENER_CLOSING    /* removed or shutting down: the accept task releases it */
};

typedef struct listener {
    enum listener_state state;
    bool announced; /* "listening on" was logged: so will its closing be */
    int fd;
    listen_addr addr;   /* as configured (port may be 0) */
    char bound[72];     /* with the real port */
    co_tid accept_tid;  /* while accepting (or closing) */
    int64_t restart_at; /* when a dead accept task is due to restart */
    backoff restarts;
} listener;

/* How a socket shares its port: not at all, or with SO_REUSEPORT as the
 * first of the group (which checks that no other process listens there) or
 * joining it. */
enum sharing { ALONE, REUSEPORT_FIRST, REUSEPORT_JOIN };

static struct {
    listener l[CONFIG_MAX_LISTEN];
    co_tid parent;           /* of the accept tasks: the reaper */
    uint64_t accept_errors;  /* accepts that failed or whose handler could not start */
    uint64_t spawn_failures; /* handlers that could not start */
} t;

/* ---- sockets ------------------------------------------------------------------ */

/* "127.0.0.1:7007", "[::1]:7007"; UDP ones after "udp://". */
static void format_bound(listener *l) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    const char *scheme = l->addr.udp ? "udp://" : "";
    unsigned port = 0;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            port = ntohs(s6->sin6_port);
            snprintf(l->bound, sizeof l->bound, "%s[%s]:%u", scheme, host, port);
            return;
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
    }
    snprintf(l->bound, sizeof l->bound, "%s%s:%u", scheme, host, port);
}

/* Also, before a SO_REUSEPORT group is made: SO_REUSEPORT would let us join
 * another process's listener on the same port (another coechod, same
 * user) and silently share its traffic, so a plain bind first must
 * succeed. */
int listeners_try_bind(const listen_addr *addr) {
    int fd = socket(addr->addr.ss_family, (addr->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    int one = 1, r = 0;
    if (fd < 0)
        return -errno;
    /* Not on UDP, where it would let two sockets share the port. */
    if ((!addr->udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) ||
        (addr->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) != 0)
        r = -errno;
    close(fd);
    return r;
}

/* A listening socket for addr (for UDP, a bound one): the descriptor, or
 * -errno with err. */
static int open_socket(const listen_addr *addr, int backlog, enum sharing sharing, char *err,
                       size_t errlen) {
    int family = addr->addr.ss_family;
    bool udp = addr->udp;
    int fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    const char *step = "socket";
    if (fd < 0)
        goto fail;
    step = "bind";
    if (sharing == REUSEPORT_FIRST && hostport_port(&addr->addr) != 0 &&
        (errno = -listeners_try_bind(addr)) != 0)
        goto fail;
    /* TCP only: on UDP it would let another socket bind the same port. */
    step = "SO_REUSEADDR";
    if (!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    /* Accepted sockets inherit it: urgent (MSG_OOB) bytes stay in the
     * stream and are echoed like any other, not dropped. */
    step = "SO_OOBINLINE";
    if (!udp && setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one) != 0)
        goto fail;
    step = "SO_REUSEPORT";
    if (sharing != ALONE && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    step = "IPV6_V6ONLY";
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto fail;
    step = "bind";
    if (bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) != 0)
        goto fail;
    step = "listen";
    if (!udp && listen(fd, backlog) != 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s: %s: %s", addr->text, step, strerror(e));
    if (fd >= 0)
        close(fd);
    return -e;
}

int listeners_open_extra(const listen_addr *addr, int backlog, char *err, size_t errlen) {
    return open_socket(addr, backlog, ALONE, err, errlen);
}

static void take(listener *l, int fd, const listen_addr *addr) {
    memset(l, 0, sizeof *l);
    l->state = LISTENER_IDLE;
    l->fd = fd;
    l->addr = *addr;
    l->restarts = BACKOFF_POLICY(BACKOFF_FIRST_MS, BACKOFF_MAX_MS, HEALTHY_AFTER_MS);
    format_bound(l);
}

static listener *free_slot(void) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (t.l[i].state == LISTENER_FREE)
            return &t.l[i];
    return NULL;
}

/* The one way a listener ends: its socket closed (co_close: its accept
 * task's watcher may be armed), its slot freed. */
static void release(listener *l) {
    co_close(l->fd);
    if (l->announced)
        log_info("closed listener %s", l->bound);
    memset(l, 0, sizeof *l);
}

bool listeners_are_defaults(const config *cfg) {
    listen_addr defaults[CONFIG_DEFAULT_NLISTEN];
    return cfg->nlisten == config_default_listen(defaults) &&
           memcmp(cfg->listen, defaults, cfg->nlisten * sizeof cfg->listen[0]) == 0;
}

int listeners_open(const config *cfg, bool reuse_port) {
    char err[256];
    bool defaults = listeners_are_defaults(cfg);
    size_t opened = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        int fd = open_socket(&cfg->listen[i], cfg->backlog, reuse_port ? REUSEPORT_FIRST : ALONE,
                             err, sizeof err);
        if (fd >= 0) {
            take(&t.l[opened], fd, &cfg->listen[i]);
            t.l[opened].announced = true;
            log_info("listening on %s", t.l[opened++].bound);
        } else if (defaults && (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT)) {
            log_warn("%s; going on without it", err);
        } else {
            log_error("%s", err);
            return fd;
        }
    }
    if (!opened) {
        log_error("no listener could be opened");
        return -EADDRNOTAVAIL;
    }
    return 0;
}

void listeners_forget(void) { memset(&t, 0, sizeof t); }

const char *listeners_adopt(int fd, bool proxy_protocol) {
    listener *l = free_slot();
    if (!l)
        return NULL;
    listen_addr addr = {.addrlen = sizeof addr.addr, .proxy_protocol = proxy_protocol};
    int one = 1, type = SOCK_STREAM;
    socklen_t typelen = sizeof type;
    if (getsockname(fd, (struct sockaddr *)&addr.addr, &addr.addrlen) != 0)
        addr.addrlen = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &typelen) != 0)
        log_warn("descriptor %d: SO_TYPE: %s; taken for TCP", fd, strerror(errno));
    addr.udp = type == SOCK_DGRAM;
    take(l, fd, &addr);
    l->announced = true; /* by the caller, who knows who passed it */
    _Static_assert(sizeof l->addr.text == sizeof l->bound, "bound fits the address text");
    memcpy(l->addr.text, l->bound, sizeof l->bound);
    if (!addr.udp && setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one) != 0)
        log_warn("%s: SO_OOBINLINE: %s; urgent data will not be echoed", l->bound, strerror(errno));
    return l->bound;
}

size_t listeners_count(void) {
    size_t n = 0;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        n += t.l[i].state != LISTENER_FREE;
    return n;
}

size_t listeners_udp_count(void) {
    size_t n = 0;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        n += t.l[i].state != LISTENER_FREE && t.l[i].addr.udp;
    return n;
}

int listeners_fd(size_t i) { return t.l[i].fd; }
bool listeners_proxy_protocol(size_t i) { return t.l[i].addr.proxy_protocol; }

bool listeners_configured_proxy(const config *cfg, int fd) {
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0)
        return false;
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].addrlen == len && memcmp(&cfg->listen[i].addr, &bound, len) == 0)
            return cfg->listen[i].proxy_protocol;
    return false;
}
const char *listeners_bound(size_t i) { return t.l[i].bound; }

int listeners_open_copy(size_t i, int backlog, char *err, size_t errlen) {
    listen_addr bound = {.addrlen = sizeof bound.addr};
    if (getsockname(t.l[i].fd, (struct sockaddr *)&bound.addr, &bound.addrlen) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: getsockname: %s", t.l[i].bound, strerror(e));
        return -e;
    }
    snprintf(bound.text, sizeof bound.text, "%s", t.l[i].bound);
    bound.udp = t.l[i].addr.udp;
    return open_socket(&bound, backlog, REUSEPORT_JOIN, err, errlen);
}

/* ---- accepting ------------------------------------------------------------- */

/* Something accepting needs ran out: descriptors (accept failed) or
 * memory and mappings for a handler (its connection was closed). Each
 * time is counted and accepting pauses; each kind says so at most once a
 * second, with how many times it happened since it last did. 0, or
 * -ECANCELED. */
typedef struct exhaustion {
    int64_t last_logged;
    uint64_t unlogged; /* times since the last line */
} exhaustion;

static exhaustion descriptors_out = {.last_logged = -EXHAUSTED_LOG_EVERY_MS};
static exhaustion handlers_out = {.last_logged = -EXHAUSTED_LOG_EVERY_MS};

static int pause_accepting(listener *l, exhaustion *x, const char *what, int err) {
    int64_t now = co_now();
    t.accept_errors++;
    x->unlogged++;
    if (now - x->last_logged >= EXHAUSTED_LOG_EVERY_MS) {
        x->last_logged = now;
        log_warn("%s: %s: %s; pausing accepts for %d ms (%llu times since the last report)",
                 l->bound, what, strerror(err), EXHAUSTED_PAUSE_MS,
                 (unsigned long long)x->unlogged);
        x->unlogged = 0;
    }
    return co_sleep(now + EXHAUSTED_PAUSE_MS);
}

/* A connection closed as soon as accepted, in the connection log. */
static void log_refused(int fd, const struct sockaddr *peer, socklen_t peerlen,
                        const char *reason) {
    connlog refused;
    connlog_accepted(&refused, fd, peer, peerlen);
    connlog_closed(&refused, 0, 0, reason, 0);
}

/* Starts a handler for the accepted fd, or closes it. 0 (started, or
 * refused for a reason of its own: the access list, over
 * max_connections_per_ip), or a
 * negative errno (-ENOMEM, -EAGAIN) when memory or mappings ran out: the
 * connection is closed and its admission taken back; the caller pauses. */
static int start_connection(listener *l, int fd, const struct sockaddr *peer, socklen_t peerlen) {
    /* Behind a balancer the socket's peer is the balancer: the access list
     * and the per-IP count wait for the client's address in the header
     * (proxyconn.c). */
    bool proxy = l->addr.proxy_protocol;
    if (!proxy && !access_check(&l->addr.addr, false, l->bound, peer)) {
        log_refused(fd, peer, peerlen, CONNLOG_ACCESS_DENIED);
        close(fd);
        return 0;
    }
    connection_start *start = malloc(sizeof *start);
    int one = 1;
    if (!start) {
        close(fd);
        t.spawn_failures++;
        return -ENOMEM;
    }
    int r = conn_admit(proxy ? NULL : peer, &start->conn.peer);
    if (r == -EDQUOT)
        log_refused(fd, peer, peerlen, CONNLOG_PER_IP_LIMIT);
    if (r != 0) {
        free(start);
        close(fd);
        if (r != -EDQUOT) {
            t.spawn_failures++;
            return r; /* no memory to count connections per address */
        }
        log_debug("%s: connection rejected: over max_connections_per_ip", l->bound);
        return 0;
    }
    connlog_accepted(&start->log, fd, peer, peerlen);
    start->conn.fd = fd;
    start->conn.keyed = !proxy;
    start->proxy_protocol = proxy;
    start->idle_timeout_ms = settings()->idle_timeout_ms;
    start->buffer_size = settings()->buffer_size;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
    co_spawn_attr attr = {.name = "client", .parent = t.parent};
    int err = co_spawn_with(NULL, echo_handle_client, start, &attr);
    if (!err)
        return 0;
    conn_unadmit(proxy ? NULL : &start->conn.peer);
    free(start);
    close(fd);
    t.spawn_failures++;
    if (err == -ENOMEM || err == -EAGAIN)
        return err;
    log_error("%s: cannot start a handler: %s", l->bound, strerror(-err));
    t.accept_errors++;
    return 0;
}

enum accept_failure listeners_accept_failure(int err) {
    switch (err) {
    case EAGAIN:
#if EAGAIN != EWOULDBLOCK
    case EWOULDBLOCK:
#endif
        return ACCEPT_DRAINED;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM: /* a firewall said no to this one */
        return ACCEPT_RETRY;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return ACCEPT_EXHAUSTED;
    default:
        return ACCEPT_FATAL;
    }
}

/* Accepts until the backlog is empty or the connection limit is reached.
 * 0 to keep going, or a negative errno that ends the accept task. */
static int accept_ready(listener *l) {
    while (l->state != LISTENER_CLOSING && conn_slot_free()) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int r = start_connection(l, fd, (struct sockaddr *)&peer, len);
            if (r < 0 &&
                pause_accepting(l, &handlers_out, "cannot start a handler", -r) == -ECANCELED)
                return -ECANCELED;
            continue;
        }
        switch (listeners_accept_failure(errno)) {
        case ACCEPT_DRAINED:
            return 0;
        case ACCEPT_RETRY:
            continue;
        case ACCEPT_EXHAUSTED:
            if (pause_accepting(l, &descriptors_out, "accept", errno) == -ECANCELED)
                return -ECANCELED;
            return 0;
        case ACCEPT_FATAL:
            return -errno;
        }
    }
    return 0;
}

static int accept_task(void *arg) {
    listener *l = arg;
    int r = 0;
    while (r == 0) {
        r = conn_wait_slot();
        if (r == 0)
            r = co_wait_fd(l->fd, CO_READ, CO_NEVER);
        if (r > 0)
            r = accept_ready(l);
    }
    if (l->state == LISTENER_CLOSING) {
        release(l);
        return 0;
    }
    if (r != -ECANCELED)
        log_error("%s: accept: %s", l->bound, strerror(-r));
    return -r;
}

/* A UDP listener's task: it serves the socket until cancelled. */
static int udp_task(void *arg) {
    listener *l = arg;
    int r = udp_serve(l->fd, l->bound);
    if (l->state == LISTENER_CLOSING) {
        release(l);
        return 0;
    }
    return -r;
}

/* ---- accept tasks: start, stop, restart --------------------------------------- */

static void schedule_restart(listener *l, int status) {
    l->state = LISTENER_IDLE;
    l->accept_tid = 0;
    l->restart_at = co_now() + backoff_next(&l->restarts, co_now());
    log_warn("accept task of %s exited (%s); restarting it in %lld ms", l->bound,
             status ? strerror(status) : "no error", (long long)l->restarts.delay_ms);
}

static void start_accepting(listener *l) {
    co_spawn_attr attr = {.name = l->addr.udp ? "udp" : "accept", .parent = t.parent};
    int err = co_spawn_with(&l->accept_tid, l->addr.udp ? udp_task : accept_task, l, &attr);
    if (!err) {
        l->state = LISTENER_ACCEPTING;
        backoff_started(&l->restarts, co_now());
    } else {
        schedule_restart(l, -err);
    }
}

static void stop(listener *l) {
    if (l->state == LISTENER_ACCEPTING) {
        l->state = LISTENER_CLOSING;
        co_kill(l->accept_tid); /* it releases the listener */
    } else {
        release(l); /* no accept task: nobody else owns the fd */
    }
}

void listeners_start(co_tid parent) {
    t.parent = parent;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (t.l[i].state == LISTENER_IDLE)
            start_accepting(&t.l[i]);
}

void listeners_stop(void) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (t.l[i].state == LISTENER_IDLE || t.l[i].state == LISTENER_ACCEPTING)
            stop(&t.l[i]);
}

static listener *listener_of_task(co_tid tid) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (t.l[i].state >= LISTENER_ACCEPTING && t.l[i].accept_tid == tid)
            return &t.l[i];
    return NULL;
}

bool listeners_task_exited(co_tid tid, int status, bool stopping) {
    listener *l = listener_of_task(tid);
    if (!l)
        return false;
    if (l->state == LISTENER_CLOSING) /* it died on its own before it saw the stop */
        release(l);
    else if (!stopping)
        schedule_restart(l, status);
    return true;
}

int64_t listeners_restart_due(int64_t now, int64_t at) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &t.l[i];
        if (l->state != LISTENER_IDLE)
            continue;
        if (now >= l->restart_at) {
            start_accepting(l);
            if (l->state == LISTENER_ACCEPTING)
                log_info("accept task of %s restarted", l->bound);
        }
        if (l->state == LISTENER_IDLE && l->restart_at < at)
            at = l->restart_at;
    }
    return at;
}

bool listeners_any(void) { return listeners_count() > 0; }

uint64_t listeners_accept_errors(void) { return t.accept_errors; }
uint64_t listeners_spawn_failures(void) { return t.spawn_failures; }

/* ---- reloads ----------------------------------------------------------------- */

static bool same_addr(const listen_addr *a, const listen_addr *b) {
    return a->udp == b->udp && a->addrlen == b->addrlen &&
           memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* The open listener for addr that no other entry claimed yet: two entries
 * for port 0 are two listeners, each kept by one entry. */
static listener *unclaimed_for(const listen_addr *addr, const bool *claimed) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if ((t.l[i].state == LISTENER_IDLE || t.l[i].state == LISTENER_ACCEPTING) && !claimed[i] &&
            same_addr(&t.l[i].addr, addr))
            return &t.l[i];
    return NULL;
}

/* Opens what next adds; -errno (those opened closed again) if one fails. */
static int open_added(const config *next, listener **opened, size_t *nopened, bool *claimed,
                      bool *proxy) {
    char err[256];
    for (size_t i = 0; i < next->nlisten; i++) {
        listener *l = unclaimed_for(&next->listen[i], claimed);
        if (l) {
            claimed[l - t.l] = true;
            proxy[l - t.l] = next->listen[i].proxy_protocol;
            continue;
        }
        l = free_slot();
        int fd = l ? open_socket(&next->listen[i], next->backlog, ALONE, err, sizeof err) : -EMFILE;
        if (fd < 0) {
            log_error(l ? "%s" : "cannot listen on %s: too many listeners",
                      l ? err : next->listen[i].text);
            for (size_t k = 0; k < *nopened; k++)
                release(opened[k]);
            return fd;
        }
        take(l, fd, &next->listen[i]);
        opened[(*nopened)++] = l;
        claimed[l - t.l] = true;
    }
    return 0;
}

int listeners_apply(const config *next) {
    listener *opened[CONFIG_MAX_LISTEN];
    bool claimed[CONFIG_MAX_LISTEN] = {false};
    bool proxy[CONFIG_MAX_LISTEN] = {false}; /* of the listeners kept: the new setting */
    size_t nopened = 0;
    int r = open_added(next, opened, &nopened, claimed, proxy);
    if (r < 0)
        return r;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &t.l[i];
        bool added = false;
        for (size_t k = 0; k < nopened; k++)
            added |= opened[k] == l;
        if (l->state == LISTENER_FREE || l->state == LISTENER_CLOSING || added)
            continue;
        if (!claimed[i]) {
            stop(l);
            continue;
        }
        /* Connections accepted from now on; the open ones keep theirs. */
        l->addr.proxy_protocol = proxy[i];
        if (!l->addr.udp && listen(l->fd, next->backlog) != 0) /* takes the new backlog */
            log_warn("%s: listen: %s", l->bound, strerror(errno));
    }
    for (size_t k = 0; k < nopened; k++) {
        opened[k]->announced = true;
        log_info("listening on %s", opened[k]->bound);
        start_accepting(opened[k]);
    }
    return 0;
}
