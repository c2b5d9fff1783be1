#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/config_io.h"
#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* Writes len bytes to fd. 0 or -errno. */
static int write_whole(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void write_all(int fd, const void *buf, size_t len) {
    if (write_whole(fd, buf, len) != 0)
        _exit(1); /* the parent sees the answer cut short */
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

/* One datagram of len bytes carrying a copy of descriptor passed, never
 * waiting. 0 or -errno. */
static int send_with_fd(int fd, const void *buf, size_t len, int passed) {
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof passed);
    ssize_t n;
    while ((n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return -errno;
    return n == (ssize_t)len ? 0 : -EMSGSIZE;
}

/* Receives one datagram into buf, never waiting, and the descriptor it
 * carries, if any, into *passed (close-on-exec; others beyond the first
 * are closed). Its length, or -errno. */
static ssize_t recv_with_fd(int fd, void *buf, size_t size, int *passed) {
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &control,
                         .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    *passed = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
            if (*passed < 0)
                *passed = got;
            else
                close(got);
        }
    }
    return n;
}

/* A configuration is too large for one datagram (every access rule's
 * room: over 200 KB, past a unix datagram's default limit), so it goes in
 * a sealed memory file whose descriptor travels with a datagram holding
 * the magic alone. */
int config_send(int fd, const config *cfg) {
    int mfd = memfd_create("coechod-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0)
        return -errno;
    int r = write_whole(mfd, cfg, sizeof *cfg);
    if (r == 0 && fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
        r = -errno;
    if (r == 0)
        r = send_with_fd(fd, config_magic, sizeof config_magic, mfd);
    close(mfd);
    return r;
}

/* The configuration in the memory file mfd, which is closed. 0, or -EPROTO
 * if it does not hold exactly one. */
static int read_memfile(int mfd, config *cfg) {
    char *p = (char *)cfg;
    size_t got = 0;
    while (got < sizeof *cfg) {
        ssize_t n = pread(mfd, p + got, sizeof *cfg - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    struct stat st;
    bool whole = got == sizeof *cfg && fstat(mfd, &st) == 0 && st.st_size == (off_t)sizeof *cfg;
    close(mfd);
    return whole ? 0 : -EPROTO;
}

int config_recv_latest(int fd, config *cfg) {
    config *next = malloc(sizeof *next);
    int found = 0;
    if (!next)
        return -ENOMEM;
    for (;;) {
        char magic[sizeof config_magic];
        int mfd = -1;
        ssize_t n = recv_with_fd(fd, magic, sizeof magic, &mfd);
        if (n < 0 && n == -EINTR)
            continue;
        if (n < 0) {
            found = n == -EAGAIN || n == -EWOULDBLOCK ? found : (int)n;
            break;
        }
        /* Anything else on the socket (a notify message) is not ours. */
        bool ours = n == (ssize_t)sizeof magic && memcmp(magic, config_magic, sizeof magic) == 0;
        if (mfd >= 0 && ours && read_memfile(mfd, next) == 0) {
            *cfg = *next;
            found = 1;
        } else if (mfd >= 0 && !ours) {
            close(mfd);
        }
    }
    free(next);
    return found;
}
