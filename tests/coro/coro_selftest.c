/* Self-checking test of src/coro alone: plain C, no libev and no cmocka, so
 * it cross-builds for aarch64 and runs under qemu-user (see cross-aarch64).
 * Prints "coro_selftest: N passed, M failed" and exits non-zero on failure. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro/coro.h"

static int passed, failed;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

static coro main_co;
static coro_stack_pool pool;

/* ---- ping-pong ----------------------------------------------------------- */

static coro pong_co;
static volatile int pong_count;

static void pong(void *arg) {
    (void)arg;
    for (;;) {
        pong_count++;
        coro_transfer(&pong_co, &main_co);
    }
}

static int test_ping_pong(void) {
    coro_stack s;
    CHECK(coro_stack_get(&pool, &s) == 0);
    coro_init(&pong_co, &s, pong, NULL);
    for (int i = 1; i <= 1000; i++) {
        coro_transfer(&main_co, &pong_co);
        CHECK(pong_count == i);
        CHECK(coro_running() == &main_co);
    }
    coro_stack_put(&pool, &s);
    return 0;
}

/* ---- callee-saved registers survive a switch ---------------------------- */

static coro clobber_co;

/* Keeps many values live across the switch, so the compiler holds them in
 * callee-saved registers; the other side does the same with other values. */
static uint64_t live_across_switch(uint64_t seed, coro *self, coro *other) {
    volatile uint64_t in = seed;
    uint64_t a = in * 3, b = in * 5, c = in * 7, d = in * 11, e = in * 13, f = in * 17;
    uint64_t g = in * 19, h = in * 23, i = in * 29, j = in * 31;
    double x = (double)in * 1.5, y = (double)in * 2.5, z = (double)in * 3.5;
    coro_transfer(self, other);
    return a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z);
}

static void clobber(void *arg) {
    (void)arg;
    for (;;)
        live_across_switch(0x5a5a5a5au, &clobber_co, &main_co);
}

static int test_callee_saved(void) {
    coro_stack s;
    CHECK(coro_stack_get(&pool, &s) == 0);
    coro_init(&clobber_co, &s, clobber, NULL);
    for (uint64_t seed = 1; seed < 200; seed++) {
        uint64_t expect = seed * (3 + 5 + 7 + 11 + 13 + 17 + 19 + 23 + 29 + 31) +
                          (uint64_t)((double)seed * 7.5);
        CHECK(live_across_switch(seed, &main_co, &clobber_co) == expect);
    }
    coro_stack_put(&pool, &s);
    return 0;
}

/* Pins known values in every callee-saved register the ABI names, switches
 * away (the other side overwrites them), and checks them afterwards. */
