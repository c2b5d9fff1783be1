/* coro: context switch wrappers, guarded stack pool, overflow reporting. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "coro.h"

#include <errno.h>
#include <fenv.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stack.h"

#ifdef HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
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

/* ---- stack pool ---------------------------------------------------------- */

static size_t page_size(void) {
    static size_t cached;
    if (!cached) {
        long p = sysconf(_SC_PAGESIZE);
        cached = p > 0 ? (size_t)p : 4096;
    }
    return cached;
}

void coro_stack_pool_init(coro_stack_pool *pool, size_t stack_size, size_t max_cached) {
    size_t page = page_size();
    memset(pool, 0, sizeof *pool);
    if (stack_size < page)
        stack_size = page;
    pool->stack_size = (stack_size + page - 1) & ~(page - 1);
    pool->max_cached = max_cached;
}

static void stack_unmap(coro_stack *s) {
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#ifdef CORO_ASAN
    ASAN_UNPOISON_MEMORY_REGION((char *)s->base + s->guard, s->size);
#endif
    munmap(s->base, s->size + s->guard);
}

int coro_stack_get(coro_stack_pool *pool, coro_stack *out) {
    return coro_stack_get_inline(pool, out);
}

void coro_stack_put(coro_stack_pool *pool, coro_stack *stack) {
    coro_stack_put_inline(pool, stack);
}

char *coro_stack_top(const coro_stack *stack) { return coro_stack_top_inline(stack); }

void coro_stack_pool_destroy(coro_stack_pool *pool) {
    while (pool->free) {
        struct coro_stack_link *l = pool->free;
        coro_stack s = l->stack;
        pool->free = l->next;
        stack_unmap(&s);
    }
    pool->mapped -= pool->cached;
    pool->cached = 0;
}

int coro_stack_map(coro_stack_pool *pool, coro_stack *out) {
    size_t guard = page_size();
    size_t total = pool->stack_size + guard;
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    if (mprotect(base, guard, PROT_NONE) != 0) {
        int err = errno;
        munmap(base, total);
        return -err;
    }
    out->base = base;
    out->size = pool->stack_size;
    out->guard = guard;
    out->valgrind_id = VALGRIND_STACK_REGISTER((char *)base + guard, (char *)base + total);
    pool->mapped++;
    return 0;
}

void coro_stack_unmap(coro_stack_pool *pool, coro_stack *stack) {
    stack_unmap(stack);
    pool->mapped--;
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

static struct sigaction previous_segv, previous_bus;
static void *alt_stack;
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

/* Checks the handlers each time, since a test harness or library may have
 * put its own back since the last call. */
int coro_guard_install(void) {
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0)
        return -errno;
    if ((ss.ss_flags & SS_DISABLE) || ss.ss_size < 32 * 1024) {
        size_t alt_size = 64 * 1024;
        if (alt_size < (size_t)SIGSTKSZ)
            alt_size = (size_t)SIGSTKSZ;
        if (!alt_stack) { /* kept for the thread's life */
            alt_stack = mmap(NULL, alt_size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (alt_stack == MAP_FAILED) {
                alt_stack = NULL;
                return -errno;
            }
        }
        ss.ss_sp = alt_stack;
        ss.ss_size = alt_size;
        ss.ss_flags = 0;
        if (sigaltstack(&ss, NULL) != 0)
            return -errno;
    }
    int err = install_handler(SIGSEGV, &previous_segv);
    return err ? err : install_handler(SIGBUS, &previous_bus);
}
