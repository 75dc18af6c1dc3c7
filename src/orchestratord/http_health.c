/* http_health.c — GET /health, /health/live, /health/ready and /metrics: what load balancers,
 * systemd and Prometheus read. Answered even while the database is down (from what the daemon knows). */
#include "http_api_req.h"

#include "completions.h"
#include "http_conn.h"
#include "db_pool.h"
#include "listen.h"
#include "log.h"
#include "pointer_consumer.h"
#include "relay.h"
#include "names.h"
#include "metrics.h"
#include "orchd.h"
#include "states.h"
#include "statements.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- health ------------------------------------------------------------------------------------- */

static json_t *pool_json(struct http_api *h)
{
    struct db_pool_stats st;
    db_pool_stats(h->o->pool, &st);
    /* cannot_grow: null, or why the pool could not open one more connection while others work —
     * without host names and the like: /health is public. */
    char grow[sizeof st.cannot_grow];
    db_pool_public_reason(st.cannot_grow, grow, sizeof grow);
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:o, s:I, s:I, s:I, s:I, s:I}", "total", st.total,
                     "idle", st.idle, "busy", st.busy, "busy_api", st.busy_api, "connecting", st.connecting, "queued",
                     st.queued, "max", st.max, "max_api", st.max_api, "breaker_open", st.breaker_open, "cannot_grow",
                     st.cannot_grow[0] ? json_string(grow) : json_null(), "queries_ok",
                     (json_int_t)st.queries_ok, "queries_failed", (json_int_t)st.queries_failed, "acquire_timeouts",
                     (json_int_t)st.acquire_timeouts, "connects_failed", (json_int_t)st.connects_failed,
                     "connects_ok", (json_int_t)st.connects_ok);
}

/* health_reply: GET /health — db (from the query: true = it answered), pool, listener,
 * namespaces (names, or NULL when the query failed), version, uptime. */
void health_reply(struct api_req *r, bool db_ok, json_t *names, const char *db_error)
{
    struct http_api *h = r->h;
    struct orchd *o = h->o;
    bool listening = listener_connected(o->listener);
    bool healthy = db_ok && !o->stopping;
    json_t *db = json_pack("{s:s}", "status", db_ok ? "up" : "down");
    if (!db_ok && db_error)
        json_object_set_new(db, "error", json_string(db_error));
    json_t *root = json_pack("{s:s, s:s, s:s, s:I, s:b, s:{s:o, s:{s:s, s:I}, s:{s:s, s:i}}, s:o, s:o, s:i}",
                             "status", healthy ? "healthy" : "unhealthy", "version", TASKER_VERSION, "processor_id",
                             o->actor, "uptime_seconds", (json_int_t)((api_now_us() / 1000 - h->started_ms) / 1000),
                             "stopping", o->stopping, "checks", "database", db, "listener", "status",
                             listening ? "up" : "down", "notifications",
                             (json_int_t)listener_notifications(o->listener), "http", "status", "up", "port", h->port,
                             "pool", pool_json(h), "namespaces", names ? names : json_array(), "namespace_count",
                             (int)completions_namespace_count(o->completions));
    if (o->relay) {
        struct relay_stats rs;
        relay_stats(o->relay, &rs);
        json_t *b = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "status", rs.link_up ? "up" : "down",
                              "backend", "rabbitmq", "connects", (json_int_t)rs.link_connects, "publishes",
                              (json_int_t)rs.publishes, "confirms", (json_int_t)rs.confirms, "nacks",
                              (json_int_t)rs.nacks, "returns", (json_int_t)rs.returns, "republished",
                              (json_int_t)rs.republished, "in_flight", (json_int_t)rs.in_flight);
        if (!rs.link_up)
            json_object_set_new(b, "error", json_string(rs.last_error));
        struct pointer_stats ps;
        completions_pointer_stats(o->completions, &ps);
        json_object_set_new(b, "completions",
                            json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "consumers", (int)ps.links, "consumers_up",
                                      (int)ps.links_up, "consumed", (json_int_t)ps.consumed, "acked",
                                      (json_int_t)ps.acked, "rejected", (json_int_t)ps.rejected, "redelivered",
                                      (json_int_t)ps.redelivered, "recovered_by_sweep",
                                      (json_int_t)o->metrics.handbacks_recovered));
        json_object_set_new(json_object_get(root, "checks"), "broker", b);
    }
    api_send_json(r, healthy ? 200 : 503, root, NULL);
}

