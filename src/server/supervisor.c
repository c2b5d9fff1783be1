/* The supervisor: the root task and reaper. It reaps accept tasks and
 * connection handlers, restarts an accept task that died (with backoff),
 * and, through its signal task, stops (TERM/INT), reloads (HUP) and reports
 * (USR1). */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/config_io.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/server.h"
#include "server/systemd.h"

server srv;

enum {
    TICK_MS = 1000,           /* liveness checks */
    BACKOFF_FIRST_MS = 100,   /* first restart delay of a dead accept task */
    BACKOFF_MAX_MS = 5000,
    STATUS_EVERY_MS = 2000    /* STATUS= to systemd */
};

static co_tid signal_tid, notify_tid;

static size_t live_listeners(void) {
    size_t n = 0;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        n += srv.listeners[i].used;
    return n;
}

void server_log_stats(void) {
    co_stats rt;
    co_get_stats(&rt);
    log_info("stats: connections=%zu accepted=%llu closed=%llu rejected_per_ip=%llu "
             "timed_out=%llu accept_errors=%llu bytes_in=%llu bytes_out=%llu listeners=%zu "
             "accepts_paused=%zu tasks=%zu buffers_cached=%zu",
             srv.active, (unsigned long long)srv.stats.accepted,
             (unsigned long long)srv.stats.closed, (unsigned long long)srv.stats.rejected_per_ip,
             (unsigned long long)srv.stats.timed_out,
             (unsigned long long)srv.stats.accept_errors,
             (unsigned long long)srv.stats.bytes_in, (unsigned long long)srv.stats.bytes_out,
             live_listeners(), srv.accepts_paused, rt.tasks, echo_cached_buffer_bytes());
}

/* ---- systemd notify ------------------------------------------------------ */

/* Best effort: the service goes on without systemd hearing of it, and the
 * failure is logged once. */
static void tell_systemd(const char *what) {
    static bool failed_before;
    co_stats rt;
    co_get_stats(&rt);
    int r = notify_send("%s%sSTATUS=%s%zu connection(s), %llu accepted, %llu closed, "
                        "%llu timed out, %llu bytes echoed; %zu listener(s), %zu task(s)",
                        what, *what ? "\n" : "", srv.shutting_down ? "stopping: " : "",
                        srv.active, (unsigned long long)srv.stats.accepted,
                        (unsigned long long)srv.stats.closed,
                        (unsigned long long)srv.stats.timed_out,
                        (unsigned long long)srv.stats.bytes_out, live_listeners(), rt.tasks);
    if (notify_to_main_process() && r == 0) /* the main process sums these up */
        r = notify_send("X_COECHO_STATS=%zu %llu %llu %llu %llu", srv.active,
                        (unsigned long long)srv.stats.accepted,
                        (unsigned long long)srv.stats.closed,
                        (unsigned long long)srv.stats.timed_out,
                        (unsigned long long)srv.stats.bytes_out);
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
    int64_t next_watchdog = watchdog_ms ? now : CO_NEVER;
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

static void schedule_restart(listener *l, int status);

/* ---- listeners across reloads ------------------------------------------- */

static bool same_addr(const listen_addr *a, const listen_addr *b) {
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* The open listener for addr that no other entry claimed yet: two entries
 * for port 0 are two listeners, each kept by one entry. */
static listener *unclaimed_listener_for(const listen_addr *addr, const bool *claimed) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (srv.listeners[i].used && !srv.listeners[i].closing && !claimed[i] &&
            same_addr(&srv.listeners[i].addr, addr))
            return &srv.listeners[i];
    return NULL;
}

static listener *free_listener_slot(void) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (!srv.listeners[i].used)
            return &srv.listeners[i];
    return NULL;
}

static bool in_list(listener *const *list, size_t n, const listener *l) {
    for (size_t i = 0; i < n; i++)
        if (list[i] == l)
            return true;
    return false;
}

/* Opens the added listeners first: if any fails, closes those just opened
 * and returns -1, leaving everything as it was. Only then are the removed
 * ones closed, so a failed reload never leaves the daemon deaf. */
