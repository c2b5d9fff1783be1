#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/metrics_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One series of a slot value: its name for the whole service, its
 * family's name per worker, and a label that tells series of one family
 * apart. Rows of one family follow each other. */
typedef struct series {
    const char *name, *worker_name;
    const char *type, *help;
    enum metrics_value value;
    const char *label; /* NULL or `reason="..."` */
} series;

static const series table[] = {
    {"coechod_connections_open", "coechod_worker_connections_open", "gauge",
     "Client connections open now.", MV_ACTIVE, NULL},
    {"coechod_connections_accepted_total", "coechod_worker_connections_accepted_total", "counter",
     "Client connections accepted.", MV_ACCEPTED, NULL},
    {"coechod_connections_closed_total", "coechod_worker_connections_closed_total", "counter",
     "Client connections closed after being served.", MV_CLOSED, NULL},
    {"coechod_connections_rejected_total", "coechod_worker_connections_rejected_total", "counter",
     "Client connections closed at once after accept, by reason (per_ip: over "
     "max_connections_per_ip; access: refused by an access list; spawn_failure: no memory "
     "for a handler; proxy_header: a proxy_protocol listener's client sent no good PROXY "
     "header in time).",
     MV_REJECTED_PER_IP, "reason=\"per_ip\""},
    {"coechod_connections_rejected_total", "coechod_worker_connections_rejected_total", "counter",
     NULL, MV_SPAWN_FAILURES, "reason=\"spawn_failure\""},
    {"coechod_connections_rejected_total", "coechod_worker_connections_rejected_total", "counter",
     NULL, MV_REJECTED_ACCESS, "reason=\"access\""},
    {"coechod_connections_rejected_total", "coechod_worker_connections_rejected_total", "counter",
     NULL, MV_REJECTED_PROXY_HEADER, "reason=\"proxy_header\""},
    {"coechod_connections_timed_out_total", "coechod_worker_connections_timed_out_total", "counter",
     "Client connections closed after idle_timeout.", MV_TIMED_OUT, NULL},
    {"coechod_received_bytes_total", "coechod_worker_received_bytes_total", "counter",
     "Bytes read from clients.", MV_BYTES_IN, NULL},
    {"coechod_sent_bytes_total", "coechod_worker_sent_bytes_total", "counter",
     "Bytes echoed back to clients.", MV_BYTES_OUT, NULL},
    {"coechod_udp_datagrams_received_total", "coechod_worker_udp_datagrams_received_total",
     "counter", "UDP datagrams received, answered or not.", MV_UDP_IN, NULL},
    {"coechod_udp_datagrams_sent_total", "coechod_worker_udp_datagrams_sent_total", "counter",
     "UDP datagrams echoed.", MV_UDP_OUT, NULL},
    {"coechod_udp_received_bytes_total", "coechod_worker_udp_received_bytes_total", "counter",
     "Bytes of the UDP datagrams received.", MV_UDP_BYTES_IN, NULL},
    {"coechod_udp_sent_bytes_total", "coechod_worker_udp_sent_bytes_total", "counter",
     "Bytes of the UDP datagrams echoed.", MV_UDP_BYTES_OUT, NULL},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     "UDP datagrams not echoed, by reason (source_port: from port 0 or below 1024; rate_limit: "
     "over limits.udp_rate_limit; send_buffer_full: no room to send; send_error: the send "
     "failed; truncated: larger than 64 KiB; access: refused by the access list).",
     MV_UDP_DROP_SOURCE_PORT, "reason=\"source_port\""},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     NULL, MV_UDP_DROP_RATE_LIMIT, "reason=\"rate_limit\""},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     NULL, MV_UDP_DROP_SEND_FULL, "reason=\"send_buffer_full\""},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     NULL, MV_UDP_DROP_SEND_ERROR, "reason=\"send_error\""},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     NULL, MV_UDP_DROP_TRUNCATED, "reason=\"truncated\""},
    {"coechod_udp_datagrams_dropped_total", "coechod_worker_udp_datagrams_dropped_total", "counter",
     NULL, MV_UDP_DROP_ACCESS, "reason=\"access\""},
    {"coechod_tasks", "coechod_worker_tasks", "gauge",
     "Coroutine tasks alive: one per connection plus the service's own.", MV_TASKS, NULL},
    {"coechod_runtime_spawns_total", "coechod_worker_runtime_spawns_total", "counter",
     "Tasks the coroutine runtime started.", MV_RT_SPAWNS, NULL},
    {"coechod_runtime_switches_total", "coechod_worker_runtime_switches_total", "counter",
     "Context switches of the coroutine runtime.", MV_RT_SWITCHES, NULL},
    {"coechod_runtime_batches_total", "coechod_worker_runtime_batches_total", "counter",
     "Batches of task runs: one per event loop iteration.", MV_RT_BATCHES, NULL},
    {"process_resident_memory_bytes", "coechod_worker_resident_memory_bytes", "gauge",
     "Resident memory size in bytes (every process of the service).", MV_RSS_BYTES, NULL},
    {"process_open_fds", "coechod_worker_open_fds", "gauge",
     "Open file descriptors (every process of the service).", MV_OPEN_FDS, NULL},
};
enum { NSERIES = sizeof table / sizeof table[0] };

