/* coechod configuration: the YAML file to a validated struct (libyaml's
 * document API).
 *
 * The file, which must be a regular one (never a FIFO or device that could
 * block the caller), is read into memory first, which bounds its size and
 * lets us find tabs in indentation ourselves: libyaml's own error for them
 * ("found character that cannot start any token") does not say what is
 * wrong. Before the document is built, a pass over libyaml's tokens bounds
 * nesting, anchors and aliases, on which libyaml spends more than linear
 * time. The document is then walked by schema: one table per mapping lists
 * its keys and how each value is checked, so unknown keys (with a
 * did-you-mean), duplicates and type errors are handled in one place. Errors
 * are collected rather than fatal, up to MAX_ERRORS; only a syntax error
 * stops early, as there is then no tree to walk. The walk follows the
 * schema, never the document's shape, so aliases that make the node graph
 * cyclic cannot make it loop. */
#ifdef HAVE_CONFIG_H
#include <config.h> /* autoconf's: "config.h" would find server/config.h, next to this file */
#endif
#include "server/config.h"
#include "common/hostport.h"
#include "common/quote.h"
#include "common/units.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

enum {
    MAX_ERRORS = 50,
    MAX_FILE_SIZE = 1 << 20, /* far beyond any sensible configuration */
    DEFAULT_PORT = 7007,
    MAX_FIELDS = 8,     /* keys in the largest mapping */
    SHOWN_KEY_MAX = 64, /* bytes of a key shown in a key path */
    PATH_SIZE = 256,
    SUGGEST_MAX_LEN = 32, /* keys longer than this get no did-you-mean */
    /* libyaml's work is not linear in the text: its scanner walks its stack
     * of possible simple keys, one per flow level, for every token, and its
     * loader compares each anchor with every earlier one and looks each
     * alias up among them. 40,000 nested [ took 5.5 s, 40,000 anchors
     * 3.5 s, and a reload runs in the event loop. These bounds keep the worst case
     * to milliseconds (64 levels a token; at most 1000 x 1000 anchor name
     * comparisons) while a real configuration needs 3 levels (top mapping,
     * listen list, entry) and seldom an anchor at all. */
    MAX_DEPTH = 64,     /* nested collections, block and flow together */
    MAX_ANCHORS = 1000, /* &name */
    MAX_ALIASES = 1000  /* *name */
};

/* ---- quantities: durations and sizes (src/common/units) ----------------- */

int config_parse_duration(const char *s, int64_t *ms) {
    return units_parse_duration(s, ms) == UNITS_OK ? 0 : -1;
}

int config_parse_size(const char *s, size_t *bytes) {
    return units_parse_size(s, bytes) == UNITS_OK ? 0 : -1;
}

/* ---- log levels ---------------------------------------------------------- */

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

const char *config_log_level_name(enum log_level level) {
    if ((unsigned)level >= sizeof log_level_names / sizeof log_level_names[0])
        return "unknown";
    return log_level_names[level];
}

int config_parse_log_level(const char *s, enum log_level *level) {
    for (size_t i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* ---- listen addresses (src/common/hostport) ------------------------------ */

/* A listen_addr from a parsed address: zeroed first, so that equal
 * addresses compare equal bytewise (reloads compare listen sets so). */
static void make_listen(listen_addr *out, const struct sockaddr_storage *addr, socklen_t addrlen) {
    memset(out, 0, sizeof *out);
    out->addr = *addr;
    out->addrlen = addrlen;
    hostport_format(addr, out->text, sizeof out->text);
}

int config_parse_listen(const char *arg, listen_addr *out, char *err, size_t errlen) {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    if (hostport_parse_numeric(arg, &addr, &addrlen, err, errlen) != 0)
        return -1;
    make_listen(out, &addr, addrlen);
    return 0;
}

/* ---- defaults -------------------------------------------------------------- */

void config_defaults(config *cfg) {
    static const char *const loopback[] = {"127.0.0.1", "::1"};
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < 2; i++) {
        struct sockaddr_storage addr;
        socklen_t addrlen;
        hostport_parse_ip(loopback[i], AF_UNSPEC, DEFAULT_PORT, &addr, &addrlen);
        make_listen(&cfg->listen[i], &addr, addrlen);
    }
    cfg->nlisten = 2;
    cfg->max_connections = 10000;
    cfg->max_connections_per_ip = 0;
    cfg->per_ip_ipv6_prefix = 64; /* one customer's network, usually */
    cfg->idle_timeout_ms = 300 * MS_PER_S;
    cfg->buffer_size = 16 * KIB;
    cfg->stack_size = 64 * KIB;
    cfg->backlog = 1024;
    cfg->shutdown_grace_ms = 10 * MS_PER_S;
    cfg->workers = 1;
    cfg->reuse_port = true;
    cfg->log_level = LOG_LEVEL_INFO;
}

/* ---- error collection ---------------------------------------------------- */

typedef struct parse_ctx {
    const char *path; /* the file, as given */
    const char *text; /* its contents */
    size_t textlen;
    yaml_document_t *doc;
    config *cfg; /* filled as the walk goes; the caller's only on success */
    config_errors *errs;
    bool gave_up; /* MAX_ERRORS reached: the walk stops */
} parse_ctx;

static void errors_reset(config_errors *errs) {
    errs->text[0] = '\0';
    errs->len = 0;
    errs->count = 0;
}

/* Appends line and a newline, cut short if the buffer is full. */
static void errors_append(config_errors *errs, const char *line) {
    size_t room = sizeof errs->text - errs->len;
    if (room < 2)
        return;
    int n = snprintf(errs->text + errs->len, room, "%s\n", line);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        errs->len = sizeof errs->text - 1;
        errs->text[errs->len - 1] = '\n';
    } else {
        errs->len += (size_t)n;
    }
}

