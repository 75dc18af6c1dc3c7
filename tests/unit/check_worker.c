/* check_worker.c — unit tests of tasker-worker's pure logic (src/worker/worker_util.c, src/worker/worker_dynamic.c):
 * options and handler choice, handler outcomes, the decision rules, batch planning, batch_work's
 * state machine, aggregation, exec result interpretation, text helpers. No database, no processes.
 *
 * The unit binary links the daemon's objects plus worker_util.o and worker_dynamic.o only (the
 * Makefile keeps the rest of the worker's sources out), so nothing here needs a loop or a connection. */
#include "worker.h"
#include "worker_exec.h"

#include <check.h>
#include <stdlib.h>

#include "names.h"
#include "suites.h"

/* ---- options -------------------------------------------------------------------------------- */

/* parse: run worker_opts_parse over a NULL-terminated list of arguments. */
static enum worker_parse_status parse(struct worker_opts *o, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"tasker-worker";
    va_list ap;
    va_start(ap, errlen);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return worker_opts_parse(argc, argv, o, err, errlen);
}

START_TEST(opts_defaults)
{
    struct worker_opts o;
    char err[256];
    setenv("DATABASE_URL", "postgresql://env/db", 1);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns1", NULL), WORKER_PARSE_OK);
    ck_assert_str_eq(o.namespace_name, "ns1");
    ck_assert_int_eq(o.concurrency, 10);
    ck_assert_int_eq(o.batch, 10);
    ck_assert_int_eq(o.lease_secs, 30);
    ck_assert_int_eq(o.poll_ms, 500);
    ck_assert_int_eq(o.handler_timeout_secs, 300);
    ck_assert_str_eq(o.database_url, "postgresql://env/db");
    ck_assert(!o.verbose);
    ck_assert(strncmp(o.worker_id, "worker-", 7) == 0);
    ck_assert(worker_id_valid(o.worker_id));
}
END_TEST

START_TEST(opts_all)
{
    struct worker_opts o;
    char err[256];
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "a_b9", "--concurrency", "7", "--batch", "3",
                           "--lease-secs", "12", "--poll-ms", "250", "--worker-id", "host-1.example:7",
                           "--handler-timeout-secs", "60", "--database-url", "postgresql://x/y", "-v", NULL),
                     WORKER_PARSE_OK);
    ck_assert_str_eq(o.namespace_name, "a_b9");
    ck_assert_int_eq(o.concurrency, 7);
    ck_assert_int_eq(o.batch, 3);
    ck_assert_int_eq(o.lease_secs, 12);
    ck_assert_int_eq(o.poll_ms, 250);
    ck_assert_str_eq(o.worker_id, "host-1.example:7");
    ck_assert_int_eq(o.handler_timeout_secs, 60);
    ck_assert_str_eq(o.database_url, "postgresql://x/y");
    ck_assert(o.verbose);
    /* Parsing again starts from scratch (getopt is reset). */
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "zz", "-d", "u", NULL), WORKER_PARSE_OK);
    ck_assert_int_eq(o.concurrency, 10);
    ck_assert_str_eq(o.namespace_name, "zz");
}
END_TEST

START_TEST(opts_errors)
{
    struct worker_opts o;
    char err[256];
    setenv("DATABASE_URL", "postgresql://env/db", 1);
    ck_assert_int_eq(parse(&o, err, sizeof err, NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "--namespace is required");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "Bad", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "invalid --namespace 'Bad'"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "abcdefghijklmnopqrstuvwxyz1234", NULL),
                     WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--concurrency", "0", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "--concurrency '0'"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--batch", "5x", NULL), WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--lease-secs", "86401", NULL), WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--poll-ms", "5", NULL), WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--worker-id", "has space", NULL),
                     WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "--bogus", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "unknown option --bogus");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "-x", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "unknown option -x");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "option --namespace needs a value");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", "extra", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "unexpected argument 'extra'");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--help", NULL), WORKER_PARSE_HELP);
    ck_assert_int_eq(parse(&o, err, sizeof err, "--version", NULL), WORKER_PARSE_VERSION);
    ck_assert_int_eq(parse(&o, err, sizeof err, "-V", NULL), WORKER_PARSE_VERSION);
    unsetenv("DATABASE_URL");
    ck_assert_int_eq(parse(&o, err, sizeof err, "--namespace", "ns", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "DATABASE_URL"));
}
END_TEST

START_TEST(names_valid)
{
    ck_assert(namespace_name_valid("a"));
    ck_assert(namespace_name_valid("abcdefghijklmnopqrstuvwxyz123"));   /* 29 */
    ck_assert(!namespace_name_valid("abcdefghijklmnopqrstuvwxyz1234")); /* 30 */
    ck_assert(!namespace_name_valid(""));
    ck_assert(!namespace_name_valid("1a"));
    ck_assert(!namespace_name_valid("a-b"));
    ck_assert(worker_id_valid("w-1.host:2@x/y+z_"));
    ck_assert(!worker_id_valid(""));
    ck_assert(!worker_id_valid("a b"));
    ck_assert(!worker_id_valid("a'b"));
}
END_TEST

/* ---- handler choice ------------------------------------------------------------------------- */

START_TEST(opts_handler_map)
{
    struct worker_opts o;
    char err[512];
    setenv("DATABASE_URL", "postgresql://env/db", 1);
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", NULL), WORKER_PARSE_OK);
    ck_assert_int_eq(o.handler_map_n, 0);
    ck_assert_int_eq(o.default_handler, WORKER_H_UNKNOWN);
    ck_assert_int_eq(worker_handler_resolve(&o, "tasker_example_rs::Foo", NULL), WORKER_H_UNKNOWN);

    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "tasker_example_rs::step_handlers::Foo=echo",
                           "--handler-map", "Approval#finance=fail", "--handler-map", "Approval=decision",
                           "--handler-map", "sleep=noop", "--handler-map", "a=b=batch_work", NULL),
                     WORKER_PARSE_OK);
    ck_assert_int_eq(o.handler_map_n, 5);
    ck_assert_int_eq(worker_handler_resolve(&o, "tasker_example_rs::step_handlers::Foo", NULL), WORKER_H_ECHO);
    ck_assert_int_eq(worker_handler_resolve(&o, "tasker_example_rs::step_handlers::Foo", "call"), WORKER_H_ECHO);
    /* CALLABLE#METHOD wins over CALLABLE, whatever the order given. */
    ck_assert_int_eq(worker_handler_resolve(&o, "Approval", "finance"), WORKER_H_FAIL);
    ck_assert_int_eq(worker_handler_resolve(&o, "Approval", "manager"), WORKER_H_DECISION);
    ck_assert_int_eq(worker_handler_resolve(&o, "Approval", NULL), WORKER_H_DECISION);
    ck_assert_int_eq(worker_handler_resolve(&o, "Approval", ""), WORKER_H_DECISION);
    /* A map entry may even replace a built-in; the callable holds an '=', the built-in never does. */
    ck_assert_int_eq(worker_handler_resolve(&o, "sleep", NULL), WORKER_H_NOOP);
    ck_assert_int_eq(worker_handler_resolve(&o, "a=b", NULL), WORKER_H_BATCH_WORK);
    /* Built-ins by name still work, prefixes do not match, and unknown stays unknown without a default. */
    ck_assert_int_eq(worker_handler_resolve(&o, "batch_plan", NULL), WORKER_H_BATCH_PLAN);
    ck_assert_int_eq(worker_handler_resolve(&o, "Approva", NULL), WORKER_H_UNKNOWN);
    ck_assert_int_eq(worker_handler_resolve(&o, "Approval#finance", NULL), WORKER_H_FAIL); /* the key as given */
    ck_assert_int_eq(worker_handler_resolve(&o, "Other", NULL), WORKER_H_UNKNOWN);

    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--default-handler", "echo", "--handler-map", "X=fail",
                           NULL), WORKER_PARSE_OK);
    ck_assert_int_eq(worker_handler_resolve(&o, "Other", "m"), WORKER_H_ECHO);
    ck_assert_int_eq(worker_handler_resolve(&o, "X", NULL), WORKER_H_FAIL);
    ck_assert_int_eq(worker_handler_resolve(&o, "exec", NULL), WORKER_H_EXEC);
    ck_assert_int_eq(worker_handler_resolve(NULL, "Other", NULL), WORKER_H_UNKNOWN);
    ck_assert_int_eq(worker_handler_resolve(NULL, "decision", "x"), WORKER_H_DECISION);
}
END_TEST

