/* coecho-load: flags, then the run, then the summary. See CONTRACT.md. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/hostport.h"
#include "common/units.h"
#include "load/hgrm.h"
#include "load/load.h"

static const char usage_text[] =
    "usage: coecho-load [options] HOST:PORT...\n"
    "  -c, --connections N    connections, shared round-robin by the targets (default 10)\n"
    "      --connect-rate R   new connections per second (default: all at once)\n"
    "  -d, --duration T       send for this long (default 10s); excludes -n\n"
    "  -n, --messages N       send N messages in total, then stop\n"
    "  -s, --size BYTES       message size, B/KiB/MiB (default 64)\n"
    "  -p, --pipeline D       messages in flight per connection (default 1)\n"
    "  -r, --rate R           total messages per second, open loop (latency from the\n"
    "                         scheduled send time)\n"
    "      --timeout T        longest wait for one echo, a connect or the final EOF\n"
    "                         (default 5s); with --udp, a datagram not echoed in\n"
    "                         this long is lost\n"
    "      --udp              UDP echo: each connection is a UDP socket sending -s\n"
    "                         datagrams (16 B to 65507 B), -p in flight, or paced\n"
    "                         as TCP with -r; reports loss\n"
    "      --source LIST      local source addresses spread over the connections, to\n"
    "                         pass ~28,000 connections per target: literals and A-B\n"
    "                         ranges, comma-separated (127.0.0.2-127.0.0.9,::1)\n"
    "      --json             print the summary as one JSON object\n"
    "      --histogram FILE   write the latency distribution (value_us percentile count)\n"
    "      --hgrm FILE        write the latency as HdrHistogram percentile text (ms)\n"
    "      --merge FILE...    merge the --json files of runs (no targets): one summary\n"
    "      --progress         a progress line each second even when stderr is no terminal\n"
    "  -t, --threads N|auto   runtimes, one thread each, sharing the connections\n"
    "                         (default 1; auto: one per online CPU; at most 256 and -c)\n"
    "      --warmup T         run T first without counting it (its messages come on\n"
    "                         top of -n; errors and mismatches always count)\n"
    "      --interval T       write one JSON line per interval T to the --series file\n"
    "      --series FILE      the --interval series (required with --interval)\n"
    "  -q, --quiet            no progress and no text summary\n"
    "  -h, --help             this help\n"
    "  -V, --version          the version\n"
    "Targets: IPv4 or IPv6 literals or names; IPv6 as [::1]:7007.\n"
    "Exit status: 0 clean, 1 any error or mismatch, 2 usage error (or a --merge file\n"
    "that cannot be read), 3 an -r run more than 5% below its rate.\n";

#define usage_error(...) cli_usage_error("coecho-load", usage_text, __VA_ARGS__)

#define THREADS_AUTO (-1L)

static long parse_count(const char *flag, const char *s, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        usage_error("%s: expected an integer from %ld to %ld, got \"%s\"", flag, min, max, s);
    return v;
}

static double parse_rate(const char *flag, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 1e9)
        usage_error("%s: expected a positive number per second, got \"%s\"", flag, s);
    return v;
}

static int64_t parse_duration(const char *flag, const char *s, bool zero_ok) {
    int64_t ms;
    if (units_parse_duration(s, &ms) != UNITS_OK || (!zero_ok && ms == 0))
        usage_error("%s: expected a duration such as 10s or 500ms, got \"%s\"", flag, s);
    return ms;
}

/* "HOST:PORT" or "[V6]:PORT"; HOST may be a name. */
static void parse_target(const char *arg, target *t) {
    char host[256];
    const char *port;
    bool bracketed;
    bool split = hostport_split(arg, host, sizeof host, &port, &bracketed);
    if (!split && bracketed)
        usage_error("target \"%s\": expected [IPV6]:PORT such as [::1]:7007", arg);
    if (!split || (!bracketed && host[0] == '\0'))
        usage_error("target \"%s\": expected HOST:PORT such as 127.0.0.1:7007", arg);
    parse_count("port", port, 1, 65535); /* strtol's forms, as before: "+80" too */
    int r = hostport_resolve(host, port, &t->addr, &t->addrlen);
    if (r != 0)
        usage_error("target \"%s\": %s", arg, gai_strerror(r));
    snprintf(t->text, sizeof t->text, "%s", arg);
}

/* --source LIST; a later --source replaces an earlier one. */
static void parse_sources(const char *arg, source_list *s) {
    char err[200];
    sources_free(s);
    if (sources_parse(s, arg, err, sizeof err) != 0)
        usage_error("--source %s", err);
}

