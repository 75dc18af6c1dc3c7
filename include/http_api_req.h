/* http_api_req.h — inside the HTTP API: one request (struct api_req), the component's state, and the
 * reply, query and input helpers that the resource files (http_health.c, http_tasks.c,
 * http_templates.c, http_dlq.c) share with the dispatcher in http_api.c. Not for other components. */
#ifndef TASKER_HTTP_API_REQ_H
#define TASKER_HTTP_API_REQ_H

#include "conf.h"
#include "db_pool.h"
#include "http_auth.h"
#include "http_input.h"
#include "jwt_auth.h"
#include "http_route.h"
#include "http_util.h"
#include "metrics.h"

#include <sys/queue.h> /* TAILQ_*, for struct evkeyvalq */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADERS_BYTES (64 * 1024) /* request line + headers */
#define HTTP_HEALTH_TIMEOUT_MS 3000        /* /health and /health/ready answer within this */
#define HTTP_QUEUE_CACHE_MS 5000           /* queue depths for /metrics are re-read at most this often */
#define HTTP_LAG_INTERVAL_MS 250           /* loop-lag probe period */
#define HTTP_ACTOR_MAX 160

struct api_req;
typedef void (*api_rows_fn)(struct api_req *r, const struct db_rows *rows);
typedef void (*api_err_fn)(struct api_req *r, const struct db_error *err);

/* One HTTP request, from its arrival to its last query callback. Owned by the http_api's live
 * list; freed once answered (req == NULL) with no query in flight. */
struct api_req {
    struct http_api *h;
    struct api_req *prev, *next;
    struct evhttp_request *req;   /* NULL once answered */
    enum route_id route;
    unsigned method;              /* enum route_method bit */
    struct route_match m;
    char key_name[AUTH_NAME_MAX]; /* the API key used; "" when auth is off or a JWT was used */
    char subject[JWT_SUB_MAX];    /* the JWT's sub when a token was used; "" otherwise */
    unsigned grants;              /* that key's or token's permissions (auth_allows); 0 when auth is off */
    char actor[HTTP_ACTOR_MAX];   /* who authenticated: the processor of audit rows */
    char claimed[HTTP_ACTOR_MAX]; /* the operator the caller names (cancelled_by, …): metadata only */
    char ns[METRICS_NS_NAME_MAX]; /* POST /v1/tasks: the task's namespace (metrics) */
    char *body;                   /* the request body, NUL-terminated; NULL when none was read */
    json_t *json;                 /* the parsed body (an object); NULL when none */
    struct event *deadline;       /* armed with the first query */
    int pending;                  /* queries in flight */
    unsigned long long ticket;    /* the pool's name of the latest query, for db_pool_cancel */
    long long start_us;
    api_rows_fn on_rows;
    api_err_fn on_error;          /* NULL: the default mapping (api_db_error) */
};

/* A queue's depth, as last read for /metrics. */
struct queue_depth {
    char name[64];
    long long length;
    long long oldest_age_secs; /* -1 = empty queue */
};

struct http_api {
    struct orchd *o;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct http_conns *conns;     /* request deadline and connection cap */
    int port;
    bool stopping;
    long long started_ms;         /* monotonic, for uptime */
    struct api_req *live;         /* every request not yet freed */
    int in_flight;                /* requests not yet answered */

    /* auth: keys parsed from conf.web_auth_api_keys, re-parsed when the text changes (SIGHUP) */
    char auth_text[CONF_API_KEYS_MAX];
    struct auth_keys keys;
    bool keys_parsed;
    struct jwt_keyset *jwt_keys;  /* NULL: JWT off, or its keys failed to load (every token refused) */

    /* evhttp settings as applied (reloadable keys are re-applied when they change) */
    int applied_max_body;
    int applied_timeout_ms;

    /* loop lag */
    struct event *lag_timer;
    long long lag_due_us;
    double lag_last_s;
    struct metrics_hist lag_hist;

    /* queue depths for /metrics */
    struct queue_depth *queues;
    size_t nqueues;
    long long queues_read_ms;     /* monotonic; 0 = never */
    bool queues_ok;               /* the last read succeeded */

    /* per route × status class (1xx..5xx), and durations */
    unsigned long long requests[ROUTE_COUNT + 1][5];
    struct metrics_hist duration;
};

/* Query string: the parameters a route takes, parsed and checked. */
struct query {
    struct evkeyvalq kv;
    bool parsed;
};

/* The handler of each route (the dispatcher's table in http_api.c). */
typedef void (*api_handler_fn)(struct api_req *r);

/* api_now_us: the monotonic clock in microseconds (request durations, uptime, loop lag). */
long long api_now_us(void);

/* api_send: answer r (once): status, body (may be NULL/empty), content type and extra headers
 * (name/value pairs, NULL-terminated). Counts it for /metrics and logs it. */
void api_send(struct api_req *r, int status, const char *body, size_t len, const char *ctype,
                     const char *const *headers);

void api_send_json_text(struct api_req *r, int status, const char *text, const char *const *headers);

