/* The latency histogram in HdrHistogram's percentile-distribution text
 * format (.hgrm: what outputPercentileDistribution and wrk2 print, and the
 * HdrHistogram plotter reads), values in milliseconds. */
#ifndef COECHO_HGRM_H
#define COECHO_HGRM_H

#include <stdio.h>

#include "load/histogram.h"

/* HdrHistogram's layout equivalent to ours: 256 sub-buckets (0-255 exact),
 * then one bucket of 128 per power of two up to 2^46. */
#define HGRM_SUB_BUCKETS (2 * HIST_SUB)
#define HGRM_BUCKETS (HIST_TOP_EXP - HIST_SUB_BITS)

/* Header, a row per percentile tick (5 per halving of the distance to
 * 100%), the 100% row, the footer. 0, or -1 if out has an error. */
int hgrm_write(const histogram *h, FILE *out);

#endif
