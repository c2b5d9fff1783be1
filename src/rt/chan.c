/* rt/chan.c: channels, Go-style. A channel owns its buffer and its lists
 * of waiting senders and receivers. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

struct co_chan {
    size_t elem_size;
    size_t capacity;
    size_t head;  /* index of the oldest buffered element */
    size_t count; /* elements buffered */
    bool closed;
    list_link senders;
    list_link receivers;
    unsigned char buf[];
};

int co_chan_new(co_chan **out, size_t elem_size, size_t capacity) {
    *out = NULL;
    if (elem_size == 0 || (capacity && elem_size > (SIZE_MAX - sizeof(co_chan)) / capacity))
        return -EINVAL;
    co_chan *ch = malloc(sizeof *ch + elem_size * capacity);
    if (!ch)
        return -ENOMEM;
    ch->elem_size = elem_size;
    ch->capacity = capacity;
    ch->head = ch->count = 0;
    ch->closed = false;
    list_init(&ch->senders);
    list_init(&ch->receivers);
    *out = ch;
    return 0;
}

static inline unsigned char *chan_slot(co_chan *ch, size_t i) {
    return ch->buf + ((ch->head + i) % ch->capacity) * ch->elem_size;
}

static inline task *first_waiter(list_link *q) {
    return list_empty(q) ? NULL : container_of(q->next, task, qlink);
}

int co_chan_send(co_chan *ch, const void *elem, int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    if (ch->closed)
        return -EPIPE;
    task *r = first_waiter(&ch->receivers);
    if (r) { /* a waiting receiver means the buffer is empty */
        rt_unpark(r);
        memcpy(r->chan_elem, elem, ch->elem_size);
        rt_wake(r, 0);
        return 0;
    }
    if (ch->count < ch->capacity) {
        memcpy(chan_slot(ch, ch->count), elem, ch->elem_size);
        ch->count++;
        return 0;
    }
    int rc = may_block(self, deadline);
    if (rc)
        return rc;
    self->chan_elem = (void *)elem;
    return rt_block(self, &ch->senders, CO_WAIT_SEND, deadline);
}

int co_chan_recv(co_chan *ch, void *elem, int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    if (self->killed)
        return -ECANCELED;
    task *s = first_waiter(&ch->senders);
    if (ch->count) {
        memcpy(elem, chan_slot(ch, 0), ch->elem_size);
        ch->head = (ch->head + 1) % ch->capacity;
        ch->count--;
        if (s) { /* the oldest waiting sender takes the freed slot */
            rt_unpark(s);
            memcpy(chan_slot(ch, ch->count), s->chan_elem, ch->elem_size);
            ch->count++;
            rt_wake(s, 0);
        }
        return 0;
    }
    if (s) {
        rt_unpark(s);
        memcpy(elem, s->chan_elem, ch->elem_size);
        rt_wake(s, 0);
        return 0;
    }
    if (ch->closed)
        return -EPIPE;
    int rc = may_block(self, deadline);
    if (rc)
        return rc;
    self->chan_elem = elem;
    return rt_block(self, &ch->receivers, CO_WAIT_RECV, deadline);
}

static void wake_all(list_link *q, int result) {
    task *t;
    while ((t = first_waiter(q)))
        rt_wake(t, result);
}

int co_chan_close(co_chan *ch) {
    if (ch->closed)
        return -EPIPE;
    ch->closed = true;
    wake_all(&ch->senders, -EPIPE);
    wake_all(&ch->receivers, -EPIPE);
    return 0;
}

void co_chan_free(co_chan *ch) {
    if (!ch)
        return;
    co_chan_close(ch);
    RT_ASSERT(list_empty(&ch->senders) && list_empty(&ch->receivers),
              "a channel is freed with no waiters linked");
    free(ch);
}

size_t co_chan_len(const co_chan *ch) { return ch->count; }
