/* http_api.c — the HTTP API (DESIGN §7): evhttp on the daemon's one loop, JSON via jansson.
 *
 * One request = one struct api_req. Handlers run in two halves: the first, in the evhttp callback,
 * routes, authenticates, parses and checks the input and sends at most one query to the pool; the
 * second, in the query's callback, turns the rows into the response. Nothing blocks. API queries
 * use the pool's API share (db_pool_api_query: never the connections reserved for orchestration)
 * and run under web.statement_timeout_ms. A request that is not answered within
 * web.request_timeout_ms gets 503 "timeout" and its query is cancelled (db_pool_cancel); the
 * query's callback then only frees the request. The documents clients receive are
 * built in SQL (sql/0260_tasker_api.sql) and passed through as text; only errors, health and
 * metrics are built here.
 *
 * Error mapping: TK400/TK404/TK409 (sql/0202) become 400/404/409 with the function's message
 * (written for humans); anything else from the database becomes 500 or 503 with a generic message
 * and the detail in the log. Bodies over web.max_body_bytes get a JSON 413 from us; evhttp's own
 * hard limit (four times that) refuses absurd ones before they are buffered (see docs/api.md).
 */
#include "http_api.h"
#include "http_api_req.h"

#include "db_pool.h"
#include "http_auth.h"
#include "http_conn.h"
#include "http_input.h"
#include "http_route.h"
#include "http_util.h"
#include "log.h"
#include "metrics.h"
#include "orchd.h"
#include "timer.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

long long api_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void api_req_free(struct api_req *r)
{
    struct http_api *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->deadline)
        event_free(r->deadline);
    json_decref(r->json);
    free(r->body);
    free(r);
}

/* api_done: free r once it is answered and no query of it is in flight. */
static void api_done(struct api_req *r)
{
    if (!r->req && r->pending == 0)
        api_req_free(r);
}

/* ---- replies ------------------------------------------------------------------------------------ */

static const char *method_name(unsigned m)
{
    switch (m) {
    case RM_GET: return "GET";
    case RM_POST: return "POST";
    case RM_PATCH: return "PATCH";
    case RM_DELETE: return "DELETE";
    case RM_PUT: return "PUT";
    case RM_HEAD: return "HEAD";
    case RM_OPTIONS: return "OPTIONS";
    default: return "?";
    }
}

/* api_send: answer r (once): status, body (may be NULL/empty), content type and extra headers
 * (name/value pairs, NULL-terminated). Counts it for /metrics and logs it. */
void api_send(struct api_req *r, int status, const char *body, size_t len, const char *ctype,
                     const char *const *headers)
{
    if (!r->req)
        return;
    struct http_api *h = r->h;
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    if (body && ctype)
        evhttp_add_header(out, "Content-Type", ctype);
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    for (const char *const *p = headers; p && p[0]; p += 2)
        evhttp_add_header(out, p[0], p[1]);
    if (h->stopping || h->o->stopping)
        evhttp_add_header(out, "Connection", "close");
    struct evbuffer *buf = evbuffer_new();
    if (buf && body && len > 0 && r->method != RM_HEAD)
        evbuffer_add(buf, body, len);
    evhttp_send_reply(r->req, status, NULL, buf);
    if (buf)
        evbuffer_free(buf);
    r->req = NULL;
    h->in_flight--;

    double secs = (double)(api_now_us() - r->start_us) / 1e6;
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4)
        cls = 4;
    h->requests[r->route >= 0 ? r->route : ROUTE_COUNT][cls]++;
    metrics_hist_observe(&h->duration, METRICS_HIST_SECONDS, secs);
    if (status >= 500)
        log_warn("http", "%s %s -> %d (%.1f ms)", method_name(r->method), route_label(r->route), status, secs * 1e3);
    else
        log_debug("http", "%s %s -> %d (%.1f ms)%s%s%s%s", method_name(r->method), route_label(r->route), status,
                  secs * 1e3, r->key_name[0] ? " key " : "", r->key_name, r->subject[0] ? " jwt " : "", r->subject);
}

void api_send_json_text(struct api_req *r, int status, const char *text, const char *const *headers)
{
    api_send(r, status, text, text ? strlen(text) : 0, "application/json; charset=utf-8", headers);
}

/* api_send_json: answer with a jansson value (taken over: decref'd here). */
void api_send_json(struct api_req *r, int status, json_t *v, const char *const *headers)
{
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
        api_send_json_text(r, 500, oom, NULL);
        return;
    }
    api_send_json_text(r, status, text, headers);
    free(text);
}

