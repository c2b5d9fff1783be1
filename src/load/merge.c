/* coecho-load --merge: the --json objects of runs made at the same time (on
 * several machines, or threads) combined into one exact summary.
 *
 * Table-driven: every combined number is a row of `fields` (its member, how
 * it combines, whether its group may be absent); a new counter is one new
 * row there, and it is read, combined and printed (in --json) with no other
 * change. The histogram combines bucket by bucket (hist_add), so merged
 * percentiles are exact; the text summary and the latency figures come from
 * it. per_target and per_source add by name (keyed_list), threads are
 * concatenated, and params/version/host/start_time are combined so that a
 * merge's JSON can be merged again; sources.c and report.c print them. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/jsonread.h"
#include "load/load.h"

enum combine { COUNT_ADD, RATE_ADD, TAKE_MAX };

typedef struct field {
    const char *group; /* the enclosing object's member, or NULL: top level */
    const char *name;
    enum combine how;
} field;

/* Groups that a run has only sometimes (--udp, -r); the others are required. */
static bool optional_group(const char *group) {
    return group && (strcmp(group, "udp") == 0 || strcmp(group, "rate") == 0);
}

/* The combined numbers. Rates add: the runs ran at the same time, on
 * different machines. The "errors" rows follow from load_error_names. */
static const field fields[] = {
    {NULL, "connections", COUNT_ADD},   {NULL, "connections_failed", COUNT_ADD},
    {NULL, "messages", COUNT_ADD},      {NULL, "bytes_out", COUNT_ADD},
    {NULL, "bytes_in", COUNT_ADD},      {NULL, "mismatches", COUNT_ADD},
    {NULL, "duration_s", TAKE_MAX},     {NULL, "msgs_per_sec", RATE_ADD},
    {NULL, "mib_per_sec", RATE_ADD},    {NULL, "mib_per_sec_out", RATE_ADD},
    {NULL, "mib_per_sec_in", RATE_ADD}, {"udp", "sent", COUNT_ADD},
    {"udp", "received", COUNT_ADD},     {"udp", "lost", COUNT_ADD},
    {"udp", "late", COUNT_ADD},         {"rate", "requested", RATE_ADD},
    {"rate", "achieved", RATE_ADD},
};
enum { NFIELDS = sizeof fields / sizeof fields[0], NALL = NFIELDS + ERR_KINDS };

static field field_at(size_t i) {
    return i < NFIELDS ? fields[i] : (field){"errors", load_error_names[i - NFIELDS], COUNT_ADD};
}

/* Counts keyed by a name (a target, a source), in first-seen order. */
typedef struct keyed_list {
    char **names;
    endpoint_counts *counts;
    size_t n, cap;
} keyed_list;

typedef struct merged {
    int runs;
    uint64_t count[NALL];
    double value[NALL];
    bool present[NALL];
    histogram latency;
    const char *first_file; /* for the params check */
    double size, pipeline;
    char targets[8192]; /* every run's targets, once each, as JSON strings */
    keyed_list per_target, per_source;
    struct load_thread_stats *thread; /* every run's threads, in order */
    size_t nthreads, thread_cap;
    char *params, *version; /* the runs' (as JSON text, params), NULL if any differ */
    bool params_differ, version_differ;
    keyed_list hosts; /* the distinct hosts, first seen first (counts unused) */
    char *start_time; /* the earliest */
} merged;

typedef struct source {
    const char *file;
    const json_value *root;
} source;

static int bad(const source *src, const char *what, const char *member) {
    fprintf(stderr, "coecho-load: %s: %s \"%s\"\n", src->file, what, member);
    return -1;
}

static int add_field(merged *m, size_t i, const source *src) {
    field f = field_at(i);
    const json_value *scope = f.group ? jsonread_get(src->root, f.group) : src->root;
    if (!scope && optional_group(f.group))
        return 0;
    const json_value *v = jsonread_get(scope, f.name);
    char path[64];
    snprintf(path, sizeof path, "%s%s%s", f.group ? f.group : "", f.group ? "." : "", f.name);
    if (!v)
        return bad(src, "no member", path);
    if (v->type != JSON_NUMBER || (f.how == COUNT_ADD && !v->is_uint))
        return bad(src, f.how == COUNT_ADD ? "not a count:" : "not a number:", path);
    m->present[i] = true;
    m->count[i] += v->uint;
    if (f.how == TAKE_MAX)
        m->value[i] = v->number > m->value[i] ? v->number : m->value[i];
    else
        m->value[i] += v->number;
    return 0;
}

