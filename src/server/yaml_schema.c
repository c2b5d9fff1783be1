/* A YAML file checked against a schema; see yaml_schema.h.
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
#include <config.h> /* autoconf's */
#endif
#include "server/yaml_schema.h"
#include "common/quote.h"
#include "common/units.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    MAX_ERRORS = 50,
    MAX_FILE_SIZE = 1 << 20, /* far beyond any sensible configuration */
    SHOWN_KEY_MAX = 64,      /* bytes of a key shown in a key path */
    SUGGEST_MAX_LEN = 32,    /* keys longer than this get no did-you-mean */
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

/* ---- error collection ---------------------------------------------------- */

struct ys_ctx {
    const char *path; /* the file, as given */
    const char *text; /* its contents */
    size_t textlen;
    yaml_document_t *doc;
    const ys_schema *schema;
    void *obj; /* filled as the walk goes */
    ys_errors *errs;
    bool gave_up; /* MAX_ERRORS reached: the walk stops */
};

static void errors_reset(ys_errors *errs) {
    if (errs->size > 0)
        errs->text[0] = '\0';
    errs->len = 0;
    errs->count = 0;
}

/* Appends line and a newline, cut short if the buffer is full. */
static void errors_append(ys_errors *errs, const char *line) {
    size_t room = errs->size - errs->len;
    if (errs->size == 0 || room < 2)
        return;
    int n = snprintf(errs->text + errs->len, room, "%s\n", line);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        errs->len = errs->size - 1;
        errs->text[errs->len - 1] = '\n';
    } else {
        errs->len += (size_t)n;
    }
}

/* Records "FILE[:LINE:COL]: [KEYPATH: ]message"; line 0 means no position. */
__attribute__((format(printf, 5, 0))) static void
report_v(ys_ctx *ctx, size_t line, size_t col, const char *keypath, const char *fmt, va_list ap) {
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
report_at(ys_ctx *ctx, size_t line, size_t col, const char *keypath, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, line, col, keypath, fmt, ap);
    va_end(ap);
}

/* An error at a libyaml mark (0-based), shown 1-based. */
__attribute__((format(printf, 4, 5))) static void
report(ys_ctx *ctx, yaml_mark_t mark, const char *keypath, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, mark.line + 1, mark.column + 1, keypath, fmt, ap);
    va_end(ap);
}

void ys_report(ys_ctx *ctx, const yaml_node_t *node, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, node->start_mark.line + 1, node->start_mark.column + 1, path, fmt, ap);
    va_end(ap);
}

bool ys_gave_up(const ys_ctx *ctx) { return ctx->gave_up; }

void ys_node_position(const yaml_node_t *node, unsigned *line, unsigned *column) {
    *line = (unsigned)node->start_mark.line + 1;
    *column = (unsigned)node->start_mark.column + 1;
}

/* An error about the file as a whole: no position, no key. */
__attribute__((format(printf, 2, 3))) static void report_file(ys_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_v(ctx, 0, 0, NULL, fmt, ap);
    va_end(ap);
}

/* ---- describing values in messages -------------------------------------- */

