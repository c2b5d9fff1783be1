#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/signals.h"

const signal_entry server_signals[] = {
    {SIGTERM, SIGNAL_STOP},
    {SIGINT, SIGNAL_STOP},
    {SIGHUP, SIGNAL_RELOAD},
    {SIGUSR1, SIGNAL_STATS},
};
const size_t server_signal_count = sizeof server_signals / sizeof server_signals[0];

enum signal_action signal_action_of(int signo) {
    for (size_t i = 0; i < server_signal_count; i++)
        if (server_signals[i].signo == signo)
            return server_signals[i].action;
    return SIGNAL_NONE;
}

void server_signal_set(sigset_t *set) {
    sigemptyset(set);
    for (size_t i = 0; i < server_signal_count; i++)
        sigaddset(set, server_signals[i].signo);
}
