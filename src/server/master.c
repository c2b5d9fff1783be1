/* The main process with workers > 1: it holds the listening sockets, forks
 * the workers (each a whole single-process coechod: its own loop, runtime
 * and supervisor task), and supervises them the way the supervisor task
 * supervises tasks: a worker that dies is restarted with backoff, a crash
 * loop ends the service, a worker that stops sending heartbeats is killed
 * and replaced. TERM, INT, HUP and USR1 are forwarded. The workers publish
 * their counters in the metrics region; this process folds a dead worker's
 * into the totals and sums them up for systemd and USR1.
 *
 * A plain poll(2) loop, not the coroutine runtime: fork(2) from inside a
 * coroutine would hand the child the parent's loop and stacks. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/backoff.h"
#include "common/clock.h"
#include "server/config_io.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/listeners.h"
#include "server/master.h"
#include "server/metrics.h"
#include "server/metrics_server.h"
#include "server/settings.h"
#include "server/signals.h"
#include "server/statline.h"
#include "server/supervisor.h"
#include "server/systemd.h"

enum {
    BACKOFF_FIRST_MS = 100, /* first restart delay of a dead worker */
    BACKOFF_MAX_MS = 5000,
    HEALTHY_AFTER_MS = 10000, /* up this long: the next death starts the backoff over */
    CRASH_LIMIT = 5,          /* deaths within CRASH_WINDOW_MS end the service */
    CRASH_WINDOW_MS = 60000,
    HEARTBEAT_MS = 1000, /* worker -> main, WATCHDOG=1 */
    /* Three heartbeats missed: stalled, killed and replaced. Connections
     * queued on a stalled worker's SO_REUSEPORT socket wait that long; a
     * worker whose loop is busier than that is taken for stalled. */
    STUCK_MS = 3 * HEARTBEAT_MS,
    STATUS_EVERY_MS = 2000,
    RELOAD_WAIT_MS = 10000, /* for the workers' READY=1 after a HUP */
    KILL_AFTER_GRACE_MS = 5000,
    START_TIMEOUT_MS = 30000 /* for every worker's first READY=1 */
};

typedef struct worker {
    pid_t pid;            /* 0: not running */
    int notify_fd;        /* our end of its notify socketpair */
    bool ready;           /* READY=1 since it started */
    bool awaiting_reload; /* a HUP was forwarded; READY=1 not back yet */
    int64_t last_heard, restart_at;
    backoff restarts;
} worker;

static struct {
    int n; /* workers */
    worker *w;
    int *fds; /* listening sockets: n x nfds (own sets) or nfds (shared) */
    size_t nfds;
    bool shared;
    int sigfd;
    bool announced_ready;       /* READY=1 sent to systemd / the -d parent */
    bool shutting_down, killed; /* killed: the SIGKILL backstop was used */
    int64_t shutdown_deadline;
    bool reloading;
    int64_t reload_deadline;
    int64_t crashes[CRASH_LIMIT];
    int ncrashes;
    bool failed; /* exit 1 */
} m;

static const int *worker_fds(int i) { return m.shared ? m.fds : m.fds + (size_t)i * m.nfds; }

/* ---- the worker process ---------------------------------------------------- */

/* In the child: keep only this worker's sockets and its notify end, then
 * become a single-process coechod on inherited listeners. */
static _Noreturn void become_worker(int i, int notify_end, pid_t parent) {
    /* Dies with the main process (graceful: TERM), also if it died already. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        _exit(1);
    close(m.sigfd);
    for (int k = 0; k < m.n; k++)
        if (m.w[k].notify_fd >= 0)
            close(m.w[k].notify_fd);
    if (!m.shared)
        for (int k = 0; k < m.n; k++)
            if (k != i)
                for (size_t j = 0; j < m.nfds; j++)
                    close(m.fds[(size_t)k * m.nfds + j]);
    /* Keep TERM, INT, HUP and USR1 blocked (the supervisor unblocks what it
     * watches); SIGCHLD is only the main process's business. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    /* Ctrl-C reaches the whole process group: the main process's forwarded
     * TERM is the one a worker acts on. */
    signal(SIGINT, SIG_IGN);
    daemon_ready_forget();
    log_set_worker(i + 1);
    settings_set_worker(i + 1);
    metrics_set_slot(i);
    notify_use_fd(notify_end, HEARTBEAT_MS);
    const int *fds = worker_fds(i);
    bool proxy[CONFIG_MAX_LISTEN] = {false}; /* the main process's j-th, as fds[j] */
    for (size_t j = 0; j < m.nfds && j < CONFIG_MAX_LISTEN; j++)
        proxy[j] = listeners_proxy_protocol(j);
    listeners_forget();
    for (size_t j = 0; j < m.nfds; j++)
        listeners_adopt(fds[j], j < CONFIG_MAX_LISTEN && proxy[j]);
    settings_set_listeners_owner("the main process");
    _exit(server_run());
}

