/* One task per connection (two in open-loop mode: a writer that keeps the
 * schedule and a reader), on the coroutine runtime. Every byte sent comes
 * from a pattern at an offset that differs per connection, and every byte
 * received is compared with what was sent at that stream offset.
 *
 * Each thread of a -t run runs this on its own runtime over its share of
 * the connections: the pattern, the options and the clock are set before
 * the threads start and only read after; the -n budget is one atomic
 * counter; everything else a thread counts is its own (thread-locals). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "load/load.h"
#include "rt/rt.h"

/* Long, and not a multiple of any message size one would pick, so that two
 * consecutive messages of a connection never carry the same bytes. */
#define PATTERN_LEN LOAD_PATTERN_LEN
#define READ_CHUNK (64 * 1024)
#define SCHEDULE_QUEUE LOAD_OPEN_LOOP_WINDOW

#define PUBLISH_MS 250 /* how stale the progress line's counters may be */

static unsigned char *pattern;
static const load_options *opt;
static load_clock times;
static uint64_t claimed; /* -n: messages claimed after the warm-up, atomic */
static int spawn_warned; /* atomic: one warning for the whole process */
static __thread load_thread *self;
static __thread load_results *res;

int64_t load_now_ns(void) { return clock_monotonic_ns(); }
const unsigned char *load_pattern(void) { return pattern; }

static int make_pattern(void) {
    pattern = malloc(PATTERN_LEN);
    if (!pattern)
        return -ENOMEM;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        pattern[i] = (unsigned char)(x >> 32);
    }
    return 0;
}

static bool in_warmup(int64_t sent_ns) { return sent_ns < times.measure_ns; }

/* A claim, at now_ns, on a message sent (or scheduled) at sent_ns: false
 * once the run is over. Warm-up messages come on top of -n. */
static bool claim(int64_t now_ns, int64_t sent_ns) {
    if (!opt->messages)
        return now_ns < times.stop_ns;
    if (in_warmup(sent_ns))
        return true;
    return __atomic_fetch_add(&claimed, 1, __ATOMIC_RELAXED) < opt->messages;
}

/* A claim on the next message, sent now, stamped with the time. */
static bool claim_message(int64_t *now_ns) {
    *now_ns = load_now_ns();
    return claim(*now_ns, *now_ns);
}

void load_count_echo(load_results *r, int64_t sent_ns, size_t bytes) {
    if (in_warmup(sent_ns))
        return;
    uint64_t latency = (uint64_t)(load_now_ns() - sent_ns);
    hist_record(&r->latency, latency);
    r->messages++;
    r->bytes_in += bytes;
    if (opt->interval_ms)
        hist_record(&self->interval, latency);
}

bool load_claim_message(int64_t *now_ns) { return claim_message(now_ns); }

int64_t load_pace_interval_ns(void) {
    return (int64_t)(1e9 * (double)opt->connections / opt->rate);
}

int64_t load_pace_first_ns(long id, int64_t interval_ns) {
    return load_now_ns() + interval_ns * (id % 1000) / 1000;
}

typedef struct conn {
    long id;
    int fd;
    const target *to;
    uint64_t send_off, recv_off; /* stream offsets */
    size_t start;                /* this connection's offset into the pattern */
    unsigned char *rbuf;
    co_chan *schedule; /* open loop: scheduled send times, writer to reader */
    co_tid writer;
    int64_t send_deadline; /* co_now() ms by which the current send must end */
    int64_t recv_deadline; /* ... and the current echo must be in */
    int error;             /* first error, an enum load_error + 1, or 0 */
} conn;

static void fail(conn *c, enum load_error kind) {
    if (!c->error) {
        c->error = (int)kind + 1;
        res->errors[kind]++;
        tally_count(opt, res, c->id, TALLY_ERROR);
    }
}

static enum load_error kind_of(int err) {
    switch (err) {
    case -ECONNRESET:
    case -EPIPE:
        return ERR_RESET;
    case -ETIMEDOUT:
        return ERR_MESSAGE_TIMEOUT;
    default:
        return ERR_OTHER;
    }
}

