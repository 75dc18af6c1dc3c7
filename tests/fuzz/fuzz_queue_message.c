/* fuzz_queue_message.c — fuzz target: what the worker parses from the queue and from its handlers,
 * all in worker_util.c. The input is used three ways:
 *   - as a claimed step: a JSON object with the claim row's columns (tasker_claim_and_execute_step;
 *     the JSON columns as values or as JSON text, as the worker reads them), from which a job is
 *     built the way worker.c does; then the built-in handlers' outcomes, the sleep and exec
 *     settings, and the document an exec child gets on stdin;
 *   - as a pgmq_message_ready NOTIFY payload (worker_notify_wakes);
 *   - as an exec child's stdout and stderr, for every way a child can end (worker_exec_outcome).
 * Every outcome must be a document submit_step_results can take: valid JSON, a string message. */
#include "fuzz.h"

#include "worker.h"
#include "worker_exec.h"

#define QUEUE "tasker_step_queue_payments"

/* check_outcome: success with a result, or failure with an error object holding a string message;
 * both serialize (no invalid UTF-8 slipped in). */
static void check_outcome(const struct worker_outcome *out)
{
    if (out->success) {
        FUZZ_CHECK(out->result != NULL && out->error == NULL);
        char *t = json_dumps(out->result, JSON_ENCODE_ANY | JSON_COMPACT);
        FUZZ_CHECK(t != NULL);
        free(t);
    } else {
        FUZZ_CHECK(out->result == NULL && json_is_object(out->error));
        FUZZ_CHECK(json_is_string(json_object_get(out->error, "message")));
        char *t = json_dumps(out->error, JSON_COMPACT);
        FUZZ_CHECK(t != NULL);
        free(t);
    }
    FUZZ_CHECK(out->retry_after_secs >= -1);
}

/* column: a JSON column of the claim row as the worker gets it (text, parsed with
 * JSON_DECODE_ANY; SQL null → json null). A string value is taken as that text. New reference. */
static json_t *column(const json_t *row, const char *name)
{
    const json_t *v = json_object_get(row, name);
    if (!v || json_is_null(v))
        return json_null();
    if (json_is_string(v)) {
        json_t *j = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
        return j ? j : json_null(); /* worker.c: "cannot parse …; using null" */
    }
    return json_incref((json_t *)v);
}

/* str: a JSON string's text, "" for anything else. */
static const char *str(const json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : "";
}

static char *text_column(const json_t *row, const char *name)
{
    const char *s = json_string_value(json_object_get(row, name));
    char *copy = strdup(s ? s : "");
    if (!copy)
        abort();
    return copy;
}

static void claim(const json_t *row)
{
    struct worker_job job;
    memset(&job, 0, sizeof job);
    snprintf(job.task_uuid, sizeof job.task_uuid, "%s", str(json_object_get(row, "task_uuid")));
    snprintf(job.step_uuid, sizeof job.step_uuid, "%s",
             str(json_object_get(row, "workflow_step_uuid")));
    job.msg_id = (long long)json_integer_value(json_object_get(row, "msg_id"));
    job.attempt = (int)json_integer_value(json_object_get(row, "attempt"));
    job.step_name = text_column(row, "step_name");
    job.callable = text_column(row, "handler_callable");
    job.initialization = column(row, "handler_initialization");
    if (json_is_null(job.initialization)) {
        json_decref(job.initialization);
        job.initialization = json_object();
    }
    job.inputs = column(row, "inputs");
    job.context = column(row, "task_context");
    job.dependencies = column(row, "dependency_results");
    job.timeout_seconds = (int)json_integer_value(json_object_get(row, "timeout_seconds"));
    job.correlation_id = text_column(row, "correlation_id");
    job.namespace_name = text_column(row, "namespace");
    job.task_name = text_column(row, "task_name");

    struct worker_outcome out;
    memset(&out, 0, sizeof out);
    if (worker_outcome_builtin(&job, &out)) {
        check_outcome(&out);
        worker_outcome_clear(&out);
    } else {
        FUZZ_CHECK(strcmp(job.callable, "sleep") == 0 || strcmp(job.callable, "exec") == 0);
    }
    long long ms = worker_sleep_ms(job.initialization);
    FUZZ_CHECK(ms >= -1 && ms <= 7LL * 86400 * 1000);
    char err[256];
    char **argv = worker_exec_argv(job.initialization, err, sizeof err);
    if (argv) {
        FUZZ_CHECK(argv[0] && argv[0][0]);
        free(argv);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    int t = worker_exec_timeout_secs(job.initialization, job.timeout_seconds, 300);
    FUZZ_CHECK(t == -1 || t > 0 || job.timeout_seconds < 0 || t == 300 || t == job.timeout_seconds);
    char *input = worker_exec_input(&job);
    if (input) { /* NULL only when a text column is not UTF-8 (json_pack refuses it) */
        size_t n = strlen(input);
        FUZZ_CHECK(n > 0 && input[n - 1] == '\n');
        json_t *doc = json_loads(input, 0, NULL);
        FUZZ_CHECK(json_is_object(doc));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(doc, "step_uuid")), job.step_uuid) == 0);
        json_decref(doc);
        free(input);
    }

    free(job.step_name);
    free(job.callable);
    free(job.correlation_id);
    free(job.namespace_name);
    free(job.task_name);
    json_decref(job.initialization);
    json_decref(job.inputs);
    json_decref(job.context);
    json_decref(job.dependencies);
}

static void exec_outcomes(const char *buf, size_t len)
{
    struct worker_exec_result ends[] = {
        {.exited = true, .exit_code = 0},
        {.exited = true, .exit_code = 3},
        {.exited = false, .term_signal = 9},
        {.exited = false, .term_signal = 15, .timed_out = true, .timeout_secs = 30},
        {.exited = false, .term_signal = 9, .overflow = true, .cap_bytes = 1024},
    };
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        struct worker_exec_result r = ends[i];
        r.out = buf;
        r.out_len = len;
        r.err = buf;
        r.err_len = len;
        struct worker_outcome out;
        memset(&out, 0, sizeof out);
        worker_exec_outcome(&r, &out);
        check_outcome(&out);
        worker_outcome_clear(&out);
    }
    char tail[WORKER_ERR_TAIL_CHARS + 16];
    worker_text_tail(buf, len, WORKER_ERR_TAIL_LINES, WORKER_ERR_TAIL_CHARS, tail, sizeof tail);
    FUZZ_CHECK(strlen(tail) <= WORKER_ERR_TAIL_CHARS);
    json_t *s = json_string(tail); /* valid UTF-8 */
    FUZZ_CHECK(s != NULL);
    json_decref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size); /* stdout is NUL-terminated by worker_exec.c too */

    json_t *row = json_loads(text, 0, NULL);
    if (json_is_object(row))
        claim(row);
    json_decref(row);

    worker_notify_wakes(text, QUEUE);
    exec_outcomes(text, size);
    free(text);
    return 0;
}
