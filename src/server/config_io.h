/* The configuration across processes: a reload parses the file in a child
 * process, so that a slow or hostile file (a FIFO, a parse that takes long)
 * never stalls the loop that echoes, and a crash in the parser is the
 * child's; the main process of a multi-worker coechod hands the
 * configuration in force to its workers, so every worker, a restarted one
 * too, runs what the main process runs.
 *
 * Owns nothing beyond each job it is given; the caller owns the job and
 * waits for job->fd in its own loop (a task's co_wait_fd, or poll). */
#ifndef COECHO_CONFIG_IO_H
#define COECHO_CONFIG_IO_H

#include <stdint.h>
#include <sys/types.h>

#include "server/config.h"

/* How long a reload waits for the file to be read and parsed. */
enum { CONFIG_READ_TIMEOUT_MS = 10000 };

struct config_answer;

typedef struct config_job {
    const char *path; /* the caller's; must outlive the job */
    pid_t pid;        /* the parsing child; 0 once reaped */
    int fd;           /* its answer arrives here (non-blocking) */
    size_t got;       /* bytes of the answer read so far */
    struct config_answer *answer;
} config_job;

/* Starts parsing path in a child process. 0, or -errno (job untouched). */
int config_job_start(config_job *job, const char *path);

/* Reads what the child has sent, never blocking. 1: wait until job->fd is
 * readable and call again; 0: the file loaded into *cfg; -1: errs holds why
 * it did not (the file's errors, or the child's death). The job stays
 * allocated either way: end it with config_job_end. */
int config_job_collect(config_job *job, config *cfg, config_errors *errs);

/* Kills the child if it still runs, reaps it, closes and frees. */
void config_job_end(config_job *job);

/* The whole load, waiting for the child with poll(2) for up to timeout_ms;
 * for a caller with no loop of its own to keep going. 0 or -1 (errs). */
int config_load_in_child(const char *path, config *cfg, config_errors *errs, int64_t timeout_ms);

/* Sends cfg on the connected unix datagram socket fd, never waiting: a
 * sealed memory file holding it, passed with a datagram that marks it as
 * a configuration. 0 or -errno. */
int config_send(int fd, const config *cfg);

/* Takes the newest configuration queued on fd by config_send, discarding
 * older ones. 1 with *cfg filled, 0 when none is queued, or -errno. */
int config_recv_latest(int fd, config *cfg);

#endif
