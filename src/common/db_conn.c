/* db_conn.c — one asynchronous libpq connection driven by the event loop (connect, query, notify).
 *
 * Everything here is non-blocking (DESIGN §6): PQconnectStartParams/PQconnectPoll to connect,
 * PQsendPrepare/PQsendQueryPrepared (PQsendQuery for parameter-free text) + PQflush to send,
 * PQconsumeInput/PQisBusy/PQgetResult to read. One libevent event per connection, re-armed after
 * every step with exactly what libpq waits for. An idle connection keeps EV_READ armed so
 * notifications and server-side disconnects are seen at once.
 *
 * Transaction pooling (PgBouncer): with settings_per_transaction a query goes out in libpq's
 * pipeline mode as [set_config of every setting] [the statement] Sync, so both run in one implicit
 * transaction on whatever server connection PgBouncer picks for it; with unnamed_statements every
 * execution carries its text (see db_conn.h).
 */
#include "db_conn.h"

#include "log.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum db_conn_state {
    DBC_CONNECTING, /* PQconnectPoll in progress */
    DBC_PREPARING,  /* preparing the statement list, one PQsendPrepare at a time */
    DBC_IDLE,       /* ready; EV_READ armed for notifications and disconnects */
    DBC_BUSY,       /* one query in flight */
    DBC_BROKEN      /* reported to the owner, waiting for db_conn_free */
};

struct db_conn {
    struct event_base *base;
    PGconn *pg;
    struct event *ev;      /* the socket event; re-assigned when the socket changes */
    int fd;
    enum db_conn_state state;
    db_conn_event_fn on_event;
    void *arg;
    const struct db_statement *prepare;
    size_t nprepare;
    size_t next_prepare;   /* index of the statement being prepared */
    struct timespec deadline; /* connect (and prepare) must finish by then */
    /* The query in flight. */
    db_result_fn cb;
    void *cb_arg;
    PGresult *result;      /* last result of the query, or its first error */
    char error[512];       /* why the connection broke */
    bool start_failed;     /* libpq refused at PQconnectStartParams; reported from the loop */
    bool prepare_failed;   /* broke because a statement did not prepare (schema mismatch) */
    /* Settings (db_conn_params.settings, copied) and how statements travel. */
    char *set_name[DB_MAX_SETTINGS];
    char *set_value[DB_MAX_SETTINGS];
    size_t nsettings;
    bool per_tx;
    bool unnamed;
    /* Where a pipelined query (per_tx) is: reading the settings' result, the statement's, or
     * waiting for the Sync that ends both. */
    enum { PIPE_OFF, PIPE_SETTINGS, PIPE_QUERY, PIPE_SYNC } pipe;
};

/* The settings of one transaction: set_config(…, is_local => true) lasts until its end (the Sync
 * after the statement). One statement text for any list, so the server's plan is the same. */
#define DBC_SETTINGS_SQL "SELECT count(set_config(s.name, s.value, true)) FROM unnest($1::text[], $2::text[]) AS s(name, value)"

struct db_rows {
    const PGresult *res;
};

static void dbc_on_io(evutil_socket_t fd, short what, void *arg);

/* Server notices (NOTICE, WARNING…) go to our log rather than to libpq's default, raw on stderr.
 * A WARNING is logged as a warning, except "lock not available" (55P03): that is VACUUM
 * (SKIP_LOCKED) skipping a table another daemon or autovacuum is vacuuming, as vacuum.c expects. */
static void dbc_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (sev && strcmp(sev, "WARNING") == 0 && !(state && strcmp(state, "55P03") == 0))
        log_warn("db", "server WARNING: %s", msg ? msg : "");
    else
        log_debug("db", "server %s: %s", sev ? sev : "notice", msg ? msg : "");
}

static const char *dbc_state_str(enum db_conn_state s)
{
    switch (s) {
    case DBC_CONNECTING: return "connecting";
    case DBC_PREPARING: return "preparing";
    case DBC_IDLE: return "idle";
    case DBC_BUSY: return "busy";
    case DBC_BROKEN: return "broken";
    }
    return "?";
}