/* With --source, every target needs a source of its family. */
static void check_source_families(const load_options *o) {
    for (size_t i = 0; o->sources.n && i < o->ntargets; i++)
        if (!sources_of_family(&o->sources, o->targets[i].addr.ss_family))
            usage_error("target \"%s\": --source has no %s address for it", o->targets[i].text,
                        o->targets[i].addr.ss_family == AF_INET6 ? "IPv6" : "IPv4");
}

/* --merge reads files: the flags of a run make no sense with it. */
static void check_merge_flags(const load_options *o, int nfiles) {
    if (nfiles == 0)
        usage_error("--merge: give at least one FILE (the --json output of a run)");
    if (o->histogram_path || o->hgrm_path || o->rate > 0 || o->udp)
        usage_error("--merge takes files and --json, --histogram, --hgrm or -q only");
}

/* -t: a count, or "auto" (resolved once -c is known). */
static long parse_threads(const char *s) {
    if (strcmp(s, "auto") == 0)
        return THREADS_AUTO;
    return parse_count("-t", s, 1, LOAD_MAX_THREADS);
}

/* auto: one thread per online CPU, no more than connections or the cap. */
static long auto_threads(long connections) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1; /* unknown: one */
    if (n > LOAD_MAX_THREADS)
        n = LOAD_MAX_THREADS;
    return n < connections ? n : connections;
}

/* The checks of -t, --warmup, --interval and --series. */
static void check_thread_flags(load_options *o) {
    if (o->threads == THREADS_AUTO)
        o->threads = auto_threads(o->connections);
    if (o->threads > o->connections)
        usage_error("-t: %ld threads for %ld connections: at most one thread per connection",
                    o->threads, o->connections);
    if (o->interval_ms && !o->series_path)
        usage_error("--interval needs --series FILE for its lines");
    if (o->series_path && !o->interval_ms)
        usage_error("--series needs --interval T");
    if (o->udp && o->warmup_ms)
        usage_error("--udp excludes --warmup");
}

static void parse_flags(int argc, char **argv, load_options *o) {
    enum {
        OPT_CONNECT_RATE = 256,
        OPT_TIMEOUT,
        OPT_JSON,
        OPT_HISTOGRAM,
        OPT_PROGRESS,
        OPT_UDP,
        OPT_HGRM,
        OPT_MERGE,
        OPT_WARMUP,
        OPT_INTERVAL,
        OPT_SERIES
    };
    enum { OPT_SOURCE = 512 }; /* clear of the list above as that grows */
    static const struct option longopts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
        {"duration", required_argument, NULL, 'd'},
        {"messages", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"udp", no_argument, NULL, OPT_UDP},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"histogram", required_argument, NULL, OPT_HISTOGRAM},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"hgrm", required_argument, NULL, OPT_HGRM},
        {"merge", no_argument, NULL, OPT_MERGE},
        {"threads", required_argument, NULL, 't'},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"series", required_argument, NULL, OPT_SERIES},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    bool have_duration = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:d:n:s:p:r:t:qhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->connections = parse_count("-c", optarg, 1, 1000000);
            break;
        case OPT_CONNECT_RATE:
            o->connect_rate = parse_rate("--connect-rate", optarg);
            break;
        case 'd':
            o->duration_ms = parse_duration("-d", optarg, false);
            have_duration = true;
            break;
        case 'n':
            o->messages = (uint64_t)parse_count("-n", optarg, 1, LONG_MAX);
            break;
        case 's':
            if (units_parse_size(optarg, &o->size) != UNITS_OK || o->size < 1 ||
                o->size > 64 * 1024 * 1024)
                usage_error("-s: expected a size from 1 B to 64 MiB such as 64 or 1KiB, got "
                            "\"%s\"",
                            optarg);
            break;
        case 'p':
            o->pipeline = parse_count("-p", optarg, 1, 65536);
            break;
        case 'r':
            o->rate = parse_rate("-r", optarg);
            break;
        case OPT_TIMEOUT:
            o->timeout_ms = parse_duration("--timeout", optarg, false);
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_UDP:
            o->udp = true;
            break;
        case OPT_SOURCE:
            parse_sources(optarg, &o->sources);
            break;
        case OPT_HISTOGRAM:
            o->histogram_path = optarg;
            break;
        case OPT_HGRM:
            o->hgrm_path = optarg;
            break;
        case OPT_MERGE:
            o->merge = true;
            break;
        case OPT_PROGRESS:
            o->progress = true;
            break;
        case 't':
            o->threads = parse_threads(optarg);
            break;
        case OPT_WARMUP:
            o->warmup_ms = parse_duration("--warmup", optarg, true);
            break;
        case OPT_INTERVAL:
            o->interval_ms = parse_duration("--interval", optarg, false);
            break;
        case OPT_SERIES:
            o->series_path = optarg;
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case 'V':
            printf("coecho-load %s\n", PACKAGE_VERSION);
            exit(0);
        case ':':
            usage_error("%s needs a value", argv[optind - 1]);
        default:
            usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (have_duration && o->messages)
        usage_error("-d and -n exclude each other");
    if (o->rate > 0 && o->pipeline > 1)
        usage_error("-r sets its own pace: it excludes -p");
    if (o->udp && (o->size < LOAD_UDP_MIN_SIZE || o->size > LOAD_UDP_MAX_SIZE))
        usage_error("--udp: -s must be from %d B (sequence header) to %d B (one datagram)",
                    LOAD_UDP_MIN_SIZE, LOAD_UDP_MAX_SIZE);
    if (o->merge) {
        check_merge_flags(o, argc - optind);
        return;
    }
    check_thread_flags(o);
    if (optind == argc)
        usage_error("no target: give at least one HOST:PORT");
    if (argc - optind > LOAD_MAX_TARGETS)
        usage_error("too many targets (at most %d)", LOAD_MAX_TARGETS);
    for (int i = optind; i < argc; i++)
        parse_target(argv[i], &o->targets[o->ntargets++]);
    check_source_families(o);
}