/* api_error_x: an error reply with extra keys in the error object (extra borrowed) and headers. */
void api_error_x(struct api_req *r, enum hutil_error e, const char *message, json_t *extra,
                        const char *const *headers)
{
    char *text = hutil_error_body(e, message, extra);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}";
        api_send_json_text(r, 500, oom, NULL);
        return;
    }
    api_send_json_text(r, hutil_error_status(e), text, headers);
    free(text);
}

void api_error(struct api_req *r, enum hutil_error e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *const retry[] = {"Retry-After", "1", NULL};
    api_error_x(r, e, msg, NULL, hutil_error_status(e) == 503 ? retry : NULL);
}

/* ---- queries ------------------------------------------------------------------------------------ */

/* api_db_error: the default mapping of a failed query to a reply. */
static void api_db_error(struct api_req *r, const struct db_error *err)
{
    const char *st = err->sqlstate;
    bool body_route = r->route == ROUTE_TASK_CREATE || r->route == ROUTE_TEMPLATE_REGISTER ||
                      r->route == ROUTE_STEP_RESOLVE || r->route == ROUTE_DLQ_UPDATE;
    if (strcmp(st, "TK400") == 0) {
        api_error(r, r->route == ROUTE_TEMPLATE_REGISTER ? HUTIL_ERR_INVALID_TEMPLATE : HUTIL_ERR_INVALID_REQUEST,
                  "%s", err->message);
    } else if (strcmp(st, "TK404") == 0) {
        api_error(r, r->route == ROUTE_TASK_CREATE ? HUTIL_ERR_TEMPLATE_NOT_FOUND : HUTIL_ERR_NOT_FOUND, "%s",
                  err->message);
    } else if (strcmp(st, "TK409") == 0) {
        api_error(r, r->route == ROUTE_TEMPLATE_REGISTER ? HUTIL_ERR_TEMPLATE_IN_USE : HUTIL_ERR_CONFLICT, "%s",
                  err->message);
    } else if (body_route && (strcmp(st, "22P02") == 0 || strcmp(st, "22P05") == 0 || strcmp(st, "22021") == 0)) {
        /* text jansson accepts but PostgreSQL's json does not store (\u0000, lone surrogates) */
        log_info("http", "%s: body refused by the database: SQLSTATE %s: %s", route_label(r->route), st, err->message);
        api_error(r, HUTIL_ERR_INVALID_JSON, "the body contains text the database cannot store (such as \\u0000 or "
                                             "an unpaired surrogate)");
    } else if (body_route && strncmp(st, "22", 2) == 0) {
        log_info("http", "%s: value refused by the database: SQLSTATE %s: %s", route_label(r->route), st, err->message);
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "a value in the request is malformed or out of range");
    } else if (!st[0] || strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 || strncmp(st, "57P", 3) == 0 ||
               strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "57014") == 0) {
        /* the pool's own failures (no SQLSTATE), lost connections, overload, shutdown, conflicts
         * worth retrying, statement timeouts */
        log_warn("http", "%s: database unavailable: %s%s%s", route_label(r->route), err->message,
                 st[0] ? " SQLSTATE " : "", st);
        api_error(r, HUTIL_ERR_UNAVAILABLE, "the database is not available right now; retry later");
    } else {
        log_error("http", "%s: unexpected database error SQLSTATE %s: %s", route_label(r->route), st, err->message);
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (the daemon's log has the detail)");
    }
}

static void api_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct api_req *r = arg;
    r->pending--;
    if (r->req) {
        if (err) {
            r->h->o->metrics.query_errors += err->sqlstate[0] == 'T' ? 0 : 1;
            if (r->on_error)
                r->on_error(r, err);
            else
                api_db_error(r, err);
        } else {
            r->on_rows(r, rows);
        }
        if (r->req) {
            log_error("http", "%s: handler did not answer", route_label(r->route));
            api_error(r, HUTIL_ERR_INTERNAL, "internal error (no response)");
        }
    }
    api_done(r);
}

static void api_on_deadline(evutil_socket_t fd, short what, void *arg);

/* api_query: run a statement for r; on_rows gets the rows, on_error (or the default mapping) a
 * failure. When the pool refuses the query (stopping, breaker open) r is answered 503 here.
 * Returns whether the query was sent. */
