/* Unit tests of the configuration parser: defaults, the example file,
 * durations and sizes, listen addresses, dump -> load round trips, the
 * reload policy (start-only and fixed keys), and two corpora: every .yaml
 * file in tests/configs/good must load, and each tests/configs/bad/NAME.yaml
 * must fail with the first error line given in NAME.expect. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config.h"

#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must be defined (the Makefile passes -DTOP_SRCDIR)"
#endif

#define GOOD_DIR TOP_SRCDIR "/tests/configs/good"
#define BAD_DIR TOP_SRCDIR "/tests/configs/bad"

/* ---- helpers --------------------------------------------------------------- */

/* Creates a temporary file holding len bytes of text; its path goes to path. */
static void write_temp(char *path, size_t size, const char *text, size_t len) {
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/coechod-test-XXXXXX", dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* config_load on a temporary file holding yaml. */
static int load_text(const char *yaml, config *cfg, config_errors *errs) {
    char path[512];
    write_temp(path, sizeof path, yaml, strlen(yaml));
    int rc = config_load(path, cfg, errs);
    unlink(path);
    return rc;
}

/* The first error line of errs without the file name (temporary files have
 * random names): from the first ':' on. */
static const char *first_error(const config_errors *errs, char *buf, size_t size) {
    const char *colon = strchr(errs->text, ':');
    const char *start = colon != NULL ? colon : errs->text;
    size_t len = strcspn(start, "\n");
    snprintf(buf, size, "%.*s", (int)len, start);
    return buf;
}

/* Loads yaml, which must fail, and checks its first error ("FILE" cut off). */
static void expect_error(const char *yaml, const char *expected) {
    config cfg;
    config_errors errs;
    char line[1024];
    assert_int_equal(load_text(yaml, &cfg, &errs), -1);
    assert_true(errs.count >= 1);
    assert_string_equal(first_error(&errs, line, sizeof line), expected);
}

/* Loads yaml, which must succeed. */
static void expect_load(const char *yaml, config *cfg) {
    config_errors errs;
    int rc = load_text(yaml, cfg, &errs);
    if (rc != 0)
        fail_msg("unexpected errors:\n%s", errs.text);
    assert_int_equal(errs.count, 0);
}

static unsigned listen_port(const listen_addr *la) {
    if (la->addr.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&la->addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&la->addr)->sin6_port);
}

static void assert_listen_equal(const listen_addr *a, const listen_addr *b) {
    assert_string_equal(a->text, b->text);
    assert_int_equal(a->udp, b->udp);
    assert_int_equal(a->proxy_protocol, b->proxy_protocol);
    assert_int_equal(a->addrlen, b->addrlen);
    assert_int_equal(a->addr.ss_family, b->addr.ss_family);
    assert_memory_equal(&a->addr, &b->addr, a->addrlen);
}

/* Field by field, so that a failure names the field. */
static void assert_config_equal(const config *a, const config *b) {
    assert_int_equal(a->nlisten, b->nlisten);
    for (size_t i = 0; i < a->nlisten; i++)
        assert_listen_equal(&a->listen[i], &b->listen[i]);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_int_equal(a->max_connections_per_ip, b->max_connections_per_ip);
    assert_int_equal(a->per_ip_ipv6_prefix, b->per_ip_ipv6_prefix);
    assert_int_equal(a->idle_timeout_ms, b->idle_timeout_ms);
    assert_int_equal(a->buffer_size, b->buffer_size);
    assert_int_equal(a->stack_size, b->stack_size);
    assert_int_equal(a->backlog, b->backlog);
    assert_int_equal(a->udp_rate_limit, b->udp_rate_limit);
    assert_int_equal(a->shutdown_grace_ms, b->shutdown_grace_ms);
    assert_int_equal(a->workers, b->workers);
    assert_int_equal(a->log_level, b->log_level);
    assert_string_equal(a->log_file, b->log_file);
    assert_int_equal(a->log_connections, b->log_connections);
    assert_int_equal(a->log_format, b->log_format);
    assert_string_equal(a->pid_file, b->pid_file);
    assert_string_equal(a->user, b->user);
}

/* config_dump into a string (freed by the caller). */
static char *dump_to_string(const config *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_dump(cfg, out);
    assert_int_equal(fclose(out), 0);
    return text;
}

/* ---- defaults and the example file ------------------------------------------ */

static void test_defaults(void **state) {
    (void)state;
    config cfg;
    config_defaults(&cfg);
    assert_int_equal(cfg.nlisten, 2);
    assert_string_equal(cfg.listen[0].text, "127.0.0.1:7007");
    assert_int_equal(cfg.listen[0].addr.ss_family, AF_INET);
    assert_int_equal(cfg.listen[0].addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(listen_port(&cfg.listen[0]), 7007);
    assert_string_equal(cfg.listen[1].text, "[::1]:7007");
    assert_int_equal(cfg.listen[1].addr.ss_family, AF_INET6);
    assert_int_equal(cfg.listen[1].addrlen, sizeof(struct sockaddr_in6));
    assert_int_equal(listen_port(&cfg.listen[1]), 7007);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.max_connections_per_ip, 0);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 64);
    assert_int_equal(cfg.idle_timeout_ms, 300000);
    assert_int_equal(cfg.buffer_size, 16384);
    assert_int_equal(cfg.stack_size, 65536);
    assert_int_equal(cfg.backlog, 1024);
    assert_int_equal(cfg.shutdown_grace_ms, 10000);
    assert_int_equal(cfg.workers, 1);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_string_equal(cfg.log_file, "");
    assert_false(cfg.log_connections);
    assert_int_equal(cfg.log_format, LOG_FORMAT_TEXT);
    assert_string_equal(cfg.pid_file, "");
    assert_string_equal(cfg.user, "");
}

static void test_example_file_is_the_defaults(void **state) {
    (void)state;
    config cfg, defaults;
    config_errors errs;
    int rc = config_load(TOP_SRCDIR "/conf/coechod.yaml", &cfg, &errs);
    if (rc != 0)
        fail_msg("conf/coechod.yaml:\n%s", errs.text);
    config_defaults(&defaults);
    assert_config_equal(&cfg, &defaults);
}

static void test_empty_files_are_the_defaults(void **state) {
    (void)state;
    static const char *const texts[] = {
        "", "\n\n", "# only a comment\n", "---\n", "limits:\nlog:\n", "---\n...\n"};
    config defaults;
    config_defaults(&defaults);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        config cfg;
        expect_load(texts[i], &cfg);
        assert_config_equal(&cfg, &defaults);
    }
}

/* ---- durations and sizes ------------------------------------------------------ */