static void health_on_rows(struct api_req *r, const struct db_rows *rows)
{
    json_t *names = json_array();
    for (int i = 0; i < db_rows_count(rows); i++)
        json_array_append_new(names, json_string(db_rows_text(rows, i, 0)));
    health_reply(r, true, names, NULL);
}

static void health_on_error(struct api_req *r, const struct db_error *err)
{
    log_warn("http", "health: database check failed: %s", err->message);
    health_reply(r, false, NULL, err->sqlstate[0] ? "query failed" : "unreachable");
}

void handle_health(struct api_req *r)
{
    if (!r->h->o->db_up) {
        health_reply(r, false, NULL, "no connection");
        return;
    }
    (void)api_query(r, STMT_NAMESPACES, NULL, 0, health_on_rows, health_on_error);
}

void handle_live(struct api_req *r)
{
    struct http_api *h = r->h;
    api_send_json(r, 200,
                  json_pack("{s:s, s:f, s:I}", "status", "alive", "loop_lag_seconds", h->lag_last_s, "uptime_seconds",
                            (json_int_t)((api_now_us() / 1000 - h->started_ms) / 1000)),
                  NULL);
}

/* ready_reply: GET /health/ready — 200 only when the database answered, LISTEN is up, the first
 * load of the template directory is over (or has run past its wait, see daemon.c) and we are not
 * stopping. */
void ready_reply(struct api_req *r, const char *db)
{
    struct orchd *o = r->h->o;
    bool listening = listener_connected(o->listener);
    /* With messaging.backend = rabbitmq, dispatch needs the broker: not ready while its link is down. */
    bool broker = !o->relay || relay_link_up(o->relay);
    bool ready = strcmp(db, "up") == 0 && listening && broker && !o->stopping && !o->templates_pending;
    json_t *root = json_pack("{s:s, s:{s:s, s:s, s:s, s:b}}", "status", ready ? "ready" : "not_ready", "checks",
                             "database", db, "listener", listening ? "up" : "down", "templates",
                             o->templates_pending ? "loading" : "loaded", "stopping", o->stopping);
    if (o->relay)
        json_object_set_new(json_object_get(root, "checks"), "broker", json_string(broker ? "up" : "down"));
    api_send_json(r, ready ? 200 : 503, root, NULL);
}

static void ready_on_rows(struct api_req *r, const struct db_rows *rows)
{
    (void)rows;
    ready_reply(r, "up");
}

static void ready_on_error(struct api_req *r, const struct db_error *err)
{
    log_warn("http", "readiness: database ping failed: %s", err->message);
    ready_reply(r, "down");
}

void handle_ready(struct api_req *r)
{
    struct orchd *o = r->h->o;
    if (o->stopping || !listener_connected(o->listener) || !o->db_up || (o->relay && !relay_link_up(o->relay))) {
        ready_reply(r, o->db_up ? "up" : "down");
        return;
    }
    (void)api_query(r, STMT_PING, NULL, 0, ready_on_rows, ready_on_error);
}

/* ---- metrics ------------------------------------------------------------------------------------ */

