/* --source: the source address list, binding a connection to its source,
 * and the per-target and per-source counts with their part of the summary.
 * See sources.h and CONTRACT.md. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/json.h"
#include "load/load.h"
#include "load/sources.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older C libraries lack the name */
#endif

_Static_assert(SOURCES_MAX_TARGETS == LOAD_MAX_TARGETS, "per_target must fit every target");

#define SOURCES_LISTED 16 /* a line per source up to this many */

/* ---- parsing ------------------------------------------------------------ */

static int say(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* One literal (no port, no brackets) into *a: its family, or 0. */
static int parse_literal(const char *text, source_addr *a) {
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, text, &a->v4.sin_addr) == 1) {
        a->v4.sin_family = AF_INET;
        return AF_INET;
    }
    if (inet_pton(AF_INET6, text, &a->v6.sin6_addr) == 1) {
        a->v6.sin6_family = AF_INET6;
        return AF_INET6;
    }
    return 0;
}

/* Addresses from a to b inclusive (same family), or 0 if b comes before a;
 * capped at SOURCES_MAX + 1, which is too many anyway. */
static uint64_t range_size(const source_addr *a, const source_addr *b) {
    if (a->sa.sa_family == AF_INET) {
        uint32_t lo = ntohl(a->v4.sin_addr.s_addr), hi = ntohl(b->v4.sin_addr.s_addr);
        return hi < lo ? 0 : (uint64_t)(hi - lo) + 1;
    }
    const unsigned char *lo = a->v6.sin6_addr.s6_addr, *hi = b->v6.sin6_addr.s6_addr;
    if (memcmp(hi, lo, 16) < 0)
        return 0;
    unsigned char diff[16];
    int borrow = 0;
    for (int i = 15; i >= 0; i--) { /* hi - lo, byte by byte */
        int d = hi[i] - lo[i] - borrow;
        borrow = d < 0;
        diff[i] = (unsigned char)(d + (borrow ? 256 : 0));
    }
    for (int i = 0; i < 13; i++) /* at or over 2^24: far too many */
        if (diff[i])
            return SOURCES_MAX + 1;
    return ((uint64_t)diff[13] << 16 | (uint64_t)diff[14] << 8 | diff[15]) + 1;
}

static void next_addr(source_addr *a) {
    if (a->sa.sa_family == AF_INET) {
        a->v4.sin_addr.s_addr = htonl(ntohl(a->v4.sin_addr.s_addr) + 1);
        return;
    }
    for (int i = 15; i >= 0 && ++a->v6.sin6_addr.s6_addr[i] == 0; i--)
        ;
}

/* One item, "ADDR" or "A-B": its first address in *first and its size in
 * *count. 0, or -1 with the reason in err. */
static int parse_item(char *item, source_addr *first, uint64_t *count, char *err, size_t errlen) {
    char *dash = strchr(item, '-');
    source_addr last;
    if (dash)
        *dash = '\0';
    int fa = parse_literal(item, first);
    int fb = dash ? parse_literal(dash + 1, &last) : fa;
    if (dash)
        *dash = '-'; /* the reason names the item whole */
    if (!fa || !fb)
        return say(err, errlen, "\"%s\": expected an IPv4 or IPv6 address or a range A-B", item);
    if (fa != fb)
        return say(err, errlen, "\"%s\": a range's ends must be of one family", item);
    *count = dash ? range_size(first, &last) : 1;
    if (*count == 0)
        return say(err, errlen, "\"%s\": the range ends before it starts", item);
    return 0;
}

/* Every item of list once: checks all and, when s->addrs is set, stores
 * the addresses. Returns the total, or -1 with the reason in err. */
static long walk(source_list *s, const char *list, char *err, size_t errlen) {
    char *copy = strdup(list);
    if (!copy)
        return say(err, errlen, "no memory");
    uint64_t total = 0;
    long r = 0;
    for (char *p = copy, *item; r == 0 && (item = strsep(&p, ",")) != NULL;) {
        source_addr a;
        uint64_t n = 0;
        if (*item == '\0')
            r = say(err, errlen, "\"%s\": an empty item", list);
        else if (parse_item(item, &a, &n, err, errlen) != 0)
            r = -1;
        else if ((total += n) > SOURCES_MAX)
            r = say(err, errlen, "\"%s\": more than %d addresses in all", item, SOURCES_MAX);
        for (uint64_t k = 0; r == 0 && s->addrs && k < n; k++, next_addr(&a))
            s->addrs[total - n + k] = a;
    }
    free(copy);
    return r < 0 ? -1 : (long)total;
}

