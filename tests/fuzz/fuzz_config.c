/* libFuzzer target for coechod's configuration parser (src/server/config.c
 * and the generic src/server/yaml_schema.c under it).
 *
 * config_load takes a path and there is no parse-from-memory entry point, so
 * each input is written to one memfd, created on the first call and rewritten
 * per input, and loaded as "/proc/self/fd/N" (fopen there opens the memfd
 * afresh, at offset 0). No disk, no temporary file to clean up.
 *
 * Checked on every input, besides what ASan and UBSan catch:
 *   - a failed load reports at least one error, errs.len matches the text,
 *     every message is one line starting "PATH:" (one per error counted),
 *     and the caller's config is left alone;
 *   - a successful load dumps (config_dump) to YAML that loads again and dumps
 *     to the very same text, with no start-only key changed between the two
 *     loads: a dump/parse mismatch aborts.
 * The first line of the input (up to 255 bytes) also goes to the small
 * parsers of the public API: config_parse_listen, _duration, _size and
 * _log_level, and to hostport_split with a small host buffer.
 *
 * Built by tests/fuzz/build-and-run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, open_memstream */
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/hostport.h"
#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int input_fd = -1;
static char input_path[64];

static void die(const char *what) {
    perror(what);
    abort();
}

/* Replaces the memfd's contents with len bytes of data. */
static void put_input(const void *data, size_t len) {
    if (input_fd < 0) {
        input_fd = memfd_create("fuzz_config", MFD_CLOEXEC);
        if (input_fd < 0)
            die("memfd_create");
        snprintf(input_path, sizeof input_path, "/proc/self/fd/%d", input_fd);
    }
    if (ftruncate(input_fd, 0) != 0)
        die("ftruncate");
    const char *p = data;
    off_t off = 0;
    while (len > 0) {
        ssize_t n = pwrite(input_fd, p, len, off);
        if (n <= 0)
            die("pwrite");
        p += n;
        off += n;
        len -= (size_t)n;
    }
}

/* config_dump into a malloc'd string (the caller frees it). */
static char *dump(const config *cfg, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (f == NULL)
        die("open_memstream");
    config_dump(cfg, f);
    if (fclose(f) != 0)
        die("fclose");
    return text;
}

/* Checks what config_load promises about errs and cfg on failure: at least
 * one error, each one line "PATH:...", the last maybe "too many errors"; a
 * full buffer cuts the text short. */
static void check_failure(const config_errors *errs, const config *cfg, const config *before) {
    bool ok = errs->count >= 1 && errs->len > 0 && errs->len == strlen(errs->text) &&
              errs->text[errs->len - 1] == '\n';
    bool full = errs->len == sizeof errs->text - 1;
    size_t pathlen = strlen(input_path);
    int lines = 0;
    for (const char *line = errs->text; ok && *line != '\0'; lines++) {
        const char *nl = strchr(line, '\n');
        ok = (strncmp(line, input_path, pathlen) == 0 && line[pathlen] == ':') ||
             (full && nl[1] == '\0'); /* the line cut short */
        line = nl + 1;
    }
    ok = ok && (full ? lines <= errs->count + 1
                     : lines == errs->count || lines == errs->count + 1);
    if (!ok) {
        fprintf(stderr, "fuzz_config: inconsistent errors (count %d, len %zu, lines %d):\n%s\n",
                errs->count, errs->len, lines, errs->text);
        abort();
    }
    if (memcmp(cfg, before, sizeof *cfg) != 0) {
        fprintf(stderr, "fuzz_config: a failed load wrote the caller's config\n");
        abort();
    }
}

/* The small parsers, on the first line of the input. */
static void fuzz_small_parsers(const uint8_t *data, size_t size) {
    char line[256];
    size_t n = 0;
    while (n < size && n < sizeof line - 1 && data[n] != '\n')
        n++;
    memcpy(line, data, n);
    line[n] = '\0';
    listen_addr la;
    char err[256];
    if (config_parse_listen(line, &la, err, sizeof err) == 0) {
        if (la.addrlen == 0 || memchr(la.text, '\0', sizeof la.text) == NULL)
            abort();
    } else if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0') {
        abort();
    }
    (void)config_parse_listen(line, &la, NULL, 0);
    char host[8];
    const char *port;
    bool bracketed;
    if (hostport_split(line, host, sizeof host, &port, &bracketed) &&
        (memchr(host, '\0', sizeof host) == NULL || port < line || port > line + n))
        abort();
    int64_t ms;
    size_t bytes;
    enum log_level level;
    if (config_parse_duration(line, &ms) == 0 && ms < 0)
        abort();
    (void)config_parse_size(line, &bytes);
    if (config_parse_log_level(line, &level) == 0 &&
        strcmp(config_log_level_name(level), line) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static config cfg, before, again;
    static config_errors errs;

    fuzz_small_parsers(data, size);

    put_input(data, size);
    memset(&cfg, 0xa5, sizeof cfg);
    before = cfg;
    if (config_load(input_path, &cfg, &errs) != 0) {
        check_failure(&errs, &cfg, &before);
        return 0;
    }

    /* Loaded: the dump must load back to a config that dumps the same. */
    size_t len1, len2;
    char *text1 = dump(&cfg, &len1);
    put_input(text1, len1);
    if (config_load(input_path, &again, &errs) != 0) {
        fprintf(stderr,
                "fuzz_config: config_dump output does not load back\n"
                "---- dump ----\n%s---- errors ----\n%s",
                text1, errs.text);
        abort();
    }
    char *text2 = dump(&again, &len2);
    if (config_start_only_changes(&cfg, &again, NULL, 0) != 0) {
        fprintf(stderr, "fuzz_config: a start-only key changed in the round trip\n%s", text1);
        abort();
    }
    if (len1 != len2 || memcmp(text1, text2, len1) != 0) {
        fprintf(stderr,
                "fuzz_config: dump -> load -> dump differs\n"
                "---- first dump ----\n%s---- second dump ----\n%s",
                text1, text2);
        abort();
    }
    free(text1);
    free(text2);
    return 0;
}