static void dbc_set_state(struct db_conn *c, enum db_conn_state s)
{
    log_debug("db", "connection %p: %s -> %s", (void *)c, dbc_state_str(c->state), dbc_state_str(s));
    c->state = s;
}

/* Copy a libpq message without its trailing newline. */
static void dbc_copy_msg(char *dst, size_t len, const char *msg)
{
    snprintf(dst, len, "%s", msg && *msg ? msg : "unknown error");
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
}

/* Arm the socket event for `what`; a deadline applies while connecting or preparing. */
static void dbc_arm(struct db_conn *c, short what)
{
    int fd = PQsocket(c->pg);
    event_del(c->ev);
    if (fd != c->fd || event_get_events(c->ev) != what) {
        c->fd = fd;
        event_assign(c->ev, c->base, fd, what, dbc_on_io, c);
    }
    if (c->state == DBC_CONNECTING || c->state == DBC_PREPARING) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (c->deadline.tv_sec - now.tv_sec) * 1000LL + (c->deadline.tv_nsec - now.tv_nsec) / 1000000;
        if (ms < 0)
            ms = 0;
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
        event_add(c->ev, &tv);
    } else {
        event_add(c->ev, NULL);
    }
}

/* Complete the query in flight (if any) with an error and forget it. */
static void dbc_fail_query(struct db_conn *c, bool connection_lost, const char *msg)
{
    if (!c->cb)
        return;
    db_result_fn cb = c->cb;
    void *arg = c->cb_arg;
    c->cb = NULL;
    c->cb_arg = NULL;
    if (c->result) {
        PQclear(c->result);
        c->result = NULL;
    }
    struct db_error err = { .connection_lost = connection_lost };
    dbc_copy_msg(err.message, sizeof err.message, msg);
    cb(arg, NULL, &err);
}

/* The connection is unusable: fail the query in flight, tell the owner. The owner may free c
 * inside on_event, so nothing touches c afterwards. */
static void dbc_broken(struct db_conn *c, const char *why)
{
    if (c->state == DBC_BROKEN)
        return;
    dbc_copy_msg(c->error, sizeof c->error, why);
    event_del(c->ev);
    dbc_set_state(c, DBC_BROKEN);
    dbc_fail_query(c, true, c->error);
    c->on_event(c->arg, c, DB_CONN_EV_BROKEN, NULL, NULL);
}

/* Push pending output; then wait for the reply (and for writability while output remains). */
static void dbc_flush(struct db_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    dbc_arm(c, r == 1 ? (EV_READ | EV_WRITE) : EV_READ);
}

static void dbc_prepare_next(struct db_conn *c)
{
    if (c->next_prepare >= c->nprepare) {
        dbc_set_state(c, DBC_IDLE);
        dbc_arm(c, EV_READ);
        c->on_event(c->arg, c, DB_CONN_EV_READY, NULL, NULL);
        return;
    }
    const struct db_statement *s = &c->prepare[c->next_prepare];
    /* Unnamed, it is only parsed — the schema check — and replaced by the next one. */
    if (!PQsendPrepare(c->pg, c->unnamed ? "" : s->name, s->sql, s->nparams, NULL)) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    dbc_flush(c);
}

/* The connection just came up: non-blocking mode, then prepare the statement list. */
static void dbc_connected(struct db_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    c->next_prepare = 0;
    dbc_set_state(c, DBC_PREPARING);
    dbc_prepare_next(c);
}

