/* bench/scale: how many blocked tasks one process holds, and what each
 * costs.
 *
 * Spawns N tasks (-n, default 1,000,000) that block: most sleep on a timer
 * an hour away, one in -c (default 10) receives on a channel, one in -f
 * (default 100) waits on co_wait_fd for its end of a socketpair to become
 * readable. Once every task is blocked it reads VmRSS and the lines of
 * /proc/self/maps; once the runtime parked them all (-p: its park_after_ms;
 * "never" skips this) VmRSS again; then it wakes them all (kills the
 * sleepers, closes the channel, writes one byte to each socketpair) and
 * reaps them. Prints one "key=value" line per figure on stdout:
 *
 *   tasks spawned spawn_ns first_run_ns rss_before rss_blocked
 *   rss_per_task maps_before maps_blocked parked park_ms rss_parked
 *   rss_per_parked_task wake_ms status
 *
 * status is "ok", or "failed" with an error= line when a spawn (or a
 * socketpair) failed: the figures are then those of the tasks spawned so
 * far, which are still woken and reaped, and the exit status is 1.
 * Environment: none of its own; the runtime's (COECHO_STACK_GUARD) apply. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rt/rt.h"

static struct {
    long n, chan_every, fd_every;
    long park_ms; /* co_options.park_after_ms: 0 the default, -1 never */
    size_t stack_size;
    co_chan *chan;
    int *fds;    /* socketpairs: [2k] the task's end, [2k+1] ours */
    long npairs; /* made so far */
    co_tid *sleepers;
    long nsleepers;
    long spawned;
    int error; /* of the first failed spawn or socketpair, or 0 */
    const char *failed_at;
    long woken; /* tasks whose wait ended as it should */
} b;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long vmrss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

static long maps_count(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    if (!f)
        return -1;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int sleeper(void *arg) {
    (void)arg;
    if (co_sleep(co_now() + 3600 * 1000) == -ECANCELED)
        b.woken++;
    return 0;
}

static int receiver(void *arg) {
    (void)arg;
    char c;
    if (co_chan_recv(b.chan, &c, CO_NEVER) == -EPIPE)
        b.woken++;
    return 0;
}

static int fd_waiter(void *arg) {
    int fd = (int)(intptr_t)arg;
    if (co_wait_fd(fd, CO_READ, CO_NEVER) > 0)
        b.woken++;
    return 0;
}

static void fail(const char *what, int err) {
    if (!b.error) {
        b.error = err;
        b.failed_at = what;
    }
}

/* Spawns task i of its kind; 0 or a negative errno. */
static int spawn_one(long i) {
    co_spawn_attr attr = {.name = "scale"};
    if (b.fd_every && i % b.fd_every == 0) {
        int *p = &b.fds[2 * b.npairs];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) != 0) {
            fail("socketpair", errno);
            return -errno;
        }
        int err = co_spawn_with(NULL, fd_waiter, (void *)(intptr_t)p[0], &attr);
        if (err) {
            close(p[0]);
            close(p[1]);
        } else {
            b.npairs++;
        }
        return err;
    }
    if (b.chan_every && i % b.chan_every == 1)
        return co_spawn_with(NULL, receiver, NULL, &attr);
    return co_spawn_with(&b.sleepers[b.nsleepers++], sleeper, NULL, &attr);
}

