#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/udp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rt/rt.h"
#include "server/access.h"
#include "server/log.h"
#include "server/settings.h"
#include "server/udpguard.h"

/* One task's batch: receive slots, each with its buffer and sender, and
 * the replies (pointing into the same buffers). On the heap: 2 MiB. */
typedef struct batch {
    struct mmsghdr in[UDP_BATCH], out[UDP_BATCH];
    struct iovec in_iov[UDP_BATCH], out_iov[UDP_BATCH];
    struct sockaddr_storage from[UDP_BATCH];
    unsigned char buf[UDP_BATCH][UDP_MAX_DATAGRAM];
    struct sockaddr_storage local; /* the socket's address: picks its access list */
    const char *bound;             /* its name in logs */
} batch;

static struct {
    udp_stats stats;
    udp_limiter limiter;
    bool limiter_ready;
} u;

void udp_get_stats(udp_stats *st) { *st = u.stats; }

static void limiter_ready(void) {
    uint32_t seed;
    if (u.limiter_ready)
        return;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16); /* no entropy yet: still keyed */
    udp_limiter_init(&u.limiter, seed);
    u.limiter_ready = true;
}

static void arm_receive(batch *b) {
    for (int i = 0; i < UDP_BATCH; i++) {
        b->in_iov[i] = (struct iovec){.iov_base = b->buf[i], .iov_len = UDP_MAX_DATAGRAM};
        b->in[i].msg_hdr = (struct msghdr){.msg_name = &b->from[i],
                                           .msg_namelen = sizeof b->from[i],
                                           .msg_iov = &b->in_iov[i],
                                           .msg_iovlen = 1};
        b->in[i].msg_len = 0;
    }
}

bool udp_admit(udp_stats *st, udp_limiter *lim, const struct mmsghdr *in, uint32_t rate,
               int64_t now_ms, udp_access_fn *allowed, const void *ctx) {
    const struct sockaddr *from = in->msg_hdr.msg_name;
    st->datagrams_in++;
    st->bytes_in += in->msg_len;
    if (in->msg_hdr.msg_flags & MSG_TRUNC) {
        st->dropped_truncated++;
        return false;
    }
    if (!udp_port_answered(udp_source_port(from))) {
        st->dropped_source_port++;
        return false;
    }
    if (allowed && !allowed(ctx, from)) {
        st->dropped_access++;
        return false;
    }
    if (!udp_limiter_allow(lim, from, rate, now_ms)) {
        st->dropped_rate_limit++;
        return false;
    }
    return true;
}

/* Whether the access list of the socket of batch ctx lets from in. */
static bool batch_allows(const void *ctx, const struct sockaddr *from) {
    const batch *b = ctx;
    return access_check(&b->local, true, b->bound, from);
}

/* Fills the replies to the n datagrams received that pass the guards;
 * their count. */
static int prepare_replies(batch *b, int n) {
    uint32_t rate = settings()->udp_rate_limit;
    int64_t now = co_now();
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!udp_admit(&u.stats, &u.limiter, &b->in[i], rate, now, batch_allows, b))
            continue;
        b->out_iov[k] = (struct iovec){.iov_base = b->buf[i], .iov_len = b->in[i].msg_len};
        b->out[k].msg_hdr = (struct msghdr){.msg_name = &b->from[i],
                                            .msg_namelen = b->in[i].msg_hdr.msg_namelen,
                                            .msg_iov = &b->out_iov[k],
                                            .msg_iovlen = 1};
        k++;
    }
    return k;
}

void udp_send_replies(udp_stats *st, int fd, const char *bound, struct mmsghdr *out, int k) {
    int off = 0;
    while (off < k) {
        int sent = sendmmsg(fd, &out[off], (unsigned)(k - off), MSG_DONTWAIT);
        if (sent > 0) {
            for (int i = off; i < off + sent; i++)
                st->bytes_out += out[i].msg_len;
            st->datagrams_out += (uint64_t)sent;
            off += sent;
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            st->dropped_send_full += (uint64_t)(k - off);
            return;
        } else {
            log_debug("%s: sendmmsg: %s; dropping a datagram", bound,
                      sent < 0 ? strerror(errno) : "nothing sent");
            st->dropped_send_error++;
            off++; /* the first one failed: the rest may go */
        }
    }
}

/* Receives and answers one batch: its size (0: none waiting), or -errno
 * when receiving failed for good. */
static int serve_batch(int fd, const char *bound, batch *b) {
    arm_receive(b);
    int n = recvmmsg(fd, b->in, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
        switch (errno) {
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
        case EINTR:
        case ECONNREFUSED: /* an ICMP error about an earlier reply */
        case EHOSTUNREACH:
        case ENETUNREACH:
            return 0;
        case ENOMEM:
        case ENOBUFS:
            log_warn("%s: recvmmsg: %s", bound, strerror(errno));
            return 0;
        default:
            log_error("%s: recvmmsg: %s", bound, strerror(errno));
            return -errno;
        }
    }
    udp_send_replies(&u.stats, fd, bound, b->out, prepare_replies(b, n));
    return n;
}

int udp_serve(int fd, const char *bound) {
    batch *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM; /* the listener restarts the task after a backoff */
    socklen_t len = sizeof b->local;
    if (getsockname(fd, (struct sockaddr *)&b->local, &len) != 0) {
        int err = errno;
        log_error("%s: getsockname: %s", bound, strerror(err));
        free(b);
        return -err;
    }
    b->bound = bound;
    limiter_ready();
    int r = 0;
    while (r >= 0) {
        r = co_wait_fd(fd, CO_READ, CO_NEVER);
        for (int turn = 0; r > 0 && turn < UDP_BATCHES_PER_TURN; turn++)
            r = serve_batch(fd, bound, b);
        if (r > 0) /* more waiting: let the other tasks run first */
            r = co_yield ();
    }
    free(b);
    return r;
}
