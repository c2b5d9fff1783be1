/* Text as a JSON string's contents (RFC 8259), for log lines that log
 * shippers parse: what comes out is valid UTF-8 and valid JSON whatever
 * bytes go in.
 *
 * Owns no state. */
#ifndef COECHO_JSON_H
#define COECHO_JSON_H

#include <stddef.h>

/* Writes the len bytes at s escaped, without the surrounding quotes, into
 * dst (size bytes, NUL-terminated when size > 0): '"' and '\' as \" and \\,
 * \n \r \t \b \f as such, the other control characters and DEL as \u00XX,
 * well-formed UTF-8 as it is, and every byte that does not start or belong
 * to a well-formed UTF-8 sequence (a stray continuation byte, an overlong
 * form, a surrogate, a code point over U+10FFFF, a sequence cut short) as
 * \ufffd, the replacement character: the byte's value is lost, the line
 * stays parseable. What does not fit is left out, never in the middle of an
 * escape or a UTF-8 sequence. Returns the length written. */
size_t json_escape(char *dst, size_t size, const char *s, size_t len);

/* The length of the well-formed UTF-8 sequence at s (at most len bytes):
 * 1 to 4, or 0 if s does not start one. */
size_t json_utf8_length(const unsigned char *s, size_t len);

#endif