bool api_query(struct api_req *r, int stmt, const char *const *params, int n, api_rows_fn on_rows,
                      api_err_fn on_error)
{
    struct http_api *h = r->h;
    r->on_rows = on_rows;
    r->on_error = on_error;
    if (!r->deadline) {
        r->deadline = evtimer_new(h->o->base, api_on_deadline, r);
        if (r->deadline) {
            bool health = r->route == ROUTE_HEALTH || r->route == ROUTE_HEALTH_READY;
            int ms = h->o->conf.web_request_timeout_ms;
            timer_in_ms(r->deadline, health && ms > HTTP_HEALTH_TIMEOUT_MS ? HTTP_HEALTH_TIMEOUT_MS : ms);
        }
    }
    if (!db_pool_api_query(h->o->pool, stmt, params, n, api_on_result, r, &r->ticket)) {
        struct db_error e = {.sqlstate = "", .connection_lost = false};
        snprintf(e.message, sizeof e.message, "%s",
                 h->o->stopping ? "shutting down" : "database unavailable (circuit breaker open)");
        if (on_error) {
            on_error(r, &e);
        } else if (h->o->stopping) {
            api_error(r, HUTIL_ERR_SHUTTING_DOWN, "this daemon is shutting down; retry on another");
        } else {
            char secs[16];
            snprintf(secs, sizeof secs, "%d", h->o->conf.pool_breaker_open_secs);
            const char *const hdr[] = {"Retry-After", secs, NULL};
            api_error_x(r, HUTIL_ERR_UNAVAILABLE, "the database is unreachable (circuit breaker open); retry later",
                        NULL, hdr);
        }
        return false;
    }
    r->pending++;
    return true;
}

/* ---- input ---------------------------------------------------------------------------------------- */

/* input_refused: answer the error an input check found; false, for chaining. */
bool input_refused(struct api_req *r, const struct hinput_error *e)
{
    api_error(r, e->code, "%s", e->message);
    return false;
}

/* body_object: parse r's body as a JSON object into r->json (r->body keeps the text). optional:
 * an empty body is fine (r->json stays NULL). false after answering 400/413. */
bool body_object(struct api_req *r, bool optional)
{
    size_t n;
    if (!body_read(r, optional, &n))
        return false;
    if (!r->body)
        return true;
    struct hinput_error e;
    r->json = hinput_body_parse(r->body, n, &e);
    return r->json || input_refused(r, &e);
}

/* body_read: r's body into r->body (NUL-terminated, *len bytes), within web.max_body_bytes. */
bool body_read(struct api_req *r, bool optional, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = in ? evbuffer_get_length(in) : 0;
    *len = n;
    if (n == 0) {
        if (optional)
            return true;
        api_error(r, HUTIL_ERR_INVALID_JSON, "the request body is empty; a JSON object is expected");
        return false;
    }
    if (n > (size_t)r->h->o->conf.web_max_body_bytes) {
        api_error(r, HUTIL_ERR_PAYLOAD_TOO_LARGE, "the request body is larger than %d bytes (web.max_body_bytes)",
                  r->h->o->conf.web_max_body_bytes);
        return false;
    }
    r->body = malloc(n + 1);
    if (!r->body) {
        api_error(r, HUTIL_ERR_INTERNAL, "out of memory");
        return false;
    }
    evbuffer_copyout(in, r->body, n);
    r->body[n] = '\0';
    return true;
}

/* body_string: obj[key] as a string, or NULL. */
const char *body_string(struct api_req *r, const char *key)
{
    return json_string_value(json_object_get(r->json, key));
}

/* set_actor: who acts, for audit rows. The processor is who authenticated — "api:KEY-NAME",
 * "jwt:SUBJECT", or "api" when auth is off — never what the caller writes: the operator the caller
 * names in its `field` (cancelled_by, resolved_by, …) is kept next to it (metadata.claimed_operator).
 * false after answering 400 when that name holds control characters or does not fit. */
bool set_actor(struct api_req *r, const char *field, const char *by)
{
    if (r->subject[0])
        snprintf(r->actor, sizeof r->actor, "jwt:%s", r->subject);
    else if (r->key_name[0])
        snprintf(r->actor, sizeof r->actor, "api:%s", r->key_name);
    else
        snprintf(r->actor, sizeof r->actor, "api");
    r->claimed[0] = '\0';
    if (!by || !*by)
        return true;
    if (!hutil_text_safe(by)) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST,
                  "%s must not contain control characters (newline, tab, escape sequences), bidi overrides or "
                  "bytes that are not UTF-8",
                  field);
        return false;
    }
    if (strlen(by) >= sizeof r->claimed) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "%s is longer than %zu bytes", field, sizeof r->claimed - 1);
        return false;
    }
    snprintf(r->claimed, sizeof r->claimed, "%s", by);
    return true;
}

/* claimed_note: " for OPERATOR" when the caller named one, for log lines. */
const char *claimed_note(struct api_req *r, char *buf, size_t len)
{
    if (!r->claimed[0])
        return "";
    snprintf(buf, len, " for %s", r->claimed);
    return buf;
}

/* uuid_params: the first n path parameters are UUIDs; else answer 400 invalid_uuid. */
bool uuid_params(struct api_req *r, int n)
{
    static const char *const what[] = {"task", "step"};
    for (int i = 0; i < n && i < r->m.nparams; i++) {
        if (!hutil_uuid_valid(r->m.params[i])) {
            api_error(r, HUTIL_ERR_INVALID_UUID, "%s id \"%.64s\" is not a UUID",
                      r->route == ROUTE_DLQ_UPDATE ? "DLQ entry" : what[i < 2 ? i : 1], r->m.params[i]);
            return false;
        }
    }
    return true;
}


