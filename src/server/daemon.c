#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/daemon.h"

#include "common/regfile.h"
#include "server/log.h"

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
#include <sys/file.h>
#include <sys/prctl.h>
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

/* The pid file stays open and locked (flock) for the life of the daemon: the
 * lock, not the pid in the file, says whether a coechod runs, so a stale
 * file naming a reused pid never blocks a start. It is reached by a walk
 * from / that checks each directory like sshd checks its files and follows
 * only symlinks owned by root or us, and opened with O_NOFOLLOW: no
 * symlink planted by another user is ever followed. */
static int pid_fd = -1;
static char pid_path[PATH_MAX]; /* resolved, for the removal at exit */

enum dir_role { DIR_ANCESTOR, DIR_PARENT };

/* An ancestor may be shared if sticky (/tmp); the file's own directory may
 * not, as anyone there could pre-create or replace the file. */
static int check_dir(int dfd, const char *shown, enum dir_role role, const char *path, char *err,
                     size_t errlen) {
    struct stat st;
    if (fstat(dfd, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: directory %s: %s", path, shown, strerror(e));
        return -e;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "%s: directory %s is owned by uid %ld; refusing (make it 0755, owned by root)",
                 path, shown, (long)st.st_uid);
        return -EPERM;
    }
    bool shared = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (shared && (role == DIR_PARENT || !(st.st_mode & S_ISVTX))) {
        snprintf(err, errlen,
                 "%s: directory %s is writable by group or others; refusing (make it 0755, "
                 "owned by root)",
                 path, shown);
        return -EPERM;
    }
    return 0;
}

/* A walk from / to the pid file's directory: dfd is the directory reached
 * (checked), shown its path, p the components still to go (in rest). */
typedef struct walk {
    int dfd;
    char shown[PATH_MAX];
    char rest[PATH_MAX];
    char *p;
    int links;
    const char *path; /* as configured, for the messages */
    char *err;
    size_t errlen;
} walk;

static int walk_fail(walk *w, int e, const char *what) {
    snprintf(w->err, w->errlen, "%s: %s%s%s", w->path, w->shown, what, e ? strerror(e) : "");
    return -e;
}

/* Continues the walk at a symlink's target. Only a link owned by root or
 * us is followed: the directory holding it passed the checks, so nobody
 * else can replace it, and so nobody else chooses where the path leads. */
static int walk_link(walk *w, const char *name, const char *after, const struct stat *st) {
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(w->err, w->errlen, "%s: %s%s%s is a symbolic link owned by uid %ld; refusing",
                 w->path, w->shown, strcmp(w->shown, "/") ? "/" : "", name, (long)st->st_uid);
        return -EPERM;
    }
    char target[PATH_MAX];
    ssize_t len = readlinkat(w->dfd, name, target, sizeof target - 1);
    if (len < 0)
        return walk_fail(w, errno, ": readlink: ");
    target[len] = '\0';
    if (++w->links > 40)
        return walk_fail(w, ELOOP, ": ");
    char next[PATH_MAX];
    if (snprintf(next, sizeof next, "%s/%s", target, after) >= (int)sizeof next)
        return walk_fail(w, ENAMETOOLONG, ": ");
    memcpy(w->rest, next, sizeof next);
    w->p = w->rest;
    if (target[0] != '/')
        return 0;
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return walk_fail(w, errno, ": open /: ");
    close(w->dfd);
    w->dfd = root;
    snprintf(w->shown, sizeof w->shown, "/");
    return check_dir(root, "/", DIR_ANCESTOR, w->path, w->err, w->errlen);
}

/* Takes one step along the n-byte component name: into a directory,
 * back up for "..", or through a trusted symlink. */
