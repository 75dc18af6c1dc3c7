/* ctl_template.c — `taskerctl template list|get|register|validate|visualize`. */
#include "ctl.h"

#include "conf.h"
#include "template_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* template_path: "/v1/templates/NS/NAME/VERSION" + tail, each part one encoded segment. */
static void template_path(struct ctl_buf *b, const char *const *nnv, const char *tail)
{
    ctl_buf_add(b, "/v1/templates", 13);
    for (int i = 0; i < 3; i++) {
        ctl_buf_add(b, "/", 1);
        ctl_buf_seg(b, nnv[i]);
    }
    ctl_buf_add(b, tail, strlen(tail));
}

/* ---- list / get ------------------------------------------------------------------------------------ */

static void list_table(json_t *doc)
{
    static const struct ctl_col cols[] = {
        {"NAMESPACE", "namespace", NULL}, {"NAME", "name", NULL},
        {"VERSION", "version", NULL},     {"STEPS", "step_count", NULL},
        {"TEMPLATE_UUID", "task_template_uuid", NULL}, {"DESCRIPTION", "description", NULL},
    };
    ctl_print_table(json_object_get(doc, "templates"), cols, sizeof cols / sizeof cols[0]);
    ctl_print_pagination(doc);
}

static int template_list(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *ns = NULL, *page = NULL, *per_page = NULL;
    const struct ctl_opt opts[] = {
        {.name = "namespace", .short_name = 'n', .value = &ns},
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
    ctl_buf_printf(&p, "/v1/templates");
    ctl_buf_query(&p, "namespace", ns);
    ctl_buf_query(&p, "page", page);
    ctl_buf_query(&p, "per_page", per_page);
    return ctl_get_emit(c, &p, list_table);
}

static void get_table(json_t *doc)
{
    static const char *const keys[] = {"namespace", "name", "version", "description", "identity_strategy",
                                       "step_count", "task_template_uuid", "created_at", "updated_at", NULL};
    static const struct ctl_col cols[] = {
        {"STEP", "name", NULL},           {"TYPE", "type", NULL},
        {"HANDLER", "handler.callable", NULL}, {"DEPENDENCIES", "dependencies", NULL},
        {"MAX_ATTEMPTS", "retry.max_attempts", NULL}, {"TIMEOUT_S", "timeout_seconds", NULL},
    };
    ctl_print_fields(doc, keys);
    putchar('\n');
    ctl_print_table(json_object_get(doc, "steps"), cols, sizeof cols / sizeof cols[0]);
}

static int template_get(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[3];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 3, 3);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    template_path(&p, pos, "");
    return ctl_get_emit(c, &p, get_table);
}

static int template_visualize(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *format = "svg", *out = NULL;
    const struct ctl_opt opts[] = {
        {.name = "format", .short_name = 'f', .value = &format},
        {.name = "out", .short_name = 'o', .value = &out},
        {0},
    };
    const char *pos[3];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 3, 3);
    if (rc != CTL_OK)
        return rc;
    struct ctl_buf p = {0};
    template_path(&p, pos, "/graph");
    rc = ctl_visualize(c, p.s, format, out);
    ctl_buf_free(&p);
    return rc;
}

/* ---- files ---------------------------------------------------------------------------------------- */

/* The files, their loading and the local check are the daemon's own (src/common/template_file.c):
 * what taskerctl accepts, the daemon's template directory accepts, with the same messages. */

/* for_each_file: the shared loop of register and validate: collect every path's files, load
 * each, hand it to fn (which prints its own outcome); count failures. */