/* Records "FILE[:LINE:COL]: [KEYPATH: ]message"; line 0 means no position. */
__attribute__((format(printf, 5, 0))) static void report_v(parse_ctx *ctx, size_t line, size_t col,
                                                           const char *keypath, const char *fmt,
                                                           va_list ap) {
    if (ctx->gave_up)
        return;
    char where[64] = "";
    if (line > 0)
        snprintf(where, sizeof where, ":%zu:%zu", line, col);
    bool has_key = keypath != NULL && keypath[0] != '\0';
    char message[768], text[1024];
    if (ctx->errs->count == MAX_ERRORS) {
        snprintf(text, sizeof text, "%s: too many errors, giving up", ctx->path);
        ctx->gave_up = true;
    } else {
        vsnprintf(message, sizeof message, fmt, ap);
        snprintf(text, sizeof text, "%s%s: %s%s%s", ctx->path, where, has_key ? keypath : "",
                 has_key ? ": " : "", message);
        ctx->errs->count++;
    }
    errors_append(ctx->errs, text);
}

/* An error at a 1-based line and column. */
__attribute__((format(printf, 5, 6))) static void
report_at(parse_ctx *ctx, size_t line, size_t col, const char *keypath, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, line, col, keypath, fmt, ap);
    va_end(ap);
}

/* An error at a libyaml mark (0-based), shown 1-based. */
__attribute__((format(printf, 4, 5))) static void
report(parse_ctx *ctx, yaml_mark_t mark, const char *keypath, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, mark.line + 1, mark.column + 1, keypath, fmt, ap);
    va_end(ap);
}

/* An error about the file as a whole: no position, no key. */
__attribute__((format(printf, 2, 3))) static void report_file(parse_ctx *ctx, const char *fmt,
                                                              ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, 0, 0, NULL, fmt, ap);
    va_end(ap);
}

/* ---- describing values in messages -------------------------------------- */

