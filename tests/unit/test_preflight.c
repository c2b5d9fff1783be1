/* Unit tests of coechod -t's checks of this host (src/server/preflight.c)
 * and the file checks under them (log_check_file, pidfile_check_path), in
 * a private temporary directory: every problem reported with the value's
 * position, nothing created. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/preflight.h"

static char dir[PATH_MAX]; /* private, without symlinks: the messages resolve them */

static int make_dir(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char templ[PATH_MAX];
    snprintf(templ, sizeof templ, "%s/coechod-preflight-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (!mkdtemp(templ) || !realpath(templ, dir))
        return -1;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int remove_dir(void **state) {
    (void)state;
    return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void in_dir(char *buf, size_t size, const char *name) {
    int n = snprintf(buf, size, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* preflight_check's output for cfg (file "t.yaml"), and its count. */
static char *run_checks(const config *cfg, bool cli_listen, int *problems) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    *problems = preflight_check(cfg, "t.yaml", cli_listen, out);
    assert_int_equal(fclose(out), 0);
    return text;
}

/* One listener on 127.0.0.1:0, at t.yaml:2:5. */
static void loopback_config(config *cfg) {
    config_defaults(cfg);
    assert_int_equal(config_parse_listen("127.0.0.1:0", &cfg->listen[0], NULL, 0), 0);
    cfg->nlisten = 1;
    cfg->where.listen[0] = (config_pos){2, 5};
}

static void test_all_is_well(void **state) {
    (void)state;
    config cfg;
    loopback_config(&cfg);
    in_dir(cfg.log_file, sizeof cfg.log_file, "coechod.log");
    in_dir(cfg.pid_file, sizeof cfg.pid_file, "coechod.pid");
    struct passwd *me = getpwuid(geteuid());
    assert_non_null(me);
    snprintf(cfg.user, sizeof cfg.user, "%s", me->pw_name);
    int problems;
    char *text = run_checks(&cfg, false, &problems);
    assert_string_equal(text, "");
    assert_int_equal(problems, 0);
    free(text);
    struct stat st;
    assert_int_equal(lstat(cfg.log_file, &st), -1); /* nothing created */
    assert_int_equal(lstat(cfg.pid_file, &st), -1);
}

/* Every problem, each at its value, in the order of the file. */
static void test_every_problem(void **state) {
    (void)state;
    config cfg;
    loopback_config(&cfg);
    assert_int_equal(config_parse_listen("192.0.2.1:7007", &cfg.listen[1], NULL, 0), 0);
    cfg.nlisten = 2;
    cfg.where.listen[1] = (config_pos){3, 5};
    in_dir(cfg.log_file, sizeof cfg.log_file, "none/coechod.log");
    cfg.where.log_file = (config_pos){6, 9};
    in_dir(cfg.pid_file, sizeof cfg.pid_file, "none/coechod.pid");
    cfg.where.pid_file = (config_pos){7, 11};
    snprintf(cfg.user, sizeof cfg.user, "no-such-user-coechod\n");
    cfg.where.user = (config_pos){8, 7};
    int problems;
    char *text = run_checks(&cfg, false, &problems);
    char expected[5 * PATH_MAX];
    int n =
        snprintf(expected, sizeof expected,
                 "t.yaml:3:5: listen[1]: 192.0.2.1:7007: cannot bind: Cannot assign requested "
                 "address (not an address of this host)\n"
                 "t.yaml:6:9: log.file: %s/none/coechod.log: %s/none: No such file or directory\n"
                 "t.yaml:7:11: pid_file: %s/none/coechod.pid: %s/none: No such file or directory\n"
                 "t.yaml:8:7: user: no such user \"no-such-user-coechod\\x0a\"\n",
                 dir, dir, dir, dir);
    assert_true(n > 0 && (size_t)n < sizeof expected);
    assert_string_equal(text, expected);
    assert_int_equal(problems, 4);
    free(text);
}

/* An IPv4-mapped address cannot be bound by an IPv6-only listener. */
static void test_v4_mapped(void **state) {
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0)
        skip(); /* no IPv6 here */
    close(probe);
    config cfg;
    loopback_config(&cfg);
    assert_int_equal(config_parse_listen("[::ffff:127.0.0.1]:0", &cfg.listen[0], NULL, 0), 0);
    int problems;
    char *text = run_checks(&cfg, false, &problems);
    assert_string_equal(text, "t.yaml:2:5: listen[0]: [::ffff:127.0.0.1]:0: cannot bind: Invalid "
                              "argument (IPv6 listeners are IPv6-only: listen on the IPv4 "
                              "address)\n");
    assert_int_equal(problems, 1);
    free(text);
}

/* -l addresses are named as such; values not from the file have no
 * position. */
static void test_not_from_the_file(void **state) {
    (void)state;
    config cfg;
    loopback_config(&cfg);
    assert_int_equal(config_parse_listen("192.0.2.1:7", &cfg.listen[0], NULL, 0), 0);
    cfg.where.listen[0] = (config_pos){0, 0};
    snprintf(cfg.user, sizeof cfg.user, "no-such-user-coechod");
    int problems;
    char *text = run_checks(&cfg, true, &problems);
    assert_string_equal(text, "coechod: -l 192.0.2.1:7: cannot bind: Cannot assign requested "
                              "address (not an address of this host)\n"
                              "coechod: user: no such user \"no-such-user-coechod\"\n");
    assert_int_equal(problems, 2);
    free(text);
}

/* A port in use passes: a running coechod may hold it. */
static void test_port_in_use(void **state) {
    (void)state;
    config cfg;
    loopback_config(&cfg);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (const struct sockaddr *)&cfg.listen[0].addr, cfg.listen[0].addrlen),
                     0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof cfg.listen[0].addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&cfg.listen[0].addr, &len), 0);
    int problems;
    char *text = run_checks(&cfg, false, &problems);
    assert_string_equal(text, "");
    assert_int_equal(problems, 0);
    free(text);
    close(fd);
}

