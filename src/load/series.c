/* The --interval series: each thread hands in its interval k (echoes
 * counted since its previous hand-in, with their latency histogram); the
 * main thread writes line k once every thread has handed k in or finished.
 * Nothing here locks: threads.c calls every function under its lock. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load/load.h"

typedef struct interval {
    histogram latency;
    uint64_t messages, errors;
    int64_t end_ns; /* the latest hand-in */
    bool last;      /* some thread's last: it ends at end_ns, not at a boundary */
} interval;

struct series {
    FILE *out;
    int64_t interval_ns, measure_ns;
    interval **slot; /* by index; freed once written */
    long nslots;
    long written;
    int err; /* first failure (-errno): a hand-in without memory, or a write */
};

int series_open(series **out, const char *path, int64_t interval_ms, int64_t measure_ns) {
    series *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->out = fopen(path, "w");
    if (!s->out) {
        int err = -errno;
        free(s);
        return err;
    }
    s->interval_ns = interval_ms * 1000000;
    s->measure_ns = measure_ns;
    *out = s;
    return 0;
}

/* Interval k's slot, made (zeroed) on first use. NULL without memory. */
static interval *slot_of(series *s, long k) {
    if (k >= s->nslots) {
        long n = s->nslots ? s->nslots * 2 : 16;
        while (n <= k)
            n *= 2;
        interval **grown = realloc(s->slot, (size_t)n * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + s->nslots, 0, (size_t)(n - s->nslots) * sizeof *grown);
        s->slot = grown;
        s->nslots = n;
    }
    if (!s->slot[k])
        s->slot[k] = calloc(1, sizeof *s->slot[k]);
    return s->slot[k];
}

void series_add(series *s, long k, const histogram *latency, uint64_t messages, uint64_t errors,
                int64_t now_ns, bool last) {
    interval *iv = slot_of(s, k);
    if (!iv) {
        if (!s->err)
            s->err = -ENOMEM;
        return;
    }
    hist_add(&iv->latency, latency);
    iv->messages += messages;
    iv->errors += errors;
    if (now_ns > iv->end_ns)
        iv->end_ns = now_ns;
    iv->last |= last;
}

/* Every thread has handed interval k in, or has finished (and so handed
 * in its last). */
static bool ready(const load_thread *threads, long nthreads, long k) {
    for (long i = 0; i < nthreads; i++)
        if (threads[i].handed <= k && !threads[i].finished)
            return false;
    return true;
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

/* Line k: t is its end from the end of the warm-up: a boundary, or for a
 * thread's last interval the end of the run (its latest hand-in). */
static void write_line(series *s, long k, const interval *iv) {
    int64_t from = k * s->interval_ns, to = from + s->interval_ns;
    if (iv->last)
        to = iv->end_ns - s->measure_ns > from ? iv->end_ns - s->measure_ns : from;
    double length = (double)(to - from) / 1e9;
    const histogram *h = &iv->latency;
    fprintf(s->out,
            "{\"t\":%.3f,\"messages\":%llu,\"msgs_per_sec\":%.1f,\"errors\":%llu,"
            "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}}\n",
            (double)to / 1e9, (unsigned long long)iv->messages,
            length > 0 ? (double)iv->messages / length : 0.0, (unsigned long long)iv->errors,
            us(hist_percentile(h, 50)), us(hist_percentile(h, 99)), us(h->max));
}

void series_write_ready(series *s, const load_thread *threads, long nthreads) {
    while (s->written < s->nslots && s->slot[s->written] && ready(threads, nthreads, s->written)) {
        write_line(s, s->written, s->slot[s->written]);
        free(s->slot[s->written]);
        s->slot[s->written++] = NULL;
    }
    if (fflush(s->out) != 0 && !s->err)
        s->err = -errno;
}

int series_close(series *s) {
    int err = s->err;
    if (ferror(s->out) && !err)
        err = -EIO;
    if (fclose(s->out) != 0 && !err)
        err = -errno;
    for (long k = 0; k < s->nslots; k++)
        free(s->slot[k]);
    free(s->slot);
    free(s);
    return err;
}