static int walk_step(walk *w, char *name, size_t n) {
    char c = name[n];
    name[n] = '\0'; /* name lies in rest, which we own */
    struct stat st;
    int r = 0;
    if (fstatat(w->dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        r = -errno;
    } else if (S_ISLNK(st.st_mode)) {
        return walk_link(w, name, c ? name + n + 1 : name + n, &st);
    } else {
        int next = openat(w->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = next < 0 ? -errno : 0;
        if (next >= 0) {
            close(w->dfd);
            w->dfd = next;
        }
    }
    char *slash = strrchr(w->shown, '/');
    if (strcmp(name, "..") == 0)
        slash[slash == w->shown] = '\0'; /* "/a/b" to "/a", "/a" to "/" */
    else if (snprintf(w->shown + strlen(w->shown), sizeof w->shown - strlen(w->shown), "%s%s",
                      strcmp(w->shown, "/") ? "/" : "", name) >= (int)sizeof w->shown)
        r = -ENAMETOOLONG;
    name[n] = c;
    w->p = name + n;
    if (r)
        return walk_fail(w, -r, ": ");
    return check_dir(w->dfd, w->shown, DIR_ANCESTOR, w->path, w->err, w->errlen);
}

/* Opens the directory dir (absolute) from /, checking every directory on
 * the way and never following a symlink others could have planted. The
 * descriptor, or -errno; shown receives its path with the links resolved. */
static int open_dir_checked(const char *dir, char *shown, const char *path, char *err,
                            size_t errlen) {
    walk w = {.dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
              .shown = "/",
              .path = path,
              .err = err,
              .errlen = errlen};
    snprintf(w.rest, sizeof w.rest, "%s", dir);
    w.p = w.rest;
    int r = w.dfd < 0 ? walk_fail(&w, errno, ": ")
                      : check_dir(w.dfd, "/", DIR_ANCESTOR, path, err, errlen);
    while (!r) {
        while (*w.p == '/')
            w.p++;
        size_t n = strcspn(w.p, "/");
        if (n == 0)
            break;
        if (n == 1 && w.p[0] == '.')
            w.p++;
        else
            r = walk_step(&w, w.p, n);
    }
    if (!r)
        r = check_dir(w.dfd, w.shown, DIR_PARENT, path, err, errlen);
    if (r && w.dfd >= 0)
        close(w.dfd);
    snprintf(shown, PATH_MAX, "%s", w.shown);
    return r ? r : w.dfd;
}

/* Splits path into its directory, made absolute from the working directory
 * (whose path the kernel gives with no symlink), and its last name. */
static int split_path(const char *path, char *dir, const char **base, char *err, size_t errlen) {
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!**base || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0) {
        snprintf(err, errlen, "%s: not a file name", path);
        return -EINVAL;
    }
    int dlen = slash ? (int)(slash - path) + 1 : 0;
    if (path[0] == '/') {
        snprintf(dir, PATH_MAX, "%.*s", dlen, path);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        int e = errno;
        snprintf(err, errlen, "%s: getcwd: %s", path, strerror(e));
        return -e;
    }
    if (snprintf(dir, PATH_MAX, "%s/%.*s", cwd, dlen, path) >= PATH_MAX) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Opens the checked directory of path; resolved receives the path of the
 * file in it, base points at its name in path. The descriptor or -errno. */
static int open_parent(const char *path, char *resolved, const char **base, char *err,
                       size_t errlen) {
    char dir[PATH_MAX], shown[PATH_MAX];
    int r = split_path(path, dir, base, err, errlen);
    if (r)
        return r;
    int dfd = open_dir_checked(dir, shown, path, err, errlen);
    if (dfd < 0)
        return dfd;
    if (snprintf(resolved, PATH_MAX, "%s%s%s", shown, strcmp(shown, "/") ? "/" : "", *base) >=
        PATH_MAX) {
        close(dfd);
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    return dfd;
}


/* The pid written in the file of a running coechod, for the error. */
static long pid_in_file(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 && pid <= INT_MAX ? pid : 0;
}

/* -EEXIST with the message when another process holds the lock. */
static int lock_pidfile(int fd, int how, const char *path, char *err, size_t errlen) {
    if (flock(fd, how | LOCK_NB) == 0)
        return 0;
    int e = errno;
    if (e != EWOULDBLOCK) {
        snprintf(err, errlen, "%s: flock: %s", path, strerror(e));
        return -e;
    }
    long pid = pid_in_file(fd);
    if (pid)
        snprintf(err, errlen,
                 "%s: locked by a running coechod (pid %ld); refusing to start "
                 "a second one",
                 path, pid);
    else
        snprintf(err, errlen, "%s: locked by a running coechod; refusing to start a second one",
                 path);
    return -EEXIST;
}

/* Whether name still names the file open on fd: a coechod exiting unlinks
 * its file after we opened but before we locked it. */
static bool same_file(int fd, int dfd, const char *name) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstatat(dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Checks the directories (0 or -errno with err), then opens the file in
 * them read-only into *fd: a descriptor, -ENOENT when there is none, or
 * -errno with err. */
static int check_and_open(const char *path, int *fd, char *err, size_t errlen) {
    char resolved[PATH_MAX];
    const char *base;
    int dfd = open_parent(path, resolved, &base, err, errlen);
    if (dfd < 0)
        return dfd;
    *fd = regfile_open(dfd, base, O_RDONLY, 0644, path, err, errlen);
    close(dfd);
    return 0;
}

int pidfile_check(const char *path, char *err, size_t errlen) {
    int fd;
    int r = check_and_open(path, &fd, err, errlen);
    if (r)
        return r;
    if (fd == -ENOENT)
        return 0; /* no file, no daemon */
    if (fd < 0)
        return fd;
    r = lock_pidfile(fd, LOCK_SH, path, err, errlen);
    close(fd); /* releases our shared lock */
    return r;
}

int pidfile_check_path(const char *path, char *err, size_t errlen) {
    int fd;
    int r = check_and_open(path, &fd, err, errlen);
    if (r)
        return r;
    if (fd >= 0)
        close(fd);
    return fd >= 0 || fd == -ENOENT ? 0 : fd;
}

static int write_pid(int fd, const char *path, char *err, size_t errlen) {
    char line[32];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: ftruncate: %s", path, strerror(e));
        return -e;
    }
    ssize_t n = pwrite(fd, line, (size_t)len, 0);
    if (n != len) {
        int e = n < 0 ? errno : EIO;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

/* The pid file, opened and locked exclusively: the descriptor, -ESTALE when
 * it was unlinked before we got the lock (try again), or -errno. */
static int open_locked(const char *path, char *err, size_t errlen) {
    const char *base;
    int dfd = open_parent(path, pid_path, &base, err, errlen);
    if (dfd < 0)
        return dfd;
    int fd = regfile_open(dfd, base, O_RDWR | O_CREAT, 0644, path, err, errlen);
    int r = fd < 0 ? fd : lock_pidfile(fd, LOCK_EX, path, err, errlen);
    if (!r && !same_file(fd, dfd, base))
        r = -ESTALE;
    if (r && fd >= 0)
        close(fd);
    close(dfd);
    return r ? r : fd;
}

int pidfile_write(const char *path, char *err, size_t errlen) {
    for (int tries = 0; tries < 10; tries++) {
        int fd = open_locked(path, err, errlen);
        if (fd == -ESTALE)
            continue;
        if (fd < 0)
            return fd;
        int r = write_pid(fd, path, err, errlen);
        if (r) {
            close(fd);
            return r;
        }
        pid_fd = fd; /* kept, locked, until exit; workers inherit the lock */
        return 0;
    }
    snprintf(err, errlen, "%s: keeps being replaced while we lock it", path);
    return -ESTALE;
}

/* Unlinks our file; 0 or the errno that prevented it. */
static int unlink_ours(void) {
    errno = 0;
    if (!same_file(pid_fd, AT_FDCWD, pid_path))
        return errno ? errno : ESTALE; /* replaced by someone: not ours to remove */
    return unlink(pid_path) == 0 ? 0 : errno;
}

/* Unlinks the file; failing that (a user: without write access to the
 * directory), empties it, so that it names nobody. */
void pidfile_remove(void) {
    if (pid_fd < 0)
        return;
    int e = unlink_ours();
    if (!e)
        log_debug("pid_file %s: removed", pid_path);
    else if (ftruncate(pid_fd, 0) == 0)
        log_debug("pid_file %s: cannot remove it (%s); emptied it instead", pid_path,
                  e == ESTALE ? "no longer names the file we locked" : strerror(e));
    else
        log_warn("pid_file %s: can neither remove (%s) nor empty it (%s)", pid_path,
                 e == ESTALE ? "no longer names the file we locked" : strerror(e), strerror(errno));
    close(pid_fd);
    pid_fd = -1;
}

/* Empties the capability bounding set, so that nothing this process or a
 * child ever executes can regain a capability. Needs CAP_SETPCAP, hence
 * before setuid; a process not started as root has nothing to drop. */
static int drop_bounding_set(char *err, size_t errlen) {
    if (geteuid() != 0)
        return 0;
    for (unsigned long cap = 0;; cap++) {
        int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in < 0 && errno == EINVAL)
            return 0; /* past the last capability this kernel knows */
        if (in < 0 || (in > 0 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)) {
            snprintf(err, errlen, "cannot drop capability %lu from the bounding set: %s", cap,
                     strerror(errno));
            return -1;
        }
    }
}

/* Neither setuid binaries nor file capabilities can raise us again. */
static int set_no_new_privs(char *err, size_t errlen) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        return 0;
    snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
    return -1;
}

static int switch_user(const struct passwd *pw, const char *user, char *err, size_t errlen) {
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

int drop_privileges(const char *user, char *err, size_t errlen) {
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user \"%s\": %s", user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    bool already = getuid() == pw->pw_uid && geteuid() == pw->pw_uid;
    if (!already &&
        (drop_bounding_set(err, errlen) != 0 || switch_user(pw, user, err, errlen) != 0))
        return -1;
    return set_no_new_privs(err, errlen);
}
