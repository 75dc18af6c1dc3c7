/* db_pool.c — the connection pool: min/max, acquire timeout, idle/lifetime recycling, jittered
 * reconnect, circuit breaker; every query a prepared statement (but for the rare parameter-free
 * maintenance statement, db_pool_query_sql), every call asynchronous.
 *
 * Slots hold connections; a FIFO holds queries waiting for one. A maintenance timer (every
 * POOL_TICK_MS) keeps the minimum open, closes idle and old connections, and fails queries that
 * waited longer than acquire_timeout_secs. Connect failures back off exponentially with jitter;
 * after breaker_failure_threshold of them in a row the breaker opens: queries fail at once
 * instead of piling up, and one probe connection is tried every breaker_open_secs.
 */
#include "db_pool.h"

#include "backoff.h"
#include "conf.h"
#include "log.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_TICK_MS 250
#define POOL_CONNECT_TIMEOUT_MS 10000

enum slot_state {
    SLOT_FREE,       /* no connection */
    SLOT_CONNECTING, /* connecting or preparing */
    SLOT_IDLE,       /* ready for a query */
    SLOT_BUSY,       /* running req */
    SLOT_BROKEN      /* the connection failed; freed from the next tick (never inside its callback) */
};

struct db_request {
    struct db_request *next;
    int stmt;
    char *sql;             /* db_pool_query_sql: the text to send instead of statement stmt */
    db_result_fn cb;
    void *arg;
    long long deadline_ms; /* monotonic; fail with "acquire timeout" after it */
    int nparams;
    char *params[DB_MAX_PARAMS];
};

struct db_slot {
    struct db_pool *pool;
    struct db_conn *conn;
    enum slot_state state;
    long long opened_ms;    /* when the connection became ready */
    long long last_used_ms; /* when it last finished a query */
    struct db_request *req; /* the query running on it */
};

struct db_pool {
    struct event_base *base;
    const struct conf *conf;
    const struct db_statement *stmts;
    size_t nstmts;
    db_pool_event_fn on_event;
    void *arg;
    char actor_escaped[160]; /* processor id, escaped for libpq's options syntax */
    struct db_slot *slots;
    int nslots;              /* = pool_max_connections at creation */
    struct db_request *queue_head, *queue_tail;
    int queued;
    struct event *tick;
    bool stopping;
    void (*drained)(void *);
    void *drained_arg;
    bool up;                 /* at least one connection has been ready since the last DOWN */
    /* reconnect backoff and breaker */
    int consecutive_failures;
    long long next_connect_ms;
    long long breaker_until_ms; /* 0 = closed */
    unsigned long long progress;
    long long last_error_ms; /* monotonic time of st.last_error; 0 = none */
    struct db_pool_stats st;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void pool_dispatch(struct db_pool *p);

/* Remember the latest error, for STATUS= and /health (which show it with its age). */
static void pool_note_error(struct db_pool *p, const char *msg)
{
    snprintf(p->st.last_error, sizeof p->st.last_error, "%s", msg);
    p->last_error_ms = now_ms();
}

static void request_free(struct db_request *r)
{
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r->sql);
    free(r);
}

/* Complete a request that never reached a connection. */
static void request_fail(struct db_pool *p, struct db_request *r, const char *why)
{
    struct db_error err = { .connection_lost = false };
    snprintf(err.message, sizeof err.message, "%s", why);
    p->st.queries_failed++;
    r->cb(r->arg, NULL, &err);
    request_free(r);
}

static void pool_fail_queue(struct db_pool *p, const char *why)
{
    while (p->queue_head) {
        struct db_request *r = p->queue_head;
        p->queue_head = r->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        p->queued--;
        request_fail(p, r, why);
    }
}

static int pool_count(const struct db_pool *p, enum slot_state s)
{
    int n = 0;
    for (int i = 0; i < p->nslots; i++)
        n += p->slots[i].state == s;
    return n;
}

static int pool_live(const struct db_pool *p)
{
    return p->nslots - pool_count(p, SLOT_FREE) - pool_count(p, SLOT_BROKEN);
}

static void pool_check_drained(struct db_pool *p)
{
    if (p->stopping && p->drained && pool_count(p, SLOT_BUSY) == 0) {
        void (*fn)(void *) = p->drained;
        p->drained = NULL;
        fn(p->drained_arg);
    }
}

