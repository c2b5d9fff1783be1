#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "server/conn.h"

#include <errno.h>
#include <string.h>

#include "server/log.h"
#include "server/settings.h"

static struct {
    list_link live;
    ipcount per_ip;
    co_chan *slot_gate; /* closed (and renewed) to wake paused accept tasks */
    bool killed;
    conn_stats stats;
} c;

int conn_init(void) {
    memset(&c, 0, sizeof c);
    list_init(&c.live);
    ipcount_init(&c.per_ip);
    return co_chan_new(&c.slot_gate, 1, 0);
}

void conn_destroy(void) {
    co_chan_free(c.slot_gate);
    c.slot_gate = NULL;
    ipcount_destroy(&c.per_ip);
}

/* Counts one more connection from peer: 0, -EDQUOT (counted) or -ENOMEM. */
static int count_peer(const struct sockaddr *peer, ip_key *key) {
    const config *cfg = settings();
    ip_key_from_sockaddr(key, peer, cfg->per_ip_ipv6_prefix);
    if (cfg->max_connections_per_ip &&
        ipcount_get(&c.per_ip, key) >= cfg->max_connections_per_ip) {
        c.stats.rejected_per_ip++;
        return -EDQUOT;
    }
    return ipcount_add(&c.per_ip, key) == 0 ? -ENOMEM : 0;
}

int conn_admit(const struct sockaddr *peer, ip_key *key) {
    if (peer) {
        int r = count_peer(peer, key);
        if (r != 0)
            return r;
    }
    c.stats.active++;
    c.stats.accepted++;
    return 0;
}

int conn_key(connection *conn, const struct sockaddr *peer) {
    int r = count_peer(peer, &conn->peer);
    conn->keyed = r == 0;
    return r;
}

void conn_count_proxy_reject(void) { c.stats.rejected_proxy_header++; }

static void release_slot(const ip_key *key) {
    if (key)
        ipcount_remove(&c.per_ip, key);
    c.stats.active--;
    conn_limits_changed(); /* a slot is free */
}

void conn_unadmit(const ip_key *key) { release_slot(key); }

void conn_register(connection *conn) {
    conn->bytes_in = conn->bytes_out = 0;
    list_push_back(&c.live, &conn->link);
}

void conn_release(connection *conn) {
    list_remove(&conn->link);
    c.stats.closed++;
    release_slot(conn->keyed ? &conn->peer : NULL);
}

bool conn_slot_free(void) { return c.stats.active < settings()->max_connections; }

int conn_wait_slot(void) {
    while (!conn_slot_free()) {
        char token;
        c.stats.accepts_paused++;
        int r = co_chan_recv(c.slot_gate, &token, CO_NEVER);
        c.stats.accepts_paused--;
        if (r == -ECANCELED)
            return r;
    }
    return 0;
}

void conn_limits_changed(void) {
    if (!c.stats.accepts_paused)
        return;
    /* Closing the channel wakes every paused accept task; they find the
     * slots and re-check the limit. A fresh gate serves the next pause. */
    co_chan *fresh;
    if (co_chan_new(&fresh, 1, 0) != 0) {
        log_error("cannot wake paused accepts: out of memory");
        return;
    }
    co_chan_free(c.slot_gate);
    c.slot_gate = fresh;
}

void conn_kill_all(void) {
    c.killed = true;
    for (list_link *l = c.live.next; l != &c.live; l = l->next)
        co_kill(container_of(l, connection, link)->tid);
}

bool conn_all_killed(void) { return c.killed; }
void conn_count_in(connection *conn, size_t bytes) {
    conn->bytes_in += bytes;
    c.stats.bytes_in += bytes;
}

void conn_count_out(connection *conn, size_t bytes) {
    conn->bytes_out += bytes;
    c.stats.bytes_out += bytes;
}

void conn_count_timeout(void) { c.stats.timed_out++; }
size_t conn_active(void) { return c.stats.active; }
void conn_get_stats(conn_stats *st) { *st = c.stats; }