#if !defined(CORO_UCONTEXT) && defined(__x86_64__)
#define PIN(var, reg, val) register uint64_t var __asm__(reg) = (val)
static int pinned_registers_survive(coro *self, coro *other) {
    PIN(rbx, "rbx", 0x1111111111111111u);
    PIN(r12, "r12", 0x2222222222222222u);
    PIN(r13, "r13", 0x3333333333333333u);
    PIN(r14, "r14", 0x4444444444444444u);
    PIN(r15, "r15", 0x5555555555555555u);
    __asm__ volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    coro_transfer(self, other);
    __asm__ volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
    return rbx == 0x1111111111111111u && r12 == 0x2222222222222222u &&
           r13 == 0x3333333333333333u && r14 == 0x4444444444444444u &&
           r15 == 0x5555555555555555u;
}
static void scribble_registers(void) {
    __asm__ volatile("mov $-1, %%rbx; mov $-1, %%r12; mov $-1, %%r13; mov $-1, %%r14;"
                     "mov $-1, %%r15" ::: "rbx", "r12", "r13", "r14", "r15");
}
#elif !defined(CORO_UCONTEXT) && defined(__aarch64__)
#define PIN(var, reg, val) register uint64_t var __asm__(reg) = (val)
#define PIND(var, reg, val) register double var __asm__(reg) = (val)
static int pinned_registers_survive(coro *self, coro *other) {
    PIN(x19, "x19", 19); PIN(x20, "x20", 20); PIN(x21, "x21", 21); PIN(x22, "x22", 22);
    PIN(x23, "x23", 23); PIN(x24, "x24", 24); PIN(x25, "x25", 25); PIN(x26, "x26", 26);
    PIN(x27, "x27", 27); PIN(x28, "x28", 28);
    PIND(d8, "d8", 8.5); PIND(d9, "d9", 9.5); PIND(d10, "d10", 10.5); PIND(d11, "d11", 11.5);
    PIND(d12, "d12", 12.5); PIND(d13, "d13", 13.5); PIND(d14, "d14", 14.5);
    PIND(d15, "d15", 15.5);
#define PINNED_X "+r"(x19), "+r"(x20), "+r"(x21), "+r"(x22), "+r"(x23), "+r"(x24), "+r"(x25), \
        "+r"(x26), "+r"(x27), "+r"(x28)
#define PINNED_D "+w"(d8), "+w"(d9), "+w"(d10), "+w"(d11), "+w"(d12), "+w"(d13), "+w"(d14), \
        "+w"(d15)
    __asm__ volatile("" : PINNED_X);
    __asm__ volatile("" : PINNED_D);
    coro_transfer(self, other);
    __asm__ volatile("" : PINNED_X);
    __asm__ volatile("" : PINNED_D);
    return x19 == 19 && x20 == 20 && x21 == 21 && x22 == 22 && x23 == 23 && x24 == 24 &&
           x25 == 25 && x26 == 26 && x27 == 27 && x28 == 28 && d8 == 8.5 && d9 == 9.5 &&
           d10 == 10.5 && d11 == 11.5 && d12 == 12.5 && d13 == 13.5 && d14 == 14.5 &&
           d15 == 15.5;
}
static void scribble_registers(void) {
    __asm__ volatile("mov x19, #-1; mov x20, #-1; mov x21, #-1; mov x22, #-1; mov x23, #-1;"
                     "mov x24, #-1; mov x25, #-1; mov x26, #-1; mov x27, #-1; mov x28, #-1;"
                     "fmov d8, #-1.0; fmov d9, #-1.0; fmov d10, #-1.0; fmov d11, #-1.0;"
                     "fmov d12, #-1.0; fmov d13, #-1.0; fmov d14, #-1.0; fmov d15, #-1.0" :::
                     "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
                     "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15");
}
#endif

#ifndef CORO_UCONTEXT
static coro scribble_co;

static void scribble_body(void *arg) {
    (void)arg;
    for (;;) {
        scribble_registers();
        coro_transfer(&scribble_co, &main_co);
    }
}

static int test_pinned_registers(void) {
    coro_stack s;
    CHECK(coro_stack_get(&pool, &s) == 0);
    coro_init(&scribble_co, &s, scribble_body, NULL);
    for (int i = 0; i < 10; i++)
        CHECK(pinned_registers_survive(&main_co, &scribble_co));
    coro_stack_put(&pool, &s);
    return 0;
}
#endif

/* ---- floating-point control state is per coroutine ---------------------- */

static coro fp_co;
static volatile int fp_seen_in_coro;

/* fegetround() reads only the x87 control word on x86-64; SSE arithmetic
 * follows MXCSR, which the switch must keep per coroutine as well. */
static unsigned sse_rounding(void) {
#if defined(__x86_64__)
    unsigned mxcsr;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    return mxcsr & 0x6000u;
#else
    return 0;
#endif
}
static volatile unsigned sse_seen_in_coro;

static void fp_body(void *arg) {
    (void)arg;
    fp_seen_in_coro = fegetround(); /* a new coroutine starts with the default */
    sse_seen_in_coro = sse_rounding();
    fesetround(FE_UPWARD);
    coro_transfer(&fp_co, &main_co);
    fp_seen_in_coro = fegetround();
    sse_seen_in_coro = sse_rounding();
    coro_transfer(&fp_co, &main_co);
    for (;;)
        coro_transfer(&fp_co, &main_co);
}

static int test_fp_control(void) {
    coro_stack s;
    CHECK(coro_stack_get(&pool, &s) == 0);
    CHECK(fesetround(FE_TOWARDZERO) == 0);
    coro_init(&fp_co, &s, fp_body, NULL);
    coro_transfer(&main_co, &fp_co);
    unsigned main_sse = sse_rounding();
    CHECK(fp_seen_in_coro == FE_TONEAREST);
    CHECK(sse_seen_in_coro == 0);
    CHECK(fegetround() == FE_TOWARDZERO);
    CHECK(sse_rounding() == main_sse);
    coro_transfer(&main_co, &fp_co);
    CHECK(fp_seen_in_coro == FE_UPWARD);
#if defined(__x86_64__)
    CHECK(sse_seen_in_coro == 0x4000u); /* round up */
    CHECK(main_sse == 0x6000u);         /* toward zero */
#endif
    CHECK(fegetround() == FE_TOWARDZERO);
    CHECK(sse_rounding() == main_sse);
    fesetround(FE_TONEAREST);
    coro_stack_put(&pool, &s);
    return 0;
}

