/* http_conn.c — the HTTP server's guard on its connections: a deadline for each whole request
 * (web.request_read_timeout_ms) and a cap on open connections (web.max_connections).
 *
 * evhttp's own timeout applies to each read, so a client sending a byte a second keeps a request
 * head open for ever, and evhttp accepts connections without limit. libevent 2.1 has no hook at
 * accept time except the bufferevent callback, so that is where a connection is first seen: we
 * create its bufferevent (as evhttp would), then, once evhttp has wrapped it in its connection
 * (event_active: right after the accept callback, before any byte is read), we take the
 * connection from the bufferevent's callback argument and register a close callback, our one
 * reliable signal that the connection is gone. The deadline runs from then until the request
 * reaches the API's callback, and again from each answer sent to the next request, so it also
 * bounds idle keep-alive connections. A connection past the cap is closed right away, unanswered.
 */
#include "http_conn.h"

#include "conf.h"
#include "log.h"
#include "timer.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>
#include <time.h>

struct conn {
    struct http_conns *c;
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct evhttp_connection *evcon; /* NULL until attached */
    struct event *attach;            /* one shot, right after the accept */
    struct event *deadline;
    bool busy;                       /* a request is with the API: no deadline */
};

struct http_conns {
    struct event_base *base;
    const struct conf *conf;
    struct conn *list;
    int open;
    unsigned long long closed[HTTP_CONN_CLOSED_COUNT];
    long long cap_logged_ms;         /* the last "max_connections reached" line (one a second) */
};

static void conn_drop(struct conn *k)
{
    struct http_conns *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->list = k->next;
    if (k->next)
        k->next->prev = k->prev;
    c->open--;
    if (k->attach)
        event_free(k->attach);
    if (k->deadline)
        event_free(k->deadline);
    free(k);
}

static struct conn *conn_of(struct http_conns *c, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    for (struct conn *k = c->list; k && bev; k = k->next)
        if (k->bev == bev)
            return k;
    return NULL;
}

static void conn_arm(struct conn *k)
{
    k->busy = false;
    timer_in_ms(k->deadline, k->c->conf->web_request_read_timeout_ms);
}

/* on_close: evhttp is closing the connection (whoever decided so). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_drop(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *k = arg;
    if (k->busy || !k->evcon)
        return;
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(k->evcon, &peer, &port);
    log_info("http", "closing the connection from %s:%u: request not complete within %d ms (web.request_read_timeout_ms)",
             peer ? peer : "?", (unsigned)port, k->c->conf->web_request_read_timeout_ms);
    k->c->closed[HTTP_CONN_CLOSED_READ_TIMEOUT]++;
    /* No request of it is with the API (busy is false), so evhttp may free everything. */
    evhttp_connection_free(k->evcon); /* calls on_close, which frees k */
}

static void on_attach(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *k = arg;
    struct http_conns *c = k->c;
    struct bufferevent *bev = k->bev;
    bufferevent_data_cb readcb = NULL;
    bufferevent_event_cb eventcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);
    /* evhttp's callback argument is its connection. No callback: evhttp already gave the
     * connection up (bufferevent_free clears them); our reference kept the memory valid. */
    struct evhttp_connection *evcon = cbarg;
    if (!readcb || !evcon || evhttp_connection_get_bufferevent(evcon) != bev) {
        conn_drop(k);
        bufferevent_decref(bev);
        return;
    }
    k->evcon = evcon;
    evhttp_connection_set_closecb(evcon, on_close, k);
    bufferevent_decref(bev); /* the connection holds its own */
    if (c->open > c->conf->web_max_connections) {
        c->closed[HTTP_CONN_CLOSED_MAX_CONNECTIONS]++;
        long long now = mono_ms();
        if (now - c->cap_logged_ms >= 1000) {
            char *peer = NULL;
            ev_uint16_t port = 0;
            evhttp_connection_get_peer(evcon, &peer, &port);
            log_warn("http", "web.max_connections (%d) reached: closing the new connection from %s (%llu so far)",
                     c->conf->web_max_connections, peer ? peer : "?",
                     c->closed[HTTP_CONN_CLOSED_MAX_CONNECTIONS]);
            c->cap_logged_ms = now;
        }
        evhttp_connection_free(evcon); /* calls on_close, which frees k */
        return;
    }
    conn_arm(k);
}

/* on_new_bev: evhttp accepted a connection and asks for its bufferevent. */
static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    struct http_conns *c = arg;
    /* Options 0, as evhttp's own: evhttp closes the socket itself. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    struct conn *k = bev ? calloc(1, sizeof *k) : NULL;
    if (k) {
        k->c = c;
        k->bev = bev;
        k->attach = event_new(base, -1, 0, on_attach, k);
        k->deadline = evtimer_new(base, on_deadline, k);
    }
    if (!k || !k->attach || !k->deadline) {
        /* Out of memory: this connection goes unguarded (evhttp makes a bufferevent if we return
         * none), which beats refusing it. */
        log_error("http", "out of memory: a connection without read deadline");
        if (k) {
            if (k->attach)
                event_free(k->attach);
            if (k->deadline)
                event_free(k->deadline);
            free(k);
        }
        return bev;
    }
    k->next = c->list;
    if (c->list)
        c->list->prev = k;
    c->list = k;
    c->open++;
    bufferevent_incref(bev); /* until on_attach: evhttp may free it first */
    event_active(k->attach, EV_TIMEOUT, 1);
    return bev;
}

/* on_complete: the answer to a request has been sent; the connection waits for the next one. */
static void on_complete(struct evhttp_request *req, void *arg)
{
    struct conn *k = conn_of(arg, evhttp_request_get_connection(req));
    if (k)
        conn_arm(k);
}

void http_conns_request_arrived(struct http_conns *c, struct evhttp_request *req)
{
    struct conn *k = conn_of(c, evhttp_request_get_connection(req));
    if (!k)
        return;
    k->busy = true;
    evtimer_del(k->deadline);
    evhttp_request_set_on_complete_cb(req, on_complete, c);
}

struct http_conns *http_conns_new(struct event_base *base, struct evhttp *http, const struct conf *conf)
{
    struct http_conns *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("http", "out of memory");
        return NULL;
    }
    c->base = base;
    c->conf = conf;
    evhttp_set_bevcb(http, on_new_bev, c);
    return c;
}

int http_conns_open(const struct http_conns *c)
{
    return c ? c->open : 0;
}

unsigned long long http_conns_closed(const struct http_conns *c, enum http_conn_closed why)
{
    return c && why < HTTP_CONN_CLOSED_COUNT ? c->closed[why] : 0;
}

void http_conns_free(struct http_conns *c)
{
    if (!c)
        return;
    /* evhttp_free closed the attached ones (on_close); what is left was never attached. */
    while (c->list) {
        struct bufferevent *bev = c->list->evcon ? NULL : c->list->bev;
        conn_drop(c->list);
        if (bev)
            bufferevent_decref(bev);
    }
    free(c);
}
