/* db_pool.h — the connection pool: min/max, acquire timeout, idle/lifetime recycling, jittered
 * reconnect, circuit breaker, connections reserved for orchestration; every query a prepared
 * statement, every call asynchronous. */
#ifndef TASKER_DB_POOL_H
#define TASKER_DB_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "db_conn.h"

struct event_base;
struct conf;
struct db_pool;

#define DB_MAX_PARAMS 16

enum db_pool_event {
    DB_POOL_EV_UP,            /* a connection is ready (sent on the first one after a period without) */
    DB_POOL_EV_DOWN,          /* no connection left and connecting fails: the database is unreachable */
    DB_POOL_EV_SCHEMA_MISMATCH /* a statement does not prepare: the database schema is not ours */
};

typedef void (*db_pool_event_fn)(void *arg, enum db_pool_event ev, const char *detail);

/* Counters and gauges, for STATUS=, /health and /metrics. */
struct db_pool_stats {
    int total;            /* connections open or opening */
    int idle;
    int busy;
    int connecting;
    int queued;           /* queries waiting for a connection (API ones included) */
    int queued_api;       /* of which API queries (db_pool_api_query) */
    int busy_api;         /* connections running an API query */
    int max;
    int max_api;          /* most connections API queries may hold: max - reserved_for_orchestration, >= 1 */
    bool breaker_open;
    char cannot_grow[256]; /* why the last attempt to open one more connection failed while others
                              work; "" = no such failure since the last successful connect */
    long long queries_ok;
    long long queries_failed;
    long long acquire_timeouts;
    long long connects_ok;
    long long connects_failed;
    char last_error[512];
    long long last_error_age_ms; /* how long ago last_error happened; -1 = never */
};

/* db_pool_new: a pool for statements[0..n) (each prepared on every connection). Opens nothing yet.
 * The statements and conf must outlive the pool (conf is re-read on db_pool_reconfigure). */
struct db_pool *db_pool_new(struct event_base *base, const struct conf *conf, const char *actor,
                            const struct db_statement *statements, size_t n, db_pool_event_fn on_event,
                            void *arg) __attribute__((warn_unused_result));

/* db_pool_start: open the minimum number of connections and arm the maintenance timer. */
void db_pool_start(struct db_pool *p);

/* db_pool_query: run statement `stmt` (index into the table) with text parameters (NULL = SQL
 * NULL; copied). Returns false — and the callback will not be called — when the pool is stopping
 * or its circuit breaker is open; otherwise cb is called exactly once, from the loop, with the
 * result or an error (SQL error, connection lost, acquire timeout). */
bool db_pool_query(struct db_pool *p, int stmt, const char *const *params, int nparams, db_result_fn cb,
                   void *arg) __attribute__((warn_unused_result));

/* db_pool_api_query: like db_pool_query, for a query an HTTP request waits for. At most
 * max_api of them run at once (the rest of the pool is kept for orchestration; beyond it they wait
 * in the queue), each under web.statement_timeout_ms. *ticket names it for db_pool_cancel. */
bool db_pool_api_query(struct db_pool *p, int stmt, const char *const *params, int nparams, db_result_fn cb,
                       void *arg, unsigned long long *ticket) __attribute__((warn_unused_result));

/* db_pool_cancel: the caller no longer wants the answer of query `ticket`. Still waiting for a
 * connection: it is dropped. Running: the server is asked to cancel it and its connection is
 * closed (a late cancel request must never hit the next query on that session). Either way its
 * callback still runs once — later, from the loop, never inside this call — with an error. A
 * ticket that has finished is ignored. */
void db_pool_cancel(struct db_pool *p, unsigned long long ticket);

/* db_pool_query_sql: like db_pool_query, for one parameter-free statement that is not in the
 * prepared list, sent as a simple query (so it runs outside any transaction block: VACUUM). The text
 * is copied. It must be built only from trusted pieces: identifiers escaped or validated, never
 * from input. */
bool db_pool_query_sql(struct db_pool *p, const char *sql, db_result_fn cb, void *arg)
    __attribute__((warn_unused_result));

/* db_pool_stop: accept no more queries, fail the queued ones, and call drained() (once, from the
 * loop) when no query is in flight any more. */
void db_pool_stop(struct db_pool *p, void (*drained)(void *arg), void *arg);

/* db_pool_free: close every connection and release the pool (NULL-safe). Queries still in flight
 * get a connection_lost error callback first. */
void db_pool_free(struct db_pool *p);

void db_pool_stats(const struct db_pool *p, struct db_pool_stats *out);

/* db_pool_public_reason: a connection error as unauthenticated readers (/health) may see it: the
 * server's or libpq's message without the "connection to server at <host>, port <n> failed:"
 * preamble, severity or line breaks, and with every quoted name (host, role, database, socket)
 * replaced by "...". Always NUL-terminates out (len > 0). */
void db_pool_public_reason(const char *msg, char *out, size_t len);

/* db_pool_progress: a counter that moves whenever a query completes or the pool is idle with
 * nothing queued — the watchdog pings only while it moves. */
unsigned long long db_pool_progress(const struct db_pool *p);

#endif
