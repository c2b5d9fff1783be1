#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/config_io.h"
#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the child writes back: the same binary on both ends, so the struct
 * goes as it is (it holds no pointers). */
struct config_answer {
    int loaded; /* 1: cfg; 0: errs */
    config cfg;
    config_errors errs;
};

/* Tags a configuration datagram, so that nothing else read from the
 * socket is taken for one. */
static const char config_magic[8] = "COECFG1";

static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(1); /* the parent sees the answer cut short */
        p += n;
        len -= (size_t)n;
    }
}

static _Noreturn void parse_in_child(const char *path, int answer_fd) {
    /* A parent that dies, or gives up on us, leaves nothing running. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct config_answer *a = calloc(1, sizeof *a);
    if (!a)
        _exit(1);
    a->loaded = config_load(path, &a->cfg, &a->errs) == 0;
    write_all(answer_fd, a, sizeof *a);
    _exit(0); /* not exit(): the parent's stdio buffers and atexit are its own */
}

int config_job_start(config_job *job, const char *path) {
    int fds[2];
    struct config_answer *answer = malloc(sizeof *answer);
    if (!answer)
        return -ENOMEM;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        free(answer);
        return -e;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        free(answer);
        return -e;
    }
    if (pid == 0) {
        close(fds[0]);
        int flags = fcntl(fds[1], F_GETFL);
        if (flags < 0 || fcntl(fds[1], F_SETFL, flags & ~O_NONBLOCK) != 0)
            _exit(1);
        parse_in_child(path, fds[1]);
    }
    close(fds[1]);
    *job = (config_job){.path = path, .pid = pid, .fd = fds[0], .answer = answer};
    return 0;
}

/* One error, "PATH: message", as config_load words them. */
__attribute__((format(printf, 3, 4))) static void report(config_errors *errs, const char *path,
                                                         const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int n = snprintf(errs->text, sizeof errs->text, "%s: %s\n", path, line);
    errs->len = n < 0 ? 0 : (size_t)n < sizeof errs->text ? (size_t)n : sizeof errs->text - 1;
    errs->count = 1;
}

/* The child's exit, for the reason an answer is missing. */
static void reap(config_job *job, int flags, char *how, size_t size) {
    int status;
    pid_t r;
    snprintf(how, size, "ended without an answer");
    if (job->pid <= 0)
        return;
    while ((r = waitpid(job->pid, &status, flags)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return; /* still running */
    job->pid = 0;
    if (r > 0 && WIFSIGNALED(status))
        snprintf(how, size, "killed by %s", strsignal(WTERMSIG(status)));
    else if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status))
        snprintf(how, size, "exited with status %d", WEXITSTATUS(status));
}

int config_job_collect(config_job *job, config *cfg, config_errors *errs) {
    char *dst = (char *)job->answer;
    for (;;) {
        ssize_t n = read(job->fd, dst + job->got, sizeof *job->answer - job->got);
        if (n > 0) {
            job->got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        break; /* EOF (the child exited) or an error */
    }
    char how[128];
    reap(job, 0, how, sizeof how);
    if (job->got != sizeof *job->answer) {
        report(errs, job->path, "the process reading it %s", how);
        return -1;
    }
    if (!job->answer->loaded) {
        *errs = job->answer->errs;
        return -1;
    }
    *cfg = job->answer->cfg;
    return 0;
}

void config_job_end(config_job *job) {
    if (job->pid > 0) {
        char how[128];
        kill(job->pid, SIGKILL);
        reap(job, 0, how, sizeof how);
    }
    if (job->fd >= 0)
        close(job->fd);
    free(job->answer);
    *job = (config_job){.fd = -1};
}

int config_load_in_child(const char *path, config *cfg, config_errors *errs, int64_t timeout_ms) {
    config_job job;
    int r = config_job_start(&job, path);
    if (r < 0) {
        report(errs, path, "cannot start reading it: %s", strerror(-r));
        return -1;
    }
    int64_t deadline = clock_monotonic_ms() + timeout_ms;
    while ((r = config_job_collect(&job, cfg, errs)) == 1) {
        int64_t left = deadline - clock_monotonic_ms();
        struct pollfd pfd = {.fd = job.fd, .events = POLLIN};
        if (left <= 0) {
            report(errs, path, "reading it took over %lld ms; gave up", (long long)timeout_ms);
            r = -1;
            break;
        }
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
            report(errs, path, "poll: %s", strerror(errno));
            r = -1;
            break;
        }
    }
    config_job_end(&job);
    return r;
}

struct config_datagram {
    char magic[sizeof config_magic];
    config cfg;
};

int config_channel_setup(int fd) {
    /* Room for two: a reload may come before a worker took the last one.
     * The kernel doubles what it is given, up to net.core.wmem_max. */
    int want = (int)(2 * sizeof(struct config_datagram));
    int have = 0;
    socklen_t len = sizeof have;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) != 0)
        return -errno;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &len) != 0)
        return -errno;
    if (have >= want)
        return 0;
    /* Over wmem_max: root may go past it. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) == 0)
        return 0;
    return have > (int)sizeof(struct config_datagram) + 64 ? 0 : -EMSGSIZE;
}

int config_send(int fd, const config *cfg) {
    struct config_datagram *d = malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    memcpy(d->magic, config_magic, sizeof d->magic);
    d->cfg = *cfg;
    ssize_t n;
    while ((n = send(fd, d, sizeof *d, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    int e = n < 0 ? errno : 0;
    free(d);
    return n == (ssize_t)sizeof *d ? 0 : -(e ? e : EMSGSIZE);
}

int config_recv_latest(int fd, config *cfg) {
    struct config_datagram *d = malloc(sizeof *d);
    int found = 0;
    if (!d)
        return -ENOMEM;
    for (;;) {
        ssize_t n = recv(fd, d, sizeof *d, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            found = errno == EAGAIN || errno == EWOULDBLOCK ? found : -errno;
            break;
        }
        if (n == (ssize_t)sizeof *d && memcmp(d->magic, config_magic, sizeof d->magic) == 0) {
            *cfg = d->cfg;
            found = 1;
        }
    }
    free(d);
    return found;
}
