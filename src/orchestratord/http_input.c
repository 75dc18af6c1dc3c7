/* http_input.c — pure checks of an API request's input (JSON bodies, query strings), kept apart
 * from http_api.c's I/O so that they can be fuzzed on their own. */
#include "http_input.h"

#include "names.h"

#include <sys/queue.h> /* TAILQ_*, for struct evkeyvalq */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HINPUT_DEFAULT_PER_PAGE 25

static bool fail(struct hinput_error *err, enum hutil_error code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(struct hinput_error *err, enum hutil_error code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

json_t *hinput_body_parse(const char *body, size_t n, struct hinput_error *err)
{
    if (memchr(body, '\0', n)) {
        fail(err, HUTIL_ERR_INVALID_JSON, "the body contains a NUL byte");
        return NULL;
    }
    json_error_t jerr;
    /* Integers as reals: a 30-digit number in a context is valid JSON; the text is what the
     * database gets, so no digit is lost. Duplicate keys are refused (which one would count?). */
    json_t *j = json_loadb(body, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
    if (!j) {
        fail(err, HUTIL_ERR_INVALID_JSON, "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
             jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(err, HUTIL_ERR_INVALID_REQUEST, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

enum field_type {
    FT_STRING,     /* a string */
    FT_NONEMPTY,   /* a non-empty string */
    FT_OBJECT,     /* an object */
    FT_STRINGS,    /* an array of strings */
    FT_INTEGER,    /* a number without a fraction */
    FT_UUID,       /* a string holding a UUID */
    FT_UUIDS,      /* a non-empty array of strings holding UUIDs */
    FT_BOOLEAN     /* true or false */
};

/* field: obj[key] is absent (or null, unless required) or of type t; else fail naming the field. */
static bool field(const json_t *obj, const char *key, enum field_type t, bool required, struct hinput_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return !required || fail(err, HUTIL_ERR_INVALID_REQUEST, "%s is required", key);
    const char *want = NULL;
    switch (t) {
    case FT_STRING:
        if (!json_is_string(v))
            want = "a string";
        break;
    case FT_NONEMPTY:
        if (!json_is_string(v) || json_string_length(v) == 0)
            want = "a non-empty string";
        break;
    case FT_OBJECT:
        if (!json_is_object(v))
            want = "a JSON object";
        break;
    case FT_STRINGS:
        if (!json_is_array(v)) {
            want = "an array of strings";
        } else {
            for (size_t i = 0; i < json_array_size(v); i++)
                if (!json_is_string(json_array_get(v, i)))
                    want = "an array of strings";
        }
        break;
    case FT_INTEGER: {
        double d = json_number_value(v);
        if (!json_is_number(v) || d != floor(d) || fabs(d) > 2147483647.0)
            want = "an integer";
        break;
    }
    case FT_UUID:
        if (!json_is_string(v) || !hutil_uuid_valid(json_string_value(v)))
            want = "a UUID (8-4-4-4-12 hex digits)";
        break;
    case FT_UUIDS:
        if (!json_is_array(v) || json_array_size(v) == 0) {
            want = "a non-empty array of UUIDs";
        } else {
            for (size_t i = 0; i < json_array_size(v); i++) {
                const json_t *u = json_array_get(v, i);
                if (!json_is_string(u) || !hutil_uuid_valid(json_string_value(u)))
                    want = "a non-empty array of UUIDs";
            }
        }
        break;
    case FT_BOOLEAN:
        if (!json_is_boolean(v))
            want = "true or false";
        break;
    }
    return !want || fail(err, HUTIL_ERR_INVALID_REQUEST, "%s must be %s", key, want);
}

bool hinput_task_create(const json_t *body, struct hinput_error *err)
{
    if (!field(body, "name", FT_NONEMPTY, true, err) || !field(body, "namespace", FT_STRING, false, err) ||
        !field(body, "version", FT_STRING, false, err) || !field(body, "context", FT_OBJECT, false, err) ||
        !field(body, "initiator", FT_STRING, false, err) || !field(body, "source_system", FT_STRING, false, err) ||
        !field(body, "reason", FT_STRING, false, err) || !field(body, "tags", FT_STRINGS, false, err) ||
        !field(body, "priority", FT_INTEGER, false, err) || !field(body, "correlation_id", FT_UUID, false, err) ||
        !field(body, "parent_correlation_id", FT_UUID, false, err) ||
        !field(body, "idempotency_key", FT_STRING, false, err) || !field(body, "requested_at", FT_STRING, false, err))
        return false;
    const char *ns = json_string_value(json_object_get(body, "namespace"));
    if (ns && !namespace_name_valid(ns))
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "namespace must match ^[a-z][a-z0-9_]{0,28}$");
    return true;
}

bool hinput_step_resolve(const json_t *body, const char **by_key, struct hinput_error *err)
{
    if (!field(body, "action_type", FT_STRING, true, err) || !field(body, "reason", FT_STRING, false, err))
        return false;
    const char *action = json_string_value(json_object_get(body, "action_type"));
    if (strcmp(action, "reset_for_retry") == 0) {
        *by_key = "reset_by";
    } else if (strcmp(action, "resolve_manually") == 0) {
        *by_key = "resolved_by";
    } else if (strcmp(action, "complete_manually") == 0) {
        *by_key = "completed_by";
        if (!field(body, "completion_data", FT_OBJECT, true, err))
            return false;
        if (!json_object_get(json_object_get(body, "completion_data"), "result"))
            return fail(err, HUTIL_ERR_INVALID_REQUEST, "completion_data.result is required for complete_manually");
    } else {
        return fail(err, HUTIL_ERR_INVALID_REQUEST,
                    "action_type must be reset_for_retry, resolve_manually or complete_manually");
    }
    return field(body, *by_key, FT_STRING, false, err);
}

bool hinput_dlq_update(const json_t *body, struct hinput_error *err)
{
    if (!field(body, "resolution_status", FT_STRING, false, err) ||
        !field(body, "resolution_notes", FT_STRING, false, err) || !field(body, "resolved_by", FT_STRING, false, err) ||
        !field(body, "metadata", FT_OBJECT, false, err) || !field(body, "recover", FT_BOOLEAN, false, err) ||
        !field(body, "steps", FT_UUIDS, false, err))
        return false;
    const json_t *steps = json_object_get(body, "steps");
    if (steps && !json_is_null(steps) && !json_is_true(json_object_get(body, "recover")))
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "steps goes with recover: true");
    return true;
}

bool hinput_task_recover(const json_t *body, struct hinput_error *err)
{
    return field(body, "steps", FT_UUIDS, false, err) && field(body, "reason", FT_STRING, false, err) &&
           field(body, "recovered_by", FT_STRING, false, err);
}

const char *const *hinput_query_allowed(enum route_id id)
{
    static const char *const tasks[] = {"page", "per_page", "namespace", "state", "status",
                                        "name", "initiator", "source_system", NULL};
    static const char *const templates[] = {"page", "per_page", "namespace", NULL};
    static const char *const dlq[] = {"page", "per_page", "resolution_status", NULL};
    static const char *const cancel[] = {"reason", "cancelled_by", NULL};
    static const char *const task_graph[] = {"format", "fold", NULL};
    static const char *const template_graph[] = {"format", NULL};
    switch (id) {
    case ROUTE_TASKS_LIST: return tasks;
    case ROUTE_TEMPLATES_LIST: return templates;
    case ROUTE_DLQ_LIST: return dlq;
    case ROUTE_TASK_CANCEL: return cancel;
    case ROUTE_TASK_GRAPH: return task_graph;
    case ROUTE_TEMPLATE_GRAPH: return template_graph;
    default: return NULL;
    }
}

bool hinput_query_parse(const char *qs, enum route_id id, struct evkeyvalq *kv, struct hinput_error *err)
{
    TAILQ_INIT(kv);
    if (!qs || !*qs)
        return true;
    /* %00 would end the value at the NUL: "?namespace=%00" must not mean "no filter". */
    if (hutil_query_has_nul(qs))
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "the query string contains an encoded NUL (%%00)");
    if (evhttp_parse_query_str(qs, kv) != 0) {
        evhttp_clear_headers(kv);
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "malformed query string");
    }
    const char *const *allowed = hinput_query_allowed(id);
    struct evkeyval *p;
    TAILQ_FOREACH(p, kv, next) {
        /* A repeated parameter: which one would count? (A proxy may pick the other.) */
        for (struct evkeyval *q = TAILQ_FIRST(kv); q != p; q = TAILQ_NEXT(q, next)) {
            if (strcmp(q->key, p->key) == 0) {
                fail(err, HUTIL_ERR_INVALID_REQUEST, "query parameter \"%.64s\" is given more than once", p->key);
                evhttp_clear_headers(kv);
                return false;
            }
        }
        bool ok = false;
        for (const char *const *a = allowed; a && *a && !ok; a++)
            ok = strcmp(p->key, *a) == 0;
        if (!ok) {
            fail(err, HUTIL_ERR_INVALID_REQUEST, "unknown query parameter \"%.64s\"%s", p->key,
                 allowed ? "" : " (this endpoint takes none)");
            evhttp_clear_headers(kv);
            return false;
        }
    }
    return true;
}

bool hinput_query_page(const struct evkeyvalq *kv, char page[16], char per_page[16], struct hinput_error *err)
{
    long p = 1, pp = HINPUT_DEFAULT_PER_PAGE;
    const char *v = evhttp_find_header(kv, "page");
    if (v && !hutil_parse_int(v, 1, 1000000000L, &p))
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "page must be an integer >= 1");
    v = evhttp_find_header(kv, "per_page");
    if (v && !hutil_parse_int(v, 1, 100, &pp))
        return fail(err, HUTIL_ERR_INVALID_REQUEST, "per_page must be an integer between 1 and 100");
    snprintf(page, 16, "%ld", p);
    snprintf(per_page, 16, "%ld", pp);
    return true;
}

bool hinput_graph_query(const struct evkeyvalq *kv, enum route_id id, char fold[16], struct hinput_error *err)
{
    const char *format = evhttp_find_header(kv, "format");
    if (format && *format && strcmp(format, "dot") != 0)
        return fail(err, HUTIL_ERR_INVALID_REQUEST,
                    "format \"%.32s\" is not served: the API sends Graphviz DOT only (format=dot); for svg or png "
                    "use `taskerctl %s visualize … --format svg|png`, which renders the DOT",
                    format, id == ROUTE_TEMPLATE_GRAPH ? "template" : "task");
    long n = HINPUT_DEFAULT_FOLD;
    const char *v = id == ROUTE_TASK_GRAPH ? evhttp_find_header(kv, "fold") : NULL;
    if (v && *v && !hutil_parse_int(v, 0, 100000, &n))
        return fail(err, HUTIL_ERR_INVALID_REQUEST,
                    "fold must be an integer between 0 and 100000 (batches of more workers are drawn as one node; "
                    "0 draws every worker)");
    snprintf(fold, 16, "%ld", n);
    return true;
}
