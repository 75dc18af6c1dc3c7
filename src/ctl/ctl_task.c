/* ctl_task.c — `taskerctl task …`: create, list, get, cancel, steps, step, audit, wait, visualize. */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* task_path: "/v1/tasks/UUID" + tail, the uuid encoded as one segment. */
static void task_path(struct ctl_buf *b, const char *task, const char *tail)
{
    ctl_buf_add(b, "/v1/tasks/", 10);
    ctl_buf_seg(b, task);
    ctl_buf_add(b, tail, strlen(tail));
}

/* ---- cells --------------------------------------------------------------------------------------- */

static void cell_progress(json_t *row, char *out, size_t len)
{
    json_t *ec = json_object_get(row, "execution_context");
    snprintf(out, len, "%lld/%lld", json_integer_value(json_object_get(ec, "completed_steps")),
             json_integer_value(json_object_get(ec, "total_steps")));
}

static void cell_attempts(json_t *row, char *out, size_t len)
{
    snprintf(out, len, "%lld/%lld", json_integer_value(json_object_get(row, "attempts")),
             json_integer_value(json_object_get(row, "max_attempts")));
}

static void cell_why(json_t *row, char *out, size_t len)
{
    json_t *r = json_object_get(row, "not_ready_reason");
    if (json_is_true(json_object_get(row, "ready_for_execution")))
        snprintf(out, len, "ready");
    else
        ctl_cell(r, out, len);
}

static const struct ctl_col step_cols[] = {
    {"NAME", "name", NULL},           {"STATE", "state", NULL}, {"ATTEMPTS", NULL, cell_attempts},
    {"STEP_UUID", "workflow_step_uuid", NULL}, {"READINESS", NULL, cell_why},
};
#define NSTEP_COLS (sizeof step_cols / sizeof step_cols[0])

/* ---- create ---------------------------------------------------------------------------------------- */

static void create_table(json_t *doc)
{
    static const char *const keys[] = {"task_uuid", "namespace", "name", "version", "state", "steps_enqueued",
                                       "correlation_id", NULL};
    ctl_print_fields(doc, keys);
}

static int task_create(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *ns = NULL, *name = NULL, *version = NULL, *context = NULL, *initiator = NULL, *source = NULL,
               *reason = NULL, *priority = NULL, *idem = NULL, *corr = NULL, *parent = NULL;
    const char *tags[64];
    int ntags = 0;
    bool quiet = false;
    const struct ctl_opt opts[] = {
        {.name = "namespace", .short_name = 'n', .value = &ns},
        {.name = "name", .value = &name},
        {.name = "version", .value = &version},
        {.name = "context", .short_name = 'c', .value = &context},
        {.name = "initiator", .value = &initiator},
        {.name = "source-system", .value = &source},
        {.name = "reason", .value = &reason},
        {.name = "tag", .list = tags, .list_n = &ntags, .list_max = 64},
        {.name = "priority", .value = &priority},
        {.name = "idempotency-key", .value = &idem},
        {.name = "correlation-id", .value = &corr},
        {.name = "parent-correlation-id", .value = &parent},
        {.name = "quiet", .short_name = 'q', .flag = &quiet},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    if (!name)
        return ctl_usage_error(cmd, "--name is required");
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(name));
    const char *const strs[][2] = {{"namespace", ns},         {"version", version},
                                   {"initiator", initiator},  {"source_system", source},
                                   {"reason", reason},        {"idempotency_key", idem},
                                   {"correlation_id", corr},  {"parent_correlation_id", parent}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i][1])
            json_object_set_new(body, strs[i][0], json_string(strs[i][1]));
    if (priority) {
        long p;
        if (!ctl_parse_int(priority, -100, 100, &p)) {
            json_decref(body);
            return ctl_usage_error(cmd, "--priority must be a whole number from -100 to 100");
        }
        json_object_set_new(body, "priority", json_integer(p));
    }
    if (ntags) {
        json_t *t = json_array();
        for (int i = 0; i < ntags; i++)
            json_array_append_new(t, json_string(tags[i]));
        json_object_set_new(body, "tags", t);
    }
    if (context) {
        json_t *ctx = ctl_json_arg("--context", context);
        if (!ctx) {
            json_decref(body);
            ctl_cmd_usage(cmd, false, stderr);
            return CTL_EUSAGE;
        }
        if (!json_is_object(ctx)) {
            json_decref(ctx);
            json_decref(body);
            return ctl_usage_error(cmd, "--context must be a JSON object");
        }
        json_object_set_new(body, "context", ctx);
    }
    json_t *doc;
    rc = ctl_call(c, "POST", "/v1/tasks", body, &doc);
    json_decref(body);
    if (rc != CTL_OK)
        return rc;
    if (quiet) {
        printf("%s\n", ctl_str(doc, "task_uuid"));
        json_decref(doc);
        return CTL_OK;
    }
    ctl_emit(c, doc, create_table);
    return CTL_OK;
}

