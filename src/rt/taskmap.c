#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "taskmap.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(const taskmap *m, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
}

int taskmap_init(taskmap *m, size_t capacity) {
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

void taskmap_destroy(taskmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->count = 0;
}

void *taskmap_get(const taskmap *m, uint64_t key) {
    for (size_t i = slot_of(m, key);; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key)
            return m->slots[i].value;
        if (m->slots[i].key == 0)
            return NULL;
    }
}

static void insert(taskmap *m, uint64_t key, void *value) {
    size_t i = slot_of(m, key);
    while (m->slots[i].key != 0 && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (m->slots[i].key == 0)
        m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
}

static int grow(taskmap *m) {
    taskmap bigger;
    if (taskmap_init(&bigger, (m->mask + 1) * 2) != 0)
        return -ENOMEM;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].key)
            insert(&bigger, m->slots[i].key, m->slots[i].value);
    free(m->slots);
    *m = bigger;
    return 0;
}

int taskmap_put(taskmap *m, uint64_t key, void *value) {
    /* Keep the load factor under 3/4 so probes stay short. */
    if ((m->count + 1) * 4 > (m->mask + 1) * 3 && grow(m) != 0)
        return -ENOMEM;
    insert(m, key, value);
    return 0;
}

void taskmap_remove(taskmap *m, uint64_t key) {
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