/* The per-family indexes into s->addrs. */
static int index_families(source_list *s) {
    s->v4 = malloc(sizeof *s->v4 * s->n);
    s->v6 = malloc(sizeof *s->v6 * s->n);
    if (!s->v4 || !s->v6)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        if (s->addrs[i].sa.sa_family == AF_INET)
            s->v4[s->nv4++] = (uint32_t)i;
        else
            s->v6[s->nv6++] = (uint32_t)i;
    }
    return 0;
}

int sources_parse(source_list *s, const char *list, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    long n = walk(s, list, err, errlen); /* first pass: check and count */
    if (n < 0)
        return -1;
    s->n = (size_t)n;
    s->addrs = calloc(s->n, sizeof *s->addrs);
    if (!s->addrs || walk(s, list, err, errlen) < 0 || index_families(s) != 0) {
        sources_free(s);
        return say(err, errlen, "no memory for %ld addresses", n);
    }
    return 0;
}

void sources_free(source_list *s) {
    free(s->addrs);
    free(s->v4);
    free(s->v6);
    memset(s, 0, sizeof *s);
}

size_t sources_of_family(const source_list *s, int family) {
    return family == AF_INET6 ? s->nv6 : family == AF_INET ? s->nv4 : 0;
}

/* ---- per connection ------------------------------------------------------ */

long sources_pick(const load_options *opt, long id) {
    const source_list *s = &opt->sources;
    int family = opt->targets[(size_t)id % opt->ntargets].addr.ss_family;
    size_t n = sources_of_family(s, family);
    if (n == 0)
        return -1;
    const uint32_t *of = family == AF_INET6 ? s->v6 : s->v4;
    return of[(size_t)id / opt->ntargets % n];
}

int sources_bind(const load_options *opt, long idx, int fd) {
    const source_addr *a = &opt->sources.addrs[idx];
    int one = 1;
    /* Without it bind() takes a port for the address alone, and all the
     * connections of one source share one ephemeral range; with it the
     * port is chosen at connect(), per (source, target) pair. */
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
        return -errno;
    socklen_t len = a->sa.sa_family == AF_INET ? sizeof a->v4 : sizeof a->v6;
    return bind(fd, &a->sa, len) == 0 ? 0 : -errno;
}

/* ---- counts -------------------------------------------------------------- */

int tally_init(load_tally *t, size_t nsources) {
    memset(t, 0, sizeof *t);
    if (nsources && !(t->per_source = calloc(nsources, sizeof *t->per_source)))
        return -ENOMEM;
    t->nsources = nsources;
    return 0;
}

void tally_free(load_tally *t) {
    free(t->per_source);
    t->per_source = NULL;
    t->nsources = 0;
}

static void counts_add(endpoint_counts *dst, const endpoint_counts *src) {
    dst->up += src->up;
    dst->failed += src->failed;
    dst->errors += src->errors;
}

void tally_add(load_tally *dst, const load_tally *src) {
    for (size_t i = 0; i < SOURCES_MAX_TARGETS; i++)
        counts_add(&dst->per_target[i], &src->per_target[i]);
    for (size_t i = 0; i < dst->nsources && i < src->nsources; i++)
        counts_add(&dst->per_source[i], &src->per_source[i]);
}

static void bump(endpoint_counts *c, enum tally_what what) {
    if (what == TALLY_UP)
        c->up++;
    else if (what == TALLY_FAILED)
        c->failed++;
    else
        c->errors++;
}

void tally_count(const load_options *opt, load_results *res, long id, enum tally_what what) {
    load_tally *t = &res->tally;
    bump(&t->per_target[(size_t)id % opt->ntargets], what);
    long s = sources_pick(opt, id);
    if (s >= 0 && (size_t)s < t->nsources)
        bump(&t->per_source[s], what);
}

/* ---- summary ------------------------------------------------------------- */

static void source_text(const load_options *opt, size_t i, char *buf, size_t size) {
    const source_addr *a = &opt->sources.addrs[i];
    const void *bytes =
        a->sa.sa_family == AF_INET ? (const void *)&a->v4.sin_addr : (const void *)&a->v6.sin6_addr;
    if (!inet_ntop(a->sa.sa_family, bytes, buf, (socklen_t)size))
        snprintf(buf, size, "?");
}

static void counts_line(FILE *out, const char *label, int width, const char *name,
                        const endpoint_counts *c) {
    fprintf(out, "%-14s%-*s  %llu up, %llu failed, %llu errors\n", label, width, name,
            (unsigned long long)c->up, (unsigned long long)c->failed,
            (unsigned long long)c->errors);
}