START_TEST(opts_handler_map_errors)
{
    struct worker_opts o;
    char err[512];
    setenv("DATABASE_URL", "postgresql://env/db", 1);
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "Foo", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "invalid --handler-map 'Foo': want CALLABLE=BUILTIN or CALLABLE#METHOD=BUILTIN");
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "=echo", NULL), WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "Foo=", NULL), WORKER_PARSE_ERROR);
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "Foo#=echo", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "empty callable or method"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "Foo=ruby", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "'ruby' is not a built-in handler"));
    ck_assert(strstr(err, "batch_aggregate"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--handler-map", "Foo=echo", "--handler-map", "Foo=noop",
                           NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "'Foo' is mapped twice"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--default-handler", "unknown", NULL), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "invalid --default-handler 'unknown'"));
    ck_assert_int_eq(parse(&o, err, sizeof err, "-n", "ns", "--default-handler", NULL), WORKER_PARSE_ERROR);
    ck_assert_str_eq(err, "option --default-handler needs a value");

    /* At most WORKER_HANDLER_MAP_MAX entries. */
    char *argv[2 * WORKER_HANDLER_MAP_MAX + 8];
    char specs[WORKER_HANDLER_MAP_MAX + 1][32];
    int argc = 0;
    argv[argc++] = (char *)"tasker-worker";
    argv[argc++] = (char *)"-n";
    argv[argc++] = (char *)"ns";
    for (int i = 0; i <= WORKER_HANDLER_MAP_MAX; i++) {
        snprintf(specs[i], sizeof specs[i], "C%d=noop", i);
        argv[argc++] = (char *)"--handler-map";
        argv[argc++] = specs[i];
    }
    argv[argc] = NULL;
    ck_assert_int_eq(worker_opts_parse(argc, argv, &o, err, sizeof err), WORKER_PARSE_ERROR);
    ck_assert(strstr(err, "too many --handler-map"));
    ck_assert_int_eq(worker_opts_parse(argc - 2, argv, &o, err, sizeof err), WORKER_PARSE_OK);
    ck_assert_int_eq(o.handler_map_n, WORKER_HANDLER_MAP_MAX);
}
END_TEST

START_TEST(usage_lists_everything)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    worker_usage(f);
    fclose(f);
    const char *want[] = { "--handler-map", "--default-handler", "noop", "echo", "fail", "sleep", "exec",
                           "decision", "batch_plan", "batch_work", "batch_aggregate" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(buf, want[i]), "--help does not mention %s", want[i]);
    free(buf);
    for (int b = WORKER_H_NOOP; b <= WORKER_H_BATCH_AGGREGATE; b++)
        ck_assert_int_eq(worker_builtin_parse(worker_builtin_name((enum worker_builtin)b)), b);
}
END_TEST

/* ---- built-in outcomes ---------------------------------------------------------------------- */

/* A job with the given callable and initialization (JSON text); attempt as given. */
static struct worker_job *job_new(const char *callable, const char *init, int attempt)
{
    struct worker_job *j = calloc(1, sizeof *j);
    snprintf(j->task_uuid, sizeof j->task_uuid, "01a218ac-97a4-78ee-9c39-9ecf23ee62eb");
    snprintf(j->step_uuid, sizeof j->step_uuid, "01a218ac-97a9-71c8-89c0-1839d6315ccb");
    j->attempt = attempt;
    j->step_name = strdup("s1");
    j->callable = strdup(callable);
    j->handler = worker_handler_resolve(NULL, callable, NULL);
    j->namespace_name = strdup("ns");
    j->task_name = strdup("t");
    j->correlation_id = strdup("");
    j->initialization = json_loads(init, 0, NULL);
    j->inputs = json_null();
    j->context = json_pack("{s:i}", "order", 7);
    j->dependencies = json_pack("{s:{s:b}}", "a", "ok", 1);
    return j;
}

static void job_free(struct worker_job *j)
{
    free(j->step_name);
    free(j->callable);
    free(j->namespace_name);
    free(j->task_name);
    free(j->correlation_id);
    json_decref(j->initialization);
    json_decref(j->inputs);
    json_decref(j->context);
    json_decref(j->dependencies);
    json_decref(j->checkpoint);
    free(j->handler_method);
    free(j->handler_resolver);
    free(j->step_type);
    free(j);
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

START_TEST(builtin_noop_echo)
{
    struct worker_outcome out;
    struct worker_job *j = job_new("noop", "{}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(out.success);
    char *s = dump(out.result);
    ck_assert_str_eq(s, "{}");
    free(s);
    worker_outcome_clear(&out);
    job_free(j);

    j = job_new("echo", "{\"x\": 1}", 2);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(out.success);
    ck_assert_ptr_null(out.error);
    s = dump(out.result);
    ck_assert_str_eq(s, "{\"attempt\":2,\"context\":{\"order\":7},\"dependencies\":{\"a\":{\"ok\":true}},"
                        "\"initialization\":{\"x\":1}}");
    free(s);
    worker_outcome_clear(&out);
    job_free(j);
}
END_TEST

START_TEST(builtin_fail)
{
    struct worker_outcome out;
    struct worker_job *j = job_new("fail", "{}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(!out.success);
    ck_assert_ptr_null(out.result);
    ck_assert(json_is_true(json_object_get(out.error, "retryable")));
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")),
                     "failed as configured (fail handler, attempt 1)");
    ck_assert_int_eq(out.retry_after_secs, -1);
    worker_outcome_clear(&out);
    job_free(j);

    j = job_new("fail", "{\"retryable\": false, \"message\": \"nope\", \"retry_after_secs\": 9}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(!out.success);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")), "nope");
    ck_assert_int_eq(out.retry_after_secs, 9);
    worker_outcome_clear(&out);
    job_free(j);

    /* succeed_on_attempt: fails before, succeeds at and after. */
    for (int attempt = 1; attempt <= 4; attempt++) {
        j = job_new("fail", "{\"succeed_on_attempt\": 3}", attempt);
        ck_assert(worker_outcome_builtin(j, &out));
        ck_assert_int_eq(out.success, attempt >= 3);
        if (out.success)
            ck_assert_int_eq(json_integer_value(json_object_get(out.result, "attempt")), attempt);
        worker_outcome_clear(&out);
        job_free(j);
    }
}
END_TEST

START_TEST(builtin_unknown_and_async)
{
    struct worker_outcome out;
    struct worker_job *j = job_new("Billing::Charge", "{}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(!out.success);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert(strstr(json_string_value(json_object_get(out.error, "message")), "\"Billing::Charge\""));
    ck_assert(strstr(json_string_value(json_object_get(out.error, "message")), "--handler-map or --default-handler"));
    worker_outcome_clear(&out);
    /* The method is named too; a map entry makes the same callable run. */
    j->handler_method = strdup("charge");
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(strstr(json_string_value(json_object_get(out.error, "message")),
                     "unknown handler callable \"Billing::Charge\" method charge: "));
    worker_outcome_clear(&out);
    struct worker_opts o = { .handler_map_n = 1,
                             .handler_map = { { "Billing::Charge#charge", strlen("Billing::Charge#charge"), WORKER_H_ECHO } } };
    j->handler = worker_handler_resolve(&o, j->callable, j->handler_method);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(out.success);
    worker_outcome_clear(&out);
    job_free(j);

    j = job_new("sleep", "{}", 1);
    ck_assert(!worker_outcome_builtin(j, &out));
    job_free(j);
    j = job_new("exec", "{}", 1);
    ck_assert(!worker_outcome_builtin(j, &out));
    job_free(j);
}
END_TEST