static void test_duration_forms(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {{"0", 0},          {"0ms", 0},
                {"500ms", 500},    {"30s", 30000},
                {"5m", 300000},    {"1h", 3600000},
                {"24h", 86400000}, {"90s", 90000},
                {"007s", 7000},    {"9223372036854775807ms", INT64_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(config_parse_duration(good[i].text, &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    /* clang-format off */
    static const char *const bad[] = {
        "", "30", "abc", "-5s", "+5s", "5 s", "5S", "1.5h", "5sec", "ms", "s", "0x10s", "30s ",
        " 30s", "00", "5hm", "9223372036854775808ms", "2562047788015216h",
        "99999999999999999999999ms"};
    /* clang-format on */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        if (config_parse_duration(bad[i], &ms) != -1)
            fail_msg("duration \"%s\" was accepted", bad[i]);
        assert_int_equal(ms, 42);
    }
}

static void test_size_forms(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t bytes;
    } good[] = {{"0", 0},         {"512B", 512},     {"4096", 4096},
                {"16KiB", 16384}, {"1MiB", 1048576}, {"8MiB", 8388608},
                {"0B", 0},        {"1536B", 1536},   {"18446744073709551615", SIZE_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t bytes = 1;
        assert_int_equal(config_parse_size(good[i].text, &bytes), 0);
        assert_int_equal(bytes, good[i].bytes);
    }
    /* clang-format off */
    static const char *const bad[] = {
        "", "16KB", "16K", "16k", "1M", "1MB", "1GiB", "-1", "KiB", "1 KiB", "16kib", "1.5MiB",
        "0x100", "18446744073709551616", "17592186044416MiB"};
    /* clang-format on */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t bytes = 42;
        if (config_parse_size(bad[i], &bytes) != -1)
            fail_msg("size \"%s\" was accepted", bad[i]);
        assert_int_equal(bytes, 42);
    }
}

static void test_duration_and_size_values_in_a_file(void **state) {
    (void)state;
    config cfg;
    expect_load("limits:\n  idle_timeout: 500ms\n  buffer_size: \"1MiB\"\n  stack_size: 32768\n"
                "shutdown_grace: '0'\n",
                &cfg);
    assert_int_equal(cfg.idle_timeout_ms, 500);
    assert_int_equal(cfg.buffer_size, 1048576);
    assert_int_equal(cfg.stack_size, 32768);
    assert_int_equal(cfg.shutdown_grace_ms, 0);

    expect_error("limits:\n  idle_timeout: 24h1m\n",
                 ":2:17: limits.idle_timeout: expected a duration such as 30s, got \"24h1m\" "
                 "(units: ms, s, m or h)");
    expect_error("limits:\n  idle_timeout: 86400001ms\n",
                 ":2:17: limits.idle_timeout: expected a duration from 0 to 24h, got 86400001ms");
    expect_error("shutdown_grace: 3600001ms\n",
                 ":1:17: shutdown_grace: expected a duration from 0 to 1h, got 3600001ms");
    expect_error("shutdown_grace: 10\n", ":1:17: shutdown_grace: expected a duration such as "
                                         "30s, got \"10\" (no unit; use ms, s, m or h)");
    expect_error("shutdown_grace:\n",
                 ":1:16: shutdown_grace: expected a duration such as 30s, got null");
    expect_error("limits:\n  buffer_size: 16 KiB\n",
                 ":2:16: limits.buffer_size: expected a size such as 16KiB, got \"16 KiB\" "
                 "(units: B, KiB or MiB)");
    expect_error("limits:\n  stack_size: { size: 1 }\n",
                 ":2:15: limits.stack_size: expected a size such as 16KiB, got a mapping");
    /* The bounds themselves are allowed. */
    expect_load("limits:\n  idle_timeout: 24h\n  buffer_size: 16MiB\n  stack_size: 16KiB\n"
                "shutdown_grace: 60m\n",
                &cfg);
    assert_int_equal(cfg.idle_timeout_ms, 86400000);
    assert_int_equal(cfg.shutdown_grace_ms, 3600000);
}

/* ---- integers, workers, strings, log levels ------------------------------------ */

static void test_integer_forms(void **state) {
    (void)state;
    config cfg;
    expect_load("limits:\n  max_connections: 1\n  max_connections_per_ip: 10000000\n"
                "  backlog: 65535\n",
                &cfg);
    assert_int_equal(cfg.max_connections, 1);
    assert_int_equal(cfg.max_connections_per_ip, 10000000);
    assert_int_equal(cfg.backlog, 65535);

    static const char *const garbage[] = {"+5", "0x10", "1_000", "1.0", "010", "5k", "true", "--1"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        char yaml[128], expected[256];
        snprintf(yaml, sizeof yaml, "limits:\n  backlog: %s\n", garbage[i]);
        snprintf(expected, sizeof expected,
                 ":2:12: limits.backlog: expected an integer, got \"%s\"", garbage[i]);
        expect_error(yaml, expected);
    }
    expect_error("limits:\n  backlog: '128'\n",
                 ":2:12: limits.backlog: expected an integer, got string \"128\"");
    expect_error("limits:\n  backlog: |\n    128\n",
                 ":2:12: limits.backlog: expected an integer, got string \"128\\x0a\"");
    expect_error("limits:\n  backlog: 99999999999999999999999\n",
                 ":2:12: limits.backlog: expected an integer from 1 to 65535, "
                 "got 99999999999999999999999");
    expect_error("limits:\n  backlog: -9223372036854775808\n",
                 ":2:12: limits.backlog: expected an integer from 1 to 65535, "
                 "got -9223372036854775808");
    expect_error("limits:\n  backlog: ~\n", ":2:12: limits.backlog: expected an integer, got null");
}

static void test_per_ip_ipv6_prefix(void **state) {
    (void)state;
    config cfg;
    expect_load("limits:\n  max_connections_per_ip: 4\n", &cfg);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 64);
    expect_load("limits:\n  per_ip_ipv6_prefix: 1\n", &cfg);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 1);
    expect_load("limits: { per_ip_ipv6_prefix: 128 }\n", &cfg);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 128);
    expect_load("limits:\n  per_ip_ipv6_prefix: 48\n", &cfg);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 48);
    expect_error("limits:\n  per_ip_ipv6_prefix: 0\n",
                 ":2:23: limits.per_ip_ipv6_prefix: expected an integer from 1 to 128, got 0");
    expect_error("limits:\n  per_ip_ipv6_prefix: 129\n",
                 ":2:23: limits.per_ip_ipv6_prefix: expected an integer from 1 to 128, got 129");
    expect_error("limits:\n  per_ip_ipv6_prefix: -64\n",
                 ":2:23: limits.per_ip_ipv6_prefix: expected an integer from 1 to 128, got -64");
    expect_error("limits:\n  per_ip_ipv6_prefix: /64\n",
                 ":2:23: limits.per_ip_ipv6_prefix: expected an integer, got \"/64\"");
    expect_error("limits:\n  per_ip_ipv6_prefix: '64'\n",
                 ":2:23: limits.per_ip_ipv6_prefix: expected an integer, got string \"64\"");
    expect_error("per_ip_ipv6_prefix: 64\n", ":1:1: per_ip_ipv6_prefix: unknown key; "
                                             "per_ip_ipv6_prefix belongs under limits");
    expect_error("limits:\n  per_ip_ipv6_prefx: 64\n",
                 ":2:3: limits.per_ip_ipv6_prefx: unknown key; did you mean "
                 "\"per_ip_ipv6_prefix\"?");
}

static void test_workers(void **state) {
    (void)state;
    config cfg;
    expect_load("workers: auto\n", &cfg);
    assert_int_equal(cfg.workers, 0);
    expect_load("workers: \"auto\"\n", &cfg);
    assert_int_equal(cfg.workers, 0);
    expect_load("workers: 1024\n", &cfg);
    assert_int_equal(cfg.workers, 1024);
    expect_error("workers: Auto\n",
                 ":1:10: workers: expected an integer or \"auto\", got \"Auto\"");
    expect_error("workers: [2]\n", ":1:10: workers: expected an integer or \"auto\", got a list");
}