void metrics_reply(struct api_req *r)
{
    struct http_api *h = r->h;
    struct orchd *o = h->o;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        api_error(r, HUTIL_ERR_INTERNAL, "out of memory");
        return;
    }
    char label[160], l2[160];
    metrics_write_header(f, "tasker_build_info", "gauge", "Always 1; the labels say which build runs.");
    metrics_write_sample(f, "tasker_build_info", metrics_label(label, sizeof label, "version", TASKER_VERSION), 1);
    metrics_write_header(f, "tasker_uptime_seconds", "gauge", "Seconds since the daemon started.");
    metrics_write_sample(f, "tasker_uptime_seconds", NULL, (double)(api_now_us() / 1000 - h->started_ms) / 1000.0);
    metrics_write_header(f, "tasker_database_up", "gauge", "1 while the pool has a working connection.");
    metrics_write_sample(f, "tasker_database_up", NULL, o->db_up);
    metrics_write_header(f, "tasker_stopping", "gauge", "1 once SIGTERM was received (draining).");
    metrics_write_sample(f, "tasker_stopping", NULL, o->stopping);
    metrics_write_header(f, "tasker_namespaces", "gauge", "Namespaces whose completion queues this daemon consumes.");
    metrics_write_sample(f, "tasker_namespaces", NULL, (double)completions_namespace_count(o->completions));

    metrics_render(&o->metrics, f);

    struct db_pool_stats st;
    db_pool_stats(o->pool, &st);
    metrics_write_header(f, "tasker_db_pool_connections", "gauge", "Pool connections by state.");
    metrics_write_sample(f, "tasker_db_pool_connections", "state=\"idle\"", st.idle);
    metrics_write_sample(f, "tasker_db_pool_connections", "state=\"busy\"", st.busy);
    metrics_write_sample(f, "tasker_db_pool_connections", "state=\"connecting\"", st.connecting);
    metrics_write_header(f, "tasker_db_pool_connections_open", "gauge", "Pool connections open or opening.");
    metrics_write_sample(f, "tasker_db_pool_connections_open", NULL, st.total);
    metrics_write_header(f, "tasker_db_pool_max_connections", "gauge", "database.pool.max_connections.");
    metrics_write_sample(f, "tasker_db_pool_max_connections", NULL, st.max);
    metrics_write_header(f, "tasker_db_pool_queued_queries", "gauge", "Queries waiting for a pool connection.");
    metrics_write_sample(f, "tasker_db_pool_queued_queries", NULL, st.queued);
    metrics_write_header(f, "tasker_db_pool_breaker_open", "gauge", "1 while the pool's circuit breaker is open.");
    metrics_write_sample(f, "tasker_db_pool_breaker_open", NULL, st.breaker_open);
    metrics_write_header(f, "tasker_db_pool_cannot_grow", "gauge",
                         "1 while the pool cannot open more connections (it runs on those it has).");
    metrics_write_sample(f, "tasker_db_pool_cannot_grow", NULL, st.cannot_grow[0] != '\0');
    metrics_write_header(f, "tasker_db_pool_api_connections", "gauge",
                         "Connections running API queries, and the most they may hold (see "
                         "database.pool.reserved_for_orchestration).");
    metrics_write_sample(f, "tasker_db_pool_api_connections", "state=\"busy\"", st.busy_api);
    metrics_write_sample(f, "tasker_db_pool_api_connections", "state=\"max\"", st.max_api);
    metrics_write_header(f, "tasker_db_pool_queries_total", "counter", "Pool queries by outcome.");
    metrics_write_sample(f, "tasker_db_pool_queries_total", "result=\"ok\"", (double)st.queries_ok);
    metrics_write_sample(f, "tasker_db_pool_queries_total", "result=\"failed\"", (double)st.queries_failed);
    metrics_write_header(f, "tasker_db_pool_acquire_timeouts_total", "counter",
                         "Queries failed after waiting database.pool.acquire_timeout_secs for a connection.");
    metrics_write_sample(f, "tasker_db_pool_acquire_timeouts_total", NULL, (double)st.acquire_timeouts);
    metrics_write_header(f, "tasker_db_pool_connects_total", "counter", "Connection attempts by outcome.");
    metrics_write_sample(f, "tasker_db_pool_connects_total", "result=\"ok\"", (double)st.connects_ok);
    metrics_write_sample(f, "tasker_db_pool_connects_total", "result=\"failed\"", (double)st.connects_failed);

    metrics_write_header(f, "tasker_listener_connected", "gauge", "1 while the LISTEN connection is up.");
    metrics_write_sample(f, "tasker_listener_connected", NULL, listener_connected(o->listener));
    metrics_write_header(f, "tasker_listener_notifications_total", "counter", "NOTIFYs received.");
    metrics_write_sample(f, "tasker_listener_notifications_total", NULL,
                         (double)listener_notifications(o->listener));

    if (o->relay) {
        struct relay_stats rs;
        relay_stats(o->relay, &rs);
        metrics_write_header(f, "tasker_broker_connected", "gauge", "1 while the RabbitMQ link is up.");
        metrics_write_sample(f, "tasker_broker_connected", NULL, rs.link_up);
        metrics_write_header(f, "tasker_broker_connects_total", "counter", "RabbitMQ connections established.");
        metrics_write_sample(f, "tasker_broker_connects_total", NULL, (double)rs.link_connects);
        metrics_write_header(f, "tasker_relay_messages_total", "counter",
                             "Dispatch messages relayed from the PGMQ outbox to RabbitMQ, by outcome.");
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"published\"", (double)rs.publishes);
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"confirmed\"", (double)rs.confirms);
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"nacked\"", (double)rs.nacks);
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"returned\"", (double)rs.returns);
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"republished\"", (double)rs.republished);
        metrics_write_sample(f, "tasker_relay_messages_total", "outcome=\"archived\"", (double)rs.archived);
        metrics_write_header(f, "tasker_relay_confirm_timeouts_total", "counter",
                             "Relay bursts whose confirms did not all come within confirm_timeout_ms.");
        metrics_write_sample(f, "tasker_relay_confirm_timeouts_total", NULL, (double)rs.confirm_timeouts);
        metrics_write_header(f, "tasker_relay_in_flight", "gauge", "Relayed messages waiting for their confirm.");
        metrics_write_sample(f, "tasker_relay_in_flight", NULL, (double)rs.in_flight);
        metrics_write_header(f, "tasker_relay_last_batch", "gauge", "Messages in the last burst read from the outbox.");
        metrics_write_sample(f, "tasker_relay_last_batch", NULL, (double)rs.last_batch);
        struct pointer_stats ps;
        completions_pointer_stats(o->completions, &ps);
        metrics_write_header(f, "tasker_completion_pointers_total", "counter",
                             "Completion pointers from RabbitMQ's tasker_completion_<ns> queues, by outcome "
                             "(recovered_by_sweep: hand-backs processed without one).");
        metrics_write_sample(f, "tasker_completion_pointers_total", "outcome=\"consumed\"", (double)ps.consumed);
        metrics_write_sample(f, "tasker_completion_pointers_total", "outcome=\"acked\"", (double)ps.acked);
        metrics_write_sample(f, "tasker_completion_pointers_total", "outcome=\"rejected\"", (double)ps.rejected);
        metrics_write_sample(f, "tasker_completion_pointers_total", "outcome=\"redelivered\"", (double)ps.redelivered);
        metrics_write_sample(f, "tasker_completion_pointers_total", "outcome=\"recovered_by_sweep\"",
                             (double)o->metrics.handbacks_recovered);
        metrics_write_header(f, "tasker_broker_consumers", "gauge",
                             "Completion-pointer consumers (one RabbitMQ connection per namespace), by link state.");
        metrics_write_sample(f, "tasker_broker_consumers", "state=\"up\"", ps.links_up);
        metrics_write_sample(f, "tasker_broker_consumers", "state=\"down\"", ps.links - ps.links_up);
    }

    metrics_write_header(f, "tasker_queue_depth", "gauge",
                         "Messages in a PGMQ queue (visible or not), read at most every 5 s.");
    for (size_t i = 0; i < h->nqueues; i++) {
        const char *q = h->queues[i].name;
        bool dispatch = strncmp(q, "tasker_dispatch_", 16) == 0;
        const char *ns = q + (dispatch ? 16 : strlen("tasker_completion_"));
        snprintf(label, sizeof label, "%s,", metrics_label(l2, sizeof l2, "queue", q));
        size_t used = strlen(label);
        snprintf(label + used, sizeof label - used, "%s,kind=\"%s\"", metrics_label(l2, sizeof l2, "namespace", ns),
                 dispatch ? "dispatch" : "completion");
        metrics_write_sample(f, "tasker_queue_depth", label, (double)h->queues[i].length);
    }
    metrics_write_header(f, "tasker_queue_oldest_message_age_seconds", "gauge",
                         "Age of the oldest message in a PGMQ queue (0 when empty).");
    for (size_t i = 0; i < h->nqueues; i++) {
        metrics_write_sample(f, "tasker_queue_oldest_message_age_seconds",
                             metrics_label(label, sizeof label, "queue", h->queues[i].name),
                             (double)(h->queues[i].oldest_age_secs < 0 ? 0 : h->queues[i].oldest_age_secs));
    }
    metrics_write_header(f, "tasker_queue_metrics_up", "gauge", "1 when the last read of the queue depths succeeded.");
    metrics_write_sample(f, "tasker_queue_metrics_up", NULL, h->queues_ok);
    metrics_write_header(f, "tasker_queue_metrics_age_seconds", "gauge", "Age of the queue depths shown.");
    metrics_write_sample(f, "tasker_queue_metrics_age_seconds", NULL,
                         h->queues_read_ms ? (double)(api_now_us() / 1000 - h->queues_read_ms) / 1000.0 : -1);

    metrics_write_header(f, "tasker_event_loop_lag_last_seconds", "gauge",
                         "How late the last 250 ms loop-lag probe timer fired.");
    metrics_write_sample(f, "tasker_event_loop_lag_last_seconds", NULL, h->lag_last_s);
    metrics_write_header(f, "tasker_event_loop_lag_seconds", "histogram",
                         "How late each 250 ms loop-lag probe timer fired (time the loop was busy or blocked).");
    metrics_write_hist(f, "tasker_event_loop_lag_seconds", NULL, &h->lag_hist, METRICS_HIST_SECONDS);

    metrics_write_header(f, "tasker_http_requests_total", "counter",
                         "HTTP requests answered, by route and status class.");
    static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int rt = 0; rt <= ROUTE_COUNT; rt++) {
        for (int c = 0; c < 5; c++) {
            if (!h->requests[rt][c])
                continue;
            snprintf(label, sizeof label, "route=\"%s\",code=\"%s\"",
                     route_label(rt < ROUTE_COUNT ? (enum route_id)rt : ROUTE_NONE), classes[c]);
            metrics_write_sample(f, "tasker_http_requests_total", label, (double)h->requests[rt][c]);
        }
    }
    metrics_write_header(f, "tasker_http_connections_open", "gauge", "HTTP connections open (web.max_connections).");
    metrics_write_sample(f, "tasker_http_connections_open", NULL, http_conns_open(h->conns));
    metrics_write_header(f, "tasker_http_connections_closed_total", "counter",
                         "HTTP connections closed by the daemon before a request arrived whole: read_timeout "
                         "(web.request_read_timeout_ms), max_connections (accepted over web.max_connections).");
    metrics_write_sample(f, "tasker_http_connections_closed_total", "reason=\"read_timeout\"",
                         (double)http_conns_closed(h->conns, HTTP_CONN_CLOSED_READ_TIMEOUT));
    metrics_write_sample(f, "tasker_http_connections_closed_total", "reason=\"max_connections\"",
                         (double)http_conns_closed(h->conns, HTTP_CONN_CLOSED_MAX_CONNECTIONS));
    metrics_write_header(f, "tasker_http_requests_in_flight", "gauge", "HTTP requests not yet answered.");
    metrics_write_sample(f, "tasker_http_requests_in_flight", NULL, h->in_flight - 1); /* not counting this one */
    metrics_write_header(f, "tasker_http_request_duration_seconds", "histogram",
                         "From a request's arrival to its answer.");
    metrics_write_hist(f, "tasker_http_request_duration_seconds", NULL, &h->duration, METRICS_HIST_SECONDS);

    if (fclose(f) != 0 || !text) {
        free(text);
        api_error(r, HUTIL_ERR_INTERNAL, "out of memory");
        return;
    }
    api_send(r, 200, text, len, "text/plain; version=0.0.4; charset=utf-8", NULL);
    free(text);
}

