/* coro: context switch wrappers, guarded stack pool, overflow reporting. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "coro.h"

#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stack.h"

#ifdef HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) ((void)(lo), (void)(hi), 0u)
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

static __thread coro *running;
#ifdef CORO_ASAN
static __thread coro *asan_switched_from;
#endif

coro *coro_running(void) { return running; }

/* Called on the new stack the first time a coroutine is resumed. */
static void coro_start(void *opaque) {
    coro *c = opaque;
#ifdef CORO_ASAN
    coro *prev = asan_switched_from;
    __sanitizer_finish_switch_fiber(NULL, &prev->asan_bottom, &prev->asan_size);
#endif
    c->entry(c->arg);
    abort(); /* entry must leave with coro_transfer_final() */
}

#ifdef CORO_UCONTEXT
/* makecontext passes int arguments only, so the pointer travels in halves.
 * getcontext captured the creator's floating-point environment; start from
 * the defaults instead, as the assembly switch does. */
static void coro_start_ucontext(unsigned hi, unsigned lo) {
    fesetenv(FE_DFL_ENV);
    coro_start((void *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

static void raw_init(coro *c, char *top) {
    (void)top;
    if (getcontext(&c->uc) != 0)
        abort(); /* cannot fail on Linux with a valid pointer */
    c->uc.uc_stack.ss_sp = c->stack_lo;
    c->uc.uc_stack.ss_size = c->uc_stack_size;
    c->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)c;
    makecontext(&c->uc, (void (*)(void))coro_start_ucontext, 2, (unsigned)(p >> 32),
                (unsigned)(p & 0xffffffffu));
}

static inline void raw_switch(coro *from, coro *to) {
    if (swapcontext(&from->uc, &to->uc) != 0)
        abort(); /* only fails on invalid contexts */
}
#else
void coro_switch(void **save_sp, void *load_sp);
void coro_trampoline(void);

#if defined(__x86_64__)
/* Frame popped by coro_switch: fp control, r15, r14, r13, r12, rbx, rbp, ret. */
static void raw_init(coro *c, char *top) {
    uint64_t *frame = (uint64_t *)top - 8;
    frame[0] = 0x1F80u | ((uint64_t)0x037Fu << 32); /* default MXCSR, x87 CW */
    frame[3] = (uintptr_t)c;                       /* r13: argument */
    frame[4] = (uintptr_t)coro_start;              /* r12: function */
    frame[6] = 0;                                  /* rbp: end of backtraces */
    frame[7] = (uintptr_t)coro_trampoline;         /* return address */
    c->sp = frame;
}
#elif defined(__aarch64__)
/* Frame popped by coro_switch: x19..x30, d8..d15, fpcr (176 bytes). */
static void raw_init(coro *c, char *top) {
    uint64_t *frame = (uint64_t *)(top - 176);
    memset(frame, 0, 176);
    frame[0] = (uintptr_t)coro_start;       /* x19: function */
    frame[1] = (uintptr_t)c;                /* x20: argument */
    frame[11] = (uintptr_t)coro_trampoline; /* x30: return address */
    c->sp = frame;
}
#endif

static inline void raw_switch(coro *from, coro *to) { coro_switch(&from->sp, to->sp); }
#endif

void coro_init(coro *c, coro_stack *stack, void (*entry)(void *), void *arg) {
    coro_init_below(c, stack, coro_stack_top_inline(stack), entry, arg);
}

void coro_init_below(coro *c, coro_stack *stack, char *top, void (*entry)(void *), void *arg) {
    c->entry = entry;
    c->arg = arg;
    c->stack_lo = (char *)stack->base + stack->guard;
    c->stack_size = stack->size;
    c->guard_size = stack->guard;
#ifdef CORO_ASAN
    /* Frames of the stack's previous owner never returned: clear their
     * redzones or they would be reported against the new owner. */
    ASAN_UNPOISON_MEMORY_REGION(c->stack_lo, c->stack_size);
    c->asan_fake_stack = NULL;
    c->asan_bottom = c->stack_lo;
    c->asan_size = c->stack_size;
#endif
    top = (char *)((uintptr_t)top & ~(uintptr_t)15);
#ifdef CORO_UCONTEXT
    c->uc_stack_size = (size_t)(top - c->stack_lo);
#endif
    raw_init(c, top);
}

void coro_init_thread(coro *self) {
    memset(self, 0, sizeof *self);
    self->name = "main";
    running = self;
}

void coro_transfer(coro *from, coro *to) {
    running = to;
#ifdef CORO_ASAN
    asan_switched_from = from;
    __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->asan_bottom, to->asan_size);
#endif
    raw_switch(from, to);
#ifdef CORO_ASAN
    coro *prev = asan_switched_from;
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, &prev->asan_bottom,
                                    &prev->asan_size);
#endif
}

