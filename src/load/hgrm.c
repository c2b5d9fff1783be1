/* .hgrm output: see hgrm.h. The rows follow HdrHistogram's percentile
 * iterator: ticks at 0%, then 5 per halving of the distance to 100%
 * (0, 10, 20, ..., 50, 55, ...), each reported at the first bucket whose
 * cumulative count reaches it; the bucket that holds the last sample gives
 * one row and then the 100% row, which has no 1/(1-p) column. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "load/hgrm.h"

#include <math.h>

enum { TICKS_PER_HALF = 5 };

static double ms(double ns) { return ns / 1e6; }

/* The reported value of bucket i, never above the max (as percentiles). */
static uint64_t value_of(const histogram *h, unsigned i) {
    uint64_t v = hist_bucket_value(i);
    return v < h->max ? v : h->max;
}

/* The tick after p (percent): the step halves with each halving of 100 - p. */
static double next_tick(double p) {
    double halvings = floor(log2(100.0 / (100.0 - p))) + 1;
    return p + 100.0 / (TICKS_PER_HALF * pow(2.0, halvings));
}

static void row(FILE *out, uint64_t value, double p, uint64_t count) {
    double f = p / 100.0;
    fprintf(out, "%12.3f %2.12f %10llu %14.2f\n", ms((double)value), f, (unsigned long long)count,
            1.0 / (1.0 - f));
}

/* Standard deviation from the buckets' values (as HdrHistogram does). */
static double stddev(const histogram *h) {
    if (!h->total)
        return 0.0;
    double mean = hist_mean(h), acc = 0.0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (h->counts[i]) {
            double d = (double)value_of(h, i) - mean;
            acc += d * d * (double)h->counts[i];
        }
    return sqrt(acc / (double)h->total);
}

static void rows(const histogram *h, FILE *out) {
    uint64_t seen = 0;
    double p = 0.0;
    for (unsigned i = 0; i < HIST_BUCKETS && seen < h->total; i++) {
        if (!h->counts[i])
            continue;
        seen += h->counts[i];
        while (100.0 * (double)seen / (double)h->total >= p) {
            row(out, value_of(h, i), p, seen);
            p = next_tick(p);
            if (seen == h->total) /* the last bucket: one row, then 100% */
                break;
        }
        if (seen == h->total)
            fprintf(out, "%12.3f %2.12f %10llu\n", ms((double)value_of(h, i)), 1.0,
                    (unsigned long long)seen);
    }
}

int hgrm_write(const histogram *h, FILE *out) {
    fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
            "1/(1-Percentile)");
    rows(h, out);
    fprintf(out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", ms(hist_mean(h)), ms(stddev(h)));
    fprintf(out, "#[Max     = %12.3f, Total count    = %12llu]\n", ms((double)h->max),
            (unsigned long long)h->total);
    fprintf(out, "#[Buckets = %12d, SubBuckets     = %12d]\n", HGRM_BUCKETS, HGRM_SUB_BUCKETS);
    return ferror(out) ? -1 : 0;
}
