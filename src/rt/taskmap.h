/* Map from task id to task: open addressing, linear probing, backward-shift
 * deletion. Ids are never 0, so 0 marks an empty slot. */
#ifndef COECHO_TASKMAP_H
#define COECHO_TASKMAP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct taskmap_slot {
    uint64_t key;
    void *value;
} taskmap_slot;

typedef struct taskmap {
    taskmap_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
} taskmap;

/* Fibonacci hashing: sequential ids land far apart, so runs stay short and
 * deletion's backward shift stops early. */
static inline size_t slot_of(const taskmap *m, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
}

static inline int taskmap_init(taskmap *m, size_t capacity) {
    size_t cap = 16;
    while (cap < capacity)
        cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots)
        return -ENOMEM;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static inline void taskmap_destroy(taskmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->count = 0;
}

static inline void *taskmap_get(const taskmap *m, uint64_t key) {
    for (size_t i = slot_of(m, key);; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key)
            return m->slots[i].value;
        if (m->slots[i].key == 0)
            return NULL;
    }
}

static inline void taskmap_insert(taskmap *m, uint64_t key, void *value) {
    size_t i = slot_of(m, key);
    while (m->slots[i].key != 0 && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == 0)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
}

static inline int taskmap_grow(taskmap *m) {
    taskmap bigger;
    if (taskmap_init(&bigger, (m->mask + 1) * 2) != 0)
        return -ENOMEM;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].key)
            taskmap_insert(&bigger, m->slots[i].key, m->slots[i].value);
    free(m->slots);
    *m = bigger;
    return 0;
}

static inline int taskmap_put(taskmap *m, uint64_t key, void *value) {
    /* Keep the load factor under 3/4 so probes stay short. */
    if ((m->count + 1) * 4 > (m->mask + 1) * 3 && taskmap_grow(m) != 0)
        return -ENOMEM;
    taskmap_insert(m, key, value);
    return 0;
}

static inline void taskmap_remove(taskmap *m, uint64_t key) {
    size_t i = slot_of(m, key);
    while (m->slots[i].key != key) {
        if (m->slots[i].key == 0)
            return;
        i = (i + 1) & m->mask;
    }
    /* Shift later members of the probe run back so lookups never stop
     * early at the hole. */
    for (size_t j = (i + 1) & m->mask; m->slots[j].key; j = (j + 1) & m->mask) {
        size_t home = slot_of(m, m->slots[j].key);
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->count--;
}

#endif
