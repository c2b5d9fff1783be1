/* Unit tests of the configuration across processes: a file parsed in a
 * child process (loaded, refused, missing, a child that stalls or dies),
 * and configurations passed as datagrams. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config_io.h"

enum { TRIES = 50 }; /* for the rare child that answers before we act */

static void write_temp(char *path, size_t size, const char *text) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/coechod-io-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static config *new_config(void) {
    config *cfg = calloc(1, sizeof *cfg);
    assert_non_null(cfg);
    return cfg;
}

static void loads_in_child(void **state) {
    (void)state;
    char path[256];
    write_temp(path, sizeof path, "limits:\n  max_connections: 7\n");
    config *cfg = new_config();
    config_errors errs;
    assert_int_equal(config_load_in_child(path, cfg, &errs, 10000), 0);
    assert_int_equal(cfg->max_connections, 7);
    assert_int_equal(cfg->backlog, 1024); /* the defaults under the file */
    unlink(path);
    free(cfg);
}

static void errors_come_back(void **state) {
    (void)state;
    char path[256], want[300];
    write_temp(path, sizeof path, "limits:\n  max_connections: 0\n");
    config *cfg = new_config();
    config_errors errs;
    assert_int_equal(config_load_in_child(path, cfg, &errs, 10000), -1);
    snprintf(want, sizeof want, "%s:2:20: limits.max_connections:", path);
    assert_non_null(strstr(errs.text, want));
    assert_int_equal(errs.count, 1);
    unlink(path);
    assert_int_equal(config_load_in_child(path, cfg, &errs, 10000), -1);
    assert_non_null(strstr(errs.text, "cannot open"));
    free(cfg);
}

/* A child stopped before it answers: nothing arrives, and ending the job
 * kills and reaps it. */
static void stalled_child_is_killed(void **state) {
    (void)state;
    char path[256];
    write_temp(path, sizeof path, "workers: 2\n");
    bool stalled = false;
    for (int i = 0; i < TRIES && !stalled; i++) {
        config_job job;
        assert_int_equal(config_job_start(&job, path), 0);
        pid_t pid = job.pid;
        assert_int_equal(kill(pid, SIGSTOP), 0);
        struct pollfd pfd = {.fd = job.fd, .events = POLLIN};
        stalled = poll(&pfd, 1, 200) == 0;
        config_job_end(&job);
        assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
        assert_int_equal(errno, ESRCH);
        assert_int_equal(job.fd, -1);
    }
    assert_true(stalled);
    unlink(path);
}

/* A child that dies before it answers: the reason is the error. */
static void dead_child_is_reported(void **state) {
    (void)state;
    char path[256];
    write_temp(path, sizeof path, "workers: 2\n");
    config *cfg = new_config();
    config_errors errs;
    bool reported = false;
    for (int i = 0; i < TRIES && !reported; i++) {
        config_job job;
        assert_int_equal(config_job_start(&job, path), 0);
        assert_int_equal(kill(job.pid, SIGKILL), 0);
        int r;
        struct pollfd pfd = {.fd = job.fd, .events = POLLIN};
        while ((r = config_job_collect(&job, cfg, &errs)) == 1)
            assert_true(poll(&pfd, 1, 10000) == 1);
        reported = r == -1;
        if (reported) {
            assert_non_null(strstr(errs.text, path));
            assert_non_null(strstr(errs.text, "the process reading it killed by"));
        }
        config_job_end(&job);
    }
    assert_true(reported);
    unlink(path);
    free(cfg);
}

static void newest_datagram_wins(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    config *a = new_config(), *b = new_config(), *got = new_config();
    config_defaults(a);
    config_defaults(b);
    a->max_connections = 11;
    b->max_connections = 22;
    assert_int_equal(config_recv_latest(sv[1], got), 0); /* nothing queued */
    assert_int_equal(config_send(sv[0], a), 0);
    assert_int_equal(send(sv[0], "WATCHDOG=1", 10, 0), 10); /* not a config: skipped */
    assert_int_equal(config_send(sv[0], b), 0);
    assert_int_equal(config_recv_latest(sv[1], got), 1);
    assert_memory_equal(got, b, sizeof *b);
    assert_int_equal(config_recv_latest(sv[1], got), 0);
    close(sv[0]);
    close(sv[1]);
    free(a);
    free(b);
    free(got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_in_child),
        cmocka_unit_test(errors_come_back),
        cmocka_unit_test(stalled_child_is_killed),
        cmocka_unit_test(dead_child_is_reported),
        cmocka_unit_test(newest_datagram_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
