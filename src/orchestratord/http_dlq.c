/* http_dlq.c — /v1/dlq: the dead-letter queue of tasks: list, stats, update (and recover). */
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

void handle_dlq_list(struct api_req *r)
{
    struct query q;
    char page[16], per_page[16];
    if (!query_parse(r, &q))
        return;
    if (query_page(r, &q, page, per_page)) {
        const char *params[3] = {query_get(&q, "resolution_status"), page, per_page};
        (void)api_query(r, STMT_API_LIST_DLQ, params, 3, doc_on_rows, NULL);
    }
    query_free(&q);
}

static void dlq_on_rows(struct api_req *r, const struct db_rows *rows)
{
    char note[HTTP_ACTOR_MAX + 8];
    if (db_rows_count(rows) == 1 && !db_rows_isnull(rows, 0, 0))
        log_info("http", "DLQ entry %s updated (by %s%s)", r->m.params[0], r->actor, claimed_note(r, note, sizeof note));
    reply_document(r, rows, "DLQ entry");
}

void handle_dlq_stats(struct api_req *r)
{
    (void)api_query(r, STMT_API_DLQ_STATS, NULL, 0, doc_on_rows, NULL);
}

void handle_dlq_update(struct api_req *r)
{
    struct hinput_error e;
    if (!uuid_params(r, 1) || !body_object(r, false) || (!hinput_dlq_update(r->json, &e) && !input_refused(r, &e)))
        return;
    if (!set_actor(r, "resolved_by", body_string(r, "resolved_by")))
        return;
    /* Recovering runs the task's steps again: what steps:resolve allows (PATCH of a step). */
    if (json_is_true(json_object_get(r->json, "recover")) && r->h->o->conf.web_auth_enabled &&
        !auth_allows(r->grants, AUTH_STEPS_RESOLVE)) {
        api_error(r, HUTIL_ERR_FORBIDDEN, "API key %s lacks the permission %s (needed to recover the task)",
                  r->key_name, auth_perm_name(AUTH_STEPS_RESOLVE));
        return;
    }
    const char *params[3] = {r->m.params[0], r->body, r->actor};
    (void)api_query(r, STMT_API_UPDATE_DLQ, params, 3, dlq_on_rows, NULL);
}
