/* Latency histogram, log-linear: values below 128 exactly, above that 128
 * buckets per power of two, so a reported value (a bucket's midpoint) is
 * within 1/256 (0.4%) of any value that fell in it. Nanoseconds, up to 2^46. */
#ifndef COECHO_HISTOGRAM_H
#define COECHO_HISTOGRAM_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_TOP_EXP 46
#define HIST_BUCKETS ((HIST_TOP_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct histogram {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
    double sum;
} histogram;

void hist_init(histogram *h);
void hist_record(histogram *h, uint64_t value);
/* The value at percentile p (0-100]: a bucket midpoint, at most max. 0 when
 * empty. */
uint64_t hist_percentile(const histogram *h, double p);
double hist_mean(const histogram *h);
/* Adds src to dst bucket by bucket: the result is the histogram of both
 * sets of values. */
void hist_add(histogram *dst, const histogram *src);
/* "# value_us percentile count", then a line per non-empty bucket. */
int hist_write(const histogram *h, FILE *out);

#endif