static void test_strings(void **state) {
    (void)state;
    config cfg;
    expect_load("pid_file: /run/coechod.pid\nuser: 1000\n", &cfg);
    assert_string_equal(cfg.pid_file, "/run/coechod.pid");
    assert_string_equal(cfg.user, "1000");

    /* The longest that fits, and one byte more. */
    char yaml[8192];
    char name[4200];
    memset(name, 'p', sizeof cfg.pid_file - 1);
    name[0] = '/';
    name[sizeof cfg.pid_file - 1] = '\0';
    snprintf(yaml, sizeof yaml, "pid_file: %s\n", name);
    expect_load(yaml, &cfg);
    assert_int_equal(strlen(cfg.pid_file), sizeof cfg.pid_file - 1);
    snprintf(yaml, sizeof yaml, "pid_file: %sp\n", name);
    expect_error(yaml, ":1:11: pid_file: expected at most 4095 bytes, got 4096");

    memset(name, 'u', sizeof cfg.user);
    name[sizeof cfg.user] = '\0';
    snprintf(yaml, sizeof yaml, "user: '%s'\n", name);
    expect_error(yaml, ":1:7: user: expected at most 255 bytes, got 256");

    expect_error("user: \"no\\0body\"\n", ":1:7: user: expected a string without NUL characters");
    expect_error("user: { name: x }\n",
                 ":1:7: user: expected a string (\"\" for none), got a mapping");

    /* --daemon runs in /: a relative pid file would be written there. */
    expect_error("pid_file: coechod.pid\n",
                 ":1:11: pid_file: must be an absolute path (starting with /), got "
                 "\"coechod.pid\"");
    expect_error("pid_file: './run/coechod.pid'\n",
                 ":1:11: pid_file: must be an absolute path (starting with /), got "
                 "\"./run/coechod.pid\"");
    expect_load("pid_file: \"\"\n", &cfg);
    assert_string_equal(cfg.pid_file, "");

    /* log.file likewise: reopened after the start, in /. */
    expect_load("log:\n  file: /var/log/coechod.log\n", &cfg);
    assert_string_equal(cfg.log_file, "/var/log/coechod.log");
    expect_error("log: { file: coechod.log }\n",
                 ":1:14: log.file: must be an absolute path (starting with /), got "
                 "\"coechod.log\"");
    expect_error("log: { file: ~ }\n",
                 ":1:14: log.file: expected a string (\"\" for none), got null");

    /* log.connections and log.format */
    expect_load("log:\n  connections: true\n  format: json\n", &cfg);
    assert_true(cfg.log_connections);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    expect_load("log: { format: text }\n", &cfg);
    assert_int_equal(cfg.log_format, LOG_FORMAT_TEXT);
    expect_error("log: { format: JSON }\n",
                 ":1:16: log.format: expected one of text, json, got \"JSON\"");
    expect_error("log: { format: 1 }\n",
                 ":1:16: log.format: expected one of text, json, got \"1\"");
    expect_error("log: { connections: yes }\n",
                 ":1:21: log.connections: expected true or false, got \"yes\"");
}

/* Where the values coechod -t checks against the host were read. */
static void test_positions(void **state) {
    (void)state;
    config cfg;
    expect_load("# where\n"
                "listen:\n"
                "  - { address: 127.0.0.1, port: 1 }\n"
                "  -   address: \"::1\"\n"
                "      port: 2\n"
                "log: { file: /var/log/c.log }\n"
                "pid_file:   /run/c.pid\n"
                "user: 'nobody'\n",
                &cfg);
    assert_int_equal(cfg.where.listen[0].line, 3);
    assert_int_equal(cfg.where.listen[0].column, 5);
    assert_int_equal(cfg.where.listen[1].line, 4);
    assert_int_equal(cfg.where.listen[1].column, 7);
    assert_int_equal(cfg.where.listen[2].line, 0);
    assert_int_equal(cfg.where.log_file.line, 6);
    assert_int_equal(cfg.where.log_file.column, 14);
    assert_int_equal(cfg.where.pid_file.line, 7);
    assert_int_equal(cfg.where.pid_file.column, 13);
    assert_int_equal(cfg.where.user.line, 8);
    assert_int_equal(cfg.where.user.column, 7);

    /* Defaults come from nowhere in the file. */
    expect_load("workers: 2\n", &cfg);
    assert_int_equal(cfg.where.listen[0].line, 0);
    assert_int_equal(cfg.where.listen[1].line, 0);
    assert_int_equal(cfg.where.log_file.line, 0);
    assert_int_equal(cfg.where.pid_file.line, 0);
    assert_int_equal(cfg.where.user.line, 0);
}

static void test_log_levels(void **state) {
    (void)state;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        enum log_level level = LOG_LEVEL_INFO;
        assert_string_equal(config_log_level_name((enum log_level)i), names[i]);
        assert_int_equal(config_parse_log_level(names[i], &level), 0);
        assert_int_equal(level, i);
    }
    enum log_level level = LOG_LEVEL_WARN;
    assert_int_equal(config_parse_log_level("Info", &level), -1);
    assert_int_equal(config_parse_log_level("warning", &level), -1);
    assert_int_equal(config_parse_log_level("", &level), -1);
    assert_int_equal(level, LOG_LEVEL_WARN);
    assert_string_equal(config_log_level_name((enum log_level)7), "unknown");

    config cfg;
    expect_load("log: { level: 'error' }\n", &cfg);
    assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
}

/* ---- keys -------------------------------------------------------------------------- */

static void test_unknown_key_messages(void **state) {
    (void)state;
    expect_error("Limits: {}\n", ":1:1: Limits: unknown key; did you mean \"limits\"?");
    expect_error("log: { levle: info }\n", ":1:8: log.levle: unknown key; did you mean \"level\"?");
    expect_error("limits:\n  max_connection_per_ip: 3\n",
                 ":2:3: limits.max_connection_per_ip: unknown key; did you mean "
                 "\"max_connections_per_ip\"?");
    expect_error("limits:\n  workers: 3\n",
                 ":2:3: limits.workers: unknown key; workers belongs at the top level");
    expect_error("level: info\n", ":1:1: level: unknown key; level belongs under log");
    expect_error("port: 7007\n", ":1:1: port: unknown key; port belongs in listen entries");
    expect_error("log: { colour: yes }\n",
                 ":1:8: log.colour: unknown key; expected one of level, file, connections, format");
    expect_error("limits: { rate: 1 }\n",
                 ":1:11: limits.rate: unknown key; expected one of max_connections, "
                 "max_connections_per_ip, per_ip_ipv6_prefix, idle_timeout, buffer_size, "
                 "stack_size, backlog, udp_rate_limit");
    /* Control characters in a key do not break the one-line format. */
    expect_error("\"a\\nb\": 1\n",
                 ":1:1: a?b: unknown key; expected one of listen, limits, "
                 "shutdown_grace, workers, reuse_port, log, pid_file, user, metrics, access");
}

/* ---- listen ------------------------------------------------------------------------ */

