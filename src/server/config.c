/* coechod configuration: its schema (the tables of keys below, checked and
 * read by src/server/yaml_schema), the built-in defaults, the dump, and the
 * small parsers of the public API. What is generic about reading YAML by a
 * schema lives in yaml_schema.c, and HOST:PORT in src/common/hostport.c. */
#ifdef HAVE_CONFIG_H
#include <config.h> /* autoconf's: "config.h" would find server/config.h, next to this file */
#endif
#include "server/config.h"
#include "common/hostport.h"
#include "common/quote.h"
#include "common/units.h"
#include "server/yaml_schema.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

enum { DEFAULT_PORT = 7007 };

/* ---- quantities: durations and sizes (src/common/units) ----------------- */

int config_parse_duration(const char *s, int64_t *ms) {
    return units_parse_duration(s, ms) == UNITS_OK ? 0 : -1;
}

int config_parse_size(const char *s, size_t *bytes) {
    return units_parse_size(s, bytes) == UNITS_OK ? 0 : -1;
}

/* ---- log levels ---------------------------------------------------------- */

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

const char *config_log_level_name(enum log_level level) {
    if ((unsigned)level >= sizeof log_level_names / sizeof log_level_names[0])
        return "unknown";
    return log_level_names[level];
}

int config_parse_log_level(const char *s, enum log_level *level) {
    for (size_t i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* ---- listen addresses (src/common/hostport) ------------------------------ */

/* A listen_addr from a parsed address: zeroed first, so that equal
 * addresses compare equal bytewise (reloads compare listen sets so). */
static void make_listen(listen_addr *out, const struct sockaddr_storage *addr, socklen_t addrlen,
                        bool udp) {
    char hostport[HOSTPORT_TEXT_SIZE];
    memset(out, 0, sizeof *out);
    out->addr = *addr;
    out->addrlen = addrlen;
    out->udp = udp;
    hostport_format(addr, hostport, sizeof hostport);
    snprintf(out->text, sizeof out->text, "%s%s", udp ? "udp://" : "", hostport);
}

int config_parse_listen(const char *arg, listen_addr *out, char *err, size_t errlen) {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool udp = strncmp(arg, "udp://", 6) == 0;
    if (udp || strncmp(arg, "tcp://", 6) == 0)
        arg += 6;
    if (hostport_parse_numeric(arg, &addr, &addrlen, err, errlen) != 0)
        return -1;
    make_listen(out, &addr, addrlen, udp);
    return 0;
}

static const char *const log_format_names[] = {"text", "json"};

const char *config_log_format_name(enum log_format format) {
    if ((unsigned)format >= sizeof log_format_names / sizeof log_format_names[0])
        return "?";
    return log_format_names[format];
}

/* ---- defaults -------------------------------------------------------------- */

size_t config_default_listen(listen_addr out[CONFIG_DEFAULT_NLISTEN]) {
    static const char *const loopback[CONFIG_DEFAULT_NLISTEN] = {"127.0.0.1", "::1"};
    memset(out, 0, CONFIG_DEFAULT_NLISTEN * sizeof out[0]);
    for (size_t i = 0; i < CONFIG_DEFAULT_NLISTEN; i++) {
        struct sockaddr_storage addr;
        socklen_t addrlen;
        hostport_parse_ip(loopback[i], AF_UNSPEC, DEFAULT_PORT, &addr, &addrlen);
        make_listen(&out[i], &addr, addrlen, false);
    }
    return CONFIG_DEFAULT_NLISTEN;
}

void config_defaults(config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->nlisten = config_default_listen(cfg->listen);
    cfg->max_connections = 10000;
    cfg->max_connections_per_ip = 0;
    cfg->per_ip_ipv6_prefix = 64; /* one customer's network, usually */
    cfg->idle_timeout_ms = 300 * MS_PER_S;
    cfg->buffer_size = 16 * KIB;
    cfg->stack_size = 64 * KIB;
    cfg->backlog = 1024;
    cfg->udp_rate_limit = 1000;
    cfg->shutdown_grace_ms = 10 * MS_PER_S;
    cfg->workers = 1;
    cfg->reuse_port = true;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->log_connections = false;
    cfg->log_format = LOG_FORMAT_TEXT;
}

/* ---- values of coechod's own kinds ---------------------------------------- */

/* workers: an integer, or "auto" stored as 0. */
static bool parse_workers(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                          void *obj) {
    int *workers = (int *)((char *)obj + f->offset);
    int64_t n;
    if (node->type == YAML_SCALAR_NODE &&
        strcmp((const char *)node->data.scalar.value, "auto") == 0)
        n = 0;
    else if (!ys_integer_value(ctx, node, path, f->min, f->max, " or \"auto\"", &n))
        return false;
    *workers = (int)n;
    return true;
}

static void dump_workers(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)indent;
    int workers = *(const int *)((const char *)obj + f->offset);
    if (workers == 0)
        fputs(" auto\n", out);
    else
        fprintf(out, " %d\n", workers);
}

static bool parse_log_level(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                            const char *path, void *obj) {
    enum log_level *level = (enum log_level *)((char *)obj + f->offset);
    const char *expected = "one of error, warn, info, debug";
    const char *s = ys_text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (config_parse_log_level(s, level) < 0) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "expected %s, got %s", expected,
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    return true;
}

static void dump_log_level(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)indent;
    const enum log_level *level = (const void *)((const char *)obj + f->offset);
    fprintf(out, " %s\n", config_log_level_name(*level));
}