/* The deadline of a step that began at ns (a CLOCK_MONOTONIC stamp we
 * already took, on co_now()'s clock): no extra clock read per message. */
static int64_t due(int64_t ns) { return ns / 1000000 + opt->timeout_ms; }

/* Sends one message, sent (or scheduled) at sent_ns: the pattern from this
 * connection's send offset. */
static int send_message(conn *c, int64_t sent_ns) {
    size_t left = opt->size;
    while (left) {
        size_t at = (c->start + c->send_off) % PATTERN_LEN;
        size_t n = left < PATTERN_LEN - at ? left : PATTERN_LEN - at;
        ssize_t w = co_write(c->fd, pattern + at, n, c->send_deadline);
        if (w < 0)
            return (int)w;
        c->send_off += (uint64_t)w;
        left -= (size_t)w;
    }
    if (!in_warmup(sent_ns))
        res->bytes_out += opt->size;
    return 0;
}

/* Compares received bytes with what was sent at that stream offset. */
static bool matches(conn *c, const unsigned char *buf, size_t n) {
    while (n) {
        size_t at = (c->start + c->recv_off) % PATTERN_LEN;
        size_t k = n < PATTERN_LEN - at ? n : PATTERN_LEN - at;
        if (memcmp(buf, pattern + at, k) != 0)
            return false;
        buf += k, n -= k, c->recv_off += k;
    }
    return true;
}

/* Waits for the echo, then reads it: right after a send the socket is never
 * readable yet, so trying the read first would only earn an EAGAIN. */
static ssize_t read_echo(conn *c, size_t want) {
    for (;;) {
        int w = co_wait_fd(c->fd, CO_READ, c->recv_deadline);
        if (w < 0)
            return w;
        ssize_t n = read(c->fd, c->rbuf, want);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
    }
}

/* Reads and checks one whole echo. 0, or a negative errno / -EPROTO for a
 * mismatch / -ENODATA for an early EOF. */
static int receive_message(conn *c) {
    size_t left = opt->size;
    while (left) {
        ssize_t n = read_echo(c, left < READ_CHUNK ? left : READ_CHUNK);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -ENODATA;
        if (!matches(c, c->rbuf, (size_t)n))
            return -EPROTO;
        left -= (size_t)n; /* counted whole, by load_count_echo */
    }
    return 0;
}

static void record_failure(conn *c, int r) {
    if (r == -EPROTO) {
        res->mismatches++;
        fail(c, ERR_MISMATCH);
    } else if (r == -ENODATA) {
        fail(c, ERR_UNEXPECTED_EOF);
    } else if (r != -ECANCELED) {
        fail(c, kind_of(r));
    }
}