const char *query_get(struct query *q, const char *key)
{
    const char *v = q->parsed ? evhttp_find_header(&q->kv, key) : NULL;
    return v && *v ? v : NULL; /* an empty value is no filter */
}

void query_free(struct query *q)
{
    if (q->parsed)
        evhttp_clear_headers(&q->kv);
    q->parsed = false;
}

/* query_parse: parse r's query string, refusing parameters its route does not take. false after
 * answering 400 (nothing to free then); otherwise the caller calls query_free. */
bool query_parse(struct api_req *r, struct query *q)
{
    struct hinput_error e;
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    q->parsed = hinput_query_parse(qs, r->route, &q->kv, &e);
    return q->parsed || input_refused(r, &e);
}

/* query_page: page (>= 1, default 1) and per_page (1..100, default 25) as decimal text. */
bool query_page(struct api_req *r, struct query *q, char page[16], char per_page[16])
{
    struct hinput_error e;
    return hinput_query_page(&q->kv, page, per_page, &e) || input_refused(r, &e);
}

/* ---- /v1 handlers ------------------------------------------------------------------------------ */

/* found: rows hold one non-NULL document; else answer 404 naming what the route looked for. */
static bool found(struct api_req *r, const struct db_rows *rows, const char *what)
{
    if (db_rows_count(rows) == 1 && !db_rows_isnull(rows, 0, 0))
        return true;
    if (r->m.nparams >= 2 && (r->route == ROUTE_STEP_GET || r->route == ROUTE_STEP_AUDIT))
        api_error(r, HUTIL_ERR_NOT_FOUND, "unknown step %s in task %s", r->m.params[1], r->m.params[0]);
    else if (r->route == ROUTE_TEMPLATE_GET || r->route == ROUTE_TEMPLATE_GRAPH)
        api_error(r, HUTIL_ERR_NOT_FOUND, "unknown template %.64s/%.128s@%.64s", r->m.params[0], r->m.params[1],
                  r->m.params[2]);
    else
        api_error(r, HUTIL_ERR_NOT_FOUND, "unknown %s %s", what, r->m.nparams ? r->m.params[0] : "");
    return false;
}

/* reply_document: the one-column JSON document of rows; NULL means "no such thing" → 404. */
void reply_document(struct api_req *r, const struct db_rows *rows, const char *what)
{
    if (found(r, rows, what))
        api_send_json_text(r, 200, db_rows_text(rows, 0, 0), NULL);
}

void graph_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (!found(r, rows, "task"))
        return;
    const char *dot = db_rows_text(rows, 0, 0);
    api_send(r, 200, dot, strlen(dot), "text/vnd.graphviz; charset=utf-8", NULL);
}

void doc_on_rows(struct api_req *r, const struct db_rows *rows)
{
    const char *what = r->route == ROUTE_DLQ_UPDATE ? "DLQ entry" : "task";
    reply_document(r, rows, what);
}

static const api_handler_fn handlers[ROUTE_COUNT] = {
    [ROUTE_HEALTH] = handle_health,
    [ROUTE_HEALTH_LIVE] = handle_live,
    [ROUTE_HEALTH_READY] = handle_ready,
    [ROUTE_METRICS] = handle_metrics,
    [ROUTE_TASKS_LIST] = handle_tasks_list,
    [ROUTE_TASK_CREATE] = handle_task_create,
    [ROUTE_TASK_GET] = handle_task_get,
    [ROUTE_TASK_CANCEL] = handle_task_cancel,
    [ROUTE_TASK_RECOVER] = handle_task_recover,
    [ROUTE_STEPS_LIST] = handle_steps_list,
    [ROUTE_STEP_GET] = handle_step_get,
    [ROUTE_STEP_RESOLVE] = handle_step_resolve,
    [ROUTE_STEP_AUDIT] = handle_step_get,
    [ROUTE_TASK_GRAPH] = handle_task_graph,
    [ROUTE_TEMPLATES_LIST] = handle_templates_list,
    [ROUTE_TEMPLATE_REGISTER] = handle_template_register,
    [ROUTE_TEMPLATE_GET] = handle_template_get,
    [ROUTE_TEMPLATE_GRAPH] = handle_template_graph,
    [ROUTE_DLQ_LIST] = handle_dlq_list,
    [ROUTE_DLQ_STATS] = handle_dlq_stats,
    [ROUTE_DLQ_UPDATE] = handle_dlq_update,
};

