#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1; /* write end of the pipe the original process waits on */

int daemon_detach(void) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -e;
    }
    if (pid > 0) { /* the original process: wait for the word from the daemon */
        close(pipefd[1]);
        char ok = 0;
        ssize_t n;
        while ((n = read(pipefd[0], &ok, 1)) < 0 && errno == EINTR)
            ;
        waitpid(pid, NULL, 0);
        _exit(n == 1 && ok == 'R' ? 0 : 1);
    }
    close(pipefd[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork(); /* no longer a session leader: can never regain a terminal */
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    ready_fd = pipefd[1];
    if (chdir("/") != 0)
        return -errno;
    int null = open("/dev/null", O_RDWR);
    if (null < 0)
        return -errno;
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null, fd) < 0)
            return -errno;
    if (null > 2)
        close(null);
    return 0;
}

void daemon_ready(void) {
    if (ready_fd < 0)
        return;
    ssize_t n;
    while ((n = write(ready_fd, "R", 1)) < 0 && errno == EINTR)
        ;
    close(ready_fd);
    ready_fd = -1;
}

void daemon_ready_forget(void) {
    if (ready_fd >= 0)
        close(ready_fd);
    ready_fd = -1;
}

static bool names_live_process(const char *path) {
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f)
        return false;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0 || pid > INT_MAX || pid == (long)getpid())
        return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int pidfile_check(const char *path, char *err, size_t errlen) {
    if (!names_live_process(path))
        return 0;
    snprintf(err, errlen, "%s: names a running process; is coechod already running?", path);
    return -EEXIST;
}

int pidfile_write(const char *path, char *err, size_t errlen) {
    int r = pidfile_check(path, err, errlen);
    if (r)
        return r;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", tmp, strerror(e));
        return -e;
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    int e = 0;
    if (write(fd, line, (size_t)len) != len)
        e = errno ? errno : EIO;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e) {
        unlink(tmp);
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

void pidfile_remove(const char *path) {
    if (path && *path)
        unlink(path);
}

int drop_privileges(const char *user, char *err, size_t errlen) {
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user \"%s\": %s", user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
        return 0; /* already that user */
    if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "cannot switch to user \"%s\": %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must not be able to get root back */
        snprintf(err, errlen, "cannot drop root privileges for user \"%s\"", user);
        return -1;
    }
    return 0;
}

long raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}
