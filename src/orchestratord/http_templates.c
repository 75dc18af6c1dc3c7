/* http_templates.c — /v1/templates: register (POST), list, get, and a template's graph (DOT). */
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
#include "template_file.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void register_on_rows(struct api_req *r, const struct db_rows *rows)
{
    if (db_rows_count(rows) != 1) {
        api_error(r, HUTIL_ERR_INTERNAL, "internal error (register_task_template returned no row)");
        return;
    }
    const char *status = db_rows_text(rows, 0, 0);
    bool created = strcmp(status, "created") == 0;
    if (strcmp(status, "unchanged") != 0) {
        r->h->o->metrics.templates_registered++;
        log_info("http", "template %s/%s@%s %s%s%s", body_string(r, "namespace_name"), body_string(r, "name"),
                 body_string(r, "version") ? body_string(r, "version") : "0.1.0", status,
                 r->key_name[0] ? " by key " : "", r->key_name);
    }
    api_send_json_text(r, created ? 201 : 200, db_rows_text(rows, 0, 1), NULL);
}

/* body_yaml: a YAML body (Content-Type application/yaml and its aliases) read by the shared
 * loader into r->json, and r->body replaced by its JSON text, which is what the SQL takes. A YAML
 * error is the template's fault: 400 invalid_template with its line and column. */
static bool body_yaml(struct api_req *r)
{
    size_t n;
    if (!body_read(r, false, &n))
        return false;
    struct template_error err;
    r->json = template_parse(r->body, n, TEMPLATE_FORMAT_YAML, NULL, &err);
    if (!r->json) {
        api_error(r, HUTIL_ERR_INVALID_TEMPLATE, "invalid YAML: %s", err.text);
        return false;
    }
    char *text = json_dumps(r->json, JSON_COMPACT);
    if (!text) {
        api_error(r, HUTIL_ERR_INTERNAL, "out of memory");
        return false;
    }
    free(r->body);
    r->body = text;
    return true;
}

void handle_template_register(struct api_req *r)
{
    const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Content-Type");
    bool yaml = template_format_for_content_type(ctype) == TEMPLATE_FORMAT_YAML;
    if (!(yaml ? body_yaml(r) : body_object(r, false)))
        return;
    const char *params[1] = {r->body};
    (void)api_query(r, STMT_API_REGISTER_TEMPLATE, params, 1, register_on_rows, NULL);
}

void handle_templates_list(struct api_req *r)
{
    struct query q;
    char page[16], per_page[16];
    if (!query_parse(r, &q))
        return;
    if (query_page(r, &q, page, per_page)) {
        const char *ns = query_get(&q, "namespace");
        if (ns && !namespace_name_valid(ns)) {
            api_error(r, HUTIL_ERR_INVALID_REQUEST, "namespace must match ^[a-z][a-z0-9_]{0,28}$");
        } else {
            const char *params[3] = {ns, page, per_page};
            (void)api_query(r, STMT_API_LIST_TEMPLATES, params, 3, doc_on_rows, NULL);
        }
    }
    query_free(&q);
}

void handle_template_get(struct api_req *r)
{
    const char *params[3] = {r->m.params[0], r->m.params[1], r->m.params[2]};
    (void)api_query(r, STMT_API_GET_TEMPLATE, params, 3, steps_on_rows, NULL);
}

/* GET /v1/templates/{ns}/{name}/{version}/graph: the template's DAG as Graphviz DOT (?format=dot). */
void handle_template_graph(struct api_req *r)
{
    struct query q;
    struct hinput_error e;
    char fold[16];
    if (!query_parse(r, &q))
        return;
    if (hinput_graph_query(&q.kv, r->route, fold, &e) || input_refused(r, &e)) {
        const char *params[3] = {r->m.params[0], r->m.params[1], r->m.params[2]};
        (void)api_query(r, STMT_API_TEMPLATE_GRAPH, params, 3, graph_on_rows, NULL);
    }
    query_free(&q);
}
