/* A YAML file checked against a schema and stored into a struct (libyaml's
 * document API). Generic: the schema (a table per mapping: each key's name,
 * kind, member and bounds) is the caller's, and this module knows nothing of
 * any program's keys.
 *
 * What it does for every schema: reads the file (a regular file only, at
 * most 1 MiB), reports tabs in indentation, bounds nesting, anchors and
 * aliases before libyaml builds the document, reports syntax errors with a
 * position, walks the document by the schema (unknown keys with a
 * did-you-mean or the section they belong in, duplicate keys, wrong types,
 * out-of-range values), and dumps a struct back as YAML by the same table.
 * Errors read "FILE:LINE:COLUMN: KEY.PATH: message", one a line, and are
 * collected rather than fatal, up to 50.
 *
 * Values of a kind of the caller's own (YS_CUSTOM) are checked and dumped
 * by the caller's functions, which may use the ys_* helpers below. */
#ifndef COECHO_YAML_SCHEMA_H
#define COECHO_YAML_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <yaml.h>

#include "common/quote.h"

enum {
    YS_MAX_FIELDS = 16, /* keys in one mapping, at most */
    YS_PATH_SIZE = 256, /* a key path: "listen[3].address" */
};

/* Where the messages go: text (size bytes, the caller's; NULL with size 0
 * to count them only) gets one line per error, cut short when full. */
typedef struct ys_errors {
    char *text;
    size_t size;
    size_t len;
    int count;
} ys_errors;

/* One load in progress (opaque). */
typedef struct ys_ctx ys_ctx;

enum ys_kind {
    YS_SECTION,  /* a nested mapping (field.section), stored into the same struct */
    YS_UINT32,   /* uint32_t, plain decimal integer in [min, max] */
    YS_INT,      /* int, likewise */
    YS_DURATION, /* int64_t milliseconds: "30s", "500ms", "5m", "1h", "0" */
    YS_SIZE,     /* size_t bytes: "16KiB", "1MiB", "512B", "4096" */
    YS_BOOL,     /* bool: true or false */
    YS_STRING,   /* char array of field.size bytes; "" for none */
    YS_CUSTOM    /* field.parse and field.dump */
};

/* Field flags: YS_REQUIRED is this module's; bits from YS_OWNER_FLAG up
 * are the schema owner's (a reload policy, say), for ys_changed_fields and
 * ys_copy_fields. */
enum {
    YS_REQUIRED = 1u << 0, /* reported as missing if absent */
    YS_OWNER_FLAG = 1u << 8
};

struct ys_field;
struct ys_section;

/* Checks value and stores it into obj (the struct being filled). Returns
 * whether it was good; errors go through ys_report. */
typedef bool ys_parse_fn(ys_ctx *ctx, const struct ys_field *f, const yaml_node_t *value,
                         const char *path, void *obj);
/* Writes what follows "name:" for the value in obj: " value\n", or a line
 * break and lines indented deeper than indent. */
typedef void ys_dump_fn(const struct ys_field *f, const void *obj, FILE *out, int indent);

typedef struct ys_field {
    const char *name;
    const char *dotted; /* the key's path from the top ("limits.backlog"), for the owner */
    enum ys_kind kind;
    size_t offset, size; /* of the member in the struct */
    int64_t min, max;    /* numeric kinds */
    unsigned flags;
    const struct ys_section *section; /* YS_SECTION */
    ys_parse_fn *parse;               /* YS_CUSTOM */
    ys_dump_fn *dump;                 /* YS_CUSTOM, in sections that ys_dump writes */
} ys_field;

typedef struct ys_section {
    const char *where; /* for "belongs ..." hints: "under limits" */
    const ys_field *fields;
    size_t nfields; /* at most YS_MAX_FIELDS */
} ys_section;

typedef struct ys_schema {
    const ys_section *root;
    const ys_section *const *sections; /* every section, for "belongs ..." hints */
    size_t nsections;
} ys_schema;

/* Loads path into obj by schema, over what obj holds (absent keys keep
 * it). Returns 0, or -1 with every error in errs (reset first); obj may be
 * partly written then. Never blocks on a FIFO or device, and takes time
 * linear in the file. */
int ys_load(const char *path, const ys_schema *schema, void *obj, ys_errors *errs);

/* Writes obj as YAML by the section's table, in its order: every key,
 * nested sections indented by two spaces. */
void ys_dump(const ys_section *sec, const void *obj, FILE *out);

/* The dotted names of the fields (sections searched too) that carry flag
 * and whose members differ between a and b: bytewise, strings up to their
 * NUL. Stores at most max of them in keys, in table order; returns how many
 * differ, which may be more. */
size_t ys_changed_fields(const ys_section *sec, unsigned flag, const void *a, const void *b,
                         const char **keys, size_t max);
/* Copies from src to dst the members of the fields that carry flag. */
void ys_copy_fields(const ys_section *sec, unsigned flag, void *dst, const void *src);

/* s as a double-quoted YAML string that reads back the same. */
void ys_write_string(FILE *out, const char *s);

/* ---- for YS_CUSTOM parsers ----------------------------------------------- */

/* Records an error at node: "FILE:LINE:COL: PATH: message". */
__attribute__((format(printf, 4, 5))) void ys_report(ys_ctx *ctx, const yaml_node_t *node,
                                                     const char *path, const char *fmt, ...);
/* Where node starts, line and column from 1, as the messages say it. */
void ys_node_position(const yaml_node_t *node, unsigned *line, unsigned *column);
/* Whether errors stopped counting (too many): a walk should stop. */
bool ys_gave_up(const ys_ctx *ctx);

/* What a node is, for "expected X, got Y": a mapping, a list, null, "text"
 * or, when quoted text is itself the problem, string "text". buf needs
 * YS_DESCRIBE_SIZE bytes. */
enum { YS_DESCRIBE_SIZE = QUOTE_SIZE + 16 };
const char *ys_describe(const yaml_node_t *node, bool mention_string, char *buf, size_t size);
bool ys_is_null(const yaml_node_t *node);

/* A scalar that is not null, or NULL with "expected EXPECTED, got ...". */
const char *ys_text_value(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                          const char *expected);
/* A string without NUL characters copied into dst (size bytes, the NUL
 * included), or false with the error reported. */
bool ys_string_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, char *dst,
                     size_t size);
/* A plain decimal integer in [min, max]; alternative (e.g. ` or "auto"`)
 * completes the description of what is expected. */
bool ys_integer_value(ys_ctx *ctx, const yaml_node_t *node, const char *path, int64_t min,
                      int64_t max, const char *alternative, int64_t *out);

/* A mapping (node must be one) of sec's keys into obj, reporting missing
 * YS_REQUIRED keys at node. Returns whether every value was good and every
 * required key there; unknown and duplicate keys are reported but do not
 * count. */
bool ys_parse_mapping(ys_ctx *ctx, const yaml_node_t *node, const char *path, const ys_section *sec,
                      void *obj);

/* The items of a sequence node, and "parent[index]" paths for them. */
size_t ys_sequence_length(const yaml_node_t *node);
const yaml_node_t *ys_sequence_item(const ys_ctx *ctx, const yaml_node_t *node, size_t i);
void ys_index_path(char *buf, size_t size, const char *parent, size_t index);

#endif