static void dbc_connect_step(struct db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        dbc_arm(c, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        dbc_arm(c, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        dbc_connected(c);
        break;
    case PGRES_POLLING_FAILED:
    default:
        dbc_broken(c, PQerrorMessage(c->pg));
        break;
    }
}

/* A prepare finished: an error here means our SQL does not match the database. */
static void dbc_prepare_done(struct db_conn *c, PGresult *res)
{
    const struct db_statement *s = &c->prepare[c->next_prepare];
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot prepare statement %s (%s): %s", s->name,
                 PQresultErrorField(res, PG_DIAG_SQLSTATE) ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : "?",
                 PQresultErrorMessage(res));
        /* Only errors saying the SQL does not fit the schema (class 42: undefined function, table,
         * column, type mismatch…; 0A000 feature not supported) mean "not our schema". A prepare
         * cancelled by statement_timeout, a lock wait or an operator is a transient failure: the
         * connection is dropped and the pool reconnects with backoff. */
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        c->prepare_failed = state && (strncmp(state, "42", 2) == 0 || strcmp(state, "0A000") == 0);
        /* 42P05, the name already exists on a session we just opened: the server session is not
         * ours alone — a PgBouncer in transaction mode handed us one another client prepared on.
         * Not a schema mismatch; say what fixes it. */
        if (state && strcmp(state, "42P05") == 0) {
            c->prepare_failed = false;
            size_t n = strlen(msg);
            while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
            snprintf(msg + n, sizeof msg - n, " — this server session is shared with other clients (PgBouncer in "
                     "transaction mode?): turn prepared statements off (database.prepared_statements = false, "
                     "tasker-worker --no-prepared-statements)");
        }
        PQclear(res);
        dbc_broken(c, msg);
        return;
    }
    PQclear(res);
    c->next_prepare++;
    dbc_prepare_next(c);
}

/* The query in flight finished: hand its result to the caller. The caller may free c (via its
 * owner) inside the callback, so c is not touched afterwards. */
static void dbc_query_done(struct db_conn *c)
{
    db_result_fn cb = c->cb;
    void *arg = c->cb_arg;
    PGresult *res = c->result;
    c->cb = NULL;
    c->cb_arg = NULL;
    c->result = NULL;
    dbc_set_state(c, DBC_IDLE);
    dbc_arm(c, EV_READ);

    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        struct db_rows rows = { .res = res };
        cb(arg, &rows, NULL);
    } else {
        struct db_error err = { .connection_lost = false };
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        snprintf(err.sqlstate, sizeof err.sqlstate, "%s", state ? state : "");
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        dbc_copy_msg(err.message, sizeof err.message, primary ? primary : "no result");
        cb(arg, NULL, &err);
    }
    PQclear(res);
}

/* Keep res as the query's outcome: the first error, else the last result. */
static void dbc_keep_result(struct db_conn *c, PGresult *res)
{
    if (c->result && PQresultStatus(c->result) != PGRES_TUPLES_OK && PQresultStatus(c->result) != PGRES_COMMAND_OK) {
        PQclear(res);
    } else {
        if (c->result)
            PQclear(c->result);
        c->result = res;
    }
}

/* One result of a pipelined query (res NULL ends one statement's results). True when the query
 * is over (reported, or the connection broke): the caller stops reading. */
static bool dbc_pipe_result(struct db_conn *c, PGresult *res)
{
    if (!res) {
        if (c->pipe == PIPE_SETTINGS)
            c->pipe = PIPE_QUERY;
        else if (c->pipe == PIPE_QUERY)
            c->pipe = PIPE_SYNC;
        return false;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        c->pipe = PIPE_OFF;
        if (!PQexitPipelineMode(c->pg)) {
            dbc_broken(c, PQerrorMessage(c->pg));
            return true;
        }
        dbc_query_done(c);
        return true;
    }
    /* The settings' own row is not the caller's; their error is (the statement is then aborted). */
    if (c->pipe == PIPE_SETTINGS && st == PGRES_TUPLES_OK)
        PQclear(res);
    else
        dbc_keep_result(c, res);
    return false;
}

/* Read what arrived: notifications, then results of the query or prepare in flight. */
static void dbc_read(struct db_conn *c)
{
    if (!PQconsumeInput(c->pg)) {
        dbc_broken(c, PQerrorMessage(c->pg));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        c->on_event(c->arg, c, DB_CONN_EV_NOTIFY, n->relname, n->extra);
        PQfreemem(n);
    }
    if (c->state != DBC_BUSY && c->state != DBC_PREPARING) {
        dbc_arm(c, EV_READ);
        return;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (c->pipe != PIPE_OFF && dbc_pipe_result(c, res))
            return;
        if (c->pipe != PIPE_OFF)
            continue;
        if (res == NULL) {
            if (c->state == DBC_PREPARING) {
                PGresult *done = c->result; /* ownership moves to dbc_prepare_done */
                c->result = NULL;
                dbc_prepare_done(c, done);
            } else {
                dbc_query_done(c);
            }
            return;
        }
        if (c->state == DBC_PREPARING) {
            if (c->result)
                PQclear(c->result);
            c->result = res;
            continue;
        }
        dbc_keep_result(c, res);
    }
    dbc_arm(c, EV_READ);
}