static void slot_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct db_slot *s = arg;
    struct db_pool *p = s->pool;
    struct db_request *r = s->req;
    s->req = NULL;
    if (s->state == SLOT_BUSY)
        s->state = (err && err->connection_lost) ? SLOT_BROKEN : SLOT_IDLE;
    s->last_used_ms = now_ms();
    p->progress++;
    if (err) {
        p->st.queries_failed++;
        pool_note_error(p, err->message);
    } else {
        p->st.queries_ok++;
    }
    if (r) {
        r->cb(r->arg, rows, err);
        request_free(r);
    }
    pool_check_drained(p);
    if (!p->stopping)
        pool_dispatch(p);
}

static void slot_on_event(void *arg, struct db_conn *c, enum db_conn_event ev, const char *channel,
                          const char *payload)
{
    (void)c;
    (void)channel;
    (void)payload;
    struct db_slot *s = arg;
    struct db_pool *p = s->pool;
    long long now = now_ms();

    if (ev == DB_CONN_EV_READY) {
        s->state = SLOT_IDLE;
        s->opened_ms = s->last_used_ms = now;
        p->st.connects_ok++;
        if (p->breaker_until_ms)
            log_info("pool", "database reachable again; circuit breaker closed");
        p->consecutive_failures = 0;
        p->breaker_until_ms = 0;
        p->next_connect_ms = 0;
        if (!p->up) {
            p->up = true;
            p->on_event(p->arg, DB_POOL_EV_UP, NULL);
        }
        pool_dispatch(p);
        return;
    }
    if (ev != DB_CONN_EV_BROKEN)
        return; /* pool connections do not LISTEN */

    bool was_connecting = s->state == SLOT_CONNECTING;
    s->state = SLOT_BROKEN; /* freed on the next tick: we are inside the connection's callback */
    pool_note_error(p, db_conn_last_error(s->conn));
    if (db_conn_prepare_failed(s->conn)) {
        log_error("pool", "%s — the database schema does not match this build; run `tasker-orchestratord migrate`",
                  db_conn_last_error(s->conn));
        p->on_event(p->arg, DB_POOL_EV_SCHEMA_MISMATCH, db_conn_last_error(s->conn));
        return;
    }
    if (!was_connecting) {
        log_warn("pool", "connection lost: %s", db_conn_last_error(s->conn));
        return;
    }
    p->st.connects_failed++;
    p->consecutive_failures++;
    long long delay = backoff_ms(p->conf->pool_reconnect_initial_ms, p->conf->pool_reconnect_max_ms,
                                p->consecutive_failures, 25, (unsigned)rand());
    p->next_connect_ms = now + delay;
    log_warn("pool", "cannot connect (%d in a row, next try in %lld ms): %s", p->consecutive_failures, delay,
             db_conn_last_error(s->conn));
    if (p->consecutive_failures >= p->conf->pool_breaker_failure_threshold) {
        if (!p->breaker_until_ms)
            log_error("pool", "circuit breaker open after %d failed connects: queries fail fast for %d s",
                      p->consecutive_failures, p->conf->pool_breaker_open_secs);
        p->breaker_until_ms = now + p->conf->pool_breaker_open_secs * 1000LL;
        p->next_connect_ms = p->breaker_until_ms;
        pool_fail_queue(p, "database unavailable (circuit breaker open)");
    }
    if (p->up && pool_live(p) == 0) {
        p->up = false;
        /* Nothing will serve the queue soon: fail it now rather than at each acquire timeout. */
        pool_fail_queue(p, "database unreachable");
        p->on_event(p->arg, DB_POOL_EV_DOWN, p->st.last_error);
    }
}

/* May we start a connection now? Not while backing off; with the breaker open only after its
 * period, and then one probe at a time. */
static bool pool_may_connect(const struct db_pool *p, long long now)
{
    if (p->stopping || now < p->next_connect_ms)
        return false;
    if (p->consecutive_failures > 0 && pool_count(p, SLOT_CONNECTING) > 0)
        return false; /* while failing, probe with one connection at a time */
    return true;
}