/* ---- the stack is aligned for the ABI ----------------------------------- */

static coro align_co;
static volatile uintptr_t aligned_addr;
static char formatted[64];

static void align_body(void *arg) {
    (void)arg;
    _Alignas(16) volatile char probe[16];
    probe[0] = 1;
    aligned_addr = (uintptr_t)probe;
    /* Variadic calls with doubles use aligned vector stores on x86-64. */
    snprintf(formatted, sizeof formatted, "%.3f %.1f", 3.14159, 2.5);
    for (;;)
        coro_transfer(&align_co, &main_co);
}

static int test_alignment(void) {
    coro_stack s;
    CHECK(coro_stack_get(&pool, &s) == 0);
    coro_init(&align_co, &s, align_body, NULL);
    coro_transfer(&main_co, &align_co);
    CHECK(aligned_addr % 16 == 0);
    CHECK(strcmp(formatted, "3.142 2.5") == 0);
    coro_stack_put(&pool, &s);
    return 0;
}

/* ---- a ring of coroutines passing a token -------------------------------- */

enum { RING = 64, LAPS = 100 };
static coro ring_co[RING];
static volatile int ring_hits[RING];

static void ring_body(void *arg) {
    int me = (int)(intptr_t)arg;
    for (;;) {
        ring_hits[me]++;
        coro *next = me + 1 < RING ? &ring_co[me + 1] : &main_co;
        coro_transfer(&ring_co[me], next);
    }
}

static int test_ring(void) {
    coro_stack stacks[RING];
    for (int i = 0; i < RING; i++) {
        CHECK(coro_stack_get(&pool, &stacks[i]) == 0);
        coro_init(&ring_co[i], &stacks[i], ring_body, (void *)(intptr_t)i);
    }
    for (int lap = 1; lap <= LAPS; lap++) {
        coro_transfer(&main_co, &ring_co[0]);
        for (int i = 0; i < RING; i++)
            CHECK(ring_hits[i] == lap);
    }
    for (int i = 0; i < RING; i++)
        coro_stack_put(&pool, &stacks[i]);
    return 0;
}

/* ---- the pool reuses stacks instead of mapping new ones ----------------- */

static int test_pool_reuse(void) {
    coro_stack_pool p;
    coro_stack a, b, c;
    coro_stack_pool_init(&p, 10000, 1); /* rounded up to whole pages */
    CHECK(p.stack_size % 4096 == 0 && p.stack_size >= 10000);
    CHECK(coro_stack_get(&p, &a) == 0);
    CHECK(coro_stack_get(&p, &b) == 0);
    CHECK(p.mapped == 2 && p.slabs == 1); /* one slab holds both */
    CHECK(b.slab == a.slab && (char *)b.base == (char *)a.base + p.slot_size);
    coro_stack_put(&p, &a);
    CHECK(p.mapped == 2 && p.cached == 1);
    CHECK(coro_stack_get(&p, &c) == 0); /* the cached one, pages and all */
    CHECK(c.base == a.base && p.mapped == 2 && p.cached == 0);
    coro_stack_put(&p, &c);
    coro_stack_put(&p, &b); /* over max_cached: the cache gives its pages back */
    CHECK(p.mapped == 0 && p.cached == 0 && p.slabs == 1); /* one empty slab is kept */
    CHECK(coro_stack_get(&p, &c) == 0);
    CHECK(c.slab == a.slab && p.slabs == 1);
    coro_stack_put(&p, &c);
    coro_stack_pool_destroy(&p);
    CHECK(p.mapped == 0 && p.slabs == 0);
    return 0;
}

/* ---- released pages read as zeros; guards survive the release ----------- */