static bool parse_log_format(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                             const char *path, void *obj) {
    enum log_format *format = (enum log_format *)((char *)obj + f->offset);
    const char *expected = "one of text, json";
    const char *s = ys_text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    for (size_t i = 0; i < sizeof log_format_names / sizeof log_format_names[0]; i++) {
        if (strcmp(s, log_format_names[i]) == 0) {
            *format = (enum log_format)i;
            return true;
        }
    }
    char buf[YS_DESCRIBE_SIZE];
    ys_report(ctx, node, path, "expected %s, got %s", expected,
              ys_describe(node, false, buf, sizeof buf));
    return false;
}

static void dump_log_format(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)indent;
    const enum log_format *format = (const void *)((const char *)obj + f->offset);
    fprintf(out, " %s\n", config_log_format_name(*format));
}

static void note_position(config_pos *at, const yaml_node_t *node) {
    ys_node_position(node, &at->line, &at->column);
}

/* A path that must be absolute, or "" for none: --daemon runs in /, and a
 * file may be opened again long after the start, so a relative path would
 * not name the file meant. */
static bool parse_absolute_path(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                                const char *path, void *obj) {
    char *dst = (char *)obj + f->offset;
    if (!ys_string_value(ctx, node, path, dst, f->size))
        return false;
    if (dst[0] != '\0' && dst[0] != '/') {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "must be an absolute path (starting with /), got %s",
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    return true;
}

/* The values coechod -t checks against this host, with their positions. */
static bool parse_log_file(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                           const char *path, void *obj) {
    note_position(&((config *)obj)->where.log_file, node);
    return parse_absolute_path(ctx, f, node, path, obj);
}

static bool parse_pid_file(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                           const char *path, void *obj) {
    note_position(&((config *)obj)->where.pid_file, node);
    return parse_absolute_path(ctx, f, node, path, obj);
}

static bool parse_user(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                       void *obj) {
    note_position(&((config *)obj)->where.user, node);
    return ys_string_value(ctx, node, path, (char *)obj + f->offset, f->size);
}

static void dump_string(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)indent;
    putc(' ', out);
    ys_write_string(out, (const char *)obj + f->offset);
    putc('\n', out);
}

/* ---- access lists -------------------------------------------------------------- */

/* One "allow NETWORK" / "deny NETWORK" item into the pool. */
static bool parse_access_rule(ys_ctx *ctx, const yaml_node_t *node, const char *path, config *cfg) {
    const char *s = ys_text_value(ctx, node, path, "\"allow NETWORK\" or \"deny NETWORK\"");
    if (s == NULL)
        return false;
    acl_rule rule;
    char err[160];
    /* acl's messages quote the rule as it is: one with a control character
     * (a newline) would break the one-line message, so it is refused here,
     * quoted safely. */
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            char quoted[QUOTE_SIZE];
            ys_report(ctx, node, path, "expected \"allow NETWORK\" or \"deny NETWORK\", got %s",
                      quote_for_message(quoted, sizeof quoted, s, strlen(s)));
            return false;
        }
    }
    if (acl_parse_rule(s, &rule, err, sizeof err) != 0) {
        ys_report(ctx, node, path, "%s", err);
        return false;
    }
    if (cfg->naccess_rules == CONFIG_MAX_ACCESS_RULES) {
        ys_report(ctx, node, path, "too many access rules (at most %d in the configuration)",
                  CONFIG_MAX_ACCESS_RULES);
        return false;
    }
    cfg->access_rules[cfg->naccess_rules++] = rule;
    return true;
}

