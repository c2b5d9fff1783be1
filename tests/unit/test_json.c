/* Unit tests of src/common/json: escaping for JSON log lines. Quotes,
 * backslashes and control characters; well-formed UTF-8 kept; every
 * malformed byte replaced by \ufffd; output cut only between pieces. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"

static const char *esc(const char *s, size_t len) {
    static char buf[256];
    json_escape(buf, sizeof buf, s, len);
    return buf;
}

#define ESC(lit) esc(lit, sizeof(lit) - 1)

static void test_plain_and_specials(void **state) {
    (void)state;
    assert_string_equal(ESC("listening on 127.0.0.1:7007"), "listening on 127.0.0.1:7007");
    assert_string_equal(ESC("a\"b\\c/d"), "a\\\"b\\\\c/d");
    assert_string_equal(ESC("\n\r\t\b\f"), "\\n\\r\\t\\b\\f");
    assert_string_equal(ESC("\x01\x1f\x7f"), "\\u0001\\u001f\\u007f");
    assert_string_equal(ESC("a\0b"), "a\\u0000b"); /* the length counts, not the NUL */
    assert_string_equal(ESC(""), "");
}

static void test_utf8_kept(void **state) {
    (void)state;
    const char *ok[] = {"\xc3\xa9",         "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
                        "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xc2\x80"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_string_equal(esc(ok[i], strlen(ok[i])), ok[i]);
}

static void test_malformed_replaced(void **state) {
    (void)state;
    assert_string_equal(ESC("\x80"), "\\ufffd");                       /* stray continuation */
    assert_string_equal(ESC("\xff\xfe"), "\\ufffd\\ufffd");            /* never in UTF-8 */
    assert_string_equal(ESC("\xc0\xaf"), "\\ufffd\\ufffd");            /* overlong '/' */
    assert_string_equal(ESC("\xe0\x80\xaf"), "\\ufffd\\ufffd\\ufffd"); /* overlong */
    assert_string_equal(ESC("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd"); /* a surrogate */
    assert_string_equal(ESC("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd"); /* > 10FFFF */
    assert_string_equal(ESC("a\xe2\x82"), "a\\ufffd\\ufffd");                     /* cut short */
    assert_string_equal(ESC("\xe2\x82x"), "\\ufffd\\ufffdx");
    assert_string_equal(ESC("\xc3\xa9\xa9"), "\xc3\xa9\\ufffd");
}

static void test_utf8_length(void **state) {
    (void)state;
    assert_int_equal(json_utf8_length((const unsigned char *)"a", 1), 1);
    assert_int_equal(json_utf8_length((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(json_utf8_length((const unsigned char *)"\xf0\x9f\x98\x80", 3), 0);
    assert_int_equal(json_utf8_length((const unsigned char *)"\xf5\x80\x80\x80", 4), 0);
}

static void test_cut_between_pieces(void **state) {
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(json_escape(buf, 5, "ab\"cd", 5), 4); /* "ab\"" fits, c would not */
    assert_string_equal(buf, "ab\\\"");
    assert_int_equal(buf[5], 'x');
    assert_int_equal(json_escape(buf, 6, "\n\x01", 2), 2); /* \u0001 does not fit */
    assert_string_equal(buf, "\\n");
    assert_int_equal(json_escape(buf, 4, "a\xe2\x82\xac", 4), 1); /* nor does the euro sign */
    assert_string_equal(buf, "a");
    assert_int_equal(json_escape(buf, 1, "abc", 3), 0);
    assert_string_equal(buf, "");
    assert_int_equal(json_escape(buf, 0, "abc", 3), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_specials), cmocka_unit_test(test_utf8_kept),
        cmocka_unit_test(test_malformed_replaced), cmocka_unit_test(test_utf8_length),
        cmocka_unit_test(test_cut_between_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
