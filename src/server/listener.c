/* Listening sockets and their accept tasks. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/server.h"

enum { EXHAUSTED_PAUSE_MS = 100, EXHAUSTED_LOG_EVERY_MS = 1000 };

static void format_bound(listener *l) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            port = ntohs(s6->sin6_port);
            snprintf(l->bound, sizeof l->bound, "[%s]:%u", host, port);
            return;
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
    }
    snprintf(l->bound, sizeof l->bound, "%s:%u", host, port);
}

static unsigned addr_port(const listen_addr *addr) {
    const struct sockaddr *sa = (const struct sockaddr *)&addr->addr;
    return ntohs(sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                           : ((const struct sockaddr_in *)sa)->sin_port);
}

/* SO_REUSEPORT would let us join another process's listener on the same
 * port (another coechod, same user) and silently share its traffic: a
 * plain bind first must succeed. 0 or -errno. */
static int port_is_free(const listen_addr *addr) {
    int fd = socket(addr->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, r = 0;
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (addr->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) != 0)
        r = -errno;
    close(fd);
    return r;
}

int listener_open(listener *l, const listen_addr *addr, int backlog, enum listen_sharing sharing,
                  char *err, size_t errlen) {
    bool reuse_port = sharing != LISTEN_ALONE;
    int family = addr->addr.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    const char *step = "socket";
    if (fd < 0)
        goto fail;
    step = "bind";
    if (sharing == LISTEN_REUSEPORT_FIRST && addr_port(addr) != 0 &&
        (errno = -port_is_free(addr)) != 0)
        goto fail;
    step = "SO_REUSEADDR";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    /* Accepted sockets inherit it: urgent (MSG_OOB) bytes stay in the
     * stream and are echoed like any other, not dropped. */
    step = "SO_OOBINLINE";
    if (setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one) != 0)
        goto fail;
    step = "SO_REUSEPORT";
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    step = "IPV6_V6ONLY";
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto fail;
    step = "bind";
    if (bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) != 0)
        goto fail;
    step = "listen";
    if (listen(fd, backlog) != 0)
        goto fail;
    memset(l, 0, sizeof *l);
    l->used = true;
    l->fd = fd;
    l->addr = *addr;
    format_bound(l);
    return 0;
fail:;
    int e = errno;
    snprintf(err, errlen, "cannot listen on %s: %s: %s", addr->text, step, strerror(e));
    if (fd >= 0)
        close(fd);
    return -e;
}

void listener_adopt(listener *l, int fd) {
    int one = 1;
    memset(l, 0, sizeof *l);
    l->used = true;
    l->fd = fd;
    format_bound(l);
    socklen_t len = sizeof l->addr.addr;
    if (getsockname(fd, (struct sockaddr *)&l->addr.addr, &len) == 0)
        l->addr.addrlen = len;
    snprintf(l->addr.text, sizeof l->addr.text, "%s", l->bound);
    if (setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one) != 0)
        log_warn("%s: SO_OOBINLINE: %s; urgent data will not be echoed", l->bound,
                 strerror(errno));
}

/* Descriptors ran out: pause, and say so at most once a second. */
static int pause_for_descriptors(listener *l, int err) {
    static int64_t last_logged = -EXHAUSTED_LOG_EVERY_MS;
    int64_t now = co_now();
    srv.stats.accept_errors++;
    if (now - last_logged >= EXHAUSTED_LOG_EVERY_MS) {
        last_logged = now;
        log_warn("%s: accept: %s; pausing accepts for %d ms", l->bound, strerror(err),
                 EXHAUSTED_PAUSE_MS);
    }
    return co_sleep(now + EXHAUSTED_PAUSE_MS);
}

/* Waits until a connection slot is free. 0, or -ECANCELED. */
static int wait_for_slot(void) {
    while (srv.active >= srv.cfg.max_connections) {
        char token;
        srv.accepts_paused++;
        int r = co_chan_recv(srv.slot_gate, &token, CO_NEVER);
        srv.accepts_paused--;
        if (r == -ECANCELED)
            return r;
    }
    return 0;
}

void accept_gate_open(void) {
    if (!srv.accepts_paused)
        return;
    /* Closing the channel wakes every paused accept task; they find the
     * slots and re-check the limit. A fresh gate serves the next pause. */
    co_chan *fresh;
    if (co_chan_new(&fresh, 1, 0) != 0) {
        log_error("cannot wake paused accepts: out of memory");
        return;
    }
    co_chan_free(srv.slot_gate);
    srv.slot_gate = fresh;
}

static void start_connection(listener *l, int fd, const struct sockaddr *peer) {
    connection_start *start = malloc(sizeof *start);
    int one = 1;
    if (!start) {
        log_error("%s: out of memory for a new connection", l->bound);
        close(fd);
        return;
    }
    start->fd = fd;
    ip_key_from_sockaddr(&start->peer, peer, srv.cfg.per_ip_ipv6_prefix);
    start->idle_timeout_ms = srv.cfg.idle_timeout_ms;
    start->buffer_size = srv.cfg.buffer_size;
    if (srv.cfg.max_connections_per_ip &&
        ipcount_get(&srv.per_ip, &start->peer) >= srv.cfg.max_connections_per_ip) {
        srv.stats.rejected_per_ip++;
        log_debug("%s: connection rejected: over max_connections_per_ip", l->bound);
        free(start);
        close(fd);
        return;
    }
    if (ipcount_add(&srv.per_ip, &start->peer) == 0) {
        log_error("%s: out of memory counting connections per address", l->bound);
        free(start);
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
    co_spawn_attr attr = {.name = "client", .parent = srv.supervisor};
    srv.active++;
    srv.stats.accepted++;
    int err = co_spawn_with(NULL, echo_handle_client, start, &attr);
    if (err) {
        log_error("%s: cannot start a handler: %s", l->bound, strerror(-err));
        srv.active--;
        ipcount_remove(&srv.per_ip, &start->peer);
        free(start);
        close(fd);
    }
}

/* Accepts until the backlog is empty or the connection limit is reached.
 * 0 to keep going, or a negative errno that ends the accept task. */
static int accept_ready(listener *l) {
    while (!l->closing && srv.active < srv.cfg.max_connections) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            start_connection(l, fd, (struct sockaddr *)&peer);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
            return 0;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM: /* a firewall said no to this one */
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            return pause_for_descriptors(l, errno) == -ECANCELED ? -ECANCELED : 0;
        default:
            return -errno;
        }
    }
    return 0;
}

static int accept_task(void *arg) {
    listener *l = arg;
    int r = 0;
    while (r == 0) {
        r = wait_for_slot();
        if (r == 0)
            r = co_wait_fd(l->fd, CO_READ, CO_NEVER);
        if (r > 0)
            r = accept_ready(l);
    }
    if (l->closing) {
        co_close(l->fd);
        log_info("closed listener %s", l->bound);
        memset(l, 0, sizeof *l);
        return 0;
    }
    if (r != -ECANCELED)
        log_error("%s: accept: %s", l->bound, strerror(-r));
    return -r;
}

int listener_start(listener *l) {
    co_spawn_attr attr = {.name = "accept", .parent = srv.supervisor};
    int err = co_spawn_with(&l->accept_tid, accept_task, l, &attr);
    if (err)
        errno = -err; /* its callers report errno */
    return err;
}

void listener_stop(listener *l) {
    l->closing = true;
    if (l->accept_tid) {
        co_kill(l->accept_tid);
    } else { /* waiting to be restarted: nobody else owns the fd */
        close(l->fd);
        log_info("closed listener %s", l->bound);
        memset(l, 0, sizeof *l);
    }
}
