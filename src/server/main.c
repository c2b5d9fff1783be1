/* coechod: flags, configuration, listeners, process setup, then the runtime
 * with the supervisor as its root task. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cli.h"
#include "rt/rt.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/listeners.h"
#include "server/master.h"
#include "server/metrics.h"
#include "server/metrics_server.h"
#include "server/paths.h" /* made by make: COECHOD_DEFAULT_CONFIG */
#include "server/preflight.h"
#include "server/settings.h"
#include "server/supervisor.h"
#include "server/systemd.h"


static const char usage_text[] =
    "usage: coechod [-c FILE] [-f|--foreground] [-d|--daemon]\n"
    "               [-t|--check-config [--no-host-check]] [-l ADDR:PORT]...\n"
    "               [--log-level LEVEL] [-V|--version] [-h|--help]\n"
    "\n"
    "  -c, --config FILE      configuration file (default " COECHOD_DEFAULT_CONFIG
    " if it exists,\n"
    "                         else built-in defaults: 127.0.0.1:7007 and [::1]:7007)\n"
    "  -f, --foreground       stay in the foreground, log to stderr or log.file\n"
    "                         (the default)\n"
    "  -d, --daemon           detach, log to syslog or log.file, write pid_file\n"
    "  -t, --check-config     validate the file and what it needs of this host (user,\n"
    "                         directories, addresses), print the effective\n"
    "                         configuration, exit\n"
    "      --no-host-check    with -t: check the file alone (one for another machine)\n"
    "  -l, --listen ADDR:PORT listen here instead of the configured listeners\n"
    "                         (udp://ADDR:PORT: UDP echo there)\n"
    "                         (repeatable; IPv6 as [::1]:7007; port 0 = any free port)\n"
    "      --log-level LEVEL  error, warn, info or debug\n"
    "  -V, --version          print the version\n"
    "  -h, --help             print this help\n"
    "\n"
    "Signals: TERM/INT stop gracefully, HUP reloads the file, USR1 logs statistics.\n";

typedef struct options {
    const char *config_path;
    bool daemon;
    bool foreground;
    bool check_only;
    bool no_host_check;
    bool have_level;
    enum log_level level;
    listen_addr listen[CONFIG_MAX_LISTEN];
    size_t nlisten;
} options;

#define usage_error(...) cli_usage_error("coechod", usage_text, __VA_ARGS__)

