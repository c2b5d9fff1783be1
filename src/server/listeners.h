/* Listening sockets and their accept tasks.
 *
 * Owns the listener table: opening (configured, passed by systemd or by
 * the main process, or a worker's SO_REUSEPORT copy), the accept tasks and
 * their restarts with backoff, reloads of the listen list, and closing. An
 * accept task admits each client through conn and starts its handler; a
 * UDP listener's task (still called its accept task here) serves the
 * datagrams itself (udp.h). */
#ifndef COECHO_LISTENERS_H
#define COECHO_LISTENERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/rt.h"
#include "server/config.h"

/* Opens every listener of cfg (reuse_port: the first socket of an
 * SO_REUSEPORT group per address, which checks that no other process
 * listens there). Only the built-in [::1] default may be missing, on a
 * machine without IPv6 (a warning). Logs each "listening on"; 0, or
 * -errno with the reason logged. */
int listeners_open(const config *cfg, bool reuse_port);
/* Whether cfg listens on the built-in defaults, of which [::1] may be
 * missing. */
bool listeners_are_defaults(const config *cfg);
/* Binds a socket to addr as a listener would be (SO_REUSEADDR, IPv6
 * only), without listen(2), and closes it: 0, or -errno (EADDRINUSE: a
 * listener holds the port; EADDRNOTAVAIL: not an address of this host). */
int listeners_try_bind(const listen_addr *addr);

/* A listening socket for addr outside the table (the metrics listener),
 * bound as the listeners are, non-blocking: the descriptor, or -errno
 * with err. */
int listeners_open_extra(const listen_addr *addr, int backlog, char *err, size_t errlen);

/* In a forked worker: drops the table inherited from the main process
 * (whose sockets it closes or adopts by itself), closing nothing. */
void listeners_forget(void);

/* Takes over a listening socket opened by someone else (systemd, the main
 * process), whose connections start with a PROXY header if proxy_protocol;
 * its bound address, for the log. */
const char *listeners_adopt(int fd, bool proxy_protocol);
/* Whether cfg has the address fd is bound to with proxy_protocol (for a
 * socket passed by systemd). */
bool listeners_configured_proxy(const config *cfg, int fd);

/* The listeners open now: their number, and (before any reload, while
 * they fill the first slots) the i-th's socket and bound address
 * ("127.0.0.1:7007", "[::1]:7007"). */
size_t listeners_count(void);
size_t listeners_udp_count(void); /* of those, the UDP ones */
int listeners_fd(size_t i);
bool listeners_proxy_protocol(size_t i);
const char *listeners_bound(size_t i);

/* Another socket bound like the i-th, joining its SO_REUSEPORT group (a
 * worker's own). The descriptor, or -errno with err. */
int listeners_open_copy(size_t i, int backlog, char *err, size_t errlen);

/* Starts the accept tasks, children of parent (the reaper). */
void listeners_start(co_tid parent);
/* Closes every listener: accept tasks are cancelled and close their own. */
void listeners_stop(void);
/* A reload: opens the listeners next adds first (if one fails, closes
 * those and returns -errno, logged: nothing changed), then closes the ones
 * it drops; the ones kept take its backlog. */
int listeners_apply(const config *next);

/* An exited task: true if it was an accept task (restarted after a
 * backoff unless stopping). */
bool listeners_task_exited(co_tid tid, int status, bool stopping);
/* Restarts the accept tasks that are due; the next time one will be, or
 * `at` if sooner. */
int64_t listeners_restart_due(int64_t now, int64_t at);
/* Whether any listener is still open (or closing). */
bool listeners_any(void);
/* Accepts that failed (descriptors ran out) or whose handler could not
 * start; of those, the handlers that could not start (no memory, no
 * mappings: the connection was closed and accepting paused for 100 ms). */
uint64_t listeners_accept_errors(void);
uint64_t listeners_spawn_failures(void);

/* What a failed accept4(2) means for the task accepting: another try
 * (a client gone, a firewall refusal, a signal), an empty backlog, the
 * process out of descriptors or memory (pause, then try again), or an
 * error that ends the task. */
enum accept_failure { ACCEPT_RETRY, ACCEPT_DRAINED, ACCEPT_EXHAUSTED, ACCEPT_FATAL };
enum accept_failure listeners_accept_failure(int err);

#endif
