#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
    enum log_target target;
    enum log_level level;
    bool journal; /* stderr is the journal: it adds timestamps itself */
    char prefix[32]; /* "worker 2: " in a worker process */
} logger = {LOG_TO_STDERR, LOG_LEVEL_INFO, false, ""};

static const int syslog_priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

void log_open(enum log_target target) {
    logger.target = target;
    logger.journal = getenv("JOURNAL_STREAM") != NULL;
    if (target == LOG_TO_SYSLOG)
        openlog("coechod", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(enum log_level level) { logger.level = level; }
void log_set_worker(int id) { snprintf(logger.prefix, sizeof logger.prefix, "worker %d: ", id); }
enum log_level log_get_level(void) { return logger.level; }

void log_msg(enum log_level level, const char *fmt, ...) {
    if (level > logger.level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t at = (size_t)snprintf(msg, sizeof msg, "%s", logger.prefix);
    vsnprintf(msg + at, sizeof msg - at, fmt, ap);
    va_end(ap);
    if (logger.target == LOG_TO_SYSLOG) {
        syslog(syslog_priority[level], "%s", msg);
        return;
    }
    if (logger.journal) {
        fprintf(stderr, "<%d>%s\n", syslog_priority[level], msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld coechod[%d] %s: %s\n", stamp, ts.tv_nsec / 1000000, (int)getpid(),
            config_log_level_name(level), msg);
}
