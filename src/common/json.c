#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/json.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool in(unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; }

/* Unicode's table of well-formed byte sequences (3-7): the range of the
 * second byte depends on the first; every later byte is 80..BF. */
size_t json_utf8_length(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c < 0x80)
        return 1;
    if (in(c, 0xC2, 0xDF))
        n = 2;
    else if (in(c, 0xE0, 0xEF))
        n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (in(c, 0xF0, 0xF4))
        n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (len < n || !in(s[1], lo, hi))
        return 0;
    for (size_t i = 2; i < n; i++)
        if (!in(s[i], 0x80, 0xBF))
            return 0;
    return n;
}

/* The escape for the byte c, or NULL if it stands for itself (ASCII). */
static const char *escape_of(unsigned char c, char *buf, size_t size) {
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    default:
        if (c >= 0x20 && c != 0x7F)
            return NULL;
        snprintf(buf, size, "\\u%04x", c);
        return buf;
    }
}

size_t json_escape(char *dst, size_t size, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t out = 0;
    if (size == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        char buf[8];
        const char *piece = NULL;
        size_t n = 1, plen;
        if (u[i] < 0x80) {
            piece = escape_of(u[i], buf, sizeof buf);
        } else if ((n = json_utf8_length(u + i, len - i)) == 0) {
            piece = "\\ufffd";
            n = 1;
        }
        plen = piece ? strlen(piece) : n;
        if (out + plen >= size)
            break;
        memcpy(dst + out, piece ? piece : s + i, plen);
        out += plen;
        i += n;
    }
    dst[out] = '\0';
    return out;
}