static void test_listen_in_a_file(void **state) {
    (void)state;
    config cfg;
    /* Unquoted ::1 is a plain scalar in block style... */
    expect_load("listen:\n  - address: ::1\n    port: 0\n  - { address: \"::\", port: 1 }\n"
                "  - { address: 10.0.0.1, port: 65535 }\n  - { address: '::1', port: 0 }\n",
                &cfg);
    assert_int_equal(cfg.nlisten, 4);
    assert_string_equal(cfg.listen[0].text, "[::1]:0");
    assert_string_equal(cfg.listen[1].text, "[::]:1");
    assert_string_equal(cfg.listen[2].text, "10.0.0.1:65535");
    assert_string_equal(cfg.listen[3].text, "[::1]:0"); /* port 0 twice: two ports */
    assert_int_equal(listen_port(&cfg.listen[2]), 65535);
    /* ...but not inside { }, where libyaml reads the ':' as an indicator. */
    expect_error("listen:\n  - { address: ::1, port: 7007 }\n",
                 ":2:16: syntax error: did not find expected node content (while parsing a "
                 "flow node); quote IPv6 addresses inside { }, e.g. \"::1\"");
    expect_error("listen:\n  - { address: \"[::1]\", port: 7007 }\n",
                 ":2:16: listen[0].address: expected an IPv4 or IPv6 address such as 127.0.0.1 "
                 "or \"::1\", got \"[::1]\"");
    expect_error("listen:\n  - { address: \"fe80::1%eth0\", port: 7007 }\n",
                 ":2:16: listen[0].address: expected an IPv4 or IPv6 address such as 127.0.0.1 "
                 "or \"::1\", got \"fe80::1%eth0\"");
    expect_error("listen:\n  -\n", ":2:4: listen[0]: expected a mapping { address, port }, "
                                   "got null");

    /* The maximum number of entries loads. */
    char yaml[8192] = "listen:\n";
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++) {
        size_t len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len, "  - { address: 127.0.0.1, port: %d }\n", 9000 + i);
    }
    expect_load(yaml, &cfg);
    assert_int_equal(cfg.nlisten, CONFIG_MAX_LISTEN);
    assert_string_equal(cfg.listen[CONFIG_MAX_LISTEN - 1].text, "127.0.0.1:9063");
}

