/* Logging: stderr (with a timestamp, or with "<N>" syslog priority prefixes
 * when stderr is the systemd journal: JOURNAL_STREAM set) or syslog (in
 * --daemon mode).
 *
 * Owns the target, the level in force and the worker prefix; settings sets
 * the level a reload brings. */
#ifndef COECHO_LOG_H
#define COECHO_LOG_H

#include "server/config.h"

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG };

void log_open(enum log_target target);
void log_set_level(enum log_level level);
/* Every message of this process starts "worker ID: " (workers > 1). */
void log_set_worker(int id);
enum log_level log_get_level(void);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