static void header(FILE *f, const char *name, const char *type, const char *help,
                   const char *more) {
    fprintf(f, "# HELP %s %s%s\n# TYPE %s %s\n", name, help, more, name, type);
}

static void seconds(FILE *f, const char *name, const char *help, uint64_t ms) {
    header(f, name, "gauge", help, "");
    fprintf(f, "%s %llu.%03u\n", name, (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
}

static void totals(FILE *f, const metrics_snapshot *snap) {
    for (int i = 0; i < NSERIES; i++) {
        const series *s = &table[i];
        if (i == 0 || strcmp(s->name, table[i - 1].name) != 0)
            header(f, s->name, s->type, s->help, "");
        fprintf(f, "%s%s%s%s %llu\n", s->name, s->label ? "{" : "", s->label ? s->label : "",
                s->label ? "}" : "", (unsigned long long)snap->total.v[s->value]);
    }
}

static void service(FILE *f, const metrics_snapshot *snap, const char *version) {
    header(f, "coechod_build_info", "gauge", "The coechod version, as a label; always 1.", "");
    fprintf(f, "coechod_build_info{version=\"%s\"} 1\n", version);
    seconds(f, "process_start_time_seconds", "Start time of the service since the Unix epoch.",
            snap->start_time_ms);
    header(f, "coechod_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.", "");
    fprintf(f, "coechod_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)snap->reloads_ok);
    fprintf(f, "coechod_reloads_total{result=\"failed\"} %llu\n",
            (unsigned long long)snap->reloads_failed);
    seconds(f, "coechod_last_reload_timestamp_seconds",
            "Time of the last reload since the Unix epoch; 0: none yet.", snap->last_reload_ms);
    header(f, "coechod_worker_restarts_total", "counter",
           "Worker processes started again after they died or were killed.", "");
    fprintf(f, "coechod_worker_restarts_total %llu\n", (unsigned long long)snap->worker_restarts);
    header(f, "coechod_workers", "gauge", "Worker processes running (1: no workers).", "");
    fprintf(f, "coechod_workers %d\n", snap->workers ? snap->running : 1);
}

static void per_worker(FILE *f, const metrics_snapshot *snap) {
    for (int i = 0; i < NSERIES; i++) {
        const series *s = &table[i];
        if (i == 0 || strcmp(s->worker_name, table[i - 1].worker_name) != 0)
            header(f, s->worker_name, s->type, s->help,
                   " Per worker process; starts over when the worker restarts.");
        for (int w = 0; w < snap->nslots; w++)
            fprintf(f, "%s{worker=\"%d\"%s%s} %llu\n", s->worker_name, w + 1, s->label ? "," : "",
                    s->label ? s->label : "", (unsigned long long)snap->slot[w].v[s->value]);
    }
}

char *metrics_render(const metrics_snapshot *snap, const char *version, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    totals(f, snap);
    service(f, snap, version);
    if (snap->workers)
        per_worker(f, snap);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}

size_t metrics_head_end(const char *buf, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* The first len bytes of s are a token of upper-case letters. */
static bool is_method(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return len > 0;
}

int metrics_request_status(const char *head, bool *head_only) {
    size_t line_len = strcspn(head, "\r\n");
    const char *sp1 = memchr(head, ' ', line_len);
    if (!sp1 || !is_method(head, (size_t)(sp1 - head)))
        return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', line_len - (size_t)(target - head));
    if (!sp2 || target[0] != '/')
        return 400;
    const char *version = sp2 + 1;
    size_t version_len = line_len - (size_t)(version - head);
    if (version_len != 8 || strncmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' ||
        version[7] > '9')
        return 400;
    size_t path_len = strcspn(target, "? ");
    if (path_len != strlen("/metrics") || strncmp(target, "/metrics", path_len) != 0)
        return 404;
    size_t method_len = (size_t)(sp1 - head);
    *head_only = method_len == 4 && strncmp(head, "HEAD", 4) == 0;
    if (*head_only || (method_len == 3 && strncmp(head, "GET", 3) == 0))
        return 200;
    return 405;
}

const char *metrics_reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}