START_TEST(sleep_ms)
{
    json_t *i = json_loads("{}", 0, NULL);
    ck_assert_int_eq(worker_sleep_ms(i), WORKER_DEFAULT_SLEEP_MS);
    json_object_set_new(i, "ms", json_integer(2500));
    ck_assert_int_eq(worker_sleep_ms(i), 2500);
    json_object_set_new(i, "ms", json_integer(-1));
    ck_assert_int_eq(worker_sleep_ms(i), -1);
    json_object_set_new(i, "ms", json_string("5"));
    ck_assert_int_eq(worker_sleep_ms(i), -1);
    json_decref(i);
}
END_TEST

/* ---- exec ----------------------------------------------------------------------------------- */

START_TEST(exec_argv_and_timeout)
{
    char err[256];
    json_t *i = json_loads("{\"command\": [\"sh\", \"-c\", \"echo hi\"], \"timeout_secs\": 4}", 0, NULL);
    char **argv = worker_exec_argv(i, err, sizeof err);
    ck_assert_ptr_nonnull(argv);
    ck_assert_str_eq(argv[0], "sh");
    ck_assert_str_eq(argv[2], "echo hi");
    ck_assert_ptr_null(argv[3]);
    free(argv);
    ck_assert_int_eq(worker_exec_timeout_secs(i, 10, 300), 4);
    json_decref(i);

    i = json_loads("{\"command\": \"echo hi\"}", 0, NULL);
    ck_assert_ptr_null(worker_exec_argv(i, err, sizeof err));
    ck_assert(strstr(err, "non-empty array of strings"));
    ck_assert_int_eq(worker_exec_timeout_secs(i, 10, 300), 10);
    ck_assert_int_eq(worker_exec_timeout_secs(i, 0, 300), 300);
    json_decref(i);

    i = json_loads("{\"command\": [], \"timeout_secs\": 0}", 0, NULL);
    ck_assert_ptr_null(worker_exec_argv(i, err, sizeof err));
    ck_assert_int_eq(worker_exec_timeout_secs(i, 10, 300), -1);
    json_decref(i);

    i = json_loads("{\"command\": [\"a\", 1]}", 0, NULL);
    ck_assert_ptr_null(worker_exec_argv(i, err, sizeof err));
    ck_assert(strstr(err, "command[1]"));
    json_decref(i);
}
END_TEST

START_TEST(exec_input_doc)
{
    struct worker_job *j = job_new("exec", "{\"command\": [\"cat\"]}", 2);
    char *in = worker_exec_input(j);
    ck_assert_ptr_nonnull(in);
    ck_assert(in[strlen(in) - 1] == '\n');
    json_t *doc = json_loads(in, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "step_uuid")), j->step_uuid);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "task_uuid")), j->task_uuid);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "step_name")), "s1");
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "attempt")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "context"), "order")), 7);
    ck_assert(json_is_object(json_object_get(doc, "initialization")));
    ck_assert(json_is_object(json_object_get(doc, "dependencies")));
    /* Absent template fields are null, present ones passed as they are. */
    ck_assert(json_is_null(json_object_get(doc, "handler_method")));
    ck_assert(json_is_null(json_object_get(doc, "handler_resolver")));
    ck_assert(json_is_null(json_object_get(doc, "step_type")));
    ck_assert(json_is_null(json_object_get(doc, "checkpoint")));
    json_decref(doc);
    free(in);
    j->handler_method = strdup("refund");
    j->handler_resolver = strdup("explicit");
    j->step_type = strdup("batch_worker");
    j->checkpoint = json_pack("{s:i, s:i}", "cursor", 40, "items_processed", 40);
    in = worker_exec_input(j);
    doc = json_loads(in, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "handler_method")), "refund");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "handler_resolver")), "explicit");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "step_type")), "batch_worker");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "checkpoint"), "cursor")), 40);
    json_decref(doc);
    free(in);
    job_free(j);
}
END_TEST

static struct worker_exec_result exited(int code, const char *out, const char *err)
{
    struct worker_exec_result r = { .exited = true, .exit_code = code, .out = out, .out_len = strlen(out),
                                    .err = err, .err_len = strlen(err), .cap_bytes = 1048576 };
    return r;
}

START_TEST(exec_outcomes)
{
    struct worker_outcome out;
    struct worker_exec_result r = exited(0, " {\"n\": [1, 2]}\n", "");
    worker_exec_outcome(&r, &out);
    ck_assert(out.success);
    char *s = dump(out.result);
    ck_assert_str_eq(s, "{\"n\":[1,2]}");
    free(s);
    worker_outcome_clear(&out);

    /* Decision and batch outcomes pass through unchanged. */
    const char *outcomes[] = {
        "{\"decision_point_outcome\":{\"step_names\":[\"a\",\"b\"],\"type\":\"create_steps\"},\"why\":1}",
        "{\"decision_point_outcome\":{\"type\":\"no_branches\"}}",
        "{\"batch_processing_outcome\":{\"cursor_configs\":[{\"batch_id\":\"001\",\"batch_size\":100,"
        "\"end_cursor\":{\"id\":\"k100\"},\"start_cursor\":{\"id\":\"k0\"}}],\"total_items\":100,"
        "\"type\":\"create_batches\",\"worker_count\":1,\"worker_template_name\":\"process_batch\"}}",
    };
    for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++) {
        r = exited(0, outcomes[k], "");
        worker_exec_outcome(&r, &out);
        ck_assert(out.success);
        s = dump(out.result);
        ck_assert_str_eq(s, outcomes[k]);
        free(s);
        worker_outcome_clear(&out);
    }

    r = exited(0, "42", "");
    worker_exec_outcome(&r, &out);
    ck_assert(out.success && json_integer_value(out.result) == 42);
    worker_outcome_clear(&out);

    r = exited(0, "hello", "");
    worker_exec_outcome(&r, &out);
    ck_assert(!out.success);
    ck_assert(strncmp(json_string_value(json_object_get(out.error, "message")), "stdout is not valid JSON: ", 26) == 0);
    worker_outcome_clear(&out);

    r = exited(0, "{} {}", "");
    worker_exec_outcome(&r, &out);
    ck_assert(!out.success);
    worker_outcome_clear(&out);

    r = exited(0, "\n", "");
    worker_exec_outcome(&r, &out);
    ck_assert(!out.success);
    ck_assert(strstr(json_string_value(json_object_get(out.error, "message")), "no output"));
    worker_outcome_clear(&out);

    r = exited(3, "", "line 1\nline 2\n\n");
    worker_exec_outcome(&r, &out);
    ck_assert(!out.success);
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")), "exited with status 3: line 1\nline 2");
    ck_assert_int_eq(json_integer_value(json_object_get(out.error, "exit_code")), 3);
    ck_assert(json_is_true(json_object_get(out.error, "retryable")));
    worker_outcome_clear(&out);

    /* A JSON object on stdout refines the failure. */
    r = exited(2, "{\"retryable\": false, \"retry_after_secs\": 9, \"code\": \"E1\"}", "");
    worker_exec_outcome(&r, &out);
    ck_assert(!out.success);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "code")), "E1");
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")), "exited with status 2");
    ck_assert_int_eq(out.retry_after_secs, 9);
    worker_outcome_clear(&out);

    struct worker_exec_result t = { .timed_out = true, .timeout_secs = 5, .term_signal = 15, .out = "", .err = "" };
    worker_exec_outcome(&t, &out);
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")), "timed out after 5 s (killed)");
    ck_assert(json_is_true(json_object_get(out.error, "timed_out")));
    worker_outcome_clear(&out);

    struct worker_exec_result o = { .overflow = true, .cap_bytes = 1048576, .term_signal = 13, .out = "", .err = "" };
    worker_exec_outcome(&o, &out);
    ck_assert(strstr(json_string_value(json_object_get(out.error, "message")), "1048576-byte output cap"));
    worker_outcome_clear(&out);

    struct worker_exec_result k = { .term_signal = 9, .out = "", .err = "oops" };
    k.err_len = 4;
    worker_exec_outcome(&k, &out);
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")), "killed by signal 9 (SIGKILL); stderr: oops");
    worker_outcome_clear(&out);
}
END_TEST