/* ---- dispatch ----------------------------------------------------------------------------------- */

/* takes_query: the /v1 routes that read query parameters (the others refuse any). */
static bool takes_query(enum route_id id)
{
    return hinput_query_allowed(id) != NULL;
}

static bool has_query(struct evhttp_request *req)
{
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    return qs && *qs;
}

static void api_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct api_req *r = arg;
    if (!r->req)
        return;
    log_warn("http", "%s: no answer within the deadline; answering 503 and cancelling its query",
             route_label(r->route));
    if (r->route == ROUTE_HEALTH)
        health_reply(r, false, NULL, "timeout");
    else if (r->route == ROUTE_HEALTH_READY)
        ready_reply(r, "timeout");
    else if (r->route == ROUTE_METRICS)
        metrics_reply(r);
    else
        api_error(r, HUTIL_ERR_TIMEOUT, "no answer within %d ms; the request may or may not have taken effect",
                  r->h->o->conf.web_request_timeout_ms);
    /* Nobody waits for the answer any more: stop the statement rather than let it hold a connection
     * (and its locks) until it ends by itself. The callback still comes, later, and frees r. */
    if (r->pending > 0)
        db_pool_cancel(r->h->o->pool, r->ticket);
    api_done(r);
}

static unsigned method_bit(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return RM_GET;
    case EVHTTP_REQ_POST: return RM_POST;
    case EVHTTP_REQ_PATCH: return RM_PATCH;
    case EVHTTP_REQ_DELETE: return RM_DELETE;
    case EVHTTP_REQ_PUT: return RM_PUT;
    case EVHTTP_REQ_HEAD: return RM_HEAD;
    case EVHTTP_REQ_OPTIONS: return RM_OPTIONS;
    default: return RM_OTHER;
    }
}

/* auth_refresh: (re)parse the configured keys when their text changed (a SIGHUP). */
static void auth_refresh(struct http_api *h)
{
    const char *text = h->o->conf.web_auth_api_keys;
    if (h->keys_parsed && strcmp(text, h->auth_text) == 0)
        return;
    char err[256];
    if (!auth_keys_parse(text, &h->keys, err, sizeof err)) {
        /* conf validation ran first, so this does not happen; refuse everyone rather than no one */
        log_error("http", "web.auth.api_keys: %s; refusing every key", err);
        memset(&h->keys, 0, sizeof h->keys);
    }
    snprintf(h->auth_text, sizeof h->auth_text, "%s", text);
    h->keys_parsed = true;
    log_info("http", "API auth: %d key(s) loaded", h->keys.n);
}

/* jwt_refresh: (re)load the JWT keys from their files and the secret: at start and on SIGHUP. A
 * failure leaves no key, so every token is refused until a reload succeeds: a key that could not
 * be read must not stay trusted after its file changed. */
static void jwt_refresh(struct http_api *h)
{
    const struct conf *c = &h->o->conf;
    jwt_keyset_free(h->jwt_keys);
    h->jwt_keys = NULL;
    if (!c->web_auth_enabled || !c->web_auth_jwt_enabled)
        return;
    char err[400];
    struct jwt_sources src = {.public_keys = c->web_auth_jwt_public_keys, .jwks_file = c->web_auth_jwt_jwks_file,
                              .hs256_secret = c->web_auth_jwt_hs256_secret};
    h->jwt_keys = jwt_keyset_load(&src, err, sizeof err);
    if (!h->jwt_keys) {
        log_error("http", "JWT keys: %s; refusing every token", err);
        return;
    }
    unsigned algs = jwt_keyset_algs(h->jwt_keys);
    log_info("http", "JWT auth: %d key(s) loaded (%s%s%s)", jwt_keyset_count(h->jwt_keys),
             algs & (1u << JWT_RS256) ? "RS256 " : "", algs & (1u << JWT_ES256) ? "ES256 " : "",
             algs & (1u << JWT_HS256) ? "HS256" : "");
}

void http_api_reload(struct http_api *h)
{
    if (h && h->http)
        jwt_refresh(h);
}

/* authorize_jwt: the presented credential is no API key but looks like a JWT: verify it. The
 * token itself is never logged; the subject is, once its signature verified. */
