/* Unit tests of channels: unbuffered and buffered transfer, FIFO among
 * waiters, close, timeouts, kill, and the small helpers.
 *
 * Tasks never call cmocka's asserts (see task_check.h): they record what they
 * see with CHECK* or in fields of a result struct, and the test function
 * asserts after co_run has returned. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rt/rt.h"
#include "task_check.h"

/* One waiter on a channel: what it sends or what it received, and the result. */
struct waiter {
    co_chan *ch;
    int value;
    int result;
    int order; /* when it finished, counting from 1 */
};

static int finish_counter;

static int send_value(void *arg) {
    struct waiter *w = arg;
    w->result = co_chan_send(w->ch, &w->value, co_now() + LONG_DEADLINE_MS);
    w->order = ++finish_counter;
    return 0;
}

static int recv_value(void *arg) {
    struct waiter *w = arg;
    w->value = -1;
    w->result = co_chan_recv(w->ch, &w->value, co_now() + LONG_DEADLINE_MS);
    w->order = ++finish_counter;
    return 0;
}

static int send_value_forever(void *arg) {
    struct waiter *w = arg;
    w->result = co_chan_send(w->ch, &w->value, CO_NEVER);
    return 0;
}

static int recv_value_forever(void *arg) {
    struct waiter *w = arg;
    w->value = -1;
    w->result = co_chan_recv(w->ch, &w->value, CO_NEVER);
    return 0;
}

/* Sets *w up as a waiter on ch (its result 1 until its call returns) and spawns
 * fn on it; returns what co_spawn returned. */
static co_tid spawn_waiter(co_fn fn, struct waiter *w, co_chan *ch, int value) {
    *w = (struct waiter){ch, value, 1, 0};
    co_tid tid;
    co_spawn(&tid, fn, w);
    return tid;
}

/* Reaps every child of the caller; returns how many. */
static int reap_all(void) {
    int n = 0;
    while (co_wait_child(NULL, NULL, co_now() + LONG_DEADLINE_MS) == 0)
        n++;
    return n;
}

/* ---- unbuffered ----------------------------------------------------------- */

struct record {
    int32_t a;
    double b;
    char text[20];
    uint64_t c;
};

static const struct record sample = {-12345, 3.25, "hello, channel", 0x0123456789abcdefu};

struct unbuffered {
    co_chan *ch;
    struct record got_receiver_first; /* the receiver was waiting */
    struct record got_sender_first;   /* the sender was waiting */
    int results[4];
    int sender_done_before_recv;
};

static int send_sample(void *arg) {
    struct unbuffered *r = arg;
    return co_chan_send(r->ch, &sample, co_now() + LONG_DEADLINE_MS);
}

static int recv_sample(void *arg) {
    struct unbuffered *r = arg;
    return co_chan_recv(r->ch, &r->got_receiver_first, co_now() + LONG_DEADLINE_MS);
}

static int unbuffered_root(void *arg) {
    struct unbuffered *r = arg;
    co_chan_new(&r->ch, sizeof(struct record), 0);
    CHECK(r->ch != NULL);

    /* The receiver waits first; the root sends. */
    co_tid rc;
    co_spawn(&rc, recv_sample, r);
    co_yield();
    r->results[0] = co_chan_send(r->ch, &sample, co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(co_join(rc, &r->results[1], CO_NEVER), 0);

    /* The sender waits first; it must not complete before the root receives. */
    co_tid sd;
    co_spawn(&sd, send_sample, r);
    co_yield();
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(sd, &info), 0);
    r->sender_done_before_recv = info.state == CO_ZOMBIE;
    CHECK_EQ(co_chan_len(r->ch), 0); /* nothing is buffered on an unbuffered channel */
    r->results[2] = co_chan_recv(r->ch, &r->got_sender_first, co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(co_join(sd, &r->results[3], CO_NEVER), 0);
    co_chan_free(r->ch);
    return 0;
}

static void test_unbuffered_passes_struct_intact(void **state) {
    (void)state;
    struct unbuffered r = {0};
    run_root(unbuffered_root, &r);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.results[i], 0);
    assert_memory_equal(&r.got_receiver_first, &sample, sizeof sample);
    assert_memory_equal(&r.got_sender_first, &sample, sizeof sample);
    assert_false(r.sender_done_before_recv);
}

/* ---- buffered ------------------------------------------------------------- */

#define CAPACITY 3

