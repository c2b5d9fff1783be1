/* Process plumbing for coechod: --daemon, the pid file and dropping
 * privileges.
 *
 * Owns the pipe the starting process waits on and the pid file's locked
 * descriptor (held until exit). */
#ifndef COECHO_DAEMON_H
#define COECHO_DAEMON_H

#include <stddef.h>

/* Double fork and setsid; chdir /; stdio to /dev/null. The original process
 * waits until daemon_ready() (exit 0) or until the daemon fails to get there
 * (exit 1), so `coechod -d` returns when the daemon serves. Returns 0 in the
 * daemon, -errno when it could not fork. */
int daemon_detach(void);
/* Tells the waiting original process that the daemon is up. */
void daemon_ready(void);
/* In a worker process: the main process, not this one, says when. */
void daemon_ready_forget(void);

/* Opens path without following a symlink, in a directory only root or we
 * can write (each ancestor too, unless sticky), takes flock(LOCK_EX) and
 * writes our pid; the file stays open and locked until pidfile_remove().
 * -EEXIST when another process holds the lock. 0 or -errno; err says why. */
int pidfile_write(const char *path, char *err, size_t errlen);
/* The same checks and refusal, modifying nothing, to tell the terminal
 * before detaching. */
int pidfile_check(const char *path, char *err, size_t errlen);
/* The same checks but the lock, which a running coechod may hold: for
 * coechod -t. */
int pidfile_check_path(const char *path, char *err, size_t errlen);
/* At exit: unlinks the file written, or empties it when we may not. */
void pidfile_remove(void);

/* Empties the capability bounding set (as root), then setgroups/setgid/
 * setuid to user, then sets no_new_privs. 0, or -1 with err. */
int drop_privileges(const char *user, char *err, size_t errlen);

#endif