static bool is_null(const yaml_node_t *node) {
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static bool is_plain(const yaml_node_t *node) {
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *scalar_text(const yaml_node_t *node) {
    return (const char *)node->data.scalar.value;
}

/* What a node is, for "expected X, got Y": a mapping, a list, null, "text"
 * or, when quoted text is itself the problem, string "text". */
static const char *describe(const yaml_node_t *node, bool mention_string, char *buf, size_t size) {
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->type != YAML_SCALAR_NODE)
        return "nothing";
    if (is_null(node))
        return "null";
    char quoted[QUOTE_SIZE];
    quote_for_message(quoted, sizeof quoted, scalar_text(node), node->data.scalar.length);
    snprintf(buf, size, "%s%s", mention_string && !is_plain(node) ? "string " : "", quoted);
    return buf;
}

/* ---- key paths ------------------------------------------------------------- */

/* parent.key, with the key's control characters as '?' and long keys cut. */
static void child_path(char *buf, size_t size, const char *parent, const char *key, size_t keylen) {
    size_t shown = keylen;
    if (shown > SHOWN_KEY_MAX) {
        shown = SHOWN_KEY_MAX;
        while (shown > 0 && ((unsigned char)key[shown] & 0xc0) == 0x80)
            shown--;
    }
    int n = snprintf(buf, size, "%s%s", parent, parent[0] != '\0' ? "." : "");
    size_t o = n < 0 ? 0 : (size_t)n;
    for (size_t i = 0; i < shown && o + 4 < size; i++) {
        unsigned char c = (unsigned char)key[i];
        buf[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    snprintf(buf + o, size - o, "%s", shown < keylen ? "..." : "");
}

static void index_path(char *buf, size_t size, const char *parent, size_t index) {
    snprintf(buf, size, "%s[%zu]", parent, index);
}

/* ---- schema ------------------------------------------------------------------ */

enum value_kind {
    VALUE_LISTEN,  /* the listen list */
    VALUE_SECTION, /* a nested mapping */
    VALUE_UINT32,  /* plain decimal integer */
    VALUE_INT,
    VALUE_DURATION, /* int64_t milliseconds */
    VALUE_SIZE,     /* size_t bytes */
    VALUE_WORKERS,  /* int, or "auto" as 0 */
    VALUE_BOOL,     /* true or false */
    VALUE_LOG_LEVEL,
    VALUE_STRING,  /* char array; max is its size */
    VALUE_ADDRESS, /* listen entry fields, handled by parse_listen_entry */
    VALUE_PORT
};

struct section;

typedef struct field {
    const char *name;
    enum value_kind kind;
    size_t offset; /* of the member in struct config */
    int64_t min, max;
    const struct section *section; /* VALUE_SECTION */
} field;

typedef struct section {
    const char *where; /* for "belongs ..." hints */
    const field *fields;
    size_t nfields;
} section;

#define FIELD(name, kind, member, min, max)                                                        \
    { name, kind, offsetof(config, member), min, max, NULL }
#define NFIELDS(fields) (sizeof(fields) / sizeof(fields)[0])

static const field limits_fields[] = {
    FIELD("max_connections", VALUE_UINT32, max_connections, 1, 10000000),
    FIELD("max_connections_per_ip", VALUE_UINT32, max_connections_per_ip, 0, 10000000),
    FIELD("per_ip_ipv6_prefix", VALUE_UINT32, per_ip_ipv6_prefix, 1, 128),
    FIELD("idle_timeout", VALUE_DURATION, idle_timeout_ms, 0, 24 * MS_PER_H),
    FIELD("buffer_size", VALUE_SIZE, buffer_size, 512, 16 * MIB),
    FIELD("stack_size", VALUE_SIZE, stack_size, 16 * KIB, 8 * MIB),
    FIELD("backlog", VALUE_INT, backlog, 1, 65535),
};
static const section limits_section = {"under limits", limits_fields, NFIELDS(limits_fields)};

static const field log_fields[] = {
    FIELD("level", VALUE_LOG_LEVEL, log_level, 0, 0),
};
static const section log_section = {"under log", log_fields, NFIELDS(log_fields)};

enum { LISTEN_ADDRESS, LISTEN_PORT };
static const field listen_entry_fields[] = {
    [LISTEN_ADDRESS] = {"address", VALUE_ADDRESS, 0, 0, 0, NULL},
    [LISTEN_PORT] = {"port", VALUE_PORT, 0, 0, 65535, NULL},
};
static const section listen_entry_section = {"in listen entries", listen_entry_fields,
                                             NFIELDS(listen_entry_fields)};

static const field top_fields[] = {
    {"listen", VALUE_LISTEN, 0, 0, 0, NULL},
    {"limits", VALUE_SECTION, 0, 0, 0, &limits_section},
    FIELD("shutdown_grace", VALUE_DURATION, shutdown_grace_ms, 0, MS_PER_H),
    FIELD("workers", VALUE_WORKERS, workers, 1, 1024),
    FIELD("reuse_port", VALUE_BOOL, reuse_port, 0, 1),
    {"log", VALUE_SECTION, 0, 0, 0, &log_section},
    FIELD("pid_file", VALUE_STRING, pid_file, 0, sizeof(((config *)0)->pid_file)),
    FIELD("user", VALUE_STRING, user, 0, sizeof(((config *)0)->user)),
};
static const section top_section = {"at the top level", top_fields, NFIELDS(top_fields)};

static const section *const all_sections[] = {&top_section, &limits_section, &log_section,
                                              &listen_entry_section};

/* ---- unknown keys ---------------------------------------------------------- */

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Edit distance counting a swap of neighbours as one edit (optimal string
 * alignment), ignoring ASCII case; both at most SUGGEST_MAX_LEN long. */
static size_t edit_distance(const char *a, size_t alen, const char *b, size_t blen) {
    size_t rows[3][SUGGEST_MAX_LEN + 1]; /* rows i-2, i-1, i, rotating */
    for (size_t j = 0; j <= blen; j++)
        rows[1][j] = j;
    for (size_t i = 1; i <= alen; i++) {
        size_t *cur = rows[(i + 1) % 3], *prev = rows[i % 3], *prev2 = rows[(i + 2) % 3];
        cur[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
                ascii_lower(a[i - 2]) == ascii_lower(b[j - 1]) && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[(alen + 1) % 3][blen];
}

/* The key of sec closest to key, if close enough to be a likely typo. */
static const char *closest_key(const section *sec, const char *key, size_t keylen) {
    if (keylen > SUGGEST_MAX_LEN)
        return NULL;
    const char *best = NULL;
    size_t best_distance = SIZE_MAX;
    for (size_t i = 0; i < sec->nfields; i++) {
        const char *name = sec->fields[i].name;
        size_t len = strlen(name);
        size_t allowed = len <= 4 ? 1 : len <= 8 ? 2 : 3;
        size_t d = edit_distance(key, keylen, name, len);
        if (d <= allowed && d < best_distance) {
            best = name;
            best_distance = d;
        }
    }
    return best;
}

static int find_field(const section *sec, const char *key, size_t keylen) {
    for (size_t i = 0; i < sec->nfields; i++)
        if (strlen(sec->fields[i].name) == keylen && memcmp(sec->fields[i].name, key, keylen) == 0)
            return (int)i;
    return -1;
}

static void report_unknown_key(parse_ctx *ctx, const yaml_node_t *key, const char *keypath,
                               const section *sec) {
    const char *name = scalar_text(key);
    size_t len = key->data.scalar.length;
    for (size_t i = 0; i < sizeof all_sections / sizeof all_sections[0]; i++) {
        if (all_sections[i] != sec && find_field(all_sections[i], name, len) >= 0) {
            report(ctx, key->start_mark, keypath, "unknown key; %s belongs %s", name,
                   all_sections[i]->where);
            return;
        }
    }
    const char *suggestion = closest_key(sec, name, len);
    if (suggestion != NULL) {
        report(ctx, key->start_mark, keypath, "unknown key; did you mean \"%s\"?", suggestion);
        return;
    }
    char valid[256];
    size_t o = 0;
    for (size_t i = 0; i < sec->nfields; i++)
        o += (size_t)snprintf(valid + o, sizeof valid - o, "%s%s", i > 0 ? ", " : "",
                              sec->fields[i].name);
    report(ctx, key->start_mark, keypath, "unknown key; expected one of %s", valid);
}

/* Called for each known key of a mapping with its value and key path. */
typedef void visit_fn(parse_ctx *ctx, const field *f, const yaml_node_t *value, const char *keypath,
                      void *arg);

/* Visits the keys of a mapping that sec knows, in document order so that
 * errors come out in the order of the file; reports unknown keys, duplicates
 * and keys that are not scalars. keys[i] gets the key node of field i, NULL
 * if absent. */
static void walk_mapping(parse_ctx *ctx, const yaml_node_t *map, const char *path,
                         const section *sec, visit_fn *visit, void *arg,
                         const yaml_node_t *keys[MAX_FIELDS]) {
    for (size_t i = 0; i < sec->nfields; i++)
        keys[i] = NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top && !ctx->gave_up; pair++) {
        const yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        char buf[QUOTE_SIZE + 16];
        if (key->type != YAML_SCALAR_NODE || is_null(key)) {
            report(ctx, key->start_mark, path, "expected a key name, got %s",
                   describe(key, false, buf, sizeof buf));
            continue;
        }
        const char *name = scalar_text(key);
        size_t len = key->data.scalar.length;
        char keypath[PATH_SIZE];
        child_path(keypath, sizeof keypath, path, name, len);
        int i = find_field(sec, name, len);
        if (i < 0) {
            report_unknown_key(ctx, key, keypath, sec);
        } else if (keys[i] != NULL) {
            report(ctx, key->start_mark, keypath, "duplicate key (first at %zu:%zu)",
                   keys[i]->start_mark.line + 1, keys[i]->start_mark.column + 1);
        } else {
            keys[i] = key;
            visit(ctx, &sec->fields[i], value, keypath, arg);
        }
    }
}

/* ---- scalar values --------------------------------------------------------- */

/* A plain decimal integer in [min, max]; alternative (e.g. ` or "auto"`)
 * completes the description of what is expected. */
static bool integer_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                          int64_t max, const char *alternative, int64_t *out) {
    char buf[QUOTE_SIZE + 16];
    if (!is_plain(node) || is_null(node)) {
        report(ctx, node->start_mark, path, "expected an integer%s, got %s", alternative,
               describe(node, true, buf, sizeof buf));
        return false;
    }
    const char *s = scalar_text(node);
    bool negative = s[0] == '-';
    const char *digits = s + negative, *end = digits;
    uint64_t magnitude;
    bool overflow;
    /* No leading zeros: YAML 1.1 reads 010 as octal 8. */
    if (!units_read_digits(&end, &magnitude, &overflow) || *end != '\0' ||
        (digits[0] == '0' && end - digits > 1)) {
        report(ctx, node->start_mark, path, "expected an integer%s, got %s", alternative,
               describe(node, true, buf, sizeof buf));
        return false;
    }
    bool representable = !overflow && magnitude <= INT64_MAX;
    int64_t value = !representable ? 0 : negative ? -(int64_t)magnitude : (int64_t)magnitude;
    if (!representable || value < min || value > max) {
        report(ctx, node->start_mark, path,
               "expected an integer from %" PRId64 " to %" PRId64 "%s, got %.*s", min, max,
               alternative, QUOTE_SHOWN_MAX, s);
        return false;
    }
    *out = value;
    return true;
}

/* A scalar that is not null, or an error saying what was expected. */
static const char *text_value(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                              const char *expected) {
    if (node->type == YAML_SCALAR_NODE && !is_null(node))
        return scalar_text(node);
    char buf[QUOTE_SIZE + 16];
    report(ctx, node->start_mark, path, "expected %s, got %s", expected,
           describe(node, false, buf, sizeof buf));
    return NULL;
}

/* Reports a duration or size that failed to parse or is out of [min, max]
 * (bounds already formatted). */
static void report_quantity(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                            enum units_status st, const char *what, const char *example,
                            const char *units, const char *min, const char *max) {
    char buf[QUOTE_SIZE + 16];
    const char *got = describe(node, false, buf, sizeof buf);
    switch (st) {
    case UNITS_GARBAGE:
        report(ctx, node->start_mark, path, "expected %s such as %s, got %s", what, example, got);
        break;
    case UNITS_BAD_UNIT:
        report(ctx, node->start_mark, path, "expected %s such as %s, got %s (units: %s)", what,
               example, got, units);
        break;
    case UNITS_NO_UNIT:
        report(ctx, node->start_mark, path, "expected %s such as %s, got %s (no unit; use %s)",
               what, example, got, units);
        break;
    default:
        report(ctx, node->start_mark, path, "expected %s from %s to %s, got %.*s", what, min, max,
               QUOTE_SHOWN_MAX, scalar_text(node));
        break;
    }
}

static bool duration_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                           int64_t max, int64_t *ms) {
    const char *s = text_value(ctx, node, path, "a duration such as 30s");
    if (s == NULL)
        return false;
    enum units_status st = units_parse_duration(s, ms);
    if (st == UNITS_OK && (*ms < min || *ms > max))
        st = UNITS_TOO_BIG;
    if (st != UNITS_OK) {
        char lo[32], hi[32];
        units_format_duration(lo, sizeof lo, min);
        units_format_duration(hi, sizeof hi, max);
        report_quantity(ctx, node, path, st, "a duration", "30s", "ms, s, m or h", lo, hi);
        return false;
    }
    return true;
}

static bool size_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, size_t min,
                       size_t max, size_t *bytes) {
    const char *s = text_value(ctx, node, path, "a size such as 16KiB");
    if (s == NULL)
        return false;
    enum units_status st = units_parse_size(s, bytes);
    if (st == UNITS_OK && (*bytes < min || *bytes > max))
        st = UNITS_TOO_BIG;
    if (st != UNITS_OK) {
        char lo[32], hi[32];
        units_format_size(lo, sizeof lo, min);
        units_format_size(hi, sizeof hi, max);
        report_quantity(ctx, node, path, st, "a size", "16KiB", "B, KiB or MiB", lo, hi);
        return false;
    }
    return true;
}

static bool workers_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                          int64_t max, int64_t *workers) {
    if (node->type == YAML_SCALAR_NODE && strcmp(scalar_text(node), "auto") == 0) {
        *workers = 0;
        return true;
    }
    return integer_value(ctx, node, path, min, max, " or \"auto\"", workers);
}