/* api_send_json: answer with a jansson value (taken over: decref'd here). */
void api_send_json(struct api_req *r, int status, json_t *v, const char *const *headers);

/* api_error_x: an error reply with extra keys in the error object (extra borrowed) and headers. */
void api_error_x(struct api_req *r, enum hutil_error e, const char *message, json_t *extra,
                        const char *const *headers);

void api_error(struct api_req *r, enum hutil_error e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* api_query: run a statement for r; on_rows gets the rows, on_error (or the default mapping) a
 * failure. When the pool refuses the query (stopping, breaker open) r is answered 503 here.
 * Returns whether the query was sent. */
bool api_query(struct api_req *r, int stmt, const char *const *params, int n, api_rows_fn on_rows,
               api_err_fn on_error);

/* input_refused: answer the error an input check found; false, for chaining. */
bool input_refused(struct api_req *r, const struct hinput_error *e);

/* body_object: parse r's body as a JSON object into r->json (r->body keeps the text). optional:
 * an empty body is fine (r->json stays NULL). false after answering 400/413. */
bool body_object(struct api_req *r, bool optional);

/* body_read: r's body, unparsed, into r->body (NUL-terminated; *len bytes; NULL when empty and
 * optional). false after answering 400 (empty) or 413 (over web.max_body_bytes). */
bool body_read(struct api_req *r, bool optional, size_t *len);

/* body_string: obj[key] as a string, or NULL. */
const char *body_string(struct api_req *r, const char *key);

/* set_actor: who acts, for audit rows. The processor is who authenticated — "api:KEY-NAME", or
 * "api" when auth is off — never what the caller writes: the operator the caller names in its
 * `field` (cancelled_by, resolved_by, …) is kept next to it (metadata.claimed_operator). false
 * after answering 400 when that name holds control characters or does not fit. */
bool set_actor(struct api_req *r, const char *field, const char *by);

/* claimed_note: " for OPERATOR" when the caller named one, for log lines. */
const char *claimed_note(struct api_req *r, char *buf, size_t len);

/* uuid_params: the first n path parameters are UUIDs; else answer 400 invalid_uuid. */
bool uuid_params(struct api_req *r, int n);

/* query_get: a parameter's value; an empty value is no filter (NULL). query_free: release q. */
const char *query_get(struct query *q, const char *key);

void query_free(struct query *q);

/* query_parse: parse r's query string, refusing parameters its route does not take. false after
 * answering 400 (nothing to free then); otherwise the caller calls query_free. */
bool query_parse(struct api_req *r, struct query *q);

/* query_page: page (>= 1, default 1) and per_page (1..100, default 25) as decimal text. */
bool query_page(struct api_req *r, struct query *q, char page[16], char per_page[16]);

/* reply_document: the one-column JSON document of rows; NULL means "no such thing" → 404. */
void reply_document(struct api_req *r, const struct db_rows *rows, const char *what);

/* doc_on_rows / steps_on_rows: reply_document for routes whose missing thing is named by the route
 * (a task or a DLQ entry) / is "task" (steps, templates: reply_document names those itself). */
void doc_on_rows(struct api_req *r, const struct db_rows *rows);

void steps_on_rows(struct api_req *r, const struct db_rows *rows);

/* graph_on_rows: the DOT text of rows as text/vnd.graphviz (GET …/graph); NULL → 404 as in
 * reply_document. */
void graph_on_rows(struct api_req *r, const struct db_rows *rows);

/* health_reply: GET /health — db (from the query: true = it answered), pool, listener,
 * namespaces (names, or NULL when the query failed), version, uptime. */
void health_reply(struct api_req *r, bool db_ok, json_t *names, const char *db_error);

/* ready_reply: GET /health/ready — 200 only when the database answered, LISTEN is up and we are
 * not stopping. */
void ready_reply(struct api_req *r, const char *db);

/* metrics_reply: GET /metrics from what the daemon holds (queue depths as last read). */
void metrics_reply(struct api_req *r);

/* The routes' handlers, by resource file: each answers r or sends one query for it. */
/* health and metrics (http_health.c) */
void handle_health(struct api_req *r);
void handle_live(struct api_req *r);
void handle_ready(struct api_req *r);
void handle_metrics(struct api_req *r);
/* tasks and steps (http_tasks.c) */
void handle_task_create(struct api_req *r);
void handle_tasks_list(struct api_req *r);
void handle_task_get(struct api_req *r);
void handle_task_cancel(struct api_req *r);
void handle_task_recover(struct api_req *r);
void handle_steps_list(struct api_req *r);
void handle_step_get(struct api_req *r);
void handle_step_resolve(struct api_req *r);
void handle_task_graph(struct api_req *r);
/* templates (http_templates.c) */
void handle_template_register(struct api_req *r);
void handle_templates_list(struct api_req *r);
void handle_template_get(struct api_req *r);
void handle_template_graph(struct api_req *r);
/* the dead-letter queue (http_dlq.c) */
void handle_dlq_list(struct api_req *r);
void handle_dlq_stats(struct api_req *r);
void handle_dlq_update(struct api_req *r);

#endif
