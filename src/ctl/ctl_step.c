/* ctl_step.c — `taskerctl step reset|resolve|complete`: the manual-resolution actions (PATCH). */
#include "ctl.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

bool ctl_is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

int ctl_step_uuid(struct ctl *c, const char *task, const char *step, char *out, size_t outlen)
{
    if (ctl_is_uuid(step)) {
        snprintf(out, outlen, "%s", step);
        return CTL_OK;
    }
    struct ctl_buf p = {0};
    ctl_buf_add(&p, "/v1/tasks/", 10);
    ctl_buf_seg(&p, task);
    ctl_buf_add(&p, "/workflow_steps", 15);
    json_t *doc;
    int rc = ctl_call(c, "GET", p.s, NULL, &doc);
    ctl_buf_free(&p);
    if (rc != CTL_OK)
        return rc;
    json_t *rows = json_is_array(doc) ? doc : json_object_get(doc, "steps");
    size_t i;
    json_t *s;
    rc = CTL_EFAIL;
    json_array_foreach(rows, i, s) {
        if (strcmp(ctl_str(s, "name"), step) == 0) {
            snprintf(out, outlen, "%s", ctl_str(s, "workflow_step_uuid"));
            rc = CTL_OK;
            break;
        }
    }
    if (rc != CTL_OK) {
        /* The name came from the command line: escape it like any text shown back. */
        char name[256], tu[128];
        json_t *n = json_string(step), *t = json_string(task);
        ctl_cell(n, name, sizeof name);
        ctl_cell(t, tu, sizeof tu);
        json_decref(n);
        json_decref(t);
        fprintf(stderr, "error: not_found: task %s has no step named '%s'\n", tu, name);
    }
    json_decref(doc);
    return rc;
}

/* One manual action: its action_type and the body field that names the operator. */
struct action {
    const char *type;
    const char *by_field;
    bool completes; /* complete_manually: --result (required) and --metadata */
};

static void action_table(json_t *doc)
{
    static const char *const keys[] = {"workflow_step_uuid", "previous_state", "state", "task_state",
                                       "steps_enqueued", NULL};
    ctl_print_fields(doc, keys);
}

static int step_action(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, const struct action *a)
{
    const char *reason = NULL, *by = NULL, *result = NULL, *metadata = NULL;
    struct ctl_opt opts[] = {
        {.name = "reason", .value = &reason},
        {.name = "by", .value = &by},
        {.name = "result", .value = &result},
        {.name = "metadata", .value = &metadata},
        {0},
    };
    if (!a->completes)
        opts[2] = (struct ctl_opt){0}; /* reset and resolve take neither --result nor --metadata */
    const char *pos[2];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 2, 2);
    if (rc != CTL_OK)
        return rc;
    if (a->completes && !result)
        return ctl_usage_error(cmd, "--result is required (the step's results: JSON, @FILE or -)");
    json_t *body = json_pack("{s:s}", "action_type", a->type);
    if (reason)
        json_object_set_new(body, "reason", json_string(reason));
    if (by)
        json_object_set_new(body, a->by_field, json_string(by));
    if (a->completes) {
        json_t *r = ctl_json_arg("--result", result);
        json_t *m = metadata ? ctl_json_arg("--metadata", metadata) : NULL;
        if (!r || (metadata && !m)) {
            json_decref(r);
            json_decref(body);
            ctl_cmd_usage(cmd, false, stderr);
            return CTL_EUSAGE;
        }
        json_t *cd = json_pack("{s:o}", "result", r);
        if (m)
            json_object_set_new(cd, "metadata", m);
        json_object_set_new(body, "completion_data", cd);
    }
    char step[64];
    if ((rc = ctl_step_uuid(c, pos[0], pos[1], step, sizeof step)) != CTL_OK) {
        json_decref(body);
        return rc;
    }
    struct ctl_buf p = {0};
    ctl_buf_add(&p, "/v1/tasks/", 10);
    ctl_buf_seg(&p, pos[0]);
    ctl_buf_add(&p, "/workflow_steps/", 16);
    ctl_buf_seg(&p, step);
    json_t *doc;
    rc = ctl_call(c, "PATCH", p.s, body, &doc);
    ctl_buf_free(&p);
    json_decref(body);
    if (rc == CTL_OK)
        ctl_emit(c, doc, action_table);
    return rc;
}

static int step_reset(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    static const struct action a = {"reset_for_retry", "reset_by", false};
    return step_action(c, cmd, argc, argv, &a);
}

static int step_resolve(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    static const struct action a = {"resolve_manually", "resolved_by", false};
    return step_action(c, cmd, argc, argv, &a);
}

static int step_complete(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    static const struct action a = {"complete_manually", "completed_by", true};
    return step_action(c, cmd, argc, argv, &a);
}

#define OPERATOR_OPTS                                                                   \
    "      --reason TEXT           why (audit: metadata.reason)\n"                      \
    "      --by NAME               the operator you act for (audit: claimed_operator)\n"

const struct ctl_cmd ctl_step_cmds[] = {
    {"step", "reset", "TASK_UUID STEP [--reason TEXT] [--by NAME]",
     "Give a step in error a fresh set of attempts (reset_for_retry); STEP is a uuid or a name.", OPERATOR_OPTS,
     step_reset},
    {"step", "resolve", "TASK_UUID STEP [--reason TEXT] [--by NAME]",
     "Mark an unfinished step resolved_manually, which satisfies its children (resolve_manually).", OPERATOR_OPTS,
     step_resolve},
    {"step", "complete", "TASK_UUID STEP --result JSON|@FILE|- [--metadata JSON] [--reason TEXT] [--by NAME]",
     "Complete an unfinished step with the given results (complete_manually).",
     "      --result JSON           the step's results: inline JSON, @FILE or - (stdin); required\n"
     "      --metadata JSON         completion_data.metadata\n" OPERATOR_OPTS,
     step_complete},
    {0},
};
