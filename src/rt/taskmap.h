/* Map from task id to task: open addressing, linear probing, backward-shift
 * deletion. Ids are never 0, so 0 marks an empty slot. */
#ifndef COECHO_TASKMAP_H
#define COECHO_TASKMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct taskmap_slot {
    uint64_t key;
    void *value;
} taskmap_slot;

typedef struct taskmap {
    taskmap_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t count;
} taskmap;

int taskmap_init(taskmap *m, size_t capacity);
void taskmap_destroy(taskmap *m);
void *taskmap_get(const taskmap *m, uint64_t key);
/* 0, or -ENOMEM when growing failed (the map is unchanged). */
int taskmap_put(taskmap *m, uint64_t key, void *value);
void taskmap_remove(taskmap *m, uint64_t key);

#endif