static int for_each_file(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv,
                         bool (*fn)(struct ctl *c, const char *file, json_t *doc, json_t *results))
{
    const char *pos[CTL_POS_MAX];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 1, CTL_POS_MAX);
    if (rc != CTL_OK)
        return rc;
    bool ok = true;
    size_t seen = 0;
    json_t *results = json_array();
    for (int i = 0; i < npos; i++) {
        char **files = NULL;
        size_t n = 0;
        struct template_error e;
        if (template_paths(pos[i], &files, &n, &e) != 0) {
            fprintf(stderr, "%s\n", e.text);
            json_array_append_new(results, json_pack("{s:s, s:s}", "file", pos[i], "error", e.text));
            ok = false;
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            json_t *doc = template_load_file(files[k], 0, &e);
            seen++;
            if (!doc) {
                fprintf(stderr, "%s\n", e.text);
                json_array_append_new(results, json_pack("{s:s, s:s}", "file", files[k], "error", e.text));
                ok = false;
                continue;
            }
            ok = fn(c, files[k], doc, results) && ok;
            json_decref(doc);
        }
        template_paths_free(files, n);
    }
    if (seen == 0 && ok) {
        fprintf(stderr, "taskerctl: no .json, .yaml or .yml file found\n");
        ok = false;
    }
    if (c->output == CTL_OUT_JSON)
        ctl_print_json(results);
    json_decref(results);
    return ok ? CTL_OK : CTL_EFAIL;
}

static bool register_one(struct ctl *c, const char *file, json_t *doc, json_t *results)
{
    json_t *ans;
    c->err_prefix = file; /* the daemon's refusal is printed as "FILE: error: code: message" */
    int rc = ctl_call(c, "POST", "/v1/templates", doc, &ans);
    c->err_prefix = NULL;
    if (rc != CTL_OK) {
        json_array_append_new(results, json_pack("{s:s, s:s}", "file", file, "error", c->last_error));
        return false;
    }
    if (c->output == CTL_OUT_TABLE)
        printf("%s: %s %s/%s@%s\n", file, ctl_str(ans, "status"), ctl_str(ans, "namespace"), ctl_str(ans, "name"),
               ctl_str(ans, "version"));
    json_object_set_new(ans, "file", json_string(file));
    json_array_append_new(results, ans);
    return true;
}

static int template_register(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return for_each_file(c, cmd, argc, argv, register_one);
}

/* validate_one: the daemon's checks, made here (templates.max_steps at its default): the first
 * refusal is the one POST /v1/templates would answer. */
static bool validate_one(struct ctl *c, const char *file, json_t *doc, json_t *results)
{
    struct conf defaults;
    conf_defaults(&defaults);
    char msg[1024];
    bool good = template_check(doc, defaults.templates_max_steps, msg, sizeof msg);
    const char *ns = json_string_value(json_object_get(doc, "namespace_name"));
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *version = json_string_value(json_object_get(doc, "version"));
    if (!good)
        fprintf(stderr, "%s: %s\n", file, msg);
    else if (c->output == CTL_OUT_TABLE)
        printf("%s: valid %s/%s@%s\n", file, ns ? ns : "default", name ? name : "?", version ? version : "0.1.0");
    json_array_append_new(results, good ? json_pack("{s:s, s:b, s:s?, s:s?, s:s?}", "file", file, "valid", 1,
                                                    "namespace", ns, "name", name, "version", version)
                                        : json_pack("{s:s, s:b, s:s}", "file", file, "valid", 0, "error", msg));
    return good;
}

static int template_validate(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return for_each_file(c, cmd, argc, argv, validate_one);
}

const struct ctl_cmd ctl_template_cmds[] = {
    {"template", "list", "[--namespace NS] [--page P] [--per-page N]",
     "List registered templates (GET /v1/templates).",
     "  -n, --namespace NS          only this namespace\n"
     "      --page P, --per-page N  pagination\n",
     template_list},
    {"template", "get", "NAMESPACE NAME VERSION", "Show a template and its steps as stored.", NULL, template_get},
    {"template", "register", "PATH…",
     "Register templates from files or directories (every *.json, *.yaml, *.yml under them).", NULL,
     template_register},
    {"template", "validate", "PATH…",
     "Check template files locally, as the daemon would (YAML or JSON; errors as FILE:LINE:COLUMN or FILE: message).",
     NULL, template_validate},
    {"template", "visualize", "NAMESPACE NAME VERSION [--format svg|png|dot] [-o FILE]",
     "Draw the template's DAG (GET /v1/templates/NS/NAME/VERSION/graph, Graphviz).",
     "  -f, --format FORMAT         svg (default), png or dot\n"
     "  -o, --out FILE              write there (default: stdout)\n",
     template_visualize},
    {0},
};
