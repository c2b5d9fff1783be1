/* The summary (text or JSON) and the progress line. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdio.h>
#include <string.h>

#include "load/load.h"

const char *const load_error_names[ERR_KINDS] = {
    "connect_refused", "connect_timeout", "reset", "unexpected_eof", "message_timeout",
    "mismatch",        "spawn",           "other", "source",
};

static double seconds(const load_results *res) {
    double s = (double)(res->end_ns - res->start_ns) / 1e9;
    return s > 0 ? s : 1e-9;
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

static uint64_t error_total(const load_results *res) {
    uint64_t n = 0;
    for (int i = 0; i < ERR_KINDS; i++)
        n += res->errors[i];
    return n;
}

uint64_t results_errors(const load_results *res) { return error_total(res); }

void results_add(load_results *dst, const load_results *src) {
    dst->connections_up += src->connections_up;
    dst->connections_failed += src->connections_failed;
    dst->messages += src->messages;
    dst->mismatches += src->mismatches;
    dst->bytes_out += src->bytes_out;
    dst->bytes_in += src->bytes_in;
    for (int i = 0; i < ERR_KINDS; i++)
        dst->errors[i] += src->errors[i];
    dst->udp_sent += src->udp_sent;
    dst->udp_lost += src->udp_lost;
    dst->udp_late += src->udp_late;
    if (src->start_ns && (!dst->start_ns || src->start_ns < dst->start_ns))
        dst->start_ns = src->start_ns;
    if (src->end_ns > dst->end_ns)
        dst->end_ns = src->end_ns;
    hist_add(&dst->latency, &src->latency);
}

bool results_clean(const load_results *res) {
    return error_total(res) == 0 && res->mismatches == 0 && res->connections_failed == 0 &&
           res->udp_lost == 0;
}

static double loss_pct(const load_results *res) {
    return res->udp_sent ? 100.0 * (double)res->udp_lost / (double)res->udp_sent : 0.0;
}

/* "threads       2: messages 50.2%/49.8%, cpu 0.95/0.93 s of 10.00 s": each
 * thread's share of the messages and its CPU (user + system) over the
 * run's wall time, so a client-bound run shows. */
void report_threads_text(FILE *out, const struct load_thread_stats *t, size_t n, uint64_t messages,
                         double wall_s) {
    fprintf(out, "threads       %zu: messages ", n);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%.1f%%", i ? "/" : "",
                messages ? 100.0 * (double)t[i].messages / (double)messages : 0.0);
    fprintf(out, ", cpu ");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%.2f", i ? "/" : "", t[i].cpu_user_s + t[i].cpu_sys_s);
    fprintf(out, " s of %.2f s\n", wall_s);
}

void report_threads_json(FILE *out, const struct load_thread_stats *t, size_t n) {
    fprintf(out, ",\"threads\":[");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s{\"messages\":%llu,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}", i ? "," : "",
                (unsigned long long)t[i].messages, t[i].cpu_user_s, t[i].cpu_sys_s);
    fputc(']', out);
}

void report_text(const load_options *opt, const load_results *res, FILE *out) {
    double s = seconds(res);
    const histogram *h = &res->latency;
    fprintf(out, "target        ");
    for (size_t i = 0; i < opt->ntargets; i++)
        fprintf(out, "%s%s", i ? " " : "", opt->targets[i].text);
    fprintf(out, "\nconnections   %ld up, %ld failed\n", res->connections_up,
            res->connections_failed);
    tally_report_text(opt, res, out);
    fprintf(out, "messages      %llu in %.2f s, %.1f/s\n", (unsigned long long)res->messages, s,
            (double)res->messages / s);
    fprintf(out, "throughput    %.2f MiB/s out, %.2f MiB/s in\n",
            (double)res->bytes_out / s / 1048576.0, (double)res->bytes_in / s / 1048576.0);
    fprintf(out, "latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
            us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
            us(hist_percentile(h, 99.9)), us(h->max));
    fprintf(out, "errors        ");
    if (!error_total(res))
        fprintf(out, "none");
    for (int i = 0, first = 1; i < ERR_KINDS; i++)
        if (res->errors[i]) {
            fprintf(out, "%s%s=%llu", first ? "" : " ", load_error_names[i],
                    (unsigned long long)res->errors[i]);
            first = 0;
        }
    fprintf(out, "\nmismatches    %llu\n", (unsigned long long)res->mismatches);
    if (opt->udp)
        fprintf(out, "datagrams     %llu sent, %llu received, %llu lost (%.2f%%), %llu late\n",
                (unsigned long long)res->udp_sent, (unsigned long long)res->messages,
                (unsigned long long)res->udp_lost, loss_pct(res),
                (unsigned long long)res->udp_late);
    report_rate_line(opt, res, out);
    report_threads_text(out, res->thread, res->nthreads, res->messages, res->wall_s);
}