static void test_log_check_file(void **state) {
    (void)state;
    char path[PATH_MAX], other[PATH_MAX], err[2 * PATH_MAX];
    in_dir(path, sizeof path, "log.file");
    assert_int_equal(log_check_file(path, err, sizeof err), 0); /* to be created */

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_check_file(path, err, sizeof err), 0); /* there already */

    in_dir(other, sizeof other, "log.link");
    assert_int_equal(link(path, other), 0);
    assert_int_equal(log_check_file(path, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, ": not a regular file with a single link; refusing"));
    assert_int_equal(unlink(other), 0);

    assert_int_equal(symlink(path, other), 0);
    assert_int_equal(log_check_file(other, err, sizeof err), -ELOOP);
    assert_non_null(strstr(err, ": is a symbolic link; refusing"));
    assert_int_equal(unlink(other), 0);

    assert_int_equal(log_check_file(dir, err, sizeof err), -EPERM); /* a directory */
    in_dir(other, sizeof other, "log.file/x");                      /* under a file */
    assert_int_equal(log_check_file(other, err, sizeof err), -ENOTDIR);
    assert_int_equal(unlink(path), 0);
}

static void test_pidfile_check_path(void **state) {
    (void)state;
    char path[PATH_MAX], err[2 * PATH_MAX];
    in_dir(path, sizeof path, "coechod.pid");
    assert_int_equal(pidfile_check_path(path, err, sizeof err), 0);
    /* A locked file passes: the lock is the running daemon's business. */
    assert_int_equal(pidfile_write(path, err, sizeof err), 0);
    assert_int_equal(pidfile_check_path(path, err, sizeof err), 0);
    pidfile_remove();
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(pidfile_check_path(path, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "is writable by group or others; refusing"));
    assert_int_equal(chmod(dir, 0700), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_is_well),        cmocka_unit_test(test_every_problem),
        cmocka_unit_test(test_v4_mapped),          cmocka_unit_test(test_not_from_the_file),
        cmocka_unit_test(test_port_in_use),        cmocka_unit_test(test_log_check_file),
        cmocka_unit_test(test_pidfile_check_path),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