static const json_value *uint_member(const source *src, const json_value *obj, const char *name) {
    const json_value *v = jsonread_get(obj, name);
    if (!v || v->type != JSON_NUMBER || !v->is_uint) {
        bad(src, v ? "not a count:" : "no member", name);
        return NULL;
    }
    return v;
}

/* One [index,count] pair of "histogram.buckets". */
static int add_bucket(histogram *h, const json_value *pair, const source *src) {
    const json_value *it = pair->items;
    if (pair->type != JSON_ARRAY || pair->count != 2 || it[0].type != JSON_NUMBER ||
        !it[0].is_uint || it[0].uint >= HIST_BUCKETS || !it[1].is_uint)
        return bad(src, "expected [index below 5120, count] pairs in", "histogram.buckets");
    h->counts[it[0].uint] += it[1].uint;
    return 0;
}

static int read_histogram(histogram *h, const source *src) {
    const json_value *o = jsonread_get(src->root, "histogram");
    const json_value *unit = jsonread_get(o, "unit"), *bits = jsonread_get(o, "sub_bucket_bits");
    const json_value *buckets = jsonread_get(o, "buckets"), *sum = jsonread_get(o, "sum");
    const json_value *total = uint_member(src, o, "total"), *max = uint_member(src, o, "max");
    if (!o || !total || !max)
        return o ? -1 : bad(src, "no member", "histogram");
    if (!unit || unit->type != JSON_STRING || strcmp(unit->string, "ns") != 0 || !bits ||
        !bits->is_uint || bits->uint != HIST_SUB_BITS)
        return bad(src, "expected unit \"ns\" and sub_bucket_bits 7 in", "histogram");
    if (!buckets || buckets->type != JSON_ARRAY || !sum || sum->type != JSON_NUMBER)
        return bad(src, "no buckets array or sum number in", "histogram");
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets->count; i++) {
        if (add_bucket(h, &buckets->items[i], src) != 0)
            return -1;
        seen += buckets->items[i].items[1].uint;
    }
    if (seen != total->uint)
        return bad(src, "bucket counts do not add up to the total of", "histogram");
    h->total += total->uint;
    h->sum += sum->number;
    h->max = max->uint > h->max ? max->uint : h->max;
    return 0;
}

/* size and pipeline should agree, or the latencies describe different loads. */
static void check_params(merged *m, const source *src) {
    const json_value *p = jsonread_get(src->root, "params");
    const json_value *size = jsonread_get(p, "size"), *pipe = jsonread_get(p, "pipeline");
    if (!size || !pipe || size->type != JSON_NUMBER || pipe->type != JSON_NUMBER)
        return; /* a merged summary has no params */
    if (!m->first_file) {
        m->first_file = src->file;
        m->size = size->number;
        m->pipeline = pipe->number;
        return;
    }
    if (size->number != m->size || pipe->number != m->pipeline)
        fprintf(stderr,
                "coecho-load: warning: %s: size %g pipeline %g differ from %s's size %g "
                "pipeline %g: the merged latencies mix different loads\n",
                src->file, size->number, pipe->number, m->first_file, m->size, m->pipeline);
}

/* Adds the run's targets not yet listed (what does not fit is left out). */
static void add_targets(merged *m, const source *src) {
    const json_value *t = jsonread_get(src->root, "targets");
    for (size_t i = 0; t && t->type == JSON_ARRAY && i < t->count; i++) {
        char item[700], esc[640];
        if (t->items[i].type != JSON_STRING)
            continue;
        json_escape(esc, sizeof esc, t->items[i].string, strlen(t->items[i].string));
        snprintf(item, sizeof item, "\"%s\"", esc);
        size_t used = strlen(m->targets);
        if (!strstr(m->targets, item) && used + strlen(item) + 2 < sizeof m->targets)
            snprintf(m->targets + used, sizeof m->targets - used, "%s%s", used ? "," : "", item);
    }
}