struct buffered {
    co_chan *ch;
    int sent;             /* sends completed by the sender */
    int sent_after_yield; /* ... once the root first yielded */
    size_t len_after_yield;
    int sender_state;
    int sender_waiting;
    int sent_after_recv;
    int try_results[CAPACITY + 1]; /* deadline-0 sends on a second channel */
    int values[CAPACITY + 1];
    int recv_results[CAPACITY + 1];
};

static int buffered_sender(void *arg) {
    struct buffered *r = arg;
    for (int i = 0; i <= CAPACITY; i++) {
        int v = 100 + i;
        if (co_chan_send(r->ch, &v, co_now() + LONG_DEADLINE_MS) != 0)
            break;
        r->sent++;
    }
    return 0;
}

static int buffered_root(void *arg) {
    struct buffered *r = arg;
    co_chan_new(&r->ch, sizeof(int), CAPACITY);
    CHECK(r->ch != NULL);
    co_tid s;
    co_spawn(&s, buffered_sender, r);
    co_yield();
    /* CAPACITY sends went through without a receiver; the next one waits. */
    r->sent_after_yield = r->sent;
    r->len_after_yield = co_chan_len(r->ch);
    co_task_info info = {0};
    CHECK_EQ(co_task_get_info(s, &info), 0);
    r->sender_state = info.state;
    r->sender_waiting = info.waiting;

    /* One recv makes room: the waiting send completes. */
    r->recv_results[0] = co_chan_recv(r->ch, &r->values[0], co_now() + LONG_DEADLINE_MS);
    co_yield();
    r->sent_after_recv = r->sent;
    for (int i = 1; i <= CAPACITY; i++)
        r->recv_results[i] = co_chan_recv(r->ch, &r->values[i], co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(co_join(s, NULL, CO_NEVER), 0);
    CHECK_EQ(co_chan_len(r->ch), 0);

    /* Without blocking at all: deadline 0 sends succeed while there is room. */
    co_chan *c2;
    co_chan_new(&c2, sizeof(int), CAPACITY);
    CHECK(c2 != NULL);
    for (int i = 0; i <= CAPACITY; i++)
        r->try_results[i] = co_chan_send(c2, &i, 0);
    co_chan_free(c2);
    co_chan_free(r->ch);
    return 0;
}

static void test_buffered_holds_capacity_then_blocks(void **state) {
    (void)state;
    struct buffered r = {0};
    run_root(buffered_root, &r);
    assert_int_equal(r.sent_after_yield, CAPACITY);
    assert_int_equal(r.len_after_yield, CAPACITY);
    assert_int_equal(r.sender_state, CO_BLOCKED);
    assert_int_equal(r.sender_waiting, CO_WAIT_SEND);
    assert_int_equal(r.sent_after_recv, CAPACITY + 1);
    for (int i = 0; i <= CAPACITY; i++) {
        assert_int_equal(r.recv_results[i], 0);
        assert_int_equal(r.values[i], 100 + i);
    }
    for (int i = 0; i < CAPACITY; i++)
        assert_int_equal(r.try_results[i], 0);
    assert_int_equal(r.try_results[CAPACITY], -ETIMEDOUT);
}

/* ---- FIFO among waiters --------------------------------------------------- */

#define WAITERS 4

struct fifo {
    struct waiter w[WAITERS];
    int values[WAITERS + 1];
    int results[WAITERS + 1];
};

static int fifo_senders_root(void *arg) {
    struct fifo *r = arg;
    /* Capacity 1, already full: the senders queue behind the buffered element. */
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 1);
    CHECK(ch != NULL);
    int first = 99;
    CHECK_EQ(co_chan_send(ch, &first, 0), 0);
    finish_counter = 0;
    for (int i = 0; i < WAITERS; i++)
        CHECK(spawn_waiter(send_value, &r->w[i], ch, i + 1) != 0);
    co_yield(); /* all of them wait, in spawn order */
    for (int i = 0; i <= WAITERS; i++)
        r->results[i] = co_chan_recv(ch, &r->values[i], co_now() + LONG_DEADLINE_MS);
    CHECK_EQ(reap_all(), WAITERS);
    co_chan_free(ch);
    return 0;
}

static void test_waiting_senders_are_served_in_fifo_order(void **state) {
    (void)state;
    struct fifo r = {0};
    run_root(fifo_senders_root, &r);
    assert_int_equal(r.results[0], 0);
    assert_int_equal(r.values[0], 99);
    for (int i = 1; i <= WAITERS; i++) {
        assert_int_equal(r.results[i], 0);
        assert_int_equal(r.values[i], i);
        assert_int_equal(r.w[i - 1].result, 0);
    }
}

