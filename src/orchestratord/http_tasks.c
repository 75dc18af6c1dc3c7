/* http_tasks.c — /v1/tasks and their workflow steps: create, list, get, cancel, recover, graph; list,
 * get, audit and resolve steps. The documents come from SQL (sql/0260_tasker_api.sql, and
 * sql/0265_tasker_graph.sql for the graph). */
#include "http_api_req.h"

#include "completions.h"
#include "db_pool.h"
#include "listen.h"
#include "log.h"
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

static void create_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (db_rows_count(rows) != 1) {
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (create_task returned no row)");
        return;
    }
    const char *uuid = db_rows_text(rows, 0, 1);
    if (strcmp(db_rows_text(rows, 0, 0), "t") != 0) {
        json_t *extra = json_pack("{s:s, s:s}", "task_uuid", uuid, "state", db_rows_text(rows, 0, 2));
        api_error_x(r, HUTIL_ERR_DUPLICATE_TASK,
                    "a task with the same identity already exists (same template and context, or the same "
                    "idempotency_key)",
                    extra, NULL);
        json_decref(extra);
        return;
    }
    metrics_task_created(&r->h->o->metrics, r->ns, db_rows_int(rows, 0, 4));
    log_info("http", "created task %s in namespace %s%s%s", uuid, r->ns, r->key_name[0] ? " by key " : "",
             r->key_name);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/tasks/%s", uuid);
    const char *const hdr[] = {"Location", loc, NULL};
    api_send_json_text(r, 201, db_rows_text(rows, 0, 3), hdr);
}

void handle_task_create(struct api_req *r)
{
    struct hinput_error e;
    if (!body_object(r, false) || (!hinput_task_create(r->json, &e) && !input_refused(r, &e)))
        return;
    const char *ns = body_string(r, "namespace");
    if (!ns)
        ns = "default";
    snprintf(r->ns, sizeof r->ns, "%s", ns);
    const char *params[1] = {r->body};
    (void)api_query(r, STMT_API_CREATE_TASK, params, 1, create_on_rows, NULL);
}

void handle_tasks_list(struct api_req *r)
{
    struct query q;
    char page[16], per_page[16];
    if (!query_parse(r, &q))
        return;
    if (!query_page(r, &q, page, per_page)) {
        query_free(&q);
        return;
    }
    const char *ns = query_get(&q, "namespace");
    const char *state = query_get(&q, "state");
    const char *status = query_get(&q, "status");
    enum task_state ts;
    if (state && status && strcmp(state, status) != 0) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "state and status are the same filter; give one");
    } else if (ns && !namespace_name_valid(ns)) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "namespace must match ^[a-z][a-z0-9_]{0,28}$");
    } else if ((state || status) && !task_state_parse(state ? state : status, &ts)) {
        api_error(r, HUTIL_ERR_INVALID_REQUEST, "unknown task state \"%.64s\"", state ? state : status);
    } else {
        const char *params[7] = {ns, state ? state : status, query_get(&q, "name"), query_get(&q, "initiator"),
                                 query_get(&q, "source_system"), page, per_page};
        (void)api_query(r, STMT_API_LIST_TASKS, params, 7, doc_on_rows, NULL);
    }
    query_free(&q);
}

void handle_task_get(struct api_req *r)
{
    if (!uuid_params(r, 1))
        return;
    const char *params[1] = {r->m.params[0]};
    (void)api_query(r, STMT_API_GET_TASK, params, 1, doc_on_rows, NULL);
}

static void cancel_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (db_rows_count(rows) != 1) {
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (cancel_task returned no row)");
        return;
    }
    r->h->o->metrics.tasks_cancelled++;
    char note[HTTP_ACTOR_MAX + 8];
    log_info("http", "cancelled task %s (by %s%s)", r->m.params[0], r->actor, claimed_note(r, note, sizeof note));
    api_send_json_text(r, 200, db_rows_text(rows, 0, 0), NULL);
}

/* DELETE takes no body (evhttp does not read one for DELETE): reason and cancelled_by come in the
 * query string. */
