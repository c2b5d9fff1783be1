/* Text from outside (a file, a flag) quoted for a one-line message. */
#ifndef COECHO_QUOTE_H
#define COECHO_QUOTE_H

#include <stddef.h>

enum {
    QUOTE_SHOWN_MAX = 40,                  /* bytes of the text shown */
    QUOTE_SIZE = 4 * QUOTE_SHOWN_MAX + 16, /* room for the worst case, escaped */
};

/* Writes the len bytes at s double-quoted into buf: control characters,
 * quotes and backslashes escaped, so that a message stays on one line, and
 * cut to QUOTE_SHOWN_MAX bytes (never inside a UTF-8 sequence) with "..."
 * after. Returns buf. */
const char *quote_for_message(char *buf, size_t size, const char *s, size_t len);

#endif