/* A list of rules, in order, into out (its rules stored in cfg's pool). */
static bool parse_access_list(ys_ctx *ctx, const yaml_node_t *node, const char *path, config *cfg,
                              access_list *out) {
    if (node->type != YAML_SEQUENCE_NODE) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path,
                  "expected a list of \"allow NETWORK\" or \"deny NETWORK\", got %s",
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    bool ok = true;
    *out = (access_list){.first = (uint16_t)cfg->naccess_rules, .set = true};
    for (size_t i = 0; i < ys_sequence_length(node) && !ys_gave_up(ctx); i++) {
        char itempath[YS_PATH_SIZE];
        ys_index_path(itempath, sizeof itempath, path, i);
        ok &= parse_access_rule(ctx, ys_sequence_item(ctx, node, i), itempath, cfg);
    }
    out->count = (uint16_t)(cfg->naccess_rules - out->first);
    return ok;
}

static bool parse_access(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                         void *obj) {
    (void)f;
    config *cfg = obj;
    return parse_access_list(ctx, node, path, cfg, &cfg->access);
}

/* The rules of list, flow style: [ "allow 10.0.0.0/8", "deny all" ]. */
static void write_access_list(const config *cfg, const access_list *list, FILE *out) {
    fputs("[", out);
    for (size_t i = 0; i < list->count; i++) {
        char text[96];
        acl_format_rule(&cfg->access_rules[list->first + i], text, sizeof text);
        fputs(i ? ", " : " ", out);
        ys_write_string(out, text);
    }
    fputs(list->count ? " ]" : "]", out);
}

static void dump_access(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)f;
    (void)indent;
    const config *cfg = obj;
    putc(' ', out);
    write_access_list(cfg, &cfg->access, out);
    putc('\n', out);
}

/* ---- listen ------------------------------------------------------------------- */

/* A listen entry as its fields are read. */
typedef struct listen_entry {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int port;
    config *cfg;        /* whose rule pool its access list goes to */
    access_list access; /* its own list, if set */
    bool proxy_protocol;
    bool udp;
} listen_entry;

static bool parse_listen_access(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                                const char *path, void *obj) {
    (void)f;
    listen_entry *entry = obj;
    return parse_access_list(ctx, node, path, entry->cfg, &entry->access);
}

static bool parse_protocol(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node,
                           const char *path, void *obj) {
    (void)f;
    const char *expected = "tcp or udp";
    const char *s = ys_text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (strcmp(s, "tcp") != 0 && strcmp(s, "udp") != 0) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "expected %s, got %s", expected,
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    ((listen_entry *)obj)->udp = s[0] == 'u';
    return true;
}

static bool parse_address(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                          void *obj) {
    (void)f;
    listen_entry *entry = obj;
    const char *expected = "an IPv4 or IPv6 address such as 127.0.0.1 or \"::1\"";
    const char *s = ys_text_value(ctx, node, path, expected);
    if (s == NULL)
        return false;
    if (!hostport_parse_ip(s, AF_UNSPEC, 0, &entry->addr, &entry->addrlen)) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "expected %s, got %s", expected,
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    return true;
}

static const ys_field listen_entry_fields[] = {
    {.name = "address",
     .dotted = "listen[].address",
     .kind = YS_CUSTOM,
     .flags = YS_REQUIRED,
     .parse = parse_address},
    {.name = "port",
     .dotted = "listen[].port",
     .kind = YS_INT,
     .offset = offsetof(listen_entry, port),
     .size = sizeof(int),
     .min = 0,
     .max = 65535,
     .flags = YS_REQUIRED},
    {.name = "access",
     .dotted = "listen[].access",
     .kind = YS_CUSTOM,
     .parse = parse_listen_access},
    {.name = "proxy_protocol",
     .dotted = "listen[].proxy_protocol",
     .kind = YS_BOOL,
     .offset = offsetof(listen_entry, proxy_protocol),
     .size = sizeof(bool)},
    {.name = "protocol", .dotted = "listen[].protocol", .kind = YS_CUSTOM, .parse = parse_protocol},
};
static const ys_section listen_entry_section = {"in listen entries", listen_entry_fields,
                                                sizeof listen_entry_fields /
                                                    sizeof listen_entry_fields[0]};