static bool log_level_value(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                            enum log_level *level) {
    const char *expected = "one of error, warn, info, debug";
    const char *s = text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (config_parse_log_level(s, level) < 0) {
        char buf[QUOTE_SIZE + 16];
        report(ctx, node->start_mark, path, "expected %s, got %s", expected,
               describe(node, false, buf, sizeof buf));
        return false;
    }
    return true;
}

/* YAML 1.2's booleans only: "yes", "on" and friends are typos here. */
static bool bool_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, bool *out) {
    const char *expected = "true or false";
    const char *s = text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return true;
    }
    char buf[QUOTE_SIZE + 16];
    report(ctx, node->start_mark, path, "expected %s, got %s", expected,
           describe(node, false, buf, sizeof buf));
    return false;
}

/* Copies a string into a char array of size bytes. An explicit "" is the
 * way to say "none"; a bare null is more likely a value left out. */
static void string_value(parse_ctx *ctx, const yaml_node_t *node, const char *path, char *dst,
                         size_t size) {
    const char *s = text_value(ctx, node, path, "a string (\"\" for none)");
    if (s == NULL)
        return;
    size_t len = node->data.scalar.length;
    if (strlen(s) != len) {
        report(ctx, node->start_mark, path, "expected a string without NUL characters");
        return;
    }
    if (len >= size) {
        report(ctx, node->start_mark, path, "expected at most %zu bytes, got %zu", size - 1, len);
        return;
    }
    memcpy(dst, s, len + 1);
}

