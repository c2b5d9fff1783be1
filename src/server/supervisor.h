/* The supervisor: the root task and reaper of a single-process coechod (or
 * of one worker). It reaps accept tasks and connection handlers, and through
 * its signal task stops (TERM/INT), reloads (HUP) and reports (USR1).
 *
 * Owns the shutdown (its deadline, the kill of what remains), the reload
 * task and the systemd notifications of this process. */
#ifndef COECHO_SUPERVISOR_H
#define COECHO_SUPERVISOR_H

#include "server/config.h"

/* The runtime with the supervisor as its root task, on the listeners
 * already open; the process's exit status. */
int server_run(void);

/* Blocks the signals of the table before the listeners open; the
 * supervisor unblocks them once its loop watches them. */
void server_block_signals(void);

/* Logs a failed reload of the settings' file; consumes errs. */
void log_reload_errors(config_errors *errs);

#endif
