/* Unit tests of coecho-load's latency histogram (src/load/histogram.c):
 * recording, percentiles against known distributions, bucket boundaries
 * (exact below 256, then 128 buckets per power of two, each reported as its
 * midpoint), max, mean, the histogram file and merging (hist_add). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "load/hgrm.h"
#include "load/histogram.h"

/* The largest value the histogram holds (its header: "up to 2^46"). */
#define TOP (UINT64_C(1) << HIST_TOP_EXP)
#define LAST (TOP - 1)

/* A histogram on the heap (about 40 KiB) full of garbage, for hist_init. */
static int setup(void **state) {
    histogram *h = malloc(sizeof *h);
    if (!h)
        return -1;
    memset(h, 0xA5, sizeof *h);
    hist_init(h);
    *state = h;
    return 0;
}

static int teardown(void **state) {
    free(*state);
    return 0;
}

/* What the histogram reports for v: the 50th percentile of {v, LAST}, the
 * first of two (a single value would be cut to the max, v itself). */
static uint64_t reported(uint64_t v) {
    histogram *h = malloc(sizeof *h);
    assert_non_null(h);
    hist_init(h);
    hist_record(h, v);
    hist_record(h, LAST);
    uint64_t r = hist_percentile(h, 50);
    free(h);
    return r;
}

/* The tolerance the header promises: within 1/256 of the value. */
static void assert_close(uint64_t got, uint64_t want) {
    uint64_t diff = got > want ? got - want : want - got;
    if (diff > want / 256)
        fail_msg("reported %llu for %llu: off by %llu, more than 1/256", (unsigned long long)got,
                 (unsigned long long)want, (unsigned long long)diff);
}

static void empty_histogram_reports_zero(void **state) {
    histogram *h = *state;
    assert_int_equal(h->total, 0);
    assert_int_equal(h->max, 0);
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_int_equal(hist_percentile(h, 100), 0);
    assert_true(hist_mean(h) == 0.0);
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        assert_int_equal(h->counts[i], 0);
}

static void record_counts_total_max_and_mean(void **state) {
    histogram *h = *state;
    static const uint64_t values[] = {3, 0, 10, 1, 2, 10};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        hist_record(h, values[i]);
    assert_int_equal(h->total, 6);
    assert_int_equal(h->max, 10);
    assert_true(hist_mean(h) == 26.0 / 6.0);
    assert_int_equal(h->counts[0], 1);
    assert_int_equal(h->counts[1], 1);
    assert_int_equal(h->counts[10], 2);
    uint64_t sum = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        sum += h->counts[i];
    assert_int_equal(sum, 6);
}

static void max_is_the_largest_value_recorded(void **state) {
    histogram *h = *state;
    hist_record(h, 5000);
    hist_record(h, 123456789);
    hist_record(h, 7);
    assert_int_equal(h->max, 123456789);
    /* 123456789 is in a bucket whose midpoint may lie above it: a
     * percentile never exceeds the max. */
    assert_int_equal(hist_percentile(h, 100), 123456789);
    assert_int_equal(hist_percentile(h, 99.9), 123456789);
    assert_int_equal(hist_percentile(h, 1), 7);
}

/* 1..100 once each: every percentile is exact (values below 128 have a
 * bucket each), rank = p% of the count rounded, at least 1. */
static void percentiles_of_one_to_a_hundred_are_exact(void **state) {
    histogram *h = *state;
    for (uint64_t v = 100; v >= 1; v--) /* order does not matter */
        hist_record(h, v);
    assert_int_equal(hist_percentile(h, 50), 50);
    assert_int_equal(hist_percentile(h, 90), 90);
    assert_int_equal(hist_percentile(h, 99), 99);
    assert_int_equal(hist_percentile(h, 99.9), 100);
    assert_int_equal(hist_percentile(h, 100), 100);
    assert_int_equal(hist_percentile(h, 0.6), 1);
    assert_int_equal(hist_percentile(h, 0.001), 1); /* rank 0 counts as 1 */
    assert_int_equal(hist_percentile(h, 1.5), 2);   /* 1.5 rounds to rank 2 */
    assert_true(hist_mean(h) == 50.5);
}

/* 1..100000: the rank-th value is rank itself; each percentile is within
 * 1/256 of it. */
static void percentiles_of_a_uniform_range_are_within_tolerance(void **state) {
    histogram *h = *state;
    const uint64_t n = 100000;
    for (uint64_t v = 1; v <= n; v++)
        hist_record(h, v);
    static const double ps[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        uint64_t rank = (uint64_t)(ps[i] / 100.0 * (double)n + 0.5);
        assert_close(hist_percentile(h, ps[i]), rank);
    }
    assert_int_equal(hist_percentile(h, 50), 50048); /* bucket 49920..50175 */
    assert_int_equal(hist_percentile(h, 100), n);    /* the midpoint, cut to the max */
}

