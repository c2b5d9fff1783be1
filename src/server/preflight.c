#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/preflight.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/hostport.h"
#include "common/quote.h"
#include "server/daemon.h"
#include "server/listeners.h"
#include "server/log.h"

enum { ERR_SIZE = 4096 + 512, PWBUF_MAX = 1 << 20 };

typedef struct checker {
    const config *cfg;
    const char *path; /* the file, as given; NULL: none */
    FILE *out;
    int problems;
} checker;

/* One line: FILE:LINE:COLUMN: when the value came from the file. */
__attribute__((format(printf, 5, 6))) static void report(checker *c, bool problem, config_pos at,
                                                         const char *key, const char *fmt, ...) {
    if (at.line && c->path)
        fprintf(c->out, "%s:%u:%u: %s: %s", c->path, at.line, at.column, key,
                problem ? "" : "warning: ");
    else
        fprintf(c->out, "coechod: %s: %s", key, problem ? "" : "warning: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
    c->problems += problem;
}

/* ---- listen ------------------------------------------------------------------- */

static bool v4_mapped(const listen_addr *la) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&la->addr;
    return la->addr.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
}

/* What a failed bind means, for the message. */
static const char *bind_hint(const listen_addr *la, int e) {
    if (e == EADDRNOTAVAIL)
        return " (not an address of this host)";
    if (e == EINVAL && v4_mapped(la))
        return " (IPv6 listeners are IPv6-only: listen on the IPv4 address)";
    return "";
}

/* The i-th listener: whether coechod could start with it (a warning, or
 * nothing, when it could). */
static bool check_listener(checker *c, size_t i, bool cli_listen, bool defaults) {
    const listen_addr *la = &c->cfg->listen[i];
    char key[96], what[96] = ""; /* "-l ADDR:PORT: ...", "listen[1]: ADDR:PORT: ..." */
    if (cli_listen) {
        snprintf(key, sizeof key, "-l %s", la->text);
    } else {
        snprintf(key, sizeof key, "listen[%zu]", i);
        snprintf(what, sizeof what, "%s: ", la->text);
    }
    config_pos at = c->cfg->where.listen[i];
    int r = listeners_try_bind(la);
    if (r == 0 || r == -EADDRINUSE) /* in use: by a running coechod, maybe */
        return true;
    int e = -r;
    if ((e == EACCES || e == EPERM) && geteuid() != 0) {
        report(c, false, at, key,
               "%scannot bind as uid %ld (%s); started as root, or with "
               "CAP_NET_BIND_SERVICE, coechod can",
               what, (long)geteuid(), strerror(e));
        return true;
    }
    if (defaults && (e == EADDRNOTAVAIL || e == EAFNOSUPPORT)) {
        report(c, false, at, key, "%scannot bind: %s; coechod would start without it", what,
               strerror(e));
        return false;
    }
    report(c, true, at, key, "%scannot bind: %s%s", what, strerror(e), bind_hint(la, e));
    return false;
}

static void check_listen(checker *c, bool cli_listen) {
    bool defaults = !cli_listen && listeners_are_defaults(c->cfg);
    size_t usable = 0;
    for (size_t i = 0; i < c->cfg->nlisten; i++)
        usable += check_listener(c, i, cli_listen, defaults);
    if (defaults && usable == 0)
        report(c, true, (config_pos){0, 0}, "listen", "no listener could be opened");
}

/* The metrics listener: like a listener, but one of its own. */
static void check_metrics(checker *c) {
    const listen_addr *la = &c->cfg->metrics;
    if (!c->cfg->metrics_enabled)
        return;
    config_pos at = c->cfg->where.metrics;
    for (size_t i = 0; i < c->cfg->nlisten; i++)
        if (hostport_port(&la->addr) != 0 && strcmp(c->cfg->listen[i].text, la->text) == 0) {
            report(c, true, at, "metrics", "%s is also listen[%zu]", la->text, i);
            return;
        }
    int r = listeners_try_bind(la);
    if (r == 0 || r == -EADDRINUSE) /* in use: by a running coechod, maybe */
        return;
    int e = -r;
    if ((e == EACCES || e == EPERM) && geteuid() != 0)
        report(c, false, at, "metrics",
               "%s: cannot bind as uid %ld (%s); started as root, or with "
               "CAP_NET_BIND_SERVICE, coechod can",
               la->text, (long)geteuid(), strerror(e));
    else
        report(c, true, at, "metrics", "%s: cannot bind: %s%s", la->text, strerror(e),
               bind_hint(la, e));
}

/* ---- files ---------------------------------------------------------------------- */

static void check_log_file(checker *c) {
    char err[ERR_SIZE];
    if (c->cfg->log_file[0] && log_check_file(c->cfg->log_file, err, sizeof err) != 0)
        report(c, true, c->cfg->where.log_file, "log.file", "%s", err);
}

static void check_pid_file(checker *c) {
    char err[ERR_SIZE];
    if (c->cfg->pid_file[0] && pidfile_check_path(c->cfg->pid_file, err, sizeof err) != 0)
        report(c, true, c->cfg->where.pid_file, "pid_file", "%s", err);
}

/* ---- user ----------------------------------------------------------------------- */

/* 0 if name is a user here, ENOENT if not, or the errno of the lookup. */
static int lookup_user(const char *name) {
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 16384;
    for (;;) {
        char *buf = malloc(size);
        if (!buf)
            return ENOMEM;
        struct passwd pw, *found = NULL;
        int r = getpwnam_r(name, &pw, buf, size, &found);
        free(buf);
        if (r == ERANGE && size < PWBUF_MAX) {
            size *= 2;
            continue;
        }
        if (found)
            return 0;
        /* "Not found" may also come as one of these (getpwnam_r(3)). */
        return r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM ? ENOENT : r;
    }
}

static void check_user(checker *c) {
    const char *user = c->cfg->user;
    if (!user[0])
        return;
    int e = lookup_user(user);
    char quoted[QUOTE_SIZE];
    quote_for_message(quoted, sizeof quoted, user, strlen(user));
    if (e == ENOENT)
        report(c, true, c->cfg->where.user, "user", "no such user %s", quoted);
    else if (e)
        report(c, true, c->cfg->where.user, "user", "cannot look up %s: %s", quoted, strerror(e));
}

/* ---- all of it ------------------------------------------------------------------- */

int preflight_check(const config *cfg, const char *path, bool cli_listen, FILE *out) {
    checker c = {cfg, path, out, 0};
    check_listen(&c, cli_listen); /* in the order of the file */
    check_metrics(&c);
    check_log_file(&c);
    check_pid_file(&c);
    check_user(&c);
    return c.problems;
}
