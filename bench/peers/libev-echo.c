/* A plain libev callback echo server: the lower bound on what coroutines
 * cost. One read watcher per connection; when the peer's window is full the
 * rest waits on a write watcher and reading stops, as in coechod.
 * Usage: libev-echo PORT [BUFFER_SIZE] */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t buffer_size = 16384;

typedef struct conn {
    ev_io io;
    size_t pending_off, pending_len; /* unsent part of buf */
    char buf[];
} conn;

static void conn_close(struct ev_loop *loop, conn *c) {
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c);
}

/* Sends what is pending; 1 when all is out, 0 when it must wait, -1 on error. */
static int flush(conn *c) {
    while (c->pending_len) {
        ssize_t n = write(c->io.fd, c->buf + c->pending_off, c->pending_len);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        c->pending_off += (size_t)n;
        c->pending_len -= (size_t)n;
    }
    return 1;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents) {
    conn *c = (conn *)w;
    if (revents & EV_WRITE) {
        int r = flush(c);
        if (r < 0)
            return conn_close(loop, c);
        if (r == 0)
            return;
        ev_io_stop(loop, w);
        ev_io_set(w, w->fd, EV_READ);
        ev_io_start(loop, w);
        return;
    }
    ssize_t n = read(w->fd, c->buf, buffer_size);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        return conn_close(loop, c);
    }
    c->pending_off = 0;
    c->pending_len = (size_t)n;
    int r = flush(c);
    if (r < 0)
        return conn_close(loop, c);
    if (r == 0) {
        ev_io_stop(loop, w);
        ev_io_set(w, w->fd, EV_WRITE);
        ev_io_start(loop, w);
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = malloc(sizeof *c + buffer_size);
        if (!c) {
            close(fd);
            continue;
        }
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: libev-echo PORT [BUFFER_SIZE]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    if (argc == 3)
        buffer_size = (size_t)atol(argv[2]);
    if (port <= 0 || port > 65535 || buffer_size < 1) {
        fprintf(stderr, "libev-echo: bad port or buffer size\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) || listen(fd, 1024)) {
        perror("libev-echo");
        return 1;
    }
    struct ev_loop *loop = EV_DEFAULT;
    ev_io accept_w;
    ev_io_init(&accept_w, accept_cb, fd, EV_READ);
    ev_io_start(loop, &accept_w);
    ev_run(loop, 0);
    return 0;
}
