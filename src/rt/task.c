/* rt/task.c: task life: spawn, exit, join, wait_child, kill, the reaper and
 * task info. Owns the task map, the family lists (children, zombies,
 * joiners) and the stacks tasks live on. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "rt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

/* Returns the task's stack to the pool, and the task to the cache of
 * released tasks (which keeps as many as the pool keeps stacks). */
void rt_task_release(task *t) {
    RT_ASSERT(t->state != TASK_FREED, "a task is released once");
    RT_ASSERT(!ev_is_active(&t->io) && !ev_is_active(&t->timer),
              "a released task has no watcher armed");
    RT_ASSERT(!linked(&t->qlink), "a released task is on no queue");
    RT_ASSERT(list_empty(&t->children) && list_empty(&t->zombies) && list_empty(&t->joiners),
              "a released task has no children, zombies or joiners");
    RT_ASSERT(!t->co.parked, "a released task is not parked");
    t->state = TASK_FREED;
    coro_stack_put_inline(&rt_sched.pool, &t->stack);
    if (rt_sched.nfree_tasks < rt_sched.pool.max_cached) {
        t->parent = rt_sched.free_tasks;
        rt_sched.free_tasks = t;
        rt_sched.nfree_tasks++;
    } else {
        free(t);
    }
}

void rt_task_free_cached(void) {
    while (rt_sched.free_tasks) {
        task *t = rt_sched.free_tasks;
        rt_sched.free_tasks = t->parent;
        free(t);
    }
    rt_sched.nfree_tasks = 0;
}

/* Removes a zombie for good. */
static void reap(task *t) {
    RT_ASSERT(t->state != TASK_FREED && taskmap_get(&rt_sched.map, t->id) == t,
              "a zombie is reaped once");
    RT_ASSERT(t->state == CO_ZOMBIE, "only a zombie is reaped");
    list_remove(&t->sibling);
    taskmap_remove(&rt_sched.map, t->id);
    rt_task_release(t);
}

static void adopt(task *parent, task *child, bool zombie) {
    child->parent = parent;
    list_push_back(zombie ? &parent->zombies : &parent->children, &child->sibling);
}

/* Hands the exiting task's children to the reaper, or lets them go. */
static void pass_orphans(task *t) {
    task *reaper = rt_sched.reaper;
    list_link *l;
    while ((l = list_pop_front(&t->children))) {
        task *c = container_of(l, task, sibling);
        if (reaper && reaper != c)
            adopt(reaper, c, false);
        else
            c->parent = NULL;
    }
    while ((l = list_pop_front(&t->zombies))) {
        task *z = container_of(l, task, sibling);
        if (reaper) {
            adopt(reaper, z, true);
            if (reaper->state == CO_BLOCKED && reaper->waiting == CO_WAIT_CHILD)
                rt_wake(reaper, 0);
        } else {
            z->parent = NULL;
            taskmap_remove(&rt_sched.map, z->id);
            rt_task_release(z);
        }
    }
}

/* Wakes whoever joins t with its status. */
static void wake_joiners(task *t, int status) {
    list_link *l;
    while ((l = list_pop_front(&t->joiners))) {
        task *j = container_of(l, task, qlink);
        j->waitq = NULL;
        j->join_status = status;
        rt_wake(j, 0);
    }
}

static _Noreturn void task_exit(task *t, int status) {
    RT_ASSERT(t == rt_sched.current, "only the running task exits");
    if (ev_is_active(&t->io))
        ev_io_stop(rt_sched.loop, &t->io);
    if (ev_is_active(&t->timer))
        ev_timer_stop(rt_sched.loop, &t->timer);
    t->status = status;
    t->state = CO_ZOMBIE;
    rt_sched.nlive--;
    if (t == rt_sched.root) {
        rt_sched.root_status = status;
        rt_sched.root = NULL;
    }
    if (rt_sched.reaper == t)
        rt_sched.reaper = NULL;
    wake_joiners(t, status);
    pass_orphans(t);
    task *parent = t->parent;
    if (parent) {
        list_remove(&t->sibling);
        list_push_back(&parent->zombies, &t->sibling);
        if (parent->state == CO_BLOCKED && parent->waiting == CO_WAIT_CHILD)
            rt_wake(parent, 0);
    } else {
        taskmap_remove(&rt_sched.map, t->id);
        rt_sched.dead = t;
    }
    coro *to = rt_pick_next();
    rt_sched.switches++;
    coro_transfer_final(&t->co, to);
    abort();
}

static void task_entry(void *arg) {
    task *t = arg;
    rt_after_switch();
    task_exit(t, t->fn(t->arg));
}

/* A released task, whose lists and watchers are still set up, or a new one. */
static task *task_new_or_cached(void) {
    task *t = rt_sched.free_tasks;
    if (t) {
        RT_ASSERT(t->state == TASK_FREED, "a cached task carries no live task");
        rt_sched.free_tasks = t->parent;
        rt_sched.nfree_tasks--;
        return t;
    }
    t = malloc(sizeof *t);
    if (!t)
        return NULL;
    list_init(&t->qlink);
    list_init(&t->sibling);
    list_init(&t->children);
    list_init(&t->zombies);
    list_init(&t->joiners);
    list_init(&t->blocked);
    ev_init(&t->io, rt_task_io_cb);
    ev_init(&t->timer, rt_task_timer_cb);
    t->co.parked = NULL;
    t->state = TASK_FREED;
    return t;
}