static bool authorize_jwt(struct api_req *r, const char *token, const char *peer)
{
    const struct conf *c = &r->h->o->conf;
    struct jwt_policy pol = {.issuer = c->web_auth_jwt_issuer, .audience = c->web_auth_jwt_audience,
                             .permissions_claim = c->web_auth_jwt_permissions_claim,
                             .leeway_secs = c->web_auth_jwt_leeway_secs};
    struct jwt_identity id;
    enum jwt_error e = jwt_verify(r->h->jwt_keys, &pol, token, strlen(token), (long long)time(NULL), &id);
    if (e != JWT_E_OK) {
        const char *const challenge[] = {
            "WWW-Authenticate", "Bearer realm=\"tasker-orchestratord\", error=\"invalid_token\"", NULL};
        log_info("http", "401 %s from %s: JWT refused: %s", route_label(r->route), peer, jwt_error_reason(e));
        json_t *extra = json_pack("{s:s}", "reason", jwt_error_reason(e));
        api_error_x(r, HUTIL_ERR_UNAUTHORIZED, jwt_error_text(e), extra, challenge);
        json_decref(extra);
        return false;
    }
    snprintf(r->subject, sizeof r->subject, "%s", id.sub);
    r->grants = id.grants;
    return true;
}

/* authorize: when auth is on and the route needs a permission, check the presented API key or JWT;
 * false after answering 401/403. An API key is looked up first, so keys keep working whatever
 * they look like; a credential that is no key and contains a '.' is taken for a JWT. */
static bool authorize(struct api_req *r, struct evhttp_request *req)
{
    struct http_api *h = r->h;
    enum auth_perm perm;
    if (!h->o->conf.web_auth_enabled || !route_permission(r->route, &perm))
        return true;
    auth_refresh(h);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    char presented[JWT_TOKEN_MAX + 1];
    const char *const challenge[] = {"WWW-Authenticate", "Bearer realm=\"tasker-orchestratord\"", NULL};
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    const char *authz = evhttp_find_header(in, "Authorization");
    bool jwt_on = h->o->conf.web_auth_jwt_enabled;
    if (!auth_presented(evhttp_find_header(in, "X-API-Key"), authz, presented, sizeof presented)) {
        bool too_long = authz && strlen(authz) > JWT_TOKEN_MAX;
        log_info("http", "401 %s from %s: %s", route_label(r->route), peer ? peer : "?",
                 too_long ? "credential too long" : "no API key");
        json_t *extra = too_long ? json_pack("{s:s}", "reason", jwt_error_reason(JWT_E_TOO_LONG)) : NULL;
        api_error_x(r, HUTIL_ERR_UNAUTHORIZED,
                    too_long ? jwt_error_text(JWT_E_TOO_LONG)
                    : jwt_on ? "an API key or a JWT is required (X-API-Key: KEY or Authorization: Bearer KEY|JWT)"
                             : "an API key is required (X-API-Key: KEY or Authorization: Bearer KEY)",
                    extra, challenge);
        json_decref(extra);
        return false;
    }
    const struct auth_key *k = auth_lookup(&h->keys, presented);
    if (!k && jwt_on && strchr(presented, '.')) {
        bool ok = authorize_jwt(r, presented, peer ? peer : "?");
        explicit_bzero(presented, sizeof presented);
        if (ok && !auth_allows(r->grants, perm)) {
            log_info("http", "403 %s from %s: JWT subject %s lacks %s", route_label(r->route), peer ? peer : "?",
                     r->subject, auth_perm_name(perm));
            api_error(r, HUTIL_ERR_FORBIDDEN, "the token of %s lacks the permission %s", r->subject,
                      auth_perm_name(perm));
            return false;
        }
        return ok;
    }
    explicit_bzero(presented, sizeof presented);
    if (!k) {
        log_info("http", "401 %s from %s: unknown API key", route_label(r->route), peer ? peer : "?");
        api_error_x(r, HUTIL_ERR_UNAUTHORIZED,
                    h->o->conf.web_auth_jwt_enabled ? "unknown API key (and not a JWT)" : "unknown API key", NULL,
                    challenge);
        return false;
    }
    snprintf(r->key_name, sizeof r->key_name, "%s", k->name);
    r->grants = k->grants;
    if (!auth_allows(k->grants, perm)) {
        log_info("http", "403 %s from %s: key %s lacks %s", route_label(r->route), peer ? peer : "?", k->name,
                 auth_perm_name(perm));
        api_error(r, HUTIL_ERR_FORBIDDEN, "API key %s lacks the permission %s", k->name, auth_perm_name(perm));
        return false;
    }
    return true;
}

/* framing_error: why r's body length is ambiguous (two different Content-Lengths, or one next to
 * Transfer-Encoding), or NULL. evhttp reads the body by the first Content-Length (or by the
 * chunks) and lets the rest through; a proxy in front may have used the other one. */
static const char *framing_error(struct evhttp_request *req)
{
    const char *lengths[8];
    int n = 0;
    bool te = false;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        if (strcasecmp(kv->key, "Content-Length") == 0)
            lengths[n < 8 ? n++ : 7] = kv->value; /* past 8 the last is compared, which suffices */
        else if (strcasecmp(kv->key, "Transfer-Encoding") == 0)
            te = true;
    }
    return hutil_framing_error(lengths, n, te);
}

