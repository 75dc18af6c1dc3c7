/* fuzz_http_body.c — fuzz target: a request body through the JSON checks the API makes before any
 * SQL (http_input.c: the parse, then the field checks of POST /v1/tasks, PATCH of a step, PATCH of
 * a DLQ entry and POST …/recover), and every refusal through the error body a client would get. */
#include "fuzz.h"

#include "http_input.h"
#include "http_util.h"
#include "names.h"

/* check_refusal: an input check said no: a 400 with a message, and an error body that is JSON
 * carrying the stable code (the message may quote the client's bytes, valid UTF-8 or not). */
static void check_refusal(const struct hinput_error *e)
{
    FUZZ_CHECK(hutil_error_status(e->code) == 400);
    FUZZ_CHECK(e->message[0] != '\0');
    char *body = hutil_error_body(e->code, e->message, NULL);
    FUZZ_CHECK(body != NULL);
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    FUZZ_CHECK(j != NULL);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    FUZZ_CHECK(code && strcmp(code, hutil_error_code(e->code)) == 0);
    json_decref(j);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hinput_error e;
    json_t *body = hinput_body_parse((const char *)data, size, &e);
    if (!body) {
        check_refusal(&e);
        return 0;
    }
    FUZZ_CHECK(json_is_object(body));

    if (hinput_task_create(body, &e)) {
        /* accepted: what http_api.c reads next is there and well-formed */
        const char *name = json_string_value(json_object_get(body, "name"));
        FUZZ_CHECK(name && json_string_length(json_object_get(body, "name")) > 0);
        const char *ns = json_string_value(json_object_get(body, "namespace"));
        FUZZ_CHECK(!ns || namespace_name_valid(ns));
    } else {
        check_refusal(&e);
    }

    const char *by_key = NULL;
    if (hinput_step_resolve(body, &by_key, &e)) {
        FUZZ_CHECK(by_key != NULL);
        const json_t *by = json_object_get(body, by_key);
        FUZZ_CHECK(!by || json_is_null(by) || json_is_string(by));
        FUZZ_CHECK(json_is_string(json_object_get(body, "action_type")));
    } else {
        check_refusal(&e);
    }

    if (hinput_dlq_update(body, &e)) {
        /* steps only with recover: true */
        const json_t *steps = json_object_get(body, "steps");
        FUZZ_CHECK(!steps || json_is_null(steps) || json_is_true(json_object_get(body, "recover")));
    } else {
        check_refusal(&e);
    }

    if (hinput_task_recover(body, &e)) {
        const json_t *steps = json_object_get(body, "steps");
        FUZZ_CHECK(!steps || json_is_null(steps) || json_array_size(steps) > 0);
    } else {
        check_refusal(&e);
    }
    json_decref(body);
    return 0;
}
