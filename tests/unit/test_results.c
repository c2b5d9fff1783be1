/* Unit tests of merging coecho-load's results across threads: hist_add
 * (src/load/histogram.c) and results_add (src/load/report.c). A merge must
 * equal what one thread would have counted from every sample. */
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

#include "load/load.h"

enum { PARTS = 3, SAMPLES = 20000 };

/* Spread over many octaves, bucket edges included: xorshift, masked to a
 * random width. */
static uint64_t sample(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    unsigned bits = (unsigned)(*x % 48);
    return (*x >> 16) & ((UINT64_C(1) << bits) - 1);
}

static void assert_same_histogram(const histogram *a, const histogram *b) {
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (a->counts[i] != b->counts[i])
            fail_msg("bucket %u: %llu, want %llu", i, (unsigned long long)a->counts[i],
                     (unsigned long long)b->counts[i]);
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->max, b->max);
    assert_true(a->sum == b->sum); /* integers well below 2^53: exact */
    assert_int_equal(hist_percentile(a, 99.9), hist_percentile(b, 99.9));
}

/* Samples dealt round-robin to PARTS histograms, then added up, equal one
 * histogram of all of them, bucket by bucket. */
static void test_hist_add_equals_one_histogram(void **state) {
    (void)state;
    histogram *parts = calloc(PARTS, sizeof *parts);
    histogram *all = calloc(1, sizeof *all), *merged = calloc(1, sizeof *merged);
    assert_non_null(parts);
    assert_non_null(all);
    assert_non_null(merged);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t v = sample(&x) % (UINT64_C(1) << 32); /* sums stay exact in a double */
        hist_record(&parts[i % PARTS], v);
        hist_record(all, v);
    }
    for (int p = 0; p < PARTS; p++)
        hist_add(merged, &parts[p]);
    assert_same_histogram(merged, all);
    free(parts);
    free(all);
    free(merged);
}

/* Adding an empty histogram changes nothing; into an empty one copies. */
static void test_hist_add_empty(void **state) {
    (void)state;
    histogram *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    hist_record(a, 1234);
    hist_record(a, 5);
    hist_add(b, a);
    assert_same_histogram(b, a);
    histogram *empty = calloc(1, sizeof *empty);
    assert_non_null(empty);
    hist_add(a, empty);
    assert_same_histogram(b, a);
    free(a);
    free(b);
    free(empty);
}

static void fill(load_results *r, uint64_t seed) {
    r->connections_up = (long)seed;
    r->connections_failed = (long)seed + 1;
    r->messages = seed * 100;
    r->mismatches = seed + 2;
    r->bytes_out = seed * 6400;
    r->bytes_in = seed * 6300;
    for (int i = 0; i < ERR_KINDS; i++)
        r->errors[i] = seed * (uint64_t)(i + 1);
    r->udp_sent = seed * 7, r->udp_lost = seed * 8, r->udp_late = seed * 9;
    r->start_ns = 1000 + (int64_t)seed;
    r->end_ns = 5000 - (int64_t)seed * 10;
    for (uint64_t i = 0; i < seed * 10; i++)
        hist_record(&r->latency, i * seed);
}

/* Every count adds, times span the earliest start to the latest end. */
static void test_results_add_sums_counts(void **state) {
    (void)state;
    load_results *sum = calloc(1, sizeof *sum), *part = calloc(1, sizeof *part);
    histogram *want = calloc(1, sizeof *want);
    assert_non_null(sum);
    assert_non_null(part);
    assert_non_null(want);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        memset(part, 0, sizeof *part);
        fill(part, seed);
        hist_add(want, &part->latency);
        results_add(sum, part);
    }
    assert_int_equal(sum->connections_up, 1 + 2 + 3);
    assert_int_equal(sum->connections_failed, 2 + 3 + 4);
    assert_int_equal(sum->messages, 600);
    assert_int_equal(sum->mismatches, 3 + 4 + 5);
    assert_int_equal(sum->bytes_out, 6 * 6400);
    assert_int_equal(sum->bytes_in, 6 * 6300);
    for (int i = 0; i < ERR_KINDS; i++)
        assert_int_equal(sum->errors[i], 6 * (uint64_t)(i + 1));
    assert_int_equal(sum->udp_sent, 42);
    assert_int_equal(sum->udp_lost, 48);
    assert_int_equal(sum->udp_late, 54);
    assert_int_equal(results_errors(sum), 6 * ERR_KINDS * (ERR_KINDS + 1) / 2);
    assert_int_equal(sum->start_ns, 1001);
    assert_int_equal(sum->end_ns, 4990);
    assert_same_histogram(&sum->latency, want);
    free(sum);
    free(part);
    free(want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_add_equals_one_histogram),
        cmocka_unit_test(test_hist_add_empty),
        cmocka_unit_test(test_results_add_sums_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
