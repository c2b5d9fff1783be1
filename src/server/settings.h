/* The configuration in force and where it came from: the file, the command
 * line's overrides (-l, --log-level), who passed the listeners (systemd,
 * the main process, or nobody) and which worker this process is.
 *
 * Owns all of it. Others read it through these functions; only the start
 * (main) and a reload (settings_replace) change it. */
#ifndef COECHO_SETTINGS_H
#define COECHO_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "server/config.h"

/* At start: the configuration (defaults, the file, then the flags) and the
 * file it came from (NULL: built-in defaults). */
void settings_init(const config *cfg, const char *path);

/* The configuration in force: applies to connections accepted from now on. */
const config *settings(void);
const char *settings_path(void);
/* A number that changes whenever the configuration in force does, for
 * those who keep something built from it (the compiled access lists). */
unsigned settings_generation(void);

/* -l: these listeners replace the file's, at start and at every reload. */
void settings_override_listeners(const listen_addr *addrs, size_t n);
bool settings_listeners_from_cli(void);
/* --log-level: kept across reloads. */
void settings_override_log_level(enum log_level level);

/* "systemd" or "the main process" passed the listening sockets: reloads
 * keep them. NULL (the default): they are ours. */
void settings_set_listeners_owner(const char *owner);
const char *settings_listeners_owner(void);

/* 1..N in a worker process, 0 otherwise. */
void settings_set_worker(int id);
int settings_worker(void);

/* Readies a configuration just read for a reload: what a reload never
 * changes (-l listeners, --log-level, pid_file, user) comes from the one in
 * force, and changes that wait for the next start are logged
 * (listen_needs_restart: listen is one of them, as with workers). */
void settings_prepare_reload(config *next, bool listen_needs_restart);

/* Makes next the configuration in force, and its log level and format the
 * log's. */
void settings_replace(const config *next);

#endif