void coro_transfer_final(coro *from, coro *to) {
    running = to;
#ifdef CORO_ASAN
    asan_switched_from = from;
    __sanitizer_start_switch_fiber(NULL, to->asan_bottom, to->asan_size);
#endif
    raw_switch(from, to);
    abort(); /* a finished coroutine is never resumed */
}

/* ---- many pages at once ------------------------------------------------- */

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13; older headers lack it */
#endif
/* PIDFD_SELF_THREAD_GROUP (Linux 6.14): process_madvise on ourselves, with
 * any advice since 6.13, without a pidfd (one opened at start would name
 * the parent after a fork). */
#define PIDFD_SELF_PROCESS (-10001)
#ifndef SYS_process_madvise
#define SYS_process_madvise 440 /* Linux 5.10, the same on x86-64 and aarch64 */
#endif
/* The kernel advises at most about 2 GiB a call: batches stay below. */
#define ADVISE_MAX_BYTES ((size_t)1 << 30)
/* iovecs per process_madvise; small enough for any caller's stack. */
#define ADVISE_BATCH 256

/* Threads that race here compute the same answer: relaxed atomics suffice. */
static size_t page_size(void) {
    static size_t cached;
    size_t size = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!size) {
        long p = sysconf(_SC_PAGESIZE);
        size = p > 0 ? (size_t)p : 4096;
        __atomic_store_n(&cached, size, __ATOMIC_RELAXED);
    }
    return size;
}

/* process_madvise on ourselves: 1 works, 0 not tried, -1 refused. */
static int vector_advice;

/* Gives the same advice for n ranges: one system call where the kernel
 * takes a vector, else one each. 0 or the -errno of the first failure. */
static int advise_many(const struct iovec *iov, size_t n, int advice) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (__atomic_load_n(&vector_advice, __ATOMIC_RELAXED) >= 0) {
        long r = syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, iov, n, advice, 0u);
        if (r >= 0 && (size_t)r == total) {
            __atomic_store_n(&vector_advice, 1, __ATOMIC_RELAXED);
            return 0;
        }
        /* An old kernel (EBADF, EINVAL, ENOSYS, EPERM) or a partial run:
         * the ranges one by one say which, if any, fails. */
        if (r < 0 && (errno == EBADF || errno == EINVAL || errno == ENOSYS || errno == EPERM) &&
            __atomic_load_n(&vector_advice, __ATOMIC_RELAXED) == 0)
            __atomic_store_n(&vector_advice, -1, __ATOMIC_RELAXED);
    }
    for (size_t i = 0; i < n; i++)
        if (madvise(iov[i].iov_base, iov[i].iov_len, advice) != 0)
            return -errno;
    return 0;
}

/* ---- parking ------------------------------------------------------------- */

#ifndef CORO_UCONTEXT
/* Parked frames hold AddressSanitizer's poisoned redzones, which memcpy
 * would report: that build copies word by word, uninstrumented. */
#ifdef CORO_ASAN
__attribute__((no_sanitize_address)) static void copy_frames(void *to, const void *from,
                                                             size_t len) {
    volatile uint64_t *d = to;
    const volatile uint64_t *s = from;
    for (size_t i = 0; i < len / sizeof *d; i++)
        d[i] = s[i];
}
#else
static void copy_frames(void *to, const void *from, size_t len) { memcpy(to, from, len); }
#endif
#endif

