#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/connlog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rt/rt.h"
#include "server/log.h"
#include "server/settings.h"

void connlog_accepted(connlog *l, int fd, const struct sockaddr *peer, socklen_t peerlen) {
    l->on = settings()->log_connections;
    if (!l->on)
        return;
    l->started_ms = co_now();
    connlog_set_peer(l, peer, peerlen);
    socklen_t len = sizeof l->local;
    if (getsockname(fd, &l->local.sa, &len) != 0)
        l->local.sa.sa_family = AF_UNSPEC; /* logged as "?" */
}

void connlog_set_peer(connlog *l, const struct sockaddr *peer, socklen_t peerlen) {
    if (!l->on)
        return;
    memset(&l->peer, 0, sizeof l->peer);
    memcpy(&l->peer, peer, peerlen < sizeof l->peer ? peerlen : sizeof l->peer);
}

/* "1.2.3.4:5", "[::1]:5", or "?" for an address we do not know. */
static void format_addr(const connlog_addr *a, char *buf, size_t size) {
    char host[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET && inet_ntop(AF_INET, &a->in4.sin_addr, host, sizeof host))
        snprintf(buf, size, "%s:%u", host, ntohs(a->in4.sin_port));
    else if (a->sa.sa_family == AF_INET6 &&
             inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof host))
        snprintf(buf, size, "[%s]:%u", host, ntohs(a->in6.sin6_port));
    else
        snprintf(buf, size, "?");
}

const char *connlog_errno_name(int err, char *buf, size_t size) {
    static const struct {
        int err;
        const char *name;
    } names[] = {
        {ECONNRESET, "ECONNRESET"},
        {EPIPE, "EPIPE"},
        {ETIMEDOUT, "ETIMEDOUT"},
        {ECONNABORTED, "ECONNABORTED"},
        {EHOSTUNREACH, "EHOSTUNREACH"},
        {ENETUNREACH, "ENETUNREACH"},
        {ENETDOWN, "ENETDOWN"},
        {ENOTCONN, "ENOTCONN"},
        {ENOMEM, "ENOMEM"},
        {ENOBUFS, "ENOBUFS"},
        {EIO, "EIO"},
        {EBADF, "EBADF"},
        {EINVAL, "EINVAL"},
        {ECANCELED, "ECANCELED"},
        {EPROTO, "EPROTO"},
        {EHOSTDOWN, "EHOSTDOWN"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].err == err)
            return names[i].name;
    snprintf(buf, size, "E%d", err);
    return buf;
}

void connlog_closed(const connlog *l, uint64_t bytes_in, uint64_t bytes_out, const char *reason,
                    int err) {
    if (!l->on || !settings()->log_connections)
        return;
    char peer[INET6_ADDRSTRLEN + 16], local[INET6_ADDRSTRLEN + 16], errbuf[16];
    format_addr(&l->peer, peer, sizeof peer);
    format_addr(&l->local, local, sizeof local);
    int64_t ms = co_now() - l->started_ms;
    log_close e = {.peer = peer,
                   .local = local,
                   .duration_ms = ms > 0 ? ms : 0,
                   .bytes_in = bytes_in,
                   .bytes_out = bytes_out,
                   .reason = reason,
                   .error = err ? connlog_errno_name(err, errbuf, sizeof errbuf) : NULL};
    log_connection_close(&e);
}