/* One { address, port } entry; false if it has errors (reported). */
static bool parse_listen_entry(ys_ctx *ctx, const yaml_node_t *node, const char *path, config *cfg,
                               listen_addr *out, access_list *access) {
    if (node->type != YAML_MAPPING_NODE) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "expected a mapping { address, port }, got %s",
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    listen_entry entry = {.addrlen = 0, .cfg = cfg};
    if (!ys_parse_mapping(ctx, node, path, &listen_entry_section, &entry))
        return false;
    if (entry.udp && entry.proxy_protocol) {
        /* A datagram carries no header to read: PROXY is a stream's. */
        ys_report(ctx, node, path,
                  "proxy_protocol: true needs protocol: tcp (a UDP listener "
                  "cannot read a PROXY header)");
        return false;
    }
    *access = entry.access;
    hostport_set_port(&entry.addr, (uint16_t)entry.port);
    make_listen(out, &entry.addr, entry.addrlen, entry.udp);
    out->proxy_protocol = entry.proxy_protocol;
    return true;
}

/* Binding the same address and port twice fails at startup; say so now.
 * Port 0 picks a fresh port each time, so it may repeat. */
static void check_duplicate_listener(ys_ctx *ctx, const yaml_node_t *node, const char *path,
                                     const config *cfg, const listen_addr *la) {
    for (size_t i = 0; i < cfg->nlisten && hostport_port(&la->addr) != 0; i++) {
        if (strcmp(cfg->listen[i].text, la->text) == 0) {
            ys_report(ctx, node, path, "%s is already listed (listen[%zu])", la->text, i);
            return;
        }
    }
}

static bool parse_listen(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                         void *obj) {
    (void)f;
    config *cfg = obj;
    char buf[YS_DESCRIBE_SIZE];
    if (node->type != YAML_SEQUENCE_NODE) {
        ys_report(ctx, node, path, "expected a list of { address, port }, got %s",
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    size_t count = ys_sequence_length(node);
    if (count == 0) {
        ys_report(ctx, node, path, "expected at least one { address, port }");
        return false;
    }
    cfg->nlisten = 0; /* present: replaces the defaults */
    memset(cfg->listen_access, 0, sizeof cfg->listen_access);
    for (size_t i = 0; i < count && !ys_gave_up(ctx); i++) {
        const yaml_node_t *item = ys_sequence_item(ctx, node, i);
        char itempath[YS_PATH_SIZE];
        ys_index_path(itempath, sizeof itempath, path, i);
        if (i == CONFIG_MAX_LISTEN) {
            ys_report(ctx, item, itempath, "too many entries (at most %d)", CONFIG_MAX_LISTEN);
            return false;
        }
        listen_addr la;
        access_list access = {.set = false};
        if (parse_listen_entry(ctx, item, itempath, cfg, &la, &access)) {
            check_duplicate_listener(ctx, item, itempath, cfg, &la);
            note_position(&cfg->where.listen[cfg->nlisten], item);
            cfg->listen_access[cfg->nlisten] = access;
            cfg->listen[cfg->nlisten++] = la;
        }
    }
    return true;
}

/* Flow-style entries, one a line, so that the dump stays short. */
static void dump_listen(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)f;
    const config *cfg = obj;
    fputs(cfg->nlisten == 0 ? " []\n" : "\n", out);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        char ip[HOSTPORT_TEXT_SIZE];
        hostport_format_ip(&cfg->listen[i].addr, ip, sizeof ip);
        fprintf(out, "%*s- { address: \"%s\", port: %u", indent + 2, "", ip,
                hostport_port(&cfg->listen[i].addr));
        if (cfg->listen[i].udp)
            fputs(", protocol: udp", out);
        if (cfg->listen[i].proxy_protocol)
            fputs(", proxy_protocol: true", out);
        if (cfg->listen_access[i].set) {
            fputs(", access: ", out);
            write_access_list(cfg, &cfg->listen_access[i], out);
        }
        fputs(" }\n", out);
    }
}

/* ---- metrics -------------------------------------------------------------------- */

/* The metrics entry as its fields are read: port -1 until given. */
static const ys_field metrics_fields[] = {
    {.name = "address", .dotted = "metrics.address", .kind = YS_CUSTOM, .parse = parse_address},
    {.name = "port",
     .dotted = "metrics.port",
     .kind = YS_INT,
     .offset = offsetof(listen_entry, port),
     .size = sizeof(int),
     .min = 0,
     .max = 65535},
};
static const ys_section metrics_section = {"under metrics", metrics_fields,
                                           sizeof metrics_fields / sizeof metrics_fields[0]};