static int root(void *arg) {
    (void)arg;
    if (co_chan_new(&b.chan, 1, 0) != 0) {
        fprintf(stderr, "scale: no channel\n");
        return 1;
    }
    long rss0 = vmrss_bytes(), maps0 = maps_count();
    int64_t t0 = now_ns();
    for (long i = 0; i < b.n; i++) {
        int err = spawn_one(i);
        if (err) {
            if (b.sleepers && b.nsleepers && !b.sleepers[b.nsleepers - 1])
                b.nsleepers--; /* the failed sleeper */
            fail("spawn", -err);
            break;
        }
        b.spawned++;
    }
    int64_t t1 = now_ns();
    co_yield(); /* every new task runs until it blocks */
    int64_t t2 = now_ns();
    long rss1 = vmrss_bytes(), maps1 = maps_count();

    /* Then wait for the runtime to park them (if it does), up to a minute. */
    co_stats st;
    int64_t p0 = now_ns();
    co_get_stats(&st);
    for (int64_t end = co_now() + 60000; b.park_ms >= 0 && co_now() < end;) {
        co_get_stats(&st);
        if ((long)st.parked >= b.spawned)
            break;
        co_sleep(co_now() + 50);
    }
    int64_t p1 = now_ns();
    long rss2 = vmrss_bytes();
    long parked = (long)st.parked;

    int64_t t3 = now_ns();
    for (long k = 0; k < b.nsleepers; k++)
        co_kill(b.sleepers[k]);
    co_chan_close(b.chan);
    for (long k = 0; k < b.npairs; k++)
        if (write(b.fds[2 * k + 1], "x", 1) != 1)
            fail("write", errno);
    for (long k = 0; k < b.spawned; k++)
        if (co_wait_child(NULL, NULL, CO_NEVER) != 0)
            break;
    int64_t t4 = now_ns();
    co_chan_free(b.chan);
    for (long k = 0; k < 2 * b.npairs; k++)
        close(b.fds[k]);

    long s = b.spawned ? b.spawned : 1;
    printf("tasks=%ld\nspawned=%ld\nstack_size=%zu\nsleepers=%ld\nfd_waiters=%ld\n"
           "chan_receivers=%ld\n",
           b.n, b.spawned, b.stack_size ? b.stack_size : (size_t)64 * 1024, b.nsleepers,
           b.npairs, b.spawned - b.nsleepers - b.npairs);
    printf("spawn_ns=%.1f\nfirst_run_ns=%.1f\n", (double)(t1 - t0) / (double)s,
           (double)(t2 - t1) / (double)s);
    printf("rss_before=%ld\nrss_blocked=%ld\nrss_per_task=%.1f\n", rss0, rss1,
           (double)(rss1 - rss0) / (double)s);
    printf("maps_before=%ld\nmaps_blocked=%ld\n", maps0, maps1);
    printf("parked=%ld\npark_ms=%.1f\nrss_parked=%ld\nrss_per_parked_task=%.1f\n", parked,
           (double)(p1 - p0) / 1e6, rss2, (double)(rss2 - rss0) / (double)s);
    printf("wake_ms=%.3f\nwoken=%ld\n", (double)(t4 - t3) / 1e6, b.woken);
    if (b.error) {
        printf("status=failed\nerror=%s after %ld tasks: %s\n", b.failed_at, b.spawned,
               strerror(b.error));
        return 1;
    }
    if (b.woken != b.spawned) {
        printf("status=failed\nerror=%ld of %ld tasks woken\n", b.woken, b.spawned);
        return 1;
    }
    printf("status=ok\n");
    return 0;
}

static long arg_long(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "scale: bad %s %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    int c;
    b.n = 1000000, b.chan_every = 10, b.fd_every = 100;
    while ((c = getopt(argc, argv, "n:c:f:s:p:h")) != -1) {
        switch (c) {
        case 'n':
            b.n = arg_long(optarg, "task count");
            break;
        case 'c':
            b.chan_every = arg_long(optarg, "channel share");
            break;
        case 'f':
            b.fd_every = arg_long(optarg, "fd share");
            break;
        case 's':
            b.stack_size = (size_t)arg_long(optarg, "stack size");
            break;
        case 'p':
            b.park_ms = strcmp(optarg, "never") == 0 ? -1 : arg_long(optarg, "park delay");
            break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: scale [-n TASKS] [-c CHAN_EVERY] [-f FD_EVERY] [-s STACK_BYTES]\n"
                    "             [-p PARK_MS|never]\n"
                    "  TASKS (default 1000000) block: one in CHAN_EVERY (default 10; 0 none) on\n"
                    "  a channel, one in FD_EVERY (default 100; 0 none) on a socketpair, the\n"
                    "  others on a timer; then, once the runtime parked them all (after\n"
                    "  PARK_MS, default its own 1000; never: not parked), all are woken.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (b.n < 1 || b.chan_every == 1 || b.fd_every == 1) {
        fprintf(stderr, "scale: need -n >= 1, and -c, -f of 0 or >= 2\n");
        return 2;
    }
    long pairs = b.fd_every ? (b.n + b.fd_every - 1) / b.fd_every : 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)(2 * pairs + 64) > rl.rlim_cur) {
        fprintf(stderr, "scale: %ld socketpairs need %ld descriptors, the limit is %llu\n",
                pairs, 2 * pairs + 64, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    b.fds = calloc((size_t)(2 * pairs + 2), sizeof *b.fds);
    b.sleepers = calloc((size_t)b.n, sizeof *b.sleepers);
    if (!b.fds || !b.sleepers) {
        fprintf(stderr, "scale: out of memory\n");
        return 1;
    }
    co_options opts = {.stack_size = b.stack_size, .park_after_ms = b.park_ms};
    int r = co_run(root, NULL, &opts);
    if (r < 0) {
        fprintf(stderr, "scale: cannot run: %s\n", strerror(-r));
        return 1;
    }
    return r;
}