/* Mostly fast with a slow tail: the tail shows from the rank it starts at. */
static void percentiles_of_a_bimodal_distribution(void **state) {
    histogram *h = *state;
    for (int i = 0; i < 990; i++)
        hist_record(h, 1000); /* bucket 1000..1003: reported 1002 */
    for (int i = 0; i < 10; i++)
        hist_record(h, 1000000); /* bucket 999424..1003519: midpoint above the max */
    assert_int_equal(hist_percentile(h, 50), 1002);
    assert_int_equal(hist_percentile(h, 99), 1002);
    assert_int_equal(hist_percentile(h, 99.1), 1000000);
    assert_int_equal(hist_percentile(h, 99.9), 1000000);
    assert_int_equal(h->max, 1000000);
    assert_true(hist_mean(h) == (990.0 * 1000 + 10.0 * 1000000) / 1000.0);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Values spread over nine decades (a fixed pseudo-random sequence): every
 * percentile is within 1/256 of the rank-th smallest value. */
static void percentiles_of_a_wide_distribution_match_the_sorted_values(void **state) {
    histogram *h = *state;
    enum { N = 20011 };
    static uint64_t values[N];
    uint64_t x = 88172645463325252u; /* xorshift64 */
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values[i] = (x >> 20) >> (x % 34); /* 1 ns to about 2^44 ns */
        hist_record(h, values[i]);
    }
    qsort(values, N, sizeof values[0], cmp_u64);
    assert_int_equal(h->max, values[N - 1]);
    for (double p = 0.5; p <= 100.0; p += 0.5) {
        uint64_t rank = (uint64_t)(p / 100.0 * N + 0.5);
        assert_close(hist_percentile(h, p), values[rank - 1]);
    }
}

/* Below 256 every value is its own bucket. */
static void small_values_are_exact(void **state) {
    (void)state;
    for (uint64_t v = 0; v < 2 * HIST_SUB; v++)
        assert_int_equal(reported(v), v);
}

/* From 256 on, 128 buckets per power of two, reported as their midpoint:
 * 256 and 257 share one (257), 258 starts the next (259); 2^k - 1 and 2^k
 * never share one; the report is within 1/256 and never decreases. */
static void bucket_boundaries(void **state) {
    (void)state;
    assert_int_equal(reported(255), 255);
    assert_int_equal(reported(256), 257);
    assert_int_equal(reported(257), 257);
    assert_int_equal(reported(258), 259);
    assert_int_equal(reported(511), 511);
    assert_int_equal(reported(512), 514); /* width 4 */
    assert_int_equal(reported(515), 514);
    assert_int_equal(reported(516), 518);
    for (unsigned k = HIST_SUB_BITS + 1; k < HIST_TOP_EXP; k++) {
        uint64_t p = UINT64_C(1) << k;
        uint64_t below = reported(p - 1), at = reported(p);
        assert_true(below < p);
        assert_true(at >= p);
        assert_close(below, p - 1);
        assert_close(at, p);
        /* the first bucket of 2^k is 2^(k-7) wide */
        uint64_t width = p >> HIST_SUB_BITS;
        assert_int_equal(at, p + width / 2);
        assert_int_equal(reported(p + width - 1), at);
        assert_true(reported(p + width) > at);
    }
    uint64_t last = 0;
    for (uint64_t v = 1; v < 100000; v += 7) {
        uint64_t r = reported(v);
        assert_true(r >= last);
        assert_close(r, v);
        last = r;
    }
}

/* The largest value in range lands in the last bucket. */
static void largest_value_in_range(void **state) {
    histogram *h = *state;
    hist_record(h, LAST);
    assert_int_equal(h->counts[HIST_BUCKETS - 1], 1);
    assert_int_equal(h->total, 1);
    assert_int_equal(h->max, LAST);
    /* its midpoint, half its width (2^38) below 2^46, is under the max */
    assert_int_equal(hist_percentile(h, 100), TOP - (TOP >> (HIST_SUB_BITS + 2)));
    assert_close(hist_percentile(h, 100), LAST);
}

/* Values of 2^46 and above are clamped into the last bucket (they once
 * got an index past counts[]: UBSan "index 5120 out of bounds"). */
static void values_past_the_range_are_clamped(void **state) {
    histogram *h = *state;
    hist_record(h, TOP);
    hist_record(h, UINT64_MAX);
    assert_int_equal(h->total, 2);
    assert_int_equal(h->counts[HIST_BUCKETS - 1], 2);
    assert_int_equal(h->max, UINT64_MAX);
}

