/* http_api.h — the HTTP API (DESIGN §7): evhttp on the daemon's loop, JSON via jansson, every
 * database access through the pool (asynchronous), every error a JSON body with a stable code. */
#ifndef TASKER_HTTP_API_H
#define TASKER_HTTP_API_H

#include <stdbool.h>

struct orchd;
struct http_api;

/* http_api_new: the component, idle (no socket yet). NULL only when out of memory (logged). With
 * web.enabled = false every other call is a no-op and http_api_bound() stays false. */
struct http_api *http_api_new(struct orchd *o) __attribute__((warn_unused_result));

/* http_api_start: bind web.bind_address (port 0 = any free port; the port is logged) and serve.
 * false when the address cannot be bound (logged): the daemon refuses to start. */
bool http_api_start(struct http_api *h) __attribute__((warn_unused_result));

/* http_api_bound: the listener is up (READY=1 waits for it when web.enabled). */
bool http_api_bound(const struct http_api *h);

/* http_api_port: the port actually bound, 0 before start. */
int http_api_port(const struct http_api *h);

/* http_api_reload: after a SIGHUP applied a configuration: re-read the JWT key files (a rotated
 * key replaces the old one even when the configuration text is the same). */
void http_api_reload(struct http_api *h);

/* http_api_stop: close the listening socket. Requests in flight finish; requests arriving on
 * connections already open get 503 shutting_down with Connection: close. */
void http_api_stop(struct http_api *h);

/* http_api_free: answer what is still open (503), close every connection, release (NULL-safe).
 * Call after db_pool_free, so that no query callback can reach a freed request. */
void http_api_free(struct http_api *h);

#endif