bool ys_is_null(const yaml_node_t *node) {
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

const char *ys_describe(const yaml_node_t *node, bool mention_string, char *buf, size_t size) {
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node->type != YAML_SCALAR_NODE)
        return "nothing";
    if (ys_is_null(node))
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

void ys_index_path(char *buf, size_t size, const char *parent, size_t index) {
    snprintf(buf, size, "%s[%zu]", parent, index);
}

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
static const char *closest_key(const ys_section *sec, const char *key, size_t keylen) {
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

static int find_field(const ys_section *sec, const char *key, size_t keylen) {
    for (size_t i = 0; i < sec->nfields; i++)
        if (strlen(sec->fields[i].name) == keylen && memcmp(sec->fields[i].name, key, keylen) == 0)
            return (int)i;
    return -1;
}

static void report_unknown_key(ys_ctx *ctx, const yaml_node_t *key, const char *keypath,
                               const ys_section *sec) {
    const char *name = scalar_text(key);
    size_t len = key->data.scalar.length;
    for (size_t i = 0; i < ctx->schema->nsections; i++) {
        const ys_section *other = ctx->schema->sections[i];
        if (other != sec && find_field(other, name, len) >= 0) {
            report(ctx, key->start_mark, keypath, "unknown key; %s belongs %s", name, other->where);
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

static bool apply_field(ys_ctx *ctx, const ys_field *f, const yaml_node_t *value, const char *path,
                        void *obj);

/* Stores the keys of a mapping that sec knows into obj, in document order
 * so that errors come out in the order of the file; reports unknown keys,
 * duplicates, keys that are not scalars and missing required keys. Returns
 * whether every value stored was good and no required key was missing. */
static bool walk_mapping(ys_ctx *ctx, const yaml_node_t *map, const char *path,
                         const ys_section *sec, void *obj) {
    const yaml_node_t *keys[YS_MAX_FIELDS] = {NULL};
    bool ok = true;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top && !ctx->gave_up; pair++) {
        const yaml_node_t *key = yaml_document_get_node(ctx->doc, pair->key);
        const yaml_node_t *value = yaml_document_get_node(ctx->doc, pair->value);
        char buf[YS_DESCRIBE_SIZE];
        if (key->type != YAML_SCALAR_NODE || ys_is_null(key)) {
            report(ctx, key->start_mark, path, "expected a key name, got %s",
                   ys_describe(key, false, buf, sizeof buf));
            continue;
        }
        const char *name = scalar_text(key);
        size_t len = key->data.scalar.length;
        char keypath[YS_PATH_SIZE];
        child_path(keypath, sizeof keypath, path, name, len);
        int i = find_field(sec, name, len);
        if (i < 0) {
            report_unknown_key(ctx, key, keypath, sec);
        } else if (keys[i] != NULL) {
            report(ctx, key->start_mark, keypath, "duplicate key (first at %zu:%zu)",
                   keys[i]->start_mark.line + 1, keys[i]->start_mark.column + 1);
        } else {
            keys[i] = key;
            ok &= apply_field(ctx, &sec->fields[i], value, keypath, obj);
        }
    }
    for (size_t i = 0; i < sec->nfields; i++) {
        if (keys[i] == NULL && (sec->fields[i].flags & YS_REQUIRED)) {
            report(ctx, map->start_mark, path, "missing key \"%s\"", sec->fields[i].name);
            ok = false;
        }
    }
    return ok;
}

bool ys_parse_mapping(ys_ctx *ctx, const yaml_node_t *node, const char *path, const ys_section *sec,
                      void *obj) {
    return walk_mapping(ctx, node, path, sec, obj);
}

/* ---- scalar values --------------------------------------------------------- */

/* A plain decimal integer in [min, max]; alternative (e.g. ` or "auto"`)
 * completes the description of what is expected. */
bool ys_integer_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                      int64_t max, const char *alternative, int64_t *out) {
    char buf[YS_DESCRIBE_SIZE];
    if (!is_plain(node) || ys_is_null(node)) {
        report(ctx, node->start_mark, path, "expected an integer%s, got %s", alternative,
               ys_describe(node, true, buf, sizeof buf));
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
               ys_describe(node, true, buf, sizeof buf));
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
const char *ys_text_value(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                          const char *expected) {
    if (node->type == YAML_SCALAR_NODE && !ys_is_null(node))
        return scalar_text(node);
    char buf[YS_DESCRIBE_SIZE];
    report(ctx, node->start_mark, path, "expected %s, got %s", expected,
           ys_describe(node, false, buf, sizeof buf));
    return NULL;
}

/* Reports a duration or size that failed to parse or is out of [min, max]
 * (bounds already formatted). */
static void report_quantity(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                            enum units_status st, const char *what, const char *example,
                            const char *units, const char *min, const char *max) {
    char buf[YS_DESCRIBE_SIZE];
    const char *got = ys_describe(node, false, buf, sizeof buf);
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

static bool duration_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                           int64_t max, int64_t *ms) {
    const char *s = ys_text_value(ctx, node, path, "a duration such as 30s");
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

static bool size_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, size_t min,
                       size_t max, size_t *bytes) {
    const char *s = ys_text_value(ctx, node, path, "a size such as 16KiB");
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

/* YAML 1.2's booleans only: "yes", "on" and friends are typos here. */
static bool bool_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, bool *out) {
    const char *expected = "true or false";
    const char *s = ys_text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return true;
    }
    char buf[YS_DESCRIBE_SIZE];
    report(ctx, node->start_mark, path, "expected %s, got %s", expected,
           ys_describe(node, false, buf, sizeof buf));
    return false;
}

/* An explicit "" is the way to say "none"; a bare null is more likely a
 * value left out. */
bool ys_string_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, char *dst,
                     size_t size) {
    const char *s = ys_text_value(ctx, node, path, "a string (\"\" for none)");
    if (s == NULL)
        return false;
    size_t len = node->data.scalar.length;
    if (strlen(s) != len) {
        report(ctx, node->start_mark, path, "expected a string without NUL characters");
        return false;
    }
    if (len >= size) {
        report(ctx, node->start_mark, path, "expected at most %zu bytes, got %zu", size - 1, len);
        return false;
    }
    memcpy(dst, s, len + 1);
    return true;
}

/* ---- mappings ------------------------------------------------------------------ */

static bool parse_section(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                          const ys_section *sec, void *obj);

/* Checks one value and stores it into its member of obj. */
static bool apply_field(ys_ctx *ctx, const ys_field *f, const yaml_node_t *value, const char *path,
                        void *obj) {
    void *member = (char *)obj + f->offset;
    int64_t i64;
    size_t size;
    bool ok = false;
    switch (f->kind) {
    case YS_SECTION:
        return parse_section(ctx, value, path, f->section, obj);
    case YS_UINT32:
        if ((ok = ys_integer_value(ctx, value, path, f->min, f->max, "", &i64)))
            *(uint32_t *)member = (uint32_t)i64;
        return ok;
    case YS_INT:
        if ((ok = ys_integer_value(ctx, value, path, f->min, f->max, "", &i64)))
            *(int *)member = (int)i64;
        return ok;
    case YS_DURATION:
        if ((ok = duration_value(ctx, value, path, f->min, f->max, &i64)))
            *(int64_t *)member = i64;
        return ok;
    case YS_SIZE:
        if ((ok = size_value(ctx, value, path, (size_t)f->min, (size_t)f->max, &size)))
            *(size_t *)member = size;
        return ok;
    case YS_BOOL:
        return bool_value(ctx, value, path, (bool *)member);
    case YS_STRING:
        return ys_string_value(ctx, value, path, member, f->size);
    case YS_CUSTOM:
        return f->parse(ctx, f, value, path, obj);
    }
    return false;
}

/* A mapping of sec's keys. A section left empty ("limits:" with every key
 * commented out) is null in YAML and means the defaults. */
static bool parse_section(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                          const ys_section *sec, void *obj) {
    if (ys_is_null(node))
        return true;
    if (node->type != YAML_MAPPING_NODE) {
        char buf[YS_DESCRIBE_SIZE];
        report(ctx, node->start_mark, path, "expected a mapping, got %s",
               ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    return walk_mapping(ctx, node, path, sec, obj);
}

static void parse_root(ys_ctx *ctx, const yaml_node_t *root) {
    if (ys_is_null(root)) /* a document that is only "---" */
        return;
    if (root->type != YAML_MAPPING_NODE) {
        char buf[YS_DESCRIBE_SIZE];
        report(ctx, root->start_mark, "", "expected a mapping of settings at the top level, got %s",
               ys_describe(root, false, buf, sizeof buf));
        return;
    }
    parse_section(ctx, root, "", ctx->schema->root, ctx->obj);
}

/* ---- sequences, for custom parsers -------------------------------------------- */

size_t ys_sequence_length(const yaml_node_t *node) {
    return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

const yaml_node_t *ys_sequence_item(const ys_ctx *ctx, const yaml_node_t *node, size_t i) {
    return yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
}

/* ---- the file ------------------------------------------------------------------ */

/* libyaml rejects a tab in indentation with a message that does not name the
 * tab, and a tab may even be read differently by an editor: report every line
 * whose leading blanks (or "- " sequence indicators) hold one. Blank lines are
 * left alone, as libyaml is. Returns whether any was found. */
static bool report_tabs(ys_ctx *ctx) {
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
static size_t mark_offset(const ys_ctx *ctx, yaml_mark_t mark) {
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
static void offset_position(const ys_ctx *ctx, size_t offset, size_t *line, size_t *col) {
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
static void report_syntax(ys_ctx *ctx, const yaml_parser_t *parser) {
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
static void check_single_document(ys_ctx *ctx, yaml_parser_t *parser) {
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        report_syntax(ctx, parser);
        return;
    }
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && !ys_is_null(root))
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
static bool count_token(ys_ctx *ctx, const yaml_token_t *token, limit_counts *n) {
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
static bool check_limits(ys_ctx *ctx) {
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

static void parse_text(ys_ctx *ctx) {
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
static int open_regular(ys_ctx *ctx) {
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
static char *read_all(ys_ctx *ctx, int fd, size_t *len) {
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
static char *read_file(ys_ctx *ctx, size_t *len) {
    int fd = open_regular(ctx);
    if (fd < 0)
        return NULL;
    char *text = read_all(ctx, fd, len);
    (void)close(fd); /* read-only: a failed close loses nothing */
    return text;
}

int ys_load(const char *path, const ys_schema *schema, void *obj, ys_errors *errs) {
    ys_ctx ctx = {.path = path, .schema = schema, .obj = obj, .errs = errs};
    errors_reset(errs);
    char *text = read_file(&ctx, &ctx.textlen);
    if (text != NULL) {
        ctx.text = text;
        if (!report_tabs(&ctx) && check_limits(&ctx))
            parse_text(&ctx);
    }
    free(text);
    return errs->count == 0 ? 0 : -1;
}

/* ---- dump ------------------------------------------------------------------------ */

/* Escapes what YAML requires, control characters, and the code points that
 * YAML does not allow raw or reads as line breaks: C1 controls U+0080-U+009F
 * (NEL among them), U+2028, U+2029, U+FFFE and U+FFFF. Other bytes (UTF-8)
 * go as they are. */
void ys_write_string(FILE *out, const char *s) {
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

/* One value of a kind this module knows, after "name:". */
static void dump_value(const ys_field *f, const void *obj, FILE *out) {
    const void *member = (const char *)obj + f->offset;
    char text[32];
    switch (f->kind) {
    case YS_UINT32:
        fprintf(out, " %" PRIu32 "\n", *(const uint32_t *)member);
        return;
    case YS_INT:
        fprintf(out, " %d\n", *(const int *)member);
        return;
    case YS_DURATION:
        units_format_duration(text, sizeof text, *(const int64_t *)member);
        fprintf(out, " %s\n", text);
        return;
    case YS_SIZE:
        units_format_size(text, sizeof text, *(const size_t *)member);
        fprintf(out, " %s\n", text);
        return;
    case YS_BOOL:
        fputs(*(const bool *)member ? " true\n" : " false\n", out);
        return;
    case YS_STRING:
        putc(' ', out);
        ys_write_string(out, member);
        putc('\n', out);
        return;
    case YS_SECTION:
    case YS_CUSTOM:
        return; /* dump_section's */
    }
}

static void dump_section(const ys_section *sec, const void *obj, FILE *out, int indent) {
    for (size_t i = 0; i < sec->nfields; i++) {
        const ys_field *f = &sec->fields[i];
        fprintf(out, "%*s%s:", indent, "", f->name);
        if (f->kind == YS_SECTION) {
            putc('\n', out);
            dump_section(f->section, obj, out, indent + 2);
        } else if (f->kind == YS_CUSTOM) {
            f->dump(f, obj, out, indent);
        } else {
            dump_value(f, obj, out);
        }
    }
}

void ys_dump(const ys_section *sec, const void *obj, FILE *out) { dump_section(sec, obj, out, 0); }

/* ---- comparing and copying by flag ------------------------------------------- */

static bool member_differs(const ys_field *f, const void *a, const void *b) {
    const char *ma = (const char *)a + f->offset, *mb = (const char *)b + f->offset;
    if (f->kind == YS_STRING)
        return strncmp(ma, mb, f->size) != 0;
    return memcmp(ma, mb, f->size) != 0;
}

size_t ys_changed_fields(const ys_section *sec, unsigned flag, const void *a, const void *b,
                         const char **keys, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < sec->nfields; i++) {
        const ys_field *f = &sec->fields[i];
        if (f->kind == YS_SECTION) {
            n += ys_changed_fields(f->section, flag, a, b, n < max ? keys + n : NULL,
                                   n < max ? max - n : 0);
        } else if ((f->flags & flag) && member_differs(f, a, b)) {
            if (n < max)
                keys[n] = f->dotted;
            n++;
        }
    }
    return n;
}

void ys_copy_fields(const ys_section *sec, unsigned flag, void *dst, const void *src) {
    for (size_t i = 0; i < sec->nfields; i++) {
        const ys_field *f = &sec->fields[i];
        if (f->kind == YS_SECTION)
            ys_copy_fields(f->section, flag, dst, src);
        else if (f->flags & flag)
            memcpy((char *)dst + f->offset, (const char *)src + f->offset, f->size);
    }
}