/* ---- text ----------------------------------------------------------------------------------- */

START_TEST(text_tail)
{
    char out[64];
    const char *e = "one\ntwo\n\nthree\nfour\nfive\nsix\n  \n";
    worker_text_tail(e, strlen(e), 3, 100, out, sizeof out);
    ck_assert_str_eq(out, "four\nfive\nsix");
    worker_text_tail(e, strlen(e), 10, 100, out, sizeof out);
    ck_assert_str_eq(out, "one\ntwo\n\nthree\nfour\nfive\nsix");
    worker_text_tail(e, strlen(e), 3, 6, out, sizeof out);
    ck_assert_str_eq(out, "ve\nsix");
    worker_text_tail("", 0, 3, 100, out, sizeof out);
    ck_assert_str_eq(out, "");
    worker_text_tail("single", 6, 3, 100, out, sizeof out);
    ck_assert_str_eq(out, "single");
    /* Cutting inside a multi-byte character starts after it. */
    const char *u = "x\xc3\xa9y"; /* xéy */
    worker_text_tail(u, strlen(u), 1, 2, out, sizeof out);
    ck_assert_str_eq(out, "y");
    worker_text_tail(u, strlen(u), 1, 3, out, sizeof out);
    ck_assert_str_eq(out, "\xc3\xa9y");
    /* The output buffer bounds it too. */
    char small[4];
    worker_text_tail("abcdefgh", 8, 1, 100, small, sizeof small);
    ck_assert_str_eq(small, "fgh");
}
END_TEST

START_TEST(utf8_fix)
{
    char s1[] = "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    worker_utf8_fix(s1, strlen(s1));
    ck_assert_str_eq(s1, "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    char s2[] = "bad \xff \xc3( \xe2\x82 \xed\xa0\x80 \xc0\xaf end\xc3";
    worker_utf8_fix(s2, strlen(s2));
    ck_assert_str_eq(s2, "bad ? ?( ?? ??? ?? end?");
    char s3[] = { 'a', '\0', 'b', '\0' };
    worker_utf8_fix(s3, 3);
    ck_assert_str_eq(s3, "a?b");
}
END_TEST

START_TEST(notify_wakes)
{
    ck_assert(worker_notify_wakes("{\"queue\" : \"tasker_dispatch_ns\", \"namespace\" : \"ns\", \"msg_id\" : 3}",
                                  "tasker_dispatch_ns"));
    ck_assert(!worker_notify_wakes("{\"queue\":\"tasker_completion_ns\",\"namespace\":\"ns\"}", "tasker_dispatch_ns"));
    ck_assert(!worker_notify_wakes("{\"queue\":\"tasker_dispatch_ns2\"}", "tasker_dispatch_ns"));
    ck_assert(!worker_notify_wakes("not json", "tasker_dispatch_ns"));
    ck_assert(!worker_notify_wakes("", "tasker_dispatch_ns"));
    ck_assert(!worker_notify_wakes(NULL, "tasker_dispatch_ns"));
}
END_TEST

/* ---- dynamic workflows: decision ------------------------------------------------------------ */

/* decide: run the decision handler; the chosen names joined by ',' ("-" for no_branches), or the
 * error prefixed with "ERR ". */
static const char *decide(const char *init, const char *context)
{
    static char buf[512];
    json_t *i = json_loads(init, 0, NULL), *c = json_loads(context, 0, NULL), *res = NULL;
    ck_assert_ptr_nonnull(i);
    ck_assert_ptr_nonnull(c);
    char err[256];
    if (!worker_decision(i, c, &res, err, sizeof err)) {
        snprintf(buf, sizeof buf, "ERR %s", err);
    } else {
        const json_t *o = json_object_get(res, "decision_point_outcome");
        const char *type = json_string_value(json_object_get(o, "type"));
        buf[0] = '\0';
        if (strcmp(type, "no_branches") == 0) {
            ck_assert_int_eq(json_object_size(o), 1);
            snprintf(buf, sizeof buf, "-");
        } else {
            ck_assert_str_eq(type, "create_steps");
            size_t k;
            const json_t *v;
            json_array_foreach(json_object_get(o, "step_names"), k, v) {
                if (k)
                    strcat(buf, ",");
                strcat(buf, json_string_value(v));
            }
        }
    }
    json_decref(i);
    json_decref(c);
    json_decref(res);
    return buf;
}

#define APPROVAL "{\"rules\": [{\"path\": \"amount\", \"lt\": 1000, \"choose\": [\"auto_approve\"]}, " \
                 "{\"path\": \"amount\", \"lt\": 5000, \"choose\": [\"manager_approval\"]}], " \
                 "\"default\": [\"manager_approval\", \"finance_review\"]}"

START_TEST(decision_rules)
{
    /* The first matching rule wins; exact thresholds fall to the next rule. */
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": 999}"), "auto_approve");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": 999.99}"), "auto_approve");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": 1000}"), "manager_approval");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": 4999}"), "manager_approval");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": 5000}"), "manager_approval,finance_review");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": -3}"), "auto_approve");
    /* Absent, or not comparable with a number: no rule matches, the default applies. */
    ck_assert_str_eq(decide(APPROVAL, "{}"), "manager_approval,finance_review");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": \"12\"}"), "manager_approval,finance_review");
    ck_assert_str_eq(decide(APPROVAL, "{\"amount\": null}"), "manager_approval,finance_review");

    /* The result: the outcome and which rule matched (null: the default). */
    json_t *i = json_loads(APPROVAL, 0, NULL), *c = json_loads("{\"amount\": 2000}", 0, NULL), *res;
    char err[256];
    ck_assert(worker_decision(i, c, &res, err, sizeof err));
    char *d = dump(res);
    ck_assert_str_eq(d, "{\"decision_point_outcome\":{\"step_names\":[\"manager_approval\"],\"type\":\"create_steps\"},"
                        "\"matched_rule\":1}");
    free(d);
    json_decref(res);
    json_decref(c);
    c = json_loads("{\"amount\": 9000}", 0, NULL);
    ck_assert(worker_decision(i, c, &res, err, sizeof err));
    ck_assert(json_is_null(json_object_get(res, "matched_rule")));
    json_decref(res);
    json_decref(c);
    json_decref(i);

    /* choose [] and a missing default mean no branches. */
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"eq\": 1, \"choose\": []}], \"default\": [\"x\"]}",
                            "{\"a\": 1.0}"), "-");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"eq\": 1, \"choose\": [\"x\"]}]}", "{\"a\": 2}"), "-");
    ck_assert_str_eq(decide("{\"rules\": [], \"default\": []}", "{}"), "-");
    ck_assert_str_eq(decide("{\"rules\": [], \"default\": [\"only\"]}", "{}"), "only");
}
END_TEST

