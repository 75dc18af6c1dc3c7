/* completions.c — consumes tasker_completion_<ns> queues: process_completions per namespace.
 *
 * Each namespace runs at most one process_completions at a time (the SQL is safe with more, but
 * one in flight per namespace per daemon keeps batches full and commits few). A NOTIFY for a
 * namespace that is busy marks it to run again as soon as the call returns; a full batch also
 * runs again at once, so a backlog drains at full speed. Each namespace has its own fallback
 * timer, for when notifications are lost: completions.interval_ms after a call that found
 * messages or that a NOTIFY asked for, then doubling while its polls find nothing, up to
 * completions.idle_interval_ms, so an idle daemon asks rarely and a busy namespace does not keep
 * the quiet ones polling. A NOTIFY (or a reconnect) brings it back to the base interval at once.
 * New namespaces are found by re-reading the list periodically, or at once when a NOTIFY names
 * one we do not know.
 * With messaging.backend = rabbitmq each namespace also has a pointer_consumer: completion pointers
 * come from RabbitMQ's tasker_completion_<ns> (pointer_consumer.c) and their batches are recorded
 * here like process_completions' (ns_record). The PGMQ poll stays, idle-backed-off, for workers
 * that still hand back with PGMQ completion messages.
 */
#include "completions.h"

#include "backoff.h"
#include "db_pool.h"
#include "log.h"
#include "names.h"
#include "orchd.h"
#include "poller.h"
#include "pointer_consumer.h"
#include "statements.h"
#include "timer.h"
#include "vacuum.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMPLETION_PREFIX "tasker_completion_"

struct ns_state {
    struct completions *owner;
    char name[32];
    struct event *timer;      /* this namespace's fallback poll */
    struct idle_backoff idle; /* its interval while polls find nothing */
    bool in_flight;
    bool again;      /* run again as soon as the call in flight returns */
    bool kicked;     /* a NOTIFY (or reconnect) asked for the next call */
    bool run_kicked; /* … for the call in flight */
    struct pointer_consumer *pc; /* messaging.backend = rabbitmq: pointers from RabbitMQ; else NULL */
};

struct completions {
    struct orchd *o;
    struct ns_state **ns;   /* pointers stay valid while the array grows: callbacks hold them */
    size_t nns, cap;
    struct event *refresh;  /* re-read the namespace list */
    bool refresh_in_flight;
    bool stopping;
};

static struct ns_state *ns_find(struct completions *c, const char *name)
{
    for (size_t i = 0; i < c->nns; i++)
        if (strcmp(c->ns[i]->name, name) == 0)
            return c->ns[i];
    return NULL;
}

static void ns_on_timer(evutil_socket_t fd, short what, void *arg);
static void ns_record(void *arg, const struct db_rows *rows);

static struct ns_state *ns_add(struct completions *c, const char *name)
{
    struct ns_state *s = ns_find(c, name);
    if (s || !namespace_name_valid(name))
        return s;
    if (c->nns == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct ns_state **grown = realloc(c->ns, cap * sizeof *grown);
        if (!grown)
            return NULL;
        c->ns = grown;
        c->cap = cap;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!(s->timer = evtimer_new(c->o->base, ns_on_timer, s))) {
        free(s);
        return NULL;
    }
    s->owner = c;
    snprintf(s->name, sizeof s->name, "%s", name);
    if (strcmp(c->o->conf.messaging_backend, "rabbitmq") == 0 && !(s->pc = pc_new(c->o, name, ns_record, s))) {
        event_free(s->timer);
        free(s);
        return NULL;
    }
    c->ns[c->nns++] = s;
    log_info("completions", "consuming %s%s%s", COMPLETION_PREFIX, name, s->pc ? " (RabbitMQ and PGMQ)" : "");
    if (s->pc && !c->stopping)
        pc_start(s->pc);
    return s;
}

static void ns_run(struct ns_state *s);

/* ns_arm: the next fallback poll of s in ms (none while stopping). */
static void ns_arm(struct ns_state *s, long long ms)
{
    if (!s->owner->stopping)
        timer_in_ms(s->timer, ms);
}

