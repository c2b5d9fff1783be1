#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/regfile.h"

enum {
    MSG_SIZE = 1024,
    LINE_SIZE = MSG_SIZE + 128,
    ERR_SIZE = 4096 + 256,
    ESCAPED_SIZE = 6 * MSG_SIZE,                 /* a message as JSON: \u00XX is 6 bytes */
    JSON_LINE_SIZE = ESCAPED_SIZE + 2 * MSG_SIZE /* the other fields */
};

static struct {
    enum log_target target;
    enum log_level level;
    bool journal;    /* stderr is the journal: it adds timestamps itself */
    bool started;    /* log_started(): a file alone gets the lines */
    int file_fd;     /* log.file, or -1 */
    enum log_format format;
    int worker;      /* in a worker process, its id; else 0 */
    char prefix[32]; /* "worker 2: " in a worker process (text) */
} logger = {LOG_TO_STDERR, LOG_LEVEL_INFO, false, false, -1, LOG_FORMAT_TEXT, 0, ""};

static const int syslog_priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

void log_open(enum log_target target) {
    logger.target = target;
    logger.journal = getenv("JOURNAL_STREAM") != NULL;
    if (target == LOG_TO_SYSLOG)
        openlog("coechod", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(enum log_level level) { logger.level = level; }
void log_set_format(enum log_format format) { logger.format = format; }
void log_set_worker(int id) {
    logger.worker = id;
    snprintf(logger.prefix, sizeof logger.prefix, "worker %d: ", id);
}
enum log_level log_get_level(void) { return logger.level; }
void log_started(void) { logger.started = true; }

/* ---- syslog's socket ------------------------------------------------------- */

static int connect_unix(const struct sockaddr_un *sa, int type) {
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

int log_check_syslog(char *err, size_t errlen) {
    const char *path = getenv(LOG_SYSLOG_SOCKET_ENV);
    if (!path || !path[0])
        path = LOG_SYSLOG_SOCKET;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int r = -ENAMETOOLONG;
    if (strlen(path) < sizeof sa.sun_path) {
        memcpy(sa.sun_path, path, strlen(path) + 1);
        r = connect_unix(&sa, SOCK_DGRAM);
        if (r == -EPROTOTYPE) /* a stream socket: syslog(3) tries that next */
            r = connect_unix(&sa, SOCK_STREAM);
    }
    if (r)
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
    return r;
}

/* ---- log.file --------------------------------------------------------------- */

/* The directory part of an absolute path: "/" for "/a". */
static void parent_dir(const char *path, char *dir, size_t size) {
    const char *slash = strrchr(path, '/');
    int len = slash && slash != path ? (int)(slash - path) : 1;
    snprintf(dir, size, "%.*s", len, path);
}

int log_check_file(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISLNK(st.st_mode))
            return regfile_check(&st, path, err, errlen);
        snprintf(err, errlen, "%s: is a symbolic link; refusing", path);
        return -ELOOP;
    }
    int e = errno;
    char dir[ERR_SIZE];
    parent_dir(path, dir, sizeof dir);
    if (e == ENOENT && stat(dir, &st) != 0)
        e = errno;
    else if (e == ENOENT && !S_ISDIR(st.st_mode))
        e = ENOTDIR;
    else if (e == ENOENT)
        return 0; /* created at start */
    snprintf(err, errlen, "%s: %s: %s", path, dir, strerror(e));
    return -e;
}

/* Opens path to append to (see regfile_open). The descriptor is above 2,
 * so that --daemon's /dev/null on the standard streams never replaces it.
 * The descriptor, or -errno with err. */
static int open_file(const char *path, char *err, size_t errlen) {
    int fd = regfile_open(AT_FDCWD, path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY, 0640, path,
                          err, errlen);
    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    int e = errno;
    close(fd);
    if (high < 0) {
        snprintf(err, errlen, "%s: fcntl: %s", path, strerror(e));
        return -e;
    }
    return high;
}

static void use_fd(int fd) {
    if (logger.file_fd >= 0)
        close(logger.file_fd);
    logger.file_fd = fd;
}

int log_use_file(const char *path, char *err, size_t errlen) {
    if (!path[0]) {
        use_fd(-1);
        return 0;
    }
    int fd = open_file(path, err, errlen);
    if (fd < 0)
        return fd;
    use_fd(fd);
    return 0;
}

/* Whether path (not followed) names the file open as log.file. */
static bool names_open_file(const char *path) {
    struct stat opened, named;
    if (logger.file_fd < 0 || fstat(logger.file_fd, &opened) != 0 || lstat(path, &named) != 0)
        return false;
    return opened.st_dev == named.st_dev && opened.st_ino == named.st_ino;
}

void log_reopen(const char *path) {
    if (!path[0]) {
        if (logger.file_fd >= 0)
            log_info("log.file is now unset: logging to %s",
                     logger.target == LOG_TO_SYSLOG ? "syslog" : "standard error");
        use_fd(-1);
        return;
    }
    if (names_open_file(path))
        return;
    char err[ERR_SIZE];
    int fd = open_file(path, err, sizeof err);
    if (fd < 0) {
        log_error("log.file %s; logging on %s", err,
                  logger.file_fd >= 0 ? "to the file open until now" : "as before");
        return;
    }
    use_fd(fd);
    log_info("log.file %s: opened", path);
}

/* ---- lines ----------------------------------------------------------------- */

/* One write(2) a line: with O_APPEND, the lines of the processes sharing
 * the file never mix. What cannot be written is lost: there is nowhere
 * left to say so. */
static void write_line(int fd, const char *line, size_t len) {
    ssize_t n;
    while ((n = write(fd, line, len)) < 0 && errno == EINTR)
        ;
}

/* The length snprintf meant, cut to the buffer, the last byte a line break
 * (a line cut short is still one line). */
static size_t end_line(char *line, size_t size, int n) {
    size_t len = n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
    if (len > 0)
        line[len - 1] = '\n';
    return len;
}

/* A JSON object: time (UTC, ms), level, pid, worker (in a worker), the
 * message, then the event's fields (",\"k\":v..." or ""). line has
 * JSON_LINE_SIZE bytes: the message escaped takes at most ESCAPED_SIZE,
 * so the object always closes. */
static size_t format_json(char *line, enum log_level level, const char *msg, const char *fields) {
    static char escaped[ESCAPED_SIZE];
    struct timespec ts;
    struct tm tm;
    char stamp[32], worker[32] = "";
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (logger.worker)
        snprintf(worker, sizeof worker, ",\"worker\":%d", logger.worker);
    json_escape(escaped, sizeof escaped, msg, strlen(msg));
    int n = snprintf(line, JSON_LINE_SIZE,
                     "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"pid\":%d%s,\"msg\":\"%s\"%s}\n",
                     stamp, ts.tv_nsec / 1000000, config_log_level_name(level), (int)getpid(),
                     worker, escaped, fields);
    return end_line(line, JSON_LINE_SIZE, n);
}

/* The line for a file or the terminal: stamped (text: "YYYY-MM-DD
 * HH:MM:SS.mmm coechod[PID] LEVEL: message", local time), or with
 * "<N>" for the journal, which stamps lines itself. */
static size_t format_line(char *line, enum log_level level, const char *msg, const char *fields,
                          bool journal) {
    size_t at = 0;
    if (journal)
        at = (size_t)snprintf(line, JSON_LINE_SIZE, "<%d>", syslog_priority[level]);
    if (logger.format == LOG_FORMAT_JSON)
        return at + format_json(line + at, level, msg, fields);
    if (journal)
        return at + end_line(line + at, LINE_SIZE,
                             snprintf(line + at, LINE_SIZE, "%s%s\n", logger.prefix, msg));
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    int n =
        snprintf(line, LINE_SIZE, "%s.%03ld coechod[%d] %s: %s%s\n", stamp, ts.tv_nsec / 1000000,
                 (int)getpid(), config_log_level_name(level), logger.prefix, msg);
    return end_line(line, LINE_SIZE, n);
}

static void write_formatted(int fd, enum log_level level, const char *msg, const char *fields,
                            bool journal) {
    static char line[JSON_LINE_SIZE + 16];
    size_t len = format_line(line, level, msg, fields, journal);
    if (len > 0)
        write_line(fd, line, len);
}

static void write_syslog(enum log_level level, const char *msg, const char *fields) {
    static char line[JSON_LINE_SIZE];
    if (logger.format == LOG_FORMAT_TEXT) {
        syslog(syslog_priority[level], "%s%s", logger.prefix, msg);
        return;
    }
    size_t len = format_json(line, level, msg, fields);
    if (len > 0) {
        line[len - 1] = '\0'; /* syslog ends the message itself */
        syslog(syslog_priority[level], "%s", line);
    }
}

/* msg (without the worker prefix) to wherever lines go now. */
static void emit(enum log_level level, const char *msg, const char *fields) {
    if (logger.file_fd >= 0) {
        write_formatted(logger.file_fd, level, msg, fields, false);
        if (!logger.started && level <= LOG_LEVEL_WARN)
            write_formatted(STDERR_FILENO, level, msg, fields, logger.journal);
        return;
    }
    if (logger.target == LOG_TO_SYSLOG)
        write_syslog(level, msg, fields);
    else
        write_formatted(STDERR_FILENO, level, msg, fields, logger.journal);
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if (level > logger.level)
        return;
    char msg[MSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg, "");
}

void log_connection_close(const log_close *e) {
    char msg[MSG_SIZE], fields[MSG_SIZE];
    long long ms = (long long)e->duration_ms;
    const char *error = e->error ? e->error : "";
    /* Addresses come from inet_ntop, reasons and errors are our names:
     * nothing in them needs escaping. */
    if (logger.format == LOG_FORMAT_JSON) {
        snprintf(fields, sizeof fields,
                 ",\"event\":\"close\",\"peer\":\"%s\",\"local\":\"%s\",\"duration_s\":%lld.%03lld,"
                 "\"bytes_in\":%llu,\"bytes_out\":%llu,\"reason\":\"%s\"%s%s%s",
                 e->peer, e->local, ms / 1000, ms % 1000, (unsigned long long)e->bytes_in,
                 (unsigned long long)e->bytes_out, e->reason, e->error ? ",\"error\":\"" : "",
                 error, e->error ? "\"" : "");
        emit(LOG_LEVEL_INFO, "connection closed", fields);
        return;
    }
    snprintf(msg, sizeof msg,
             "close peer=%s local=%s duration_s=%lld.%03lld bytes_in=%llu bytes_out=%llu "
             "reason=%s%s%s",
             e->peer, e->local, ms / 1000, ms % 1000, (unsigned long long)e->bytes_in,
             (unsigned long long)e->bytes_out, e->reason, e->error ? " error=" : "", error);
    emit(LOG_LEVEL_INFO, msg, "");
}