static void parse_flags(int argc, char **argv, options *o) {
    enum { OPT_LOG_LEVEL = 256, OPT_NO_HOST_CHECK };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"daemon", no_argument, NULL, 'd'},
        {"check-config", no_argument, NULL, 't'},
        {"no-host-check", no_argument, NULL, OPT_NO_HOST_CHECK},
        {"listen", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[256];
    int c;
    opterr = 0; /* we word the errors ourselves */
    while ((c = getopt_long(argc, argv, ":c:fdtl:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'f':
            o->foreground = true;
            break;
        case 'd':
            o->daemon = true;
            break;
        case 't':
            o->check_only = true;
            break;
        case OPT_NO_HOST_CHECK:
            o->no_host_check = true;
            break;
        case 'l':
            if (o->nlisten == CONFIG_MAX_LISTEN)
                usage_error("too many -l options (at most %d)", CONFIG_MAX_LISTEN);
            if (config_parse_listen(optarg, &o->listen[o->nlisten], err, sizeof err) != 0)
                usage_error("-l: %s", err);
            o->nlisten++;
            break;
        case OPT_LOG_LEVEL:
            if (config_parse_log_level(optarg, &o->level) != 0)
                usage_error("--log-level: expected error, warn, info or debug, got \"%s\"",
                            optarg);
            o->have_level = true;
            break;
        case 'V':
            printf("coechod %s\n", PACKAGE_VERSION);
            exit(0);
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case ':':
            usage_error("%s needs a value", argv[optind - 1]);
        default:
            usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument \"%s\"", argv[optind]);
    if (o->daemon && o->foreground)
        usage_error("%s", "-d and -f exclude each other");
    if (o->no_host_check && !o->check_only)
        usage_error("%s", "--no-host-check goes with -t");
}

/* path made absolute from the working directory, which --daemon leaves
 * for /: a SIGHUP reads the file the start read. Symbolic links are kept,
 * so a link switched to another file is followed at the next reload. */
static const char *absolute_path(const char *path) {
    static char abs[PATH_MAX];
    if (path[0] == '/')
        return path;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "coechod: -c %s: cannot make the path absolute: getcwd: %s\n", path,
                strerror(errno));
        exit(1);
    }
    const char *rest = path;
    while (rest[0] == '.' && rest[1] == '/') /* "./a.yaml": "/cwd/a.yaml" */
        rest += 2 + strspn(rest + 2, "/");
    if (snprintf(abs, sizeof abs, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", rest) >=
        (int)sizeof abs) {
        fprintf(stderr, "coechod: -c %s: cannot make the path absolute: %s\n", path,
                strerror(ENAMETOOLONG));
        exit(1);
    }
    return abs;
}

/* Built-in defaults, the file over them, then the flags over the file:
 * the settings in force from now on. The file is read by the path as
 * given, so that errors name it so; reloads use it made absolute. Returns
 * that path as given (NULL: no file). */
static const char *load_settings(const options *o) {
    const char *path = o->config_path;
    if (!path && access(COECHOD_DEFAULT_CONFIG, F_OK) == 0)
        path = COECHOD_DEFAULT_CONFIG;
    config *cfg = malloc(sizeof *cfg);
    config_errors *errs = malloc(sizeof *errs);
    if (!cfg || !errs) {
        fputs("coechod: out of memory\n", stderr);
        exit(1);
    }
    config_defaults(cfg);
    if (path && config_load(path, cfg, errs) != 0) {
        fputs(errs->text, stderr);
        exit(1);
    }
    settings_init(cfg, path ? absolute_path(path) : NULL);
    if (o->nlisten)
        settings_override_listeners(o->listen, o->nlisten);
    if (o->have_level)
        settings_override_log_level(o->level);
    free(cfg);
    free(errs);
    return path;
}

/* Sockets passed by systemd (socket activation) replace the configured
 * listeners. False when there are none. */
static bool adopt_passed_sockets(void) {
    passed_socket passed[CONFIG_MAX_LISTEN];
    char err[256];
    int n = systemd_take_sockets(passed, CONFIG_MAX_LISTEN, err, sizeof err);
    if (n < 0) {
        log_error("%s", err);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        log_info(
            "listening on %s (socket passed by systemd%s%s)",
            listeners_adopt(passed[i].fd, listeners_configured_proxy(settings(), passed[i].fd)),
            passed[i].name[0] ? ", " : "", passed[i].name);
    if (n > 0) {
        log_info("socket activation: %d socket(s) from systemd replace the %zu configured "
                 "listener(s)",
                 n, settings()->nlisten);
        settings_set_listeners_owner("systemd");
    }
    return n > 0;
}

/* "auto": the CPUs this process may run on. */
static int resolve_workers(int workers) {
    if (workers > 0)
        return workers;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set) < 1024 ? CPU_COUNT(&set) : 1024;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < 1024 ? n : 1024) : 1;
}

/* The sockets of every worker: with SO_REUSEPORT, one more set per worker
 * bound to the addresses (and ports: port 0 resolved) of the first set;
 * otherwise all share the first. Returns the array, or exits. */
static int *worker_sockets(int nworkers, size_t nfds, bool own_sets) {
    size_t sets = own_sets ? (size_t)nworkers : 1;
    int *fds = calloc(sets * nfds, sizeof *fds);
    char err[256];
    if (!fds) {
        log_error("out of memory for %d workers' sockets", nworkers);
        exit(1);
    }
    for (size_t j = 0; j < nfds; j++)
        fds[j] = listeners_fd(j);
    for (size_t k = 1; k < sets; k++) {
        for (size_t j = 0; j < nfds; j++) {
            fds[k * nfds + j] = listeners_open_copy(j, settings()->backlog, err, sizeof err);
            if (fds[k * nfds + j] < 0) {
                log_error("worker %zu: %s", k + 1, err);
                exit(1);
            }
        }
    }
    return fds;
}

static void check_fd_limit(const config *cfg) {
    long limit = cli_raise_fd_limit();
    long needed = (long)cfg->max_connections + (long)cfg->nlisten + 32;
    if (limit >= 0 && limit < needed)
        log_warn("max_connections %u does not fit the descriptor limit %ld (RLIMIT_NOFILE); "
                 "accepting will pause when descriptors run out",
                 cfg->max_connections, limit);
}

/* Tasks other than handlers (supervisor, signals, notify, reload, one accept
 * task per listener), plus room for the mappings the rest of the process
 * makes (libev, malloc arenas, large buffers), counted in stacks. */
enum { STACK_BUDGET_MARGIN = 64 };

