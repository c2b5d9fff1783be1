#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/access.h"
#include "server/supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config_io.h"
#include "server/conn.h"
#include "server/daemon.h"
#include "server/echo.h"
#include "server/listeners.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/metrics_server.h"
#include "server/settings.h"
#include "server/signals.h"
#include "server/statline.h"
#include "server/systemd.h"

enum {
    TICK_MS = 1000,        /* the buffer cache's trim */
    STATUS_EVERY_MS = 2000 /* STATUS= to systemd */
};

static struct {
    co_tid self, signal_tid, notify_tid;
    /* Reloads run in their own task: reading the file may take a while, and
     * the signal task must stay free to take a TERM meanwhile. A HUP during
     * a reload asks for one more once it is done. */
    co_tid reload_tid;
    bool reload_again;
    bool shutting_down;
    int64_t shutdown_deadline; /* co_now() ms after which connections are killed */
} sup;

/* The workers of the service, for a worker's own line: the region's
 * figures. 0, or -ENOMEM. A single process has none. */
static int workers_seen(statline_workers *w) {
    *w = (statline_workers){0};
    if (!settings_worker())
        return 0;
    metrics_snapshot *snap = metrics_snapshot_take();
    if (!snap)
        return -ENOMEM;
    *w = (statline_workers){snap->running, snap->nslots, snap->worker_restarts};
    free(snap);
    return 0;
}

/* In a worker, at debug level: the main process logs the totals. */
static void log_stats(void) {
    metrics_values v;
    statline_workers w;
    char line[STATLINE_SIZE];
    if (workers_seen(&w) != 0) {
        log_error("stats: out of memory");
        return;
    }
    metrics_collect(&v, false);
    statline_stats(line, sizeof line, &v, &w);
    log_msg(settings_worker() ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "stats: %s", line);
}

/* ---- systemd notify ------------------------------------------------------ */

/* Best effort: the service goes on without systemd hearing of it, and the
 * failure is logged once. A worker's STATUS= goes to the main process,
 * which tells its own. */
static void tell_systemd(const char *what) {
    static bool failed_before;
    metrics_values v;
    char status[STATLINE_SIZE];
    metrics_collect(&v, false);
    statline_status(status, sizeof status, &v, &(statline_workers){0}, sup.shutting_down);
    int r = notify_send("%s%sSTATUS=%s", what, *what ? "\n" : "", status);
    if (r && !failed_before) {
        failed_before = true;
        log_warn("cannot notify systemd (NOTIFY_SOCKET): %s", strerror(-r));
    }
}

/* A task, not a timer callback: when the loop or the scheduler is stuck,
 * WATCHDOG=1 stops and systemd restarts the service. */
static int notify_task(void *arg) {
    (void)arg;
    int64_t watchdog_ms = notify_watchdog_interval_ms();
    int64_t now = co_now();
    int64_t next_status = now + STATUS_EVERY_MS;
    /* Not CO_NEVER (-1): it would come before every STATUS= and the task
     * would sleep for good. */
    int64_t next_watchdog = watchdog_ms ? now : INT64_MAX;
    for (;;) {
        int64_t at = next_status < next_watchdog ? next_status : next_watchdog;
        if (co_sleep(at) == -ECANCELED)
            return 0;
        now = co_now();
        if (now >= next_watchdog) {
            int r = notify_send("WATCHDOG=1");
            if (r)
                log_warn("cannot send WATCHDOG=1 to systemd: %s", strerror(-r));
            next_watchdog = now + watchdog_ms;
        }
        if (now >= next_status) {
            tell_systemd("");
            next_status = now + STATUS_EVERY_MS;
        }
    }
}

/* ---- reloads ------------------------------------------------------------- */

void log_reload_errors(config_errors *errs) {
    log_error("reload of %s failed; keeping the running configuration:", settings_path());
    for (char *line = strtok(errs->text, "\n"); line; line = strtok(NULL, "\n"))
        log_error("%s", line);
}

/* The file, parsed in a child process while this task waits, so that a
 * slow or hostile file never stalls the echoing tasks. 0 or -1 (logged). */
static int parse_in_child(config *next, config_errors *errs) {
    config_job job;
    int r = config_job_start(&job, settings_path());
    if (r < 0) {
        log_error("reload of %s: cannot start reading it: %s", settings_path(), strerror(-r));
        return -1;
    }
    int64_t deadline = co_now() + CONFIG_READ_TIMEOUT_MS;
    while ((r = config_job_collect(&job, next, errs)) == 1) {
        int w = co_wait_fd(job.fd, CO_READ, deadline);
        if (w == -ETIMEDOUT)
            log_error("reload of %s: reading it took over %d ms; keeping the running "
                      "configuration",
                      settings_path(), CONFIG_READ_TIMEOUT_MS);
        if (w < 0)
            break;
    }
    co_close(job.fd); /* disarms the watcher before the descriptor goes */
    job.fd = -1;
    config_job_end(&job);
    if (r < 0)
        log_reload_errors(errs);
    return r == 0 ? 0 : -1;
}