/* Each connection needs a descriptor: take all the hard limit allows. */
static void check_fd_limit(long connections) {
    long limit = cli_raise_fd_limit();
    if (limit >= 0 && connections + 16 > limit)
        fprintf(stderr,
                "coecho-load: warning: %ld connections do not fit the descriptor limit %ld\n",
                connections, limit);
}

/* The --histogram and --hgrm files. 0, or -1 with the reason on stderr. */
int write_histograms(const load_options *opt, const histogram *h) {
    const char *paths[] = {opt->histogram_path, opt->hgrm_path};
    int (*writers[])(const histogram *, FILE *) = {hist_write, hgrm_write};
    for (int i = 0; i < 2; i++) {
        if (!paths[i])
            continue;
        errno = 0;
        FILE *f = fopen(paths[i], "w");
        int bad = !f || writers[i](h, f) != 0;
        if ((f && fclose(f) != 0) || bad) {
            fprintf(stderr, "coecho-load: %s: %s\n", paths[i], strerror(errno ? errno : EIO));
            return -1;
        }
    }
    return 0;
}

/* Errors first (1), then a missed rate (3, with a warning), else 0. */
int load_exit_status(const load_options *opt, const load_results *res) {
    if (!results_clean(res))
        return 1;
    if (load_rate_missed(opt, res)) {
        warn_rate_missed(opt, res);
        return 3;
    }
    return 0;
}

int main(int argc, char **argv) {
    static load_options opt = {.connections = 10,
                               .duration_ms = 10000,
                               .size = 64,
                               .pipeline = 1,
                               .timeout_ms = 5000,
                               .threads = 1};
    static load_results res;
    parse_flags(argc, argv, &opt);
    if (!opt.quiet && isatty(STDERR_FILENO))
        opt.progress = true;
    if (opt.quiet)
        opt.progress = false;
    signal(SIGPIPE, SIG_IGN);
    check_fd_limit(opt.connections);
    hist_init(&res.latency);
    if (tally_init(&res.tally, opt.sources.n) != 0) {
        fprintf(stderr, "coecho-load: cannot run: %s\n", strerror(ENOMEM));
        return 1;
    }

    if (opt.merge)
        return load_merge(&opt, (const char *const *)argv + optind, argc - optind);
    res.start_wall_ns = load_wall_ns();
    int r = load_run(&opt, &res);
    if (r < 0) {
        fprintf(stderr, "coecho-load: cannot run: %s\n", strerror(-r));
        return 1;
    }
    if (opt.json)
        report_json(&opt, &res, stdout);
    else if (!opt.quiet)
        report_text(&opt, &res, stdout);
    int status = write_histograms(&opt, &res.latency) != 0 ? 1 : load_exit_status(&opt, &res);
    tally_free(&res.tally);
    sources_free(&opt.sources);
    return status;
}