static int connect_to(conn *c) {
    int fd = socket(c->to->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    long src = sources_pick(opt, c->id);
    /* Any failure to bind the source reads as EADDRNOTAVAIL: the one kind
     * the summary counts, with connect()'s own "no free port". */
    if (src >= 0 && sources_bind(opt, src, fd) != 0)
        return -EADDRNOTAVAIL;
    if (connect(fd, (const struct sockaddr *)&c->to->addr, c->to->addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    int r = co_wait_fd(fd, CO_WRITE, due(load_now_ns()));
    if (r < 0)
        return r;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return -err;
}

/* Half-closes and expects exactly EOF: any further byte is an extra one. */
static void finish(conn *c) {
    if (c->error || shutdown(c->fd, SHUT_WR) != 0)
        return;
    ssize_t n = co_read(c->fd, c->rbuf, 1, due(load_now_ns()));
    if (n > 0) {
        res->mismatches++;
        fail(c, ERR_MISMATCH);
    } else if (n < 0) {
        fail(c, kind_of((int)n));
    }
}

/* Closed loop: keep up to `pipeline` messages in flight, timed from their
 * send. */
static void closed_loop(conn *c) {
    int64_t *sent = malloc(sizeof *sent * (size_t)opt->pipeline);
    long head = 0, inflight = 0;
    if (!sent) {
        fail(c, ERR_OTHER);
        return;
    }
    for (;;) {
        while (inflight < opt->pipeline && claim_message(&sent[(head + inflight) % opt->pipeline])) {
            int64_t sent_at = sent[(head + inflight) % opt->pipeline];
            c->send_deadline = due(sent_at);
            int r = send_message(c, sent_at);
            if (r) {
                record_failure(c, r);
                goto out;
            }
            inflight++;
        }
        if (!inflight)
            break;
        c->recv_deadline = due(sent[head]); /* its echo is due timeout after its send */
        int r = receive_message(c);
        if (r) {
            record_failure(c, r);
            goto out;
        }
        load_count_echo(res, sent[head], opt->size);
        head = (head + 1) % opt->pipeline;
        inflight--;
    }
    finish(c);
out:
    free(sent);
}

/* Open loop, writer side: messages leave on schedule whatever the echoes
 * do; their scheduled times go to the reader. */
static int open_loop_writer(void *arg) {
    conn *c = arg;
    int64_t interval = load_pace_interval_ns();
    int64_t next = load_pace_first_ns(c->id, interval);
    while (!c->error) {
        int64_t now = load_now_ns();
        if (next > now) {
            /* Timers are millisecond-grained and may fire a millisecond
             * late: sleep to within 1 ms, then yield until the send time, so
             * the message leaves when scheduled and the latency is the
             * server's, not the client's oversleep. */
            int64_t ms = (next - now) / 1000000 - 1;
            if ((ms > 0 ? co_sleep(co_now() + ms) : co_yield ()) < 0)
                break;
            continue;
        }
        int64_t claimed_at = load_now_ns();
        if (!claim(claimed_at, next)) /* late or not, it counts as scheduled */
            break;
        if (co_chan_send(c->schedule, &next, CO_NEVER) < 0)
            break;
        c->send_deadline = due(claimed_at);
        int r = send_message(c, next);
        if (r) {
            record_failure(c, r);
            break;
        }
        next += interval;
    }
    co_chan_close(c->schedule); /* the reader drains what is queued, then stops */
    return 0;
}

static void open_loop(conn *c) {
    co_spawn_attr attr = {.name = "writer"};
    if (co_chan_new(&c->schedule, sizeof(int64_t), SCHEDULE_QUEUE) != 0 ||
        co_spawn_with(&c->writer, open_loop_writer, c, &attr) != 0) {
        fail(c, ERR_SPAWN);
        co_chan_free(c->schedule);
        return;
    }
    int64_t scheduled;
    while (co_chan_recv(c->schedule, &scheduled, CO_NEVER) == 0) {
        c->recv_deadline = due(scheduled);
        int r = receive_message(c);
        if (r) {
            record_failure(c, r);
            co_kill(c->writer);
            break;
        }
        load_count_echo(res, scheduled, opt->size);
    }
    co_join(c->writer, NULL, CO_NEVER);
    co_chan_free(c->schedule);
    finish(c);
}

static int connection_task(void *arg) {
    conn *c = arg;
    if (opt->udp) {
        udp_session(opt, res, c->id, c->to);
        free(c->rbuf);
        free(c);
        return 0;
    }
    int r = connect_to(c);
    if (r) {
        res->connections_failed++;
        tally_count(opt, res, c->id, TALLY_FAILED);
        fail(c, r == -ECONNREFUSED    ? ERR_CONNECT_REFUSED
                : r == -ETIMEDOUT     ? ERR_CONNECT_TIMEOUT
                : r == -EADDRNOTAVAIL ? ERR_SOURCE
                                      : ERR_OTHER);
    } else {
        res->connections_up++;
        tally_count(opt, res, c->id, TALLY_UP);
        if (opt->rate > 0)
            open_loop(c);
        else
            closed_loop(c);
    }
    if (c->fd >= 0)
        co_close(c->fd);
    free(c->rbuf);
    free(c);
    return 0;
}

static int64_t earliest(int64_t a, int64_t b) { return a < b ? a : b; }

/* The interval boundary after `boundary` (co_now() ms). With -d the last
 * interval runs from the last boundary before the stop to the thread's
 * end: the echoes still in flight at the stop join it, not a line of
 * their own. */
static int64_t next_boundary(int64_t boundary) {
    int64_t next = boundary + opt->interval_ms;
    return opt->messages || next < times.stop_ns / 1000000 ? next : INT64_MAX;
}

/* Publishes this thread's counters for the progress line every PUBLISH_MS
 * and hands its interval in at each --interval boundary, until killed. */
static int ticker_task(void *arg) {
    (void)arg;
    int64_t publish = opt->progress ? co_now() + PUBLISH_MS : INT64_MAX;
    int64_t boundary = opt->interval_ms ? times.measure_ns / 1000000 + opt->interval_ms : INT64_MAX;
    for (;;) {
        if (co_sleep(earliest(publish, boundary)) < 0)
            return 0;
        int64_t now = co_now();
        if (now >= publish) {
            load_publish(self);
            publish += PUBLISH_MS;
        }
        if (now >= boundary) {
            load_hand_in_interval(self, false);
            boundary = next_boundary(boundary);
        }
    }
}

static conn *new_conn(long id) {
    conn *c = calloc(1, sizeof *c);
    size_t rsize = opt->size < READ_CHUNK ? opt->size : READ_CHUNK;
    if (!c || !(c->rbuf = malloc(rsize))) {
        free(c);
        return NULL;
    }
    c->id = id;
    c->fd = -1;
    c->to = &opt->targets[(size_t)id % opt->ntargets];
    c->start = (size_t)((uint64_t)id * 2654435761u % PATTERN_LEN);
    return c;
}

/* Counts a connection that could not start; the first one process-wide
 * says why on stderr. */
static void spawn_failed(long id, int err) {
    if (!__atomic_exchange_n(&spawn_warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr,
                "coecho-load: warning: cannot start connection %ld: %s; going on "
                "without it and any other that cannot start\n",
                id, strerror(-err));
    res->errors[ERR_SPAWN]++;
    res->connections_failed++;
}

static int root(void *arg) {
    (void)arg;
    co_tid ticker = 0;
    if (opt->progress || opt->interval_ms) {
        co_spawn_attr attr = {.name = "ticker"};
        co_spawn_with(&ticker, ticker_task, NULL, &attr);
    }
    long started = 0;
    /* Connection ids stay global (targets and patterns follow them):
     * thread k of N takes k, k + N, ... */
    for (long i = self->index; i < opt->connections; i += opt->threads) {
        if (opt->connect_rate > 0) {
            int64_t due = res->start_ns + (int64_t)((double)i * 1e9 / opt->connect_rate);
            int64_t now = load_now_ns();
            if (due > now)
                co_sleep(co_now() + (due - now) / 1000000);
        }
        /* Out of memory or mappings, the connection is not made and
         * counted as a spawn error; the run goes on with the others. */
        conn *c = new_conn(i);
        int err = c ? co_spawn(NULL, connection_task, c) : -ENOMEM;
        if (err) {
            free(c ? c->rbuf : NULL);
            free(c);
            spawn_failed(i, err);
            tally_count(opt, res, i, TALLY_FAILED);
            tally_count(opt, res, i, TALLY_ERROR);
            continue;
        }
        started++;
    }
    co_tid tid;
    for (long done = 0; done < started;)
        if (co_wait_child(&tid, NULL, CO_NEVER) == 0 && tid != ticker)
            done++;
    res->end_ns = load_now_ns();
    if (ticker) {
        co_kill(ticker);
        co_join(ticker, NULL, CO_NEVER);
    }
    return 0;
}

int load_run_setup(const load_options *options, const load_clock *run_clock) {
    opt = options;
    times = *run_clock;
    claimed = 0;
    spawn_warned = 0;
    return make_pattern();
}

void load_run_teardown(void) {
    free(pattern);
    pattern = NULL;
}

void load_thread_run(load_thread *t) {
    self = t;
    res = &t->res;
    res->start_ns = times.start_ns;
    t->status = co_run(root, NULL, NULL);
}
