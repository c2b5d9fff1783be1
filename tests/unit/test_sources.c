/* coecho-load --source: list parsing, which source a connection takes, and
 * adding counts (src/load/sources.c). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "load/load.h"

static void text_of(const source_list *s, size_t i, char *buf) {
    const source_addr *a = &s->addrs[i];
    const void *p =
        a->sa.sa_family == AF_INET ? (const void *)&a->v4.sin_addr : (const void *)&a->v6.sin6_addr;
    assert_non_null(inet_ntop(a->sa.sa_family, p, buf, INET6_ADDRSTRLEN));
}

static void expect_addr(const source_list *s, size_t i, const char *want) {
    char buf[INET6_ADDRSTRLEN];
    text_of(s, i, buf);
    assert_string_equal(buf, want);
}

static void ranges_expand_in_order(void **state) {
    (void)state;
    source_list s;
    char err[200];
    assert_int_equal(
        sources_parse(&s, "127.0.0.254-127.0.1.1,::1,fd00::fffe-fd00::1:0", err, sizeof err), 0);
    assert_int_equal(s.n, 8);
    expect_addr(&s, 0, "127.0.0.254");
    expect_addr(&s, 2, "127.0.1.0"); /* carries into the next byte */
    expect_addr(&s, 3, "127.0.1.1");
    expect_addr(&s, 4, "::1");
    expect_addr(&s, 7, "fd00::1:0");
    assert_int_equal(s.nv4, 4);
    assert_int_equal(s.nv6, 4);
    assert_int_equal(s.v6[0], 4);
    assert_int_equal(sources_of_family(&s, AF_INET6), 4);
    sources_free(&s);
}

static void expect_error(const char *list, const char *named) {
    source_list s;
    char err[200] = "";
    assert_int_equal(sources_parse(&s, list, err, sizeof err), -1);
    assert_non_null(strstr(err, named));
    assert_null(s.addrs);
}

static void bad_lists_name_the_item(void **state) {
    (void)state;
    expect_error("127.0.0.2-127.0.0.1", "\"127.0.0.2-127.0.0.1\"");
    expect_error("127.0.0.1-::2", "\"127.0.0.1-::2\"");
    expect_error("127.0.0.1,bad", "\"bad\"");
    expect_error("127.0.0.1-", "\"127.0.0.1-\"");
    expect_error("", "empty");
    expect_error("1.0.0.0-1.0.255.255,2.0.0.0", "\"2.0.0.0\"");
    expect_error("::-ffff::", "\"::-ffff::\"");
}

static void the_limit_is_65536(void **state) {
    (void)state;
    source_list s;
    char err[200];
    assert_int_equal(sources_parse(&s, "fd00::-fd00::ffff", err, sizeof err), 0);
    assert_int_equal(s.n, SOURCES_MAX);
    expect_addr(&s, SOURCES_MAX - 1, "fd00::ffff");
    sources_free(&s);
    expect_error("fd00::-fd00::1:0", "more than 65536");
}

static void set_target(load_options *o, size_t i, int family) {
    o->targets[i].addr.ss_family = (sa_family_t)family;
}

/* Connection i: target i % ntargets, source (i / ntargets) % n of its
 * family. */
static void connections_take_their_source(void **state) {
    (void)state;
    static load_options o;
    char err[200];
    assert_int_equal(sources_parse(&o.sources, "10.0.0.1,::1,10.0.0.2,10.0.0.3", err, sizeof err),
                     0);
    o.ntargets = 2;
    set_target(&o, 0, AF_INET);
    set_target(&o, 1, AF_INET6);
    long want[] = {0, 1, 2, 1, 3, 1, 0, 1};
    for (long i = 0; i < 8; i++)
        assert_int_equal(sources_pick(&o, i), want[i]);
    sources_free(&o.sources);
    assert_int_equal(sources_pick(&o, 0), -1);
}

static void counts_add_up(void **state) {
    (void)state;
    static load_options o = {.ntargets = 2};
    static load_results a, b;
    char err[200];
    assert_int_equal(sources_parse(&o.sources, "10.0.0.1-10.0.0.3", err, sizeof err), 0);
    set_target(&o, 0, AF_INET);
    set_target(&o, 1, AF_INET);
    assert_int_equal(tally_init(&a.tally, o.sources.n), 0);
    assert_int_equal(tally_init(&b.tally, o.sources.n), 0);
    for (long i = 0; i < 6; i++)
        tally_count(&o, &a, i, TALLY_UP);
    tally_count(&o, &b, 5, TALLY_FAILED); /* target 1, source (5 / 2) % 3 = 2 */
    tally_count(&o, &b, 5, TALLY_ERROR);
    tally_add(&a.tally, &b.tally);
    assert_int_equal(a.tally.per_target[0].up, 3);
    assert_int_equal(a.tally.per_target[1].failed, 1);
    assert_int_equal(a.tally.per_source[2].up, 2);
    assert_int_equal(a.tally.per_source[2].errors, 1);
    assert_int_equal(a.tally.per_source[0].failed, 0);
    tally_free(&a.tally);
    tally_free(&b.tally);
    sources_free(&o.sources);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges_expand_in_order), cmocka_unit_test(bad_lists_name_the_item),
        cmocka_unit_test(the_limit_is_65536),     cmocka_unit_test(connections_take_their_source),
        cmocka_unit_test(counts_add_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