static void queues_on_rows(struct api_req *r, const struct db_rows *rows)
{
    struct http_api *h = r->h;
    int n = db_rows_count(rows);
    struct queue_depth *q = n > 0 ? calloc((size_t)n, sizeof *q) : NULL;
    if (n > 0 && !q) {
        metrics_reply(r);
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(q[i].name, sizeof q[i].name, "%s", db_rows_text(rows, i, 0));
        q[i].length = db_rows_int(rows, i, 1);
        q[i].oldest_age_secs = db_rows_isnull(rows, i, 2) ? -1 : db_rows_int(rows, i, 2);
    }
    free(h->queues);
    h->queues = q;
    h->nqueues = (size_t)n;
    h->queues_read_ms = api_now_us() / 1000;
    h->queues_ok = true;
    metrics_reply(r);
}

static void queues_on_error(struct api_req *r, const struct db_error *err)
{
    log_warn("http", "metrics: reading the queue depths failed: %s", err->message);
    r->h->queues_ok = false;
    metrics_reply(r);
}

void handle_metrics(struct api_req *r)
{
    struct http_api *h = r->h;
    long long now_ms = api_now_us() / 1000;
    if (!h->o->db_up || h->o->stopping || (h->queues_read_ms && now_ms - h->queues_read_ms < HTTP_QUEUE_CACHE_MS)) {
        if (!h->o->db_up)
            h->queues_ok = false;
        metrics_reply(r);
        return;
    }
    (void)api_query(r, STMT_API_QUEUE_DEPTHS, NULL, 0, queues_on_rows, queues_on_error);
}