static void dbc_on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct db_conn *c = arg;
    if (what & EV_TIMEOUT) {
        if (c->start_failed) {
            char why[sizeof c->error];
            memcpy(why, c->error, sizeof why);
            dbc_broken(c, why);
        } else {
            dbc_broken(c, c->state == DBC_CONNECTING ? "timed out connecting" : "timed out preparing statements");
        }
        return;
    }
    switch (c->state) {
    case DBC_CONNECTING:
        dbc_connect_step(c);
        break;
    case DBC_PREPARING:
    case DBC_BUSY:
        if (what & EV_READ) {
            dbc_read(c);
            if (c->state != DBC_BUSY && c->state != DBC_PREPARING)
                return;
        }
        /* Output still pending (PQflush returned 1 earlier): keep pushing. */
        if (PQisnonblocking(c->pg) && (what & EV_WRITE))
            dbc_flush(c);
        break;
    case DBC_IDLE:
        dbc_read(c);
        break;
    case DBC_BROKEN:
        break;
    }
}

/* The settings as libpq's startup "options": "-c name=value …", spaces and backslashes escaped
 * with a backslash as that syntax wants. False if they do not fit. */
static bool dbc_options(const struct db_conn *c, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < c->nsettings; i++) {
        int n = snprintf(out + o, len - o, "%s-c %s=", i ? " " : "", c->set_name[i]);
        if (n < 0 || (size_t)n >= len - o)
            return false;
        o += (size_t)n;
        for (const char *v = c->set_value[i]; *v; v++) {
            if (o + 3 >= len)
                return false;
            if (*v == ' ' || *v == '\\')
                out[o++] = '\\';
            out[o++] = *v;
        }
        out[o] = '\0';
    }
    return true;
}

