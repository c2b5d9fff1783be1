/* Durations ("30s", "500ms", "5m", "1h") and sizes ("16KiB", "1MiB", "512B"),
 * shared by coechod's configuration and coecho-load's flags. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "common/units.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>


typedef struct unit {
    const char *suffix;
    uint64_t factor;
} unit;

/* Largest first: formatting picks the first that divides the value. */
static const unit duration_units[] = {{"h", MS_PER_H}, {"m", MS_PER_M}, {"s", MS_PER_S}, {"ms", 1}};
static const unit size_units[] = {{"MiB", MIB}, {"KiB", KIB}, {"B", 1}};

#define NUNITS(units) (sizeof(units) / sizeof(units)[0])

/* Reads the decimal digits at *s (at least one), advancing *s past them. */
bool units_read_digits(const char **s, uint64_t *value, bool *overflow) {
    const char *p = *s;
    uint64_t v = 0;
    *overflow = false;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            *overflow = true;
        else
            v = v * 10 + digit;
    }
    *s = p;
    *value = v;
    return true;
}

/* "<digits><unit>" -> digits * the unit's factor, at most limit. Bare digits
 * mean the base unit when bare_ok; otherwise only "0" may go without a unit. */
static enum units_status parse_quantity(const char *s, const unit *units, size_t nunits,
                                        bool bare_ok, uint64_t limit, uint64_t *out) {
    const char *p = s;
    uint64_t n;
    bool overflow;
    if (!units_read_digits(&p, &n, &overflow))
        return UNITS_GARBAGE;
    uint64_t factor = 0;
    if (*p == '\0') {
        if (!bare_ok && strcmp(s, "0") != 0)
            return UNITS_NO_UNIT;
        factor = 1;
    }
    for (size_t i = 0; i < nunits && factor == 0; i++)
        if (strcmp(p, units[i].suffix) == 0)
            factor = units[i].factor;
    if (factor == 0)
        return UNITS_BAD_UNIT;
    if (overflow || n > limit / factor)
        return UNITS_TOO_BIG;
    *out = n * factor;
    return UNITS_OK;
}

enum units_status units_parse_duration(const char *s, int64_t *ms) {
    uint64_t v;
    enum units_status st =
        parse_quantity(s, duration_units, NUNITS(duration_units), false, INT64_MAX, &v);
    if (st == UNITS_OK)
        *ms = (int64_t)v;
    return st;
}

enum units_status units_parse_size(const char *s, size_t *bytes) {
    uint64_t v;
    enum units_status st = parse_quantity(s, size_units, NUNITS(size_units), true, SIZE_MAX, &v);
    if (st == UNITS_OK)
        *bytes = (size_t)v;
    return st;
}

/* Writes value in the largest unit that divides it exactly ("5m", "16KiB");
 * 0 is written bare, which both parsers accept. */
static void format_quantity(char *buf, size_t size, uint64_t value, const unit *units,
                            size_t nunits) {
    if (value == 0) {
        snprintf(buf, size, "0");
        return;
    }
    for (size_t i = 0; i < nunits; i++) {
        if (value % units[i].factor == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", value / units[i].factor, units[i].suffix);
            return;
        }
    }
}

void units_format_duration(char *buf, size_t size, int64_t ms) {
    format_quantity(buf, size, (uint64_t)ms, duration_units, NUNITS(duration_units));
}

void units_format_size(char *buf, size_t size, size_t bytes) {
    format_quantity(buf, size, bytes, size_units, NUNITS(size_units));
}

