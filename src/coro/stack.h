/* coro/stack.h: the stack pool's internals, private to src/coro and to the
 * scheduler in src/rt, which inlines the pool's fast paths on spawn and
 * exit. Everyone else uses the functions declared in coro/coro.h. */
#ifndef COECHO_CORO_STACK_H
#define COECHO_CORO_STACK_H

#include "coro/coro.h"

/* A cached stack keeps its place in the pool's list in its own top bytes:
 * its pages are resident anyway, and a cached stack's memory is the pool's. */
struct coro_stack_link {
    struct coro_stack_link *next, *prev;
    coro_stack stack;
};

/* The slow paths: a stack from a slab (new or released slot), and giving
 * the oldest cached stacks' pages back. */
int coro_stack_take(coro_stack_pool *pool, coro_stack *out);
void coro_stack_trim(coro_stack_pool *pool);
void coro_stack_clean(coro_stack *stack);

static inline char *coro_stack_top_inline(const coro_stack *stack) {
    return (char *)stack->base + stack->guard + stack->size - sizeof(struct coro_stack_link);
}

static inline int coro_stack_get_inline(coro_stack_pool *pool, coro_stack *out) {
    struct coro_stack_link *l = pool->free;
    if (!l)
        return coro_stack_take(pool, out);
    pool->free = l->next;
    if (l->next)
        l->next->prev = NULL;
    else
        pool->free_tail = NULL;
    pool->cached--;
    *out = l->stack;
    return 0;
}

static inline void coro_stack_put_inline(coro_stack_pool *pool, coro_stack *stack) {
#ifdef CORO_ASAN
    coro_stack_clean(stack);
#endif
    char *top = (char *)stack->base + stack->guard + stack->size;
    struct coro_stack_link *l = (struct coro_stack_link *)(top - sizeof *l);
    l->stack = *stack;
    l->prev = NULL;
    l->next = pool->free;
    if (l->next)
        l->next->prev = l;
    else
        pool->free_tail = l;
    pool->free = l;
    if (++pool->cached > pool->max_cached)
        coro_stack_trim(pool);
}

#endif
