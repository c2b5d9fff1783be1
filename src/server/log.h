/* Logging: stderr (with a timestamp, or with "<N>" syslog priority prefixes
 * when stderr is the systemd journal: JOURNAL_STREAM set) or syslog (in
 * --daemon mode); or, when log.file is set, that file, with timestamps.
 * Lines are text, or with log.format json one JSON object each (for
 * syslog, the message is the object; for the journal, "<N>" comes first).
 *
 * Owns the target, the log file's descriptor, the level and format in
 * force and the worker id; settings sets the level and format a reload
 * brings. Formats in static buffers: single-threaded callers only. */
#ifndef COECHO_LOG_H
#define COECHO_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "server/config.h"

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG };

/* The socket syslog(3) sends to (glibc's _PATH_LOG). */
#define LOG_SYSLOG_SOCKET "/dev/log"
/* For tests only: another socket for log_check_syslog to try. */
#define LOG_SYSLOG_SOCKET_ENV "COECHOD_SYSLOG_SOCKET"

void log_open(enum log_target target);
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* Every message of this process starts "worker ID: " (workers > 1). */
void log_set_worker(int id);
enum log_level log_get_level(void);

/* Whether syslog can take messages: connects a socket to LOG_SYSLOG_SOCKET
 * (or $COECHOD_SYSLOG_SOCKET) as syslog(3) would, and closes it. 0, or
 * -errno with err naming the socket and the reason. */
int log_check_syslog(char *err, size_t errlen);

/* log.file: from now on every line is appended to path (absolute), whatever
 * the target, in the stderr format with timestamps, by one write(2) a line
 * (O_APPEND, so processes sharing it never mix their lines). The file is
 * created 0640 if missing; a symbolic link, a file with other links or
 * anything but a regular file is refused. 0, or -errno with err. */
int log_use_file(const char *path, char *err, size_t errlen);

/* The checks log_use_file makes, creating nothing: path, if it exists, is
 * a regular file with a single link, not a symbolic link; else its
 * directory exists. 0, or -errno with err (for coechod -t). */
int log_check_file(const char *path, char *err, size_t errlen);

/* SIGHUP (logrotate moved the file, or log.file changed): opens path again
 * unless it still names the file open; "" goes back to the target. On
 * failure the file open stays in use, and the reason is logged. */
void log_reopen(const char *path);

/* Until this is called (once the process serves), lines of level warn and
 * error go to stderr too while a file is in use, so that a start that fails
 * says why where it was started. */
void log_started(void);

/* A closed connection, for log.connections: one line at level info,
 * written whatever log.level is (like an access log). */
typedef struct log_close {
    const char *peer, *local; /* "127.0.0.1:50000", "[::1]:7007" */
    int64_t duration_ms;
    uint64_t bytes_in, bytes_out;
    const char *reason; /* "eof", "reset", "error", "idle_timeout", ... */
    const char *error;  /* the errno's name ("ECONNRESET"), or NULL */
} log_close;

void log_connection_close(const log_close *e);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