START_TEST(decision_operators)
{
    const char *range = "{\"rules\": [{\"path\": \"order.total\", \"gte\": 100, \"lte\": 200, \"choose\": [\"mid\"]},"
                        " {\"path\": \"order.total\", \"gt\": 200, \"choose\": [\"high\"]}], \"default\": [\"low\"]}";
    ck_assert_str_eq(decide(range, "{\"order\": {\"total\": 99}}"), "low");
    ck_assert_str_eq(decide(range, "{\"order\": {\"total\": 100}}"), "mid");
    ck_assert_str_eq(decide(range, "{\"order\": {\"total\": 200}}"), "mid");
    ck_assert_str_eq(decide(range, "{\"order\": {\"total\": 200.5}}"), "high");
    ck_assert_str_eq(decide(range, "{\"order\": 5}"), "low");
    /* Strings: eq/ne exactly, ordering bytewise; other JSON with eq/ne by value. */
    const char *str = "{\"rules\": [{\"path\": \"tier\", \"eq\": \"gold\", \"choose\": [\"vip\"]},"
                      " {\"path\": \"region\", \"lt\": \"m\", \"choose\": [\"a_to_l\"]},"
                      " {\"path\": \"flags.0\", \"eq\": true, \"choose\": [\"flagged\"]},"
                      " {\"path\": \"tier\", \"ne\": \"basic\", \"choose\": [\"not_basic\"]}]}";
    ck_assert_str_eq(decide(str, "{\"tier\": \"gold\"}"), "vip");
    ck_assert_str_eq(decide(str, "{\"tier\": \"Gold\", \"region\": \"eu\"}"), "a_to_l");
    ck_assert_str_eq(decide(str, "{\"tier\": \"basic\", \"region\": \"us\", \"flags\": [true]}"), "flagged");
    ck_assert_str_eq(decide(str, "{\"tier\": \"basic\", \"region\": \"us\", \"flags\": [false]}"), "-");
    ck_assert_str_eq(decide(str, "{\"tier\": \"silver\", \"region\": 3}"), "not_basic");
    ck_assert_str_eq(decide(str, "{\"tier\": 7}"), "not_basic"); /* ne with another type holds */
    ck_assert_str_eq(decide(str, "{}"), "-");                    /* … but not when absent */
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"o\", \"eq\": {\"k\": [1]}, \"choose\": [\"same\"]}]}",
                            "{\"o\": {\"k\": [1]}}"), "same");
}
END_TEST

START_TEST(decision_errors)
{
    ck_assert_str_eq(decide("{}", "{}"), "ERR initialization.rules must be an array of rules");
    ck_assert_str_eq(decide("{\"rules\": [], \"default\": \"x\"}", "{}"),
                     "ERR initialization.default must be an array of step names ([] = no branches)");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"lt\": 1}]}", "{}"),
                     "ERR rules[0].choose must be an array of step names ([] = no branches)");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"lt\": 1, \"choose\": [\"\"]}]}", "{}"),
                     "ERR rules[0].choose must be an array of step names ([] = no branches)");
    ck_assert_str_eq(decide("{\"rules\": [{\"lt\": 1, \"choose\": []}]}", "{}"),
                     "ERR rules[0].path must be a non-empty string (a dotted path into the task context)");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"choose\": []}]}", "{}"),
                     "ERR rules[0] has no operator (lt, lte, gt, gte, eq, ne)");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"less_than\": 3, \"choose\": []}]}", "{}"),
                     "ERR rules[0] has an unknown key \"less_than\" (operators: lt, lte, gt, gte, eq, ne)");
    ck_assert_str_eq(decide("{\"rules\": [{\"path\": \"a\", \"eq\": 1, \"choose\": []}, "
                            "{\"path\": \"a\", \"gt\": true, \"choose\": []}]}", "{\"a\": 1}"),
                     "ERR rules[1].gt must be a number or a string"); /* checked even though rule 0 matches */

    /* Through the handler: a configuration error is a permanent failure naming the handler. */
    struct worker_outcome out;
    struct worker_job *j = job_new("decision", "{\"rules\": 3}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(!out.success);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")),
                     "decision: initialization.rules must be an array of rules");
    worker_outcome_clear(&out);
    job_free(j);
    j = job_new("decision", "{\"rules\": [{\"path\": \"order\", \"gt\": 5, \"choose\": [\"big\"]}]}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(out.success);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(json_object_get(out.result,
                     "decision_point_outcome"), "step_names"), 0)), "big");
    worker_outcome_clear(&out);
    job_free(j);
}
END_TEST

START_TEST(json_path)
{
    json_t *r = json_loads("{\"a\": {\"b\": [10, {\"c\": \"x\"}]}, \"d.e\": 1, \"n\": null}", 0, NULL);
    ck_assert_int_eq(json_integer_value(worker_json_path(r, "a.b.0")), 10);
    ck_assert_str_eq(json_string_value(worker_json_path(r, "a.b.1.c")), "x");
    ck_assert(json_is_null(worker_json_path(r, "n")));
    ck_assert_ptr_null(worker_json_path(r, "a.b.2"));
    ck_assert_ptr_null(worker_json_path(r, "a.b.x"));
    ck_assert_ptr_null(worker_json_path(r, "a.b.-1"));
    ck_assert_ptr_null(worker_json_path(r, "a..b"));
    ck_assert_ptr_null(worker_json_path(r, "a."));
    ck_assert_ptr_null(worker_json_path(r, ""));
    ck_assert_ptr_null(worker_json_path(r, "d.e")); /* dots always separate */
    ck_assert_ptr_null(worker_json_path(r, "a.b.0.z"));
    json_decref(r);
}
END_TEST

/* ---- dynamic workflows: batch_plan ---------------------------------------------------------- */

/* plan: run batch_plan; NULL result on error (err filled). */
static json_t *plan(const char *init, const char *context, char *err, size_t errlen)
{
    json_t *i = json_loads(init, 0, NULL), *c = json_loads(context, 0, NULL), *res = NULL;
    ck_assert_ptr_nonnull(i);
    if (!worker_batch_plan(i, c, &res, err, errlen))
        res = NULL;
    json_decref(i);
    json_decref(c);
    return res;
}

/* check_cover: the cursor configs are contiguous, of the stated size (the last may be shorter),
 * cover [0, total), are numbered 1.. in equal-width ids, and worker_count matches. */
static void check_cover(const json_t *res, long long total, long long want_workers, long long want_size, int width)
{
    const json_t *o = json_object_get(res, "batch_processing_outcome");
    ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "create_batches");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "total_items")), total);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "worker_count")), want_workers);
    const json_t *cfgs = json_object_get(o, "cursor_configs");
    ck_assert_int_eq((long long)json_array_size(cfgs), want_workers);
    long long next = 0;
    size_t k;
    const json_t *c;
    json_array_foreach(cfgs, k, c) {
        char id[32];
        snprintf(id, sizeof id, "%0*zu", width, k + 1);
        ck_assert_str_eq(json_string_value(json_object_get(c, "batch_id")), id);
        long long s = json_integer_value(json_object_get(c, "start_cursor"));
        long long e = json_integer_value(json_object_get(c, "end_cursor"));
        ck_assert_int_eq(s, next);
        ck_assert_int_eq(json_integer_value(json_object_get(c, "batch_size")), want_size);
        if (k + 1 < json_array_size(cfgs))
            ck_assert_int_eq(e - s, want_size);
        else
            ck_assert(e - s >= 1 && e - s <= want_size);
        next = e;
    }
    ck_assert_int_eq(next, total);
}