/* ---- listen ------------------------------------------------------------------- */

static bool address_value(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                          struct sockaddr_storage *addr, socklen_t *addrlen) {
    const char *expected = "an IPv4 or IPv6 address such as 127.0.0.1 or \"::1\"";
    const char *s = text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (!hostport_parse_ip(s, AF_UNSPEC, 0, addr, addrlen)) {
        char buf[QUOTE_SIZE + 16];
        report(ctx, node->start_mark, path, "expected %s, got %s", expected,
               describe(node, false, buf, sizeof buf));
        return false;
    }
    return true;
}

/* A listen entry as its fields are visited. */
typedef struct listen_entry {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t port;
    bool ok;
} listen_entry;

static void visit_listen_field(parse_ctx *ctx, const field *f, const yaml_node_t *value,
                               const char *keypath, void *arg) {
    listen_entry *entry = arg;
    if (f->kind == VALUE_ADDRESS)
        entry->ok &= address_value(ctx, value, keypath, &entry->addr, &entry->addrlen);
    else
        entry->ok &= integer_value(ctx, value, keypath, f->min, f->max, "", &entry->port);
}

/* One { address, port } entry; false if it has errors (reported). */
static bool parse_listen_entry(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                               listen_addr *out) {
    char buf[QUOTE_SIZE + 16];
    if (node->type != YAML_MAPPING_NODE) {
        report(ctx, node->start_mark, path, "expected a mapping { address, port }, got %s",
               describe(node, false, buf, sizeof buf));
        return false;
    }
    listen_entry entry = {.ok = true};
    const yaml_node_t *keys[MAX_FIELDS];
    walk_mapping(ctx, node, path, &listen_entry_section, visit_listen_field, &entry, keys);
    for (size_t i = 0; i < listen_entry_section.nfields; i++) {
        if (keys[i] == NULL) {
            report(ctx, node->start_mark, path, "missing key \"%s\"", listen_entry_fields[i].name);
            entry.ok = false;
        }
    }
    if (entry.ok) {
        hostport_set_port(&entry.addr, (uint16_t)entry.port);
        make_listen(out, &entry.addr, entry.addrlen);
    }
    return entry.ok;
}

/* Binding the same address and port twice fails at startup; say so now.
 * Port 0 picks a fresh port each time, so it may repeat. */
static void check_duplicate_listener(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                                     const config *cfg, const listen_addr *la) {
    for (size_t i = 0; i < cfg->nlisten && hostport_port(&la->addr) != 0; i++) {
        if (strcmp(cfg->listen[i].text, la->text) == 0) {
            report(ctx, node->start_mark, path, "%s is already listed (listen[%zu])", la->text, i);
            return;
        }
    }
}

static void parse_listen(parse_ctx *ctx, const yaml_node_t *node, const char *path, config *cfg) {
    char buf[QUOTE_SIZE + 16];
    if (node->type != YAML_SEQUENCE_NODE) {
        report(ctx, node->start_mark, path, "expected a list of { address, port }, got %s",
               describe(node, false, buf, sizeof buf));
        return;
    }
    yaml_node_item_t *items = node->data.sequence.items.start;
    size_t count = (size_t)(node->data.sequence.items.top - items);
    if (count == 0) {
        report(ctx, node->start_mark, path, "expected at least one { address, port }");
        return;
    }
    cfg->nlisten = 0; /* present: replaces the defaults */
    for (size_t i = 0; i < count && !ctx->gave_up; i++) {
        const yaml_node_t *item = yaml_document_get_node(ctx->doc, items[i]);
        char itempath[PATH_SIZE];
        index_path(itempath, sizeof itempath, path, i);
        if (i == CONFIG_MAX_LISTEN) {
            report(ctx, item->start_mark, itempath, "too many entries (at most %d)",
                   CONFIG_MAX_LISTEN);
            return;
        }
        listen_addr la;
        if (parse_listen_entry(ctx, item, itempath, &la)) {
            check_duplicate_listener(ctx, item, itempath, cfg, &la);
            cfg->listen[cfg->nlisten++] = la;
        }
    }
}

/* ---- mappings ------------------------------------------------------------------ */

static void parse_section(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                          const section *sec, config *cfg);

