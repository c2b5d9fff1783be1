/* What makes a run's JSON trustworthy and mergeable (CONTRACT.md): where and
 * when it ran, with which parameters, the bytes and the full histogram; and
 * the requested against the achieved rate of an open-loop run. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "load/load.h"

int64_t load_wall_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0; /* cannot fail with CLOCK_REALTIME; 0 prints as 1970 */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double load_seconds(const load_results *res) {
    double s = (double)(res->end_ns - res->start_ns) / 1e9;
    return s > 0 ? s : 1e-9;
}

/* With -d, the messages scheduled within the measured window, over that
 * window: connecting and the final wait for the last echoes do not dilute
 * it. With -n, over the run's duration. */
double load_achieved_rate(const load_options *opt, const load_results *res) {
    if (!opt->messages && opt->duration_ms > 0)
        return (double)res->messages / ((double)opt->duration_ms / 1e3);
    return (double)res->messages / load_seconds(res);
}

/* Percent by which the achieved rate is below (negative) or above the -r. */
static double rate_diff_pct(const load_options *opt, const load_results *res) {
    return 100.0 * (load_achieved_rate(opt, res) - opt->rate) / opt->rate;
}

bool load_rate_missed(const load_options *opt, const load_results *res) {
    return opt->rate > 0 && rate_diff_pct(opt, res) < -LOAD_RATE_TOLERANCE_PCT;
}

void report_rate_line(const load_options *opt, const load_results *res, FILE *out) {
    if (opt->rate > 0)
        fprintf(out, "rate          requested %.1f/s, achieved %.1f/s (%+.1f%%)\n", opt->rate,
                load_achieved_rate(opt, res), rate_diff_pct(opt, res));
}

void warn_rate_missed(const load_options *opt, const load_results *res) {
    fprintf(stderr,
            "coecho-load: warning: achieved %.1f messages/s, %.1f%% below the requested %.1f/s "
            "(more than %d%%): the client or the server could not keep up; the latencies "
            "describe a lower load than asked for\n",
            load_achieved_rate(opt, res), -rate_diff_pct(opt, res), opt->rate, LOAD_RATE_TOLERANCE_PCT);
}

/* ISO 8601 UTC with milliseconds: 2026-12-01T06:00:00.123Z. */
static void iso_time(int64_t wall_ns, char *buf, size_t size) {
    time_t sec = (time_t)(wall_ns / 1000000000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) {
        snprintf(buf, size, "1970-01-01T00:00:00.000Z");
        return;
    }
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(wall_ns / 1000000 % 1000));
}

static void json_text(FILE *out, const char *key, const char *value) {
    char esc[1024];
    json_escape(esc, sizeof esc, value, strlen(value));
    fprintf(out, ",\"%s\":\"%s\"", key, esc);
}

static void host_member(FILE *out) {
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown (%s)", strerror(errno));
    host[sizeof host - 1] = '\0'; /* gethostname may truncate without one */
    json_text(out, "host", host);
}

static void params_member(const load_options *opt, FILE *out) {
    fprintf(out, ",\"params\":{\"connections\":%ld,\"size\":%zu,\"pipeline\":%ld,\"rate\":%.1f,",
            opt->connections, opt->size, opt->pipeline, opt->rate);
    if (opt->messages)
        fprintf(out, "\"messages\":%llu,", (unsigned long long)opt->messages);
    else
        fprintf(out, "\"duration_s\":%.3f,", (double)opt->duration_ms / 1e3);
    fprintf(out, "\"timeout_s\":%.3f,\"udp\":%s,\"targets\":%zu}", (double)opt->timeout_ms / 1e3,
            opt->udp ? "true" : "false", opt->ntargets);
}

void report_json_histogram(const histogram *h, FILE *out) {
    fprintf(out,
            ",\"histogram\":{\"unit\":\"ns\",\"sub_bucket_bits\":%d,\"total\":%llu,\"max\":%llu,"
            "\"sum\":%.17g,\"buckets\":[",
            HIST_SUB_BITS, (unsigned long long)h->total, (unsigned long long)h->max, h->sum);
    const char *sep = "";
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (h->counts[i]) {
            fprintf(out, "%s[%u,%llu]", sep, i, (unsigned long long)h->counts[i]);
            sep = ",";
        }
    fputs("]}", out);
}

void report_json_more(const load_options *opt, const load_results *res, FILE *out) {
    char when[40];
    iso_time(res->start_wall_ns, when, sizeof when);
    fprintf(out, ",\"bytes_out\":%llu,\"bytes_in\":%llu", (unsigned long long)res->bytes_out,
            (unsigned long long)res->bytes_in);
    json_text(out, "version", PACKAGE_VERSION);
    json_text(out, "start_time", when);
    host_member(out);
    params_member(opt, out);
    if (opt->rate > 0)
        fprintf(out, ",\"rate\":{\"requested\":%.1f,\"achieved\":%.1f,\"missed_pct\":%.1f}",
                opt->rate, load_achieved_rate(opt, res), -rate_diff_pct(opt, res));
    report_json_histogram(&res->latency, out);
}
