/* ctl_dlq.c — `taskerctl dlq list|get|update|stats`: the dead-letter queue's investigation records. */
#include "ctl.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct ctl_col entry_cols[] = {
    {"DLQ_ENTRY_UUID", "dlq_entry_uuid", NULL}, {"TASK_UUID", "task_uuid", NULL},
    {"NAMESPACE", "namespace", NULL},           {"TASK_STATE", "task_state", NULL},
    {"REASON", "dlq_reason", NULL},             {"STATUS", "resolution_status", NULL},
    {"AT", "dlq_timestamp", NULL},
};

static void list_table(json_t *doc)
{
    ctl_print_table(json_object_get(doc, "entries"), entry_cols, sizeof entry_cols / sizeof entry_cols[0]);
    ctl_print_pagination(doc);
}

static int dlq_list(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *status = NULL, *page = NULL, *per_page = NULL;
    const struct ctl_opt opts[] = {
        {.name = "status", .value = &status},
        {.name = "page", .value = &page},
        {.name = "per-page", .value = &per_page},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    ctl_buf_printf(&p, "/v1/dlq");
    ctl_buf_query(&p, "resolution_status", status);
    ctl_buf_query(&p, "page", page);
    ctl_buf_query(&p, "per_page", per_page);
    return ctl_get_emit(c, &p, list_table);
}

static void entry_table(json_t *doc)
{
    ctl_print_fields(doc, NULL);
    json_t *md = json_object_get(doc, "metadata");
    if (json_object_size(md)) {
        char cell[512];
        ctl_cell(md, cell, sizeof cell);
        printf("metadata  %s\n", cell);
    }
}

/* dlq get: the API has no single-entry read; the list is read page by page (newest first, 100
 * at a time) until the entry turns up. An open entry is usually on the first page. */
static int dlq_get(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    for (long page = 1;; page++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/dlq?per_page=100&page=%ld", page);
        json_t *doc;
        if ((rc = ctl_call(c, "GET", path, NULL, &doc)) != CTL_OK)
            return rc;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(doc, "entries"), i, e) {
            if (strcasecmp(ctl_str(e, "dlq_entry_uuid"), pos[0]) == 0) {
                ctl_emit(c, json_incref(e), entry_table);
                json_decref(doc);
                return CTL_OK;
            }
        }
        json_int_t pages = json_integer_value(ctl_get(doc, "pagination.total_pages"));
        json_decref(doc);
        if (page >= pages)
            break;
    }
    fprintf(stderr, "error: not_found: no DLQ entry %s\n", pos[0]);
    return CTL_EFAIL;
}

static int dlq_update(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *status = NULL, *notes = NULL, *by = NULL, *metadata = NULL;
    const char *steps[100];
    int nsteps = 0;
    bool recover = false;
    const struct ctl_opt opts[] = {
        {.name = "status", .value = &status},
        {.name = "notes", .value = &notes},
        {.name = "by", .value = &by},
        {.name = "metadata", .value = &metadata},
        {.name = "recover", .flag = &recover},
        {.name = "step", .list = steps, .list_n = &nsteps, .list_max = 100},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    if (!status && !notes && !by && !metadata && !recover)
        return ctl_usage_error(cmd, "nothing to update: give --status, --notes, --by, --metadata or --recover");
    if (nsteps && !recover)
        return ctl_usage_error(cmd, "--step needs --recover");
    json_t *body = json_object();
    if (status)
        json_object_set_new(body, "resolution_status", json_string(status));
    if (notes)
        json_object_set_new(body, "resolution_notes", json_string(notes));
    if (by)
        json_object_set_new(body, "resolved_by", json_string(by));
    if (recover)
        json_object_set_new(body, "recover", json_true());
    if (nsteps) {
        json_t *a = json_array();
        for (int i = 0; i < nsteps; i++)
            json_array_append_new(a, json_string(steps[i]));
        json_object_set_new(body, "steps", a);
    }
    if (metadata) {
        json_t *m = ctl_json_arg("--metadata", metadata);
        if (!json_is_object(m)) {
            if (m)
                fprintf(stderr, "taskerctl: --metadata must be a JSON object\n");
            json_decref(m);
            json_decref(body);
            ctl_cmd_usage(cmd, false, stderr);
            return CTL_EUSAGE;
        }
        json_object_set_new(body, "metadata", m);
    }
    struct ctl_buf p = {0};
    ctl_buf_add(&p, "/v1/dlq/", 8);
    ctl_buf_seg(&p, pos[0]);
    json_t *doc;
    rc = ctl_call(c, "PATCH", p.s, body, &doc);
    ctl_buf_free(&p);
    json_decref(body);
    if (rc == CTL_OK)
        ctl_emit(c, doc, entry_table);
    return rc;
}

static void stats_table(json_t *doc)
{
    static const char *const keys[] = {"total",
                                       "by_status.pending",
                                       "by_status.manually_resolved",
                                       "by_status.permanently_failed",
                                       "by_status.cancelled",
                                       "oldest_open.dlq_entry_uuid",
                                       "oldest_open.task_uuid",
                                       "oldest_open.age_seconds",
                                       NULL};
    ctl_print_fields(doc, keys);
    static const struct ctl_col cols[] = {
        {"REASON", "dlq_reason", NULL},   {"TOTAL", "total", NULL},          {"PENDING", "pending", NULL},
        {"RESOLVED", "manually_resolved", NULL}, {"FAILED", "permanently_failed", NULL},
        {"CANCELLED", "cancelled", NULL}, {"NEWEST", "newest_entry", NULL},
    };
    putchar('\n');
    ctl_print_table(json_object_get(doc, "by_reason"), cols, sizeof cols / sizeof cols[0]);
}

static int dlq_stats(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    json_t *doc;
    if ((rc = ctl_call(c, "GET", "/v1/dlq/stats", NULL, &doc)) == CTL_OK)
        ctl_emit(c, doc, stats_table);
    return rc;
}

const struct ctl_cmd ctl_dlq_cmds[] = {
    {"dlq", "list", "[--status STATUS] [--page P] [--per-page N]",
     "List DLQ entries, newest first (GET /v1/dlq).",
     "      --status STATUS         pending, manually_resolved, permanently_failed or cancelled\n"
     "      --page P, --per-page N  pagination\n",
     dlq_list},
    {"dlq", "get", "DLQ_ENTRY_UUID", "Show one DLQ entry.", NULL, dlq_get},
    {"dlq", "update", "DLQ_ENTRY_UUID [--status S] [--notes TEXT] [--by NAME] [--metadata JSON] [--recover [--step UUID]…]",
     "Record an investigation; --recover also runs the task again (PATCH /v1/dlq/UUID).",
     "      --status STATUS         the new resolution status\n"
     "      --notes TEXT            resolution notes (with --recover: the reason)\n"
     "      --by NAME               who resolved it\n"
     "      --metadata JSON         an object merged into the entry's metadata (JSON, @FILE or -)\n"
     "      --recover               recover the task in place (needs steps:resolve)\n"
     "      --step UUID             with --recover: only this step (repeatable)\n",
     dlq_update},
    {"dlq", "stats", "", "Counts by status and by reason, and the oldest open entry (GET /v1/dlq/stats).", NULL,
     dlq_stats},
    {0},
};