static void lines_text(FILE *out, const char *label, const char *const *names,
                       const endpoint_counts *c, size_t n) {
    int width = 0;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(names[i]) > width)
            width = (int)strlen(names[i]);
    for (size_t i = 0; i < n; i++)
        counts_line(out, label, width, names[i], &c[i]);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void spread_min_median_max(const endpoint_counts *c, size_t n, FILE *out) {
    uint64_t *up = malloc(sizeof *up * n);
    if (!up) {
        fprintf(out, "(no memory to sort them)");
        return;
    }
    for (size_t i = 0; i < n; i++)
        up[i] = c[i].up;
    qsort(up, n, sizeof *up, cmp_u64);
    fprintf(out, "min %llu median %llu max %llu", (unsigned long long)up[0],
            (unsigned long long)up[(n - 1) / 2], (unsigned long long)up[n - 1]);
    free(up);
}

/* Many sources: the spread of connections over them, and those with
 * errors. */
static void sources_spread_text(FILE *out, const char *const *names, const endpoint_counts *c,
                                size_t n) {
    fprintf(out, "sources       %zu addresses, connections per source ", n);
    spread_min_median_max(c, n, out);
    fprintf(out, "; errors at ");
    size_t listed = 0, more = 0;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].errors)
            continue;
        if (listed++ >= SOURCES_LISTED) {
            more++;
            continue;
        }
        fprintf(out, "%s%s (%llu)", listed > 1 ? ", " : "", names[i],
                (unsigned long long)c[i].errors);
    }
    fprintf(out, "%s", listed ? "" : "none");
    if (more)
        fprintf(out, " and %zu more", more);
    fputc('\n', out);
}

void tally_targets_text(FILE *out, const char *const *names, const endpoint_counts *c, size_t n) {
    lines_text(out, "targets", names, c, n);
}

void tally_sources_text(FILE *out, const char *const *names, const endpoint_counts *c, size_t n) {
    if (n > SOURCES_LISTED)
        sources_spread_text(out, names, c, n);
    else
        lines_text(out, "sources", names, c, n);
}

/* The run's source addresses as text: an array of n pointers into one
 * block; NULL when out of memory. Free it with free(). */
static char **source_names(const load_options *opt, size_t n) {
    char **names = malloc(n * (sizeof *names + INET6_ADDRSTRLEN));
    if (!names)
        return NULL;
    char *text = (char *)(names + n);
    for (size_t i = 0; i < n; i++) {
        names[i] = text + i * INET6_ADDRSTRLEN;
        source_text(opt, i, names[i], INET6_ADDRSTRLEN);
    }
    return names;
}

static const char **target_names(const load_options *opt, const char **names) {
    for (size_t i = 0; i < opt->ntargets; i++)
        names[i] = opt->targets[i].text;
    return names;
}

void tally_report_text(const load_options *opt, const load_results *res, FILE *out) {
    const char *tnames[LOAD_MAX_TARGETS];
    if (opt->ntargets > 1)
        tally_targets_text(out, target_names(opt, tnames), res->tally.per_target, opt->ntargets);
    if (!opt->sources.n)
        return;
    char **names = source_names(opt, res->tally.nsources);
    if (!names) {
        fprintf(out, "sources       (no memory to list them)\n");
        return;
    }
    tally_sources_text(out, (const char *const *)names, res->tally.per_source, res->tally.nsources);
    free(names);
}

static void counts_json(FILE *out, const char *key, const char *name, const endpoint_counts *c,
                        bool first) {
    char esc[2048];
    json_escape(esc, sizeof esc, name, strlen(name));
    fprintf(out, "%s{\"%s\":\"%s\",\"connections\":%llu,\"failed\":%llu,\"errors\":%llu}",
            first ? "" : ",", key, esc, (unsigned long long)c->up, (unsigned long long)c->failed,
            (unsigned long long)c->errors);
}

void tally_json(FILE *out, const char *member, const char *key, const char *const *names,
                const endpoint_counts *c, size_t n) {
    fprintf(out, ",\"%s\":[", member);
    for (size_t i = 0; i < n; i++)
        counts_json(out, key, names[i], &c[i], i == 0);
    fputc(']', out);
}

void tally_report_json(const load_options *opt, const load_results *res, FILE *out) {
    const char *tnames[LOAD_MAX_TARGETS];
    tally_json(out, "per_target", "target", target_names(opt, tnames), res->tally.per_target,
               opt->ntargets);
    if (!opt->sources.n)
        return;
    fprintf(out, ",\"per_source\":[");
    for (size_t i = 0; i < res->tally.nsources; i++) {
        char name[INET6_ADDRSTRLEN];
        source_text(opt, i, name, sizeof name);
        counts_json(out, "source", name, &res->tally.per_source[i], i == 0);
    }
    fputc(']', out);
}
