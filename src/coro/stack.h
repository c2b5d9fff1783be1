/* coro/stack.h: the stack pool's internals, private to src/coro and to the
 * scheduler in src/rt, which inlines the pool's fast paths on spawn and
 * exit. Everyone else uses the functions declared in coro/coro.h. */
#ifndef COECHO_CORO_STACK_H
#define COECHO_CORO_STACK_H

#include "coro/coro.h"

/* A pooled stack keeps its free-list node in its own top bytes. */
struct coro_stack_link {
    struct coro_stack_link *next;
    coro_stack stack;
};

int coro_stack_map(coro_stack_pool *pool, coro_stack *out);
void coro_stack_unmap(coro_stack_pool *pool, coro_stack *stack);
void coro_stack_clean(coro_stack *stack);

static inline char *coro_stack_top_inline(const coro_stack *stack) {
    return (char *)stack->base + stack->guard + stack->size - sizeof(struct coro_stack_link);
}

static inline int coro_stack_get_inline(coro_stack_pool *pool, coro_stack *out) {
    struct coro_stack_link *l = pool->free;
    if (!l)
        return coro_stack_map(pool, out);
    pool->free = l->next;
    pool->cached--;
    *out = l->stack;
    return 0;
}

static inline void coro_stack_put_inline(coro_stack_pool *pool, coro_stack *stack) {
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

#endif