void handle_task_cancel(struct api_req *r)
{
    struct query q;
    if (!uuid_params(r, 1) || !query_parse(r, &q))
        return;
    if (set_actor(r, "cancelled_by", query_get(&q, "cancelled_by"))) {
        const char *params[4] = {r->m.params[0], query_get(&q, "reason"), r->actor, r->claimed[0] ? r->claimed : NULL};
        (void)api_query(r, STMT_API_CANCEL_TASK, params, 4, cancel_on_rows, NULL);
    }
    query_free(&q);
}

static void recover_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (db_rows_count(rows) != 1 || db_rows_isnull(rows, 0, 0)) {
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (recover_task returned no row)");
        return;
    }
    long long enqueued = db_rows_int(rows, 0, 1);
    r->h->o->metrics.steps_enqueued += (unsigned long long)(enqueued > 0 ? enqueued : 0);
    char note[HTTP_ACTOR_MAX + 8];
    log_info("http", "recovered task %s (by %s%s)", r->m.params[0], r->actor, claimed_note(r, note, sizeof note));
    api_send_json_text(r, 200, db_rows_text(rows, 0, 0), NULL);
}

/* POST /v1/tasks/{uuid}/recover: the body is optional ({} = every step in error or cancelled). */
void handle_task_recover(struct api_req *r)
{
    struct hinput_error e;
    if (!uuid_params(r, 1) || !body_object(r, true) ||
        (r->json && !hinput_task_recover(r->json, &e) && !input_refused(r, &e)) ||
        !set_actor(r, "recovered_by", body_string(r, "recovered_by")))
        return;
    const char *params[4] = {r->m.params[0], r->body, r->actor, r->claimed[0] ? r->claimed : NULL};
    (void)api_query(r, STMT_API_RECOVER_TASK, params, 4, recover_on_rows, NULL);
}

void steps_on_rows(struct api_req *r, const struct db_rows *rows)
{
    reply_document(r, rows, "task");
}

void handle_steps_list(struct api_req *r)
{
    if (!uuid_params(r, 1))
        return;
    const char *params[1] = {r->m.params[0]};
    (void)api_query(r, STMT_API_LIST_STEPS, params, 1, steps_on_rows, NULL);
}

void handle_step_get(struct api_req *r)
{
    if (!uuid_params(r, 2))
        return;
    const char *params[2] = {r->m.params[0], r->m.params[1]};
    (void)api_query(r, r->route == ROUTE_STEP_AUDIT ? STMT_API_STEP_AUDIT : STMT_API_GET_STEP, params, 2,
                    steps_on_rows, NULL);
}

static void resolve_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (db_rows_count(rows) != 1) {
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (resolve_step returned no row)");
        return;
    }
    struct metrics *m = &r->h->o->metrics;
    m->steps_resolved++;
    m->steps_enqueued += (unsigned long long)(db_rows_int(rows, 0, 1) > 0 ? db_rows_int(rows, 0, 1) : 0);
    char note[HTTP_ACTOR_MAX + 8];
    log_info("http", "%s on step %s of task %s (by %s%s)", body_string(r, "action_type"), r->m.params[1],
             r->m.params[0], r->actor, claimed_note(r, note, sizeof note));
    api_send_json_text(r, 200, db_rows_text(rows, 0, 0), NULL);
}

void handle_step_resolve(struct api_req *r)
{
    struct hinput_error e;
    const char *by_key = NULL;
    if (!uuid_params(r, 2) || !body_object(r, false) ||
        (!hinput_step_resolve(r->json, &by_key, &e) && !input_refused(r, &e)) ||
        !set_actor(r, by_key, body_string(r, by_key)))
        return;
    const char *params[5] = {r->m.params[0], r->m.params[1], r->body, r->actor, r->claimed[0] ? r->claimed : NULL};
    (void)api_query(r, STMT_API_RESOLVE_STEP, params, 5, resolve_on_rows, NULL);
}

/* GET /v1/tasks/{uuid}/graph: the task's DAG as Graphviz DOT (?format=dot, ?fold=N). */
void handle_task_graph(struct api_req *r)
{
    struct query q;
    struct hinput_error e;
    char fold[16];
    if (!uuid_params(r, 1) || !query_parse(r, &q))
        return;
    if (hinput_graph_query(&q.kv, r->route, fold, &e) || input_refused(r, &e)) {
        const char *params[2] = {r->m.params[0], fold};
        (void)api_query(r, STMT_API_TASK_GRAPH, params, 2, graph_on_rows, NULL);
    }
    query_free(&q);
}