/* ---- list ---------------------------------------------------------------------------------------- */

static void list_table(json_t *doc)
{
    static const struct ctl_col cols[] = {
        {"TASK_UUID", "task_uuid", NULL}, {"NAMESPACE", "namespace", NULL}, {"NAME", "name", NULL},
        {"VERSION", "version", NULL},     {"STATE", "state", NULL},         {"STEPS", NULL, cell_progress},
        {"CREATED", "created_at", NULL},
    };
    ctl_print_table(json_object_get(doc, "tasks"), cols, sizeof cols / sizeof cols[0]);
    ctl_print_pagination(doc);
}

static int task_list(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *ns = NULL, *state = NULL, *name = NULL, *initiator = NULL, *source = NULL, *page = NULL,
               *per_page = NULL;
    const struct ctl_opt opts[] = {
        {.name = "namespace", .short_name = 'n', .value = &ns},
        {.name = "state", .value = &state},
        {.name = "name", .value = &name},
        {.name = "initiator", .value = &initiator},
        {.name = "source-system", .value = &source},
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
    ctl_buf_printf(&p, "/v1/tasks");
    ctl_buf_query(&p, "namespace", ns);
    ctl_buf_query(&p, "state", state);
    ctl_buf_query(&p, "name", name);
    ctl_buf_query(&p, "initiator", initiator);
    ctl_buf_query(&p, "source_system", source);
    ctl_buf_query(&p, "page", page);
    ctl_buf_query(&p, "per_page", per_page);
    return ctl_get_emit(c, &p, list_table);
}

/* ---- get ----------------------------------------------------------------------------------------- */

static void get_table(json_t *doc)
{
    static const char *const keys[] = {"task_uuid", "namespace", "name", "version", "state", "priority",
                                       "initiator", "source_system", "reason", "tags", "context",
                                       "execution_context.execution_status", "execution_context.completion_percentage",
                                       "execution_context.health_status", "execution_context.recommended_action",
                                       "correlation_id", "requested_at", "completed_at", NULL};
    ctl_print_fields(doc, keys);
    printf("\n");
    ctl_print_table(json_object_get(doc, "steps"), step_cols, NSTEP_COLS);
}

/* get_one: the commands that take just a task uuid and GET one document. */
static int get_one(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, const char *tail,
                   void (*table)(json_t *))
{
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    task_path(&p, pos[0], tail);
    return ctl_get_emit(c, &p, table);
}

static int task_get(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return get_one(c, cmd, argc, argv, "", get_table);
}

/* ---- steps / step ---------------------------------------------------------------------------------- */

static void steps_table(json_t *doc)
{
    ctl_print_table(json_is_array(doc) ? doc : json_object_get(doc, "steps"), step_cols, NSTEP_COLS);
}

static int task_steps(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return get_one(c, cmd, argc, argv, "/workflow_steps", steps_table);
}

static void step_table(json_t *doc)
{
    static const char *const keys[] = {"workflow_step_uuid", "task_uuid", "name", "state", "step_type", "handler",
                                       "attempts", "max_attempts", "retryable", "ready_for_execution",
                                       "not_ready_reason", "next_retry_at", "claimed_by", "lease_expires_at",
                                       "last_execution_ms", "results", "error", "checkpoint", "created_by",
                                       "completed_at", NULL};
    ctl_print_fields(doc, keys);
}

static int task_step(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[2];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 2, 2);
    if (rc != CTL_OK)
        return rc;
    char step[64];
    if ((rc = ctl_step_uuid(c, pos[0], pos[1], step, sizeof step)) != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    task_path(&p, pos[0], "/workflow_steps/");
    ctl_buf_seg(&p, step);
    return ctl_get_emit(c, &p, step_table);
}

/* ---- audit ---------------------------------------------------------------------------------------- */

static void audit_table(json_t *doc)
{
    static const struct ctl_col cols[] = {
        {"AT", "created_at", NULL},        {"STEP", "step_name", NULL},    {"FROM", "from_state", NULL},
        {"TO", "to_state", NULL},          {"EVENT", "event", NULL},       {"ATTEMPT", "attempt", NULL},
        {"PROCESSOR", "processor", NULL},  {"OPERATOR", "metadata.claimed_operator", NULL},
    };
    ctl_print_table(json_object_get(doc, "transitions"), cols, sizeof cols / sizeof cols[0]);
}

static int by_time(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int d = strcmp(ctl_str(x, "created_at"), ctl_str(y, "created_at"));
    /* Same timestamp: the step's own order (its transitions' ordinal) keeps the story straight. */
    return d ? d : (int)(json_integer_value(json_object_get(x, "seq")) - json_integer_value(json_object_get(y, "seq")));
}

/* task audit: the API keeps audit per step; this merges every step's transitions and results into
 * one time-ordered history (each row names its step), so an operator reads a task's story at once. */
static int task_audit(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    task_path(&p, pos[0], "/workflow_steps");
    json_t *steps;
    rc = ctl_call(c, "GET", p.s, NULL, &steps);
    ctl_buf_free(&p);
    if (rc != CTL_OK)
        return rc;
    json_t *rows = json_is_array(steps) ? steps : json_object_get(steps, "steps");
    json_t *all = json_array(), *results = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(rows, i, s) {
        struct ctl_buf a = {0};
        task_path(&a, pos[0], "/workflow_steps/");
        ctl_buf_seg(&a, ctl_str(s, "workflow_step_uuid"));
        ctl_buf_add(&a, "/audit", 6);
        json_t *audit;
        rc = ctl_call(c, "GET", a.s, NULL, &audit);
        ctl_buf_free(&a);
        if (rc != CTL_OK)
            break;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(audit, "transitions"), k, t) {
            json_t *row = json_object();
            json_object_set(row, "step_name", json_object_get(s, "name"));
            json_object_set(row, "workflow_step_uuid", json_object_get(s, "workflow_step_uuid"));
            json_object_update(row, t);
            json_object_set_new(row, "seq", json_integer((json_int_t)k));
            json_array_append_new(all, row);
        }
        json_array_foreach(json_object_get(audit, "results"), k, t) {
            json_t *row = json_object();
            json_object_set(row, "step_name", json_object_get(s, "name"));
            json_object_set(row, "workflow_step_uuid", json_object_get(s, "workflow_step_uuid"));
            json_object_update(row, t);
            json_array_append_new(results, row);
        }
        json_decref(audit);
    }
    json_decref(steps);
    if (rc != CTL_OK) {
        json_decref(all);
        json_decref(results);
        return rc;
    }
    size_t n = json_array_size(all);
    json_t **v = malloc((n ? n : 1) * sizeof *v);
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(all, i));
    qsort(v, n, sizeof *v, by_time);
    json_array_clear(all);
    for (i = 0; i < n; i++) {
        json_object_del(v[i], "seq");
        json_array_append_new(all, v[i]);
    }
    free(v);
    json_t *doc = json_pack("{s:s, s:o, s:o}", "task_uuid", pos[0], "transitions", all, "results", results);
    ctl_emit(c, doc, audit_table);
    return CTL_OK;
}

