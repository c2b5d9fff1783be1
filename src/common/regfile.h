/* Opening a file that a daemon writes as root (pid file, log file) without
 * being led elsewhere: no symbolic link followed, nothing but a regular
 * file with a single link accepted (not a FIFO or device that could block
 * or swallow the bytes, nor a hard link planted to make us write to another
 * file). Owns nothing. */
#ifndef COECHO_REGFILE_H
#define COECHO_REGFILE_H

#include <stddef.h>
#include <sys/stat.h>

/* 0 if st is a regular file with a single link, else -EPERM with err
 * naming shown. */
int regfile_check(const struct stat *st, const char *shown, char *err, size_t errlen);

/* openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode),
 * then regfile_check on what it opened (O_NONBLOCK: the open of a FIFO
 * returns at once, and it is refused next). The descriptor, or -errno with
 * err naming shown. */
int regfile_open(int dfd, const char *name, int flags, mode_t mode, const char *shown, char *err,
                 size_t errlen);

#endif
