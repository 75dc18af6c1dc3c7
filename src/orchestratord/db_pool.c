/* db_pool.c — the connection pool: min/max, acquire timeout, idle/lifetime recycling, jittered
 * reconnect, circuit breaker, connections reserved for orchestration; every query a prepared
 * statement (but for the rare parameter-free maintenance statement, db_pool_query_sql), every call
 * asynchronous.
 *
 * Slots hold connections; two FIFOs hold queries waiting for one: orchestration's (completions,
 * poller, sweeper, vacuum) and the API's. Orchestration's go first and may use every connection;
 * API queries may hold at most max_connections - reserved_for_orchestration at once, so slow API
 * calls can saturate their share but never stall orchestration. A maintenance timer (every
 * POOL_TICK_MS) keeps the minimum open, closes idle and old connections, and fails queries that
 * waited longer than acquire_timeout_secs.
 *
 * Statement timeouts: a connection starts with database.pool.statement_timeout_ms (in the startup
 * packet); before a query that wants another value (API queries: web.statement_timeout_ms) the
 * slot sends `SET statement_timeout` first and remembers what its session has. Idle connections of
 * the right kind are preferred, so the extra round trip is paid only when the mix changes. With
 * database.transaction_pooling there is no session to remember: every query carries its settings,
 * statement_timeout included (db_conn.c), so the value is just set on the connection before it.
 *
 * Connect failures back off exponentially with jitter. While at least one connection works, a
 * failure only means the pool cannot grow: it runs on what it has, says so ("pool at N of M, cannot
 * grow: why" in the log, STATUS= and /health) and keeps trying, slowly. Only when no connection
 * works do breaker_failure_threshold failures in a row open the breaker: queries fail at once
 * instead of piling up, and one probe connection is tried every breaker_open_secs. Any connect or
 * query that succeeds closes it.
 */
#include "db_pool.h"

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "timer.h"

#include <event2/event.h>
#include <limits.h>
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
    unsigned long long ticket; /* for db_pool_cancel */
    bool api;              /* an API query: counts against the API's share, runs under its timeout */
    bool cancelled;        /* cancelled while queued: failed on the next tick */
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
    int timeout_ms;         /* the statement_timeout its session has */
    int setting_timeout_ms; /* >= 0: a SET statement_timeout to this runs before req */
    bool cancel;            /* req was cancelled: fail it and close the connection on the next tick */
};

/* A FIFO of requests waiting for a connection. */
struct req_queue {
    struct db_request *head, *tail;
    int n;
};

struct db_pool {
    struct event_base *base;
    const struct conf *conf;
    const struct db_statement *stmts;
    size_t nstmts;
    db_pool_event_fn on_event;
    void *arg;
    char actor[CONF_NAME_MAX]; /* processor id: tasker.actor of every connection */
    struct db_slot *slots;
    int nslots;              /* = pool_max_connections at creation */
    struct req_queue orch, api; /* waiting: orchestration's, and the API's */
    unsigned long long next_ticket;
    struct event *tick;
    bool stopping;
    void (*drained)(void *);
    void *drained_arg;
    bool up;                 /* at least one connection has been ready since the last DOWN */
    /* reconnect backoff and breaker */
    int consecutive_failures;   /* connect failures in a row while no connection worked */
    int grow_failures;          /* connect failures in a row while others worked (the pool cannot grow) */
    long long next_connect_ms;
    long long breaker_until_ms; /* 0 = closed */
    unsigned long long progress;
    long long last_error_ms; /* monotonic time of st.last_error; 0 = none */
    struct db_pool_stats st;
};

static void pool_dispatch(struct db_pool *p);