static int apply_listeners(const config *next) {
    listener *opened[CONFIG_MAX_LISTEN];
    bool claimed[CONFIG_MAX_LISTEN] = {false};
    size_t nopened = 0;
    char err[256];
    for (size_t i = 0; i < next->nlisten; i++) {
        listener *kept = unclaimed_listener_for(&next->listen[i], claimed);
        if (kept) {
            claimed[kept - srv.listeners] = true;
            continue;
        }
        listener *l = free_listener_slot();
        if (!l) {
            log_error("cannot listen on %s: too many listeners", next->listen[i].text);
            goto undo;
        }
        if (listener_open(l, &next->listen[i], next->backlog, LISTEN_ALONE, err, sizeof err) != 0) {
            log_error("%s", err);
            goto undo;
        }
        opened[nopened++] = l;
        claimed[l - srv.listeners] = true;
    }
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &srv.listeners[i];
        if (!l->used || l->closing || in_list(opened, nopened, l))
            continue;
        if (!claimed[i])
            listener_stop(l);
        else if (listen(l->fd, next->backlog) != 0) /* takes the new backlog */
            log_warn("%s: listen: %s", l->bound, strerror(errno));
    }
    for (size_t i = 0; i < nopened; i++) {
        log_info("listening on %s", opened[i]->bound);
        if (listener_start(opened[i]) != 0)
            schedule_restart(opened[i], errno);
    }
    return 0;
undo:
    for (size_t i = 0; i < nopened; i++) {
        close(opened[i]->fd);
        memset(opened[i], 0, sizeof *opened[i]);
    }
    return -1;
}

/* ---- signals ------------------------------------------------------------- */

void log_reload_errors(config_errors *errs) {
    log_error("reload of %s failed; keeping the running configuration:", srv.config_path);
    for (char *line = strtok(errs->text, "\n"); line; line = strtok(NULL, "\n"))
        log_error("%s", line);
}

/* Reloads run in their own task: reading the file may take a while, and
 * the signal task must stay free to take a TERM meanwhile. A HUP during a
 * reload asks for one more once it is done. */
static co_tid reload_tid;
static bool reload_again;

/* The file, parsed in a child process while this task waits, so that a
 * slow or hostile file never stalls the echoing tasks. 0 or -1 (logged). */
static int parse_in_child(config *next, config_errors *errs) {
    config_job job;
    int r = config_job_start(&job, srv.config_path);
    if (r < 0) {
        log_error("reload of %s: cannot start reading it: %s", srv.config_path, strerror(-r));
        return -1;
    }
    int64_t deadline = co_now() + CONFIG_READ_TIMEOUT_MS;
    while ((r = config_job_collect(&job, next, errs)) == 1) {
        int w = co_wait_fd(job.fd, CO_READ, deadline);
        if (w == -ETIMEDOUT)
            log_error("reload of %s: reading it took over %d ms; keeping the running "
                      "configuration",
                      srv.config_path, CONFIG_READ_TIMEOUT_MS);
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
    if (!srv.worker_id)
        return parse_in_child(next, errs);
    int r = config_recv_latest(notify_fd(), next);
    if (r == 1)
        return 0;
    if (r == 0)
        log_warn("SIGHUP: no configuration from the main process; keeping the running one");
    else
        log_error("SIGHUP: receiving the configuration: %s", strerror(-r));
    return -1;
}

void server_keep_fixed_settings(config *next) {
    if (srv.cli_listeners) { /* -l keeps replacing the file's listeners */
        memcpy(next->listen, srv.cli_listen, sizeof srv.cli_listen);
        next->nlisten = srv.ncli_listen;
    }
    if (srv.cli_log_level)
        next->log_level = srv.cfg.log_level;
    memcpy(next->pid_file, srv.cfg.pid_file, sizeof next->pid_file); /* fixed at start */
    memcpy(next->user, srv.cfg.user, sizeof next->user);
}

static void apply_config(config *next) {
    server_keep_fixed_settings(next);
    if (next->stack_size != srv.cfg.stack_size)
        log_warn("stack_size changes take effect at the next start");
    if (next->workers != srv.cfg.workers)
        log_warn("workers changes take effect at the next start");
    if (srv.listeners_owner) /* not ours to change */
        log_info("listen: kept the sockets passed by %s", srv.listeners_owner);
    else if (apply_listeners(next) != 0) {
        log_error("reload of %s failed; keeping the running configuration", srv.config_path);
        return;
    }
    log_set_level(next->log_level);
    srv.cfg = *next;
    accept_gate_open(); /* max_connections may have grown */
    log_info("reloaded %s", srv.worker_id ? "the main process's configuration" : srv.config_path);
}

static void reload_config(void) {
    if (!srv.config_path) {
        log_warn("SIGHUP: no configuration file (-c) to reload");
        return;
    }
    /* On the heap: about 17 and 8 KiB. */
    config *next = malloc(sizeof *next);
    config_errors *errs = malloc(sizeof *errs);
    if (!next || !errs)
        log_error("reload: out of memory; keeping the running configuration");
    else if (read_next_config(next, errs) == 0 && !srv.shutting_down)
        apply_config(next);
    free(next);
    free(errs);
}

/* systemd wants RELOADING=1 (with the time) before and READY=1 after, also
 * when the reload fails and the running configuration stays. */
static void reload(void) {
    notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)notify_monotonic_usec());
    reload_config();
    if (!srv.shutting_down)
        tell_systemd("READY=1");
}