static void ns_log_rejected(const char *ns, const char *details)
{
    json_error_t jerr;
    json_t *arr = json_loads(details, 0, &jerr);
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        log_warn("completions", "rejected message %lld in %s%s: %s",
                 (long long)json_integer_value(json_object_get(item, "msg_id")), COMPLETION_PREFIX, ns,
                 json_string_value(json_object_get(item, "reason")));
    }
    json_decref(arr);
}

/* ns_record: one committed batch's result row (process_completions' columns, from PGMQ or from
 * RabbitMQ's pointers): metrics, rejected messages, and the wake-ups it calls for. */
static void ns_record(void *arg, const struct db_rows *rows)
{
    struct ns_state *s = arg;
    struct completions *c = s->owner;
    struct metrics *m = &c->o->metrics;
    long long msgs = db_rows_int(rows, 0, 0);
    if (msgs > 0) {
        /* daemon-wide and per-namespace counters, batch-size and latency histograms */
        struct metrics_batch b = {
            .messages = msgs, .steps_completed = db_rows_int(rows, 0, 1), .steps_retrying = db_rows_int(rows, 0, 2),
            .steps_failed = db_rows_int(rows, 0, 3), .stale = db_rows_int(rows, 0, 4),
            .rejected = db_rows_int(rows, 0, 5), .steps_enqueued = db_rows_int(rows, 0, 6),
            .tasks_completed = db_rows_int(rows, 0, 7), .tasks_blocked = db_rows_int(rows, 0, 8),
        };
        metrics_record_completions(m, s->name, &b);
        metrics_observe_step_latencies(m, db_rows_text(rows, 0, 10));
        log_debug("completions", "%s: %lld message(s), %lld step(s) dispatched", s->name, msgs,
                  db_rows_int(rows, 0, 6));
        if (db_rows_int(rows, 0, 5) > 0)
            ns_log_rejected(s->name, db_rows_text(rows, 0, 9));
        poller_note_activity(c->o->poller); /* work is flowing: no idle polling meanwhile */
        vacuum_note_completions(c->o->vacuum, s->name); /* …and leaving dead rows behind */
    }
    if (db_rows_int(rows, 0, 2) > 0)
        poller_kick(c->o->poller); /* a retry time was just set: let the poller plan its wake-up */
}

static void ns_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct ns_state *s = arg;
    struct completions *c = s->owner;
    struct metrics *m = &c->o->metrics;
    const struct conf *conf = &c->o->conf;
    s->in_flight = false;
    bool again = s->again;
    s->again = false;
    if (err || db_rows_count(rows) != 1) {
        if (err) {
            m->query_errors++;
            log_warn("completions", "process_completions(%s) failed: %s%s%s", s->name, err->message,
                     err->sqlstate[0] ? " SQLSTATE " : "", err->sqlstate);
        }
        idle_backoff_reset(&s->idle);
        if (again)
            ns_run(s);
        else
            ns_arm(s, conf->completions_interval_ms); /* the timer tries again */
        return;
    }
    long long msgs = db_rows_int(rows, 0, 0);
    ns_record(s, rows);
    if (again || msgs >= conf->completions_batch_size)
        ns_run(s);
    else
        ns_arm(s, idle_backoff_next(&s->idle, msgs > 0 || s->run_kicked, conf->completions_interval_ms,
                                    conf->completions_idle_interval_ms));
}

static void ns_run(struct ns_state *s)
{
    struct completions *c = s->owner;
    if (c->stopping)
        return;
    if (s->in_flight) {
        s->again = true;
        return;
    }
    if (!c->o->db_up) {
        ns_arm(s, c->o->conf.completions_interval_ms); /* and the pool's UP event kicks us */
        return;
    }
    char batch[16], vt[16];
    snprintf(batch, sizeof batch, "%d", c->o->conf.completions_batch_size);
    snprintf(vt, sizeof vt, "%d", c->o->conf.completions_visibility_timeout_secs);
    const char *params[3] = { s->name, batch, vt };
    if (db_pool_query(c->o->pool, STMT_PROCESS_COMPLETIONS, params, 3, ns_on_result, s)) {
        s->in_flight = true;
        s->run_kicked = s->kicked;
        s->kicked = false;
        evtimer_del(s->timer); /* re-armed when the call returns */
    } else {
        ns_arm(s, c->o->conf.completions_interval_ms);
    }
}