/* Checks one value and stores it into its member of the config, arg. */
static void apply_field(parse_ctx *ctx, const field *f, const yaml_node_t *value, const char *path,
                        void *arg) {
    config *cfg = arg;
    void *member = (char *)cfg + f->offset;
    int64_t i64;
    size_t size;
    switch (f->kind) {
    case VALUE_LISTEN:
        parse_listen(ctx, value, path, cfg);
        break;
    case VALUE_SECTION:
        parse_section(ctx, value, path, f->section, cfg);
        break;
    case VALUE_UINT32:
        if (integer_value(ctx, value, path, f->min, f->max, "", &i64))
            *(uint32_t *)member = (uint32_t)i64;
        break;
    case VALUE_INT:
        if (integer_value(ctx, value, path, f->min, f->max, "", &i64))
            *(int *)member = (int)i64;
        break;
    case VALUE_DURATION:
        if (duration_value(ctx, value, path, f->min, f->max, &i64))
            *(int64_t *)member = i64;
        break;
    case VALUE_SIZE:
        if (size_value(ctx, value, path, (size_t)f->min, (size_t)f->max, &size))
            *(size_t *)member = size;
        break;
    case VALUE_WORKERS:
        if (workers_value(ctx, value, path, f->min, f->max, &i64))
            *(int *)member = (int)i64;
        break;
    case VALUE_BOOL:
        bool_value(ctx, value, path, (bool *)member);
        break;
    case VALUE_LOG_LEVEL:
        log_level_value(ctx, value, path, (enum log_level *)member);
        break;
    case VALUE_STRING:
        string_value(ctx, value, path, member, (size_t)f->max);
        break;
    case VALUE_ADDRESS:
    case VALUE_PORT:
        break; /* only in listen entries */
    }
}

/* A mapping of sec's keys. A section left empty ("limits:" with every key
 * commented out) is null in YAML and means the defaults. */
static void parse_section(parse_ctx *ctx, const yaml_node_t *node, const char *path,
                          const section *sec, config *cfg) {
    if (is_null(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        char buf[QUOTE_SIZE + 16];
        report(ctx, node->start_mark, path, "expected a mapping, got %s",
               describe(node, false, buf, sizeof buf));
        return;
    }
    const yaml_node_t *keys[MAX_FIELDS];
    walk_mapping(ctx, node, path, sec, apply_field, cfg, keys);
}

static void parse_root(parse_ctx *ctx, const yaml_node_t *root) {
    if (is_null(root)) /* a document that is only "---" */
        return;
    if (root->type != YAML_MAPPING_NODE) {
        char buf[QUOTE_SIZE + 16];
        report(ctx, root->start_mark, "", "expected a mapping of settings at the top level, got %s",
               describe(root, false, buf, sizeof buf));
        return;
    }
    parse_section(ctx, root, "", &top_section, ctx->cfg);
}

/* ---- the file ------------------------------------------------------------------ */

/* libyaml rejects a tab in indentation with a message that does not name the
 * tab, and a tab may even be read differently by an editor: report every line
 * whose leading blanks (or "- " sequence indicators) hold one. Blank lines are
 * left alone, as libyaml is. Returns whether any was found. */
static bool report_tabs(parse_ctx *ctx) {
    bool found = false;
    size_t line = 1;
    for (size_t i = 0; i < ctx->textlen && !ctx->gave_up; line++) {
        size_t start = i, tab = SIZE_MAX;
        for (; i < ctx->textlen; i++) {
            char c = ctx->text[i];
            bool dash = c == '-' && i + 1 < ctx->textlen &&
                        (ctx->text[i + 1] == ' ' || ctx->text[i + 1] == '\t');
            if (c == '\t' && tab == SIZE_MAX)
                tab = i;
            else if (c != ' ' && c != '\t' && !dash)
                break;
        }
        bool blank = i == ctx->textlen || ctx->text[i] == '\n' || ctx->text[i] == '\r';
        if (tab != SIZE_MAX && !blank) {
            report_at(ctx, line, tab - start + 1, NULL,
                      "tab character in indentation; YAML allows spaces only");
            found = true;
        }
        const char *nl = memchr(ctx->text + i, '\n', ctx->textlen - i);
        i = nl == NULL ? ctx->textlen : (size_t)(nl - ctx->text) + 1;
    }
    return found;
}

/* Byte offset in the text of a libyaml mark (whose column counts characters). */
static size_t mark_offset(const parse_ctx *ctx, yaml_mark_t mark) {
    size_t i = 0;
    for (size_t line = 0; line < mark.line && i < ctx->textlen; i++)
        if (ctx->text[i] == '\n')
            line++;
    for (size_t col = 0; i < ctx->textlen; i++) {
        if (((unsigned char)ctx->text[i] & 0xc0) == 0x80)
            continue;
        if (col++ == mark.column)
            break;
    }
    return i;
}

/* 1-based line and column (in characters) of a byte offset in the text. */
static void offset_position(const parse_ctx *ctx, size_t offset, size_t *line, size_t *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < ctx->textlen; i++) {
        if (ctx->text[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)ctx->text[i] & 0xc0) != 0x80) {
            ++*col;
        }
    }
}

/* libyaml's problem and context, plus a hint for the one mistake it words
 * obscurely: in flow style ({ address: ::1 }), a plain scalar cannot start
 * with ':'. */
static void report_syntax(parse_ctx *ctx, const yaml_parser_t *parser) {
    if (parser->error == YAML_MEMORY_ERROR) {
        report_file(ctx, "out of memory");
        return;
    }
    if (parser->error == YAML_READER_ERROR) {
        size_t line, col;
        offset_position(ctx, parser->problem_offset, &line, &col);
        if (parser->problem_value >= 0)
            report_at(ctx, line, col, NULL, "encoding error: %s (0x%02x)", parser->problem,
                      (unsigned)parser->problem_value);
        else
            report_at(ctx, line, col, NULL, "encoding error: %s", parser->problem);
        return;
    }
    yaml_mark_t at = parser->problem_mark;
    char context[128] = "";
    if (parser->context != NULL &&
        (parser->context_mark.line != at.line || parser->context_mark.column != at.column))
        snprintf(context, sizeof context, " (%s that started at %zu:%zu)", parser->context,
                 parser->context_mark.line + 1, parser->context_mark.column + 1);
    else if (parser->context != NULL)
        snprintf(context, sizeof context, " (%s)", parser->context);
    size_t offset = mark_offset(ctx, at);
    bool colon_scalar =
        offset + 1 < ctx->textlen && ctx->text[offset] == ':' && ctx->text[offset + 1] == ':';
    report(ctx, at, NULL, "syntax error: %s%s%s", parser->problem ? parser->problem : "unknown",
           context, colon_scalar ? "; quote IPv6 addresses inside { }, e.g. \"::1\"" : "");
}

