/* coecho-demo: the runtime at work until coechod exists. An echo server on
 * 127.0.0.1:PORT (default 7007): one accept task, one task per client.
 * Usage: coecho-demo [PORT]   (Ctrl-C stops it) */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt/rt.h"

static int echo_client(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = co_read(fd, buf, sizeof buf, CO_NEVER)) > 0)
        if (co_write(fd, buf, (size_t)n, CO_NEVER) != n)
            break;
    close(fd);
    return n < 0 ? (int)-n : 0;
}

static int reap_clients(void *arg) {
    (void)arg;
    if (co_become_reaper() != 0)
        return 1;
    for (;;) {
        co_tid tid;
        int status;
        int r = co_wait_child(&tid, &status, CO_NEVER);
        if (r == -ECHILD)
            r = co_sleep(co_now() + 1000); /* nothing to reap yet */
        if (r == -ECANCELED)
            return 0;
    }
}

static int accept_loop(void *arg) {
    int lfd = (int)(intptr_t)arg;
    co_spawn_attr attr = {.name = "reaper"};
    co_tid reaper = co_spawn_with(reap_clients, NULL, &attr);
    attr.name = "client";
    attr.parent = reaper;
    for (;;) {
        int r = co_wait_fd(lfd, CO_READ, CO_NEVER);
        if (r < 0)
            return -r;
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
            if (!co_spawn_with(echo_client, (void *)(intptr_t)fd, &attr))
                close(fd);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
            perror("coecho-demo: accept4");
    }
}

int main(int argc, char **argv) {
    long port = 7007;
    if (argc > 2 || (argc == 2 && ((port = strtol(argv[1], NULL, 10)) < 1 || port > 65535))) {
        fprintf(stderr, "usage: coecho-demo [PORT]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 128) != 0) {
        fprintf(stderr, "coecho-demo: cannot listen on 127.0.0.1:%ld: %s\n", port,
                strerror(errno));
        return 1;
    }
    printf("coecho-demo: echoing on 127.0.0.1:%ld (Ctrl-C stops)\n", port);
    fflush(stdout);
    int rc = co_run(accept_loop, (void *)(intptr_t)lfd, NULL);
    close(lfd);
    return rc == 0 ? 0 : 1;
}