/* What writer (hist_write, hgrm_write) prints for h; the caller frees it. */
static char *written(int (*writer)(const histogram *, FILE *), const histogram *h) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    assert_int_equal(writer(h, f), 0);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void write_lists_each_bucket_with_its_percentile(void **state) {
    histogram *h = *state;
    char *text = written(hist_write, h);
    assert_string_equal(text, "# value_us percentile count\n");
    free(text);

    hist_record(h, 1);
    hist_record(h, 3);
    hist_record(h, 1);
    hist_record(h, 256);
    hist_record(h, 257);
    hist_record(h, 1000000);
    text = written(hist_write, h);
    assert_string_equal(text, "# value_us percentile count\n"
                              "0.001 33.333333 2\n"
                              "0.003 50.000000 1\n"
                              "0.257 83.333333 2\n"
                              "1000.000 100.000000 1\n");
    free(text);
}

/* The wide pseudo-random values split over two histograms and merged give
 * the histogram of all of them: same buckets, total, max, sum. */
static void add_equals_one_histogram_of_all_samples(void **state) {
    histogram *all = *state;
    histogram *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t x = 88172645463325252u; /* xorshift64 */
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = (x >> 20) >> (x % 34);
        hist_record(all, v);
        hist_record(i % 3 ? a : b, v); /* unequal halves */
    }
    hist_add(a, b);
    assert_memory_equal(a->counts, all->counts, sizeof all->counts);
    assert_int_equal(a->total, all->total);
    assert_int_equal(a->max, all->max);
    /* the same doubles added in another order: equal to rounding */
    assert_true(fabs(a->sum - all->sum) <= 1e-12 * all->sum);
    assert_int_equal(hist_percentile(a, 99), hist_percentile(all, 99));
    /* adding an empty histogram changes nothing; into one, copies */
    histogram *empty = calloc(1, sizeof *empty);
    assert_non_null(empty);
    hist_add(a, empty);
    assert_int_equal(a->total, all->total);
    hist_add(empty, all);
    assert_memory_equal(empty, all, sizeof *all);
    free(a);
    free(b);
    free(empty);
}

/* HdrHistogram's text (the deviation from the bucket values): ticks 0, 10, ... 50, 55, ... each at
 * the first bucket reaching it; the last bucket gives one row, then the 100% row of three columns;
 * values in ms. 3 samples at 1 ms and 1 at 2 ms. */
static void hgrm_rows_and_footer(void **state) {
    histogram *h = *state;
    for (int i = 0; i < 3; i++)
        hist_record(h, 1000000);
    hist_record(h, 2000000);
    char *text = written(hgrm_write, h);
    assert_string_equal(text, "       Value     Percentile TotalCount 1/(1-Percentile)\n"
                              "\n"
                              "       1.001 0.000000000000          3           1.00\n"
                              "       1.001 0.100000000000          3           1.11\n"
                              "       1.001 0.200000000000          3           1.25\n"
                              "       1.001 0.300000000000          3           1.43\n"
                              "       1.001 0.400000000000          3           1.67\n"
                              "       1.001 0.500000000000          3           2.00\n"
                              "       1.001 0.550000000000          3           2.22\n"
                              "       1.001 0.600000000000          3           2.50\n"
                              "       1.001 0.650000000000          3           2.86\n"
                              "       1.001 0.700000000000          3           3.33\n"
                              "       1.001 0.750000000000          3           4.00\n"
                              "       2.000 0.775000000000          4           4.44\n"
                              "       2.000 1.000000000000          4\n"
                              "#[Mean    =        1.250, StdDeviation   =        0.432]\n"
                              "#[Max     =        2.000, Total count    =            4]\n"
                              "#[Buckets =           39, SubBuckets     =          256]\n");
    free(text);
}

/* No samples: the header and the footer, no rows. */
static void hgrm_of_an_empty_histogram(void **state) {
    char *text = written(hgrm_write, *state);
    assert_string_equal(text, "       Value     Percentile TotalCount 1/(1-Percentile)\n"
                              "\n"
                              "#[Mean    =        0.000, StdDeviation   =        0.000]\n"
                              "#[Max     =        0.000, Total count    =            0]\n"
                              "#[Buckets =           39, SubBuckets     =          256]\n");
    free(text);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(empty_histogram_reports_zero),
        T(record_counts_total_max_and_mean),
        T(max_is_the_largest_value_recorded),
        T(percentiles_of_one_to_a_hundred_are_exact),
        T(percentiles_of_a_uniform_range_are_within_tolerance),
        T(percentiles_of_a_bimodal_distribution),
        T(percentiles_of_a_wide_distribution_match_the_sorted_values),
        T(small_values_are_exact),
        T(bucket_boundaries),
        T(largest_value_in_range),
        T(values_past_the_range_are_clamped),
        T(write_lists_each_bucket_with_its_percentile),
        T(add_equals_one_histogram_of_all_samples),
        T(hgrm_rows_and_footer),
        T(hgrm_of_an_empty_histogram),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
