#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/statline.h"

#include <stdio.h>

typedef unsigned long long ull;

int statline_stats(char *buf, size_t size, const metrics_values *v, const statline_workers *w) {
    const uint64_t *x = v->v;
    /* Key names and order are an interface: scripts and tests grep them. */
    return snprintf(
        buf, size,
        "connections=%llu accepted=%llu closed=%llu rejected_per_ip=%llu rejected_access=%llu "
        "rejected_proxy_header=%llu timed_out=%llu accept_errors=%llu bytes_in=%llu "
        "bytes_out=%llu listeners=%llu accepts_paused=%llu tasks=%llu buffers_cached=%llu "
        "spawn_failures=%llu parked=%llu workers=%d/%d worker_restarts=%llu udp_in=%llu "
        "udp_out=%llu udp_bytes_in=%llu udp_bytes_out=%llu udp_dropped_source_port=%llu "
        "udp_dropped_rate_limit=%llu udp_dropped_send_full=%llu udp_dropped_send_error=%llu "
        "udp_dropped_truncated=%llu udp_dropped_access=%llu",
        (ull)x[MV_ACTIVE], (ull)x[MV_ACCEPTED], (ull)x[MV_CLOSED], (ull)x[MV_REJECTED_PER_IP],
        (ull)x[MV_REJECTED_ACCESS], (ull)x[MV_REJECTED_PROXY_HEADER], (ull)x[MV_TIMED_OUT],
        (ull)x[MV_ACCEPT_ERRORS], (ull)x[MV_BYTES_IN], (ull)x[MV_BYTES_OUT], (ull)x[MV_LISTENERS],
        (ull)x[MV_ACCEPTS_PAUSED], (ull)x[MV_TASKS], (ull)x[MV_BUFFERS_CACHED],
        (ull)x[MV_SPAWN_FAILURES], (ull)x[MV_PARKED], w->total ? w->running : 1,
        w->total ? w->total : 1, (ull)w->restarts, (ull)x[MV_UDP_IN], (ull)x[MV_UDP_OUT],
        (ull)x[MV_UDP_BYTES_IN], (ull)x[MV_UDP_BYTES_OUT], (ull)x[MV_UDP_DROP_SOURCE_PORT],
        (ull)x[MV_UDP_DROP_RATE_LIMIT], (ull)x[MV_UDP_DROP_SEND_FULL],
        (ull)x[MV_UDP_DROP_SEND_ERROR], (ull)x[MV_UDP_DROP_TRUNCATED], (ull)x[MV_UDP_DROP_ACCESS]);
}

static uint64_t udp_dropped(const uint64_t *x) {
    return x[MV_UDP_DROP_SOURCE_PORT] + x[MV_UDP_DROP_RATE_LIMIT] + x[MV_UDP_DROP_SEND_FULL] +
           x[MV_UDP_DROP_SEND_ERROR] + x[MV_UDP_DROP_TRUNCATED] + x[MV_UDP_DROP_ACCESS];
}

int statline_status(char *buf, size_t size, const metrics_values *v, const statline_workers *w,
                    bool stopping) {
    const uint64_t *x = v->v;
    char workers[48] = "", udp[96] = ""; /* both fit whatever the numbers */
    if (w->total)
        snprintf(workers, sizeof workers, "%d/%d workers; ", w->running, w->total);
    if (x[MV_UDP_LISTENERS] || x[MV_UDP_IN]) /* TCP-only services keep the short line */
        snprintf(udp, sizeof udp, "; udp: %llu datagrams echoed, %llu dropped", (ull)x[MV_UDP_OUT],
                 (ull)udp_dropped(x));
    return snprintf(buf, size,
                    "%s%s%llu connection(s), %llu accepted, %llu closed, %llu timed out, %llu "
                    "bytes echoed; %llu listener(s), %llu task(s)%s",
                    stopping ? "stopping: " : "", workers, (ull)x[MV_ACTIVE], (ull)x[MV_ACCEPTED],
                    (ull)x[MV_CLOSED], (ull)x[MV_TIMED_OUT], (ull)x[MV_BYTES_OUT],
                    (ull)x[MV_LISTENERS], (ull)x[MV_TASKS], udp);
}
