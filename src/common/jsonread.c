/* A recursive-descent reader: one function per RFC 8259 production. The
 * position is tracked as line and column for error messages. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/jsonread.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

typedef struct reader {
    const char *s, *end;
    int line;
    const char *line_start;
    int depth;
    json_error *err;
    bool failed;
} reader;

static bool fail(reader *r, const char *fmt, ...) {
    if (r->failed)
        return false;
    r->failed = true;
    r->err->line = r->line;
    r->err->column = (int)(r->s - r->line_start) + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err->what, sizeof r->err->what, fmt, ap);
    va_end(ap);
    return false;
}

static void skip_space(reader *r) {
    for (; r->s < r->end; r->s++) {
        if (*r->s == '\n') {
            r->line++;
            r->line_start = r->s + 1;
        } else if (*r->s != ' ' && *r->s != '\t' && *r->s != '\r') {
            return;
        }
    }
}

static bool at_end(const reader *r) { return r->s >= r->end; }

static bool literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->s) < n || memcmp(r->s, word, n) != 0)
        return fail(r, "expected a value");
    r->s += n;
    return true;
}

static bool parse_value(reader *r, json_value *v);

static void skip_digits(reader *r) {
    while (!at_end(r) && *r->s >= '0' && *r->s <= '9')
        r->s++;
}

/* The exact value of a plain non-negative integer, if it fits 64 bits. */
static void exact_uint(json_value *v, const char *start, const char *stop) {
    uint64_t u = 0;
    for (const char *p = start; p < stop; p++) {
        if (*p < '0' || *p > '9' || u > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return;
        u = u * 10 + (uint64_t)(*p - '0');
    }
    v->is_uint = true;
    v->uint = u;
}

static bool parse_number(reader *r, json_value *v) {
    const char *start = r->s;
    if (*r->s == '-')
        r->s++;
    if (at_end(r) || *r->s < '0' || *r->s > '9')
        return fail(r, "expected a digit");
    if (*r->s == '0' && r->s + 1 < r->end && r->s[1] >= '0' && r->s[1] <= '9')
        return fail(r, "a number may not have a leading zero");
    skip_digits(r);
    if (!at_end(r) && *r->s == '.') {
        r->s++;
        if (at_end(r) || *r->s < '0' || *r->s > '9')
            return fail(r, "expected a digit after the decimal point");
        skip_digits(r);
    }
    if (!at_end(r) && (*r->s == 'e' || *r->s == 'E')) {
        r->s++;
        if (!at_end(r) && (*r->s == '+' || *r->s == '-'))
            r->s++;
        if (at_end(r) || *r->s < '0' || *r->s > '9')
            return fail(r, "expected a digit in the exponent");
        skip_digits(r);
    }
    char buf[64];
    size_t n = (size_t)(r->s - start);
    if (n >= sizeof buf)
        return fail(r, "number too long");
    memcpy(buf, start, n);
    buf[n] = '\0';
    v->type = JSON_NUMBER;
    v->number = strtod(buf, NULL);
    if (!isfinite(v->number))
        return fail(r, "number out of range");
    exact_uint(v, start, r->s);
    return true;
}

static int hex4(const char *p) {
    int u = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        u = u * 16 + d;
    }
    return u;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \u escape (four hex digits), or a surrogate pair of two, at r->s
 * (after the 'u'). */
static bool unicode_escape(reader *r, char *out, size_t *n) {
    int hi = r->end - r->s >= 4 ? hex4(r->s) : -1;
    if (hi < 0)
        return fail(r, "expected four hex digits after \\u");
    r->s += 4;
    unsigned cp = (unsigned)hi;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail(r, "a low surrogate without a high one");
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        int lo = r->end - r->s >= 6 && r->s[0] == '\\' && r->s[1] == 'u' ? hex4(r->s + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail(r, "a high surrogate without a low one");
        r->s += 6;
        cp = 0x10000 + (((unsigned)hi - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
    }
    *n += put_utf8(out + *n, cp);
    return true;
}

static bool escape(reader *r, char *out, size_t *n) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    r->s++; /* the backslash */
    if (at_end(r))
        return fail(r, "unterminated string");
    const char *k = *r->s ? strchr(from, *r->s) : NULL;
    if (k) {
        out[(*n)++] = to[k - from];
        r->s++;
        return true;
    }
    if (*r->s != 'u')
        return fail(r, "invalid escape \\%c", *r->s);
    r->s++;
    return unicode_escape(r, out, n);
}

/* Decoded text is never longer than its JSON form: one buffer that long. */
static bool parse_string(reader *r, char **dst) {
    r->s++; /* the quote */
    char *out = malloc((size_t)(r->end - r->s) + 1);
    if (!out)
        return fail(r, "out of memory");
    size_t n = 0;
    while (!at_end(r) && *r->s != '"') {
        unsigned char c = (unsigned char)*r->s;
        if (c < 0x20) {
            free(out);
            return fail(r, c == '\n' ? "unterminated string" : "a control character in a string");
        }
        if (c == '\\') {
            if (!escape(r, out, &n)) {
                free(out);
                return false;
            }
            continue;
        }
        size_t u =
            c >= 0x80 ? json_utf8_length((const unsigned char *)r->s, (size_t)(r->end - r->s)) : 1;
        if (!u) {
            free(out);
            return fail(r, "invalid UTF-8");
        }
        memcpy(out + n, r->s, u);
        n += u;
        r->s += u;
    }
    out[n] = '\0';
    if (at_end(r)) {
        free(out);
        return fail(r, "unterminated string");
    }
    r->s++;
    *dst = out;
    return true;
}

/* Grows a container's arrays by one slot; the new item starts as null. */
static bool grow(reader *r, json_value *v, bool keyed) {
    json_value *items = realloc(v->items, (v->count + 1) * sizeof *items);
    if (!items)
        return fail(r, "out of memory");
    v->items = items;
    memset(&items[v->count], 0, sizeof items[0]);
    if (keyed) {
        char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
        if (!keys)
            return fail(r, "out of memory");
        v->keys = keys;
        keys[v->count] = NULL;
    }
    v->count++;
    return true;
}

/* After an item: ',' and more, or the closing bracket. */
static bool next_item(reader *r, char close, bool *more) {
    skip_space(r);
    if (!at_end(r) && *r->s == ',') {
        r->s++;
        skip_space(r);
        *more = true;
        return true;
    }
    if (!at_end(r) && *r->s == close) {
        r->s++;
        *more = false;
        return true;
    }
    return fail(r, "expected ',' or '%c'", close);
}

static bool parse_array(reader *r, json_value *v) {
    v->type = JSON_ARRAY;
    r->s++;
    skip_space(r);
    if (!at_end(r) && *r->s == ']') {
        r->s++;
        return true;
    }
    for (bool more = true; more;)
        if (!grow(r, v, false) || !parse_value(r, &v->items[v->count - 1]) ||
            !next_item(r, ']', &more))
            return false;
    return true;
}

static bool member_name(reader *r, json_value *v) {
    if (at_end(r) || *r->s != '"')
        return fail(r, "expected a member name in quotes");
    const char *at = r->s;
    if (!grow(r, v, true) || !parse_string(r, &v->keys[v->count - 1]))
        return false;
    for (size_t i = 0; i + 1 < v->count; i++)
        if (strcmp(v->keys[i], v->keys[v->count - 1]) == 0) {
            r->s = at;
            return fail(r, "duplicate member \"%.40s\"", v->keys[i]);
        }
    skip_space(r);
    if (at_end(r) || *r->s != ':')
        return fail(r, "expected ':' after the member name");
    r->s++;
    return true;
}

static bool parse_object(reader *r, json_value *v) {
    v->type = JSON_OBJECT;
    r->s++;
    skip_space(r);
    if (!at_end(r) && *r->s == '}') {
        r->s++;
        return true;
    }
    for (bool more = true; more;)
        if (!member_name(r, v) || !parse_value(r, &v->items[v->count - 1]) ||
            !next_item(r, '}', &more))
            return false;
    return true;
}

static bool parse_nested(reader *r, json_value *v) {
    if (++r->depth > JSONREAD_MAX_DEPTH)
        return fail(r, "nested deeper than %d", JSONREAD_MAX_DEPTH);
    bool ok = *r->s == '[' ? parse_array(r, v) : parse_object(r, v);
    r->depth--;
    return ok;
}

static bool parse_value(reader *r, json_value *v) {
    skip_space(r);
    if (at_end(r))
        return fail(r, "unexpected end of input");
    switch (*r->s) {
    case '{':
    case '[':
        return parse_nested(r, v);
    case '"':
        v->type = JSON_STRING;
        return parse_string(r, &v->string);
    case 't':
    case 'f':
        v->type = JSON_BOOL;
        v->boolean = *r->s == 't';
        return literal(r, v->boolean ? "true" : "false");
    case 'n':
        v->type = JSON_NULL;
        return literal(r, "null");
    default:
        if (*r->s == '-' || (*r->s >= '0' && *r->s <= '9'))
            return parse_number(r, v);
        return fail(r, "expected a value");
    }
}

static void free_contents(json_value *v) {
    for (size_t i = 0; i < v->count; i++) {
        free_contents(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
}

void jsonread_free(json_value *v) {
    if (!v)
        return;
    free_contents(v);
    free(v);
}

json_value *jsonread_parse(const char *text, size_t len, json_error *err) {
    reader r = {.s = text, .end = text + len, .line = 1, .line_start = text, .err = err};
    json_value *v = calloc(1, sizeof *v);
    if (!v) {
        *err = (json_error){.line = 1, .column = 1, .what = "out of memory"};
        return NULL;
    }
    if (parse_value(&r, v)) {
        skip_space(&r);
        if (!at_end(&r))
            fail(&r, "unexpected text after the value");
    }
    if (r.failed) {
        jsonread_free(v);
        return NULL;
    }
    return v;
}

const json_value *jsonread_get(const json_value *v, const char *key) {
    if (!v || v->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->keys[i], key) == 0)
            return &v->items[i];
    return NULL;
}
