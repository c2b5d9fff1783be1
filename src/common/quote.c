/* Quoting for messages; see quote.h. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/quote.h"

#include <stdio.h>

const char *quote_for_message(char *buf, size_t size, const char *s, size_t len) {
    size_t shown = len;
    if (shown > QUOTE_SHOWN_MAX) {
        shown = QUOTE_SHOWN_MAX;
        while (shown > 0 && ((unsigned char)s[shown] & 0xc0) == 0x80)
            shown--; /* do not cut a UTF-8 sequence */
    }
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < shown && o + 6 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    snprintf(buf + o, size - o, "%s\"", shown < len ? "..." : "");
    return buf;
}