static int spawn_worker(int i) {
    worker *w = &m.w[i];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        log_error("worker %d: socketpair: %s", i + 1, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("worker %d: fork: %s", i + 1, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        become_worker(i, sv[1], parent);
    }
    close(sv[1]);
    w->pid = pid;
    w->notify_fd = sv[0];
    w->ready = w->awaiting_reload = false;
    w->last_heard = clock_monotonic_ms();
    backoff_started(&w->restarts, w->last_heard);
    log_info("worker %d started (pid %ld)", i + 1, (long)pid);
    return 0;
}

/* ---- what the workers say ------------------------------------------------ */

static int running_workers(void) {
    int n = 0;
    for (int i = 0; i < m.n; i++)
        n += m.w[i].pid != 0;
    return n;
}

static bool all_ready(void) {
    for (int i = 0; i < m.n; i++)
        if (!m.w[i].pid || !m.w[i].ready)
            return false;
    return true;
}

/* The workers, as the lines tell them; snap may be NULL (out of memory). */
static statline_workers workers_now(const metrics_snapshot *snap) {
    return (statline_workers){running_workers(), m.n, snap ? snap->worker_restarts : 0};
}

/* The totals of the metrics region: those of the metrics endpoint. */
static void status_to_systemd(const char *what) {
    metrics_snapshot *snap = metrics_snapshot_take();
    statline_workers w = workers_now(snap);
    char status[STATLINE_SIZE];
    statline_status(status, sizeof status, snap ? &snap->total : &(metrics_values){{0}}, &w,
                    m.shutting_down);
    notify_send("%s%sSTATUS=%s", what, *what ? "\n" : "", status);
    free(snap);
}

/* USR1: the service's totals (each worker logs its own at debug level). */
static void log_totals(void) {
    metrics_snapshot *snap = metrics_snapshot_take();
    char line[STATLINE_SIZE];
    if (!snap) {
        log_error("stats: out of memory");
        return;
    }
    statline_workers w = workers_now(snap);
    statline_stats(line, sizeof line, &snap->total, &w);
    log_info("stats: %s", line);
    free(snap);
}

/* This process's memory and descriptors, for the metrics' totals. */
static void publish_own_figures(void) {
    int64_t rss, fds;
    metrics_process_figures(&rss, &fds);
    metrics_main_figures(rss > 0 ? (uint64_t)rss : 0, fds > 0 ? (uint64_t)fds : 0);
}

static void on_message(worker *w, char *msg) {
    w->last_heard = clock_monotonic_ms();
    for (char *line = strtok(msg, "\n"); line; line = strtok(NULL, "\n")) {
        if (strcmp(line, "READY=1") == 0) {
            w->ready = true;
            w->awaiting_reload = false;
        }
    }
}

static void read_messages(worker *w) {
    char buf[1024];
    ssize_t n;
    while ((n = recv(w->notify_fd, buf, sizeof buf - 1, 0)) >= 0) {
        buf[n] = '\0';
        on_message(w, buf);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log_warn("worker notify: %s", strerror(errno));
}

/* ---- deaths, restarts, crash loops ------------------------------------------ */

static void describe_status(int status, char *buf, size_t size) {
    if (WIFEXITED(status))
        snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by %s", strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "status %d", status);
}

/* True when CRASH_LIMIT deaths fell within CRASH_WINDOW_MS. */
static bool crash_loop(int64_t now) {
    memmove(m.crashes, m.crashes + 1, sizeof m.crashes - sizeof m.crashes[0]);
    m.crashes[CRASH_LIMIT - 1] = now;
    if (m.ncrashes < CRASH_LIMIT)
        m.ncrashes++;
    return m.ncrashes == CRASH_LIMIT && now - m.crashes[0] <= CRASH_WINDOW_MS;
}

static void signal_workers(int signo) {
    for (int i = 0; i < m.n; i++)
        if (m.w[i].pid)
            kill(m.w[i].pid, signo);
}

static void begin_shutdown(int signo, const char *why);

static void on_worker_exit(worker *w, int status) {
    int i = (int)(w - m.w);
    char how[64];
    describe_status(status, how, sizeof how);
    int64_t now = clock_monotonic_ms();
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    close(w->notify_fd);
    w->notify_fd = -1;
    w->pid = 0;
    metrics_retire(i); /* before a replacement writes the slot */
    if (m.shutting_down) {
        if (clean) {
            log_info("worker %d stopped (%s)", i + 1, how);
        } else {
            log_warn("worker %d stopped (%s)", i + 1, how);
            m.failed = true;
        }
        return;
    }
    if (!m.announced_ready) { /* it never got going: neither will its siblings */
        log_error("worker %d failed to start (%s)", i + 1, how);
        m.failed = true;
        begin_shutdown(SIGTERM, "a worker failed to start");
        return;
    }
    if (clean) { /* a TERM sent to it alone: not a crash */
        w->restart_at = now;
        log_info("worker %d stopped (%s); starting it again", i + 1, how);
        return;
    }
    if (crash_loop(now)) {
        log_error("worker %d died (%s): %d worker deaths within %d s, giving up", i + 1, how,
                  CRASH_LIMIT, CRASH_WINDOW_MS / 1000);
        m.failed = true;
        begin_shutdown(SIGTERM, "crash loop");
        return;
    }
    w->restart_at = now + backoff_next(&w->restarts, now);
    log_warn("worker %d died (%s); restarting it in %lld ms", i + 1, how,
             (long long)w->restarts.delay_ms);
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < m.n; i++)
            if (m.w[i].pid == pid)
                on_worker_exit(&m.w[i], status);
}

static void restart_due(int64_t now) {
    for (int i = 0; i < m.n; i++) {
        worker *w = &m.w[i];
        if (w->pid || m.shutting_down || now < w->restart_at)
            continue;
        if (spawn_worker(i) != 0)
            w->restart_at = now + BACKOFF_MAX_MS;
        else
            metrics_worker_restarted();
    }
}

static void kill_stuck(int64_t now) {
    for (int i = 0; i < m.n; i++) {
        worker *w = &m.w[i];
        if (w->pid && now - w->last_heard > STUCK_MS) {
            log_error("worker %d (pid %ld) sent no heartbeat for %lld ms: killing it", i + 1,
                      (long)w->pid, (long long)(now - w->last_heard));
            kill(w->pid, SIGKILL);
            w->last_heard = now; /* once; its death restarts it */
        }
    }
}

/* ---- signals ------------------------------------------------------------------ */

static void close_listeners(void) {
    size_t total = (m.shared ? 1 : (size_t)m.n) * m.nfds;
    for (size_t k = 0; k < total; k++)
        close(m.fds[k]);
    m.nfds = 0;
}

static void begin_shutdown(int signo, const char *why) {
    if (m.shutting_down) {
        if (signo == SIGTERM || signo == SIGINT) /* again: workers close everything */
            signal_workers(SIGTERM);
        return;
    }
    m.shutting_down = true;
    m.shutdown_deadline =
        clock_monotonic_ms() + settings()->shutdown_grace_ms + KILL_AFTER_GRACE_MS;
    close_listeners(); /* else the kernel goes on queueing connections nobody accepts */
    metrics_listener_close();
    notify_send("STOPPING=1");
    log_info("%s: stopping %d worker(s)", why, running_workers());
    signal_workers(SIGTERM);
}

/* Before the first READY=1, systemd hears nothing of reloads. */
static void reload_ready(void) { status_to_systemd(m.announced_ready ? "READY=1" : ""); }

/* Reads the file (in a child process: a FIFO or a slow parse stalls
 * nobody) and makes it the configuration in force: sent to every running
 * worker before its HUP, inherited by every worker started later. */
static int load_next_config(void) {
    config *next = malloc(sizeof *next);
    config_errors *errs = malloc(sizeof *errs);
    int r = -1;
    if (!next || !errs)
        log_error("reload: out of memory; keeping the running configuration");
    else if (config_load_in_child(settings_path(), next, errs, CONFIG_READ_TIMEOUT_MS) != 0)
        log_reload_errors(errs);
    else
        r = 0;
    if (r == 0) {
        settings_prepare_reload(next, true); /* our sockets are bound for good */
        settings_replace(next);              /* shutdown_grace, the SIGKILL backstop, follows */
        for (int i = 0; i < m.n; i++) {
            int e = m.w[i].pid ? config_send(m.w[i].notify_fd, settings()) : 0;
            if (e)
                log_warn("worker %d: cannot send it the configuration: %s", i + 1, strerror(-e));
        }
    }
    free(next);
    free(errs);
    return r;
}

/* Every process reopens its own log.file on the HUP, the workers too when
 * the file is invalid: they are sent no configuration then, and keep theirs. */
static void reload(void) {
    if (m.announced_ready)
        notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
                    (unsigned long long)notify_monotonic_usec());
    log_reopen(settings()->log_file); /* logrotate moved it: the reload's lines go to the new */
    bool loaded = !settings_path() || load_next_config() == 0;
    metrics_reload_done(loaded && settings_path());
    log_reopen(settings()->log_file); /* the reload changed log.file */
    if (!loaded) {
        signal_workers(SIGHUP);
        reload_ready();
        return;
    }
    log_info("SIGHUP: reloading %d worker(s)", running_workers());
    for (int i = 0; i < m.n; i++)
        m.w[i].awaiting_reload = m.w[i].pid != 0;
    m.reloading = true;
    m.reload_deadline = clock_monotonic_ms() + RELOAD_WAIT_MS;
    signal_workers(SIGHUP);
}