/* apply_settings: re-apply reloadable evhttp settings when the configuration changed. They take
 * effect for connections accepted from now on. */
static void apply_settings(struct http_api *h)
{
    const struct conf *c = &h->o->conf;
    if (h->applied_max_body != c->web_max_body_bytes) {
        /* libevent answers bodies over its limit itself, with an HTML page (2.1 has no hook), so
         * its limit is a hard ceiling above ours: between the two, the body reaches us and gets our
         * JSON 413 (read_body); beyond it, it is never buffered. */
        evhttp_set_max_body_size(h->http, (ev_ssize_t)c->web_max_body_bytes * 4 + 65536);
        h->applied_max_body = c->web_max_body_bytes;
    }
    if (h->applied_timeout_ms != c->web_request_timeout_ms) {
        struct timeval tv = {.tv_sec = c->web_request_timeout_ms / 1000,
                             .tv_usec = (c->web_request_timeout_ms % 1000) * 1000};
        evhttp_set_timeout_tv(h->http, &tv);
        h->applied_timeout_ms = c->web_request_timeout_ms;
    }
}

static void http_on_request(struct evhttp_request *req, void *arg)
{
    struct http_api *h = arg;
    struct orchd *o = h->o;
    http_conns_request_arrived(h->conns, req); /* it arrived whole: no read deadline until answered */
    apply_settings(h);
    struct api_req *r = calloc(1, sizeof *r);
    if (!r) {
        log_error("http", "out of memory");
        evhttp_send_error(req, 503, NULL);
        return;
    }
    r->h = h;
    r->req = req;
    r->start_us = api_now_us();
    r->route = ROUTE_NONE;
    r->method = method_bit(evhttp_request_get_command(req));
    r->next = h->live;
    if (h->live)
        h->live->prev = r;
    h->live = r;
    h->in_flight++;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum route_result rr = route_match(path, r->method == RM_OPTIONS ? RM_GET : r->method, &r->m);
    char allow[64];
    route_allow_header(r->m.allow, allow, sizeof allow);
    const char *framing = framing_error(req);
    if (framing) {
        /* What follows on this connection may be the tail of this request or a smuggled one:
         * answer and close. */
        char *peer = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
        log_info("http", "400 from %s: %s; closing the connection", peer ? peer : "?", framing);
        const char *const hdr[] = {"Connection", "close", NULL};
        api_error_x(r, HUTIL_ERR_INVALID_REQUEST, framing, NULL, hdr);
    } else if (rr == ROUTE_BAD_PATH) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "malformed path (bad percent-encoding or a segment too long)");
    } else if (rr == ROUTE_NOT_FOUND) {
        api_error(r, HUTIL_ERR_NOT_FOUND, "no such endpoint: %s %.200s", method_name(r->method), path ? path : "");
    } else if (r->method == RM_OPTIONS) {
        const char *const hdr[] = {"Allow", allow, NULL};
        api_send(r, 204, NULL, 0, NULL, hdr);
    } else if (rr == ROUTE_METHOD_NOT_ALLOWED) {
        const char *const hdr[] = {"Allow", allow, NULL};
        char msg[160];
        snprintf(msg, sizeof msg, "%s is not allowed here; use %s", method_name(r->method), allow);
        api_error_x(r, HUTIL_ERR_METHOD_NOT_ALLOWED, msg, NULL, hdr);
    } else {
        r->route = r->m.id;
        bool public_route = r->route == ROUTE_HEALTH || r->route == ROUTE_HEALTH_LIVE ||
                            r->route == ROUTE_HEALTH_READY || r->route == ROUTE_METRICS;
        if (!public_route && (o->stopping || h->stopping)) {
            const char *const hdr[] = {"Retry-After", "1", NULL};
            api_error_x(r, HUTIL_ERR_SHUTTING_DOWN, "this daemon is shutting down; retry on another", NULL, hdr);
        } else if (authorize(r, req)) {
            struct db_pool_stats st;
            db_pool_stats(o->pool, &st);
            if (!public_route && st.queued >= o->conf.web_backpressure_queue_depth) {
                log_warn("http", "backpressure: %d queries wait for a connection; refusing %s", st.queued,
                         route_label(r->route));
                api_error(r, HUTIL_ERR_OVERLOADED, "too many requests in flight (%d queries waiting); retry shortly",
                          st.queued);
            } else if (!public_route && !takes_query(r->route) && has_query(req)) {
                api_error(r, HUTIL_ERR_INVALID_REQUEST, "this endpoint takes no query parameters");
            } else {
                handlers[r->route](r);
            }
        }
    }
    if (r->req && r->pending == 0) {
        log_error("http", "%s: handler neither answered nor queried", route_label(r->route));
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (no response)");
    }
    api_done(r);
}