/* Remember the latest error, for STATUS= and /health (which show it with its age). */
static void pool_note_error(struct db_pool *p, const char *msg)
{
    snprintf(p->st.last_error, sizeof p->st.last_error, "%s", msg);
    p->last_error_ms = mono_ms();
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

static void queue_push(struct req_queue *q, struct db_request *r)
{
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->n++;
}

/* queue_unlink: take r (whose predecessor is prev, NULL for the head) out of q. */
static void queue_unlink(struct req_queue *q, struct db_request *prev, struct db_request *r)
{
    if (prev)
        prev->next = r->next;
    else
        q->head = r->next;
    if (q->tail == r)
        q->tail = prev;
    r->next = NULL;
    q->n--;
}

static void pool_fail_queue(struct db_pool *p, const char *why)
{
    struct req_queue *qs[] = { &p->orch, &p->api };
    for (size_t i = 0; i < 2; i++) {
        while (qs[i]->head) {
            struct db_request *r = qs[i]->head;
            queue_unlink(qs[i], NULL, r);
            request_fail(p, r, why);
        }
    }
}

/* The most connections API queries may hold at once: at least one, whatever the reservation. */
static int pool_max_api(const struct db_pool *p)
{
    int n = p->nslots - p->conf->pool_reserved_for_orchestration;
    return n < 1 ? 1 : n;
}

static int pool_busy_api(const struct db_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->nslots; i++)
        n += p->slots[i].state == SLOT_BUSY && p->slots[i].req && p->slots[i].req->api;
    return n;
}

