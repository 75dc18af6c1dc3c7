/* template_dir.c — register the templates of templates.path (TASKER_TEMPLATE_PATH) at start and on
 * SIGHUP: files read and parsed by the shared loader, then registered one after another through
 * the pool, with one summary line per load. */
#include "template_dir.h"

#include "db_pool.h"
#include "log.h"
#include "orchd.h"
#include "statements.h"
#include "template_file.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item {
    char *path;
    char *json;   /* the template as the SQL takes it */
    char *label;  /* namespace/name@version, for the log */
};

struct template_dir {
    struct orchd *o;
    void (*on_done)(void *arg);
    void *arg;
    char path[CONF_URL_MAX]; /* of the load running */
    struct item *items;
    size_t n, next;
    bool running;
    bool again;        /* a load was asked for while one ran */
    bool stopping;
    bool first_done;
    bool retry_needed; /* the last load could not reach the database for some file */
    int registered, unchanged, refused, failed;
};

struct template_dir *template_dir_new(struct orchd *o, void (*on_done)(void *arg), void *arg)
{
    struct template_dir *td = calloc(1, sizeof *td);
    if (!td)
        return NULL;
    td->o = o;
    td->on_done = on_done;
    td->arg = arg;
    return td;
}

static void items_free(struct template_dir *td)
{
    for (size_t i = 0; i < td->n; i++) {
        free(td->items[i].path);
        free(td->items[i].json);
        free(td->items[i].label);
    }
    free(td->items);
    td->items = NULL;
    td->n = td->next = 0;
}

static void finish(struct template_dir *td)
{
    if (td->path[0]) {
        char failed[160] = "";
        if (td->failed)
            snprintf(failed, sizeof failed, ", %d not registered (database unavailable; tried again when it is back)",
                     td->failed);
        log_info("templates", "%s: %d registered, %d unchanged, %d refused%s", td->path, td->registered,
                 td->unchanged, td->refused, failed);
    }
    td->retry_needed = td->failed > 0;
    items_free(td);
    td->running = false;
    td->first_done = true;
    if (td->on_done)
        td->on_done(td->arg);
    if (td->again && !td->stopping) {
        td->again = false;
        template_dir_load(td);
    }
}

static void send_next(struct template_dir *td);

static void on_registered(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct template_dir *td = arg;
    struct item *it = &td->items[td->next];
    if (err && (strcmp(err->sqlstate, "TK400") == 0 || strcmp(err->sqlstate, "TK409") == 0)) {
        /* The template's fault (invalid, or a version tasks use changed): the file says which. */
        td->refused++;
        log_error("templates", "%s: refused: %s", it->path, err->message);
    } else if (err) {
        td->failed++;
        log_warn("templates", "%s: not registered: %s", it->path, err->message);
    } else {
        const char *status = db_rows_count(rows) == 1 ? db_rows_text(rows, 0, 0) : "";
        if (strcmp(status, "unchanged") == 0) {
            td->unchanged++;
            log_debug("templates", "%s: %s unchanged", it->path, it->label);
        } else {
            td->registered++;
            log_info("templates", "%s: %s %s", it->path, it->label, status);
        }
    }
    td->next++;
    send_next(td);
}

/* send_next: one registration at a time, in path order, so a load is a steady trickle on one
 * connection and a file that depends on another's namespace finds it. */
static void send_next(struct template_dir *td)
{
    while (td->next < td->n && !td->stopping) {
        const char *params[1] = {td->items[td->next].json};
        if (db_pool_query(td->o->pool, STMT_API_REGISTER_TEMPLATE, params, 1, on_registered, td))
            return;
        /* The pool refuses while its circuit breaker is open: the rest waits for the next load. */
        td->failed += (int)(td->n - td->next);
        log_warn("templates", "%s: the database is unavailable; %zu file(s) not registered", td->path,
                 td->n - td->next);
        break;
    }
    finish(td);
}

/* label: "namespace/name@version" of a parsed template, for the log (escaped there). */
static char *label(const json_t *t)
{
    const char *ns = json_string_value(json_object_get(t, "namespace_name"));
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *version = json_string_value(json_object_get(t, "version"));
    char buf[512];
    snprintf(buf, sizeof buf, "template %s/%s@%s", ns ? ns : "?", name ? name : "?", version ? version : "0.1.0");
    return strdup(buf);
}

void template_dir_load(struct template_dir *td)
{
    if (td->stopping)
        return;
    if (td->running) {
        td->again = true;
        return;
    }
    snprintf(td->path, sizeof td->path, "%s", td->o->conf.templates_path);
    td->registered = td->unchanged = td->refused = td->failed = 0;
    td->running = true;
    if (!td->path[0]) {
        finish(td);
        return;
    }
    char **paths = NULL;
    size_t n = 0;
    struct template_error err;
    if (template_paths(td->path, &paths, &n, &err) != 0) {
        log_error("templates", "%s", err.text);
        finish(td);
        return;
    }
    td->items = calloc(n ? n : 1, sizeof *td->items);
    if (!td->items) {
        log_error("templates", "%s: out of memory", td->path);
        template_paths_free(paths, n);
        finish(td);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = template_load_file(paths[i], TEMPLATE_FILE_MAX_BYTES, &err);
        if (!t) {
            td->refused++;
            log_error("templates", "%s (file skipped)", err.text);
            continue;
        }
        struct item *it = &td->items[td->n];
        it->path = strdup(paths[i]);
        it->json = json_dumps(t, JSON_COMPACT);
        it->label = label(t);
        json_decref(t);
        if (!it->path || !it->json || !it->label) {
            free(it->path);
            free(it->json);
            free(it->label);
            td->failed++;
            log_error("templates", "%s: out of memory", paths[i]);
            continue;
        }
        td->n++;
    }
    template_paths_free(paths, n);
    log_info("templates", "%s: registering %zu template file(s)", td->path, td->n);
    send_next(td);
}

void template_dir_retry(struct template_dir *td)
{
    if (td->retry_needed && !td->running)
        template_dir_load(td);
}

bool template_dir_done(const struct template_dir *td)
{
    return td->first_done;
}

void template_dir_stop(struct template_dir *td)
{
    if (td)
        td->stopping = true;
}

void template_dir_free(struct template_dir *td)
{
    if (!td)
        return;
    items_free(td);
    free(td);
}
