/* db_conn.h — one asynchronous libpq connection driven by the event loop (connect, query, notify). */
#ifndef TASKER_DB_CONN_H
#define TASKER_DB_CONN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct db_conn;

/* A result as callers see it: a borrowed view, valid only during the callback that receives it.
 * The PGresult behind it never leaves db_conn.c / db_pool.c (DESIGN §6). */
struct db_rows;

/* An error as callers see it. sqlstate is "" when the failure was not the server's (connection
 * lost, timeout, pool closing). */
struct db_error {
    char sqlstate[6];
    bool connection_lost;  /* the connection broke; the statement may or may not have committed */
    char message[512];
};

/* db_result_fn: exactly one call per accepted query. On success err is NULL and rows is the last
 * result (for a statement returning no rows, a view with 0 rows); on failure rows is NULL. */
typedef void (*db_result_fn)(void *arg, const struct db_rows *rows, const struct db_error *err);

enum db_conn_event {
    DB_CONN_EV_READY,   /* connected (and prepared, for pool connections): accepts queries */
    DB_CONN_EV_BROKEN,  /* connect failed or the connection died: the owner frees it */
    DB_CONN_EV_NOTIFY   /* a NOTIFY arrived (channel and payload passed) */
};

typedef void (*db_conn_event_fn)(void *arg, struct db_conn *c, enum db_conn_event ev,
                                 const char *channel, const char *payload);

/* A statement to prepare on every new connection: name, text, parameter count. */
struct db_statement {
    const char *name;
    const char *sql;
    int nparams;
};

/* A session setting (a GUC such as tasker.actor or statement_timeout) the connection's queries run
 * under. */
struct db_setting {
    const char *name;
    const char *value;
};

#define DB_MAX_SETTINGS 8

struct db_conn_params {
    const char *url;               /* libpq URL or key=value string */
    const char *application_name;  /* shown in pg_stat_activity */
    const struct db_setting *settings; /* copied; at most DB_MAX_SETTINGS */
    size_t nsettings;
    /* false: settings go in the startup packet's "options" (-c name=value), once per session.
     * true (transaction pooling: a PgBouncer that refuses "options" and hands the server connection
     * to another client after every transaction): nothing at connect; each parameterized query is
     * pipelined after a set_config(name, value, true) of every setting, in one implicit
     * transaction, so the settings hold for exactly that statement (no extra round trip). */
    bool settings_per_transaction;
    /* false: each statement of the list is prepared by name at connect and executed by name.
     * true: each is parsed unnamed at connect (the schema check still happens), and every execution
     * sends its text unnamed (PgBouncer before 1.21 in transaction mode knows no names). */
    bool unnamed_statements;
    int connect_timeout_ms;        /* give up connecting after this long */
    const struct db_statement *prepare; /* prepared after connect, in order; NULL = none */
    size_t nprepare;
};

/* db_conn_start: begin connecting; events arrive through on_event. Returns NULL only if libpq could
 * not even allocate (logged). The connection must be freed with db_conn_free. */
struct db_conn *db_conn_start(struct event_base *base, const struct db_conn_params *params,
                              db_conn_event_fn on_event, void *arg) __attribute__((warn_unused_result));

/* db_conn_query: send a statement of the prepare list (by name; with unnamed_statements, its text)
 * or, with prepared=false, a plain SQL text (with nparams = 0, as a simple query: one statement,
 * outside any transaction block — VACUUM; such a query never carries per-transaction settings).
 * Only on a READY, idle connection; false if it cannot be sent (the callback is then not called).
 * params are copied by libpq during the call. The callback always runs later, from the loop —
 * never from inside this call. */
bool db_conn_query(struct db_conn *c, bool prepared, const char *name_or_sql, int nparams,
                   const char *const *params, db_result_fn cb, void *arg) __attribute__((warn_unused_result));

/* db_conn_set: change the value of setting `name` (one of those given at start) for the following
 * queries. Only with settings_per_transaction (in the other mode the caller sends SET itself):
 * false otherwise, or for an unknown name, or out of memory. */
bool db_conn_set(struct db_conn *c, const char *name, const char *value);

/* db_conn_busy: a query is in flight. */
bool db_conn_busy(const struct db_conn *c);

/* db_conn_fail_pending: if a query is in flight, complete it with a connection_lost error. Used
 * before freeing a connection so every accepted query gets its one callback. */
void db_conn_fail_pending(struct db_conn *c, const char *why);

/* db_conn_cancel: ask the server to cancel the query in flight (PQcancel, from a short-lived
 * thread: see db_conn.c). Returns at once; whether and when the server cancels is not reported —
 * the query's own result (57014, or its normal end) still arrives through its callback, unless the
 * owner fails and frees the connection first. false if no query is in flight or no thread could be
 * started. */
bool db_conn_cancel(struct db_conn *c);

/* db_conn_free: close and release (NULL-safe). Must not be called from inside this connection's
 * own result callback for a query still being finished; call it from a later event instead. */
void db_conn_free(struct db_conn *c);

/* db_conn_last_error: the libpq error message of a broken connection (trimmed). */
const char *db_conn_last_error(const struct db_conn *c);

/* db_conn_prepare_failed: the connection broke because a statement of the prepare list did not
 * prepare — the database schema does not match ours (a server error, not a network one). */
bool db_conn_prepare_failed(const struct db_conn *c);

/* Views over a result (see struct db_rows). col by name: -1 if absent. */
int db_rows_count(const struct db_rows *r);
int db_rows_col(const struct db_rows *r, const char *name);
bool db_rows_isnull(const struct db_rows *r, int row, int col);
const char *db_rows_text(const struct db_rows *r, int row, int col);  /* "" when NULL */
long long db_rows_int(const struct db_rows *r, int row, int col);     /* 0 when NULL */

#endif