static int no_memory(void) {
    fprintf(stderr, "coecho-load: out of memory\n");
    return -1;
}

/* Grows an array of *cap items of size each to hold need; 0 or -1. */
static int grow(void **items, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t more = *cap ? *cap * 2 : 8;
    void *p = realloc(*items, more * size);
    if (!p)
        return no_memory();
    *items = p;
    *cap = more;
    return 0;
}

/* The entry named name (added, zeroed, if new); NULL when out of memory. */
static endpoint_counts *keyed_entry(keyed_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return &l->counts[i];
    size_t cap = l->cap;
    if (grow((void **)&l->names, &cap, l->n + 1, sizeof *l->names) != 0 ||
        grow((void **)&l->counts, &l->cap, l->n + 1, sizeof *l->counts) != 0)
        return NULL;
    char *copy = strdup(name);
    if (!copy) {
        no_memory();
        return NULL;
    }
    l->names[l->n] = copy;
    l->counts[l->n] = (endpoint_counts){0, 0, 0};
    return &l->counts[l->n++];
}

static void keyed_free(keyed_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->counts);
    *l = (keyed_list){0};
}

/* A member of entry index of the array member, e.g. "per_source[1].failed",
 * for the error messages. */
static const char *entry_path(char *buf, size_t size, const char *member, size_t index,
                              const char *name) {
    snprintf(buf, size, "%s[%zu]%s%s", member, index, *name ? "." : "", name);
    return buf;
}

static int entry_count(const source *src, const json_value *e, const char *member, size_t index,
                       const char *name, uint64_t *out) {
    char path[96];
    const json_value *v = jsonread_get(e, name);
    if (!v || v->type != JSON_NUMBER || !v->is_uint)
        return bad(src, v ? "not a count:" : "no member",
                   entry_path(path, sizeof path, member, index, name));
    *out = v->uint;
    return 0;
}

/* One {"KEY":"NAME","connections":N,"failed":N,"errors":N} entry added. */
static int add_entry(keyed_list *l, const source *src, const json_value *e, const char *member,
                     size_t index, const char *key) {
    char path[96];
    const json_value *name = jsonread_get(e, key);
    if (e->type != JSON_OBJECT)
        return bad(src, "not an object:", entry_path(path, sizeof path, member, index, ""));
    if (!name || name->type != JSON_STRING)
        return bad(src, name ? "not a string:" : "no member",
                   entry_path(path, sizeof path, member, index, key));
    endpoint_counts c;
    if (entry_count(src, e, member, index, "connections", &c.up) != 0 ||
        entry_count(src, e, member, index, "failed", &c.failed) != 0 ||
        entry_count(src, e, member, index, "errors", &c.errors) != 0)
        return -1;
    endpoint_counts *sum = keyed_entry(l, name->string);
    if (!sum)
        return -1;
    sum->up += c.up;
    sum->failed += c.failed;
    sum->errors += c.errors;
    return 0;
}

/* per_target or per_source: entries with the same name add. */
static int add_keyed(keyed_list *l, const source *src, const char *member, const char *key,
                     bool required) {
    const json_value *a = jsonread_get(src->root, member);
    if (!a)
        return required ? bad(src, "no member", member) : 0;
    if (a->type != JSON_ARRAY)
        return bad(src, "not an array:", member);
    for (size_t i = 0; i < a->count; i++)
        if (add_entry(l, src, &a->items[i], member, i, key) != 0)
            return -1;
    return 0;
}

static int entry_seconds(const source *src, const json_value *e, size_t index, const char *name,
                         double *out) {
    char path[96];
    const json_value *v = jsonread_get(e, name);
    if (!v || v->type != JSON_NUMBER || v->number < 0)
        return bad(src, v ? "not a number of seconds:" : "no member",
                   entry_path(path, sizeof path, "threads", index, name));
    *out = v->number;
    return 0;
}

