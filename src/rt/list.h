/* Intrusive circular doubly-linked list with a sentinel head. */
#ifndef COECHO_LIST_H
#define COECHO_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list_link {
    struct list_link *prev, *next;
} list_link;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void list_init(list_link *head) { head->prev = head->next = head; }
static inline bool list_empty(const list_link *head) { return head->next == head; }

static inline void list_push_back(list_link *head, list_link *node) {
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void list_remove(list_link *node) {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = node;
}

static inline list_link *list_pop_front(list_link *head) {
    list_link *node = head->next;
    if (node == head)
        return NULL;
    list_remove(node);
    return node;
}

#endif
