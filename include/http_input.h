/* http_input.h — pure checks of an API request's input before any SQL: the JSON body of each route
 * that takes one, and the query string of each route that reads one. No I/O: fuzzed (tests/fuzz). */
#ifndef TASKER_HTTP_INPUT_H
#define TASKER_HTTP_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "http_route.h"
#include "http_util.h"

struct evkeyvalq;

/* Why the input was refused: the error to answer and its human message. */
struct hinput_error {
    enum hutil_error code;
    char message[256];
};

/* hinput_body_parse: body[0..n) as a JSON object (new reference). NULL and err filled when it holds
 * a NUL byte, is not JSON (duplicate keys included), or is JSON but not an object. Integers are
 * decoded as reals: the text, not the number, is what the database gets. */
json_t *hinput_body_parse(const char *body, size_t n, struct hinput_error *err) __attribute__((warn_unused_result));

/* hinput_task_create: POST /v1/tasks — field types, the namespace rule. */
bool hinput_task_create(const json_t *body, struct hinput_error *err);

/* hinput_step_resolve: PATCH /v1/tasks/{}/workflow_steps/{} — the action and its fields; *by_key
 * is the field naming who acts for that action ("reset_by", "resolved_by", "completed_by"). */
bool hinput_step_resolve(const json_t *body, const char **by_key, struct hinput_error *err);

/* hinput_dlq_update: PATCH /v1/dlq/{} — field types. */
bool hinput_dlq_update(const json_t *body, struct hinput_error *err);

/* hinput_task_recover: POST /v1/tasks/{uuid}/recover's body {steps?, reason?, recovered_by?}
 * (the body is optional: check it only when there is one). steps: a non-empty array of UUIDs. */
bool hinput_task_recover(const json_t *body, struct hinput_error *err);

/* hinput_query_allowed: the query parameters route takes (NULL-terminated), or NULL: none. */
const char *const *hinput_query_allowed(enum route_id id);

/* hinput_query_parse: parse the query string qs (without '?'; NULL or "" = none) into kv, refusing
 * parameters route does not take. On true kv is initialized (maybe empty) and the caller clears
 * it (evhttp_clear_headers); on false there is nothing to free. */
bool hinput_query_parse(const char *qs, enum route_id id, struct evkeyvalq *kv, struct hinput_error *err);

/* hinput_graph_query: the query of GET …/graph (ROUTE_TASK_GRAPH, ROUTE_TEMPLATE_GRAPH): format
 * absent, empty or "dot" (the only format served; anything else is refused with a message that
 * names taskerctl's visualize, which renders SVG and PNG), and for a task fold: batches of more
 * than fold workers are drawn as one node (0..100000, 0 = never; default HINPUT_DEFAULT_FOLD),
 * as decimal text. */
#define HINPUT_DEFAULT_FOLD 8
bool hinput_graph_query(const struct evkeyvalq *kv, enum route_id id, char fold[16], struct hinput_error *err);

/* hinput_query_page: page (>= 1, default 1) and per_page (1..100, default 25) from kv, as decimal text. */
bool hinput_query_page(const struct evkeyvalq *kv, char page[16], char per_page[16], struct hinput_error *err);

#endif
