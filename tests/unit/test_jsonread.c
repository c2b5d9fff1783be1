/* Unit tests of the strict JSON reader (src/common/jsonread.c): values of
 * every type, exact integers, escapes, and malformed input reported at its
 * line and column. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/jsonread.h"

static json_value *parse(const char *text) {
    json_error err;
    json_value *v = jsonread_parse(text, strlen(text), &err);
    if (!v)
        fail_msg("%s: %d:%d: %s", text, err.line, err.column, err.what);
    return v;
}

static void object_of_every_type(void **state) {
    (void)state;
    json_value *v = parse(" {\"n\":null,\"t\":true,\"f\":false,\"i\":18446744073709551615,"
                          "\"d\":-1.5e3,\"s\":\"a\\\"\\\\\\/\\n\\u00e9\\ud83d\\ude00\","
                          "\"a\":[1,[2],{}],\"o\":{\"k\":[]}}\n");
    assert_int_equal(v->type, JSON_OBJECT);
    assert_int_equal(v->count, 8);
    assert_int_equal(jsonread_get(v, "n")->type, JSON_NULL);
    assert_true(jsonread_get(v, "t")->boolean);
    assert_false(jsonread_get(v, "f")->boolean);
    const json_value *i = jsonread_get(v, "i");
    assert_true(i->is_uint);
    assert_true(i->uint == UINT64_MAX);
    const json_value *d = jsonread_get(v, "d");
    assert_false(d->is_uint);
    assert_true(d->number == -1500.0);
    assert_string_equal(jsonread_get(v, "s")->string, "a\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
    const json_value *a = jsonread_get(v, "a");
    assert_int_equal(a->count, 3);
    assert_int_equal(a->items[1].items[0].uint, 2);
    assert_int_equal(jsonread_get(jsonread_get(v, "o"), "k")->type, JSON_ARRAY);
    assert_null(jsonread_get(v, "missing"));
    assert_null(jsonread_get(a, "n")); /* not an object */
    jsonread_free(v);
}

static void integers_past_64_bits_are_not_exact(void **state) {
    (void)state;
    json_value *v = parse("[18446744073709551616, 1.0, 7, -0]");
    assert_false(v->items[0].is_uint);
    assert_false(v->items[1].is_uint);
    assert_true(v->items[2].is_uint);
    assert_false(v->items[3].is_uint);
    jsonread_free(v);
}

/* Each malformed text, and the line, column and reason it must give. */
static void malformed_input_names_line_and_column(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int line, column;
        const char *what;
    } cases[] = {
        {"", 1, 1, "unexpected end of input"},
        {"{\"a\":1,}", 1, 8, "expected a member name in quotes"},
        {"[1,]", 1, 4, "expected a value"},
        {"{\"a\":1\n,\"b\":01}", 2, 6, "a number may not have a leading zero"},
        {"{\"a\" 1}", 1, 6, "expected ':' after the member name"},
        {"[1 2]", 1, 4, "expected ',' or ']'"},
        {"{\"a\":1,\"a\":2}", 1, 8, "duplicate member \"a\""},
        {"\"abc", 1, 5, "unterminated string"},
        {"\"a\tb\"", 1, 3, "a control character in a string"},
        {"\"\\x\"", 1, 3, "invalid escape \\x"},
        {"\"\\ud800\"", 1, 8, "a high surrogate without a low one"},
        {"\"\\u12G4\"", 1, 4, "expected four hex digits after \\u"},
        {"\"\xff\"", 1, 2, "invalid UTF-8"},
        {"1.", 1, 3, "expected a digit after the decimal point"},
        {"-", 1, 2, "expected a digit"},
        {"1e400", 1, 6, "number out of range"},
        {"tru", 1, 1, "expected a value"},
        {"{} x", 1, 4, "unexpected text after the value"},
        {"\n\n  nul", 3, 3, "expected a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error err;
        json_value *v = jsonread_parse(cases[i].text, strlen(cases[i].text), &err);
        if (v)
            fail_msg("case %zu parsed: %s", i, cases[i].text);
        if (err.line != cases[i].line || err.column != cases[i].column ||
            strcmp(err.what, cases[i].what) != 0)
            fail_msg("case %zu (%s): got %d:%d: %s, want %d:%d: %s", i, cases[i].text, err.line,
                     err.column, err.what, cases[i].line, cases[i].column, cases[i].what);
    }
}

/* Deep nesting is refused before it can exhaust the stack. */
static void nesting_is_bounded(void **state) {
    (void)state;
    char deep[JSONREAD_MAX_DEPTH + 2];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    json_error err;
    assert_null(jsonread_parse(deep, strlen(deep), &err));
    assert_int_equal(err.column, JSONREAD_MAX_DEPTH + 1);
    assert_string_equal(err.what, "nested deeper than 64");
}

/* A NUL byte in the middle ends nothing early: it is an error. */
static void nul_byte_is_an_error(void **state) {
    (void)state;
    json_error err;
    assert_null(jsonread_parse("[1,\0 2]", 7, &err));
    assert_int_equal(err.column, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(object_of_every_type),
        cmocka_unit_test(integers_past_64_bits_are_not_exact),
        cmocka_unit_test(malformed_input_names_line_and_column),
        cmocka_unit_test(nesting_is_bounded),
        cmocka_unit_test(nul_byte_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
