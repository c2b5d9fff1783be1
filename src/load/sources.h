/* coecho-load --source: local source addresses spread over the connections,
 * and the connection counts per target and per source.
 *
 * One source address connects at most ~28,000 times to one target (the
 * ephemeral port range); n sources lift that to n times as many. */
#ifndef COECHO_LOAD_SOURCES_H
#define COECHO_LOAD_SOURCES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* At most this many addresses in a --source list (all ranges expanded). */
#define SOURCES_MAX 65536
/* Equal to LOAD_MAX_TARGETS (checked in sources.c). */
#define SOURCES_MAX_TARGETS 64

typedef union source_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} source_addr;

typedef struct source_list {
    source_addr *addrs; /* in list order, ranges expanded; port 0 */
    size_t n;           /* 0: no --source */
    uint32_t *v4, *v6;  /* indexes into addrs of the IPv4 and the IPv6 ones */
    size_t nv4, nv6;
} source_list;

typedef struct endpoint_counts {
    uint64_t up, failed, errors;
} endpoint_counts;

/* Per-target and per-source counts of one run (or of several, added). */
typedef struct load_tally {
    endpoint_counts per_target[SOURCES_MAX_TARGETS];
    endpoint_counts *per_source; /* nsources entries, malloc'd */
    size_t nsources;
} load_tally;

struct load_options;
struct load_results;

/* Parses a --source LIST (comma-separated literals and A-B ranges) into
 * *s. 0, or -1 with a one-line reason naming the bad item in err. */
int sources_parse(source_list *s, const char *list, char *err, size_t errlen);
void sources_free(source_list *s);
/* The number of sources for family (AF_INET or AF_INET6). */
size_t sources_of_family(const source_list *s, int family);

/* Connection id's source: an index into opt->sources.addrs, or -1 when
 * there is no --source. */
long sources_pick(const struct load_options *opt, long id);
/* Binds fd to source idx with port 0, the port left to connect()
 * (IP_BIND_ADDRESS_NO_PORT). 0, or a negative errno. */
int sources_bind(const struct load_options *opt, long idx, int fd);

/* Zeroed counts with room for nsources; 0 or -ENOMEM. */
int tally_init(load_tally *t, size_t nsources);
void tally_free(load_tally *t);
/* Adds src's counts to dst's (same nsources): merging runs is one call. */
void tally_add(load_tally *dst, const load_tally *src);

enum tally_what { TALLY_UP, TALLY_FAILED, TALLY_ERROR };
/* Counts one event of connection id for its target and its source. */
void tally_count(const struct load_options *opt, struct load_results *res, long id,
                 enum tally_what what);

/* The summary's per-target and per-source parts (see CONTRACT.md). */
void tally_report_text(const struct load_options *opt, const struct load_results *res, FILE *out);
void tally_report_json(const struct load_options *opt, const struct load_results *res, FILE *out);
/* The same from arrays of names and counts (n of each), for --merge: a
 * "targets" line per target; a "sources" line per source, or for many one
 * line of their spread; and the JSON member (with its leading comma)
 * [{"KEY":"NAME","connections":N,"failed":N,"errors":N},...]. */
void tally_targets_text(FILE *out, const char *const *names, const endpoint_counts *c, size_t n);
void tally_sources_text(FILE *out, const char *const *names, const endpoint_counts *c, size_t n);
void tally_json(FILE *out, const char *member, const char *key, const char *const *names,
                const endpoint_counts *c, size_t n);

#endif