/* ---- cancel -------------------------------------------------------------------------------------- */

static void cancel_table(json_t *doc)
{
    static const char *const keys[] = {"task_uuid", "previous_state", "state", "steps_cancelled", NULL};
    ctl_print_fields(doc, keys);
}

static int task_cancel(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *reason = NULL, *by = NULL;
    const struct ctl_opt opts[] = {
        {.name = "reason", .value = &reason},
        {.name = "by", .value = &by},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    task_path(&p, pos[0], "");
    ctl_buf_query(&p, "reason", reason);
    ctl_buf_query(&p, "cancelled_by", by);
    json_t *doc;
    rc = ctl_call(c, "DELETE", p.s, NULL, &doc);
    ctl_buf_free(&p);
    if (rc == CTL_OK)
        ctl_emit(c, doc, cancel_table);
    return rc;
}

/* ---- wait ---------------------------------------------------------------------------------------- */

/* wait_exit: the exit code for a task state where waiting stops, or -1 to go on. */
static int wait_exit(const char *state)
{
    static const struct {
        const char *state;
        int rc;
    } ends[] = {{"complete", CTL_OK},
                {"error", CTL_ETASK_ERROR},
                {"cancelled", CTL_ETASK_CANCELLED},
                {"resolved_manually", CTL_ETASK_RESOLVED},
                {"blocked_by_failures", CTL_ETASK_BLOCKED}};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
        if (strcmp(state, ends[i].state) == 0)
            return ends[i].rc;
    return -1;
}

/* progress: "state S · 3/5 steps complete · 1 in progress, 1 pending" from the execution context. */
static void progress(json_t *task, char *out, size_t len)
{
    json_t *ec = json_object_get(task, "execution_context");
    static const struct {
        const char *key, *label;
    } parts[] = {{"in_progress_steps", "in progress"}, {"enqueued_steps", "enqueued"},
                 {"pending_steps", "pending"},         {"waiting_for_retry_steps", "waiting for retry"},
                 {"failed_steps", "failed"},           {"cancelled_steps", "cancelled"}};
    int n = snprintf(out, len, "%s: %lld/%lld steps complete", ctl_str(task, "state"),
                     json_integer_value(json_object_get(ec, "completed_steps")),
                     json_integer_value(json_object_get(ec, "total_steps")));
    const char *sep = " (";
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && n > 0 && (size_t)n < len; i++) {
        json_int_t v = json_integer_value(json_object_get(ec, parts[i].key));
        if (v > 0) {
            n += snprintf(out + n, len - (size_t)n, "%s%lld %s", sep, (long long)v, parts[i].label);
            sep = ", ";
        }
    }
    if (*sep == ',' && n > 0 && (size_t)n < len)
        snprintf(out + n, len - (size_t)n, ")");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_table(json_t *doc)
{
    char line[512];
    progress(doc, line, sizeof line);
    printf("task %s %s\n", ctl_str(doc, "task_uuid"), line);
}

static int task_wait(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *timeout = NULL, *interval = NULL;
    const struct ctl_opt opts[] = {
        {.name = "timeout", .short_name = 't', .value = &timeout},
        {.name = "interval", .value = &interval},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    long limit = 0, every = 500;
    if (timeout && !ctl_parse_int(timeout, 1, 31L * 24 * 3600, &limit))
        return ctl_usage_error(cmd, "--timeout must be a whole number of seconds, 1 or more");
    if (interval && !ctl_parse_int(interval, 50, 600000, &every))
        return ctl_usage_error(cmd, "--interval must be milliseconds from 50 to 600000");
    /* The live line is for people: only on a terminal, on stderr so stdout stays the result. */
    bool live = isatty(STDERR_FILENO);
    struct ctl_buf p = {0};
    task_path(&p, pos[0], "");
    double start = now_s();
    json_t *doc = NULL;
    for (;;) {
        rc = ctl_call(c, "GET", p.s, NULL, &doc);
        if (rc != CTL_OK)
            break;
        int end = wait_exit(ctl_str(doc, "state"));
        if (live) {
            char line[512];
            progress(doc, line, sizeof line);
            fprintf(stderr, "\r\033[K%s", line);
        }
        if (end >= 0) {
            rc = end;
            break;
        }
        if (limit && now_s() - start >= (double)limit) {
            if (live)
                fputs("\r\033[K", stderr);
            fprintf(stderr, "taskerctl: task %s is still %s after %ld s\n", pos[0], ctl_str(doc, "state"), limit);
            rc = CTL_ETIMEOUT;
            break;
        }
        json_decref(doc);
        doc = NULL;
        usleep((useconds_t)every * 1000);
    }
    if (live)
        fputs("\r\033[K", stderr);
    ctl_buf_free(&p);
    if (doc) {
        if (rc != CTL_OK && rc != CTL_ETIMEOUT)
            fprintf(stderr, "taskerctl: task %s ended %s\n", pos[0], ctl_str(doc, "state"));
        ctl_emit(c, doc, wait_table);
    }
    return rc;
}

/* ---- visualize ------------------------------------------------------------------------------------- */

static int task_visualize(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *format = "svg", *out = NULL;
    const struct ctl_opt opts[] = {
        {.name = "format", .short_name = 'f', .value = &format},
        {.name = "out", .short_name = 'o', .value = &out},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 1, 1);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    task_path(&p, pos[0], "/graph");
    rc = ctl_visualize(c, p.s, format, out);
    ctl_buf_free(&p);
    return rc;
}

const struct ctl_cmd ctl_task_cmds[] = {
    {"task", "create", "--name NAME [--namespace NS] [--version V] [--context JSON|@FILE|-] [options]",
     "Create a task from a registered template (POST /v1/tasks).",
     "  -n, --namespace NS          the template's namespace (default: default)\n"
     "      --name NAME             the template's name (required)\n"
     "      --version V             the template's version (default: the highest)\n"
     "  -c, --context JSON          the task's input: inline JSON, @FILE, or - for stdin\n"
     "      --initiator, --source-system, --reason TEXT   who and why (audit)\n"
     "      --tag TAG               a tag (repeatable)\n"
     "      --priority N            -100..100 (default 0)\n"
     "      --idempotency-key KEY   identity = template + KEY\n"
     "      --correlation-id UUID, --parent-correlation-id UUID\n"
     "  -q, --quiet                 print only the new task's uuid\n",
     task_create},
    {"task", "list", "[--namespace NS] [--state S] [--name N] [--page P] [--per-page N]",
     "List tasks, newest first (GET /v1/tasks).",
     "  -n, --namespace NS, --state STATE, --name NAME, --initiator X, --source-system X   filters\n"
     "      --page P, --per-page N  pagination (per page 1..100, default 25)\n",
     task_list},
    {"task", "get", "TASK_UUID", "Show a task, its execution context and its steps (GET /v1/tasks/UUID).", NULL,
     task_get},
    {"task", "cancel", "TASK_UUID [--reason TEXT] [--by NAME]",
     "Cancel a task and its unfinished steps (DELETE /v1/tasks/UUID).",
     "      --reason TEXT           why (audit)\n"
     "      --by NAME               the operator you act for (audit: claimed_operator)\n",
     task_cancel},
    {"task", "steps", "TASK_UUID", "List a task's steps with their readiness.", NULL, task_steps},
    {"task", "step", "TASK_UUID STEP", "Show one step; STEP is its uuid or its name.", NULL, task_step},
    {"task", "audit", "TASK_UUID",
     "Every state change of every step of a task, oldest first, and every result handed back.", NULL,
     task_audit},
    {"task", "wait", "TASK_UUID [--timeout SECS] [--interval MS]",
     "Follow a task until it ends, with a live progress line on a terminal.",
     "  -t, --timeout SECS          give up after SECS seconds (default: never)\n"
     "      --interval MS           poll every MS milliseconds (default 500)\n"
     "Exit status: 0 complete, 5 error, 6 cancelled, 7 resolved manually, 8 blocked by failures\n"
     "(an operator must act), 9 --timeout passed; 1, 3, 4 as for every command.\n",
     task_wait},
    {"task", "visualize", "TASK_UUID [--format svg|png|dot] [-o FILE]",
     "Draw the task's DAG, each step coloured by its state (GET /v1/tasks/UUID/graph, Graphviz).",
     "  -f, --format FORMAT         svg (default), png or dot\n"
     "  -o, --out FILE              write there (default: stdout)\n",
     task_visualize},
    {0},
};