static int fifo_receivers_root(void *arg) {
    struct fifo *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 0);
    CHECK(ch != NULL);
    finish_counter = 0;
    for (int i = 0; i < WAITERS; i++)
        CHECK(spawn_waiter(recv_value, &r->w[i], ch, 0) != 0);
    co_yield(); /* all of them wait, in spawn order */
    for (int i = 0; i < WAITERS; i++) {
        int v = 10 * (i + 1);
        r->results[i] = co_chan_send(ch, &v, co_now() + LONG_DEADLINE_MS);
    }
    CHECK_EQ(reap_all(), WAITERS);
    co_chan_free(ch);
    return 0;
}

static void test_waiting_receivers_are_served_in_fifo_order(void **state) {
    (void)state;
    struct fifo r = {0};
    run_root(fifo_receivers_root, &r);
    for (int i = 0; i < WAITERS; i++) {
        assert_int_equal(r.results[i], 0);
        assert_int_equal(r.w[i].result, 0);
        assert_int_equal(r.w[i].value, 10 * (i + 1));
        assert_int_equal(r.w[i].order, i + 1); /* and woken in that order */
    }
}

/* ---- close ---------------------------------------------------------------- */

struct close_waiters {
    struct waiter senders[2];
    struct waiter receivers[2];
    int close_result;
    int close_again;
    int send_after;
    int recv_after;
};

static int close_senders_root(void *arg) {
    struct close_waiters *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 0);
    CHECK(ch != NULL);
    for (int i = 0; i < 2; i++)
        CHECK(spawn_waiter(send_value_forever, &r->senders[i], ch, i) != 0);
    co_yield();
    r->close_result = co_chan_close(ch);
    CHECK_EQ(reap_all(), 2);
    r->close_again = co_chan_close(ch);
    int v = 1;
    r->send_after = co_chan_send(ch, &v, co_now() + LONG_DEADLINE_MS);
    r->recv_after = co_chan_recv(ch, &v, co_now() + LONG_DEADLINE_MS);
    co_chan_free(ch);
    return 0;
}

static void test_close_wakes_waiting_senders_with_epipe(void **state) {
    (void)state;
    struct close_waiters r = {0};
    run_root(close_senders_root, &r);
    assert_int_equal(r.close_result, 0);
    assert_int_equal(r.senders[0].result, -EPIPE);
    assert_int_equal(r.senders[1].result, -EPIPE);
    assert_int_equal(r.close_again, -EPIPE);
    assert_int_equal(r.send_after, -EPIPE);
    assert_int_equal(r.recv_after, -EPIPE);
}

static int close_receivers_root(void *arg) {
    struct close_waiters *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 4);
    CHECK(ch != NULL);
    for (int i = 0; i < 2; i++)
        CHECK(spawn_waiter(recv_value_forever, &r->receivers[i], ch, 0) != 0);
    co_yield();
    r->close_result = co_chan_close(ch);
    CHECK_EQ(reap_all(), 2);
    co_chan_free(ch);
    return 0;
}

static void test_close_wakes_waiting_receivers_with_epipe(void **state) {
    (void)state;
    struct close_waiters r = {0};
    run_root(close_receivers_root, &r);
    assert_int_equal(r.close_result, 0);
    assert_int_equal(r.receivers[0].result, -EPIPE);
    assert_int_equal(r.receivers[1].result, -EPIPE);
}

struct drain {
    int values[3];
    int results[5];
    size_t len_after_close;
    int send_after_close;
};

static int drain_root(void *arg) {
    struct drain *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 8);
    CHECK(ch != NULL);
    for (int v = 1; v <= 3; v++)
        CHECK_EQ(co_chan_send(ch, &v, 0), 0);
    CHECK_EQ(co_chan_close(ch), 0);
    r->len_after_close = co_chan_len(ch);
    int v = 4;
    r->send_after_close = co_chan_send(ch, &v, 0);
    for (int i = 0; i < 5; i++) {
        int x = -1;
        r->results[i] = co_chan_recv(ch, &x, co_now() + LONG_DEADLINE_MS);
        if (i < 3)
            r->values[i] = x;
    }
    co_chan_free(ch);
    return 0;
}

