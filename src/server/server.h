/* coechod's process-wide state, shared by the supervisor, the accept tasks
 * and the connection handlers (all tasks of one runtime, one thread). */
#ifndef COECHO_SERVER_H
#define COECHO_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "rt/list.h"
#include "rt/rt.h"
#include "server/config.h"
#include "server/ipcount.h"

typedef struct listener {
    bool used;
    bool closing;         /* removed or shutting down: the accept task closes fd */
    int fd;
    listen_addr addr;     /* as configured (port may be 0) */
    char bound[64];       /* with the real port */
    co_tid accept_tid;    /* 0 while waiting to be restarted */
    int64_t restart_at;   /* when a dead accept task is due to restart */
    int64_t backoff_ms;
} listener;

typedef struct server_stats {
    uint64_t accepted;
    uint64_t closed;
    uint64_t rejected_per_ip;
    uint64_t timed_out;
    uint64_t accept_errors;
    uint64_t bytes_in;
    uint64_t bytes_out;
} server_stats;

/* One live client connection; lives in its handler's stack frame. */
typedef struct connection {
    list_link link; /* in server.connections */
    co_tid tid;
    int fd;
    ip_key peer;
} connection;

typedef struct server {
    config cfg;                 /* applies to connections accepted from now on */
    const char *config_path;    /* NULL: built-in defaults */
    bool cli_listeners;         /* -l given: they replace the file's listeners */
    const char *listeners_owner; /* "systemd" or "the main process" passed the
                                    listeners: reloads keep them; NULL: ours */
    int worker_id;              /* 1..N in a worker process, 0 otherwise */
    bool cli_log_level;         /* --log-level given: reloads keep it */
    listen_addr cli_listen[CONFIG_MAX_LISTEN];
    size_t ncli_listen;
    listener listeners[CONFIG_MAX_LISTEN];
    co_tid supervisor;
    size_t active;              /* connections open now */
    list_link connections;
    ipcount per_ip;
    server_stats stats;
    co_chan *slot_gate;         /* closed (and renewed) to wake paused accept tasks */
    size_t accepts_paused;
    bool shutting_down;
    int64_t shutdown_deadline;  /* co_now() ms after which connections are killed */
    bool connections_killed;
} server;

extern server srv;

/* listener.c */
/* How a listening socket shares its port: not at all, or with SO_REUSEPORT
 * (one socket per worker), as the first of the group (which checks that
 * no other process listens there) or joining it. */
enum listen_sharing { LISTEN_ALONE, LISTEN_REUSEPORT_FIRST, LISTEN_REUSEPORT_JOIN };
int listener_open(listener *l, const listen_addr *addr, int backlog, enum listen_sharing sharing,
                  char *err, size_t errlen);
/* A socket passed by systemd (already bound and listening). */
void listener_adopt(listener *l, int fd);
int listener_start(listener *l);      /* spawns the accept task; 0 or -errno */
void listener_stop(listener *l);      /* closes it: kills the accept task, which closes fd */
void accept_gate_open(void);          /* a connection slot freed: wake paused accepts */

/* echo.c */
int echo_handle_client(void *arg);    /* arg: a malloc'd connection_start, freed here */
typedef struct connection_start {
    int fd;
    ip_key peer;
    int64_t idle_timeout_ms;
    size_t buffer_size;
} connection_start;
void echo_kill_all(void);
void echo_release_buffers(void);
/* Frees the cached buffers that went unused since the last call. */
void echo_trim_buffers(void);
size_t echo_cached_buffer_bytes(void);

/* supervisor.c */
int supervisor_run(void *arg);        /* the root task */
int server_run(void);                 /* the runtime with the supervisor; exit status */
void server_block_signals(void);      /* before the listeners open; the supervisor unblocks */
void server_log_stats(void);
void log_reload_errors(config_errors *errs); /* of srv.config_path; consumes errs */
/* What a reload does not change: -l listeners, --log-level, pid_file, user. */
void server_keep_fixed_settings(config *next);

/* master.c: workers > 1. fds: nworkers sets of nfds listening sockets, or
 * one set all share (shared); closed at shutdown. Returns the exit status. */
int master_run(int nworkers, int *fds, size_t nfds, bool shared);

#endif