/* The statement_timeout a request runs under. */
static int request_timeout_ms(const struct db_pool *p, const struct db_request *r)
{
    return r->api ? p->conf->web_statement_timeout_ms : p->conf->pool_statement_timeout_ms;
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

/* Connections that work: connected, idle or running a query (not opening, not broken). */
static int pool_working(const struct db_pool *p)
{
    return pool_count(p, SLOT_IDLE) + pool_count(p, SLOT_BUSY);
}

/* A query succeeded or a connection opened: whatever the breaker thought, the database works. */
static void pool_close_breaker(struct db_pool *p, const char *why)
{
    if (p->breaker_until_ms)
        log_info("pool", "%s; circuit breaker closed", why);
    p->breaker_until_ms = 0;
    p->consecutive_failures = 0;
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
    s->setting_timeout_ms = -1;
    /* A cancelled query's connection is not reused, even when the query ended by itself first: the
     * cancel request may still be on its way and would hit the next query on that session. */
    if (s->state == SLOT_BUSY)
        s->state = (err && err->connection_lost) || s->cancel ? SLOT_BROKEN : SLOT_IDLE;
    s->cancel = false;
    s->last_used_ms = mono_ms();
    p->progress++;
    if (err) {
        p->st.queries_failed++;
        pool_note_error(p, err->message);
    } else {
        p->st.queries_ok++;
    }
    /* The server answered (a result, or an error of its own): the database works. */
    if (!err || err->sqlstate[0])
        pool_close_breaker(p, "a query succeeded");
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
    long long now = mono_ms();

    if (ev == DB_CONN_EV_READY) {
        s->state = SLOT_IDLE;
        s->opened_ms = s->last_used_ms = now;
        p->st.connects_ok++;
        pool_close_breaker(p, "database reachable again");
        if (p->st.cannot_grow[0])
            log_info("pool", "pool at %d of %d: it can grow again", pool_working(p), p->nslots);
        p->st.cannot_grow[0] = '\0';
        p->grow_failures = 0;
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
    int working = pool_working(p);
    if (working > 0) {
        /* Other connections work (the server is out of connection slots, or refuses this one for
         * some other reason): the pool cannot grow, but queries run on what it has. Never a reason
         * to refuse them. Retry slowly, backing off to reconnect_max_ms. */
        p->grow_failures++;
        long long delay = backoff_ms(p->conf->pool_reconnect_initial_ms, p->conf->pool_reconnect_max_ms,
                                    p->grow_failures, 25, (unsigned)rand());
        p->next_connect_ms = now + delay;
        if (!p->st.cannot_grow[0])
            log_warn("pool", "pool at %d of %d, cannot grow: %s (running on the connections it has; next try in "
                     "%lld ms)", working, p->nslots, db_conn_last_error(s->conn), delay);
        else
            log_debug("pool", "pool at %d of %d, still cannot grow (%d in a row): %s", working, p->nslots,
                      p->grow_failures, db_conn_last_error(s->conn));
        snprintf(p->st.cannot_grow, sizeof p->st.cannot_grow, "%s", db_conn_last_error(s->conn));
        return;
    }
    p->consecutive_failures++;
    long long delay = backoff_ms(p->conf->pool_reconnect_initial_ms, p->conf->pool_reconnect_max_ms,
                                p->consecutive_failures, 25, (unsigned)rand());
    p->next_connect_ms = now + delay;
    log_warn("pool", "cannot connect (%d in a row, no connection works, next try in %lld ms): %s",
             p->consecutive_failures, delay, db_conn_last_error(s->conn));
    if (p->consecutive_failures >= p->conf->pool_breaker_failure_threshold) {
        if (!p->breaker_until_ms)
            log_error("pool", "circuit breaker open after %d failed connects with no connection working: queries "
                      "fail fast for %d s", p->consecutive_failures, p->conf->pool_breaker_open_secs);
        else
            log_warn("pool", "circuit breaker stays open another %d s: the probe connection failed",
                     p->conf->pool_breaker_open_secs);
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
    if ((p->consecutive_failures > 0 || p->grow_failures > 0) && pool_count(p, SLOT_CONNECTING) > 0)
        return false; /* while failing, probe with one connection at a time */
    return true;
}

static void pool_open_one(struct db_pool *p)
{
    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state != SLOT_FREE)
            continue;
        /* Session settings travel in the startup packet (no extra round trip) or, behind
         * transaction pooling, with every query; built per connection so a reloaded
         * statement_timeout applies to every new one. */
        char timeout[16], decision[16], batch[16], tsteps[16];
        snprintf(timeout, sizeof timeout, "%d", p->conf->pool_statement_timeout_ms);
        snprintf(decision, sizeof decision, "%d", p->conf->decision_max_steps);
        snprintf(batch, sizeof batch, "%d", p->conf->batch_max_workers);
        snprintf(tsteps, sizeof tsteps, "%d", p->conf->templates_max_steps);
        /* jit=off: our statements are short OLTP calls; a cost estimate inflated by bloat or stale
         * statistics must not make PostgreSQL spend 100× the query time compiling them. */
        const struct db_setting settings[] = {
            { "tasker.actor", p->actor },
            { "statement_timeout", timeout },
            { "jit", "off" },
            { "tasker.max_decision_steps", decision },
            { "tasker.max_batch_workers", batch },
            { "tasker.max_template_steps", tsteps },
        };
        struct db_conn_params cp = {
            .url = p->conf->database_url,
            .application_name = "tasker-orchestratord",
            .settings = settings,
            .nsettings = sizeof settings / sizeof settings[0],
            .settings_per_transaction = p->conf->database_transaction_pooling,
            .unnamed_statements = !p->conf->database_prepared_statements,
            .connect_timeout_ms = POOL_CONNECT_TIMEOUT_MS,
            .prepare = p->stmts,
            .nprepare = p->nstmts,
        };
        s->conn = db_conn_start(p->base, &cp, slot_on_event, s);
        if (s->conn) {
            s->state = SLOT_CONNECTING;
            s->timeout_ms = p->conf->pool_statement_timeout_ms;
            s->setting_timeout_ms = -1;
            s->cancel = false;
        }
        return;
    }
}

/* Send r itself on s. */
static bool slot_send_request(struct db_slot *s, struct db_request *r)
{
    const struct db_pool *p = s->pool;
    return r->sql ? db_conn_query(s->conn, false, r->sql, 0, NULL, slot_on_result, s)
                  : db_conn_query(s->conn, true, p->stmts[r->stmt].name, r->nparams, (const char *const *)r->params,
                                  slot_on_result, s);
}

/* The SET statement_timeout before s->req finished: now send the request. */
static void slot_on_set(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    (void)rows;
    struct db_slot *s = arg;
    if (!err) {
        s->timeout_ms = s->setting_timeout_ms;
        s->setting_timeout_ms = -1;
        if (!s->cancel && slot_send_request(s, s->req))
            return;
    }
    struct db_error e = { .connection_lost = true };
    if (err)
        e = *err;
    else
        snprintf(e.message, sizeof e.message, "%s", s->cancel ? "cancelled" : "cannot send the query");
    e.connection_lost = true; /* the session's timeout is unknown now: do not reuse it */
    slot_on_result(s, NULL, &e);
}

/* Start r on the idle s: its statement_timeout first if the session has another one. */
static bool slot_start(struct db_slot *s, struct db_request *r)
{
    int want = request_timeout_ms(s->pool, r);
    bool sent;
    if (s->pool->conf->database_transaction_pooling) {
        char v[16];
        snprintf(v, sizeof v, "%d", want);
        sent = db_conn_set(s->conn, "statement_timeout", v) && slot_send_request(s, r);
        if (sent)
            s->timeout_ms = want;
    } else if (s->timeout_ms != want) {
        char sql[64]; /* built from an int: no input reaches it */
        snprintf(sql, sizeof sql, "SET statement_timeout = %d", want);
        sent = db_conn_query(s->conn, false, sql, 0, NULL, slot_on_set, s);
        s->setting_timeout_ms = sent ? want : -1;
    } else {
        sent = slot_send_request(s, r);
    }
    if (sent) {
        s->state = SLOT_BUSY;
        s->req = r;
    }
    return sent;
}

/* An idle connection for r, preferring one whose session already has r's statement_timeout. */
static struct db_slot *pool_idle_slot(struct db_pool *p, const struct db_request *r)
{
    int want = request_timeout_ms(p, r);
    struct db_slot *any = NULL;
    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state != SLOT_IDLE)
            continue;
        if (s->timeout_ms == want)
            return s;
        if (!any)
            any = s;
    }
    return any;
}