static void pool_open_one(struct db_pool *p)
{
    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state != SLOT_FREE)
            continue;
        /* Session settings travel in the startup packet (no extra round trip), built per
         * connection so a reloaded statement_timeout applies to every new one. */
        char options[512];
        /* jit=off: our statements are short OLTP calls; a cost estimate inflated by bloat or stale
         * statistics must not make PostgreSQL spend 100× the query time compiling them. */
        snprintf(options, sizeof options,
                 "-c tasker.actor=%s -c statement_timeout=%d -c jit=off -c tasker.max_decision_steps=%d "
                 "-c tasker.max_batch_workers=%d -c tasker.max_template_steps=%d",
                 p->actor_escaped, p->conf->pool_statement_timeout_ms, p->conf->decision_max_steps,
                 p->conf->batch_max_workers, p->conf->templates_max_steps);
        struct db_conn_params cp = {
            .url = p->conf->database_url,
            .application_name = "tasker-orchestratord",
            .options = options,
            .connect_timeout_ms = POOL_CONNECT_TIMEOUT_MS,
            .prepare = p->stmts,
            .nprepare = p->nstmts,
        };
        s->conn = db_conn_start(p->base, &cp, slot_on_event, s);
        if (s->conn)
            s->state = SLOT_CONNECTING;
        return;
    }
}

/* Hand queued requests to idle connections; open connections when demand exceeds supply. */
static void pool_dispatch(struct db_pool *p)
{
    while (p->queue_head) {
        struct db_slot *s = NULL;
        for (int i = 0; i < p->nslots && !s; i++)
            if (p->slots[i].state == SLOT_IDLE)
                s = &p->slots[i];
        if (!s)
            break;
        struct db_request *r = p->queue_head;
        bool sent = r->sql ? db_conn_query(s->conn, false, r->sql, 0, NULL, slot_on_result, s)
                           : db_conn_query(s->conn, true, p->stmts[r->stmt].name, r->nparams,
                                           (const char *const *)r->params, slot_on_result, s);
        if (!sent) {
            s->state = SLOT_BROKEN;
            continue;
        }
        p->queue_head = r->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        p->queued--;
        s->state = SLOT_BUSY;
        s->req = r;
    }
    long long now = now_ms();
    if (p->queued > pool_count(p, SLOT_CONNECTING) && pool_live(p) < p->nslots && pool_may_connect(p, now))
        pool_open_one(p);
}

static void slot_close(struct db_slot *s)
{
    db_conn_free(s->conn);
    s->conn = NULL;
    s->state = SLOT_FREE;
}

static void pool_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_pool *p = arg;
    long long now = now_ms();

    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state == SLOT_BROKEN) {
            slot_close(s);
        } else if (s->state == SLOT_IDLE && !p->stopping) {
            bool above_min = pool_live(p) > p->conf->pool_min_connections;
            if (above_min && now - s->last_used_ms > p->conf->pool_idle_timeout_secs * 1000LL) {
                log_debug("pool", "closing a connection idle for %d s", p->conf->pool_idle_timeout_secs);
                slot_close(s);
            } else if (now - s->opened_ms > p->conf->pool_max_lifetime_secs * 1000LL) {
                log_debug("pool", "recycling a connection older than %d s", p->conf->pool_max_lifetime_secs);
                slot_close(s);
            }
        }
    }

    /* Queries that waited too long for a connection. The queue is FIFO, so only its head can be due. */
    while (p->queue_head && p->queue_head->deadline_ms <= now) {
        struct db_request *r = p->queue_head;
        p->queue_head = r->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        p->queued--;
        p->st.acquire_timeouts++;
        request_fail(p, r, "timed out waiting for a database connection");
    }

    /* No query running on any connection counts as progress for the watchdog: queries waiting for
     * a connection during an outage are not a wedge (the acquire timeout and breaker deal with
     * them); a query stuck on a live connection is. */
    if (pool_count(p, SLOT_BUSY) == 0)
        p->progress++;

    if (!p->stopping) {
        if (pool_live(p) < p->conf->pool_min_connections && pool_may_connect(p, now))
            pool_open_one(p);
        pool_dispatch(p);
    }
    pool_check_drained(p);
}

struct db_pool *db_pool_new(struct event_base *base, const struct conf *conf, const char *actor,
                            const struct db_statement *statements, size_t n, db_pool_event_fn on_event, void *arg)
{
    struct db_pool *p = calloc(1, sizeof *p);
    if (!p) {
        log_error("pool", "out of memory");
        return NULL;
    }
    p->base = base;
    p->conf = conf;
    p->stmts = statements;
    p->nstmts = n;
    p->on_event = on_event;
    p->arg = arg;
    p->nslots = conf->pool_max_connections;
    p->slots = calloc((size_t)p->nslots, sizeof *p->slots);
    p->tick = event_new(base, -1, EV_PERSIST, pool_tick, p);
    if (!p->slots || !p->tick) {
        log_error("pool", "out of memory");
        db_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < p->nslots; i++)
        p->slots[i].pool = p;
    /* Spaces and backslashes in the actor are escaped, as libpq's options syntax wants. */
    size_t j = 0;
    for (const char *c = actor; *c && j + 2 < sizeof p->actor_escaped; c++) {
        if (*c == ' ' || *c == '\\')
            p->actor_escaped[j++] = '\\';
        p->actor_escaped[j++] = *c;
    }
    p->actor_escaped[j] = '\0';
    p->st.max = p->nslots;
    return p;
}

