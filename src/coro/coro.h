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

/* CORO_UCONTEXT decides struct coro's layout, so every file must see the
 * same answer: in the autotools build it comes from config.h, which this
 * header does not include (a public header must not); the includer does,
 * first, as every source file of the project does. */
#if defined(HAVE_CONFIG_H) && !defined(PACKAGE_NAME)
#error "include <config.h> before coro/coro.h: CORO_UCONTEXT sets struct coro's layout"
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

/* One stack, a slot of a slab (one mmap holding many stacks): [base, base +
 * guard) is a guard region, the usable part is [base + guard, base + guard +
 * size). Stacks grow down into the guard, which is larger than any frame. */
typedef struct coro_stack {
    void *base;
    size_t size;
    size_t guard;
    struct coro_slab *slab;
    unsigned index; /* slot in the slab */
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
    /* While parked: the live frames, copied aside (see coro_park). */
    void *parked;
    size_t parked_len;
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

/* Parking, for coroutines that wait long: coro_park copies a suspended
 * coroutine's live frames (from its saved stack pointer to the top of its
 * stack, a few hundred bytes for most) to the heap, after which its stack's
 * pages may be given back with coro_discard_stacks; coro_unpark copies them
 * back to the same addresses, and must run before the coroutine resumes.
 * Anything that points into the stack meanwhile reads zeros: only its owner
 * may keep such pointers. coro_park returns 0, -ENOMEM, or -ENOTSUP in the
 * ucontext build (its stack pointer is not at hand). */
int coro_park(coro *c);
void coro_unpark(coro *c);

/* Gives back the resident pages of the stacks of n coroutines (their
 * contents are lost: park them first): one system call per 1,024 stacks
 * where the kernel allows it (process_madvise on itself, Linux 6.14). */
void coro_discard_stacks(coro *const cs[], size_t n);

/* Stack pool: stacks of one size, carved from slabs (one mmap holds many
 * stacks, each behind a guard region) so that a stack costs no mapping of
 * its own and spawning from the pool makes no system call. Up to max_cached
 * idle stacks keep their pages for reuse; past that, the oldest half give
 * their pages back to the kernel in one madvise per run of neighbours, and
 * slabs left empty are unmapped (one is kept). The fields are the pool's own
 * (coro/stack.h); callers only read the counters. */
typedef struct coro_stack_pool {
    size_t stack_size; /* usable bytes, multiple of the page size */
    size_t guard_size; /* guard region below each stack */
    size_t slot_size;  /* guard_size + stack_size */
    unsigned slab_stacks;
    size_t max_cached;
    size_t cached; /* idle stacks that kept their pages */
    size_t mapped; /* stacks holding memory: in use or cached */
    size_t slabs;  /* slabs mapped */
    size_t empty_slabs;
    long guards_left; /* mprotect'd guards still allowed; -1: not counted */
    struct coro_stack_link *free; /* cached stacks, most recently freed first */
    struct coro_stack_link *free_tail;
    struct coro_slab *avail; /* slabs with released or never used slots */
    struct coro_slab *all;
} coro_stack_pool;

/* stack_size is rounded up to whole pages. */
void coro_stack_pool_init(coro_stack_pool *pool, size_t stack_size, size_t max_cached);
/* Unmaps every slab with no stack in use. Stacks still in use stay the
 * caller's, and so do their slabs. */
void coro_stack_pool_destroy(coro_stack_pool *pool);

/* Takes a stack from the pool, mapping a new slab when none is free.
 * Returns 0, or -errno when no stack could be mapped or guarded. */
int coro_stack_get(coro_stack_pool *pool, coro_stack *out);
/* Gives a stack back: cached for reuse; past max_cached, the oldest cached
 * stacks give their pages back to the kernel. */
void coro_stack_put(coro_stack_pool *pool, coro_stack *stack);

/* How guard regions are made, decided once per process: "madvise" when
 * MADV_GUARD_INSTALL works (Linux 6.13+; guards cost no mapping), else
 * "mprotect" (each stack costs two mappings). COECHO_STACK_GUARD=mprotect in
 * the environment forces the latter. */
const char *coro_stack_guard_kind(void);

/* How many more stacks fit under vm.max_map_count: -1 when guards cost no
 * mapping (no limit from mappings), else (max_map_count - mappings now) / 2,
 * at least 0. Counts /proc/self/maps, so it is not for a fast path. */
long coro_stack_budget(void);

/* Highest address a stack's user may touch: above it the pool keeps its
 * own bookkeeping, so whatever the user leaves below survives a trip
 * through the pool. */
char *coro_stack_top(const coro_stack *stack);

/* Installs a SIGSEGV/SIGBUS handler, on an alternate signal stack (the
 * calling thread's own: sigaltstack is per thread, so every thread that runs
 * coroutines calls this; the stack is unmapped when the thread exits), that
 * reports "coroutine <id> (<name>) overflowed its <N> KiB stack" when the
 * fault hits the running coroutine's guard region, then aborts. Other faults
 * go to the handler that was there before. Idempotent; returns 0 or -errno. */
int coro_guard_install(void);

#endif