/* The run's threads, after those of the runs before. */
static int add_threads(merged *m, const source *src) {
    const json_value *a = jsonread_get(src->root, "threads");
    if (!a)
        return 0;
    if (a->type != JSON_ARRAY)
        return bad(src, "not an array:", "threads");
    if (grow((void **)&m->thread, &m->thread_cap, m->nthreads + a->count, sizeof *m->thread) != 0)
        return -1;
    for (size_t i = 0; i < a->count; i++) {
        struct load_thread_stats *t = &m->thread[m->nthreads + i];
        const json_value *e = &a->items[i];
        if (entry_count(src, e, "threads", i, "messages", &t->messages) != 0 ||
            entry_seconds(src, e, i, "cpu_user_s", &t->cpu_user_s) != 0 ||
            entry_seconds(src, e, i, "cpu_sys_s", &t->cpu_sys_s) != 0)
            return -1;
    }
    m->nthreads += a->count;
    return 0;
}

static void print_string(const char *s, FILE *out) {
    size_t len = strlen(s), size = len * 6 + 1;
    char *esc = malloc(size);
    if (esc)
        json_escape(esc, size, s, len);
    else
        no_memory(); /* the string is left empty */
    fprintf(out, "\"%s\"", esc ? esc : "");
    free(esc);
}

/* v as JSON text (numbers as %.17g, so 0 and 0.0 print alike). */
static void print_value(const json_value *v, FILE *out) {
    switch (v->type) {
    case JSON_NULL:
        fputs("null", out);
        break;
    case JSON_BOOL:
        fputs(v->boolean ? "true" : "false", out);
        break;
    case JSON_NUMBER:
        if (v->is_uint)
            fprintf(out, "%llu", (unsigned long long)v->uint);
        else
            fprintf(out, "%.17g", v->number);
        break;
    case JSON_STRING:
        print_string(v->string, out);
        break;
    default:
        fputc(v->type == JSON_ARRAY ? '[' : '{', out);
        for (size_t i = 0; i < v->count; i++) {
            if (i)
                fputc(',', out);
            if (v->type == JSON_OBJECT) {
                print_string(v->keys[i], out);
                fputc(':', out);
            }
            print_value(&v->items[i], out);
        }
        fputc(v->type == JSON_ARRAY ? ']' : '}', out);
    }
}