START_TEST(batch_plan_boundaries)
{
    char err[256];
    json_t *r;
    /* Exact multiple, one over, one under, tiny, a single item. */
    r = plan("{\"total_items\": 1000, \"batch_size\": 100, \"worker_template_name\": \"process_batch\"}", "{}", err,
             sizeof err);
    check_cover(r, 1000, 10, 100, 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "batch_processing_outcome"),
                                                       "worker_template_name")), "process_batch");
    char *d = dump(json_array_get(json_object_get(json_object_get(r, "batch_processing_outcome"), "cursor_configs"), 9));
    ck_assert_str_eq(d, "{\"batch_id\":\"010\",\"batch_size\":100,\"end_cursor\":1000,\"start_cursor\":900}");
    free(d);
    json_decref(r);
    r = plan("{\"total_items\": 1001, \"batch_size\": 100, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 1001, 11, 100, 3);
    json_decref(r);
    r = plan("{\"total_items\": 999, \"batch_size\": 100, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 999, 10, 100, 3);
    json_decref(r);
    r = plan("{\"total_items\": 5, \"batch_size\": 100, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 5, 1, 100, 3);
    json_decref(r);
    r = plan("{\"total_items\": 1, \"batch_size\": 1, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 1, 1, 1, 3);
    json_decref(r);

    /* Zero items: no batches. */
    r = plan("{\"total_items\": 0, \"batch_size\": 100, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    d = dump(r);
    ck_assert_str_eq(d, "{\"batch_processing_outcome\":{\"type\":\"no_batches\"}}");
    free(d);
    json_decref(r);
}
END_TEST

START_TEST(batch_plan_cap_and_paths)
{
    char err[256];
    json_t *r;
    /* max_workers caps the count; the batches grow to still cover every item. */
    r = plan("{\"total_items\": 1000, \"batch_size\": 10, \"max_workers\": 50, \"worker_template_name\": \"w\"}", "{}",
             err, sizeof err);
    check_cover(r, 1000, 50, 20, 3);
    json_decref(r);
    r = plan("{\"total_items\": 1001, \"batch_size\": 1, \"max_workers\": 10, \"worker_template_name\": \"w\"}", "{}",
             err, sizeof err);
    check_cover(r, 1001, 10, 101, 3);
    json_decref(r);
    /* 10 items, at most 4 workers: batches of 3 → 4 workers (3, 3, 3, 1); 9 items → 3 workers. */
    r = plan("{\"total_items\": 10, \"batch_size\": 1, \"max_workers\": 4, \"worker_template_name\": \"w\"}", "{}",
             err, sizeof err);
    check_cover(r, 10, 4, 3, 3);
    json_decref(r);
    r = plan("{\"total_items\": 9, \"batch_size\": 1, \"max_workers\": 4, \"worker_template_name\": \"w\"}", "{}",
             err, sizeof err);
    check_cover(r, 9, 3, 3, 3);
    json_decref(r);
    /* Below the cap it is not used; the default cap is 1000 workers. */
    r = plan("{\"total_items\": 300, \"batch_size\": 100, \"max_workers\": 50, \"worker_template_name\": \"w\"}", "{}",
             err, sizeof err);
    check_cover(r, 300, 3, 100, 3);
    json_decref(r);
    r = plan("{\"total_items\": 5000, \"batch_size\": 1, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 5000, 1000, 5, 4); /* 1000 ids need 4 digits: 0001 … 1000 */
    json_decref(r);
    r = plan("{\"total_items\": 999, \"batch_size\": 1, \"worker_template_name\": \"w\"}", "{}", err, sizeof err);
    check_cover(r, 999, 999, 1, 3);
    json_decref(r);

    /* total_items_path: an integer, or an array's length, in the task context. */
    r = plan("{\"total_items_path\": \"import.rows\", \"batch_size\": 2, \"worker_template_name\": \"w\"}",
             "{\"import\": {\"rows\": 7}}", err, sizeof err);
    check_cover(r, 7, 4, 2, 3);
    json_decref(r);
    r = plan("{\"total_items_path\": \"rows\", \"batch_size\": 2, \"worker_template_name\": \"w\"}",
             "{\"rows\": [{}, {}, {}]}", err, sizeof err);
    check_cover(r, 3, 2, 2, 3);
    json_decref(r);
    r = plan("{\"total_items_path\": \"rows\", \"batch_size\": 2, \"worker_template_name\": \"w\"}", "{\"rows\": []}",
             err, sizeof err);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "batch_processing_outcome"), "type")),
                     "no_batches");
    json_decref(r);
}
END_TEST

START_TEST(batch_plan_errors)
{
    char err[256];
    ck_assert_ptr_null(plan("{\"total_items\": 5, \"batch_size\": 1}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization.worker_template_name must name the batch_worker step");
    ck_assert_ptr_null(plan("{\"batch_size\": 1, \"worker_template_name\": \"w\"}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization needs exactly one of total_items and total_items_path");
    ck_assert_ptr_null(plan("{\"total_items\": 1, \"total_items_path\": \"n\", \"batch_size\": 1, "
                            "\"worker_template_name\": \"w\"}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization needs exactly one of total_items and total_items_path");
    ck_assert_ptr_null(plan("{\"total_items\": 5, \"worker_template_name\": \"w\"}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization.batch_size is required (items per batch)");
    ck_assert_ptr_null(plan("{\"total_items\": 5, \"batch_size\": 0, \"worker_template_name\": \"w\"}", "{}", err,
                            sizeof err));
    ck_assert(strstr(err, "initialization.batch_size must be an integer from 1"));
    ck_assert_ptr_null(plan("{\"total_items\": -1, \"batch_size\": 1, \"worker_template_name\": \"w\"}", "{}", err,
                            sizeof err));
    ck_assert_ptr_null(plan("{\"total_items\": 5, \"batch_size\": 1, \"max_workers\": 0, \"worker_template_name\": "
                            "\"w\"}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization.max_workers must be an integer from 1 to 10000");
    ck_assert_ptr_null(plan("{\"total_items_path\": \"rows\", \"batch_size\": 1, \"worker_template_name\": \"w\"}",
                            "{\"rows\": \"many\"}", err, sizeof err));
    ck_assert_str_eq(err, "the task context's rows must be a non-negative integer or an array (it is another type)");
    ck_assert_ptr_null(plan("{\"total_items_path\": \"rows\", \"batch_size\": 1, \"worker_template_name\": \"w\"}",
                            "{}", err, sizeof err));
    ck_assert(strstr(err, "(it is absent)"));
}
END_TEST

/* ---- dynamic workflows: batch_work ---------------------------------------------------------- */

/* A batch worker's inputs as orchestration builds them (docs/worker.md). */
static json_t *batch_inputs(const char *id, long long start, long long end, int interval, bool no_op)
{
    json_t *in = json_pack("{s:{s:s, s:I, s:I, s:I}, s:{s:s, s:s}, s:b, s:s}", "cursor", "batch_id", id,
                           "start_cursor", (json_int_t)start, "end_cursor", (json_int_t)end, "batch_size",
                           (json_int_t)(end - start), "batch_metadata", "cursor_field", "id", "failure_strategy",
                           "fail_fast", "is_no_op", no_op, "__template_step_name", "process_batch");
    if (interval >= 0)
        json_object_set_new(json_object_get(in, "batch_metadata"), "checkpoint_interval", json_integer(interval));
    return in;
}

/* A run of the state machine as worker_handlers.c drives it, with every checkpoint saved. */
struct drive {
    enum worker_batch_action last;  /* DONE or FAIL */
    int steps;                      /* WORK steps */
    long long cp[64];               /* the checkpoint cursors, in order */
    int ncp;
    json_t *last_cp;                /* the last checkpoint document */
};

static void drive_run(struct worker_batch_run *r, struct drive *d)
{
    memset(d, 0, sizeof *d);
    for (int guard = 0; guard < 100000; guard++) {
        long long count;
        enum worker_batch_action a = worker_batch_next(r, &count);
        if (a == WORKER_BATCH_WORK) {
            ck_assert(count >= 1);
            ck_assert(worker_batch_advance(r, count));
            d->steps++;
        } else if (a == WORKER_BATCH_CHECKPOINT) {
            json_decref(d->last_cp);
            d->last_cp = worker_batch_checkpoint_doc(r);
            ck_assert_int_lt(d->ncp, 64);
            d->cp[d->ncp++] = json_integer_value(json_object_get(d->last_cp, "cursor"));
            worker_batch_checkpointed(r, true);
        } else {
            d->last = a;
            return;
        }
    }
    ck_abort_msg("batch_work did not end");
}

static bool setup(struct worker_batch_run *r, const char *init, json_t *inputs, const char *checkpoint, int attempt,
                  char *err, size_t errlen)
{
    json_t *i = json_loads(init, 0, NULL), *c = checkpoint ? json_loads(checkpoint, 0, NULL) : json_null();
    ck_assert_ptr_nonnull(i);
    bool ok = worker_batch_setup(r, i, inputs, c, attempt, err, errlen);
    json_decref(i);
    json_decref(c);
    json_decref(inputs);
    return ok;
}

START_TEST(batch_work_plain)
{
    struct worker_batch_run r;
    struct drive d;
    char err[256];
    /* No checkpoints: one step over the whole range, sum of 100..199. */
    ck_assert(setup(&r, "{}", batch_inputs("002", 100, 200, -1, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert_int_eq(d.steps, 1);
    ck_assert_int_eq(d.ncp, 0);
    json_t *res = worker_batch_result(&r);
    char *s = dump(res);
    ck_assert_str_eq(s, "{\"batch_id\":\"002\",\"checkpoints\":0,\"items_processed\":100,\"processed_this_attempt\":100,"
                        "\"resumed_from\":null,\"sum\":14950}");
    free(s);
    json_decref(res);

    /* Every 10 items (batch_metadata), none at the end: 9 checkpoints over 0..100. */
    ck_assert(setup(&r, "{\"checkpoint_interval\": 3}", batch_inputs("001", 0, 100, 10, false), NULL, 1, err,
                    sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert_int_eq(d.ncp, 9);
    for (int k = 0; k < 9; k++)
        ck_assert_int_eq(d.cp[k], 10 * (k + 1));
    s = dump(d.last_cp);
    ck_assert_str_eq(s, "{\"accumulated_results\":{\"sum\":4005},\"cursor\":90,\"items_processed\":90}");
    free(s);
    json_decref(d.last_cp);
    ck_assert_int_eq(r.sum, 4950);
    ck_assert_int_eq(r.checkpoints, 9);

    /* Without batch_metadata.checkpoint_interval, initialization's; item_ms makes steps of one item. */
    ck_assert(setup(&r, "{\"checkpoint_interval\": 4, \"item_ms\": 1}", batch_inputs("001", 0, 10, -1, false), NULL,
                    1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.ncp, 2);
    ck_assert_int_eq(d.cp[0], 4);
    ck_assert_int_eq(d.cp[1], 8);
    ck_assert_int_eq(d.steps, 10);
    ck_assert_int_eq(r.sum, 45);
    json_decref(d.last_cp);

    /* The no_batches placeholder: done at once, nothing processed. */
    ck_assert(setup(&r, "{\"fail_at_item\": 0}", batch_inputs("000", 0, 0, -1, true), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert_int_eq(d.steps, 0);
    res = worker_batch_result(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "items_processed")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "sum")), 0);
    ck_assert(json_is_true(json_object_get(res, "no_op")));
    json_decref(res);

    /* An empty range is done at once too. */
    ck_assert(setup(&r, "{}", batch_inputs("004", 30, 30, 10, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert_int_eq(r.sum, 0);
}
END_TEST

START_TEST(batch_work_fail_and_resume)
{
    struct worker_batch_run r;
    struct drive d;
    char err[256];
    const char *init = "{\"fail_at_item\": 55, \"succeed_on_attempt\": 2}";
    /* Attempt 1: checkpoints at 10 … 50, fails on reaching item 55. */
    ck_assert(setup(&r, init, batch_inputs("001", 0, 100, 10, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_FAIL);
    ck_assert_int_eq(d.ncp, 5);
    ck_assert_int_eq(d.cp[4], 50);
    struct worker_outcome out;
    worker_batch_fail(&r, &out);
    ck_assert(!out.success);
    ck_assert(json_is_true(json_object_get(out.error, "retryable")));
    ck_assert_int_eq(json_integer_value(json_object_get(out.error, "failed_at_item")), 55);
    ck_assert_int_eq(json_integer_value(json_object_get(out.error, "items_processed")), 55);
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "message")),
                     "batch 001 failed at item 55 as configured (attempt 1)");
    worker_outcome_clear(&out);
    char *cp = dump(d.last_cp);
    json_decref(d.last_cp);

    /* Attempt 2 carries the checkpoint: resumes at 50, processes only 50 items, same total. */
    ck_assert(setup(&r, init, batch_inputs("001", 0, 100, 10, false), cp, 2, err, sizeof err));
    free(cp);
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert_int_eq(d.cp[0], 60); /* not again at 50 */
    json_t *res = worker_batch_result(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "resumed_from")), 50);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "processed_this_attempt")), 50);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "items_processed")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "sum")), 4950);
    json_decref(res);
    json_decref(d.last_cp);

    /* A checkpoint without accumulated_results: the sum is recomputed. One outside the range is ignored. */
    ck_assert(setup(&r, "{}", batch_inputs("001", 0, 100, 0, false), "{\"cursor\": 30, \"items_processed\": 30}", 2,
                    err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(r.sum, 4950);
    ck_assert_int_eq(r.processed_now, 70);
    ck_assert(setup(&r, "{}", batch_inputs("001", 0, 100, 0, false), "{\"cursor\": 130}", 2, err, sizeof err));
    ck_assert(r.checkpoint_ignored && !r.resumed);
    drive_run(&r, &d);
    ck_assert_int_eq(r.processed_now, 100);
    ck_assert_int_eq(r.sum, 4950);
    res = worker_batch_result(&r);
    ck_assert(json_is_true(json_object_get(res, "checkpoint_ignored")));
    json_decref(res);

    /* A checkpoint due where the failure is comes first: the retry resumes right there. */
    ck_assert(setup(&r, "{\"fail_at_item\": 20}", batch_inputs("001", 0, 100, 10, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_FAIL);
    ck_assert_int_eq(d.ncp, 2);
    ck_assert_int_eq(d.cp[1], 20);
    json_decref(d.last_cp);
}
END_TEST

START_TEST(batch_work_fail_targets)
{
    struct worker_batch_run r;
    struct drive d;
    char err[256];
    struct worker_outcome out;
    /* fail_on_batch: the batches listed fail at once, on every attempt; the others succeed. */
    const char *init = "{\"fail_on_batch\": [\"002\"], \"fail_permanently\": true}";
    ck_assert(setup(&r, init, batch_inputs("001", 0, 100, 10, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    json_decref(d.last_cp);
    ck_assert(setup(&r, init, batch_inputs("002", 100, 200, 10, false), NULL, 3, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_FAIL);
    ck_assert_int_eq(d.steps, 0);
    worker_batch_fail(&r, &out);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert_str_eq(json_string_value(json_object_get(out.error, "batch_id")), "002");
    worker_outcome_clear(&out);

    /* fail_at_item alone: only the batch whose range holds the item fails. */
    init = "{\"fail_at_item\": 150}";
    ck_assert(setup(&r, init, batch_inputs("001", 0, 100, 0, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    ck_assert(setup(&r, init, batch_inputs("002", 100, 200, 0, false), NULL, 1, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_FAIL);
    ck_assert_int_eq(r.pos, 150);
    ck_assert_int_eq(r.sum, 6225); /* 100 + … + 149 */
    /* … unless a checkpoint already lies past it. */
    ck_assert(setup(&r, init, batch_inputs("002", 100, 200, 0, false), "{\"cursor\": 160}", 2, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
    /* fail_on_batch and fail_at_item together: that batch, at that item; succeed_on_attempt ends it. */
    init = "{\"fail_on_batch\": [\"002\"], \"fail_at_item\": 120, \"succeed_on_attempt\": 3}";
    ck_assert(setup(&r, init, batch_inputs("002", 100, 200, 0, false), NULL, 2, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_FAIL);
    ck_assert_int_eq(r.pos, 120);
    ck_assert(setup(&r, init, batch_inputs("002", 100, 200, 0, false), NULL, 3, err, sizeof err));
    drive_run(&r, &d);
    ck_assert_int_eq(d.last, WORKER_BATCH_DONE);
}
END_TEST

START_TEST(batch_work_errors)
{
    struct worker_batch_run r;
    char err[256];
    ck_assert(!setup(&r, "{}", json_pack("{s:i}", "x", 1), NULL, 1, err, sizeof err));
    ck_assert(strstr(err, "is this step a batch worker?"));
    ck_assert(!setup(&r, "{}", batch_inputs("001", 10, 5, 0, false), NULL, 1, err, sizeof err));
    ck_assert(!setup(&r, "{\"item_ms\": -1}", batch_inputs("001", 0, 5, 0, false), NULL, 1, err, sizeof err));
    ck_assert_str_eq(err, "initialization.item_ms must be an integer from 0 to 3600000");
    ck_assert(!setup(&r, "{\"checkpoint_interval\": \"10\"}", batch_inputs("001", 0, 5, -1, false), NULL, 1, err,
                     sizeof err));
    ck_assert(strstr(err, "initialization.checkpoint_interval must be an integer"));
    ck_assert(!setup(&r, "{\"fail_on_batch\": \"002\"}", batch_inputs("001", 0, 5, 0, false), NULL, 1, err,
                     sizeof err));
    ck_assert(!setup(&r, "{\"fail_at_item\": 1.5}", batch_inputs("001", 0, 5, 0, false), NULL, 1, err, sizeof err));
    /* A sum that does not fit in 64 bits is refused, not wrapped. */
    ck_assert(!setup(&r, "{}", batch_inputs("001", 0, 9000000000000000000LL, 0, false), "{\"cursor\": 8000000000000000000}",
                     2, err, sizeof err));
    ck_assert(setup(&r, "{}", batch_inputs("001", 4000000000LL, 9000000000000000000LL, 0, false), NULL, 1, err,
                    sizeof err));
    long long count;
    ck_assert_int_eq(worker_batch_next(&r, &count), WORKER_BATCH_WORK);
    ck_assert(!worker_batch_advance(&r, count));

    /* Through the handler dispatch: batch_work is not synchronous. */
    struct worker_outcome out;
    struct worker_job *j = job_new("batch_work", "{}", 1);
    ck_assert(!worker_outcome_builtin(j, &out));
    job_free(j);
}
END_TEST

/* ---- dynamic workflows: batch_aggregate ----------------------------------------------------- */

static json_t *aggregate(const char *init, const char *deps, char *err, size_t errlen)
{
    json_t *i = json_loads(init, 0, NULL), *d = json_loads(deps, 0, NULL), *res = NULL;
    ck_assert_ptr_nonnull(i);
    ck_assert_ptr_nonnull(d);
    if (!worker_batch_aggregate(i, d, &res, err, errlen))
        res = NULL;
    json_decref(i);
    json_decref(d);
    return res;
}

START_TEST(batch_aggregate_sums)
{
    char err[256];
    const char *init = "{\"worker_template_name\": \"process_batch\"}";
    json_t *r = aggregate(init,
                          "{\"plan\": {\"batch_processing_outcome\": {\"type\": \"create_batches\", \"total_items\": 250}},"
                          " \"process_batch_001\": {\"batch_id\": \"001\", \"items_processed\": 100, \"sum\": 4950},"
                          " \"process_batch_002\": {\"batch_id\": \"002\", \"items_processed\": 100, \"sum\": 14950},"
                          " \"process_batch_003\": {\"error\": {\"message\": \"boom\"}, \"items_processed\": 9, \"sum\": 1},"
                          " \"process_batches\": {\"items_processed\": 1000, \"sum\": 1000},"
                          " \"process_batch\": {\"items_processed\": 1000, \"sum\": 1000},"
                          " \"setup\": {\"sum\": 7}}",
                          err, sizeof err);
    ck_assert_ptr_nonnull(r);
    char *s = dump(r);
    ck_assert_str_eq(s, "{\"batches\":3,\"failed_batches\":1,\"items_processed\":200,\"sum\":19900}");
    free(s);
    json_decref(r);

    /* no_batches: zeros, the placeholder worker notwithstanding. */
    r = aggregate(init,
                  "{\"plan\": {\"batch_processing_outcome\": {\"type\": \"no_batches\"}},"
                  " \"process_batch_000\": {\"batch_id\": \"000\", \"items_processed\": 0, \"sum\": 0, \"no_op\": true}}",
                  err, sizeof err);
    s = dump(r);
    ck_assert_str_eq(s, "{\"batches\":0,\"failed_batches\":0,\"items_processed\":0,\"sum\":0}");
    free(s);
    json_decref(r);

    /* No worker results and no no_batches outcome: a misconfiguration, said plainly. */
    ck_assert_ptr_null(aggregate(init, "{\"plan\": {}}", err, sizeof err));
    ck_assert(strstr(err, "no dependency result is named process_batch_*"));
    ck_assert_ptr_null(aggregate("{}", "{}", err, sizeof err));
    ck_assert_str_eq(err, "initialization.worker_template_name must name the batch_worker step");
    /* Through the handler. */
    struct worker_outcome out;
    struct worker_job *j = job_new("batch_aggregate", "{\"worker_template_name\": \"a\"}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(!out.success);
    ck_assert(json_is_false(json_object_get(out.error, "retryable")));
    ck_assert(strncmp(json_string_value(json_object_get(out.error, "message")), "batch_aggregate: ", 17) == 0);
    worker_outcome_clear(&out);
    job_free(j);
}
END_TEST

START_TEST(batch_plan_handler)
{
    /* Through the handler: the plan comes from the job's initialization and the task context. */
    struct worker_outcome out;
    struct worker_job *j = job_new("batch_plan", "{\"total_items_path\": \"order\", \"batch_size\": 3, "
                                                 "\"worker_template_name\": \"pb\"}", 1);
    ck_assert(worker_outcome_builtin(j, &out));
    ck_assert(out.success);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(out.result, "batch_processing_outcome"),
                                                        "worker_count")), 3); /* order = 7 */
    worker_outcome_clear(&out);
    job_free(j);
}
END_TEST

Suite *make_worker_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("options");
    tcase_add_test(tc, opts_defaults);
    tcase_add_test(tc, opts_all);
    tcase_add_test(tc, opts_errors);
    tcase_add_test(tc, names_valid);
    tcase_add_test(tc, opts_handler_map);
    tcase_add_test(tc, opts_handler_map_errors);
    tcase_add_test(tc, usage_lists_everything);
    suite_add_tcase(s, tc);
    tc = tcase_create("handlers");
    tcase_add_test(tc, builtin_noop_echo);
    tcase_add_test(tc, builtin_fail);
    tcase_add_test(tc, builtin_unknown_and_async);
    tcase_add_test(tc, sleep_ms);
    suite_add_tcase(s, tc);
    tc = tcase_create("dynamic");
    tcase_add_test(tc, decision_rules);
    tcase_add_test(tc, decision_operators);
    tcase_add_test(tc, decision_errors);
    tcase_add_test(tc, json_path);
    tcase_add_test(tc, batch_plan_boundaries);
    tcase_add_test(tc, batch_plan_cap_and_paths);
    tcase_add_test(tc, batch_plan_errors);
    tcase_add_test(tc, batch_plan_handler);
    tcase_add_test(tc, batch_work_plain);
    tcase_add_test(tc, batch_work_fail_and_resume);
    tcase_add_test(tc, batch_work_fail_targets);
    tcase_add_test(tc, batch_work_errors);
    tcase_add_test(tc, batch_aggregate_sums);
    suite_add_tcase(s, tc);
    tc = tcase_create("exec");
    tcase_add_test(tc, exec_argv_and_timeout);
    tcase_add_test(tc, exec_input_doc);
    tcase_add_test(tc, exec_outcomes);
    suite_add_tcase(s, tc);
    tc = tcase_create("text");
    tcase_add_test(tc, text_tail);
    tcase_add_test(tc, utf8_fix);
    tcase_add_test(tc, notify_wakes);
    suite_add_tcase(s, tc);
    return s;
}