int coro_park(coro *c) {
#ifdef CORO_UCONTEXT
    (void)c;
    return -ENOTSUP;
#else
    char *end = c->stack_lo + c->stack_size;
    size_t len = (size_t)(end - (char *)c->sp); /* a multiple of 8: the switch pushed words */
    void *buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    copy_frames(buf, c->sp, len);
    c->parked = buf;
    c->parked_len = len;
    return 0;
#endif
}

void coro_unpark(coro *c) {
#ifndef CORO_UCONTEXT
    /* The copy faults the pages back in; populating them first saved
     * nothing in the VM measured (its first touch of a page costs the
     * same ~10 us either way). */
    copy_frames(c->sp, c->parked, c->parked_len);
#endif
    free(c->parked);
    c->parked = NULL;
    c->parked_len = 0;
}

void coro_discard_stacks(coro *const cs[], size_t n) {
    struct iovec iov[ADVISE_BATCH];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        size_t bytes = 0;
        for (; k < ADVISE_BATCH && i < n && (k == 0 || bytes + cs[i]->stack_size <= ADVISE_MAX_BYTES);
             k++, i++) {
            bytes += cs[i]->stack_size;
            iov[k].iov_base = cs[i]->stack_lo;
            iov[k].iov_len = cs[i]->stack_size;
        }
        /* On failure the pages merely stay resident. */
        (void)advise_many(iov, k, MADV_DONTNEED);
    }
}

/* ---- stack pool ---------------------------------------------------------- */

/* Larger than any frame the program makes, so no frame can step over it
 * into the neighbouring stack (with -fstack-clash-protection, big frames
 * probe page by page anyway). Costs no memory: a madvise guard has no pages
 * and an mprotect'd one only address space. */
#define GUARD_SIZE (64 * 1024)
/* A slab is about this much address space, and holds at least MIN_SLAB
 * stacks: few mmaps, and empty slabs are still small enough to give back
 * (and with 8 MiB stacks a slab is 65 MiB, not half a gigabyte). */
#define SLAB_BYTES (8u << 20)
#define MIN_SLAB 8
#define MAX_SLAB 4096

/* One mmap holding slab_stacks slots of [guard][stack]. The header lives
 * outside the mapping so that releasing the slots' pages loses nothing. */
struct coro_slab {
    char *base;
    struct coro_slab *next, *prev;           /* pool->all */
    struct coro_slab *avail_next, *avail_prev; /* pool->avail, when nclean > 0 */
    unsigned nslots;
    unsigned live;    /* slots in use or cached */
    unsigned guarded; /* slots [0, guarded) were handed out once: guarded */
    bool bulk_guarded; /* every slot's guard went in when it was mapped */
    unsigned nclean;  /* entries of clean[] */
    unsigned *valgrind_ids;
    unsigned clean[]; /* free slots without pages; popped from the end */
};

enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT };
static int guard_kind_cache; /* read and written with relaxed atomics */

/* True when the kernel refuses to read the guarded page at p: a write(2)
 * from it fails with EFAULT. Emulators such as qemu-user accept
 * MADV_GUARD_INSTALL as a hint and ignore it; their guard would not be one. */
static bool guard_is_enforced(const void *p) {
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    ssize_t r = write(fds[1], p, 1);
    bool enforced = r < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
    return enforced;
}

/* Tries MADV_GUARD_INSTALL once on a scratch mapping. Any failure there
 * (EINVAL or ENOSYS on older kernels, or a guard not enforced) means the
 * mprotect fallback. */
static int probe_guard_kind(void) {
    const char *env = getenv("COECHO_STACK_GUARD");
    if (env && strcmp(env, "mprotect") == 0)
        return GUARD_MPROTECT;
    size_t page = page_size();
    void *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return GUARD_MPROTECT;
    int kind = madvise(p, page, MADV_GUARD_INSTALL) == 0 && guard_is_enforced(p)
                   ? GUARD_MADVISE
                   : GUARD_MPROTECT;
    munmap(p, 2 * page);
    return kind;
}

