/* --udp: each "connection" is a connected UDP socket that keeps up to
 * `pipeline` datagrams in flight or, with -r, sends on a schedule as a TCP
 * connection does (up to LOAD_OPEN_LOOP_WINDOW in flight). A datagram carries its session id and
 * sequence number, then pattern bytes chosen by both, so that each echo is
 * matched to its datagram and verified byte for byte. A datagram whose
 * echo has not come within --timeout of its send is lost; an echo that
 * comes later, or twice, is counted as late and otherwise ignored. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load/load.h"
#include "rt/rt.h"

typedef struct header {
    uint64_t seq;
    uint64_t session;
} header;

typedef struct inflight {
    uint64_t seq;
    int64_t sent_ns;
} inflight;

typedef struct session {
    long id;
    int fd;
    unsigned char *buf; /* one datagram, sent or received */
    inflight *win;      /* cap slots, oldest first */
    long n, cap;        /* in flight, at most */
    uint64_t next_seq;
    bool claiming;       /* messages may be left to send */
    int64_t interval_ns; /* -r: between this session's sends; 0: closed loop */
    int64_t next_ns;     /* -r: when the next datagram is due */
} session;

/* Per thread: each thread of a -t run has its own sessions and results. */
static __thread const load_options *opt;
static __thread load_results *res;

/* The payload of datagram seq of session id, after its header. */
static size_t pattern_at(long id, uint64_t seq) {
    return (size_t)(((uint64_t)id * 2654435761u + seq * 7919u) % LOAD_PATTERN_LEN);
}

static void fill(session *s, uint64_t seq) {
    header h = {.seq = seq, .session = (uint64_t)s->id};
    memcpy(s->buf, &h, sizeof h);
    size_t at = pattern_at(s->id, seq), left = opt->size - sizeof h;
    for (unsigned char *p = s->buf + sizeof h; left;) {
        size_t k = left < LOAD_PATTERN_LEN - at ? left : LOAD_PATTERN_LEN - at;
        memcpy(p, load_pattern() + at, k);
        p += k, left -= k, at = 0;
    }
}

static bool payload_ok(const session *s, uint64_t seq, const unsigned char *p, size_t n) {
    size_t at = pattern_at(s->id, seq);
    while (n) {
        size_t k = n < LOAD_PATTERN_LEN - at ? n : LOAD_PATTERN_LEN - at;
        if (memcmp(p, load_pattern() + at, k) != 0)
            return false;
        p += k, n -= k, at = 0;
    }
    return true;
}

/* Sends datagram seq, waiting while the socket buffer is full. */
static int send_one(session *s, uint64_t seq, int64_t deadline_ms) {
    fill(s, seq);
    for (;;) {
        ssize_t w = send(s->fd, s->buf, opt->size, MSG_DONTWAIT);
        if (w == (ssize_t)opt->size) {
            res->bytes_out += opt->size;
            res->udp_sent++;
            return 0;
        }
        if (w >= 0)
            return -EMSGSIZE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = co_wait_fd(s->fd, CO_WRITE, deadline_ms);
        if (r < 0)
            return r;
    }
}

static void drop_slot(session *s, long i) {
    memmove(&s->win[i], &s->win[i + 1], sizeof s->win[0] * (size_t)(s->n - i - 1));
    s->n--;
}

/* One echo received: matched, verified and timed, or late. */
static void take_echo(session *s, size_t n) {
    header h;
    if (n < sizeof h) {
        res->mismatches++;
        return;
    }
    memcpy(&h, s->buf, sizeof h);
    for (long i = 0; i < s->n; i++) {
        if (s->win[i].seq != h.seq || h.session != (uint64_t)s->id)
            continue;
        if (n != opt->size || !payload_ok(s, h.seq, s->buf + sizeof h, n - sizeof h)) {
            res->mismatches++;
            res->errors[ERR_MISMATCH]++;
            tally_count(opt, res, s->id, TALLY_ERROR);
        } else {
            load_count_echo(res, s->win[i].sent_ns, n);
        }
        drop_slot(s, i);
        return;
    }
    res->udp_late++;
}

static int64_t expiry_ms(const inflight *f) { return f->sent_ns / 1000000 + opt->timeout_ms; }

/* The datagrams whose echo is overdue are lost. */
static void expire(session *s, int64_t now_ns) {
    while (s->n && now_ns / 1000000 >= expiry_ms(&s->win[0])) {
        res->udp_lost++;
        drop_slot(s, 0);
    }
}

