/* check_worker.c — unit tests of tasker-worker's pure logic (src/worker_util.c): options, handler
 * outcomes, exec result interpretation, text helpers. No database, no processes.
 *
 * The unit binary links the daemon's objects only (the Makefile keeps src/worker*.c out of them), so
 * the file under test is compiled in here directly; it has no dependencies beyond jansson and libc. */
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

Suite *make_worker_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("options");
    tcase_add_test(tc, opts_defaults);
    tcase_add_test(tc, opts_all);
    tcase_add_test(tc, opts_errors);
    tcase_add_test(tc, names_valid);
    suite_add_tcase(s, tc);
    tc = tcase_create("handlers");
    tcase_add_test(tc, builtin_noop_echo);
    tcase_add_test(tc, builtin_fail);
    tcase_add_test(tc, builtin_unknown_and_async);
    tcase_add_test(tc, sleep_ms);
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
