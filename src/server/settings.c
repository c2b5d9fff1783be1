#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/settings.h"

#include <stdio.h>
#include <string.h>

#include "server/log.h"

static struct {
    config cfg;
    const char *path;
    listen_addr cli_listen[CONFIG_MAX_LISTEN];
    size_t ncli_listen; /* 0: the file's listeners */
    bool cli_log_level;
    const char *listeners_owner;
    int worker;
    unsigned generation; /* changes with the configuration in force */
} s;

void settings_init(const config *cfg, const char *path) {
    s.cfg = *cfg;
    s.path = path;
    s.generation++;
}

const config *settings(void) { return &s.cfg; }
unsigned settings_generation(void) { return s.generation; }
const char *settings_path(void) { return s.path; }

void settings_override_listeners(const listen_addr *addrs, size_t n) {
    memcpy(s.cli_listen, addrs, n * sizeof *addrs);
    s.ncli_listen = n;
    memcpy(s.cfg.listen, addrs, n * sizeof *addrs);
    s.cfg.nlisten = n;
    memset(s.cfg.where.listen, 0, sizeof s.cfg.where.listen);   /* not the file's */
    memset(s.cfg.listen_access, 0, sizeof s.cfg.listen_access); /* nor their access lists */
    s.generation++;
}

bool settings_listeners_from_cli(void) { return s.ncli_listen > 0; }

void settings_override_log_level(enum log_level level) {
    s.cfg.log_level = level;
    s.cli_log_level = true;
}

void settings_set_listeners_owner(const char *owner) { s.listeners_owner = owner; }
const char *settings_listeners_owner(void) { return s.listeners_owner; }
void settings_set_worker(int id) { s.worker = id; }
int settings_worker(void) { return s.worker; }

static bool same_listen(const config *a, const config *b) {
    return a->nlisten == b->nlisten &&
           memcmp(a->listen, b->listen, a->nlisten * sizeof a->listen[0]) == 0;
}

/* One warning naming every change that waits for the next start. */
static void warn_restart_needed(const config *next, bool listen_needs_restart) {
    const char *keys[CONFIG_START_ONLY_KEYS + 1];
    size_t n = config_start_only_changes(&s.cfg, next, keys, CONFIG_START_ONLY_KEYS);
    if (listen_needs_restart && !s.listeners_owner && !same_listen(next, &s.cfg))
        keys[n++] = "listen";
    if (!n)
        return;
    char list[128] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", keys[i]);
    log_warn("changes to %s take effect at the next start", list);
}

void settings_prepare_reload(config *next, bool listen_needs_restart) {
    if (s.ncli_listen) {
        memcpy(next->listen, s.cli_listen, sizeof s.cli_listen);
        next->nlisten = s.ncli_listen;
        memset(next->where.listen, 0, sizeof next->where.listen);
        memset(next->listen_access, 0, sizeof next->listen_access);
    }
    if (s.cli_log_level)
        next->log_level = s.cfg.log_level;
    config_keep_fixed(next, &s.cfg);
    warn_restart_needed(next, listen_needs_restart);
}

void settings_replace(const config *next) {
    s.cfg = *next;
    s.generation++;
    log_set_level(s.cfg.log_level);
    log_set_format(s.cfg.log_format);
}