/* metrics: null or {} (off), or { address, port }: on once port is given.
 * The address defaults to 127.0.0.1: the numbers are for the operator, not
 * the world. Stored as one bytewise-comparable member pair (reloads compare
 * it: a change waits for the next start). */
static bool parse_metrics(ys_ctx *ctx, const ys_field *f, const yaml_node_t *node, const char *path,
                          void *obj) {
    (void)f;
    config *cfg = obj;
    note_position(&cfg->where.metrics, node);
    cfg->metrics_enabled = false;
    memset(&cfg->metrics, 0, sizeof cfg->metrics);
    if (ys_is_null(node))
        return true;
    if (node->type != YAML_MAPPING_NODE) {
        char buf[YS_DESCRIBE_SIZE];
        ys_report(ctx, node, path, "expected a mapping { address, port }, got %s",
                  ys_describe(node, false, buf, sizeof buf));
        return false;
    }
    listen_entry entry = {.addrlen = 0, .port = -1};
    hostport_parse_ip("127.0.0.1", AF_UNSPEC, 0, &entry.addr, &entry.addrlen);
    if (!ys_parse_mapping(ctx, node, path, &metrics_section, &entry))
        return false;
    if (entry.port < 0)
        return true; /* no port: off */
    hostport_set_port(&entry.addr, (uint16_t)entry.port);
    make_listen(&cfg->metrics, &entry.addr, entry.addrlen, false);
    cfg->metrics_enabled = true;
    return true;
}

static void dump_metrics(const ys_field *f, const void *obj, FILE *out, int indent) {
    (void)f;
    (void)indent;
    const config *cfg = obj;
    if (!cfg->metrics_enabled) {
        fputs(" {}\n", out);
        return;
    }
    char ip[HOSTPORT_TEXT_SIZE];
    hostport_format_ip(&cfg->metrics.addr, ip, sizeof ip);
    fprintf(out, " { address: \"%s\", port: %u }\n", ip, hostport_port(&cfg->metrics.addr));
}

/* ---- the schema ---------------------------------------------------------------- */

/* Reload policy, as field flags (see config_start_only_changes). */
enum {
    START_ONLY = YS_OWNER_FLAG << 0, /* takes effect at the next start */
    FIXED = YS_OWNER_FLAG << 1       /* fixed for the life of the process */
};

#define AT_TOP(key) .name = key, .dotted = key
#define UNDER(section, key) .name = key, .dotted = section "." key
#define MEMBER(member) .offset = offsetof(config, member), .size = sizeof(((config *)0)->member)
#define NFIELDS(fields) (sizeof(fields) / sizeof(fields)[0])

static const ys_field limits_fields[] = {
    {UNDER("limits", "max_connections"), .kind = YS_UINT32, MEMBER(max_connections), .min = 1,
     .max = 10000000},
    {UNDER("limits", "max_connections_per_ip"), .kind = YS_UINT32, MEMBER(max_connections_per_ip),
     .min = 0, .max = 10000000},
    {UNDER("limits", "per_ip_ipv6_prefix"), .kind = YS_UINT32, MEMBER(per_ip_ipv6_prefix), .min = 1,
     .max = 128},
    {UNDER("limits", "idle_timeout"), .kind = YS_DURATION, MEMBER(idle_timeout_ms), .min = 0,
     .max = 24 * MS_PER_H},
    {UNDER("limits", "buffer_size"), .kind = YS_SIZE, MEMBER(buffer_size), .min = 512,
     .max = 16 * MIB},
    /* Every task's stack is allocated at start. */
    {UNDER("limits", "stack_size"), .kind = YS_SIZE, MEMBER(stack_size), .min = 16 * KIB,
     .max = 8 * MIB, .flags = START_ONLY},
    {UNDER("limits", "backlog"), .kind = YS_INT, MEMBER(backlog), .min = 1, .max = 65535},
    {UNDER("limits", "udp_rate_limit"), .kind = YS_UINT32, MEMBER(udp_rate_limit), .min = 0,
     .max = 10000000},
};
static const ys_section limits_section = {"under limits", limits_fields, NFIELDS(limits_fields)};

