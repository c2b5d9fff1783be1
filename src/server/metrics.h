/* The service's numbers, for the metrics endpoint, USR1 and systemd's
 * STATUS=: one shared-memory region (MAP_SHARED | MAP_ANONYMOUS) made at
 * start, before any worker is forked, so that every process of the service
 * sees the same one.
 *
 * Owns the region. Its header is written by the main process only (the
 * single process, or the main process of workers): start time, reloads,
 * worker restarts, its own memory and descriptors, and "retired", the
 * counters of workers that died. Each slot is written by its worker only
 * (metrics_publish: the single process has slot 0). Single writer per
 * field, relaxed atomic loads and stores, no locks; a sequence number
 * around the folding of a dead worker's slot into "retired" lets readers
 * see the totals move in one step, so they never go down. Anyone may read
 * (metrics_snapshot_take). */
#ifndef COECHO_METRICS_H
#define COECHO_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A slot's values. Those before MV_COUNTERS only grow while the process
 * lives: they are folded into "retired" when it dies. The rest are gauges. */
enum metrics_value {
    MV_ACCEPTED,
    MV_CLOSED,
    MV_REJECTED_PER_IP,
    MV_REJECTED_ACCESS,       /* refused by an access list */
    MV_SPAWN_FAILURES,        /* accepted, but no handler could start */
    MV_REJECTED_PROXY_HEADER, /* no good PROXY header in time */
    MV_TIMED_OUT,
    MV_BYTES_IN,
    MV_BYTES_OUT,
    MV_RT_SPAWNS,
    MV_RT_SWITCHES,
    MV_RT_BATCHES,
    MV_UDP_IN, /* datagrams received */
    MV_UDP_OUT,
    MV_UDP_BYTES_IN,
    MV_UDP_BYTES_OUT,
    MV_UDP_DROP_SOURCE_PORT, /* datagrams dropped, by reason (udp.h) */
    MV_UDP_DROP_RATE_LIMIT,
    MV_UDP_DROP_SEND_FULL,
    MV_UDP_DROP_SEND_ERROR,
    MV_UDP_DROP_TRUNCATED,
    MV_UDP_DROP_ACCESS,
    MV_ACCEPT_ERRORS, /* accepts that failed or whose handler could not start */
    MV_COUNTERS,
    MV_ACTIVE = MV_COUNTERS, /* connections open now */
    MV_TASKS,
    MV_RSS_BYTES,
    MV_OPEN_FDS,
    /* For USR1 and STATUS= only (statline.h), not the metrics endpoint. */
    MV_LISTENERS,     /* listening sockets open, TCP and UDP */
    MV_UDP_LISTENERS, /* of those, UDP ones */
    MV_ACCEPTS_PAUSED,
    MV_BUFFERS_CACHED, /* bytes of echo buffers kept for reuse */
    MV_PARKED,         /* tasks parked now (rt.h) */
    MV_VALUES
};

typedef struct metrics_values {
    uint64_t v[MV_VALUES];
} metrics_values;

typedef struct metrics_snapshot {
    bool workers;           /* workers > 1: per-worker series too */
    int nslots;             /* 1 without workers */
    int running;            /* slots whose process published and lives */
    uint64_t start_time_ms; /* unix time of the start, ms */
    uint64_t reloads_ok, reloads_failed;
    uint64_t last_reload_ms; /* unix time, ms; 0: none yet */
    uint64_t worker_restarts;
    metrics_values total;  /* counters: retired + slots; gauges: slots + main process */
    metrics_values slot[]; /* nslots */
} metrics_snapshot;

/* Maps the region: nslots slots (1 without workers). 0, or -errno. Once,
 * in the main process, before any fork. */
int metrics_init(int nslots, bool workers);
/* In a forked worker: it writes slot i (0-based) from now on. */
void metrics_set_slot(int i);

/* This process's slot: its values now (its pid is stored with them). */
void metrics_publish(const metrics_values *v);

/* ---- the main process's (header) -------------------------------------------- */

void metrics_reload_done(bool ok);
void metrics_worker_restarted(void);
/* The main process's own memory and descriptors, with workers. */
void metrics_main_figures(uint64_t rss_bytes, uint64_t open_fds);
/* Worker i died: its last published counters go to "retired", its slot
 * is zeroed, before a replacement starts. */
void metrics_retire(int i);

/* ---- readers ------------------------------------------------------------------ */

/* A consistent copy of the region, on the heap (free() it), or NULL when
 * out of memory. */
metrics_snapshot *metrics_snapshot_take(void);

/* This process's resident memory and open descriptors (-1 where /proc
 * cannot say). Counting descriptors reads /proc/self/fd: linear in them. */
void metrics_process_figures(int64_t *rss_bytes, int64_t *open_fds);

/* Unix time now, in ms. */
uint64_t metrics_unix_ms(void);

#endif
