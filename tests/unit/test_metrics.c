/* Unit tests of the metrics region (src/server/metrics.c: totals that
 * survive a dead worker), of its text (src/server/metrics_text.c: the
 * exposition format, and the request line the endpoint answers) and of
 * the USR1 and STATUS= lines (src/server/statline.c). */
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

#include "server/metrics.h"
#include "server/metrics_text.h"
#include "server/statline.h"

/* ---- the region ---------------------------------------------------------------- */

static void publish_as(int slot, uint64_t accepted, uint64_t active) {
    metrics_values v = {{0}};
    v.v[MV_ACCEPTED] = accepted;
    v.v[MV_BYTES_IN] = accepted * 10;
    v.v[MV_ACTIVE] = active;
    metrics_set_slot(slot);
    metrics_publish(&v);
}

static void totals_survive_a_dead_worker(void **state) {
    (void)state;
    assert_int_equal(metrics_init(2, true), 0);
    publish_as(0, 100, 3);
    publish_as(1, 50, 2);
    metrics_snapshot *s = metrics_snapshot_take();
    assert_non_null(s);
    assert_int_equal(s->total.v[MV_ACCEPTED], 150);
    assert_int_equal(s->total.v[MV_ACTIVE], 5);
    assert_int_equal(s->running, 2);
    free(s);

    metrics_retire(1); /* worker 2 died: its counters stay, its gauges go */
    metrics_worker_restarted();
    s = metrics_snapshot_take();
    assert_int_equal(s->total.v[MV_ACCEPTED], 150);
    assert_int_equal(s->total.v[MV_BYTES_IN], 1500);
    assert_int_equal(s->total.v[MV_ACTIVE], 3);
    assert_int_equal(s->slot[1].v[MV_ACCEPTED], 0);
    assert_int_equal(s->running, 1);
    assert_int_equal(s->worker_restarts, 1);
    free(s);

    publish_as(1, 7, 1); /* its replacement starts over */
    s = metrics_snapshot_take();
    assert_int_equal(s->total.v[MV_ACCEPTED], 157);
    assert_int_equal(s->slot[1].v[MV_ACCEPTED], 7);
    free(s);
}

static void reloads_are_counted(void **state) {
    (void)state;
    assert_int_equal(metrics_init(1, false), 0);
    metrics_reload_done(true);
    metrics_reload_done(false);
    metrics_reload_done(true);
    metrics_snapshot *s = metrics_snapshot_take();
    assert_int_equal(s->reloads_ok, 2);
    assert_int_equal(s->reloads_failed, 1);
    assert_true(s->last_reload_ms >= s->start_time_ms);
    free(s);
}

/* ---- the text ------------------------------------------------------------------ */

static char *render(int nslots, bool workers, size_t *len) {
    metrics_snapshot *s = calloc(1, sizeof *s + (size_t)nslots * sizeof s->slot[0]);
    assert_non_null(s);
    s->workers = workers;
    s->nslots = s->running = nslots;
    s->start_time_ms = 1700000000123ull;
    for (int i = 0; i < nslots; i++) {
        s->slot[i].v[MV_ACCEPTED] = 10u * (unsigned)(i + 1);
        s->total.v[MV_ACCEPTED] += s->slot[i].v[MV_ACCEPTED];
    }
    s->total.v[MV_REJECTED_PER_IP] = 4;
    s->total.v[MV_REJECTED_ACCESS] = 6;
    char *text = metrics_render(s, "9.9.9", len);
    free(s);
    assert_non_null(text);
    assert_int_equal(strlen(text), *len);
    return text;
}

static void renders_the_exposition_format(void **state) {
    (void)state;
    size_t len;
    char *t = render(1, false, &len);
    assert_non_null(strstr(t, "# HELP coechod_connections_accepted_total "));
    assert_non_null(strstr(t, "# TYPE coechod_connections_accepted_total counter\n"
                              "coechod_connections_accepted_total 10\n"));
    assert_non_null(strstr(t, "coechod_connections_rejected_total{reason=\"per_ip\"} 4\n"
                              "coechod_connections_rejected_total{reason=\"spawn_failure\"} 0\n"
                              "coechod_connections_rejected_total{reason=\"access\"} 6\n"));
    assert_non_null(strstr(t, "# TYPE coechod_connections_open gauge\n"));
    assert_non_null(strstr(t, "coechod_build_info{version=\"9.9.9\"} 1\n"));
    assert_non_null(strstr(t, "process_start_time_seconds 1700000000.123\n"));
    assert_non_null(strstr(t, "coechod_last_reload_timestamp_seconds 0.000\n"));
    assert_null(strstr(t, "worker=")); /* no per-worker series without workers */
    /* every family has one HELP and one TYPE, and every line ends */
    assert_int_equal(t[len - 1], '\n');
    size_t helps = 0, types = 0;
    for (const char *p = t; (p = strstr(p, "# HELP ")); p++)
        helps++;
    for (const char *p = t; (p = strstr(p, "# TYPE ")); p++)
        types++;
    assert_int_equal(helps, types);
    free(t);
}

static void renders_workers_after_the_totals(void **state) {
    (void)state;
    size_t len;
    char *t = render(3, true, &len);
    char *total = strstr(t, "coechod_connections_accepted_total 60\n");
    char *w3 = strstr(t, "coechod_worker_connections_accepted_total{worker=\"3\"} 30\n");
    assert_non_null(total);
    assert_non_null(w3);
    assert_true(total < w3);
    assert_non_null(
        strstr(t, "coechod_worker_connections_rejected_total{worker=\"2\",reason=\"per_ip\"} 0\n"));
    assert_non_null(strstr(t, "coechod_workers 3\n"));
    free(t);
}

