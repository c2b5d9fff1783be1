/* coecho-load: shared state of one run (see CONTRACT.md for the interface). */
#ifndef COECHO_LOAD_H
#define COECHO_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "load/histogram.h"
#include "load/sources.h"

#define LOAD_MAX_TARGETS 64
#define LOAD_MAX_THREADS 256

typedef struct target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[300];
} target;

typedef struct load_options {
    target targets[LOAD_MAX_TARGETS];
    size_t ntargets;
    long connections;
    double connect_rate; /* per second; 0 = all at once */
    int64_t duration_ms; /* when messages == 0 */
    uint64_t messages;   /* total; 0 = by duration */
    size_t size;
    long pipeline;
    double rate; /* total messages per second; 0 = closed loop */
    int64_t timeout_ms;
    bool udp; /* --udp: datagrams, one connected UDP socket per connection */
    bool json;
    bool progress;
    bool quiet;
    const char *histogram_path;
    const char *hgrm_path; /* --hgrm: HdrHistogram percentile text */
    bool merge;            /* --merge: the arguments are --json files */
    source_list sources;   /* --source; .n == 0 without */
    long threads;          /* -t: runtimes, one pthread each (default 1) */
    int64_t warmup_ms;     /* --warmup: run this long first, uncounted */
    int64_t interval_ms;   /* --interval: one --series line per interval; 0: none */
    const char *series_path;
} load_options;

enum load_error {
    ERR_CONNECT_REFUSED,
    ERR_CONNECT_TIMEOUT,
    ERR_RESET,
    ERR_UNEXPECTED_EOF,
    ERR_MESSAGE_TIMEOUT,
    ERR_MISMATCH,
    ERR_SPAWN, /* no memory or mappings to start a connection's task */
    ERR_OTHER,
    ERR_SOURCE, /* --source address not bound, or no free port for it */
    ERR_KINDS
};

typedef struct load_results {
    long connections_up;
    long connections_failed;
    uint64_t messages;   /* verified echoes */
    uint64_t mismatches; /* messages whose echo differed */
    uint64_t bytes_out;
    uint64_t bytes_in; /* verified */
    uint64_t errors[ERR_KINDS];
    uint64_t udp_sent, udp_lost; /* --udp: datagrams sent; echoes not back in --timeout */
    uint64_t udp_late;           /* --udp: echoes after their timeout, or twice */
    int64_t start_ns, end_ns;
    int64_t start_wall_ns; /* CLOCK_REALTIME at the start, for "start_time" */
    histogram latency;     /* ns */
    load_tally tally;      /* per target and per source (sources.c) */
    /* Filled by load_run once every thread is done: what each thread
     * counted and the CPU it used, and the whole run's wall time (warm-up
     * included, as the CPU times are). */
    size_t nthreads;
    struct load_thread_stats {
        uint64_t messages;
        double cpu_user_s, cpu_sys_s;
    } thread[LOAD_MAX_THREADS];
    double wall_s;
} load_results;

extern const char *const load_error_names[ERR_KINDS];

/* One thread of the run: its own runtime over connections index,
 * index + nthreads, ... (ids stay global). Its results and interval
 * histogram are its own until it ends; `published` is a copy the others
 * may read under threads.c's lock. */
typedef struct load_thread {
    int index;
    int status; /* co_run's result */
    load_results res;
    load_results published;                  /* for the progress line */
    histogram interval;                      /* --interval: echoes since the last hand-in */
    uint64_t handed_messages, handed_errors; /* res counts at the last hand-in */
    long handed;                             /* intervals handed in */
    bool finished;
    double cpu_user_s, cpu_sys_s;
} load_thread;

/* threads.c: runs opt->threads threads to the end, merging their results
 * into res, writing the --interval series and the progress lines. 0, or a
 * negative errno if the run could not start. */
int load_run(const load_options *opt, load_results *res);
/* ... and for the threads: they hand in their interval (at each boundary,
 * and their last when they end) and publish their counters for the
 * progress line. */
void load_hand_in_interval(load_thread *t, bool last);
void load_publish(load_thread *t);

