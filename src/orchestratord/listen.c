/* listen.c — the dedicated LISTEN connection on pgmq_message_ready, reconnecting on its own.
 *
 * NOTIFY is a hint that lowers latency; the timers of completions and poller are the guarantee
 * (DESIGN §4). So a lost connection costs nothing but latency: we reconnect with capped,
 * jittered backoff and, once LISTEN is back, tell the owner to poll everything once, since
 * notifications sent meanwhile are gone.
 */
#include "listen.h"

#include "backoff.h"
#include "db_conn.h"
#include "log.h"
#include "orchd.h"
#include "timer.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define LISTEN_CHANNEL "pgmq_message_ready"

struct listener {
    struct orchd *o;
    struct db_conn *conn;
    struct event *retry;        /* reconnect timer; also frees a broken connection outside its callback */
    listener_message_fn on_message;
    listener_connected_fn on_connected;
    void *arg;
    bool connected;             /* LISTEN acknowledged */
    bool stopping;
    int failures;               /* consecutive connect failures, for the backoff */
    unsigned long long notifications;
};

static void listener_connect(struct listener *l);

static void listener_schedule_retry(struct listener *l)
{
    timer_in_ms(l->retry, backoff_ms(l->o->conf.pool_reconnect_initial_ms, l->o->conf.pool_reconnect_max_ms,
                                     l->failures, 25, (unsigned)rand()));
}

static void listener_on_listen(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    (void)rows;
    struct listener *l = arg;
    if (err) {
        /* The connection broke under us; the BROKEN event handles the retry. */
        log_warn("listen", "LISTEN failed: %s", err->message);
        return;
    }
    l->connected = true;
    if (l->failures > 0)
        log_info("listen", "listening on %s again", LISTEN_CHANNEL);
    else
        log_info("listen", "listening on %s", LISTEN_CHANNEL);
    l->failures = 0;
    l->on_connected(l->arg);
}

/* Payload: {"queue": "...", "namespace": "...", "msg_id": N}; anything else is ignored. */
static void listener_on_notify(struct listener *l, const char *payload)
{
    l->notifications++;
    json_error_t jerr;
    json_t *j = json_loads(payload ? payload : "", 0, &jerr);
    const char *queue = j ? json_string_value(json_object_get(j, "queue")) : NULL;
    const char *ns = j ? json_string_value(json_object_get(j, "namespace")) : NULL;
    if (queue)
        l->on_message(l->arg, queue, ns ? ns : "");
    else
        log_debug("listen", "ignoring notification without a queue: %s", payload ? payload : "");
    json_decref(j);
}

static void listener_on_event(void *arg, struct db_conn *c, enum db_conn_event ev, const char *channel,
                              const char *payload)
{
    (void)channel;
    struct listener *l = arg;
    switch (ev) {
    case DB_CONN_EV_READY:
        if (!db_conn_query(c, false, "LISTEN " LISTEN_CHANNEL, 0, NULL, listener_on_listen, l))
            log_warn("listen", "cannot send LISTEN");
        break;
    case DB_CONN_EV_NOTIFY:
        listener_on_notify(l, payload);
        break;
    case DB_CONN_EV_BROKEN:
        if (l->connected || l->failures == 0)
            log_warn("listen", "connection lost: %s", db_conn_last_error(c));
        l->connected = false;
        l->failures++;
        /* The connection is freed by the retry timer, outside its own callback. */
        if (!l->stopping)
            listener_schedule_retry(l);
        break;
    }
}

static void listener_connect(struct listener *l)
{
    struct db_conn_params cp = {
        /* LISTEN is session state: behind a transaction-pooling PgBouncer it needs its own route. */
        .url = l->o->conf.database_listen_url[0] ? l->o->conf.database_listen_url : l->o->conf.database_url,
        .application_name = "tasker-orchestratord-listen",
        .connect_timeout_ms = 10000,
    };
    l->conn = db_conn_start(l->o->base, &cp, listener_on_event, l);
    if (!l->conn) {
        l->failures++;
        listener_schedule_retry(l);
    }
}

static void listener_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    db_conn_free(l->conn);
    l->conn = NULL;
    if (!l->stopping)
        listener_connect(l);
}

struct listener *listener_new(struct orchd *o, listener_message_fn on_message, listener_connected_fn on_connected,
                              void *arg)
{
    struct listener *l = calloc(1, sizeof *l);
    if (!l) {
        log_error("listen", "out of memory");
        return NULL;
    }
    l->o = o;
    l->on_message = on_message;
    l->on_connected = on_connected;
    l->arg = arg;
    l->retry = evtimer_new(o->base, listener_on_retry, l);
    if (!l->retry) {
        log_error("listen", "out of memory");
        free(l);
        return NULL;
    }
    return l;
}

void listener_start(struct listener *l)
{
    listener_connect(l);
}

void listener_stop(struct listener *l)
{
    l->stopping = true;
    evtimer_del(l->retry);
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    db_conn_free(l->conn);
    event_free(l->retry);
    free(l);
}

bool listener_connected(const struct listener *l)
{
    return l->connected;
}

unsigned long long listener_notifications(const struct listener *l)
{
    return l->notifications;
}
