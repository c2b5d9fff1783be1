/* Unit tests of src/common/units: decimal digits, durations and sizes,
 * parsed and formatted, at their edges (zero, the largest values, overflow,
 * units that are not ours). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/units.h"

static void test_read_digits(void **state) {
    (void)state;
    const char *s = "123abc";
    uint64_t v = 0;
    bool overflow = true;
    assert_true(units_read_digits(&s, &v, &overflow));
    assert_int_equal(v, 123);
    assert_false(overflow);
    assert_string_equal(s, "abc"); /* advanced past the digits */

    s = "18446744073709551615"; /* UINT64_MAX */
    assert_true(units_read_digits(&s, &v, &overflow));
    assert_true(v == UINT64_MAX);
    assert_false(overflow);
    assert_string_equal(s, "");

    s = "18446744073709551616x";
    assert_true(units_read_digits(&s, &v, &overflow));
    assert_true(overflow);
    assert_string_equal(s, "x"); /* all the digits consumed all the same */

    const char *none[] = {"", "x1", "-1", "+1", " 1"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        s = none[i];
        assert_false(units_read_digits(&s, &v, &overflow));
        assert_ptr_equal(s, none[i]); /* not advanced */
    }
}

static void expect_duration(const char *s, int64_t ms) {
    int64_t got = -1;
    assert_int_equal(units_parse_duration(s, &got), UNITS_OK);
    assert_true(got == ms);
}

static void expect_bad_duration(const char *s, enum units_status st) {
    int64_t got = 42;
    assert_int_equal(units_parse_duration(s, &got), st);
    assert_int_equal(got, 42); /* untouched */
}

static void test_parse_duration(void **state) {
    (void)state;
    expect_duration("0", 0);
    expect_duration("0ms", 0);
    expect_duration("0h", 0);
    expect_duration("500ms", 500);
    expect_duration("30s", 30 * MS_PER_S);
    expect_duration("5m", 5 * MS_PER_M);
    expect_duration("1h", MS_PER_H);
    expect_duration("007s", 7 * MS_PER_S);
    expect_duration("9223372036854775807ms", INT64_MAX);
    expect_duration("2562047788015h", 2562047788015 * MS_PER_H);

    expect_bad_duration("", UNITS_GARBAGE);
    expect_bad_duration("s", UNITS_GARBAGE);
    expect_bad_duration("-1s", UNITS_GARBAGE);
    expect_bad_duration(" 1s", UNITS_GARBAGE);
    expect_bad_duration("1", UNITS_NO_UNIT); /* only a bare 0 goes without a unit */
    expect_bad_duration("00", UNITS_NO_UNIT);
    expect_bad_duration("1d", UNITS_BAD_UNIT);
    expect_bad_duration("1S", UNITS_BAD_UNIT); /* units are case-sensitive */
    expect_bad_duration("1 s", UNITS_BAD_UNIT);
    expect_bad_duration("1s ", UNITS_BAD_UNIT);
    expect_bad_duration("1.5s", UNITS_BAD_UNIT);
    expect_bad_duration("1sec", UNITS_BAD_UNIT);
    expect_bad_duration("9223372036854775808ms", UNITS_TOO_BIG);
    expect_bad_duration("2562047788016h", UNITS_TOO_BIG);
    expect_bad_duration("99999999999999999999s", UNITS_TOO_BIG); /* over 64 bits */
}

static void expect_size(const char *s, size_t bytes) {
    size_t got = 1;
    assert_int_equal(units_parse_size(s, &got), UNITS_OK);
    assert_true(got == bytes);
}

static void expect_bad_size(const char *s, enum units_status st) {
    size_t got = 42;
    assert_int_equal(units_parse_size(s, &got), st);
    assert_int_equal(got, 42);
}

static void test_parse_size(void **state) {
    (void)state;
    expect_size("0", 0);
    expect_size("4096", 4096); /* bare digits are bytes */
    expect_size("512B", 512);
    expect_size("16KiB", 16 * KIB);
    expect_size("1MiB", MIB);
    expect_size("0MiB", 0);
    if (SIZE_MAX == UINT64_MAX) {
        expect_size("18446744073709551615", SIZE_MAX);
        expect_size("17592186044415MiB", SIZE_MAX - MIB + 1); /* 2^64 - 1 MiB */
        expect_bad_size("18446744073709551616", UNITS_TOO_BIG);
        expect_bad_size("17592186044416MiB", UNITS_TOO_BIG); /* 2^64 */
    }
    expect_bad_size("99999999999999999999999KiB", UNITS_TOO_BIG);

    expect_bad_size("", UNITS_GARBAGE);
    expect_bad_size("KiB", UNITS_GARBAGE);
    expect_bad_size("-1", UNITS_GARBAGE);
    expect_bad_size("1kib", UNITS_BAD_UNIT);
    expect_bad_size("1KB", UNITS_BAD_UNIT);
    expect_bad_size("1K", UNITS_BAD_UNIT);
    expect_bad_size("1GiB", UNITS_BAD_UNIT);
    expect_bad_size("1 KiB", UNITS_BAD_UNIT);
}

static void test_format_duration(void **state) {
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "0"},         {1, "1ms"},      {999, "999ms"},    {1000, "1s"},
        {1500, "1500ms"}, {90000, "90s"},  {300000, "5m"},    {5400000, "90m"},
        {3600000, "1h"},  {7200000, "2h"}, {86400000, "24h"}, {INT64_MAX, "9223372036854775807ms"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        units_format_duration(buf, sizeof buf, cases[i].ms);
        assert_string_equal(buf, cases[i].text);
        int64_t back;
        assert_int_equal(units_parse_duration(buf, &back), UNITS_OK); /* and back */
        assert_true(back == cases[i].ms);
    }
}

static void test_format_size(void **state) {
    (void)state;
    static const struct {
        size_t bytes;
        const char *text;
    } cases[] = {
        {0, "0"},          {1, "1B"},        {512, "512B"},     {1024, "1KiB"},
        {1536, "1536B"},   {16384, "16KiB"}, {1048576, "1MiB"}, {1049600, "1025KiB"},
        {8388608, "8MiB"}, {SIZE_MAX, NULL},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        units_format_size(buf, sizeof buf, cases[i].bytes);
        if (cases[i].text != NULL)
            assert_string_equal(buf, cases[i].text);
        size_t back;
        assert_int_equal(units_parse_size(buf, &back), UNITS_OK);
        assert_true(back == cases[i].bytes);
    }
}

/* A short buffer gets a cut, terminated text, never an overrun. */
static void test_format_short_buffer(void **state) {
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    units_format_size(buf, 3, 16 * KIB);
    assert_string_equal(buf, "16");
    assert_int_equal(buf[3], 'x');
    units_format_duration(buf, 4, 1500);
    assert_string_equal(buf, "150");
    assert_int_equal(buf[4], 'x');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_digits), cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),  cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_format_size), cmocka_unit_test(test_format_short_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