static void test_receivers_drain_buffer_after_close_then_get_epipe(void **state) {
    (void)state;
    struct drain r = {0};
    run_root(drain_root, &r);
    assert_int_equal(r.len_after_close, 3);
    assert_int_equal(r.send_after_close, -EPIPE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r.results[i], 0);
        assert_int_equal(r.values[i], i + 1);
    }
    assert_int_equal(r.results[3], -EPIPE);
    assert_int_equal(r.results[4], -EPIPE);
}

/* ---- timeouts ------------------------------------------------------------- */

struct timeouts {
    int send_result, recv_result;
    int64_t send_deadline, send_woke, recv_deadline, recv_woke;
    int try_send, try_recv; /* deadline 0, nothing ready */
    int64_t try_elapsed;
    int ghost_recv;          /* a timed-out send must leave nothing behind */
    int try_send_to_waiting; /* deadline 0 with a receiver waiting */
    int try_recv_from_waiting;
    int handed;
    struct waiter w;
};

static int timeouts_root(void *arg) {
    struct timeouts *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 0);
    CHECK(ch != NULL);
    int v = 5;
    r->send_deadline = co_now() + 20;
    r->send_result = co_chan_send(ch, &v, r->send_deadline);
    r->send_woke = co_now();
    r->recv_deadline = co_now() + 20;
    r->recv_result = co_chan_recv(ch, &v, r->recv_deadline);
    r->recv_woke = co_now();

    int64_t start = co_now();
    r->try_send = co_chan_send(ch, &v, 0);
    r->try_recv = co_chan_recv(ch, &v, 0);
    r->ghost_recv = co_chan_recv(ch, &v, 0);
    r->try_elapsed = co_now() - start;

    /* "Try once" succeeds when the other side is already there. */
    co_tid t = spawn_waiter(recv_value_forever, &r->w, ch, 0);
    co_yield();
    v = 77;
    r->try_send_to_waiting = co_chan_send(ch, &v, 0);
    CHECK_EQ(co_join(t, NULL, CO_NEVER), 0);
    r->handed = r->w.value;

    struct waiter s;
    t = spawn_waiter(send_value_forever, &s, ch, 88);
    co_yield();
    v = 0;
    r->try_recv_from_waiting = co_chan_recv(ch, &v, 0);
    CHECK_EQ(v, 88);
    CHECK_EQ(co_join(t, NULL, CO_NEVER), 0);
    CHECK_EQ(s.result, 0);
    co_chan_free(ch);
    return 0;
}

static void test_send_and_recv_time_out(void **state) {
    (void)state;
    struct timeouts r = {0};
    run_root(timeouts_root, &r);
    assert_int_equal(r.send_result, -ETIMEDOUT);
    assert_true(r.send_woke >= r.send_deadline);
    assert_int_equal(r.recv_result, -ETIMEDOUT);
    assert_true(r.recv_woke >= r.recv_deadline);
}

static void test_deadline_zero_tries_once(void **state) {
    (void)state;
    struct timeouts r = {0};
    run_root(timeouts_root, &r);
    assert_int_equal(r.try_send, -ETIMEDOUT);
    assert_int_equal(r.try_recv, -ETIMEDOUT);
    assert_int_equal(r.ghost_recv, -ETIMEDOUT);
    assert_true(r.try_elapsed < AT_ONCE_MS);
    assert_int_equal(r.try_send_to_waiting, 0);
    assert_int_equal(r.handed, 77);
    assert_int_equal(r.w.result, 0);
    assert_int_equal(r.try_recv_from_waiting, 0);
}

/* ---- kill ----------------------------------------------------------------- */

struct killed {
    struct waiter sender, receiver;
    int kill_results[2];
    int sender_len_after; /* the killed sender's element must not be delivered */
    int recv_after;
};

static int killed_root(void *arg) {
    struct killed *r = arg;
    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 0);
    CHECK(ch != NULL);
    co_chan *ch2;
    co_chan_new(&ch2, sizeof(int), 0);
    CHECK(ch2 != NULL);
    co_tid s = spawn_waiter(send_value_forever, &r->sender, ch, 7);
    co_tid rv = spawn_waiter(recv_value_forever, &r->receiver, ch2, 0);
    co_yield();
    r->kill_results[0] = co_kill(s);
    r->kill_results[1] = co_kill(rv);
    CHECK_EQ(reap_all(), 2);
    int v = -1;
    r->recv_after = co_chan_recv(ch, &v, 0);
    co_chan_free(ch);
    co_chan_free(ch2);
    return 0;
}