/* A configuration is one document: a second one is most likely a mistake. */
static void check_single_document(parse_ctx *ctx, yaml_parser_t *parser) {
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        report_syntax(ctx, parser);
        return;
    }
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && !is_null(root))
        report(ctx, root->start_mark, NULL,
               "a second YAML document; the configuration must be a single one");
    yaml_document_delete(&doc);
}

/* What check_limits has seen so far. */
typedef struct limit_counts {
    int depth;
    int anchors;
    int aliases;
} limit_counts;

/* Counts one token; false (reported at the token) if it goes over a limit. */
static bool count_token(parse_ctx *ctx, const yaml_token_t *token, limit_counts *n) {
    switch (token->type) {
    case YAML_BLOCK_SEQUENCE_START_TOKEN:
    case YAML_BLOCK_MAPPING_START_TOKEN:
    case YAML_FLOW_SEQUENCE_START_TOKEN:
    case YAML_FLOW_MAPPING_START_TOKEN:
        if (++n->depth <= MAX_DEPTH)
            return true;
        report(ctx, token->start_mark, NULL, "nesting deeper than %d levels", MAX_DEPTH);
        return false;
    case YAML_BLOCK_END_TOKEN:
    case YAML_FLOW_SEQUENCE_END_TOKEN:
    case YAML_FLOW_MAPPING_END_TOKEN:
        n->depth--;
        return true;
    case YAML_ANCHOR_TOKEN:
        if (++n->anchors <= MAX_ANCHORS)
            return true;
        report(ctx, token->start_mark, NULL, "more than %d anchors (&name)", MAX_ANCHORS);
        return false;
    case YAML_ALIAS_TOKEN:
        if (++n->aliases <= MAX_ALIASES)
            return true;
        report(ctx, token->start_mark, NULL, "more than %d aliases (*name)", MAX_ALIASES);
        return false;
    default:
        return true;
    }
}

/* Holds the text to MAX_DEPTH, MAX_ANCHORS and MAX_ALIASES before libyaml
 * builds a document from it; false if over one (reported). The pass reads
 * libyaml's own tokens rather than guessing at YAML's lexical rules (block
 * scalars, quotes, comments), so it counts exactly what the loader would
 * see, with exact positions. It stops at the first token over a limit, and
 * the scanner's lookahead is short (a possible simple key: one line, at most
 * 1024 characters), so it never walks a deep stack for long. A syntax error
 * ends the pass quietly: the load reports it. */
static bool check_limits(parse_ctx *ctx) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        report_file(ctx, "out of memory");
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx->text, ctx->textlen);
    limit_counts counts = {0, 0, 0};
    bool ok = true, end = false;
    while (ok && !end) {
        yaml_token_t token;
        if (!yaml_parser_scan(&parser, &token))
            break;
        end = token.type == YAML_STREAM_END_TOKEN || token.type == YAML_NO_TOKEN;
        ok = count_token(ctx, &token, &counts);
        yaml_token_delete(&token);
    }
    yaml_parser_delete(&parser);
    return ok;
}

static void parse_text(parse_ctx *ctx) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        report_file(ctx, "out of memory");
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx->text, ctx->textlen);
    yaml_document_t doc;
    if (yaml_parser_load(&parser, &doc)) {
        const yaml_node_t *root = yaml_document_get_root_node(&doc);
        bool empty = root == NULL; /* an empty file, or only comments */
        ctx->doc = &doc;
        if (!empty)
            parse_root(ctx, root);
        ctx->doc = NULL;
        yaml_document_delete(&doc);
        if (!empty && !ctx->gave_up)
            check_single_document(ctx, &parser);
    } else {
        report_syntax(ctx, &parser); /* libyaml has freed the partial document */
    }
    yaml_parser_delete(&parser);
}

/* What a file that is not a regular one is, for the message. */
static const char *file_type_name(mode_t mode) {
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "of an unknown type";
}

/* Opens the file for reading, or returns -1 (reported). Only a regular file
 * is accepted: a FIFO would block the opener (fopen waits for a writer, a
 * read for data), freezing the event loop on a reload and "coechod -t" in
 * ExecStartPre; a device such as /dev/zero never ends. O_NONBLOCK makes the
 * open itself return at once on a FIFO; it changes nothing for a regular
 * file. */
static int open_regular(parse_ctx *ctx) {
    int fd = open(ctx->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        report_file(ctx, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        report_file(ctx, "cannot stat: %s", strerror(errno));
        (void)close(fd); /* read-only: a failed close loses nothing */
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        report_file(ctx, "not a regular file (%s)", file_type_name(st.st_mode));
        (void)close(fd);
        return -1;
    }
    return fd;
}

/* Makes room for at least two more bytes (one read byte and the NUL);
 * false when out of memory (text is then freed). */
static bool grow_buffer(char **text, size_t *cap, size_t n) {
    if (*text != NULL && *cap - n >= 2)
        return true;
    size_t bigger = *text == NULL ? 4096 : *cap * 2;
    char *p = realloc(*text, bigger);
    if (p == NULL) {
        free(*text);
        *text = NULL;
        return false;
    }
    *text = p;
    *cap = bigger;
    return true;
}

/* Reads fd to its end: the text, NUL-terminated, or NULL (reported). The
 * size is checked as the bytes come, not from fstat, which a file being
 * written (or one in /proc) does not report truthfully. */
static char *read_all(parse_ctx *ctx, int fd, size_t *len) {
    char *text = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (!grow_buffer(&text, &cap, n)) {
            report_file(ctx, "out of memory");
            return NULL;
        }
        ssize_t got = read(fd, text + n, cap - n - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            report_file(ctx, "cannot read: %s", strerror(errno));
            break;
        }
        if (got == 0) {
            text[n] = '\0';
            *len = n;
            return text;
        }
        n += (size_t)got;
        if (n > MAX_FILE_SIZE) {
            report_file(ctx, "too large (over %d bytes)", MAX_FILE_SIZE);
            break;
        }
    }
    free(text);
    return NULL;
}