/* Every thread that races here computes the same answer. */
static int guard_kind(void) {
    int kind = __atomic_load_n(&guard_kind_cache, __ATOMIC_RELAXED);
    if (kind == GUARD_UNKNOWN) {
        kind = probe_guard_kind();
        __atomic_store_n(&guard_kind_cache, kind, __ATOMIC_RELAXED);
    }
    return kind;
}

const char *coro_stack_guard_kind(void) {
    return guard_kind() == GUARD_MADVISE ? "madvise" : "mprotect";
}

/* Reads one long from a small file such as /proc/sys/vm/max_map_count. */
static long read_long_file(const char *path, long fallback) {
    FILE *f = fopen(path, "re");
    if (!f)
        return fallback;
    long v;
    if (fscanf(f, "%ld", &v) != 1)
        v = fallback;
    fclose(f);
    return v;
}

static long count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

long coro_stack_budget(void) {
    if (guard_kind() == GUARD_MADVISE)
        return -1;
    /* 65530 is the kernel's default, for when /proc is not mounted. */
    long max = read_long_file("/proc/sys/vm/max_map_count", 65530);
    long now = count_mappings();
    if (now < 0)
        now = 0;
    /* An mprotect'd guard splits the slab: a stack and its guard are two
     * mappings. */
    return max > now ? (max - now) / 2 : 0;
}

void coro_stack_pool_init(coro_stack_pool *pool, size_t stack_size, size_t max_cached) {
    size_t page = page_size();
    memset(pool, 0, sizeof *pool);
    if (stack_size < page)
        stack_size = page;
    pool->stack_size = (stack_size + page - 1) & ~(page - 1);
    pool->guard_size = (GUARD_SIZE + page - 1) & ~(page - 1);
    pool->slot_size = pool->guard_size + pool->stack_size;
    size_t n = SLAB_BYTES / pool->slot_size;
    pool->slab_stacks = n < MIN_SLAB ? MIN_SLAB : n > MAX_SLAB ? MAX_SLAB : (unsigned)n;
    pool->max_cached = max_cached;
    pool->guards_left = -1;
}

/* Mappings kept back from mprotect'd guards for everything else (libev's
 * arrays, malloc's large blocks): when they run out, stacks run out first
 * and the process keeps working, with fewer connections. */
#define MAPPINGS_RESERVE 256

/* The count starts at the first mprotect'd guard, from the mappings then. */
static int take_guard_budget(coro_stack_pool *pool) {
    if (pool->guards_left < 0) {
        long budget = coro_stack_budget(); /* (max - in use) / 2 */
        pool->guards_left = budget > MAPPINGS_RESERVE / 2 ? budget - MAPPINGS_RESERVE / 2 : 0;
    }
    if (pool->guards_left == 0)
        return -ENOMEM;
    pool->guards_left--;
    return 0;
}

static char *slot_base(const coro_stack_pool *pool, const struct coro_slab *slab, unsigned i) {
    return slab->base + (size_t)i * pool->slot_size;
}

static void avail_push(coro_stack_pool *pool, struct coro_slab *slab) {
    slab->avail_prev = NULL;
    slab->avail_next = pool->avail;
    if (pool->avail)
        pool->avail->avail_prev = slab;
    pool->avail = slab;
}

static void avail_remove(coro_stack_pool *pool, struct coro_slab *slab) {
    if (slab->avail_prev)
        slab->avail_prev->avail_next = slab->avail_next;
    else
        pool->avail = slab->avail_next;
    if (slab->avail_next)
        slab->avail_next->avail_prev = slab->avail_prev;
}

/* Installs every slot's guard region in one go (a vector of madvise), so
 * that taking a stack makes no system call. Only for madvise guards: an
 * mprotect'd guard costs mappings, so those come one by one as slots are
 * first used. On failure, the slots are guarded one by one. */
static void guard_slab(coro_stack_pool *pool, struct coro_slab *slab) {
    struct iovec iov[ADVISE_BATCH];
    for (unsigned i = 0; i < slab->nslots;) {
        size_t k = 0;
        for (; k < ADVISE_BATCH && i < slab->nslots; k++, i++) {
            iov[k].iov_base = slot_base(pool, slab, i);
            iov[k].iov_len = pool->guard_size;
        }
        if (advise_many(iov, k, MADV_GUARD_INSTALL) != 0)
            return;
    }
    slab->bulk_guarded = true;
}