/* The next configuration: in a worker, the one the main process sent
 * before its HUP; otherwise the file's. 0, or -1 (logged). */
static int read_next_config(config *next, config_errors *errs) {
    if (!settings_worker())
        return parse_in_child(next, errs);
    int r = config_recv_latest(notify_fd(), next);
    if (r == 1)
        return 0;
    if (r == 0) /* the main process's reload failed (and said so): the log is reopened */
        log_debug("SIGHUP: no configuration from the main process; keeping the running one");
    else
        log_error("SIGHUP: receiving the configuration: %s", strerror(-r));
    return -1;
}

/* true once next is in force. */
static bool apply_config(config *next) {
    settings_prepare_reload(next, false);
    if (settings_listeners_owner()) /* not ours to change */
        log_info("listen: kept the sockets passed by %s", settings_listeners_owner());
    else if (listeners_apply(next) != 0) {
        log_error("reload of %s failed; keeping the running configuration", settings_path());
        return false;
    }
    settings_replace(next);
    conn_limits_changed(); /* max_connections may have grown */
    log_info("reloaded %s",
             settings_worker() ? "the main process's configuration" : settings_path());
    return true;
}

/* true once the file's configuration is in force. */
static bool reload_config(void) {
    bool ok = false;
    if (!settings_path()) {
        log_warn("SIGHUP: no configuration file (-c) to reload");
        return false;
    }
    /* On the heap: about 17 and 8 KiB. */
    config *next = malloc(sizeof *next);
    config_errors *errs = malloc(sizeof *errs);
    if (!next || !errs)
        log_error("reload: out of memory; keeping the running configuration");
    else if (read_next_config(next, errs) == 0 && !sup.shutting_down)
        ok = apply_config(next);
    free(next);
    free(errs);
    return ok;
}

/* systemd wants RELOADING=1 (with the time) before and READY=1 after, also
 * when the reload fails and the running configuration stays. */
static void reload(void) {
    notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)notify_monotonic_usec());
    bool ok = reload_config();
    if (!settings_worker()) /* the main process counts the service's reloads */
        metrics_reload_done(ok);
    log_reopen(settings()->log_file); /* the reload changed log.file */
    if (!sup.shutting_down)
        tell_systemd("READY=1");
}

static int reload_task(void *arg) {
    (void)arg;
    do {
        sup.reload_again = false;
        reload();
    } while (sup.reload_again && !sup.shutting_down);
    sup.reload_tid = 0;
    return 0;
}

static void request_reload(void) {
    if (sup.reload_tid) {
        sup.reload_again = true;
        return;
    }
    co_spawn_attr attr = {.name = "reload", .parent = sup.self};
    int err = co_spawn_with(&sup.reload_tid, reload_task, NULL, &attr);
    if (err)
        log_error("SIGHUP: cannot start the reload: %s", strerror(-err));
}

/* ---- signals ------------------------------------------------------------- */

static void begin_shutdown(int signo) {
    if (sup.shutting_down) {
        log_warn("%s again: closing every connection now", strsignal(signo));
        sup.shutdown_deadline = co_now();
        conn_kill_all();
        return;
    }
    sup.shutting_down = true;
    if (sup.reload_tid)
        co_kill(sup.reload_tid);
    notify_send("STOPPING=1");
    int64_t grace = settings()->shutdown_grace_ms;
    sup.shutdown_deadline = co_now() + grace;
    log_info("%s: stopping; listeners closed, waiting up to %lld ms for %zu connection(s)",
             strsignal(signo), (long long)grace, conn_active());
    listeners_stop();
    metrics_server_stop();
}

void server_block_signals(void) {
    sigset_t set;
    server_signal_set(&set);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

/* main blocked these signals before opening the listeners; once the loop
 * watches them, what arrived meanwhile is delivered, not fatal. */
static int watch_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < server_signal_count; i++) {
        int signo = server_signals[i].signo;
        if (settings_worker() && signo == SIGINT)
            continue; /* ignored in workers: see become_worker() */
        int r = co_signal_watch(signo);
        if (r) {
            log_error("cannot watch %s: %s", strsignal(signo), strerror(-r));
            return r;
        }
        sigaddset(&set, signo);
    }
    return sigprocmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -errno;
}

