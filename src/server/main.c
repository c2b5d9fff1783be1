/* coechod: flags, configuration, listeners, process setup, then the runtime
 * with the supervisor as its root task. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cli.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/server.h"
#include "server/systemd.h"

#ifndef COECHOD_DEFAULT_CONFIG
#define COECHOD_DEFAULT_CONFIG "/etc/coechod/coechod.yaml"
#endif

static const char usage_text[] =
    "usage: coechod [-c FILE] [-f|--foreground] [-d|--daemon] [-t|--check-config]\n"
    "               [-l ADDR:PORT]... [--log-level LEVEL] [-V|--version] [-h|--help]\n"
    "\n"
    "  -c, --config FILE      configuration file (default " COECHOD_DEFAULT_CONFIG
    " if it exists,\n"
    "                         else built-in defaults: 127.0.0.1:7007 and [::1]:7007)\n"
    "  -f, --foreground       stay in the foreground, log to stderr (the default)\n"
    "  -d, --daemon           detach, log to syslog, write pid_file\n"
    "  -t, --check-config     validate, print the effective configuration, exit\n"
    "  -l, --listen ADDR:PORT listen here instead of the configured listeners\n"
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
    bool have_level;
    enum log_level level;
    listen_addr listen[CONFIG_MAX_LISTEN];
    size_t nlisten;
} options;

#define usage_error(...) cli_usage_error("coechod", usage_text, __VA_ARGS__)

static void parse_flags(int argc, char **argv, options *o) {
    enum { OPT_LOG_LEVEL = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"daemon", no_argument, NULL, 'd'},
        {"check-config", no_argument, NULL, 't'},
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
}

/* Built-in defaults, the file over them, then the flags over the file. */
static void load_config(const options *o, config *cfg) {
    static config_errors errs;
    const char *path = o->config_path;
    if (!path && access(COECHOD_DEFAULT_CONFIG, F_OK) == 0)
        path = COECHOD_DEFAULT_CONFIG;
    config_defaults(cfg);
    if (path && config_load(path, cfg, &errs) != 0) {
        fputs(errs.text, stderr);
        exit(1);
    }
    srv.config_path = path;
    if (o->nlisten) {
        memcpy(cfg->listen, o->listen, sizeof o->listen);
        cfg->nlisten = o->nlisten;
        memcpy(srv.cli_listen, o->listen, sizeof o->listen);
        srv.ncli_listen = o->nlisten;
        srv.cli_listeners = true;
    }
    if (o->have_level)
        cfg->log_level = o->level;
    srv.cli_log_level = o->have_level;
}

static bool default_listeners(const config *cfg) {
    config defaults;
    config_defaults(&defaults);
    return cfg->nlisten == defaults.nlisten &&
           memcmp(cfg->listen, defaults.listen, cfg->nlisten * sizeof cfg->listen[0]) == 0;
}

/* Every listener must open, except that the built-in [::1] default may be
 * missing on a machine without IPv6. */
static void open_listeners(const config *cfg, bool reuse_port) {
    char err[256];
    bool defaults = default_listeners(cfg);
    size_t opened = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        int r = listener_open(&srv.listeners[opened], &cfg->listen[i], cfg->backlog,
                              reuse_port ? LISTEN_REUSEPORT_FIRST : LISTEN_ALONE, err, sizeof err);
        if (r == 0) {
            log_info("listening on %s", srv.listeners[opened++].bound);
            continue;
        }
        if (defaults && (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT)) {
            log_warn("%s; going on without it", err);
            continue;
        }
        log_error("%s", err);
        exit(1);
    }
    if (!opened) {
        log_error("no listener could be opened");
        exit(1);
    }
}

/* Sockets passed by systemd (socket activation) replace the configured
 * listeners. False when there are none. */
static bool adopt_passed_sockets(const config *cfg) {
    passed_socket passed[CONFIG_MAX_LISTEN];
    char err[256];
    int n = systemd_take_sockets(passed, CONFIG_MAX_LISTEN, err, sizeof err);
    if (n < 0) {
        log_error("%s", err);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        listener_adopt(&srv.listeners[i], passed[i].fd);
        log_info("listening on %s (socket passed by systemd%s%s)", srv.listeners[i].bound,
                 passed[i].name[0] ? ", " : "", passed[i].name);
    }
    if (n > 0)
        log_info("socket activation: %d socket(s) from systemd replace the %zu configured "
                 "listener(s)",
                 n, cfg->nlisten);
    if (n > 0)
        srv.listeners_owner = "systemd";
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

static size_t open_listener_count(void) {
    size_t n = 0;
    while (n < CONFIG_MAX_LISTEN && srv.listeners[n].used)
        n++;
    return n;
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
        fds[j] = srv.listeners[j].fd;
    for (size_t k = 1; k < sets; k++) {
        for (size_t j = 0; j < nfds; j++) {
            listen_addr bound = {.addrlen = sizeof bound.addr};
            listener extra;
            if (getsockname(srv.listeners[j].fd, (struct sockaddr *)&bound.addr,
                            &bound.addrlen) != 0) {
                log_error("%s: getsockname: %s", srv.listeners[j].bound, strerror(errno));
                exit(1);
            }
            snprintf(bound.text, sizeof bound.text, "%s", srv.listeners[j].bound);
            if (listener_open(&extra, &bound, srv.cfg.backlog, LISTEN_REUSEPORT_JOIN, err,
                              sizeof err) != 0) {
                log_error("worker %zu: %s", k + 1, err);
                exit(1);
            }
            fds[k * nfds + j] = extra.fd;
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

int main(int argc, char **argv) {
    options o = {.level = LOG_LEVEL_INFO};
    parse_flags(argc, argv, &o);
    load_config(&o, &srv.cfg);
    if (o.check_only) {
        config_dump(&srv.cfg, stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    log_open(LOG_TO_STDERR);
    log_set_level(srv.cfg.log_level);
    int nworkers = resolve_workers(srv.cfg.workers);
    check_fd_limit(&srv.cfg);
    server_block_signals();
    bool passed = adopt_passed_sockets(&srv.cfg);
    bool own_sets = nworkers > 1 && srv.cfg.reuse_port && !passed;
    if (!passed)
        open_listeners(&srv.cfg, own_sets);
    size_t nfds = open_listener_count();
    int *worker_fds = nworkers > 1 ? worker_sockets(nworkers, nfds, own_sets) : NULL;

    char err[512];
    if (notify_init(err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    const char *pid_file = o.daemon && srv.cfg.pid_file[0] ? srv.cfg.pid_file : NULL;
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
    if (srv.cfg.user[0] && drop_privileges(srv.cfg.user, err, sizeof err) != 0) {
        log_error("%s", err);
        pidfile_remove();
        return 1;
    }
    int status = nworkers > 1 ? master_run(nworkers, worker_fds, nfds, !own_sets) : server_run();
    free(worker_fds);
    pidfile_remove();
    return status;
}