/* A task with a stack; nothing is written on the stack until its first
 * run, so spawning touches none of its pages. 0 or -errno. */
static int task_alloc(task **out) {
    task *t = task_new_or_cached();
    if (!t)
        return -ENOMEM;
    int err = coro_stack_get_inline(&rt_sched.pool, &t->stack);
    if (err) {
        t->parent = rt_sched.free_tasks; /* back to the cache, for the next try */
        rt_sched.free_tasks = t;
        rt_sched.nfree_tasks++;
        return err;
    }
    t->state = TASK_NEW;
    t->started = false;
    *out = t;
    return 0;
}

void rt_task_prepare(task *t) {
    if (!t->started) {
        coro_init(&t->co, &t->stack, task_entry, t);
        t->started = true;
        return;
    }
    coro_unpark(&t->co);
    rt_sched.nparked--;
}

static void set_name(task *t, const char *name) {
    size_t i = 0;
    for (; name[i] && i < sizeof t->name - 1; i++)
        t->name[i] = name[i];
    t->name[i] = '\0';
}

int rt_task_create(task **out, co_fn fn, void *arg, task *parent, const char *name) {
    task *t;
    int err = task_alloc(&t);
    if (err)
        return err;
    if (taskmap_put(&rt_sched.map, rt_sched.last_id + 1, t) != 0) {
        rt_task_release(t);
        return -ENOMEM;
    }
    t->id = ++rt_sched.last_id;
    t->fn = fn;
    t->arg = arg;
    t->waitq = NULL;
    t->parent = NULL;
    t->last_run = 0;
    t->status = 0;
    t->wake_result = 0;
    t->waiting = CO_WAIT_NONE;
    t->killed = false;
    if (parent)
        adopt(parent, t, false);
    set_name(t, name ? name : "task");
    t->co.id = t->id;
    t->co.name = t->name;
    rt_sched.nlive++;
    rt_sched.spawned++;
    make_ready(t);
    *out = t;
    return 0;
}

static task *lookup(co_tid tid) { return tid ? taskmap_get(&rt_sched.map, tid) : NULL; }

int co_spawn_with(co_tid *tid, co_fn fn, void *arg, const co_spawn_attr *attr) {
    task *parent = rt_sched.current;
    if (tid)
        *tid = 0;
    if (!rt_sched.loop || !fn)
        return -EINVAL;
    if (attr && attr->parent) {
        parent = lookup(attr->parent);
        if (!parent || parent->state == CO_ZOMBIE)
            return -ESRCH;
    }
    task *t;
    int err = rt_task_create(&t, fn, arg, parent, attr ? attr->name : NULL);
    if (err)
        return err;
    if (tid)
        *tid = t->id;
    return 0;
}

int co_spawn(co_tid *tid, co_fn fn, void *arg) { return co_spawn_with(tid, fn, arg, NULL); }

co_tid co_self(void) { return rt_sched.current ? rt_sched.current->id : 0; }

int co_join(co_tid tid, int *status, int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    if (tid == self->id)
        return -EDEADLK;
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    int st;
    if (t->state == CO_ZOMBIE) {
        st = t->status;
    } else {
        int r = may_block(self, deadline);
        if (r == 0)
            r = rt_block(self, &t->joiners, CO_WAIT_JOIN, deadline);
        if (r)
            return r;
        st = self->join_status;
    }
    /* Only the parent reaps; t may be gone already if someone else was. */
    t = lookup(tid);
    if (t && t->parent == self && t->state == CO_ZOMBIE)
        reap(t);
    if (status)
        *status = st;
    return 0;
}

int co_wait_child(co_tid *tid, int *status, int64_t deadline) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    for (;;) {
        if (!list_empty(&self->zombies)) {
            task *z = container_of(self->zombies.next, task, sibling);
            if (tid)
                *tid = z->id;
            if (status)
                *status = z->status;
            reap(z);
            return 0;
        }
        if (list_empty(&self->children))
            return -ECHILD;
        int r = may_block(self, deadline);
        if (r == 0)
            r = rt_block(self, NULL, CO_WAIT_CHILD, deadline);
        if (r)
            return r;
    }
}

int co_kill(co_tid tid) {
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    if (t->state == CO_ZOMBIE)
        return 0;
    t->killed = true;
    rt_wake(t, -ECANCELED);
    return 0;
}

int co_become_reaper(void) {
    task *self = rt_sched.current;
    if (!self)
        return -EPERM;
    if (rt_sched.reaper && rt_sched.reaper != self)
        return -EBUSY;
    rt_sched.reaper = self;
    return 0;
}

int co_task_get_info(co_tid tid, co_task_info *info) {
    task *t = lookup(tid);
    if (!t)
        return -ESRCH;
    memset(info, 0, sizeof *info);
    info->tid = t->id;
    info->parent = t->parent ? t->parent->id : 0;
    info->state = (co_state)t->state;
    info->waiting = t->state == CO_BLOCKED ? (co_wait_kind)t->waiting : CO_WAIT_NONE;
    info->killed = t->killed;
    info->status = t->state == CO_ZOMBIE ? t->status : 0;
    info->last_run = t->last_run;
    memcpy(info->name, t->name, sizeof info->name);
    return 0;
}