/* series.c: the --interval series file, merged across threads; called
 * under threads.c's lock. series_write_ready writes every interval that
 * all threads have handed in (or finished before). */
typedef struct series series;
int series_open(series **out, const char *path, int64_t interval_ms, int64_t measure_ns);
void series_add(series *s, long k, const histogram *latency, uint64_t messages, uint64_t errors,
                int64_t now_ns, bool last);
void series_write_ready(series *s, const load_thread *threads, long nthreads);
int series_close(series *s); /* 0, or the first failure's -errno */

/* run.c: one thread's share of the run; the run's start time in ns, its
 * stop (-d), and where the warm-up ends. */
typedef struct load_clock {
    int64_t start_ns, stop_ns, measure_ns;
} load_clock;
int load_run_setup(const load_options *opt, const load_clock *clock);
void load_run_teardown(void);
void load_thread_run(load_thread *t);
/* A verified echo of a message sent (or scheduled) at sent_ns: counted in
 * the calling thread's results unless it fell in the warm-up. */
void load_count_echo(load_results *r, int64_t sent_ns, size_t bytes);
int64_t load_now_ns(void);
/* For udp.c: the shared byte pattern, and a claim on the next message
 * (false once the run is over). */
#define LOAD_PATTERN_LEN 1048573u
const unsigned char *load_pattern(void);
bool load_claim_message(int64_t *now_ns);
/* Open loop (-r): messages in flight per connection at most, the interval
 * between one connection's sends, and connection id's first send time
 * (phases spread over one interval, so the connections do not send in
 * step). Shared by TCP and --udp so that both pace alike. */
#define LOAD_OPEN_LOOP_WINDOW 4096
int64_t load_pace_interval_ns(void);
int64_t load_pace_first_ns(long id, int64_t interval_ns);

/* udp.c: one --udp session (a "connection"); counts into results. */
enum { LOAD_UDP_MIN_SIZE = 16, LOAD_UDP_MAX_SIZE = 65507 };
void udp_session(const load_options *opt, load_results *res, long id, const target *to);

/* report.c */
void report_text(const load_options *opt, const load_results *res, FILE *out);
void report_json(const load_options *opt, const load_results *res, FILE *out);
bool results_clean(const load_results *res);
/* Adds src's counts and histogram to dst: merged exactly, as if one thread
 * had counted everything (times: the earliest start, the latest end). The
 * per-target and per-source counts are tally_add's. */
void results_add(load_results *dst, const load_results *src);
uint64_t results_errors(const load_results *res);
/* The threads line of the text summary and the "threads" member (with its
 * leading comma) of the JSON, from n threads' figures; a run's or --merge's. */
void report_threads_text(FILE *out, const struct load_thread_stats *t, size_t n, uint64_t messages,
                         double wall_s);
void report_threads_json(FILE *out, const struct load_thread_stats *t, size_t n);
void progress_line(const load_options *opt, const load_results *res, int64_t now_ns, FILE *out);

/* runinfo.c: the run's metadata and histogram in JSON, the rate check. An
 * open-loop run more than LOAD_RATE_TOLERANCE_PCT below its -r exits 3. */
#define LOAD_RATE_TOLERANCE_PCT 5
/* main.c: the exit status of a run (or a merge), and the histogram files. */
int load_exit_status(const load_options *opt, const load_results *res);
int write_histograms(const load_options *opt, const histogram *h);
/* merge.c: --merge FILE...; returns the exit status. */
int load_merge(const load_options *opt, const char *const *files, int nfiles);
int64_t load_wall_ns(void);
double load_seconds(const load_results *res);
/* Verified echoes per second: over -d's window, or the run's duration. */
double load_achieved_rate(const load_options *opt, const load_results *res);
bool load_rate_missed(const load_options *opt, const load_results *res);
void warn_rate_missed(const load_options *opt, const load_results *res);
void report_rate_line(const load_options *opt, const load_results *res, FILE *out);
void report_json_histogram(const histogram *h, FILE *out);
void report_json_more(const load_options *opt, const load_results *res, FILE *out);

#endif
