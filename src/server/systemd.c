#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/systemd.h"
#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A whole decimal number in [0, max], nothing else. */
static int parse_unsigned(const char *s, unsigned long long max, unsigned long long *out) {
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* LISTEN_PID / WATCHDOG_PID: is it us? */
static bool names_us(const char *var) {
    unsigned long long pid;
    return parse_unsigned(getenv(var), INT_MAX, &pid) == 0 && (pid_t)pid == getpid();
}

static void unset_listen_env(void) {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* The i-th colon-separated name of LISTEN_FDNAMES, or "". */
static void fd_name(const char *names, size_t i, char *out, size_t outlen) {
    out[0] = '\0';
    for (; names && i; i--) {
        names = strchr(names, ':');
        names = names ? names + 1 : NULL;
    }
    if (!names)
        return;
    size_t len = strcspn(names, ":");
    snprintf(out, outlen, "%.*s", (int)(len < outlen ? len : outlen - 1), names);
}

/* Close-on-exec, non-blocking, and a listening TCP socket or a bound UDP
 * one (ListenDatagram=). */
static int check_socket(int fd, char *err, size_t errlen) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "LISTEN_FDS: descriptor %d: %s", fd, strerror(errno));
        return -1;
    }
    int type = 0, listening = 0, protocol = 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof type, llen = sizeof listening, plen = sizeof protocol, alen = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &plen) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &alen) != 0) {
        snprintf(err, errlen, "LISTEN_FDS: descriptor %d is not a socket: %s", fd, strerror(errno));
        return -1;
    }
    bool tcp = type == SOCK_STREAM && listening && protocol == IPPROTO_TCP;
    bool udp = type == SOCK_DGRAM && protocol == IPPROTO_UDP;
    if ((!tcp && !udp) || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        snprintf(err, errlen,
                 "LISTEN_FDS: descriptor %d is neither a listening TCP socket nor a UDP one "
                 "(coechod takes ListenStream= and ListenDatagram= IPv4 and IPv6 sockets only)",
                 fd);
        return -1;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "LISTEN_FDS: descriptor %d: %s", fd, strerror(errno));
        return -1;
    }
    return 0;
}

int systemd_take_sockets(passed_socket *out, size_t max, char *err, size_t errlen) {
    const char *fds = getenv("LISTEN_FDS");
    int n = 0;
    unsigned long long count;
    if (!fds || !names_us("LISTEN_PID"))
        goto done; /* not for us: a parent's leftovers */
    if (parse_unsigned(fds, INT_MAX - SD_LISTEN_FDS_START, &count) != 0) {
        snprintf(err, errlen, "LISTEN_FDS: expected a number of descriptors, got \"%s\"", fds);
        n = -1;
        goto done;
    }
    if (count > max) {
        snprintf(err, errlen, "LISTEN_FDS: %llu sockets passed, at most %zu supported", count, max);
        n = -1;
        goto done;
    }
    const char *names = getenv("LISTEN_FDNAMES");
    for (n = 0; n < (int)count; n++) {
        out[n].fd = SD_LISTEN_FDS_START + n;
        fd_name(names, (size_t)n, out[n].name, sizeof out[n].name);
        if (check_socket(out[n].fd, err, errlen) != 0) {
            n = -1;
            break;
        }
    }
done:
    unset_listen_env();
    return n;
}

/* ---- notify -------------------------------------------------------------- */

static struct {
    struct sockaddr_un addr;
    socklen_t addrlen; /* 0: no NOTIFY_SOCKET */
    int fd;
    int64_t watchdog_ms;
    bool connected; /* a worker's socketpair to the main process */
} notify = {.fd = -1};

static int notify_address(const char *path, char *err, size_t errlen) {
    size_t len = strlen(path);
    /* A path needs its NUL; an abstract name's leading NUL replaces the @. */
    if ((path[0] != '/' && path[0] != '@') || len < 2 ||
        len > sizeof notify.addr.sun_path - (path[0] == '/')) {
        snprintf(err, errlen,
                 "NOTIFY_SOCKET: expected an absolute path or an @abstract name shorter than "
                 "%zu bytes, got \"%s\"",
                 sizeof notify.addr.sun_path, path);
        return -1;
    }
    memset(&notify.addr, 0, sizeof notify.addr);
    notify.addr.sun_family = AF_UNIX;
    memcpy(notify.addr.sun_path, path, len);
    if (path[0] == '@') /* abstract namespace: a leading NUL, no terminator */
        notify.addr.sun_path[0] = '\0';
    notify.addrlen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    return 0;
}

static int watchdog_setting(char *err, size_t errlen) {
    const char *usec = getenv("WATCHDOG_USEC");
    unsigned long long v;
    notify.watchdog_ms = 0;
    if (!usec)
        return 0;
    if (parse_unsigned(usec, (unsigned long long)INT64_MAX / 2, &v) != 0 || v == 0) {
        snprintf(err, errlen, "WATCHDOG_USEC: expected microseconds, got \"%s\"", usec);
        return -1;
    }
    if (getenv("WATCHDOG_PID") && !names_us("WATCHDOG_PID"))
        return 0; /* the watchdog watches another process */
    notify.watchdog_ms = (int64_t)(v / 2000);
    if (notify.watchdog_ms < 1)
        notify.watchdog_ms = 1;
    return 0;
}

int notify_init(char *err, size_t errlen) {
    const char *path = getenv("NOTIFY_SOCKET");
    notify.addrlen = 0;
    notify.watchdog_ms = 0;
    if (!path || !*path)
        return 0;
    if (notify_address(path, err, errlen) != 0 || watchdog_setting(err, errlen) != 0) {
        notify.addrlen = 0;
        return -1;
    }
    if (notify.fd < 0)
        notify.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (notify.fd < 0) {
        snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s", strerror(errno));
        notify.addrlen = 0;
        return -1;
    }
    return 0;
}

bool notify_enabled(void) { return notify.addrlen != 0 || notify.connected; }

void notify_use_fd(int fd, int64_t heartbeat_ms) {
    if (notify.fd >= 0 && notify.fd != fd)
        close(notify.fd);
    notify.fd = fd;
    notify.connected = true;
    notify.addrlen = 0;
    notify.watchdog_ms = heartbeat_ms;
}

int notify_fd(void) { return notify.fd; }

int64_t notify_watchdog_interval_ms(void) { return notify_enabled() ? notify.watchdog_ms : 0; }

int notify_send(const char *fmt, ...) {
    if (!notify_enabled())
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -EINVAL;
    if ((size_t)len >= sizeof msg)
        len = (int)sizeof msg - 1; /* a long STATUS= is cut, not dropped */
    ssize_t sent;
    do
        sent = notify.connected ? send(notify.fd, msg, (size_t)len, MSG_NOSIGNAL)
                                : sendto(notify.fd, msg, (size_t)len, MSG_NOSIGNAL,
                                         (const struct sockaddr *)&notify.addr, notify.addrlen);
    while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : 0;
}

uint64_t notify_monotonic_usec(void) { return clock_monotonic_us(); }