static const ys_field log_fields[] = {
    {UNDER("log", "level"), .kind = YS_CUSTOM, MEMBER(log_level), .parse = parse_log_level,
     .dump = dump_log_level},
    {UNDER("log", "file"), .kind = YS_CUSTOM, MEMBER(log_file), .parse = parse_log_file,
     .dump = dump_string},
    {UNDER("log", "connections"), .kind = YS_BOOL, MEMBER(log_connections)},
    {UNDER("log", "format"), .kind = YS_CUSTOM, MEMBER(log_format), .parse = parse_log_format,
     .dump = dump_log_format},
};
static const ys_section log_section = {"under log", log_fields, NFIELDS(log_fields)};

/* listen takes effect at the next start only with workers > 1 (the main
 * process binds the sockets): the caller's to check, not flagged. */
static const ys_field top_fields[] = {
    {AT_TOP("listen"), .kind = YS_CUSTOM, MEMBER(listen), .parse = parse_listen,
     .dump = dump_listen},
    {AT_TOP("limits"), .kind = YS_SECTION, .section = &limits_section},
    {AT_TOP("shutdown_grace"), .kind = YS_DURATION, MEMBER(shutdown_grace_ms), .min = 0,
     .max = MS_PER_H},
    /* The worker processes and their sockets are made at start. */
    {AT_TOP("workers"), .kind = YS_CUSTOM, MEMBER(workers), .min = 1, .max = 1024,
     .flags = START_ONLY, .parse = parse_workers, .dump = dump_workers},
    {AT_TOP("reuse_port"), .kind = YS_BOOL, MEMBER(reuse_port), .flags = START_ONLY},
    {AT_TOP("log"), .kind = YS_SECTION, .section = &log_section},
    /* Written at start and removed at exit; privileges, once dropped, are gone. */
    {AT_TOP("pid_file"), .kind = YS_CUSTOM, MEMBER(pid_file), .flags = FIXED,
     .parse = parse_pid_file, .dump = dump_string},
    {AT_TOP("user"), .kind = YS_CUSTOM, MEMBER(user), .flags = FIXED, .parse = parse_user,
     .dump = dump_string},
    /* Its socket is opened at start, before the workers are forked. */
    {AT_TOP("metrics"), .kind = YS_CUSTOM, MEMBER(metrics), .flags = START_ONLY,
     .parse = parse_metrics, .dump = dump_metrics},
    /* Applies to connections accepted after a reload. */
    {AT_TOP("access"), .kind = YS_CUSTOM, MEMBER(access), .parse = parse_access,
     .dump = dump_access},
};
static const ys_section top_section = {"at the top level", top_fields, NFIELDS(top_fields)};

_Static_assert(NFIELDS(top_fields) <= YS_MAX_FIELDS, "top_fields: raise YS_MAX_FIELDS");
_Static_assert(NFIELDS(limits_fields) <= YS_MAX_FIELDS, "limits_fields: raise YS_MAX_FIELDS");

static const ys_section *const all_sections[] = {&top_section, &limits_section, &log_section,
                                                 &listen_entry_section, &metrics_section};
static const ys_schema schema = {&top_section, all_sections, NFIELDS(all_sections)};

/* ---- load ------------------------------------------------------------------------- */

int config_load(const char *path, config *cfg, config_errors *errs) {
    ys_errors sink = {.text = errs != NULL ? errs->text : NULL,
                      .size = errs != NULL ? sizeof errs->text : 0};
    /* A copy, so that the caller's is written only on success. */
    config *next = malloc(sizeof *next);
    int rc = -1;
    if (next != NULL) {
        config_defaults(next);
        rc = ys_load(path, &schema, next, &sink);
        if (rc == 0)
            *cfg = *next;
        free(next);
    } else if (errs != NULL) {
        snprintf(errs->text, sizeof errs->text, "%s: out of memory\n", path);
        sink.len = strlen(errs->text);
        sink.count = 1;
    }
    if (errs != NULL) {
        errs->len = sink.len;
        errs->count = sink.count;
    }
    return rc;
}

/* ---- reload policy --------------------------------------------------------------- */

size_t config_start_only_changes(const config *running, const config *next, const char **keys,
                                 size_t max) {
    return ys_changed_fields(&top_section, START_ONLY, running, next, keys, max);
}

void config_keep_fixed(config *next, const config *running) {
    ys_copy_fields(&top_section, FIXED, next, running);
}

/* ---- dump ------------------------------------------------------------------------ */

void config_dump(const config *cfg, FILE *out) {
    fputs("# coechod configuration: every setting with its effective value\n", out);
    ys_dump(&top_section, cfg, out);
}
