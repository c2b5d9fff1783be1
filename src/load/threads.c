/* The threads of a run (-t): each runs its own runtime over its share of
 * the connections (run.c) and counts into its own results. Meanwhile the
 * main thread prints the progress line from the counters they publish and
 * writes the --interval series as they hand intervals in; at the end it
 * merges their results exactly. Everything threads share goes through
 * `lock`; `changed` wakes the main thread on a hand-in or a thread's end. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "load/load.h"

#define NS_PER_S 1000000000LL

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed;

static struct {
    const load_options *opt;
    load_clock clock;
    load_thread *threads;
    long nthreads;
    series *series;
} run;

void load_hand_in_interval(load_thread *t, bool last) {
    if (!run.series)
        return;
    uint64_t errors = results_errors(&t->res);
    pthread_mutex_lock(&lock);
    series_add(run.series, t->handed, &t->interval, t->res.messages - t->handed_messages,
               errors - t->handed_errors, load_now_ns(), last);
    t->handed++;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&lock);
    hist_init(&t->interval);
    t->handed_messages = t->res.messages;
    t->handed_errors = errors;
}

void load_publish(load_thread *t) {
    pthread_mutex_lock(&lock);
    t->published = t->res;
    pthread_mutex_unlock(&lock);
}

/* User and system CPU of the calling thread so far. */
static void record_cpu(load_thread *t) {
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return; /* cannot fail for the calling thread; leaves 0 s */
    t->cpu_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    t->cpu_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void *thread_main(void *arg) {
    load_thread *t = arg;
    load_thread_run(t);
    record_cpu(t);
    load_hand_in_interval(t, true);
    load_publish(t);
    pthread_mutex_lock(&lock);
    t->finished = true;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static bool all_finished(void) {
    for (long i = 0; i < run.nthreads; i++)
        if (!run.threads[i].finished)
            return false;
    return true;
}

/* The progress line, from every thread's last published counters. */
static void print_progress(int64_t now_ns) {
    static load_results merged;
    memset(&merged, 0, sizeof merged);
    for (long i = 0; i < run.nthreads; i++)
        results_add(&merged, &run.threads[i].published);
    merged.start_ns = run.clock.start_ns;
    progress_line(run.opt, &merged, now_ns, stderr);
}

static struct timespec timespec_of(int64_t ns) {
    return (struct timespec){.tv_sec = ns / NS_PER_S, .tv_nsec = ns % NS_PER_S};
}

/* The main thread's part, under the lock: progress each second and the
 * series' lines as intervals complete, until every thread is done. */
static void watch_threads(void) {
    int64_t next_progress = run.clock.start_ns + NS_PER_S;
    pthread_mutex_lock(&lock);
    for (;;) {
        if (run.series)
            series_write_ready(run.series, run.threads, run.nthreads);
        if (all_finished())
            break;
        int64_t now = load_now_ns();
        if (run.opt->progress && now >= next_progress) {
            print_progress(now);
            next_progress += NS_PER_S;
        } else if (run.opt->progress) {
            struct timespec until = timespec_of(next_progress);
            pthread_cond_timedwait(&changed, &lock, &until); /* ETIMEDOUT: progress is due */
        } else {
            pthread_cond_wait(&changed, &lock);
        }
    }
    pthread_mutex_unlock(&lock);
}

/* The condition variable waits on the monotonic clock, as every deadline
 * of the run does. */
static int init_changed(void) {
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
    if (!err)
        err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!err)
        err = pthread_cond_init(&changed, &attr);
    pthread_condattr_destroy(&attr);
    return -err;
}

/* Starts the threads. On failure the ones already started run to their
 * end (they cannot be called back) and are joined; -errno. */
static int start_threads(pthread_t *ids) {
    for (long i = 0; i < run.nthreads; i++) {
        run.threads[i].index = (int)i;
        int err = pthread_create(&ids[i], NULL, thread_main, &run.threads[i]);
        if (err) {
            for (long j = 0; j < i; j++)
                pthread_join(ids[j], NULL);
            return -err;
        }
    }
    return 0;
}

/* Merges every thread's results into res, with the per-thread figures;
 * the first thread's negative co_run status, if any. */
static int merge_results(load_results *res) {
    int status = 0;
    for (long i = 0; i < run.nthreads; i++) {
        const load_thread *t = &run.threads[i];
        results_add(res, &t->res);
        tally_add(&res->tally, &t->res.tally);
        res->thread[i].messages = t->res.messages;
        res->thread[i].cpu_user_s = t->cpu_user_s;
        res->thread[i].cpu_sys_s = t->cpu_sys_s;
        if (t->status < 0 && !status)
            status = t->status;
    }
    res->nthreads = (size_t)run.nthreads;
    res->wall_s = (double)(res->end_ns - run.clock.start_ns) / 1e9;
    res->start_ns = run.clock.measure_ns; /* the summary covers the measured part */
    return status;
}

static int run_threads(load_results *res) {
    pthread_t *ids = calloc((size_t)run.nthreads, sizeof *ids);
    if (!ids)
        return -ENOMEM;
    int err = start_threads(ids);
    if (!err) {
        watch_threads();
        for (long i = 0; i < run.nthreads; i++)
            pthread_join(ids[i], NULL);
        err = merge_results(res);
    }
    free(ids);
    return err;
}

/* Each thread's per-target and per-source counts. 0 or -ENOMEM. */
static int init_tallies(const load_options *opt) {
    for (long i = 0; i < run.nthreads; i++)
        if (tally_init(&run.threads[i].res.tally, opt->sources.n) != 0)
            return -ENOMEM;
    return 0;
}

/* Names the series file in a failure's message: err, or 0. */
static int series_failed(const load_options *opt, int err) {
    if (err)
        fprintf(stderr, "coecho-load: %s: %s\n", opt->series_path, strerror(-err));
    return err;
}

static void set_clock(const load_options *opt) {
    run.clock.start_ns = load_now_ns();
    run.clock.measure_ns = run.clock.start_ns + opt->warmup_ms * 1000000;
    run.clock.stop_ns = run.clock.measure_ns + opt->duration_ms * 1000000;
}

int load_run(const load_options *opt, load_results *res) {
    run.opt = opt;
    run.nthreads = opt->threads > 0 ? opt->threads : 1;
    set_clock(opt);
    int err = init_changed();
    if (err)
        return err;
    run.threads = calloc((size_t)run.nthreads, sizeof *run.threads);
    err = run.threads ? init_tallies(opt) : -ENOMEM;
    if (!err)
        err = load_run_setup(opt, &run.clock);
    if (!err && opt->interval_ms)
        err = series_failed(opt, series_open(&run.series, opt->series_path, opt->interval_ms,
                                             run.clock.measure_ns));
    if (!err)
        err = run_threads(res);
    if (run.series) {
        int closed = series_failed(opt, series_close(run.series));
        err = err ? err : closed;
        run.series = NULL;
    }
    load_run_teardown();
    for (long i = 0; run.threads && i < run.nthreads; i++)
        tally_free(&run.threads[i].res.tally);
    free(run.threads);
    pthread_cond_destroy(&changed);
    return err;
}