/* vm.max_map_count, for the message only: co_stack_budget() reads it too. */
static long read_max_map_count(void) {
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    long v = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* With mprotect stack guards each handler's stack costs two mappings, so
 * vm.max_map_count, not max_connections, may be the real limit; say so once
 * with the value that would fit. Each worker is a copy of this process, so
 * one check covers them all. Guards that cost no mapping need no check. */
static void check_stack_budget(const config *cfg) {
    long budget = co_stack_budget();
    if (budget < 0)
        return;
    long margin = (long)cfg->nlisten + STACK_BUDGET_MARGIN;
    long wanted = (long)cfg->max_connections + margin;
    if (budget >= wanted)
        return;
    long allowed = budget > margin ? budget - margin : 0;
    long max = read_max_map_count();
    if (max < 0) {
        log_warn("max_connections %u does not fit the memory mappings left (vm.max_map_count) "
                 "with %s stack guards: about %ld connections fit",
                 cfg->max_connections, co_stack_guard_kind(), allowed);
        return;
    }
    /* budget = (max - in use) / 2, so this is in use + 2 * wanted, rounded
     * up to a round number. */
    long needed = max + 2 * (wanted - budget);
    needed = (needed + 999) / 1000 * 1000;
    log_warn("vm.max_map_count %ld allows about %ld connections with %s stack guards "
             "(max_connections %u); accepting will pause when mappings run out; "
             "raise it with sysctl -w vm.max_map_count=%ld",
             max, allowed, co_stack_guard_kind(), cfg->max_connections, needed);
}

/* --daemon without log.file logs to syslog: one that cannot be reached
 * would lose every message after the start, so say so while there is a
 * terminal to say it on. Exits 1 then. */
static void require_syslog(void) {
    char err[256];
    if (log_check_syslog(err, sizeof err) == 0)
        return;
    fprintf(stderr,
            "coechod: -d: syslog cannot be reached (%s), so every message would be lost; "
            "set log.file in the configuration, or run in the foreground (-f)\n",
            err);
    exit(1);
}

/* Where the log goes from now on: stderr, or log.file (opened now, before
 * detaching, so that an error reaches the terminal). Exits 1 on failure. */
static void open_log(const config *cfg) {
    char err[4096 + 256];
    log_open(LOG_TO_STDERR);
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    if (cfg->log_file[0] && log_use_file(cfg->log_file, err, sizeof err) != 0) {
        log_error("log.file %s", err);
        exit(1);
    }
}

/* -t: the file was valid; unless --no-host-check, what it needs of this
 * host is checked too. Every problem goes to stderr (exit 1); otherwise the
 * effective configuration to stdout (exit 0). */
static int check_config(const options *o, const char *path, const config *cfg) {
    if (!o->no_host_check && preflight_check(cfg, path, o->nlisten > 0, stderr) > 0)
        return 1;
    config_dump(cfg, stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    options o = {.level = LOG_LEVEL_INFO};
    parse_flags(argc, argv, &o);
    const char *path = load_settings(&o);
    const config *cfg = settings();
    if (o.check_only)
        return check_config(&o, path, cfg);
    if (o.daemon && !cfg->log_file[0])
        require_syslog();
    open_log(cfg);
    int nworkers = resolve_workers(cfg->workers);
    check_fd_limit(cfg);
    check_stack_budget(cfg);
    server_block_signals();
    bool passed = adopt_passed_sockets();
    bool own_sets = nworkers > 1 && cfg->reuse_port && !passed;
    if (!passed && listeners_open(cfg, own_sets) != 0)
        return 1;
    if (metrics_listener_open(cfg) != 0) /* also with sockets passed by systemd */
        return 1;
    int mapped = metrics_init(nworkers > 1 ? nworkers : 1, nworkers > 1);
    if (mapped != 0) {
        log_error("metrics: cannot map the shared region: %s", strerror(-mapped));
        return 1;
    }
    size_t nfds = listeners_count();
    int *worker_fds = nworkers > 1 ? worker_sockets(nworkers, nfds, own_sets) : NULL;

    char err[512];
    if (notify_init(err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    const char *pid_file = o.daemon && cfg->pid_file[0] ? cfg->pid_file : NULL;
    if (pid_file && pidfile_check(pid_file, err, sizeof err) != 0) {
        log_error("pid_file %s", err);
        return 1;
    }
    if (o.daemon) {
        int r = daemon_detach();
        if (r) {
            log_error("cannot become a daemon: %s", strerror(-r));
            return 1;
        }
        log_open(LOG_TO_SYSLOG);
    }
    if (pid_file && pidfile_write(pid_file, err, sizeof err) != 0) {
        log_error("pid_file %s", err);
        return 1;
    }
    if (cfg->user[0] && drop_privileges(cfg->user, err, sizeof err) != 0) {
        log_error("%s", err);
        pidfile_remove();
        return 1;
    }
    int status = nworkers > 1 ? master_run(nworkers, worker_fds, nfds, !own_sets) : server_run();
    free(worker_fds);
    pidfile_remove();
    return status;
}