/* ---- requests -------------------------------------------------------------------- */

static void finds_the_end_of_a_head(void **state) {
    (void)state;
    const char *crlf = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nrest";
    assert_int_equal(metrics_head_end(crlf, strlen(crlf)), strlen(crlf) - 4);
    const char *lf = "GET / HTTP/1.0\n\n";
    assert_int_equal(metrics_head_end(lf, strlen(lf)), strlen(lf));
    const char *partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r";
    assert_int_equal(metrics_head_end(partial, strlen(partial)), 0);
}

static void answers_by_path_and_method(void **state) {
    (void)state;
    static const struct {
        const char *line;
        int status;
        bool head_only;
    } cases[] = {
        {"GET /metrics HTTP/1.1\r\n\r\n", 200, false},
        {"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200, false},
        {"HEAD /metrics HTTP/1.1\r\n\r\n", 200, true},
        {"POST /metrics HTTP/1.1\r\n\r\n", 405, false},
        {"DELETE /metrics HTTP/1.1\r\n\r\n", 405, false},
        {"GET / HTTP/1.1\r\n\r\n", 404, false},
        {"GET /metricsx HTTP/1.1\r\n\r\n", 404, false},
        {"POST /other HTTP/1.1\r\n\r\n", 404, false},
        {"GET /metrics\r\n\r\n", 400, false},
        {"GET /metrics HTTP/2.0\r\n\r\n", 400, false},
        {"get /metrics HTTP/1.1\r\n\r\n", 400, false},
        {"GET metrics HTTP/1.1\r\n\r\n", 400, false},
        {"\r\n\r\n", 400, false},
        {"GET  /metrics HTTP/1.1\r\n\r\n", 400, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool head_only = false;
        int status = metrics_request_status(cases[i].line, &head_only);
        if (status != cases[i].status)
            fail_msg("%s: %d, expected %d", cases[i].line, status, cases[i].status);
        assert_int_equal(head_only, cases[i].head_only);
    }
}

/* ---- the USR1 and STATUS= lines ------------------------------------------------ */

static void stats_line_keys_in_order(void **state) {
    (void)state;
    metrics_values v = {{0}};
    v.v[MV_ACTIVE] = 2;
    v.v[MV_ACCEPT_ERRORS] = 3;
    v.v[MV_UDP_DROP_TRUNCATED] = 4;
    v.v[MV_UDP_DROP_ACCESS] = 6;
    char line[STATLINE_SIZE];
    statline_stats(line, sizeof line, &v, &(statline_workers){0});
    assert_non_null(strstr(line, "connections=2 accepted=0 "));
    assert_non_null(strstr(line, " accept_errors=3 bytes_in=0 "));
    assert_non_null(strstr(line, " parked=0 workers=1/1 worker_restarts=0 udp_in=0 "));
    assert_non_null(strstr(line, " udp_dropped_truncated=4 udp_dropped_access=6"));
    statline_stats(line, sizeof line, &v, &(statline_workers){1, 2, 5});
    assert_non_null(strstr(line, " workers=1/2 worker_restarts=5 "));
}

static void lines_fit_whatever_the_numbers(void **state) {
    (void)state;
    metrics_values v;
    memset(&v, 0xff, sizeof v);
    statline_workers w = {-2147483647 - 1, -2147483647 - 1, UINT64_MAX};
    char line[STATLINE_SIZE];
    assert_true(statline_stats(line, sizeof line, &v, &w) < STATLINE_SIZE);
    assert_true(statline_status(line, sizeof line, &v, &w, true) < STATLINE_SIZE);
}

static void status_names_udp_once_there_is_some(void **state) {
    (void)state;
    metrics_values v = {{0}};
    v.v[MV_ACTIVE] = 1;
    v.v[MV_LISTENERS] = 2;
    char text[STATLINE_SIZE];
    statline_status(text, sizeof text, &v, &(statline_workers){0}, false);
    assert_string_equal(text, "1 connection(s), 0 accepted, 0 closed, 0 timed out, 0 bytes "
                              "echoed; 2 listener(s), 0 task(s)");
    v.v[MV_UDP_LISTENERS] = 1;
    v.v[MV_UDP_OUT] = 7;
    v.v[MV_UDP_DROP_RATE_LIMIT] = 2;
    v.v[MV_UDP_DROP_SEND_FULL] = 1;
    statline_status(text, sizeof text, &v, &(statline_workers){2, 3, 0}, true);
    assert_string_equal(text, "stopping: 2/3 workers; 1 connection(s), 0 accepted, 0 closed, 0 "
                              "timed out, 0 bytes echoed; 2 listener(s), 0 task(s); udp: 7 "
                              "datagrams echoed, 3 dropped");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(totals_survive_a_dead_worker),
        cmocka_unit_test(reloads_are_counted),
        cmocka_unit_test(renders_the_exposition_format),
        cmocka_unit_test(renders_workers_after_the_totals),
        cmocka_unit_test(finds_the_end_of_a_head),
        cmocka_unit_test(answers_by_path_and_method),
        cmocka_unit_test(stats_line_keys_in_order),
        cmocka_unit_test(lines_fit_whatever_the_numbers),
        cmocka_unit_test(status_names_udp_once_there_is_some),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