/* ---- loop lag ---------------------------------------------------------------------------------- */

static void lag_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_api *h = arg;
    long long now = api_now_us();
    double lag = h->lag_due_us ? (double)(now - h->lag_due_us) / 1e6 : 0;
    if (lag < 0)
        lag = 0;
    h->lag_last_s = lag;
    if (h->lag_due_us)
        metrics_hist_observe(&h->lag_hist, METRICS_HIST_SECONDS, lag);
    h->lag_due_us = now + HTTP_LAG_INTERVAL_MS * 1000LL;
    if (!h->stopping)
        timer_in_ms(h->lag_timer, HTTP_LAG_INTERVAL_MS);
}

/* ---- lifecycle --------------------------------------------------------------------------------- */

struct http_api *http_api_new(struct orchd *o)
{
    struct http_api *h = calloc(1, sizeof *h);
    if (!h) {
        log_error("http", "out of memory");
        return NULL;
    }
    h->o = o;
    h->started_ms = api_now_us() / 1000;
    if (!o->conf.web_enabled)
        return h;
    h->http = evhttp_new(o->base);
    h->lag_timer = evtimer_new(o->base, lag_on_timer, h);
    h->conns = h->http ? http_conns_new(o->base, h->http, &o->conf) : NULL;
    if (!h->http || !h->lag_timer || !h->conns) {
        log_error("http", "out of memory");
        http_api_free(h);
        return NULL;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS_BYTES);
    /* No EVHTTP_SERVER_LINGERING_CLOSE: with it, evhttp reads (and drops) a body over its hard
     * limit up to its declared length before answering 413, so "Content-Length: 10^11" held the
     * connection until a timeout. Without it the 413 goes out as soon as the headers are read. */
    evhttp_set_default_content_type(h->http, "application/json; charset=utf-8");
    evhttp_set_gencb(h->http, http_on_request, h);
    apply_settings(h);
    return h;
}

/* split_bind: "host:port" or "[v6]:port" → host (brackets removed) and port. conf validated it. */
static bool split_bind(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return false;
    const char *hs = addr, *he = colon;
    if (*hs == '[' && he > hs && he[-1] == ']') {
        hs++;
        he--;
    }
    if ((size_t)(he - hs) >= hostlen)
        return false;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    *port = atoi(colon + 1);
    return *port >= 0 && *port <= 65535;
}

bool http_api_start(struct http_api *h)
{
    if (!h->http)
        return true; /* web.enabled = false */
    char host[CONF_NAME_MAX];
    int port;
    if (!split_bind(h->o->conf.web_bind_address, host, sizeof host, &port)) {
        log_error("http", "web.bind_address %s is not host:port", h->o->conf.web_bind_address);
        return false;
    }
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!h->sock) {
        log_error("http", "cannot listen on %s (address in use, or not an address of this machine)",
                  h->o->conf.web_bind_address);
        return false;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    h->port = port;
    if (getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    log_info("http", "HTTP API listening on %s (port %d)%s", h->o->conf.web_bind_address, h->port,
             h->o->conf.web_auth_enabled ? (h->o->conf.web_auth_jwt_enabled ? ", API keys or JWTs required on /v1"
                                                                             : ", API keys required on /v1")
                                         : "");
    if (h->o->conf.web_auth_enabled)
        auth_refresh(h);
    jwt_refresh(h);
    timer_in_ms(h->lag_timer, 0);
    return true;
}

bool http_api_bound(const struct http_api *h)
{
    return h && h->sock != NULL;
}

int http_api_port(const struct http_api *h)
{
    return h ? h->port : 0;
}

void http_api_stop(struct http_api *h)
{
    if (!h || !h->http)
        return;
    h->stopping = true;
    if (h->sock) {
        evhttp_del_accept_socket(h->http, h->sock);
        h->sock = NULL;
        log_info("http", "HTTP listener closed; %d request(s) in flight", h->in_flight);
    }
    if (h->lag_timer)
        evtimer_del(h->lag_timer);
}

void http_api_free(struct http_api *h)
{
    if (!h)
        return;
    while (h->live) {
        struct api_req *r = h->live;
        if (r->req)
            api_error(r, HUTIL_ERR_SHUTTING_DOWN, "this daemon is shutting down");
        r->pending = 0; /* the pool is gone: no callback will come */
        api_req_free(r);
    }
    if (h->http)
        evhttp_free(h->http);
    http_conns_free(h->conns); /* after evhttp_free, which closes the connections */
    if (h->lag_timer)
        event_free(h->lag_timer);
    explicit_bzero(&h->keys, sizeof h->keys);
    jwt_keyset_free(h->jwt_keys);
    explicit_bzero(h->auth_text, sizeof h->auth_text);
    free(h->queues);
    free(h);
}