static int test_pool_release(void) {
    coro_stack_pool p;
    coro_stack s[3];
    coro_stack_pool_init(&p, 16 * 1024, 0);
    for (int i = 0; i < 3; i++) {
        CHECK(coro_stack_get(&p, &s[i]) == 0);
        memset((char *)s[i].base + s[i].guard, 0xa5, s[i].size);
    }
    coro_stack_put(&p, &s[1]); /* max_cached 0: released at once */
    CHECK(p.mapped == 2 && p.cached == 0);
    coro_stack again;
    CHECK(coro_stack_get(&p, &again) == 0);
    CHECK(again.base == s[1].base);
    const char *lo = (char *)again.base + again.guard;
    for (size_t i = 0; i < again.size; i += 1024)
        CHECK(lo[i] == 0);
    CHECK(((char *)s[0].base + s[0].guard)[0] == (char)0xa5); /* neighbours kept */
    CHECK(((char *)s[2].base + s[2].guard)[0] == (char)0xa5);
    coro_stack_put(&p, &again);
    coro_stack_put(&p, &s[0]);
    coro_stack_put(&p, &s[2]);
    coro_stack_pool_destroy(&p);
    CHECK(p.slabs == 0);
    return 0;
}

/* ---- the mapping budget follows the guard kind ------------------------- */

/* madvise guards cost no mapping: no budget. mprotect guards (this kernel
 * with COECHO_STACK_GUARD=mprotect) cost two mappings a stack, whatever
 * the slab: twenty new stacks take about forty off the budget's half. */
static int test_budget(void) {
    const char *kind = coro_stack_guard_kind();
    const char *env = getenv("COECHO_STACK_GUARD");
    if (env && strcmp(env, "mprotect") == 0)
        CHECK(strcmp(kind, "mprotect") == 0);
    if (strcmp(kind, "madvise") == 0) {
        CHECK(coro_stack_budget() == -1);
        return 0;
    }
    CHECK(strcmp(kind, "mprotect") == 0);
    coro_stack_pool p;
    coro_stack s[20];
    coro_stack_pool_init(&p, 16 * 1024, 0);
    long before = coro_stack_budget();
    CHECK(before > 20);
    for (int i = 0; i < 20; i++)
        CHECK(coro_stack_get(&p, &s[i]) == 0);
    long after = coro_stack_budget();
    CHECK(before - after >= 19 && before - after <= 21);
    for (int i = 0; i < 20; i++)
        coro_stack_put(&p, &s[i]);
    coro_stack_pool_destroy(&p);
    CHECK(p.slabs == 0);
    return 0;
}

/* ---- a guard hit is reported, then the process aborts -------------- */

static coro deep_co;

/* Unbounded in practice: the limit is never reached before the guard. */
static volatile int recursion_limit = 1 << 30;

static int recurse(int n) {
    volatile char pad[512];
    pad[0] = (char)n;
    if (n >= recursion_limit)
        return pad[0];
    return recurse(n + 1) + pad[0];
}

static void deep_body(void *arg) {
    (void)arg;
    recurse(0);
}

static int test_overflow_reported(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        coro_stack_pool p;
        coro_stack s;
        coro_stack_pool_init(&p, 32 * 1024, 0);
        if (coro_guard_install() != 0 || coro_stack_get(&p, &s) != 0)
            _exit(3);
        coro_init(&deep_co, &s, deep_body, NULL);
        deep_co.id = 42;
        deep_co.name = "deep";
        coro_transfer(&main_co, &deep_co);
        _exit(4); /* not reached */
    }
    close(fds[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(buf, "coroutine 42 (deep) overflowed its 32 KiB stack\n") != NULL);
    return 0;
}

int main(void) {
    static const struct {
        const char *name;
        int (*fn)(void);
    } tests[] = {
        {"ping_pong", test_ping_pong},
        {"callee_saved", test_callee_saved},
#ifndef CORO_UCONTEXT
        {"pinned_registers", test_pinned_registers},
#endif
        {"fp_control", test_fp_control},
        {"alignment", test_alignment},
        {"ring", test_ring},
        {"pool_reuse", test_pool_reuse},
        {"pool_release", test_pool_release},
        {"budget", test_budget},
        {"overflow_reported", test_overflow_reported},
    };
    coro_init_thread(&main_co);
    coro_stack_pool_init(&pool, 64 * 1024, 128);
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int bad = tests[i].fn();
        printf("%s %s\n", bad ? "FAIL" : "ok  ", tests[i].name);
        bad ? failed++ : passed++;
    }
    coro_stack_pool_destroy(&pool);
    printf("coro_selftest: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
