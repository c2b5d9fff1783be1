/* Durations and sizes as people write them. */
#ifndef COECHO_UNITS_H
#define COECHO_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MS_PER_S INT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

enum units_status {
    UNITS_OK,
    UNITS_GARBAGE,  /* does not start with a digit */
    UNITS_BAD_UNIT, /* digits, then something that is not a unit */
    UNITS_NO_UNIT,  /* digits alone where a unit is required */
    UNITS_TOO_BIG
};

/* Reads the decimal digits at *s (at least one; false if none), advancing
 * *s past them; *overflow when they do not fit 64 bits. */
bool units_read_digits(const char **s, uint64_t *value, bool *overflow);

/* "<digits><unit>" with ms, s, m or h; a bare "0" is 0. */
enum units_status units_parse_duration(const char *s, int64_t *ms);
/* "<digits><unit>" with B, KiB or MiB; bare digits are bytes. */
enum units_status units_parse_size(const char *s, size_t *bytes);

/* In the largest unit that divides the value exactly ("5m", "16KiB"). */
void units_format_duration(char *buf, size_t size, int64_t ms);
void units_format_size(char *buf, size_t size, size_t bytes);

#endif