static int signal_task(void *arg) {
    (void)arg;
    for (;;) {
        int signo = co_signal_wait(CO_NEVER);
        if (signo < 0)
            return signo != -ECANCELED ? -signo : 0;
        switch (signal_action_of(signo)) {
        case SIGNAL_STOP:
            begin_shutdown(signo);
            break;
        case SIGNAL_RELOAD:
            /* At once, not in the reload task: after logrotate moved the
             * file, every line logged from now on goes to the new one. */
            log_reopen(settings()->log_file);
            if (sup.shutting_down)
                log_info("SIGHUP ignored: stopping");
            else
                request_reload();
            break;
        case SIGNAL_STATS:
            log_stats();
            break;
        case SIGNAL_NONE:
            break;
        }
    }
}

/* ---- reaping ------------------------------------------------------------- */

static void on_task_exit(co_tid tid, int status) {
    if (listeners_task_exited(tid, status, sup.shutting_down))
        return;
    if (tid == sup.signal_tid) {
        log_error("signal task exited (%s); restarting it", strerror(status));
        co_spawn_attr attr = {.name = "signals"};
        int err = co_spawn_with(&sup.signal_tid, signal_task, NULL, &attr);
        if (err)
            log_error("cannot restart the signal task: %s", strerror(-err));
        return;
    }
    if (status)
        log_debug("task %llu exited with %s", (unsigned long long)tid, strerror(status));
}

static void release_everything(void) {
    co_kill(sup.signal_tid);
    if (sup.reload_tid)
        co_kill(sup.reload_tid);
    if (sup.notify_tid)
        co_kill(sup.notify_tid);
    metrics_server_stop();
    while (co_wait_child(NULL, NULL, CO_NEVER) == 0)
        ;
    conn_destroy();
    access_destroy();
    echo_release_buffers();
}

static int start(void) {
    sup.self = co_self();
    if (conn_init() != 0 || co_become_reaper() != 0 || watch_signals() != 0) {
        log_error("cannot start the supervisor");
        return -1;
    }
    co_spawn_attr attr = {.name = "signals"};
    int err = co_spawn_with(&sup.signal_tid, signal_task, NULL, &attr);
    if (err) {
        log_error("cannot start the signal task: %s", strerror(-err));
        return -1;
    }
    listeners_start(sup.self);
    metrics_server_start(sup.self); /* without it, the service goes on unmeasured */
    daemon_ready(); /* in --daemon mode, the starting command now exits 0 */
    log_started();
    if (notify_enabled()) {
        co_spawn_attr nattr = {.name = "notify"};
        err = co_spawn_with(&sup.notify_tid, notify_task, NULL, &nattr);
        if (err)
            log_error("cannot start the systemd notify task: %s", strerror(-err));
        tell_systemd("READY=1");
    }
    return 0;
}

/* What is left to do at now: true once the shutdown is complete. */
static bool shutdown_step(int64_t now) {
    if (!conn_all_killed() && now >= sup.shutdown_deadline && conn_active()) {
        log_warn("shutdown_grace over: closing %zu connection(s)", conn_active());
        conn_kill_all();
    }
    return conn_active() == 0 && !listeners_any();
}

static int supervisor_run(void *arg) {
    (void)arg;
    if (start() != 0)
        return 1;
    int64_t next_tick = co_now() + TICK_MS;
    int64_t wake = listeners_restart_due(co_now(), next_tick);
    for (;;) {
        co_tid tid;
        int status;
        int r = co_wait_child(&tid, &status, wake);
        if (r == 0)
            on_task_exit(tid, status);
        else if (r == -ECHILD)
            co_sleep(wake);
        else if (r != -ETIMEDOUT)
            log_error("supervisor: wait: %s", strerror(-r));
        int64_t now = co_now();
        if (now >= next_tick) {
            echo_trim_buffers();
            next_tick = now + TICK_MS;
        }
        wake = next_tick;
        if (!sup.shutting_down) {
            wake = listeners_restart_due(now, wake);
            continue;
        }
        if (shutdown_step(now))
            break;
        if (!conn_all_killed() && sup.shutdown_deadline < wake)
            wake = sup.shutdown_deadline;
    }
    release_everything();
    conn_stats c;
    conn_get_stats(&c);
    log_info("stopped: %llu connection(s) served", (unsigned long long)c.accepted);
    return 0;
}

int server_run(void) {
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer is an EPIPE, not a death */
    co_options rt = {.stack_size = settings()->stack_size};
    int status = co_run(supervisor_run, NULL, &rt);
    if (status < 0)
        log_error("cannot start the runtime: %s", strerror(-status));
    return status == 0 ? 0 : 1;
}
