/* coechod configuration: the YAML file (libyaml) to a validated struct.
 *
 * Schema (every key optional; absent keys keep the built-in defaults):
 *   listen: list of { address: IP literal, port: 0-65535 (0 = ephemeral),
 *                     proxy_protocol: bool (default false),
 *                     protocol: tcp|udp (default tcp) }
 *   limits: { max_connections, max_connections_per_ip, per_ip_ipv6_prefix,
 *             idle_timeout, buffer_size, stack_size, backlog, udp_rate_limit }
 *   shutdown_grace: duration
 *   workers: integer >= 1 or "auto"
 *   log: { level: error|warn|info|debug, file: absolute path,
 *          connections: bool, format: text|json }
 *   pid_file: absolute path   user: string
 *   metrics: { address: IP literal (default 127.0.0.1), port: 0-65535 }
 *            (no port, or no metrics key: no metrics listener)
 *   access: list of "allow NETWORK" / "deny NETWORK" / "allow all" / "deny all"
 *           (first match wins; no match: allowed); a listen entry's own
 *           access list, when it has one, is checked instead
 * Durations take ms/s/m/h ("0" alone is allowed), sizes B/KiB/MiB (a bare
 * number is bytes). Errors name file:line:column, the key path and what was
 * expected. */
#ifndef COECHO_CONFIG_H
#define COECHO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "server/acl.h"

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

typedef struct listen_addr {
    struct sockaddr_storage addr; /* AF_INET or AF_INET6, port set */
    socklen_t addrlen;
    bool udp;            /* UDP echo (RFC 862) on a datagram socket; false: TCP */
    bool proxy_protocol; /* every connection starts with a PROXY header */
    char text[72];       /* "127.0.0.1:7007", "[::1]:7007", "udp://127.0.0.1:7007" */
} listen_addr;

#define CONFIG_MAX_LISTEN 64
/* Access rules in one configuration, the top-level list and every
 * listener's together. */
#define CONFIG_MAX_ACCESS_RULES 10000

/* An access list: rules [first, first + count) of config.access_rules.
 * set: the key was given (a listener's list, even empty, replaces the
 * top-level one). */
typedef struct access_list {
    uint16_t first, count;
    bool set;
} access_list;

/* Where a value was read: line and column in the file, from 1; line 0 when
 * it came from elsewhere (a default, -l). For the messages of coechod -t. */
typedef struct config_pos {
    unsigned line, column;
} config_pos;

typedef struct config_where {
    config_pos listen[CONFIG_MAX_LISTEN]; /* each entry */
    config_pos log_file, pid_file, user;  /* each value */
    config_pos metrics;                   /* the metrics mapping */
} config_where;

typedef struct config {
    listen_addr listen[CONFIG_MAX_LISTEN];
    size_t nlisten;
    uint32_t max_connections;        /* 1 - 10,000,000; default 10000 */
    uint32_t max_connections_per_ip; /* 0 = no limit; default 0 */
    uint32_t per_ip_ipv6_prefix;     /* the per-IP limit counts IPv6 per /N; 1-128; default 64 */
    int64_t idle_timeout_ms;         /* 0 = never; default 300 s; at most 24 h */
    size_t buffer_size;              /* 512 B - 16 MiB; default 16 KiB */
    size_t stack_size;               /* 16 KiB - 8 MiB; default 64 KiB */
    int backlog;                     /* 1 - 65535; default 1024 */
    uint32_t udp_rate_limit;         /* datagrams/s per source address; 0 = off; default 1000 */
    int64_t shutdown_grace_ms;       /* 0 - 1 h; default 10 s */
    int workers;                     /* 1 - 1024, 0 = "auto"; default 1 */
    bool reuse_port;                 /* workers > 1: a SO_REUSEPORT socket each; default true */
    enum log_level log_level;        /* default info */
    char log_file[4096];             /* absolute; "" = stderr or syslog */
    bool log_connections;            /* a line per closed connection; default false */
    enum log_format log_format;      /* default text */
    char pid_file[4096];             /* "" = none */
    char user[256];                  /* "" = keep the current user */
    bool metrics_enabled;            /* the metrics listener (GET /metrics); default off */
    listen_addr metrics;             /* its address, when enabled */
    access_list access;              /* the top-level list; empty by default */
    access_list listen_access[CONFIG_MAX_LISTEN];   /* listen[i]'s own list, if set */
    acl_rule access_rules[CONFIG_MAX_ACCESS_RULES]; /* every list's rules */
    uint32_t naccess_rules;
    config_where where; /* not a setting: where the file set them */
} config;

/* Collected error messages, one per line, each
 * "FILE:LINE:COLUMN: KEY.PATH: message". */
typedef struct config_errors {
    char text[8192];
    size_t len;
    int count;
} config_errors;

/* Built-in defaults: listen 127.0.0.1:7007 and [::1]:7007, limits above. */
void config_defaults(config *cfg);

/* The listeners of the defaults alone (a config is large to build for
 * them: every access rule's room). Their count. */
enum { CONFIG_DEFAULT_NLISTEN = 2 };
size_t config_default_listen(listen_addr out[CONFIG_DEFAULT_NLISTEN]);

/* Loads path over the defaults. Returns 0, or -1 with every error found in
 * errs (the file unreadable or not a regular file, YAML syntax, tabs,
 * nesting over 64 levels or over 1000 anchors or aliases, unknown keys with
 * a did-you-mean, duplicate keys, wrong types, out-of-range values). Never
 * blocks on a FIFO or device, and takes time linear in the file (at most
 * 1 MiB). cfg is only written on success. */
int config_load(const char *path, config *cfg, config_errors *errs);

/* Parses "ADDR:PORT" ("127.0.0.1:7007", "[::1]:7007"), or the same after
 "udp://" (or "tcp://"), as given to -l.
 * Returns 0, or -1 with a one-line reason in err. */
int config_parse_listen(const char *arg, listen_addr *out, char *err, size_t errlen);

/* "30s", "500ms", "5m", "1h", "0" -> milliseconds. 0 or -1. */
int config_parse_duration(const char *s, int64_t *ms);
/* "16KiB", "1MiB", "512B", "4096" -> bytes. 0 or -1. */
int config_parse_size(const char *s, size_t *bytes);

const char *config_log_level_name(enum log_level level);
/* "error", "warn", "info", "debug" -> level. 0 or -1. */
int config_parse_log_level(const char *s, enum log_level *level);
const char *config_log_format_name(enum log_format format);

/* The reload policy, kept in the schema's table. Some keys take effect only
 * at the next start: limits.stack_size, workers, reuse_port and metrics (and listen
 * with workers > 1, which the caller checks, as only it knows where the
 * sockets come from). Stores in keys the dotted names ("limits.stack_size",
 * static strings) of at most max of them whose values differ between
 * running and next, and returns how many differ (CONFIG_START_ONLY_KEYS at
 * most). */
enum { CONFIG_START_ONLY_KEYS = 5 };
size_t config_start_only_changes(const config *running, const config *next, const char **keys,
                                 size_t max);

/* Copies into next, from running, the settings fixed for the life of the
 * process: pid_file (written at start, removed at exit) and user (the
 * privileges are dropped once). */
void config_keep_fixed(config *next, const config *running);

/* Writes the configuration as YAML that config_load reads back to the same
 * struct (used by coechod -t). */
void config_dump(const config *cfg, FILE *out);

#endif
