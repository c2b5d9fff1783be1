#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "load/histogram.h"

#include <string.h>

void hist_init(histogram *h) { memset(h, 0, sizeof *h); }

static unsigned bucket_of(uint64_t v) {
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned exp = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    if (exp >= HIST_TOP_EXP) { /* past the range: the last bucket, below 2^46 */
        exp = HIST_TOP_EXP - 1;
        v = (UINT64_C(1) << HIST_TOP_EXP) - 1;
    }
    unsigned sub = (unsigned)(v >> (exp - HIST_SUB_BITS)) - HIST_SUB;
    return (exp - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* The midpoint of a bucket: the value reported for everything in it. */
static uint64_t bucket_value(unsigned i) {
    if (i < HIST_SUB)
        return i;
    unsigned exp = i / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t width = UINT64_C(1) << (exp - HIST_SUB_BITS);
    uint64_t low = (uint64_t)(HIST_SUB + i % HIST_SUB) * width;
    return low + width / 2;
}

void hist_record(histogram *h, uint64_t value) {
    h->counts[bucket_of(value)]++;
    h->total++;
    h->sum += (double)value;
    if (value > h->max)
        h->max = value;
}

uint64_t hist_percentile(const histogram *h, double p) {
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double hist_mean(const histogram *h) { return h->total ? h->sum / (double)h->total : 0.0; }

void hist_add(histogram *dst, const histogram *src) {
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

int hist_write(const histogram *h, FILE *out) {
    uint64_t seen = 0;
    fprintf(out, "# value_us percentile count\n");
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->counts[i])
            continue;
        seen += h->counts[i];
        uint64_t v = bucket_value(i);
        if (v > h->max)
            v = h->max;
        fprintf(out, "%.3f %.6f %llu\n", (double)v / 1e3, 100.0 * (double)seen / (double)h->total,
                (unsigned long long)h->counts[i]);
    }
    return ferror(out) ? -1 : 0;
}