static void finish_reload(int64_t now) {
    if (!m.reloading)
        return;
    bool waiting = false;
    for (int i = 0; i < m.n; i++)
        waiting |= m.w[i].pid && m.w[i].awaiting_reload;
    if (waiting && now < m.reload_deadline)
        return;
    if (waiting)
        log_warn("reload: not every worker answered within %d s", RELOAD_WAIT_MS / 1000);
    m.reloading = false;
    reload_ready();
}

static void on_signal(void) {
    struct signalfd_siginfo si;
    while (read(m.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        int signo = (int)si.ssi_signo;
        if (signo == SIGCHLD) {
            reap();
            continue;
        }
        switch (signal_action_of(signo)) {
        case SIGNAL_STOP:
            begin_shutdown(signo, strsignal(signo));
            break;
        case SIGNAL_RELOAD:
            if (m.shutting_down)
                log_info("SIGHUP ignored: stopping");
            else
                reload();
            break;
        case SIGNAL_STATS:
            signal_workers(SIGUSR1);
            log_totals();
            break;
        case SIGNAL_NONE:
            break;
        }
    }
}

/* ---- the loop ------------------------------------------------------------------ */

static int open_signalfd(void) {
    sigset_t set;
    server_signal_set(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    m.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return m.sigfd < 0 ? -1 : 0;
}

static int64_t next_deadline(int64_t now, int64_t next_status, int64_t next_watchdog) {
    int64_t at = next_status < next_watchdog ? next_status : next_watchdog;
    for (int i = 0; i < m.n; i++) {
        if (!m.w[i].pid && !m.shutting_down && m.w[i].restart_at < at)
            at = m.w[i].restart_at;
        if (m.w[i].pid && !m.shutting_down && m.w[i].last_heard + STUCK_MS + 1 < at)
            at = m.w[i].last_heard + STUCK_MS + 1;
    }
    if (m.reloading && m.reload_deadline < at)
        at = m.reload_deadline;
    if (m.shutting_down && !m.killed && m.shutdown_deadline < at)
        at = m.shutdown_deadline;
    return at < now ? now : at;
}

static void poll_once(int64_t timeout_ms) {
    struct pollfd pfd[1 + 1024];
    int map[1 + 1024];
    nfds_t n = 0;
    pfd[n].fd = m.sigfd;
    pfd[n++].events = POLLIN;
    for (int i = 0; i < m.n; i++) {
        if (m.w[i].pid && m.w[i].notify_fd >= 0) {
            map[n] = i;
            pfd[n].fd = m.w[i].notify_fd;
            pfd[n++].events = POLLIN;
        }
    }
    int r = poll(pfd, n, (int)(timeout_ms > 60000 ? 60000 : timeout_ms));
    if (r < 0) {
        if (errno != EINTR)
            log_error("poll: %s", strerror(errno));
        return;
    }
    for (nfds_t k = 1; k < n; k++)
        if (pfd[k].revents && m.w[map[k]].pid)
            read_messages(&m.w[map[k]]);
    if (pfd[0].revents)
        on_signal();
}

static void announce_ready(void) {
    m.announced_ready = true;
    daemon_ready();
    log_started();
    status_to_systemd("READY=1");
    log_info("%d workers ready, sharing the listeners through %s", m.n,
             m.shared ? "one socket each (shared)" : "SO_REUSEPORT sockets, one set per worker");
}

int master_run(int nworkers, int *fds, size_t nfds, bool shared) {
    signal(SIGPIPE, SIG_IGN); /* a closed stderr or -d pipe is an error, not a death */
    signal(SIGCHLD, SIG_DFL); /* SIG_IGN inherited through exec would hide deaths */
    m.n = nworkers;
    m.fds = fds;
    m.nfds = nfds;
    m.shared = shared;
    m.w = calloc((size_t)nworkers, sizeof *m.w);
    int64_t wd = notify_watchdog_interval_ms();
    if (!m.w || open_signalfd() != 0) {
        log_error("cannot start the main process: %s", strerror(errno));
        return 1;
    }
    for (int i = 0; i < m.n; i++)
        m.w[i] = (worker){.notify_fd = -1,
                          .restarts =
                              BACKOFF_POLICY(BACKOFF_FIRST_MS, BACKOFF_MAX_MS, HEALTHY_AFTER_MS)};
    for (int i = 0; i < m.n && !m.shutting_down; i++)
        if (spawn_worker(i) != 0) {
            m.failed = true;
            begin_shutdown(SIGTERM, "cannot start the workers");
        }
    publish_own_figures();
    int64_t now = clock_monotonic_ms(), started = now;
    int64_t next_status = now + STATUS_EVERY_MS;
    int64_t next_watchdog = wd ? now : INT64_MAX;
    while (!m.shutting_down || running_workers() > 0) {
        poll_once(next_deadline(now, next_status, next_watchdog) - now);
        now = clock_monotonic_ms();
        if (!m.announced_ready && !m.shutting_down && all_ready())
            announce_ready();
        if (!m.announced_ready && !m.shutting_down && now - started > START_TIMEOUT_MS) {
            log_error("the workers did not all get ready within %d s", START_TIMEOUT_MS / 1000);
            m.failed = true;
            begin_shutdown(SIGTERM, "start timeout");
        }
        finish_reload(now);
        if (now >= next_watchdog) {
            notify_send("WATCHDOG=1");
            next_watchdog = now + wd;
        }
        if (now >= next_status) {
            publish_own_figures();
            status_to_systemd("");
            next_status = now + STATUS_EVERY_MS;
        }
        if (m.shutting_down && now >= m.shutdown_deadline && !m.killed) {
            log_warn("workers still running %d ms after shutdown_grace: killing them",
                     KILL_AFTER_GRACE_MS);
            m.killed = true;
            signal_workers(SIGKILL);
        }
        if (!m.shutting_down) {
            kill_stuck(now);
            restart_due(now);
        }
    }
    close(m.sigfd);
    free(m.w);
    log_info("stopped");
    return m.failed ? 1 : 0;
}