static void test_parse_listen_good(void **state) {
    (void)state;
    static const struct {
        const char *arg, *text;
        int family;
        unsigned port;
    } good[] = {
        {"127.0.0.1:7007", "127.0.0.1:7007", AF_INET, 7007},
        {"0.0.0.0:0", "0.0.0.0:0", AF_INET, 0},
        {"[::1]:7007", "[::1]:7007", AF_INET6, 7007},
        {"[::]:65535", "[::]:65535", AF_INET6, 65535},
        {"[2001:DB8:0:0::1]:80", "[2001:db8::1]:80", AF_INET6, 80},
        {"[::ffff:192.0.2.1]:1", "[::ffff:192.0.2.1]:1", AF_INET6, 1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        listen_addr la;
        char err[256] = "";
        if (config_parse_listen(good[i].arg, &la, err, sizeof err) != 0)
            fail_msg("%s: %s", good[i].arg, err);
        assert_string_equal(la.text, good[i].text);
        assert_int_equal(la.addr.ss_family, good[i].family);
        assert_int_equal(la.addrlen, good[i].family == AF_INET ? sizeof(struct sockaddr_in)
                                                               : sizeof(struct sockaddr_in6));
        assert_int_equal(listen_port(&la), good[i].port);
    }
}

static void test_parse_listen_bad(void **state) {
    (void)state;
    static const struct {
        const char *arg, *err;
    } bad[] = {
        {"foo", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got \"foo\""},
        {"", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got \"\""},
        {"127.0.0.1", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got "
                      "\"127.0.0.1\""},
        {"127.0.0.1:", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got "
                       "\"127.0.0.1:\""},
        {"[::1]7007", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got "
                      "\"[::1]7007\""},
        {"[::1", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got \"[::1\""},
        {"::1:7007", "expected ADDR:PORT such as 127.0.0.1:7007 or [::1]:7007, got "
                     "\"::1:7007\" (IPv6 addresses go in brackets)"},
        {"localhost:7007", "expected an IPv4 address in \"localhost:7007\", got \"localhost\""},
        {":7007", "expected an IPv4 address in \":7007\", got \"\""},
        {"[127.0.0.1]:7007", "expected an IPv6 address in \"[127.0.0.1]:7007\", got "
                             "\"127.0.0.1\""},
        {"127.0.0.1:65536", "expected a port from 0 to 65535 in \"127.0.0.1:65536\", got "
                            "\"65536\""},
        {"127.0.0.1:-1", "expected a port from 0 to 65535 in \"127.0.0.1:-1\", got \"-1\""},
        {"[::1]:http", "expected a port from 0 to 65535 in \"[::1]:http\", got \"http\""},
        {"127.0.0.1:7007 ", "expected a port from 0 to 65535 in \"127.0.0.1:7007 \", got "
                            "\"7007 \""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        listen_addr la;
        char err[256] = "";
        assert_int_equal(config_parse_listen(bad[i].arg, &la, err, sizeof err), -1);
        assert_string_equal(err, bad[i].err);
    }
    /* No room for the reason is not an error of its own. */
    listen_addr la;
    assert_int_equal(config_parse_listen("foo", &la, NULL, 0), -1);
    char tiny[8];
    assert_int_equal(config_parse_listen("foo", &la, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "expecte");
}

/* ---- dump ---------------------------------------------------------------------------- */

static void test_dump_units(void **state) {
    (void)state;
    config cfg;
    config_defaults(&cfg);
    char *text = dump_to_string(&cfg);
    assert_non_null(strstr(text, "\n  - { address: \"127.0.0.1\", port: 7007 }\n"));
    assert_non_null(strstr(text, "\n  - { address: \"::1\", port: 7007 }\n"));
    assert_non_null(strstr(text, "\n  per_ip_ipv6_prefix: 64\n"));
    assert_non_null(strstr(text, "\n  idle_timeout: 5m\n"));
    assert_non_null(strstr(text, "\n  buffer_size: 16KiB\n"));
    assert_non_null(strstr(text, "\n  stack_size: 64KiB\n"));
    assert_non_null(strstr(text, "\nshutdown_grace: 10s\n"));
    assert_non_null(strstr(text, "\nworkers: 1\n"));
    assert_non_null(strstr(text, "\n  level: info\n"));
    assert_non_null(strstr(text, "\npid_file: \"\"\n"));
    free(text);

    cfg.idle_timeout_ms = 0;
    cfg.shutdown_grace_ms = 1500;
    cfg.buffer_size = 1536;
    cfg.stack_size = 2 * 1024 * 1024;
    cfg.workers = 0;
    text = dump_to_string(&cfg);
    assert_non_null(strstr(text, "\n  idle_timeout: 0\n"));
    assert_non_null(strstr(text, "\nshutdown_grace: 1500ms\n"));
    assert_non_null(strstr(text, "\n  buffer_size: 1536B\n"));
    assert_non_null(strstr(text, "\n  stack_size: 2MiB\n"));
    assert_non_null(strstr(text, "\nworkers: auto\n"));
    free(text);
}

/* The whole dump, byte for byte: every key in the schema's order, each
 * formatted by its kind (coechod -t prints this). */
static void test_dump_exact(void **state) {
    (void)state;
    config cfg;
    config_defaults(&cfg);
    cfg.nlisten = 2;
    assert_int_equal(config_parse_listen("[2001:db8::7]:0", &cfg.listen[0], NULL, 0), 0);
    assert_int_equal(config_parse_listen("udp://127.0.0.1:7", &cfg.listen[1], NULL, 0), 0);
    cfg.udp_rate_limit = 0;
    cfg.max_connections = 7;
    cfg.max_connections_per_ip = 3;
    cfg.per_ip_ipv6_prefix = 48;
    cfg.idle_timeout_ms = 0;
    cfg.buffer_size = 1536;
    cfg.stack_size = 2 * 1024 * 1024;
    cfg.backlog = 5;
    cfg.shutdown_grace_ms = 90000;
    cfg.workers = 0;
    cfg.reuse_port = false;
    cfg.log_level = LOG_LEVEL_WARN;
    snprintf(cfg.log_file, sizeof cfg.log_file, "/var/log/coechod.log");
    cfg.log_connections = true;
    cfg.log_format = LOG_FORMAT_JSON;
    snprintf(cfg.pid_file, sizeof cfg.pid_file, "/run/\"c\".pid");
    char err[128];
    assert_int_equal(acl_parse_rule("deny 10.0.0.0/8", &cfg.access_rules[0], err, sizeof err), 0);
    assert_int_equal(acl_parse_rule("allow all", &cfg.access_rules[1], err, sizeof err), 0);
    cfg.naccess_rules = 2;
    cfg.access = (access_list){.first = 0, .count = 2, .set = true};
    cfg.listen_access[0] = (access_list){.first = 1, .count = 1, .set = true};
    char *text = dump_to_string(&cfg);
    assert_string_equal(text, "# coechod configuration: every setting with its effective value\n"
                              "listen:\n"
                              "  - { address: \"2001:db8::7\", port: 0, "
                              "access: [ \"allow all\" ] }\n"
                              "  - { address: \"127.0.0.1\", port: 7, protocol: udp }\n"
                              "limits:\n"
                              "  max_connections: 7\n"
                              "  max_connections_per_ip: 3\n"
                              "  per_ip_ipv6_prefix: 48\n"
                              "  idle_timeout: 0\n"
                              "  buffer_size: 1536B\n"
                              "  stack_size: 2MiB\n"
                              "  backlog: 5\n"
                              "  udp_rate_limit: 0\n"
                              "shutdown_grace: 90s\n"
                              "workers: auto\n"
                              "reuse_port: false\n"
                              "log:\n"
                              "  level: warn\n"
                              "  file: \"/var/log/coechod.log\"\n"
                              "  connections: true\n"
                              "  format: json\n"
                              "pid_file: \"/run/\\\"c\\\".pid\"\n"
                              "user: \"\"\n"
                              "metrics: {}\n"
                              "access: [ \"deny 10.0.0.0/8\", \"allow all\" ]\n");
    free(text);

    cfg.nlisten = 0; /* only -l could leave none; the dump still reads back as YAML */
    text = dump_to_string(&cfg);
    assert_non_null(strstr(text, "\nlisten: []\nlimits:\n"));
    free(text);
}

/* access: the top-level list and a listener's own, in order, into one pool;
 * bad rules name file:line:column and the item. */
static void test_access_lists(void **state) {
    (void)state;
    config cfg;
    expect_load("listen:\n"
                "  - { address: 127.0.0.1, port: 1, access: [ \"deny 127.0.0.3\" ] }\n"
                "  - { address: 127.0.0.1, port: 2 }\n"
                "access: [ \"allow 127.0.0.0/8\", \"deny ::1\", \"deny all\" ]\n",
                &cfg);
    assert_true(cfg.access.set);
    assert_int_equal(cfg.access.count, 3);
    assert_true(cfg.listen_access[0].set);
    assert_int_equal(cfg.listen_access[0].count, 1);
    assert_false(cfg.listen_access[1].set);
    assert_int_equal(cfg.naccess_rules, 4);
    char text[96];
    acl_format_rule(&cfg.access_rules[cfg.access.first + 2], text, sizeof text);
    assert_string_equal(text, "deny all");
    acl_format_rule(&cfg.access_rules[cfg.listen_access[0].first], text, sizeof text);
    assert_string_equal(text, "deny 127.0.0.3/32");
    expect_load("access: []\n", &cfg);
    assert_int_equal(cfg.access.count, 0);
    config_defaults(&cfg);
    assert_false(cfg.access.set);
    assert_int_equal(cfg.naccess_rules, 0);

    expect_error("access: [ \"allow 10.1.0.0/8\" ]\n",
                 ":1:11: access[0]: 10.1.0.0/8 has host bits set past /8; did you mean "
                 "10.0.0.0/8?");
    expect_error("access:\n  - allow all\n  - deny 10.0.0.0/40\n",
                 ":3:5: access[1]: prefix /40 is longer than an IPv4 address (/32)");
    expect_error("access:\n  - deny 300.0.0.1\n",
                 ":2:5: access[0]: \"300.0.0.1\" is not an IPv4 address");
    expect_error("access: deny all\n",
                 ":1:9: access: expected a list of \"allow NETWORK\" or \"deny NETWORK\", got "
                 "\"deny all\"");
    expect_error("listen:\n  - { address: \"::1\", port: 1, access: [ permit ] }\n",
                 ":2:42: listen[0].access[0]: expected \"allow NETWORK\" or \"deny NETWORK\", "
                 "got \"permit\"");
}

/* More rules than the pool holds: a clear error, not a truncated list. */
static void test_access_rule_limit(void **state) {
    (void)state;
    size_t size = (CONFIG_MAX_ACCESS_RULES + 2) * 16 + 64;
    char *yaml = malloc(size);
    assert_non_null(yaml);
    size_t o = (size_t)snprintf(yaml, size, "access:\n");
    for (int i = 0; i <= CONFIG_MAX_ACCESS_RULES; i++)
        o += (size_t)snprintf(yaml + o, size - o, "  - deny all\n");
    config cfg;
    config_errors errs;
    char line[256];
    assert_int_equal(load_text(yaml, &cfg, &errs), -1);
    assert_string_equal(first_error(&errs, line, sizeof line),
                        ":10002:5: access[10000]: too many access rules (at most 10000 in the "
                        "configuration)");
    free(yaml);
}

/* Dumps cfg to a temporary file and loads it back: the same struct. */
static void assert_round_trip(const config *cfg) {
    char *text = dump_to_string(cfg);
    char path[512];
    write_temp(path, sizeof path, text, strlen(text));
    config loaded;
    config_errors errs;
    int rc = config_load(path, &loaded, &errs);
    unlink(path);
    if (rc != 0)
        fail_msg("dump does not load back:\n%s\nerrors:\n%s", text, errs.text);
    free(text);
    assert_config_equal(&loaded, cfg);
}

static void test_dump_round_trip(void **state) {
    (void)state;
    config cfg;
    config_defaults(&cfg);
    assert_round_trip(&cfg);

    static const char *const listeners[] = {"0.0.0.0:1",     "[2001:db8::7]:65535",
                                            "[::]:0",        "[::ffff:10.1.2.3]:8080",
                                            "udp://[::1]:7", "tcp://127.0.0.1:9"};
    cfg.nlisten = 0;
    for (size_t i = 0; i < sizeof listeners / sizeof listeners[0]; i++)
        assert_int_equal(config_parse_listen(listeners[i], &cfg.listen[cfg.nlisten++], NULL, 0), 0);
    cfg.listen[1].proxy_protocol = true;
    cfg.max_connections = 1;
    cfg.max_connections_per_ip = 10000000;
    cfg.per_ip_ipv6_prefix = 128;
    cfg.idle_timeout_ms = 90000; /* 90s, not 1.5m */
    cfg.buffer_size = 513;
    cfg.stack_size = 8 * 1024 * 1024;
    cfg.backlog = 65535;
    cfg.shutdown_grace_ms = 3599999;
    cfg.workers = 0;
    cfg.log_level = LOG_LEVEL_DEBUG;
    snprintf(cfg.pid_file, sizeof cfg.pid_file, "/run/a \"quoted\" \\ path\tü #x: y");
    snprintf(cfg.user, sizeof cfg.user, "- user: [x] &y *z\x01");
    snprintf(cfg.log_file, sizeof cfg.log_file, "/var/log/a \"b\"\\c.log");
    assert_round_trip(&cfg);

    /* Every good example survives the trip too. */
    config_errors errs;
    assert_int_equal(config_load(GOOD_DIR "/all_keys.yaml", &cfg, &errs), 0);
    assert_round_trip(&cfg);
}

/* ---- reload policy ------------------------------------------------------------------ */

static void test_start_only_changes(void **state) {
    (void)state;
    config running, next;
    config_defaults(&running);
    next = running;
    const char *keys[CONFIG_START_ONLY_KEYS] = {NULL};
    assert_int_equal(config_start_only_changes(&running, &next, keys, CONFIG_START_ONLY_KEYS), 0);
    assert_null(keys[0]);

    /* Keys that a reload applies do not count. */
    next.max_connections = 1;
    next.idle_timeout_ms = 0;
    next.nlisten = 1;
    next.log_level = LOG_LEVEL_DEBUG;
    snprintf(next.pid_file, sizeof next.pid_file, "/run/other.pid");
    snprintf(next.user, sizeof next.user, "nobody");
    assert_int_equal(config_start_only_changes(&running, &next, keys, CONFIG_START_ONLY_KEYS), 0);

    next.stack_size = 128 * 1024;
    assert_int_equal(config_start_only_changes(&running, &next, keys, CONFIG_START_ONLY_KEYS), 1);
    assert_string_equal(keys[0], "limits.stack_size");

    /* All of them, in the order of the file. */
    next.workers = 0;
    next.reuse_port = false;
    assert_int_equal(config_start_only_changes(&running, &next, keys, CONFIG_START_ONLY_KEYS), 3);
    assert_string_equal(keys[0], "limits.stack_size");
    assert_string_equal(keys[1], "workers");
    assert_string_equal(keys[2], "reuse_port");

    /* Room for fewer: the count is still all of them. */
    const char *one[2] = {NULL, NULL};
    assert_int_equal(config_start_only_changes(&running, &next, one, 1), 3);
    assert_string_equal(one[0], "limits.stack_size");
    assert_null(one[1]);
    assert_int_equal(config_start_only_changes(&running, &next, NULL, 0), 3);

    next.stack_size = running.stack_size;
    assert_int_equal(config_start_only_changes(&running, &next, keys, CONFIG_START_ONLY_KEYS), 2);
    assert_string_equal(keys[0], "workers");
    assert_string_equal(keys[1], "reuse_port");
}

static void test_keep_fixed(void **state) {
    (void)state;
    config running, next, expected;
    config_defaults(&running);
    snprintf(running.pid_file, sizeof running.pid_file, "/run/coechod.pid");
    snprintf(running.user, sizeof running.user, "coechod");
    config_defaults(&next);
    snprintf(next.pid_file, sizeof next.pid_file, "/tmp/elsewhere.pid");
    next.user[0] = '\0';
    next.max_connections = 5;
    next.stack_size = 1024 * 1024;
    next.workers = 4;
    next.log_level = LOG_LEVEL_ERROR;

    expected = next;
    snprintf(expected.pid_file, sizeof expected.pid_file, "/run/coechod.pid");
    snprintf(expected.user, sizeof expected.user, "coechod");
    config_keep_fixed(&next, &running);
    assert_config_equal(&next, &expected); /* only pid_file and user changed */
    assert_int_equal(next.reuse_port, expected.reuse_port);
    assert_memory_equal(next.pid_file, running.pid_file, sizeof next.pid_file);
    assert_memory_equal(next.user, running.user, sizeof next.user);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_cannot_open_or_read(void **state) {
    (void)state;
    config cfg;
    config_errors errs;
    assert_int_equal(config_load("/nonexistent/coechod.yaml", &cfg, &errs), -1);
    assert_int_equal(errs.count, 1);
    char expected[256];
    snprintf(expected, sizeof expected, "/nonexistent/coechod.yaml: cannot open: %s\n",
             strerror(ENOENT));
    assert_string_equal(errs.text, expected);
    assert_int_equal(errs.len, strlen(errs.text));

    /* Without somewhere to put the messages, the result still says it failed. */
    assert_int_equal(config_load("/nonexistent/coechod.yaml", &cfg, NULL), -1);
}

/* config_load on path must fail at once with "PATH: not a regular file (what)".
 * An alarm turns a blocking open or read into a failed test, not a hung one. */
static void expect_not_regular(const char *path, const char *what) {
    config cfg;
    config_errors errs;
    char expected[1024];
    alarm(10);
    int rc = config_load(path, &cfg, &errs);
    alarm(0);
    assert_int_equal(rc, -1);
    assert_int_equal(errs.count, 1);
    snprintf(expected, sizeof expected, "%s: not a regular file (%s)\n", path, what);
    assert_string_equal(errs.text, expected);
}

/* A FIFO with no writer would block fopen (and a reload with it) forever; a
 * device never ends. Both are refused before any byte is read. */
static void test_not_a_regular_file(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir[512], fifo[600];
    snprintf(dir, sizeof dir, "%s/coechod-test-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/coechod.yaml", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_not_regular(fifo, "a FIFO");
    assert_int_equal(unlink(fifo), 0);
    expect_not_regular(dir, "a directory");
    assert_int_equal(rmdir(dir), 0);
    expect_not_regular(TOP_SRCDIR "/tests", "a directory");
    expect_not_regular("/dev/zero", "a character device");
    expect_not_regular("/dev/null", "a character device");
}

static void test_failed_load_leaves_cfg_alone(void **state) {
    (void)state;
    config cfg, before;
    memset(&cfg, 0x5a, sizeof cfg);
    before = cfg;
    config_errors errs;
    assert_int_equal(load_text("workers: 2\nlimits: { backlog: 0 }\n", &cfg, &errs), -1);
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

/* errs->text with path cut from the start of every line. */
static void without_path(const config_errors *errs, const char *path, char *out, size_t size) {
    size_t o = 0, plen = strlen(path);
    for (const char *line = errs->text; *line != '\0' && o < size;) {
        size_t len = strcspn(line, "\n") + (line[strcspn(line, "\n")] == '\n');
        size_t skip = strncmp(line, path, plen) == 0 ? plen : 0;
        o += (size_t)snprintf(out + o, size - o, "%.*s", (int)(len - skip), line + skip);
        line += len;
    }
}

/* All errors, in the order of the file, even several in one mapping. */
static void test_every_error_is_reported(void **state) {
    (void)state;
    config cfg;
    config_errors errs;
    char path[512];
    const char *yaml = "listen:\n  - { address: nowhere, port: 99999 }\n"
                       "limits:\n  backlog: 0\n  backlog: 1\n  idle_timeout: forever\n"
                       "workers: lots\nlog: { level: loud }\nspeed: 11\n";
    write_temp(path, sizeof path, yaml, strlen(yaml));
    assert_int_equal(config_load(path, &cfg, &errs), -1);
    unlink(path);
    char got[sizeof errs.text];
    without_path(&errs, path, got, sizeof got);
    assert_string_equal(
        got, ":2:16: listen[0].address: expected an IPv4 or IPv6 address such as 127.0.0.1 "
             "or \"::1\", got \"nowhere\"\n"
             ":2:31: listen[0].port: expected an integer from 0 to 65535, got 99999\n"
             ":4:12: limits.backlog: expected an integer from 1 to 65535, got 0\n"
             ":5:3: limits.backlog: duplicate key (first at 4:3)\n"
             ":6:17: limits.idle_timeout: expected a duration such as 30s, got \"forever\"\n"
             ":7:10: workers: expected an integer or \"auto\", got \"lots\"\n"
             ":8:15: log.level: expected one of error, warn, info, debug, got \"loud\"\n"
             ":9:1: speed: unknown key; expected one of listen, limits, shutdown_grace, "
             "workers, reuse_port, log, pid_file, user, metrics, access\n");
    assert_int_equal(errs.count, 8);
    assert_int_equal(errs.len, strlen(errs.text));
}

static void test_errors_are_capped(void **state) {
    (void)state;
    char yaml[4096] = "";
    for (int i = 0; i < 80; i++) {
        size_t len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len, "key%d: 1\n", i);
    }
    config cfg;
    config_errors errs;
    assert_int_equal(load_text(yaml, &cfg, &errs), -1);
    assert_int_equal(errs.count, 50);
    assert_int_equal(errs.len, strlen(errs.text));
    const char *last = errs.text + errs.len - 1;
    while (last > errs.text && last[-1] != '\n')
        last--;
    const char *suffix = ": too many errors, giving up\n";
    assert_string_equal(last + strlen(last) - strlen(suffix), suffix);
}

static void test_tabs_and_encoding(void **state) {
    (void)state;
    /* Every indentation tab is reported, and libyaml is then not asked. */
    config cfg;
    config_errors errs;
    assert_int_equal(load_text("limits:\n\tbacklog: 1\n  \tstack_size: 16KiB\n- \tx\n"
                               "a:\tb\n\t\n  # tab\there is fine\n",
                               &cfg, &errs),
                     -1);
    assert_int_equal(errs.count, 3);
    assert_non_null(strstr(errs.text, ":2:1: tab character in indentation; YAML allows spaces "
                                      "only\n"));
    assert_non_null(strstr(errs.text, ":3:3: tab character"));
    assert_non_null(strstr(errs.text, ":4:3: tab character"));

    expect_error("user: \"a\"\nworkers: \xff\n",
                 ":2:10: encoding error: invalid leading UTF-8 octet (0xff)");
    expect_error("user: x\x01y\n",
                 ":1:8: encoding error: control characters are not allowed (0x01)");
    /* Columns count characters, not bytes. */
    expect_error("user: \"\xc3\xbc\"\nworkers: \"\xc3\xbc\" x\n",
                 ":2:14: syntax error: did not "
                 "find expected key (while parsing a block mapping that started at 1:1)");
    expect_error("a: &x [*x]\nlimits: *x\n",
                 ":1:1: a: unknown key; expected one of listen, "
                 "limits, shutdown_grace, workers, reuse_port, log, pid_file, user, metrics, "
                 "access");
}

/* ---- limits on libyaml's work -------------------------------------------------------- */

/* A growing string for generated YAML (freed by the caller). */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

__attribute__((format(printf, 2, 3))) static void add(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void add_repeated(text *t, const char *piece, int count) {
    for (int i = 0; i < count; i++)
        add(t, "%s", piece);
}

/* "user: " and levels nested flow lists: with the top mapping, levels + 1
 * collections deep. */
static char *nested_flow(int levels) {
    text t = {NULL, 0, 0};
    add(&t, "user: ");
    add_repeated(&t, "[", levels);
    add_repeated(&t, "]", levels);
    add(&t, "\n");
    return t.s;
}

static void test_nesting_limit(void **state) {
    (void)state;
    /* 64 levels pass the limit (and then fail the schema); 65 do not, and the
     * error points at the '[' that opens the 65th. */
    char *yaml = nested_flow(63);
    expect_error(yaml, ":1:7: user: expected a string (\"\" for none), got a list");
    free(yaml);
    yaml = nested_flow(64);
    expect_error(yaml, ":1:70: nesting deeper than 64 levels");
    free(yaml);
    /* Far deeper, as libyaml once took seconds over: still at the 65th. */
    yaml = nested_flow(40000);
    expect_error(yaml, ":1:70: nesting deeper than 64 levels");
    free(yaml);

    /* Flow mappings, and block collections ("- - -" nests without the text
     * growing quadratically) count the same. */
    text t = {NULL, 0, 0};
    add(&t, "user:\n  ");
    add_repeated(&t, "{a: ", 63);
    add(&t, "b");
    add_repeated(&t, "}", 63);
    add(&t, "\n");
    expect_error(t.s, ":2:3: user: expected a string (\"\" for none), got a mapping");
    t.len = 0;
    add(&t, "user:\n  ");
    add_repeated(&t, "{a: ", 64);
    expect_error(t.s, ":2:255: nesting deeper than 64 levels");
    t.len = 0;
    add(&t, "user:\n  ");
    add_repeated(&t, "- ", 63);
    add(&t, "x\n");
    expect_error(t.s, ":2:3: user: expected a string (\"\" for none), got a list");
    t.len = 0;
    add(&t, "user:\n  ");
    add_repeated(&t, "? ", 64);
    add(&t, "x\n");
    expect_error(t.s, ":2:129: nesting deeper than 64 levels");
    /* Brackets in comments and quoted or block scalars are not nesting. */
    t.len = 0;
    add(&t, "# ");
    add_repeated(&t, "[", 100);
    add(&t, "\npid_file: \"/");
    add_repeated(&t, "{", 100);
    add(&t, "\"\nuser: |\n  ");
    add_repeated(&t, "[", 100);
    add(&t, "\n");
    config cfg;
    expect_load(t.s, &cfg);
    assert_int_equal(strlen(cfg.pid_file), 101);
    free(t.s);
}

/* "user: " and a flow list of anchors &a0 ... and aliases *a0 ... */
static char *anchors_and_aliases(int anchors, int aliases) {
    text t = {NULL, 0, 0};
    add(&t, "user: [");
    for (int i = 0; i < anchors; i++)
        add(&t, "&a%d x, ", i);
    for (int i = 0; i < aliases; i++)
        add(&t, "*a%d, ", anchors - 1 - i % anchors);
    add(&t, "x]\n");
    return t.s;
}

static void test_anchor_and_alias_limits(void **state) {
    (void)state;
    char *yaml = anchors_and_aliases(1000, 1000);
    expect_error(yaml, ":1:7: user: expected a string (\"\" for none), got a list");
    free(yaml);
    /* "user: [" is 7 bytes, "&aN x, " 6 + digits, "*a0, " 5. */
    yaml = anchors_and_aliases(1001, 0);
    expect_error(yaml, ":1:8898: more than 1000 anchors (&name)");
    free(yaml);
    yaml = anchors_and_aliases(1, 1001);
    expect_error(yaml, ":1:5015: more than 1000 aliases (*name)");
    free(yaml);
    /* Anchors and aliases that are not tokens do not count. */
    text t = {NULL, 0, 0};
    add(&t, "pid_file: \"/");
    add_repeated(&t, "&a *a ", 600);
    add(&t, "\"\nuser: a&b*c\n");
    add_repeated(&t, "# &x *x\n", 1001);
    config cfg;
    expect_load(t.s, &cfg);
    free(t.s);
}

/* ---- the corpora ------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in dir that end in suffix (freed with free_names). */
static size_t list_names(const char *dir, const char *suffix, char ***names) {
    DIR *d = opendir(dir);
    if (d == NULL)
        fail_msg("%s: %s", dir, strerror(errno));
    size_t n = 0, cap = 0;
    *names = NULL;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name), slen = strlen(suffix);
        if (len <= slen || strcmp(e->d_name + len - slen, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            *names = realloc(*names, cap * sizeof **names);
            assert_non_null(*names);
        }
        (*names)[n] = strdup(e->d_name);
        assert_non_null((*names)[n++]);
    }
    closedir(d);
    if (n > 0)
        qsort(*names, n, sizeof **names, compare_names);
    return n;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* name with its suffix replaced by another one. */
static void sibling(char *buf, size_t size, const char *name, const char *from, const char *to) {
    snprintf(buf, size, "%.*s%s", (int)(strlen(name) - strlen(from)), name, to);
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

/* The first line of a file, without its newline. */
static void read_first_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    if (fgets(buf, (int)size, f) == NULL)
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

/* Loads every bad example from inside the corpus directory, so that file names
 * in the messages are as short as in the .expect files; reports every mismatch
 * before failing. */
static void test_bad_corpus(void **state) {
    (void)state;
    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(cwd >= 0);
    assert_int_equal(chdir(BAD_DIR), 0);
    char **yamls, **expects;
    size_t nyaml = list_names(".", ".yaml", &yamls);
    size_t nexpect = list_names(".", ".expect", &expects);
    int failures = 0;
    char other[512];
    for (size_t i = 0; i < nexpect; i++) {
        sibling(other, sizeof other, expects[i], ".expect", ".yaml");
        if (!file_exists(other)) {
            print_error("%s: no %s beside it\n", expects[i], other);
            failures++;
        }
    }
    for (size_t i = 0; i < nyaml; i++) {
        sibling(other, sizeof other, yamls[i], ".yaml", ".expect");
        if (!file_exists(other)) {
            print_error("%s: no %s beside it\n", yamls[i], other);
            failures++;
            continue;
        }
        char expected[1024], got[1024];
        read_first_line(other, expected, sizeof expected);
        config cfg;
        config_errors errs;
        int rc = config_load(yamls[i], &cfg, &errs);
        snprintf(got, sizeof got, "%.*s", (int)strcspn(errs.text, "\n"), errs.text);
        if (rc != -1 || errs.count < 1 || strcmp(got, expected) != 0) {
            print_error("%s: rc %d\n  expected: %s\n  got:      %s\n", yamls[i], rc, expected, got);
            failures++;
        }
    }
    assert_int_equal(fchdir(cwd), 0);
    close(cwd);
    free_names(yamls, nyaml);
    free_names(expects, nexpect);
    assert_true(nyaml >= 20);
    assert_int_equal(failures, 0);
}

static void test_good_corpus(void **state) {
    (void)state;
    char **names;
    size_t n = list_names(GOOD_DIR, ".yaml", &names);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", GOOD_DIR, names[i]);
        config cfg;
        config_errors errs;
        if (config_load(path, &cfg, &errs) != 0) {
            print_error("%s", errs.text);
            failures++;
        }
    }
    free_names(names, n);
    assert_true(n >= 4);
    assert_int_equal(failures, 0);
}

/* What the good examples hold, beyond loading. */
static void test_good_examples(void **state) {
    (void)state;
    config cfg;
    config_errors errs;
    assert_int_equal(config_load(GOOD_DIR "/ipv6_only.yaml", &cfg, &errs), 0);
    assert_int_equal(cfg.nlisten, 2);
    assert_string_equal(cfg.listen[0].text, "[::1]:7007");
    assert_string_equal(cfg.listen[1].text, "[::]:7008");

    assert_int_equal(config_load(GOOD_DIR "/minimal.yaml", &cfg, &errs), 0);
    assert_int_equal(cfg.nlisten, 1);
    assert_string_equal(cfg.listen[0].text, "0.0.0.0:7007");

    assert_int_equal(config_load(GOOD_DIR "/workers_auto.yaml", &cfg, &errs), 0);
    assert_int_equal(cfg.workers, 0);

    assert_int_equal(config_load(GOOD_DIR "/all_keys.yaml", &cfg, &errs), 0);
    assert_int_equal(cfg.nlisten, 4);
    assert_string_equal(cfg.listen[0].text, "192.0.2.10:8007");
    assert_string_equal(cfg.listen[3].text, "udp://192.0.2.10:8007");
    assert_true(cfg.listen[3].udp && !cfg.listen[0].udp);
    assert_true(cfg.listen[0].proxy_protocol && !cfg.listen[1].proxy_protocol);
    assert_string_equal(cfg.listen[1].text, "[2001:db8::1]:0");
    assert_string_equal(cfg.listen[2].text, "[::ffff:192.0.2.11]:65535");
    assert_int_equal(cfg.max_connections, 10000000);
    assert_int_equal(cfg.max_connections_per_ip, 16);
    assert_int_equal(cfg.per_ip_ipv6_prefix, 56);
    assert_int_equal(cfg.idle_timeout_ms, 0);
    assert_int_equal(cfg.buffer_size, 512);
    assert_int_equal(cfg.stack_size, 8 * 1024 * 1024);
    assert_int_equal(cfg.backlog, 65535);
    assert_int_equal(cfg.udp_rate_limit, 0);
    assert_int_equal(cfg.shutdown_grace_ms, 1500);
    assert_int_equal(cfg.workers, 1024);
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(cfg.log_file, "/var/log/coechod.log");
    assert_string_equal(cfg.pid_file, "/run/coechod/coechod.pid");
    assert_string_equal(cfg.user, "coechod");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_file_is_the_defaults),
        cmocka_unit_test(test_empty_files_are_the_defaults),
        cmocka_unit_test(test_duration_forms),
        cmocka_unit_test(test_size_forms),
        cmocka_unit_test(test_duration_and_size_values_in_a_file),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_per_ip_ipv6_prefix),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_unknown_key_messages),
        cmocka_unit_test(test_listen_in_a_file),
        cmocka_unit_test(test_parse_listen_good),
        cmocka_unit_test(test_parse_listen_bad),
        cmocka_unit_test(test_dump_units),
        cmocka_unit_test(test_dump_exact),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_start_only_changes),
        cmocka_unit_test(test_keep_fixed),
        cmocka_unit_test(test_cannot_open_or_read),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_failed_load_leaves_cfg_alone),
        cmocka_unit_test(test_every_error_is_reported),
        cmocka_unit_test(test_access_lists),
        cmocka_unit_test(test_access_rule_limit),
        cmocka_unit_test(test_errors_are_capped),
        cmocka_unit_test(test_tabs_and_encoding),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_anchor_and_alias_limits),
        cmocka_unit_test(test_bad_corpus),
        cmocka_unit_test(test_good_corpus),
        cmocka_unit_test(test_good_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
