/* http_route.h — the HTTP API's routing table: path patterns, methods, permissions; matching a
 * request path to a route with its captured segments. Pure (no libevent): unit-tested. */
#ifndef TASKER_HTTP_ROUTE_H
#define TASKER_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "http_auth.h"

/* Request methods as bits (so a set of them is an Allow list). */
enum route_method {
    RM_GET = 1 << 0,
    RM_POST = 1 << 1,
    RM_PATCH = 1 << 2,
    RM_DELETE = 1 << 3,
    RM_PUT = 1 << 4,
    RM_HEAD = 1 << 5,
    RM_OPTIONS = 1 << 6,
    RM_OTHER = 1 << 7
};

/* Every route: X(id suffix, method, path pattern, permission or -1 for public, metrics label).
 * "{}" in a pattern matches one non-empty path segment, captured in order. */
#define ROUTES(X)                                                                                  \
    X(HEALTH, RM_GET | RM_HEAD, "/health", -1, "health")                                           \
    X(HEALTH_LIVE, RM_GET | RM_HEAD, "/health/live", -1, "health_live")                            \
    X(HEALTH_READY, RM_GET | RM_HEAD, "/health/ready", -1, "health_ready")                         \
    X(METRICS, RM_GET, "/metrics", -1, "metrics")                                                  \
    X(TASKS_LIST, RM_GET, "/v1/tasks", AUTH_TASKS_LIST, "tasks_list")                              \
    X(TASK_CREATE, RM_POST, "/v1/tasks", AUTH_TASKS_CREATE, "task_create")                         \
    X(TASK_GET, RM_GET, "/v1/tasks/{}", AUTH_TASKS_READ, "task_get")                               \
    X(TASK_CANCEL, RM_DELETE, "/v1/tasks/{}", AUTH_TASKS_CANCEL, "task_cancel")                    \
    X(TASK_RECOVER, RM_POST, "/v1/tasks/{}/recover", AUTH_STEPS_RESOLVE, "task_recover")           \
    X(STEPS_LIST, RM_GET, "/v1/tasks/{}/workflow_steps", AUTH_STEPS_READ, "steps_list")            \
    X(STEP_GET, RM_GET, "/v1/tasks/{}/workflow_steps/{}", AUTH_STEPS_READ, "step_get")             \
    X(STEP_RESOLVE, RM_PATCH, "/v1/tasks/{}/workflow_steps/{}", AUTH_STEPS_RESOLVE, "step_resolve") \
    X(STEP_AUDIT, RM_GET, "/v1/tasks/{}/workflow_steps/{}/audit", AUTH_STEPS_READ, "step_audit")   \
    X(TASK_GRAPH, RM_GET, "/v1/tasks/{}/graph", AUTH_TASKS_READ, "task_graph")                     \
    X(TEMPLATES_LIST, RM_GET, "/v1/templates", AUTH_TEMPLATES_READ, "templates_list")              \
    X(TEMPLATE_REGISTER, RM_POST, "/v1/templates", AUTH_TEMPLATES_WRITE, "template_register")      \
    X(TEMPLATE_GET, RM_GET, "/v1/templates/{}/{}/{}", AUTH_TEMPLATES_READ, "template_get")         \
    X(TEMPLATE_GRAPH, RM_GET, "/v1/templates/{}/{}/{}/graph", AUTH_TEMPLATES_READ, "template_graph") \
    X(DLQ_LIST, RM_GET, "/v1/dlq", AUTH_DLQ_READ, "dlq_list")                                      \
    X(DLQ_STATS, RM_GET, "/v1/dlq/stats", AUTH_DLQ_READ, "dlq_stats")                              \
    X(DLQ_UPDATE, RM_PATCH, "/v1/dlq/{}", AUTH_DLQ_UPDATE, "dlq_update")

enum route_id {
    ROUTE_NONE = -1, /* no route: unknown path, bad path or method not allowed */
#define ROUTE_ENUM(id, method, pattern, perm, label) ROUTE_##id,
    ROUTES(ROUTE_ENUM)
#undef ROUTE_ENUM
    ROUTE_COUNT
};

#define ROUTE_PARAMS_MAX 3
#define ROUTE_PARAM_MAX 256 /* a decoded segment, NUL included (template names go to 255) */

enum route_result {
    ROUTE_OK,                 /* m->id and m->params are set */
    ROUTE_NOT_FOUND,          /* no pattern matches the path */
    ROUTE_METHOD_NOT_ALLOWED, /* a pattern matches; m->allow lists the methods it takes */
    ROUTE_BAD_PATH            /* malformed percent-encoding, an encoded NUL, or a segment too long */
};

struct route_match {
    enum route_id id;
    int nparams;
    char params[ROUTE_PARAMS_MAX][ROUTE_PARAM_MAX];
    unsigned allow; /* set for ROUTE_OK too: every method the matched path takes */
};

/* route_match: match path (the URI path, still percent-encoded, without the query) for method.
 * A single trailing '/' is ignored ("/v1/tasks/" is "/v1/tasks"). */
enum route_result route_match(const char *path, unsigned method, struct route_match *m);

/* route_label: the route's short name (metrics label, logs); "none" for ROUTE_NONE. */
const char *route_label(enum route_id id);

/* route_permission: what the route needs when auth is on; false for public routes. */
bool route_permission(enum route_id id, enum auth_perm *perm);

/* route_allow_header: the methods in allow as an Allow header value ("GET, PATCH"). */
void route_allow_header(unsigned allow, char *out, size_t outlen);

/* route_percent_decode: decode %XX escapes of s[0..n) into out (NUL-terminated). false on a bad
 * escape, an encoded NUL, or when the result does not fit. '+' stays '+' (paths are not forms). */
bool route_percent_decode(const char *s, size_t n, char *out, size_t outlen);

#endif