/* Maps a slab with every slot clean. 0 or -errno. */
static int slab_new(coro_stack_pool *pool) {
    unsigned n = pool->slab_stacks;
    struct coro_slab *slab = calloc(1, sizeof *slab + n * sizeof slab->clean[0]);
    unsigned *ids = calloc(n, sizeof *ids);
    if (!slab || !ids) {
        free(slab);
        free(ids);
        return -ENOMEM;
    }
    void *base = mmap(NULL, (size_t)n * pool->slot_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        int err = errno;
        free(slab);
        free(ids);
        return -err;
    }
    slab->base = base;
    slab->nslots = n;
    slab->valgrind_ids = ids;
    for (unsigned i = 0; i < n; i++) /* slot 0 on top: slots are first used in order */
        slab->clean[i] = n - 1 - i;
    slab->nclean = n;
    slab->next = pool->all;
    if (pool->all)
        pool->all->prev = slab;
    pool->all = slab;
    avail_push(pool, slab);
    pool->slabs++;
    pool->empty_slabs++;
    if (guard_kind() == GUARD_MADVISE)
        guard_slab(pool, slab);
    return 0;
}

static void slab_unmap(coro_stack_pool *pool, struct coro_slab *slab) {
    if (!slab->bulk_guarded && pool->guards_left >= 0)
        pool->guards_left += slab->guarded; /* their mappings go with it */
    for (unsigned i = 0; i < slab->guarded; i++)
        VALGRIND_STACK_DEREGISTER(slab->valgrind_ids[i]);
    size_t len = (size_t)slab->nslots * pool->slot_size;
#ifdef CORO_ASAN
    ASAN_UNPOISON_MEMORY_REGION(slab->base, len);
#endif
    munmap(slab->base, len); /* fails only on bad arguments */
    if (slab->nclean)
        avail_remove(pool, slab);
    if (slab->prev)
        slab->prev->next = slab->next;
    else
        pool->all = slab->next;
    if (slab->next)
        slab->next->prev = slab->prev;
    pool->slabs--;
    pool->empty_slabs--;
    free(slab->valgrind_ids);
    free(slab);
}

/* Installs slot i's guard: madvise when the kernel has guard regions (the
 * slab stays one mapping), else mprotect (it splits). 0 or -errno. */
