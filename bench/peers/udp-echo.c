/* udp-echo: the plainest UDP echo server, a baseline for bench/udp. One
 * blocking recvfrom(2) and one sendto(2) per datagram, no batching, no
 * guards: what coechod's batched, guarded task is measured against.
 *
 *     udp-echo PORT        (binds 127.0.0.1:PORT; runs until killed) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char buf[65536];

int main(int argc, char **argv) {
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: udp-echo PORT\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("udp-echo: socket/bind");
        return 1;
    }
    for (;;) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED)
                continue;
            perror("udp-echo: recvfrom");
            return 1;
        }
        if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len) < 0 && errno != EAGAIN &&
            errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR)
            perror("udp-echo: sendto"); /* this datagram only */
    }
}
