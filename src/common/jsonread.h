/* A small strict JSON reader (RFC 8259): a whole text into a tree, or the
 * line and column (1-based, in bytes) of the first thing wrong with it.
 * For coecho-load --merge, which reads its own --json output back. */
#ifndef COECHO_JSONREAD_H
#define COECHO_JSONREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    bool boolean;
    double number;
    bool is_uint;  /* a number written as a non-negative integer below 2^64 */
    uint64_t uint; /* its exact value, when is_uint */
    char *string;  /* NUL-terminated UTF-8 (an embedded \u0000 ends it early) */
    size_t count;  /* array items or object members */
    struct json_value *items;
    char **keys; /* objects: the member names, in order */
} json_value;

typedef struct json_error {
    int line, column;
    char what[96];
} json_error;

/* Parses len bytes at text (one value, optional white space around it).
 * Nesting deeper than JSONREAD_MAX_DEPTH, duplicate member names, invalid
 * UTF-8 and anything RFC 8259 forbids are errors. Returns the tree (free it
 * with jsonread_free), or NULL with *err filled in (also when out of
 * memory). */
#define JSONREAD_MAX_DEPTH 64
json_value *jsonread_parse(const char *text, size_t len, json_error *err);
void jsonread_free(json_value *v);

/* The member named key of an object, or NULL (also when v is no object). */
const json_value *jsonread_get(const json_value *v, const char *key);

#endif