static int guard_slot(coro_stack_pool *pool, struct coro_slab *slab, unsigned i) {
    char *guard = slot_base(pool, slab, i);
    if (guard_kind() == GUARD_MADVISE) {
        if (madvise(guard, pool->guard_size, MADV_GUARD_INSTALL) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* The probe passed but this kernel refuses here: fall back for good. */
        __atomic_store_n(&guard_kind_cache, GUARD_MPROTECT, __ATOMIC_RELAXED);
    }
    int err = take_guard_budget(pool);
    if (err)
        return err;
    if (mprotect(guard, pool->guard_size, PROT_NONE) != 0) {
        pool->guards_left++;
        return -errno; /* ENOMEM: vm.max_map_count reached */
    }
    return 0;
}

int coro_stack_take(coro_stack_pool *pool, coro_stack *out) {
    if (!pool->avail) {
        int err = slab_new(pool);
        if (err)
            return err;
    }
    struct coro_slab *slab = pool->avail;
    unsigned i = slab->clean[slab->nclean - 1];
    /* Slots are handed out in order the first time, so only slot `guarded`
     * can lack its guard. */
    if (i >= slab->guarded) {
        int err = slab->bulk_guarded ? 0 : guard_slot(pool, slab, i);
        if (err)
            return err;
        char *lo = slot_base(pool, slab, i) + pool->guard_size;
        slab->valgrind_ids[i] = VALGRIND_STACK_REGISTER(lo, lo + pool->stack_size);
        slab->guarded = i + 1;
    }
    if (--slab->nclean == 0)
        avail_remove(pool, slab);
    if (slab->live++ == 0)
        pool->empty_slabs--;
    out->base = slot_base(pool, slab, i);
    out->size = pool->stack_size;
    out->guard = pool->guard_size;
    out->slab = slab;
    out->index = i;
    out->valgrind_id = slab->valgrind_ids[i];
    pool->mapped++;
    return 0;
}

/* Gives back the pages of slots [lo, hi] of slab, guards between them
 * included (a madvise guard survives MADV_DONTNEED, an mprotect'd one has
 * no pages), and files the slots as clean. A slab left with no live slot is
 * unmapped unless it is the only empty one, kept for the next burst. */
static void release_run(coro_stack_pool *pool, struct coro_slab *slab, unsigned lo, unsigned hi) {
    char *from = slot_base(pool, slab, lo) + pool->guard_size;
    char *to = slot_base(pool, slab, hi + 1);
    /* On failure the pages merely stay resident: nothing relies on a clean
     * slot reading as zeros. */
    (void)madvise(from, (size_t)(to - from), MADV_DONTNEED);
    if (slab->nclean == 0)
        avail_push(pool, slab);
    for (unsigned i = lo; i <= hi; i++)
        slab->clean[slab->nclean++] = i;
    unsigned n = hi - lo + 1;
    slab->live -= n;
    pool->mapped -= n;
    if (slab->live == 0 && ++pool->empty_slabs > 1)
        slab_unmap(pool, slab);
}

/* Releases the oldest cached stacks down to half of max_cached, so the
 * next put does not trim again at once; neighbours in a slab go in one
 * madvise. */
void coro_stack_trim(coro_stack_pool *pool) {
    size_t keep = pool->max_cached / 2;
    struct coro_slab *run_slab = NULL;
    unsigned run_lo = 0, run_hi = 0;
    while (pool->cached > keep) {
        struct coro_stack_link *l = pool->free_tail;
        coro_stack s = l->stack; /* l is gone once its pages are */
        pool->free_tail = l->prev;
        if (l->prev)
            l->prev->next = NULL;
        else
            pool->free = NULL;
        pool->cached--;
        if (run_slab == s.slab && s.index == run_hi + 1) {
            run_hi = s.index;
            continue;
        }
        if (run_slab == s.slab && s.index + 1 == run_lo) {
            run_lo = s.index;
            continue;
        }
        if (run_slab)
            release_run(pool, run_slab, run_lo, run_hi);
        run_slab = s.slab;
        run_lo = run_hi = s.index;
    }
    if (run_slab)
        release_run(pool, run_slab, run_lo, run_hi);
}

int coro_stack_get(coro_stack_pool *pool, coro_stack *out) {
    return coro_stack_get_inline(pool, out);
}

void coro_stack_put(coro_stack_pool *pool, coro_stack *stack) {
    coro_stack_put_inline(pool, stack);
}

char *coro_stack_top(const coro_stack *stack) { return coro_stack_top_inline(stack); }

/* Empties the cache, then unmaps every slab with no stack in use. */
void coro_stack_pool_destroy(coro_stack_pool *pool) {
    size_t max_cached = pool->max_cached;
    pool->max_cached = 0;
    coro_stack_trim(pool);
    pool->max_cached = max_cached;
    struct coro_slab *slab = pool->all;
    while (slab) {
        struct coro_slab *next = slab->next;
        if (slab->live == 0)
            slab_unmap(pool, slab);
        slab = next;
    }
}

/* Frames of a finished coroutine never returned: clear their redzones so
 * they are not reported against the stack's next owner. */
void coro_stack_clean(coro_stack *stack) {
#ifdef CORO_ASAN
    ASAN_UNPOISON_MEMORY_REGION((char *)stack->base + stack->guard, stack->size);
#else
    (void)stack;
#endif
}

/* ---- overflow reporting -------------------------------------------------- */

/* The dispositions on_fault replaced: process-wide, as dispositions are,
 * and written under handler_lock so two threads installing at once cannot
 * record on_fault itself as the previous one. */
static struct sigaction previous_segv, previous_bus;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
/* sigaltstack is per thread: each thread that runs coroutines maps its own,
 * given back when the thread exits (alt_stack_key's destructor). */
static __thread void *alt_stack;
static pthread_key_t alt_stack_key;
static pthread_once_t alt_stack_once = PTHREAD_ONCE_INIT;
static int alt_stack_key_err;
/* Async-signal-safe decimal formatting. */
static size_t format_u64(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t append(char *buf, size_t len, size_t cap, const char *s) {
    while (*s && len < cap)
        buf[len++] = *s++;
    return len;
}

static void on_fault(int sig, siginfo_t *info, void *uctx) {
    (void)uctx;
    coro *c = running;
    char *addr = info->si_addr;
    if (c && c->stack_lo && addr < c->stack_lo && addr >= c->stack_lo - c->guard_size) {
        char msg[256], num[24];
        size_t len = append(msg, 0, sizeof msg, "coroutine ");
        num[format_u64(num, c->id)] = '\0';
        len = append(msg, len, sizeof msg, num);
        len = append(msg, len, sizeof msg, " (");
        len = append(msg, len, sizeof msg, c->name ? c->name : "?");
        len = append(msg, len, sizeof msg, ") overflowed its ");
        num[format_u64(num, c->stack_size / 1024)] = '\0';
        len = append(msg, len, sizeof msg, num);
        len = append(msg, len, sizeof msg, " KiB stack\n");
        ssize_t ignored = write(STDERR_FILENO, msg, len);
        (void)ignored;
        abort();
    }
    /* Not ours: let the previous disposition handle the fault when the
     * faulting instruction runs again. */
    sigaction(sig, sig == SIGSEGV ? &previous_segv : &previous_bus, NULL);
}

/* Installs on_fault for sig unless it is already there, remembering the
 * disposition it replaces. */
static int install_handler(int sig, struct sigaction *previous) {
    struct sigaction now, sa;
    if (sigaction(sig, NULL, &now) != 0)
        return -errno;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_fault)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, previous) != 0)
        return -errno;
    return 0;
}