/* A text[] literal of strs[0..n): {"a","b"}, with " and \ escaped. malloc'd; NULL out of memory. */
static char *dbc_array_literal(char *const *strs, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(strs[i]) + 3;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        *o++ = '"';
        for (const char *v = strs[i]; *v; v++) {
            if (*v == '"' || *v == '\\')
                *o++ = '\\';
            *o++ = *v;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* The statement of the prepare list named name; NULL if none. */
static const struct db_statement *dbc_statement(const struct db_conn *c, const char *name)
{
    for (size_t i = 0; i < c->nprepare; i++)
        if (strcmp(c->prepare[i].name, name) == 0)
            return &c->prepare[i];
    return NULL;
}

/* Send the statement (by name, or its text when unnamed, or a plain text); no Sync in pipeline
 * mode. */
static int dbc_send_statement(struct db_conn *c, bool prepared, const char *name_or_sql, int nparams,
                              const char *const *params)
{
    if (prepared && c->unnamed) {
        const struct db_statement *s = dbc_statement(c, name_or_sql);
        if (!s) {
            log_warn("db", "no statement named %s", name_or_sql);
            return 0;
        }
        return PQsendQueryParams(c->pg, s->sql, nparams, NULL, params, NULL, NULL, 0);
    }
    /* Without parameters, plain text goes as a simple query: the one protocol message in which a
     * statement such as VACUUM, which refuses to run inside a transaction block, always works. */
    return prepared      ? PQsendQueryPrepared(c->pg, name_or_sql, nparams, params, NULL, NULL, 0)
           : nparams > 0 ? PQsendQueryParams(c->pg, name_or_sql, nparams, NULL, params, NULL, NULL, 0)
                         : PQsendQuery(c->pg, name_or_sql);
}

/* Per-transaction settings: pipeline mode, the set_config statement, the statement, Sync. */
static int dbc_send_pipelined(struct db_conn *c, bool prepared, const char *name_or_sql, int nparams,
                              const char *const *params)
{
    char *names = dbc_array_literal(c->set_name, c->nsettings);
    char *values = dbc_array_literal(c->set_value, c->nsettings);
    const char *sp[2] = { names, values };
    int ok = names && values && PQenterPipelineMode(c->pg) &&
             PQsendQueryParams(c->pg, DBC_SETTINGS_SQL, 2, NULL, sp, NULL, NULL, 0) &&
             dbc_send_statement(c, prepared, name_or_sql, nparams, params) && PQpipelineSync(c->pg);
    free(names);
    free(values);
    if (!ok) {
        /* Nothing reached the server unless PQpipelineSync ran (it is last): it is safe to leave. */
        (void)PQexitPipelineMode(c->pg);
        return 0;
    }
    c->pipe = PIPE_SETTINGS;
    return 1;
}

struct db_conn *db_conn_start(struct event_base *base, const struct db_conn_params *p,
                              db_conn_event_fn on_event, void *arg)
{
    struct db_conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("db", "out of memory");
        return NULL;
    }
    c->base = base;
    c->on_event = on_event;
    c->arg = arg;
    c->prepare = p->prepare;
    c->nprepare = p->nprepare;
    c->per_tx = p->settings_per_transaction;
    c->unnamed = p->unnamed_statements;
    c->fd = -1;
    c->ev = event_new(base, -1, 0, dbc_on_io, c);
    clock_gettime(CLOCK_MONOTONIC, &c->deadline);
    c->deadline.tv_sec += p->connect_timeout_ms / 1000;
    c->deadline.tv_nsec += (long)(p->connect_timeout_ms % 1000) * 1000000L;
    if (c->deadline.tv_nsec >= 1000000000L) {
        c->deadline.tv_sec++;
        c->deadline.tv_nsec -= 1000000000L;
    }

    bool oom = p->nsettings > DB_MAX_SETTINGS;
    for (size_t i = 0; !oom && i < p->nsettings; i++) {
        c->set_name[i] = strdup(p->settings[i].name);
        c->set_value[i] = strdup(p->settings[i].value);
        c->nsettings = i + 1;
        oom = !c->set_name[i] || !c->set_value[i];
    }
    char options[1024];
    if (!oom && !c->per_tx)
        oom = !dbc_options(c, options, sizeof options);

    /* The URL comes first and is expanded; our keywords after it take precedence. */
    const char *keys[5] = { "dbname", "application_name", NULL, NULL, NULL };
    const char *vals[5] = { p->url, p->application_name ? p->application_name : "tasker-orchestratord", NULL, NULL, NULL };
    int k = 2;
    if (!c->per_tx && c->nsettings > 0) {
        keys[k] = "options";
        vals[k++] = options;
    }
    c->pg = oom ? NULL : PQconnectStartParams(keys, vals, 1);
    if (!c->ev || !c->pg) {
        log_error("db", "out of memory starting a connection");
        db_conn_free(c);
        return NULL;
    }
    c->state = DBC_CONNECTING;
    PQsetNoticeReceiver(c->pg, dbc_notice, c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        /* Defer the report so the owner sees BROKEN from the loop, never from inside this call. */
        dbc_copy_msg(c->error, sizeof c->error, PQerrorMessage(c->pg));
        c->start_failed = true;
        event_assign(c->ev, base, -1, 0, dbc_on_io, c);
        struct timeval zero = { 0, 0 };
        event_add(c->ev, &zero);
        return c;
    }
    dbc_arm(c, EV_WRITE); /* libpq: behave as if PQconnectPoll had returned WRITING */
    return c;
}

bool db_conn_query(struct db_conn *c, bool prepared, const char *name_or_sql, int nparams,
                   const char *const *params, db_result_fn cb, void *arg)
{
    if (c->state != DBC_IDLE)
        return false;
    int ok = c->per_tx && c->nsettings > 0 && (prepared || nparams > 0)
                 ? dbc_send_pipelined(c, prepared, name_or_sql, nparams, params)
                 : dbc_send_statement(c, prepared, name_or_sql, nparams, params);
    if (!ok) {
        log_warn("db", "cannot send query: %s", PQerrorMessage(c->pg));
        return false;
    }
    c->cb = cb;
    c->cb_arg = arg;
    dbc_set_state(c, DBC_BUSY);
    /* Flush from the loop, not here: a connection that breaks while sending then reports from
     * the loop, so the callback never runs inside the caller's call (the socket is almost always
     * writable, so this costs one loop iteration). */
    dbc_arm(c, EV_READ | EV_WRITE);
    return true;
}

bool db_conn_set(struct db_conn *c, const char *name, const char *value)
{
    if (!c->per_tx)
        return false;
    for (size_t i = 0; i < c->nsettings; i++) {
        if (strcmp(c->set_name[i], name) != 0)
            continue;
        if (strcmp(c->set_value[i], value) == 0)
            return true;
        char *v = strdup(value);
        if (!v)
            return false;
        free(c->set_value[i]);
        c->set_value[i] = v;
        return true;
    }
    return false;
}

bool db_conn_busy(const struct db_conn *c)
{
    return c->state == DBC_BUSY;
}

void db_conn_fail_pending(struct db_conn *c, const char *why)
{
    dbc_fail_query(c, true, why);
}

/* The cancel thread: owns its PGcancel, touches nothing else, logs nothing (log.c is the loop's). */
static void *dbc_cancel_thread(void *arg)
{
    PGcancel *k = arg;
    char err[256];
    (void)PQcancel(k, err, sizeof err);
    PQfreeCancel(k);
    return NULL;
}

/* PQcancel opens a new connection to the server and waits for it to acknowledge, so it blocks —
 * up to a TCP connect timeout when the server is unreachable — and PostgreSQL 15's libpq has no
 * asynchronous form (PQcancelStart is 17+). Hence a detached thread per cancel: cancels are rare
 * (a request that outlived its deadline) and the thread shares nothing with the loop — PQgetCancel
 * copies what it needs, PQcancel is documented thread-safe. The other way, pg_cancel_backend()
 * over a second connection, would need a free pool connection (there is none when the pool is
 * saturated, which is when deadlines pass) or a fresh login; a cancel request needs neither a
 * connection slot nor authentication. */
bool db_conn_cancel(struct db_conn *c)
{
    if (c->state != DBC_BUSY)
        return false;
    PGcancel *k = PQgetCancel(c->pg);
    if (!k)
        return false;
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Signals stay with the loop's thread: the new one starts with all of them blocked. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&t, &attr, dbc_cancel_thread, k);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        log_warn("db", "cannot start a thread to cancel a query (error %d)", rc);
        PQfreeCancel(k);
        return false;
    }
    return true;
}

void db_conn_free(struct db_conn *c)
{
    if (!c)
        return;
    if (c->ev)
        event_free(c->ev);
    if (c->result)
        PQclear(c->result);
    if (c->pg)
        PQfinish(c->pg);
    for (size_t i = 0; i < c->nsettings; i++) {
        free(c->set_name[i]);
        free(c->set_value[i]);
    }
    free(c);
}

const char *db_conn_last_error(const struct db_conn *c)
{
    return c->error;
}

bool db_conn_prepare_failed(const struct db_conn *c)
{
    return c->prepare_failed;
}

int db_rows_count(const struct db_rows *r)
{
    return PQntuples(r->res);
}

int db_rows_col(const struct db_rows *r, const char *name)
{
    return PQfnumber(r->res, name);
}

bool db_rows_isnull(const struct db_rows *r, int row, int col)
{
    return col < 0 || PQgetisnull(r->res, row, col);
}

const char *db_rows_text(const struct db_rows *r, int row, int col)
{
    return col < 0 ? "" : PQgetvalue(r->res, row, col);
}

long long db_rows_int(const struct db_rows *r, int row, int col)
{
    return db_rows_isnull(r, row, col) ? 0 : strtoll(PQgetvalue(r->res, row, col), NULL, 10);
}