static void test_killed_while_in_send_or_recv_returns_ecanceled(void **state) {
    (void)state;
    struct killed r = {0};
    run_root(killed_root, &r);
    assert_int_equal(r.kill_results[0], 0);
    assert_int_equal(r.kill_results[1], 0);
    assert_int_equal(r.sender.result, -ECANCELED);
    assert_int_equal(r.receiver.result, -ECANCELED);
    assert_int_equal(r.receiver.value, -1);
    assert_int_equal(r.recv_after, -ETIMEDOUT); /* the cancelled send left nothing */
}

/* ---- small helpers -------------------------------------------------------- */

struct helpers {
    bool zero_elem_null;
    int zero_elem_err;
    size_t len[6];
};

static int helpers_root(void *arg) {
    struct helpers *r = arg;
    co_chan *bad;
    r->zero_elem_err = co_chan_new(&bad, 0, 4);
    r->zero_elem_null = bad == NULL;
    if (bad)
        co_chan_free(bad);

    co_chan *ch;
    co_chan_new(&ch, sizeof(int), 4);
    CHECK(ch != NULL);
    int n = 0, v = 0;
    r->len[n++] = co_chan_len(ch);
    CHECK_EQ(co_chan_send(ch, &v, 0), 0);
    r->len[n++] = co_chan_len(ch);
    CHECK_EQ(co_chan_send(ch, &v, 0), 0);
    CHECK_EQ(co_chan_send(ch, &v, 0), 0);
    r->len[n++] = co_chan_len(ch);
    CHECK_EQ(co_chan_recv(ch, &v, 0), 0);
    r->len[n++] = co_chan_len(ch);
    CHECK_EQ(co_chan_close(ch), 0);
    r->len[n++] = co_chan_len(ch);
    CHECK_EQ(co_chan_recv(ch, &v, 0), 0);
    CHECK_EQ(co_chan_recv(ch, &v, 0), 0);
    r->len[n++] = co_chan_len(ch);
    co_chan_free(ch);
    return 0;
}

static void test_new_with_zero_elem_size_and_len(void **state) {
    (void)state;
    struct helpers r = {0};
    run_root(helpers_root, &r);
    assert_true(r.zero_elem_null);
    assert_int_equal(r.zero_elem_err, -EINVAL);
    static const size_t want[6] = {0, 1, 3, 2, 2, 0};
    for (int i = 0; i < 6; i++)
        if (r.len[i] != want[i])
            fail_msg("co_chan_len at step %d is %zu, want %zu", i, r.len[i], want[i]);
}

struct free_waiter {
    struct waiter receiver, sender;
};

static int free_waiter_root(void *arg) {
    struct free_waiter *r = arg;
    co_chan *rch;
    co_chan_new(&rch, sizeof(int), 0);
    co_chan *sch;
    co_chan_new(&sch, sizeof(int), 0);
    CHECK(rch != NULL && sch != NULL);
    CHECK(spawn_waiter(recv_value_forever, &r->receiver, rch, 0) != 0);
    CHECK(spawn_waiter(send_value_forever, &r->sender, sch, 3) != 0);
    co_yield();
    co_chan_free(rch);
    co_chan_free(sch);
    CHECK_EQ(reap_all(), 2);
    return 0;
}

static void test_free_wakes_waiters_with_epipe(void **state) {
    (void)state;
    struct free_waiter r = {0};
    run_root(free_waiter_root, &r);
    assert_int_equal(r.receiver.result, -EPIPE);
    assert_int_equal(r.sender.result, -EPIPE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unbuffered_passes_struct_intact),
        cmocka_unit_test(test_buffered_holds_capacity_then_blocks),
        cmocka_unit_test(test_waiting_senders_are_served_in_fifo_order),
        cmocka_unit_test(test_waiting_receivers_are_served_in_fifo_order),
        cmocka_unit_test(test_close_wakes_waiting_senders_with_epipe),
        cmocka_unit_test(test_close_wakes_waiting_receivers_with_epipe),
        cmocka_unit_test(test_receivers_drain_buffer_after_close_then_get_epipe),
        cmocka_unit_test(test_send_and_recv_time_out),
        cmocka_unit_test(test_deadline_zero_tries_once),
        cmocka_unit_test(test_killed_while_in_send_or_recv_returns_ecanceled),
        cmocka_unit_test(test_new_with_zero_elem_size_and_len),
        cmocka_unit_test(test_free_wakes_waiters_with_epipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