static size_t alt_stack_size(void) {
    size_t size = 64 * 1024;
    return size < (size_t)SIGSTKSZ ? (size_t)SIGSTKSZ : size;
}

/* At thread exit: stop using the thread's alternate stack, then unmap it. */
static void alt_stack_free(void *stack) {
    stack_t off = {.ss_flags = SS_DISABLE};
    if (sigaltstack(&off, NULL) == 0) /* else still in use: leave it mapped */
        munmap(stack, alt_stack_size());
}

static void alt_stack_key_create(void) {
    alt_stack_key_err = pthread_key_create(&alt_stack_key, alt_stack_free);
}

/* Maps the calling thread's alternate stack, kept for the thread's life. */
static int alt_stack_map(void) {
    if (alt_stack)
        return 0;
    pthread_once(&alt_stack_once, alt_stack_key_create);
    if (alt_stack_key_err)
        return -alt_stack_key_err;
    void *p =
        mmap(NULL, alt_stack_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    int err = pthread_setspecific(alt_stack_key, p);
    if (err) {
        munmap(p, alt_stack_size());
        return -err;
    }
    alt_stack = p;
    return 0;
}

/* Gives the calling thread an alternate signal stack unless it has one. */
static int alt_stack_install(void) {
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0)
        return -errno;
    if (!(ss.ss_flags & SS_DISABLE) && ss.ss_size >= 32 * 1024)
        return 0;
    int err = alt_stack_map();
    if (err)
        return err;
    ss.ss_sp = alt_stack;
    ss.ss_size = alt_stack_size();
    ss.ss_flags = 0;
    return sigaltstack(&ss, NULL) == 0 ? 0 : -errno;
}

/* Checks the handlers each time, since a test harness or library may have
 * put its own back since the last call. */
int coro_guard_install(void) {
    int err = alt_stack_install();
    if (err)
        return err;
    pthread_mutex_lock(&handler_lock);
    err = install_handler(SIGSEGV, &previous_segv);
    if (!err)
        err = install_handler(SIGBUS, &previous_bus);
    pthread_mutex_unlock(&handler_lock);
    return err;
}