void db_pool_start(struct db_pool *p)
{
    struct timeval tv = { .tv_sec = 0, .tv_usec = POOL_TICK_MS * 1000 };
    event_add(p->tick, &tv);
    for (int i = 0; i < p->conf->pool_min_connections; i++)
        pool_open_one(p);
}

/* pool_request: a new request for the queue, or NULL when the pool takes none now (stopping,
 * breaker open) or memory ran out. */
static struct db_request *pool_request(struct db_pool *p, db_result_fn cb, void *arg)
{
    if (p->stopping)
        return NULL;
    if (p->breaker_until_ms && now_ms() < p->breaker_until_ms)
        return NULL;
    struct db_request *r = calloc(1, sizeof *r);
    if (!r) {
        log_error("pool", "out of memory");
        return NULL;
    }
    r->cb = cb;
    r->arg = arg;
    r->deadline_ms = now_ms() + p->conf->pool_acquire_timeout_secs * 1000LL;
    return r;
}

static void pool_enqueue(struct db_pool *p, struct db_request *r)
{
    if (p->queue_tail)
        p->queue_tail->next = r;
    else
        p->queue_head = r;
    p->queue_tail = r;
    p->queued++;
    pool_dispatch(p);
}

bool db_pool_query(struct db_pool *p, int stmt, const char *const *params, int nparams, db_result_fn cb, void *arg)
{
    if (stmt < 0 || (size_t)stmt >= p->nstmts || nparams > DB_MAX_PARAMS)
        return false;
    struct db_request *r = pool_request(p, cb, arg);
    if (!r)
        return false;
    r->stmt = stmt;
    r->nparams = nparams;
    for (int i = 0; i < nparams; i++) {
        if (params[i] && !(r->params[i] = strdup(params[i]))) {
            log_error("pool", "out of memory");
            request_free(r);
            return false;
        }
    }
    pool_enqueue(p, r);
    return true;
}

bool db_pool_query_sql(struct db_pool *p, const char *sql, db_result_fn cb, void *arg)
{
    struct db_request *r = pool_request(p, cb, arg);
    if (!r)
        return false;
    if (!(r->sql = strdup(sql))) {
        log_error("pool", "out of memory");
        request_free(r);
        return false;
    }
    pool_enqueue(p, r);
    return true;
}

void db_pool_stop(struct db_pool *p, void (*drained)(void *arg), void *arg)
{
    p->stopping = true;
    p->drained = drained;
    p->drained_arg = arg;
    pool_fail_queue(p, "shutting down");
    /* Report from the loop, never from inside the caller's stack. */
    event_active(p->tick, EV_TIMEOUT, 0);
}

void db_pool_free(struct db_pool *p)
{
    if (!p)
        return;
    if (p->tick)
        event_free(p->tick);
    p->stopping = true;
    p->drained = NULL;
    pool_fail_queue(p, "pool closed");
    for (int i = 0; p->slots && i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->conn) {
            db_conn_fail_pending(s->conn, "pool closed");
            db_conn_free(s->conn);
        }
        if (s->req)
            request_free(s->req);
    }
    free(p->slots);
    free(p);
}

void db_pool_stats(const struct db_pool *p, struct db_pool_stats *out)
{
    *out = p->st;
    out->idle = pool_count(p, SLOT_IDLE);
    out->busy = pool_count(p, SLOT_BUSY);
    out->connecting = pool_count(p, SLOT_CONNECTING);
    out->total = out->idle + out->busy + out->connecting;
    out->queued = p->queued;
    out->breaker_open = p->breaker_until_ms != 0;
    out->last_error_age_ms = p->last_error_ms ? now_ms() - p->last_error_ms : -1;
}

unsigned long long db_pool_progress(const struct db_pool *p)
{
    return p->progress;
}
