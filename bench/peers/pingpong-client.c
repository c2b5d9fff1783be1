/* A minimal epoll ping-pong client: CONNS connections each send SIZE bytes,
 * wait for all of them to come back, and repeat, for SECONDS. Prints
 * "msgs_per_sec N". The yardstick coecho-load must keep up with.
 * Usage: pingpong-client PORT CONNS SIZE SECONDS */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    size_t got;
} conn;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: pingpong-client PORT CONNS SIZE SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), nconns = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    double seconds = atof(argv[4]);
    if (port <= 0 || port > 65535 || nconns < 1 || size < 1 || seconds <= 0) {
        fprintf(stderr, "pingpong-client: bad arguments\n");
        return 2;
    }
    char *msg = malloc(size), *in = malloc(size);
    conn *conns = calloc((size_t)nconns, sizeof *conns);
    int ep = epoll_create1(0);
    if (!msg || !in || !conns || ep < 0)
        return 1;
    memset(msg, 'x', size);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
            perror("pingpong-client: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (write(fd, msg, size) != (ssize_t)size) /* blocking: fits the socket buffer */
            return 1;
    }
    long long msgs = 0;
    double start = now_s(), end = start + seconds;
    struct epoll_event evs[256];
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, in, size - c->got);
            if (r <= 0) {
                fprintf(stderr, "pingpong-client: connection lost\n");
                return 1;
            }
            c->got += (size_t)r;
            if (c->got == size) {
                c->got = 0;
                msgs++;
                if (write(c->fd, msg, size) != (ssize_t)size)
                    return 1;
            }
        }
    }
    printf("msgs_per_sec %.0f\n", (double)msgs / (now_s() - start));
    return 0;
}