/* The whole file, NUL-terminated, or NULL (reported). */
static char *read_file(parse_ctx *ctx, size_t *len) {
    int fd = open_regular(ctx);
    if (fd < 0)
        return NULL;
    char *text = read_all(ctx, fd, len);
    (void)close(fd); /* read-only: a failed close loses nothing */
    return text;
}

int config_load(const char *path, config *cfg, config_errors *errs) {
    /* Without errs the messages still need a place, if only to be counted. */
    config_errors *own = errs == NULL ? malloc(sizeof *own) : NULL;
    if (errs == NULL && own == NULL)
        return -1;
    parse_ctx ctx = {.path = path, .errs = errs != NULL ? errs : own};
    errors_reset(ctx.errs);
    char *text = read_file(&ctx, &ctx.textlen);
    /* A copy, so that the caller's is written only on success. */
    ctx.cfg = text != NULL ? malloc(sizeof *ctx.cfg) : NULL;
    if (text != NULL && ctx.cfg == NULL)
        report_file(&ctx, "out of memory");
    if (ctx.cfg != NULL) {
        ctx.text = text;
        config_defaults(ctx.cfg);
        if (!report_tabs(&ctx) && check_limits(&ctx))
            parse_text(&ctx);
    }
    bool ok = ctx.errs->count == 0;
    if (ok)
        *cfg = *ctx.cfg;
    free(ctx.cfg);
    free(text);
    free(own);
    return ok ? 0 : -1;
}

/* ---- dump ------------------------------------------------------------------------ */

/* A double-quoted YAML string: escapes what YAML requires, control
 * characters, and the code points that YAML does not allow raw or reads as
 * line breaks: C1 controls U+0080-U+009F (NEL among them), U+2028, U+2029,
 * U+FFFE and U+FFFF. Other bytes (UTF-8) go as they are. */
static void write_yaml_string(FILE *out, const char *s) {
    putc('"', out);
    for (; *s != '\0'; s++) {
        const unsigned char *u = (const unsigned char *)s;
        if (u[0] == '"' || u[0] == '\\')
            fprintf(out, "\\%c", u[0]);
        else if (u[0] < 0x20 || u[0] == 0x7f)
            fprintf(out, "\\x%02x", u[0]);
        else if (u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f) { /* U+0080-U+009F */
            fprintf(out, "\\x%02x", u[1]);
            s += 1;
        } else if (u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) { /* LS, PS */
            fprintf(out, "\\u%04x", 0x2000 | (u[2] - 0x80));
            s += 2;
        } else if (u[0] == 0xef && u[1] == 0xbf && u[2] >= 0xbe) { /* U+FFFE, U+FFFF */
            fprintf(out, "\\u%04x", 0xffc0 | (u[2] - 0x80));
            s += 2;
        } else
            putc(u[0], out);
    }
    putc('"', out);
}

void config_dump(const config *cfg, FILE *out) {
    char a[32];
    fputs("# coechod configuration: every setting with its effective value\n", out);
    fputs(cfg->nlisten == 0 ? "listen: []\n" : "listen:\n", out);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        char ip[INET6_ADDRSTRLEN];
        hostport_format_ip(&cfg->listen[i].addr, ip, sizeof ip);
        fprintf(out, "  - { address: \"%s\", port: %u }\n", ip,
                hostport_port(&cfg->listen[i].addr));
    }
    fputs("limits:\n", out);
    fprintf(out, "  max_connections: %" PRIu32 "\n", cfg->max_connections);
    fprintf(out, "  max_connections_per_ip: %" PRIu32 "\n", cfg->max_connections_per_ip);
    fprintf(out, "  per_ip_ipv6_prefix: %" PRIu32 "\n", cfg->per_ip_ipv6_prefix);
    units_format_duration(a, sizeof a, cfg->idle_timeout_ms);
    fprintf(out, "  idle_timeout: %s\n", a);
    units_format_size(a, sizeof a, cfg->buffer_size);
    fprintf(out, "  buffer_size: %s\n", a);
    units_format_size(a, sizeof a, cfg->stack_size);
    fprintf(out, "  stack_size: %s\n", a);
    fprintf(out, "  backlog: %d\n", cfg->backlog);
    units_format_duration(a, sizeof a, cfg->shutdown_grace_ms);
    fprintf(out, "shutdown_grace: %s\n", a);
    if (cfg->workers == 0)
        fputs("workers: auto\n", out);
    else
        fprintf(out, "workers: %d\n", cfg->workers);
    fprintf(out, "reuse_port: %s\n", cfg->reuse_port ? "true" : "false");
    fprintf(out, "log:\n  level: %s\n", config_log_level_name(cfg->log_level));
    fputs("pid_file: ", out);
    write_yaml_string(out, cfg->pid_file);
    fputs("\nuser: ", out);
    write_yaml_string(out, cfg->user);
    putc('\n', out);
}