static void ns_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ns_run(arg);
}

/* ns_kick: run s now, as a wake-up: its next fallback poll comes after the base interval. */
static void ns_kick(struct ns_state *s)
{
    s->kicked = true;
    idle_backoff_reset(&s->idle);
    ns_run(s);
}

void completions_kick_all(struct completions *c)
{
    for (size_t i = 0; i < c->nns; i++) {
        ns_kick(c->ns[i]);
        pc_kick(c->ns[i]->pc);
    }
    /* After a (re)connect there may be namespaces we never heard of (none at all, at start):
     * re-read the list now rather than at the next refresh; each one found runs at once. */
    timer_in_ms(c->refresh, 0);
}

void completions_kick(struct completions *c, const char *queue)
{
    if (strncmp(queue, COMPLETION_PREFIX, strlen(COMPLETION_PREFIX)) != 0)
        return; /* dispatch queues are for workers */
    struct ns_state *s = ns_add(c, queue + strlen(COMPLETION_PREFIX));
    if (s)
        ns_kick(s);
}

static void refresh_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct completions *c = arg;
    c->refresh_in_flight = false;
    if (err) {
        c->o->metrics.query_errors++;
        log_warn("completions", "reading the namespace list failed: %s", err->message);
        return;
    }
    size_t before = c->nns;
    for (int i = 0; i < db_rows_count(rows); i++)
        ns_add(c, db_rows_text(rows, i, 0));
    for (size_t i = before; i < c->nns; i++)
        ns_run(c->ns[i]);
}

static void completions_on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct completions *c = arg;
    if (c->stopping)
        return;
    if (c->o->db_up && !c->refresh_in_flight &&
        db_pool_query(c->o->pool, STMT_NAMESPACES, NULL, 0, refresh_on_result, c))
        c->refresh_in_flight = true;
    timer_in_ms(c->refresh, c->o->conf.namespace_refresh_secs * 1000LL);
}

struct completions *completions_new(struct orchd *o)
{
    struct completions *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("completions", "out of memory");
        return NULL;
    }
    c->o = o;
    c->refresh = evtimer_new(o->base, completions_on_refresh, c);
    if (!c->refresh) {
        log_error("completions", "out of memory");
        completions_free(c);
        return NULL;
    }
    return c;
}

void completions_start(struct completions *c)
{
    timer_in_ms(c->refresh, 0); /* each namespace found runs at once, then keeps its own timer */
}

void completions_stop(struct completions *c)
{
    c->stopping = true;
    evtimer_del(c->refresh);
    for (size_t i = 0; i < c->nns; i++) {
        evtimer_del(c->ns[i]->timer);
        pc_stop(c->ns[i]->pc);
    }
}

void completions_free(struct completions *c)
{
    if (!c)
        return;
    if (c->refresh)
        event_free(c->refresh);
    for (size_t i = 0; i < c->nns; i++) {
        event_free(c->ns[i]->timer);
        pc_free(c->ns[i]->pc);
        free(c->ns[i]);
    }
    free(c->ns);
    free(c);
}

size_t completions_namespace_count(const struct completions *c)
{
    return c->nns;
}

const char *completions_namespace(const struct completions *c, size_t i)
{
    return i < c->nns ? c->ns[i]->name : NULL;
}

int completions_in_flight(const struct completions *c)
{
    int n = 0;
    for (size_t i = 0; i < c->nns; i++)
        n += c->ns[i]->in_flight + pc_in_flight(c->ns[i]->pc);
    return n;
}

void completions_pointer_stats(const struct completions *c, struct pointer_stats *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < c->nns; i++)
        if (c->ns[i]->pc)
            pc_stats_add(c->ns[i]->pc, out);
}
