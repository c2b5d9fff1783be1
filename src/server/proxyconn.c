#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/proxyconn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/hostport.h"
#include "server/access.h"
#include "server/log.h"
#include "server/proxyproto.h"

/* Takes n bytes off fd, bytes a peek has just seen there (so a read
 * never waits). 0, or -errno (-EIO if they are gone). */
static int consume(int fd, unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t got = read(fd, buf, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EIO : -errno;
        if (got == 0)
            return -EIO;
        buf += got;
        n -= (size_t)got;
    }
    return 0;
}

/* Reads the header off fd into res, and not a byte more: each round peeks
 * at what has arrived and parses it after what was taken already. A whole
 * header: only its rest is taken. Not yet whole: everything peeked is
 * header, so it is taken (a level-triggered wait would otherwise see the
 * same bytes again at once) and the wait goes on. 0, -EPROTO (no header,
 * or a bad one: res->error says why), -ETIMEDOUT, -ECANCELED or -errno. */
static int read_header(int fd, proxyproto_result *res) {
    unsigned char buf[PROXYPROTO_MAX_HEADER];
    size_t have = 0;
    int64_t deadline = co_now() + PROXYCONN_HEADER_TIMEOUT_MS;
    for (;;) {
        int r = co_wait_fd(fd, CO_READ, deadline);
        if (r < 0)
            return r;
        /* The parser ends every header within PROXYPROTO_MAX_HEADER
         * bytes, so there is always room here. */
        ssize_t n = recv(fd, buf + have, sizeof buf - have, MSG_PEEK);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return -errno;
        res->error = "the connection ended before the header did";
        if (n == 0)
            return -EPROTO;
        proxyproto_status st = proxyproto_parse(buf, have + (size_t)n, res);
        if (st == PROXYPROTO_ERROR)
            return -EPROTO;
        size_t take = st == PROXYPROTO_DONE ? res->length - have : (size_t)n;
        if ((r = consume(fd, buf + have, take)) != 0)
            return r;
        have += take;
        if (st == PROXYPROTO_DONE)
            return 0;
    }
}

/* The client address res names, or the socket's peer (LOCAL, UNKNOWN). */
static int client_address(int fd, const proxyproto_result *res, struct sockaddr_storage *addr,
                          socklen_t *len) {
    if (!res->local) {
        memcpy(addr, &res->src, sizeof *addr);
        *len = res->srclen;
        return 0;
    }
    *len = sizeof *addr;
    return getpeername(fd, (struct sockaddr *)addr, len) == 0 ? 0 : -errno;
}

/* NULL if the access list of the listener that accepted conn lets client
 * in, else why conn is to be closed. The listener is found by the
 * connection's local address, not kept from the accept: a reload may have
 * closed it since. */
static const char *refused_access(connection *conn, const struct sockaddr *client) {
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    if (getsockname(conn->fd, (struct sockaddr *)&local, &len) != 0) {
        log_warn("connection %llu: getsockname: %s", (unsigned long long)conn->tid,
                 strerror(errno));
        return CONNLOG_ERROR;
    }
    char where[HOSTPORT_TEXT_SIZE];
    hostport_format(&local, where, sizeof where);
    return access_check(&local, false, where, client) ? NULL : CONNLOG_ACCESS_DENIED;
}

/* Why a header could not be read, as the connection log names it. */
static const char *header_failure(connection *conn, int r, const proxyproto_result *res) {
    if (r == -ECANCELED)
        return CONNLOG_SHUTDOWN;
    if (r != -EPROTO && r != -ETIMEDOUT && r != -ECONNRESET) {
        log_warn("connection %llu: reading its PROXY header: %s", (unsigned long long)conn->tid,
                 strerror(-r));
        return CONNLOG_ERROR;
    }
    conn_count_proxy_reject();
    log_debug("connection %llu: closed: PROXY header: %s", (unsigned long long)conn->tid,
              r == -EPROTO ? res->error : strerror(-r));
    return CONNLOG_PROXY_HEADER;
}

/* The per-IP limit needs the client's address, which only the header
 * gives: so a proxy_protocol listener admits a connection at accept with
 * a slot of max_connections only (the balancer's own address must not be
 * counted: it is every client's), and here, once the header is read, the
 * connection is counted under the address it names, or refused over
 * max_connections_per_ip, as an accept would have done. A connection
 * whose header never comes holds its slot for PROXYCONN_HEADER_TIMEOUT_MS
 * at most. */
const char *proxyconn_accept(connection *conn, connlog *log) {
    proxyproto_result res;
    int r = read_header(conn->fd, &res);
    if (r != 0)
        return header_failure(conn, r, &res);
    struct sockaddr_storage client;
    socklen_t len;
    if ((r = client_address(conn->fd, &res, &client, &len)) != 0) {
        log_warn("connection %llu: getpeername: %s", (unsigned long long)conn->tid, strerror(-r));
        return CONNLOG_ERROR;
    }
    connlog_set_peer(log, (struct sockaddr *)&client, len);
    /* A LOCAL or UNKNOWN header is the balancer's own connection (a health
     * check), which any list meant for clients would refuse. */
    const char *refused = res.local ? NULL : refused_access(conn, (struct sockaddr *)&client);
    if (refused)
        return refused;
    r = conn_key(conn, (struct sockaddr *)&client);
    if (r == -EDQUOT) {
        log_debug("connection %llu: closed: over max_connections_per_ip",
                  (unsigned long long)conn->tid);
        return CONNLOG_PER_IP_LIMIT;
    }
    if (r != 0) {
        log_warn("connection %llu: %s", (unsigned long long)conn->tid, strerror(-r));
        return CONNLOG_ERROR;
    }
    return NULL;
}
