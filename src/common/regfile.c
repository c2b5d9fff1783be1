#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/regfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int regfile_check(const struct stat *st, const char *shown, char *err, size_t errlen) {
    if (S_ISREG(st->st_mode) && st->st_nlink == 1)
        return 0;
    snprintf(err, errlen, "%s: not a regular file with a single link; refusing", shown);
    return -EPERM;
}

int regfile_open(int dfd, const char *name, int flags, mode_t mode, const char *shown, char *err,
                 size_t errlen) {
    int fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            snprintf(err, errlen, "%s: is a symbolic link; refusing", shown);
        else
            snprintf(err, errlen, "%s: %s", shown, strerror(e));
        return -e;
    }
    struct stat st;
    int r = fstat(fd, &st) == 0 ? regfile_check(&st, shown, err, errlen) : -errno;
    if (r == 0)
        return fd;
    if (r != -EPERM)
        snprintf(err, errlen, "%s: fstat: %s", shown, strerror(-r));
    close(fd);
    return r;
}