/* Hand queued requests to idle connections — orchestration's first, API ones only within their
 * share — and open connections when demand exceeds supply. */
static void pool_dispatch(struct db_pool *p)
{
    for (;;) {
        struct req_queue *q = p->orch.head ? &p->orch
                              : p->api.head && pool_busy_api(p) < pool_max_api(p) ? &p->api
                                                                                 : NULL;
        if (!q)
            break;
        struct db_request *r = q->head;
        struct db_slot *s = pool_idle_slot(p, r);
        if (!s)
            break;
        if (!slot_start(s, r)) {
            s->state = SLOT_BROKEN;
            continue;
        }
        queue_unlink(q, NULL, r);
    }
    /* Connections wanted: every waiting orchestration query, and API ones up to their share. */
    int api_room = pool_max_api(p) - pool_busy_api(p);
    int wanted = p->orch.n + (api_room <= 0 ? 0 : p->api.n < api_room ? p->api.n : api_room);
    long long now = mono_ms();
    if (wanted > pool_count(p, SLOT_CONNECTING) && pool_live(p) < p->nslots && pool_may_connect(p, now))
        pool_open_one(p);
}

static void slot_close(struct db_slot *s)
{
    db_conn_free(s->conn);
    s->conn = NULL;
    s->state = SLOT_FREE;
    s->cancel = false;
}

/* Fail the requests of q that were cancelled or waited past the acquire timeout. */
static void queue_expire(struct db_pool *p, struct req_queue *q, long long now)
{
    struct db_request *prev = NULL, *r = q->head;
    while (r) {
        struct db_request *next = r->next;
        if (r->cancelled || r->deadline_ms <= now) {
            queue_unlink(q, prev, r);
            if (r->cancelled) {
                request_fail(p, r, "cancelled while waiting for a database connection");
            } else {
                p->st.acquire_timeouts++;
                request_fail(p, r, "timed out waiting for a database connection");
            }
        } else {
            prev = r;
        }
        r = next;
    }
}

static void pool_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_pool *p = arg;
    long long now = mono_ms();

    /* Cancelled queries: their callback gets an error now, their connection is closed below (the
     * server was asked to cancel the statement; closing also ends it should that request fail). */
    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state == SLOT_BUSY && s->cancel) {
            db_conn_fail_pending(s->conn, "cancelled: the caller gave up on it");
            s->state = SLOT_BROKEN;
        }
    }

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

    /* Queries that waited too long for a connection, or were cancelled meanwhile. */
    queue_expire(p, &p->orch, now);
    queue_expire(p, &p->api, now);

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
    snprintf(p->actor, sizeof p->actor, "%s", actor);
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
    if (p->breaker_until_ms && mono_ms() < p->breaker_until_ms)
        return NULL;
    struct db_request *r = calloc(1, sizeof *r);
    if (!r) {
        log_error("pool", "out of memory");
        return NULL;
    }
    r->cb = cb;
    r->arg = arg;
    r->deadline_ms = mono_ms() + p->conf->pool_acquire_timeout_secs * 1000LL;
    r->ticket = ++p->next_ticket;
    return r;
}