static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", *s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

void report_json(const load_options *opt, const load_results *res, FILE *out) {
    double s = seconds(res);
    const histogram *h = &res->latency;
    fprintf(out, "{\"targets\":[");
    for (size_t i = 0; i < opt->ntargets; i++) {
        if (i)
            fputc(',', out);
        json_string(out, opt->targets[i].text);
    }
    double mib_in = (double)res->bytes_in / s / 1048576.0;
    fprintf(out,
            "],\"connections\":%ld,\"connections_failed\":%ld,\"messages\":%llu,"
            "\"duration_s\":%.3f,\"msgs_per_sec\":%.1f,\"mib_per_sec\":%.3f,"
            "\"mib_per_sec_out\":%.3f,\"mib_per_sec_in\":%.3f,",
            res->connections_up, res->connections_failed, (unsigned long long)res->messages, s,
            (double)res->messages / s, mib_in, (double)res->bytes_out / s / 1048576.0, mib_in);
    fprintf(out,
            "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
            "\"mean\":%.1f},\"errors\":{",
            us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
            us(hist_percentile(h, 99.9)), us(h->max), hist_mean(h) / 1e3);
    for (int i = 0; i < ERR_KINDS; i++)
        fprintf(out, "%s\"%s\":%llu", i ? "," : "", load_error_names[i],
                (unsigned long long)res->errors[i]);
    fprintf(out, "},\"mismatches\":%llu", (unsigned long long)res->mismatches);
    tally_report_json(opt, res, out);
    if (opt->udp)
        fprintf(out,
                ",\"udp\":{\"sent\":%llu,\"received\":%llu,\"lost\":%llu,\"loss_pct\":%.3f,"
                "\"late\":%llu}",
                (unsigned long long)res->udp_sent, (unsigned long long)res->messages,
                (unsigned long long)res->udp_lost, loss_pct(res),
                (unsigned long long)res->udp_late);
    report_json_more(opt, res, out);
    report_threads_json(out, res->thread, res->nthreads);
    fputs("}\n", out);
}

/* Rates over the last second, from the totals at the previous call. */
void progress_line(const load_options *opt, const load_results *res, int64_t now_ns, FILE *out) {
    static uint64_t last_messages, last_bytes;
    static int64_t last_ns;
    if (!last_ns)
        last_ns = res->start_ns;
    double dt = (double)(now_ns - last_ns) / 1e9;
    if (dt <= 0)
        dt = 1e-9;
    double elapsed = (double)(now_ns - res->start_ns) / 1e9;
    char total[32] = "";
    if (!opt->messages)
        snprintf(total, sizeof total, "/%.0fs", (double)opt->duration_ms / 1e3);
    uint64_t errors = 0;
    for (int i = 0; i < ERR_KINDS; i++)
        errors += res->errors[i];
    fprintf(out, "[%5.1fs%s] conns %ld up | %.0f msg/s | %.2f MiB/s | p99 %.1f us | errors %llu",
            elapsed, total, res->connections_up, (double)(res->messages - last_messages) / dt,
            (double)(res->bytes_in - last_bytes) / dt / 1048576.0,
            us(hist_percentile(&res->latency, 99)), (unsigned long long)errors);
    /* Lost so far: only datagrams past --timeout, not those still in flight. */
    if (opt->udp)
        fprintf(out, " | %llu sent, %llu received, %llu lost (%.2f%%)",
                (unsigned long long)res->udp_sent, (unsigned long long)res->messages,
                (unsigned long long)res->udp_lost, loss_pct(res));
    fputc('\n', out);
    fflush(out);
    last_messages = res->messages;
    last_bytes = res->bytes_in;
    last_ns = now_ns;
}
