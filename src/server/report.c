#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/report.h"

#include <stdio.h>
#include <string.h>

static const char report_key[] = "X_COECHO_STATS=";

int worker_report_format(char *buf, size_t size, const worker_report *r) {
    return snprintf(buf, size, "%s%llu %llu %llu %llu %llu", report_key, r->active, r->accepted,
                    r->closed, r->timed_out, r->bytes);
}

bool worker_report_parse(const char *line, worker_report *r) {
    size_t keylen = sizeof report_key - 1;
    worker_report got;
    int end = 0;
    if (strncmp(line, report_key, keylen) != 0 ||
        sscanf(line + keylen, "%llu %llu %llu %llu %llu%n", &got.active, &got.accepted,
               &got.closed, &got.timed_out, &got.bytes, &end) != 5 ||
        line[keylen + (size_t)end] != '\0')
        return false;
    *r = got;
    return true;
}