static int reload_task(void *arg) {
    (void)arg;
    do {
        reload_again = false;
        reload();
    } while (reload_again && !srv.shutting_down);
    reload_tid = 0;
    return 0;
}

static void request_reload(void) {
    if (reload_tid) {
        reload_again = true;
        return;
    }
    co_spawn_attr attr = {.name = "reload", .parent = srv.supervisor};
    int err = co_spawn_with(&reload_tid, reload_task, NULL, &attr);
    if (err)
        log_error("SIGHUP: cannot start the reload: %s", strerror(-err));
}

static void begin_shutdown(int signo) {
    if (srv.shutting_down) {
        log_warn("%s again: closing every connection now", strsignal(signo));
        srv.shutdown_deadline = co_now();
        srv.connections_killed = true;
        echo_kill_all();
        return;
    }
    srv.shutting_down = true;
    if (reload_tid)
        co_kill(reload_tid);
    notify_send("STOPPING=1");
    srv.shutdown_deadline = co_now() + srv.cfg.shutdown_grace_ms;
    log_info("%s: stopping; listeners closed, waiting up to %lld ms for %zu connection(s)",
             strsignal(signo), (long long)srv.cfg.shutdown_grace_ms, srv.active);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (srv.listeners[i].used && !srv.listeners[i].closing)
            listener_stop(&srv.listeners[i]);
}

static const int watched_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

void server_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof watched_signals / sizeof watched_signals[0]; i++)
        sigaddset(&set, watched_signals[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

/* main blocked these signals before opening the listeners; once the loop
 * watches them, what arrived meanwhile is delivered, not fatal. */
static int watch_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof watched_signals / sizeof watched_signals[0]; i++) {
        if (srv.worker_id && watched_signals[i] == SIGINT)
            continue; /* ignored in workers: see become_worker() */
        int r = co_signal_watch(watched_signals[i]);
        if (r) {
            log_error("cannot watch %s: %s", strsignal(watched_signals[i]), strerror(-r));
            return r;
        }
        sigaddset(&set, watched_signals[i]);
    }
    return sigprocmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -errno;
}

static int signal_task(void *arg) {
    (void)arg;
    for (;;) {
        int signo = co_signal_wait(CO_NEVER);
        switch (signo) {
        case SIGTERM:
        case SIGINT:
            begin_shutdown(signo);
            break;
        case SIGHUP:
            if (srv.shutting_down)
                log_info("SIGHUP ignored: stopping");
            else
                request_reload();
            break;
        case SIGUSR1:
            server_log_stats();
            break;
        default:
            return signo < 0 && signo != -ECANCELED ? -signo : 0;
        }
    }
}

/* ---- reaping and liveness ------------------------------------------------ */

static listener *listener_of_task(co_tid tid) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (srv.listeners[i].used && srv.listeners[i].accept_tid == tid)
            return &srv.listeners[i];
    return NULL;
}

static void schedule_restart(listener *l, int status) {
    l->accept_tid = 0;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    l->restart_at = co_now() + l->backoff_ms;
    log_warn("accept task of %s exited (%s); restarting it in %lld ms", l->bound,
             status ? strerror(status) : "no error", (long long)l->backoff_ms);
}

static void on_task_exit(co_tid tid, int status) {
    listener *l = listener_of_task(tid);
    if (l && l->closing) { /* it died on its own before it saw the stop */
        close(l->fd);
        log_info("closed listener %s", l->bound);
        memset(l, 0, sizeof *l);
        return;
    }
    if (l) {
        if (!srv.shutting_down)
            schedule_restart(l, status);
        return;
    }
    if (tid == signal_tid) {
        log_error("signal task exited (%s); restarting it", strerror(status));
        co_spawn_attr attr = {.name = "signals"};
        co_spawn_with(&signal_tid, signal_task, NULL, &attr);
        return;
    }
    if (status)
        log_debug("task %llu exited with %s", (unsigned long long)tid, strerror(status));
}

