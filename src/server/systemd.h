/* systemd integration without libsystemd: both protocols are small, stable
 * and documented (sd_listen_fds(3), sd_notify(3)), and not linking
 * libsystemd keeps the attack surface small.
 *
 * Owns the notify socket (systemd's, or a worker's to the main process) and
 * the watchdog interval; the sockets it takes from LISTEN_FDS go to the
 * caller. */
#ifndef COECHO_SYSTEMD_H
#define COECHO_SYSTEMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_LISTEN_FDS_START 3

typedef struct passed_socket {
    int fd;
    char name[64]; /* from LISTEN_FDNAMES, "" when not given */
} passed_socket;

/* Socket activation: when LISTEN_PID is ours, takes the LISTEN_FDS
 * descriptors (from fd 3), checks each is a listening TCP socket, makes it
 * non-blocking and close-on-exec. Unsets LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES in any case. Returns how many (0: not activated), or -1
 * with a one-line reason in err. */
int systemd_take_sockets(passed_socket *out, size_t max, char *err, size_t errlen);

/* Reads NOTIFY_SOCKET ("/path" or "@abstract"), WATCHDOG_USEC and
 * WATCHDOG_PID. 0 (notify_enabled() says whether there is anything to
 * tell), or -1 with a reason in err for a malformed value. */
int notify_init(char *err, size_t errlen);
bool notify_enabled(void);
/* Sends one datagram of newline-separated KEY=VALUE lines. 0 (also when
 * there is no NOTIFY_SOCKET), or -errno. */
__attribute__((format(printf, 1, 2))) int notify_send(const char *fmt, ...);
/* How often to send WATCHDOG=1 (half of WATCHDOG_USEC), in ms; 0 when the
 * service has no watchdog or it watches another process. */
int64_t notify_watchdog_interval_ms(void);
/* In a worker: notifications go to the main process over fd (a connected
 * datagram socket), WATCHDOG=1 every heartbeat_ms; systemd's socket, if
 * any, is closed. */
void notify_use_fd(int fd, int64_t heartbeat_ms);
/* The descriptor notifications leave by, -1 if none (a forked worker
 * closes the main process's). */
int notify_fd(void);

/* CLOCK_MONOTONIC in microseconds, for RELOADING=1's MONOTONIC_USEC. */
uint64_t notify_monotonic_usec(void);

#endif