/* Whether the next datagram may leave now: a message is left to claim,
 * the window has room and, with -r, its scheduled time has come. */
static bool may_send(const session *s, int64_t now_ns) {
    return s->claiming && s->n < s->cap && (!s->interval_ns || s->next_ns <= now_ns);
}

static int send_next(session *s) {
    int64_t now;
    if (!load_claim_message(&now)) {
        s->claiming = false;
        return 0;
    }
    /* With -r, latency and loss count from the scheduled time, so that a
     * client falling behind cannot hide a server's stall. */
    int64_t stamp = s->interval_ns ? s->next_ns : now;
    int r = send_one(s, s->next_seq, now / 1000000 + opt->timeout_ms);
    if (r < 0)
        return r;
    s->win[s->n++] = (inflight){.seq = s->next_seq++, .sent_ns = stamp};
    s->next_ns += s->interval_ns;
    return 0;
}

/* Takes one echo if one waits: 0, or a negative errno that ends the
 * session. */
static int read_echo(session *s) {
    ssize_t n = recv(s->fd, s->buf, opt->size + 1, MSG_DONTWAIT);
    if (n >= 0)
        take_echo(s, (size_t)n);
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return -errno; /* ECONNREFUSED: nothing listens there */
    return 0;
}

/* Waits for an echo until the oldest datagram expires or, with -r, the
 * next send is due. Timers are millisecond-grained and may fire a
 * millisecond late, so within a millisecond of a send it only polls and
 * yields: the datagram leaves on time. */
static int await_echo(session *s, int64_t now_ns) {
    int64_t deadline = s->n ? expiry_ms(&s->win[0]) : CO_NEVER;
    if (s->interval_ns && s->claiming && s->n < s->cap) {
        int64_t ms = (s->next_ns - now_ns) / 1000000 - 1;
        if (ms <= 0) {
            int r = read_echo(s);
            return r < 0 ? r : co_yield ();
        }
        if (deadline == CO_NEVER || co_now() + ms < deadline)
            deadline = co_now() + ms;
    }
    int r = co_wait_fd(s->fd, CO_READ, deadline);
    if (r == -ETIMEDOUT)
        return 0; /* expire() or the schedule takes it from here */
    return r < 0 ? r : read_echo(s);
}

static int run_session(session *s) {
    for (;;) {
        int64_t now = load_now_ns();
        expire(s, now);
        int r;
        if (may_send(s, now))
            r = send_next(s);
        else if (!s->claiming && !s->n)
            return 0;
        else
            r = await_echo(s, now);
        if (r < 0)
            return r;
    }
}

static int open_socket(const target *to, long id) {
    int fd = socket(to->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    long src = sources_pick(opt, id);
    if (src >= 0 && sources_bind(opt, src, fd) != 0) {
        close(fd);
        return -EADDRNOTAVAIL; /* counted as a source error, as over TCP */
    }
    if (connect(fd, (const struct sockaddr *)&to->addr, to->addrlen) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void udp_session(const load_options *options, load_results *results, long id, const target *to) {
    opt = options;
    res = results;
    session s = {.id = id, .fd = -1, .claiming = true, .cap = opt->pipeline};
    if (opt->rate > 0) { /* open loop: each flow paced as a TCP connection is */
        s.cap = LOAD_OPEN_LOOP_WINDOW;
        s.interval_ns = load_pace_interval_ns();
        s.next_ns = load_pace_first_ns(id, s.interval_ns);
    }
    s.buf = malloc(opt->size + 1);
    s.win = malloc(sizeof *s.win * (size_t)s.cap);
    s.fd = s.buf && s.win ? open_socket(to, id) : -ENOMEM;
    if (s.fd < 0) {
        res->connections_failed++;
        res->errors[s.fd == -ENOMEM          ? ERR_SPAWN
                    : s.fd == -EADDRNOTAVAIL ? ERR_SOURCE
                                             : ERR_OTHER]++;
        tally_count(opt, res, id, TALLY_FAILED);
        tally_count(opt, res, id, TALLY_ERROR);
    } else {
        res->connections_up++;
        tally_count(opt, res, id, TALLY_UP);
        int r = run_session(&s);
        if (r < 0 && r != -ECANCELED) {
            res->errors[r == -ECONNREFUSED ? ERR_CONNECT_REFUSED : ERR_OTHER]++;
            tally_count(opt, res, id, TALLY_ERROR);
        }
        co_close(s.fd);
    }
    free(s.buf);
    free(s.win);
}
