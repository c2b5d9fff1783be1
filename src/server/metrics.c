#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum {
    READ_TRIES = 10000 /* a fold in progress: look again, yielding the CPU */
};

typedef struct slot {
    _Alignas(64) uint64_t pid; /* 0: no process has published since the slot was cleared */
    uint64_t v[MV_VALUES];
} slot;

typedef struct region {
    uint64_t seq; /* odd while the main process folds a slot into retired */
    uint64_t workers, nslots;
    uint64_t start_time_ms;
    uint64_t reloads_ok, reloads_failed, last_reload_ms, worker_restarts;
    uint64_t main_rss, main_fds;
    uint64_t retired[MV_COUNTERS];
    slot slots[];
} region;

static region *r;
static int my_slot;

static uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static void store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static void bump(uint64_t *p) { store(p, load(p) + 1); } /* single writer */

uint64_t metrics_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int metrics_init(int nslots, bool workers) {
    size_t size = sizeof(region) + (size_t)nslots * sizeof(slot);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    r = p; /* zeroed by the kernel */
    r->workers = workers;
    r->nslots = (uint64_t)nslots;
    r->start_time_ms = metrics_unix_ms();
    my_slot = 0;
    return 0;
}

void metrics_set_slot(int i) { my_slot = i; }

void metrics_publish(const metrics_values *v) {
    if (!r)
        return;
    slot *s = &r->slots[my_slot];
    for (int k = 0; k < MV_VALUES; k++)
        store(&s->v[k], v->v[k]);
    store(&s->pid, (uint64_t)getpid());
}

void metrics_reload_done(bool ok) {
    if (!r)
        return;
    bump(ok ? &r->reloads_ok : &r->reloads_failed);
    store(&r->last_reload_ms, metrics_unix_ms());
}

void metrics_worker_restarted(void) {
    if (r)
        bump(&r->worker_restarts);
}

void metrics_main_figures(uint64_t rss_bytes, uint64_t open_fds) {
    if (!r)
        return;
    store(&r->main_rss, rss_bytes);
    store(&r->main_fds, open_fds);
}

void metrics_retire(int i) {
    if (!r || i < 0 || (uint64_t)i >= r->nslots)
        return;
    slot *s = &r->slots[i];
    __atomic_store_n(&r->seq, load(&r->seq) + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* odd before any field changes */
    for (int k = 0; k < MV_COUNTERS; k++)
        store(&r->retired[k], load(&r->retired[k]) + load(&s->v[k]));
    for (int k = 0; k < MV_VALUES; k++)
        store(&s->v[k], 0);
    store(&s->pid, 0);
    __atomic_store_n(&r->seq, load(&r->seq) + 1, __ATOMIC_RELEASE);
}

/* One pass over the region into snap; false if a fold overlapped it. */
static bool read_once(metrics_snapshot *snap) {
    uint64_t before = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
    if (before & 1)
        return false;
    snap->start_time_ms = load(&r->start_time_ms);
    snap->reloads_ok = load(&r->reloads_ok);
    snap->reloads_failed = load(&r->reloads_failed);
    snap->last_reload_ms = load(&r->last_reload_ms);
    snap->worker_restarts = load(&r->worker_restarts);
    memset(&snap->total, 0, sizeof snap->total);
    for (int k = 0; k < MV_COUNTERS; k++)
        snap->total.v[k] = load(&r->retired[k]);
    snap->total.v[MV_RSS_BYTES] = load(&r->main_rss);
    snap->total.v[MV_OPEN_FDS] = load(&r->main_fds);
    snap->running = 0;
    for (int i = 0; i < snap->nslots; i++) {
        snap->running += load(&r->slots[i].pid) != 0;
        for (int k = 0; k < MV_VALUES; k++) {
            snap->slot[i].v[k] = load(&r->slots[i].v[k]);
            snap->total.v[k] += snap->slot[i].v[k];
        }
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&r->seq, __ATOMIC_RELAXED) == before;
}

metrics_snapshot *metrics_snapshot_take(void) {
    int nslots = r ? (int)r->nslots : 0;
    metrics_snapshot *snap = calloc(1, sizeof *snap + (size_t)nslots * sizeof snap->slot[0]);
    if (!snap || !r)
        return snap;
    snap->workers = r->workers != 0;
    snap->nslots = nslots;
    for (int tries = 0; !read_once(snap) && tries < READ_TRIES; tries++)
        sched_yield(); /* the main process is between two stores */
    return snap;
}

static int64_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long long size, resident;
    int64_t bytes = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%llu %llu", &size, &resident) == 2)
        bytes = (int64_t)resident * sysconf(_SC_PAGESIZE);
    fclose(f);
    return bytes;
}

static int64_t count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int64_t n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void metrics_process_figures(int64_t *rss_bytes, int64_t *open_fds) {
    *rss_bytes = resident_bytes();
    if (open_fds)
        *open_fds = count_fds();
}
