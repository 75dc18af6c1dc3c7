/* http_conn.h — the HTTP server's guard on its connections: a deadline for each whole request
 * (web.request_read_timeout_ms) and a cap on open connections (web.max_connections). */
#ifndef TASKER_HTTP_CONN_H
#define TASKER_HTTP_CONN_H

#include <stdbool.h>

struct conf;
struct event_base;
struct evhttp;
struct evhttp_request;
struct http_conns;

/* Why the guard closed a connection (for /metrics). */
enum http_conn_closed {
    HTTP_CONN_CLOSED_READ_TIMEOUT,    /* the request had not arrived whole within the deadline */
    HTTP_CONN_CLOSED_MAX_CONNECTIONS, /* accepted over web.max_connections */
    HTTP_CONN_CLOSED_COUNT
};

/* http_conns_new: watch every connection http accepts from now on (it installs http's bufferevent
 * callback). conf is read at each use, so reloads apply to connections accepted afterwards (the
 * cap) and to the next deadline armed (the timeout). NULL when out of memory (logged). */
struct http_conns *http_conns_new(struct event_base *base, struct evhttp *http, const struct conf *conf)
    __attribute__((warn_unused_result));

/* http_conns_request_arrived: req has arrived whole (evhttp's request callback): its connection's
 * deadline stops until the answer to req is sent, then runs again for the next request. */
void http_conns_request_arrived(struct http_conns *c, struct evhttp_request *req);

/* http_conns_open: connections open now. http_conns_closed: how many the guard closed, by why. */
int http_conns_open(const struct http_conns *c);
unsigned long long http_conns_closed(const struct http_conns *c, enum http_conn_closed why);

/* http_conns_free: release (NULL-safe). Call after evhttp_free, which closes the connections. */
void http_conns_free(struct http_conns *c);

#endif