static void pool_enqueue(struct db_pool *p, struct db_request *r)
{
    queue_push(r->api ? &p->api : &p->orch, r);
    pool_dispatch(p);
}

static bool pool_query(struct db_pool *p, bool api, int stmt, const char *const *params, int nparams,
                       db_result_fn cb, void *arg, unsigned long long *ticket)
{
    if (stmt < 0 || (size_t)stmt >= p->nstmts || nparams > DB_MAX_PARAMS)
        return false;
    struct db_request *r = pool_request(p, cb, arg);
    if (!r)
        return false;
    r->api = api;
    if (ticket)
        *ticket = r->ticket;
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

bool db_pool_query(struct db_pool *p, int stmt, const char *const *params, int nparams, db_result_fn cb, void *arg)
{
    return pool_query(p, false, stmt, params, nparams, cb, arg, NULL);
}

bool db_pool_api_query(struct db_pool *p, int stmt, const char *const *params, int nparams, db_result_fn cb,
                       void *arg, unsigned long long *ticket)
{
    return pool_query(p, true, stmt, params, nparams, cb, arg, ticket);
}

void db_pool_cancel(struct db_pool *p, unsigned long long ticket)
{
    struct req_queue *qs[] = { &p->orch, &p->api };
    for (size_t i = 0; i < 2; i++) {
        for (struct db_request *r = qs[i]->head; r; r = r->next) {
            if (r->ticket == ticket) {
                r->cancelled = true;
                event_active(p->tick, EV_TIMEOUT, 0); /* failed from the loop, not inside this call */
                return;
            }
        }
    }
    for (int i = 0; i < p->nslots; i++) {
        struct db_slot *s = &p->slots[i];
        if (s->state != SLOT_BUSY || !s->req || s->req->ticket != ticket || s->cancel)
            continue;
        s->cancel = true;
        if (db_conn_cancel(s->conn))
            log_info("pool", "asked the server to cancel a query whose caller gave up; closing its connection");
        else
            log_warn("pool", "could not ask the server to cancel a query; closing its connection");
        event_active(p->tick, EV_TIMEOUT, 0);
        return;
    }
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
    out->queued = p->orch.n + p->api.n;
    out->queued_api = p->api.n;
    out->busy_api = pool_busy_api(p);
    out->max_api = pool_max_api(p);
    out->breaker_open = p->breaker_until_ms != 0;
    out->last_error_age_ms = p->last_error_ms ? mono_ms() - p->last_error_ms : -1;
}

void db_pool_public_reason(const char *msg, char *out, size_t len)
{
    if (len == 0)
        return;
    out[0] = '\0';
    if (!msg)
        msg = "";
    /* The last non-empty line: libpq puts one line per host tried; the last is the latest. */
    const char *start = msg, *end = msg + strlen(msg);
    while (end > msg && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    for (const char *c = msg; c < end; c++)
        if (*c == '\n')
            start = c + 1;
    /* After the last "failed: " (libpq's preamble names the host and port). */
    for (const char *c = start; c + 8 <= end; c++)
        if (strncmp(c, "failed: ", 8) == 0)
            start = c + 8;
    static const char *const severities[] = { "FATAL:", "ERROR:", "PANIC:" };
    for (size_t i = 0; i < sizeof severities / sizeof severities[0]; i++)
        if ((size_t)(end - start) >= strlen(severities[i]) && strncmp(start, severities[i], strlen(severities[i])) == 0)
            start += strlen(severities[i]);
    while (start < end && *start == ' ')
        start++;
    size_t o = 0;
    for (const char *c = start; c < end && o + 1 < len; c++) {
        if (*c == '"') {
            const char *close = memchr(c + 1, '"', (size_t)(end - c - 1));
            if (close && o + 5 < len) {
                memcpy(out + o, "\"...\"", 5);
                o += 5;
                c = close;
                continue;
            }
        }
        out[o++] = (*c == '\n' || *c == '\t' || *c == '\r') ? ' ' : *c;
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, len, "unknown error");
}

unsigned long long db_pool_progress(const struct db_pool *p)
{
    return p->progress;
}
