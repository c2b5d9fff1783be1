#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/access.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "common/hostport.h"
#include "rt/rt.h"
#include "server/acl.h"
#include "server/log.h"
#include "server/settings.h"

enum { REPORT_EVERY_MS = 1000 };

static struct {
    bool built;
    unsigned generation;              /* of the configuration compiled */
    acl *global;                      /* the top-level list (maybe empty) */
    acl *listener[CONFIG_MAX_LISTEN]; /* listen[i]'s own list, or NULL */
    uint64_t refused;
    uint64_t unreported; /* refusals since the last line */
    int64_t last_report;
    bool reported_once;
} a;

void access_destroy(void) {
    acl_free(a.global);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        acl_free(a.listener[i]);
    a.global = NULL;
    memset(a.listener, 0, sizeof a.listener);
    a.built = false;
}

static int compile_list(const config *cfg, const access_list *list, acl **out) {
    return acl_compile(cfg->access_rules + list->first, list->count, out);
}

/* The lists of cfg, replacing those compiled before. 0 or -ENOMEM. */
static int build(const config *cfg) {
    access_destroy();
    int r = compile_list(cfg, &cfg->access, &a.global);
    for (size_t i = 0; i < cfg->nlisten && r == 0; i++)
        if (cfg->listen_access[i].set)
            r = compile_list(cfg, &cfg->listen_access[i], &a.listener[i]);
    if (r != 0) {
        access_destroy();
        return r;
    }
    a.built = true;
    a.generation = settings_generation();
    return 0;
}

static bool same_ip(const struct sockaddr_storage *x, const struct sockaddr_storage *y) {
    if (x->ss_family != y->ss_family)
        return false;
    if (x->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)x)->sin_addr,
                      &((const struct sockaddr_in *)y)->sin_addr, sizeof(struct in_addr)) == 0;
    return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                  &((const struct sockaddr_in6 *)y)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static bool is_wildcard(const struct sockaddr_storage *x) {
    if (x->ss_family == AF_INET)
        return ((const struct sockaddr_in *)x)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)x)->sin6_addr);
}

/* How well listen entry e names the socket at local: 0 not at all; more
 * for its port than its address (port 0: the kernel chose it), as the
 * kernel prefers the exact address to a wildcard bound to the same port. */
static int match_score(const listen_addr *e, const struct sockaddr_storage *local, bool udp) {
    if (e->udp != udp)
        return 0;
    int ip = same_ip(&e->addr, local)                                         ? 2
             : e->addr.ss_family == local->ss_family && is_wildcard(&e->addr) ? 1
                                                                              : 0;
    unsigned port = hostport_port(&e->addr);
    int on_port = port == hostport_port(local) ? 2 : port == 0 ? 1 : 0;
    return ip && on_port ? on_port * 3 + ip : 0;
}

/* The list for the socket at local: that of the listen entry naming it
 * best (the listener's bound address, or a connection's local one, which
 * a wildcard entry names too), or the top-level list. */
static const acl *list_for(const config *cfg, const struct sockaddr_storage *local, bool udp) {
    int best = 0;
    const acl *list = a.global;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        int score = match_score(&cfg->listen[i], local, udp);
        if (score > best) {
            best = score;
            list = a.listener[i] ? a.listener[i] : a.global;
        }
    }
    return list;
}

/* At most one line a second, with how many were refused since the last. */
static void report(const char *where, const struct sockaddr *peer, const char *what,
                   const char *why) {
    int64_t now = co_now();
    a.unreported++;
    if (a.reported_once && now - a.last_report < REPORT_EVERY_MS)
        return;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, peer,
           peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    char ip[HOSTPORT_TEXT_SIZE];
    hostport_format_ip(&ss, ip, sizeof ip);
    log_info("%s: refused %s from %s: %s (%llu refused since the last report)", where, what, ip,
             why, (unsigned long long)a.unreported);
    a.unreported = 0;
    a.last_report = now;
    a.reported_once = true;
}

bool access_check(const struct sockaddr_storage *local, bool udp, const char *where,
                  const struct sockaddr *peer) {
    const config *cfg = settings();
    if ((!a.built || a.generation != settings_generation()) && build(cfg) != 0) {
        if (!udp)
            a.refused++;
        report(where, peer, udp ? "a datagram" : "a connection",
               "no memory to compile the access lists");
        return false;
    }
    if (acl_allows(list_for(cfg, local, udp), peer))
        return true;
    if (!udp)
        a.refused++;
    report(where, peer, udp ? "a datagram" : "a connection", "denied by the access list");
    return false;
}

uint64_t access_refused(void) { return a.refused; }