/* v as JSON text in a malloc'd string; NULL when out of memory. */
static char *value_text(const json_value *v) {
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    print_value(v, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Keeps *kept while every run has the same member (as text). */
static int agree(char **kept, bool *differ, const json_value *v, bool first) {
    if (*differ)
        return 0;
    if (!v) {
        *differ = true;
        free(*kept);
        *kept = NULL;
        return 0;
    }
    char *text = value_text(v);
    if (!text)
        return no_memory();
    if (first) {
        *kept = text;
        return 0;
    }
    *differ = strcmp(*kept, text) != 0;
    free(text);
    if (*differ) {
        free(*kept);
        *kept = NULL;
    }
    return 0;
}

static int add_host(merged *m, const source *src, const json_value *h) {
    if (h->type != JSON_STRING)
        return bad(src, "expected strings in", "host");
    return keyed_entry(&m->hosts, h->string) ? 0 : -1;
}

/* host: a string, or (a merge's) a list of them. */
static int add_hosts(merged *m, const source *src) {
    const json_value *h = jsonread_get(src->root, "host");
    if (!h)
        return 0;
    if (h->type != JSON_ARRAY)
        return add_host(m, src, h);
    for (size_t i = 0; i < h->count; i++)
        if (add_host(m, src, &h->items[i]) != 0)
            return -1;
    return 0;
}

/* The earliest start_time: the ISO 8601 UTC strings sort as the times. */
static int add_start_time(merged *m, const source *src) {
    const json_value *t = jsonread_get(src->root, "start_time");
    if (!t)
        return 0;
    if (t->type != JSON_STRING)
        return bad(src, "not a string:", "start_time");
    if (m->start_time && strcmp(t->string, m->start_time) >= 0)
        return 0;
    char *copy = strdup(t->string);
    if (!copy)
        return no_memory();
    free(m->start_time);
    m->start_time = copy;
    return 0;
}

/* version, start_time, host, params. */
static int add_meta(merged *m, const source *src) {
    bool first = m->runs == 0;
    if (agree(&m->params, &m->params_differ, jsonread_get(src->root, "params"), first) != 0 ||
        agree(&m->version, &m->version_differ, jsonread_get(src->root, "version"), first) != 0)
        return -1;
    return add_hosts(m, src) != 0 ? -1 : add_start_time(m, src);
}

/* A merge's JSON counts its runs; a run's is one. */
static int runs_of(const source *src, int *runs) {
    const json_value *v = jsonread_get(src->root, "runs");
    if (v && (v->type != JSON_NUMBER || !v->is_uint || v->uint < 1 || v->uint > 1000000))
        return bad(src, "not a count of runs:", "runs");
    *runs = v ? (int)v->uint : 1;
    return 0;
}

static int add_run(merged *m, const source *src) {
    int runs;
    if (src->root->type != JSON_OBJECT)
        return bad(src, "expected an object, the --json output of a run, not", "a value");
    for (size_t i = 0; i < NALL; i++)
        if (add_field(m, i, src) != 0)
            return -1;
    check_params(m, src);
    add_targets(m, src);
    if (runs_of(src, &runs) != 0 ||
        add_keyed(&m->per_target, src, "per_target", "target", true) != 0 ||
        add_keyed(&m->per_source, src, "per_source", "source", false) != 0 ||
        add_threads(m, src) != 0 || add_meta(m, src) != 0)
        return -1;
    m->runs += runs;
    return read_histogram(&m->latency, src);
}

/* The whole file, NUL-terminated; NULL with the reason on stderr. */
static char *slurp(const char *file, size_t *len) {
    FILE *f = fopen(file, "rb");
    char *text = NULL;
    size_t cap = 0;
    *len = 0;
    if (!f)
        goto fail;
    for (;;) {
        if (cap - *len < 4096) {
            char *more = realloc(text, cap = cap * 2 + 4096);
            if (!more)
                goto fail;
            text = more;
        }
        size_t n = fread(text + *len, 1, cap - *len - 1, f);
        *len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    text[*len] = '\0';
    return text;
fail:
    fprintf(stderr, "coecho-load: %s: %s\n", file, strerror(errno ? errno : EIO));
    if (f)
        fclose(f);
    free(text);
    return NULL;
}

/* What to parse: the last line that is not blank if it starts an object
 * (a run's JSON after its log lines), else the whole file (one object,
 * perhaps over several lines); *line is where it starts. */
static const char *json_part(const char *text, size_t len, size_t *part_len, int *line) {
    const char *start = text + strspn(text, " \t\r\n");
    int n = 1, at = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') {
            n++;
            if (text[i + 1] == '{') {
                start = text + i + 1;
                at = n;
            }
        }
    const char *end = memchr(start, '\n', len - (size_t)(start - text));
    if (*start != '{' || (end && end[strspn(end, " \t\r\n")] != '\0') || at == 1) {
        *line = 1; /* not a last line of its own: the whole file */
        *part_len = len;
        return text;
    }
    *line = at;
    *part_len = (size_t)((end ? end : text + len) - start);
    return start;
}

/* Reads and adds one file. 0, or -1 with FILE:LINE:COLUMN on stderr. */
static int merge_file(merged *m, const char *file) {
    size_t len;
    errno = 0;
    char *text = slurp(file, &len);
    if (!text)
        return -1;
    int line;
    size_t part_len;
    const char *part = json_part(text, len, &part_len, &line);
    json_error err;
    json_value *root = jsonread_parse(part, part_len, &err);
    int r = -1;
    if (!root)
        fprintf(stderr, "coecho-load: %s:%d:%d: %s\n", file, line + err.line - 1, err.column,
                err.what);
    else
        r = add_run(m, &(source){file, root});
    jsonread_free(root);
    free(text);
    return r;
}

static bool group_present(const merged *m, const char *group) {
    for (size_t i = 0; i < NALL; i++)
        if (m->present[i] && field_at(i).group && strcmp(field_at(i).group, group) == 0)
            return true;
    return false;
}

static void print_number(const merged *m, size_t i, FILE *out) {
    if (field_at(i).how == COUNT_ADD)
        fprintf(out, "%llu", (unsigned long long)m->count[i]);
    else
        fprintf(out, "%.3f", m->value[i]);
}

static bool in_group(field f, const char *group) {
    return group ? f.group && strcmp(f.group, group) == 0 : f.group == NULL;
}

/* The rows of one group (NULL: the top level) as JSON members, each
 * followed by a comma but the last of a group when close is set. */
static void json_group(const merged *m, const char *group, bool close, FILE *out) {
    const char *sep = "";
    for (size_t i = 0; i < NALL; i++) {
        if (!m->present[i] || !in_group(field_at(i), group))
            continue;
        fprintf(out, "%s\"%s\":", sep, field_at(i).name);
        print_number(m, i, out);
        sep = ",";
    }
    if (!close && *sep)
        fputc(',', out);
}

static size_t find(const char *group, const char *name) {
    for (size_t i = 0; i < NALL; i++) {
        field f = field_at(i);
        if (strcmp(f.name, name) == 0 && (group ? f.group && !strcmp(f.group, group) : !f.group))
            return i;
    }
    abort(); /* a name below that is not in the table: a bug here */
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

static void json_latency(const histogram *h, FILE *out) {
    fprintf(out,
            "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
            "\"mean\":%.1f}",
            us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
            us(hist_percentile(h, 99.9)), us(h->max), hist_mean(h) / 1e3);
}

/* Percent of the requested rate not achieved, from the summed rates. */
static double missed_pct(const merged *m) {
    double want = m->value[find("rate", "requested")];
    return want > 0 ? 100.0 * (want - m->value[find("rate", "achieved")]) / want : 0.0;
}

static double loss_pct(const merged *m) {
    uint64_t sent = m->count[find("udp", "sent")];
    return sent ? 100.0 * (double)m->count[find("udp", "lost")] / (double)sent : 0.0;
}

static void json_tallies(const merged *m, FILE *out) {
    const keyed_list *t = &m->per_target, *s = &m->per_source;
    tally_json(out, "per_target", "target", (const char *const *)t->names, t->counts, t->n);
    if (s->n)
        tally_json(out, "per_source", "source", (const char *const *)s->names, s->counts, s->n);
}

/* version and params if every run had the same; the earliest start_time;
 * host: the one, or the list of them. */
static void json_meta(const merged *m, FILE *out) {
    if (m->version)
        fprintf(out, ",\"version\":%s", m->version);
    if (m->start_time) {
        fputs(",\"start_time\":", out);
        print_string(m->start_time, out);
    }
    if (m->hosts.n)
        fputs(",\"host\":", out);
    for (size_t i = 0; i < m->hosts.n; i++) {
        fputs(i ? "," : m->hosts.n > 1 ? "[" : "", out);
        print_string(m->hosts.names[i], out);
    }
    if (m->hosts.n > 1)
        fputc(']', out);
    if (m->params)
        fprintf(out, ",\"params\":%s", m->params);
}

static void merged_json(const merged *m, FILE *out) {
    fprintf(out, "{\"runs\":%d,\"targets\":[%s],", m->runs, m->targets);
    json_group(m, NULL, false, out);
    json_latency(&m->latency, out);
    fputs(",\"errors\":{", out);
    json_group(m, "errors", true, out);
    fputc('}', out);
    json_tallies(m, out);
    if (group_present(m, "udp")) {
        fputs(",\"udp\":{", out);
        json_group(m, "udp", false, out);
        fprintf(out, "\"loss_pct\":%.3f}", loss_pct(m));
    }
    if (group_present(m, "rate")) {
        fputs(",\"rate\":{", out);
        json_group(m, "rate", false, out);
        fprintf(out, "\"missed_pct\":%.1f}", missed_pct(m));
    }
    json_meta(m, out);
    report_json_histogram(&m->latency, out);
    if (m->nthreads)
        report_threads_json(out, m->thread, m->nthreads);
    fputs("}\n", out);
}

static uint64_t count_of(const merged *m, const char *group, const char *name) {
    return m->count[find(group, name)];
}

static double value_of(const merged *m, const char *group, const char *name) {
    return m->value[find(group, name)];
}

static void text_errors(const merged *m, FILE *out) {
    fprintf(out, "errors        ");
    const char *sep = "";
    for (size_t i = NFIELDS; i < NALL; i++)
        if (m->count[i]) {
            fprintf(out, "%s%s=%llu", sep, field_at(i).name, (unsigned long long)m->count[i]);
            sep = " ";
        }
    fprintf(out, "%s\n", *sep ? "" : "none");
}

/* As a run's: a line per target when more than one, per source. */
static void text_tallies(const merged *m, FILE *out) {
    const keyed_list *t = &m->per_target, *s = &m->per_source;
    if (t->n > 1)
        tally_targets_text(out, (const char *const *)t->names, t->counts, t->n);
    if (s->n)
        tally_sources_text(out, (const char *const *)s->names, s->counts, s->n);
}

static void merged_text(const merged *m, FILE *out) {
    const histogram *h = &m->latency;
    fprintf(out, "runs          %d merged\n", m->runs);
    fprintf(out, "connections   %llu up, %llu failed\n",
            (unsigned long long)count_of(m, NULL, "connections"),
            (unsigned long long)count_of(m, NULL, "connections_failed"));
    text_tallies(m, out);
    fprintf(out, "messages      %llu in %.2f s (the longest run), %.1f/s (the runs' sum)\n",
            (unsigned long long)count_of(m, NULL, "messages"), value_of(m, NULL, "duration_s"),
            value_of(m, NULL, "msgs_per_sec"));
    fprintf(out, "throughput    %.2f MiB/s out, %.2f MiB/s in\n",
            value_of(m, NULL, "mib_per_sec_out"), value_of(m, NULL, "mib_per_sec_in"));
    fprintf(out, "latency (us)  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
            us(hist_percentile(h, 50)), us(hist_percentile(h, 90)), us(hist_percentile(h, 99)),
            us(hist_percentile(h, 99.9)), us(h->max));
    text_errors(m, out);
    fprintf(out, "mismatches    %llu\n", (unsigned long long)count_of(m, NULL, "mismatches"));
    if (group_present(m, "udp"))
        fprintf(out, "datagrams     %llu sent, %llu received, %llu lost (%.2f%%), %llu late\n",
                (unsigned long long)count_of(m, "udp", "sent"),
                (unsigned long long)count_of(m, "udp", "received"),
                (unsigned long long)count_of(m, "udp", "lost"), loss_pct(m),
                (unsigned long long)count_of(m, "udp", "late"));
    if (group_present(m, "rate"))
        fprintf(out, "rate          requested %.1f/s, achieved %.1f/s (%+.1f%%)\n",
                value_of(m, "rate", "requested"), value_of(m, "rate", "achieved"), -missed_pct(m));
    if (m->nthreads) /* the CPU times over the longest run's duration */
        report_threads_text(out, m->thread, m->nthreads, count_of(m, NULL, "messages"),
                            value_of(m, NULL, "duration_s"));
}

/* As a run's: errors of any kind 1, then a missed rate 3. */
static int merged_status(const merged *m) {
    bool errors = count_of(m, NULL, "connections_failed") || count_of(m, NULL, "mismatches") ||
                  count_of(m, "udp", "lost");
    for (size_t i = NFIELDS; i < NALL; i++)
        errors = errors || m->count[i];
    if (errors)
        return 1;
    if (group_present(m, "rate") && missed_pct(m) > LOAD_RATE_TOLERANCE_PCT) {
        fprintf(stderr,
                "coecho-load: warning: the runs achieved %.1f messages/s, %.1f%% below the "
                "requested %.1f/s (more than %d%%)\n",
                value_of(m, "rate", "achieved"), missed_pct(m), value_of(m, "rate", "requested"),
                LOAD_RATE_TOLERANCE_PCT);
        return 3;
    }
    return 0;
}

static void merged_free(merged *m) {
    keyed_free(&m->per_target);
    keyed_free(&m->per_source);
    keyed_free(&m->hosts);
    free(m->thread);
    free(m->params);
    free(m->version);
    free(m->start_time);
}

static int merge_files(merged *m, const load_options *opt, const char *const *files, int nfiles) {
    for (int i = 0; i < nfiles; i++)
        if (merge_file(m, files[i]) != 0)
            return 2;
    if (opt->json)
        merged_json(m, stdout);
    else if (!opt->quiet)
        merged_text(m, stdout);
    if (write_histograms(opt, &m->latency) != 0)
        return 1;
    return merged_status(m);
}

int load_merge(const load_options *opt, const char *const *files, int nfiles) {
    static merged m; /* the histogram is 40 KiB: not on the stack */
    int status = merge_files(&m, opt, files, nfiles);
    merged_free(&m);
    return status;
}