static void restart_due_listeners(int64_t now) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &srv.listeners[i];
        if (!l->used || l->closing || l->accept_tid || now < l->restart_at)
            continue;
        if (listener_start(l) == 0)
            log_info("accept task of %s restarted", l->bound);
        else
            l->restart_at = now + BACKOFF_MAX_MS;
    }
}

/* A listener whose accept task vanished without an exit we saw. */
static void check_liveness(void) {
    co_task_info info;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &srv.listeners[i];
        if (l->used && l->accept_tid && co_task_get_info(l->accept_tid, &info) != 0)
            schedule_restart(l, ESRCH);
        else if (l->used && l->accept_tid && info.state != CO_ZOMBIE)
            l->backoff_ms = 0; /* alive and well: the next failure starts over */
    }
}

static int64_t next_wakeup(int64_t now) {
    int64_t at = now + TICK_MS;
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        listener *l = &srv.listeners[i];
        if (l->used && !l->closing && !l->accept_tid && l->restart_at < at)
            at = l->restart_at;
    }
    if (srv.shutting_down && !srv.connections_killed && srv.shutdown_deadline < at)
        at = srv.shutdown_deadline;
    return at;
}

static bool accept_tasks_left(void) {
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (srv.listeners[i].used)
            return true;
    return false;
}

static void release_everything(void) {
    co_kill(signal_tid);
    if (reload_tid)
        co_kill(reload_tid);
    if (notify_tid)
        co_kill(notify_tid);
    while (co_wait_child(NULL, NULL, CO_NEVER) == 0)
        ;
    co_chan_free(srv.slot_gate);
    srv.slot_gate = NULL;
    ipcount_destroy(&srv.per_ip);
    echo_release_buffers();
}

int supervisor_run(void *arg) {
    (void)arg;
    srv.supervisor = co_self();
    list_init(&srv.connections);
    ipcount_init(&srv.per_ip);
    if (co_chan_new(&srv.slot_gate, 1, 0) != 0 || co_become_reaper() != 0 ||
        watch_signals() != 0) {
        log_error("cannot start the supervisor");
        return 1;
    }
    co_spawn_attr attr = {.name = "signals"};
    co_spawn_with(&signal_tid, signal_task, NULL, &attr);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (srv.listeners[i].used && listener_start(&srv.listeners[i]) != 0)
            schedule_restart(&srv.listeners[i], errno);
    daemon_ready(); /* in --daemon mode, the starting command now exits 0 */
    if (notify_enabled()) {
        co_spawn_attr nattr = {.name = "notify"};
        int err = co_spawn_with(&notify_tid, notify_task, NULL, &nattr);
        if (err)
            log_error("cannot start the systemd notify task: %s", strerror(-err));
        tell_systemd("READY=1");
    }

    int64_t next_tick = co_now() + TICK_MS;
    for (;;) {
        int64_t now = co_now();
        co_tid tid;
        int status;
        int r = co_wait_child(&tid, &status, next_wakeup(now));
        if (r == 0)
            on_task_exit(tid, status);
        else if (r == -ECHILD)
            co_sleep(next_wakeup(now));
        else if (r != -ETIMEDOUT)
            log_error("supervisor: wait: %s", strerror(-r));
        now = co_now();
        if (now >= next_tick) {
            check_liveness();
            echo_trim_buffers();
            next_tick = now + TICK_MS;
        }
        if (!srv.shutting_down) {
            restart_due_listeners(now);
            continue;
        }
        if (!srv.connections_killed && now >= srv.shutdown_deadline && srv.active) {
            log_warn("shutdown_grace over: closing %zu connection(s)", srv.active);
            srv.connections_killed = true;
            echo_kill_all();
        }
        if (srv.active == 0 && !accept_tasks_left())
            break;
    }
    release_everything();
    log_info("stopped: %llu connection(s) served", (unsigned long long)srv.stats.accepted);
    return 0;
}

int server_run(void) {
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer is an EPIPE, not a death */
    co_options rt = {.stack_size = srv.cfg.stack_size};
    int status = co_run(supervisor_run, NULL, &rt);
    if (status < 0)
        log_error("cannot start the runtime: %s", strerror(-status));
    return status == 0 ? 0 : 1;
}
