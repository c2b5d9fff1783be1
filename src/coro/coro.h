/* coro: stackful coroutines: context switch and guarded, pooled stacks.
 *
 * This layer knows nothing of event loops or sockets. A coroutine is a saved
 * machine context plus the stack it runs on; coro_transfer() suspends one and
 * resumes another. The switch is a few lines of assembly on x86-64 and
 * aarch64 (callee-saved registers, stack pointer and floating-point control
 * state) or swapcontext(3) when built with CORO_UCONTEXT. */
#ifndef COECHO_CORO_H
#define COECHO_CORO_H

#include <stddef.h>
#include <stdint.h>

#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#if !defined(CORO_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define CORO_UCONTEXT 1
#endif

#ifdef CORO_UCONTEXT
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif

/* One mmap'd stack: [base, base + guard) is PROT_NONE, the usable part is
 * [base + guard, base + guard + size). Stacks grow down into the guard. */
typedef struct coro_stack {
    void *base;
    size_t size;
    size_t guard;
    unsigned valgrind_id;
} coro_stack;

typedef struct coro {
#ifdef CORO_UCONTEXT
    ucontext_t uc;
    size_t uc_stack_size; /* usable part, below the owner's data */
#else
    void *sp; /* saved stack pointer; the rest lives on the stack */
#endif
    void (*entry)(void *);
    void *arg;
    /* Usable stack range, [stack_lo, stack_lo + stack_size); guard below. */
    char *stack_lo;
    size_t stack_size;
    size_t guard_size;
    /* Labels for the overflow message; owned by the caller. */
    uint64_t id;
    const char *name;
#ifdef CORO_ASAN
    void *asan_fake_stack;
    const void *asan_bottom;
    size_t asan_size;
#endif
} coro;

/* Prepares c to run entry(arg) on stack when first resumed. entry must never
 * return: it ends by transferring away with coro_transfer_final(). */
void coro_init(coro *c, coro_stack *stack, void (*entry)(void *), void *arg);

/* The same, with the coroutine's frames starting below top, so the owner can
 * keep its own data at the top of the stack (top <= coro_stack_top()). */
void coro_init_below(coro *c, coro_stack *stack, char *top, void (*entry)(void *), void *arg);

/* Makes the calling thread's own stack the coroutine `self`, so it can be
 * switched away from and back to. */
void coro_init_thread(coro *self);

/* Suspends from (the running coroutine) and resumes to. Returns when some
 * coroutine transfers back to from. */
void coro_transfer(coro *from, coro *to);

/* Like coro_transfer, but from never runs again: its stack may be reused as
 * soon as to is running. */
void coro_transfer_final(coro *from, coro *to);

/* The coroutine running on this thread, or NULL before coro_init_thread(). */
coro *coro_running(void);

/* Stack pool: stacks of one size, mmap'd with a guard page, kept for reuse
 * up to max_cached so steady-state spawn/exit does not call mmap. */
typedef struct coro_stack_pool {
    size_t stack_size; /* usable bytes, multiple of the page size */
    size_t max_cached;
    size_t cached;
    size_t mapped; /* stacks currently mapped (cached + in use) */
    struct coro_stack_link *free;
} coro_stack_pool;

/* stack_size is rounded up to whole pages. */
void coro_stack_pool_init(coro_stack_pool *pool, size_t stack_size, size_t max_cached);
/* Unmaps every cached stack. Stacks still in use stay the caller's. */
void coro_stack_pool_destroy(coro_stack_pool *pool);
/* A pooled stack keeps its free-list node in its own top bytes. */
struct coro_stack_link {
    struct coro_stack_link *next;
    coro_stack stack;
};

/* Highest address a stack's user may touch: above it the pool keeps its link,
 * so whatever the user leaves below survives a trip through the pool. */
static inline char *coro_stack_top(const coro_stack *stack) {
    return (char *)stack->base + stack->guard + stack->size - sizeof(struct coro_stack_link);
}

int coro_stack_map(coro_stack_pool *pool, coro_stack *out);
void coro_stack_unmap(coro_stack_pool *pool, coro_stack *stack);
void coro_stack_clean(coro_stack *stack);

/* Returns 0, or -errno when no stack could be mapped. */
static inline int coro_stack_get(coro_stack_pool *pool, coro_stack *out) {
    struct coro_stack_link *l = pool->free;
    if (!l)
        return coro_stack_map(pool, out);
    pool->free = l->next;
    pool->cached--;
    *out = l->stack;
    return 0;
}

static inline void coro_stack_put(coro_stack_pool *pool, coro_stack *stack) {
    if (pool->cached >= pool->max_cached) {
        coro_stack_unmap(pool, stack);
        return;
    }
#ifdef CORO_ASAN
    coro_stack_clean(stack);
#endif
    char *top = (char *)stack->base + stack->guard + stack->size;
    struct coro_stack_link *l = (struct coro_stack_link *)(top - sizeof *l);
    l->stack = *stack;
    l->next = pool->free;
    pool->free = l;
    pool->cached++;
}

/* Installs a SIGSEGV/SIGBUS handler, on an alternate signal stack, that
 * reports "coroutine <id> (<name>) overflowed its <N> KiB stack" when the
 * fault hits the running coroutine's guard page, then aborts. Other faults
 * go to the handler that was there before. Idempotent; returns 0 or -errno. */
int coro_guard_install(void);

#endif
