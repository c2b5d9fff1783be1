/* The signals coechod acts on and what each means, one table for the
 * single process and for the main process of workers (as nginx keeps one
 * signals[] for master and workers). */
#ifndef COECHO_SIGNALS_H
#define COECHO_SIGNALS_H

#include <signal.h>
#include <stddef.h>

enum signal_action {
    SIGNAL_NONE,   /* not one of ours */
    SIGNAL_STOP,   /* TERM, INT: graceful stop; again: close everything */
    SIGNAL_RELOAD, /* HUP */
    SIGNAL_STATS   /* USR1: log statistics */
};

typedef struct signal_entry {
    int signo;
    enum signal_action action;
} signal_entry;

extern const signal_entry server_signals[];
extern const size_t server_signal_count;

enum signal_action signal_action_of(int signo);
/* Every signal of the table, in set (emptied first). */
void server_signal_set(sigset_t *set);

#endif
