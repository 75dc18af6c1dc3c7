/* check_http.c — unit tests of the HTTP API's pure parts: error bodies, UUID/integer parsing,
 * API keys and permissions, routing, and the Prometheus rendering of the metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>
#include <sys/queue.h> /* TAILQ_*, for struct evkeyvalq */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "conf.h"
#include "http_auth.h"
#include "http_input.h"
#include "http_route.h"
#include "http_util.h"
#include "metrics.h"
#include "names.h"
#include "suites.h"

/* ---- error bodies ----------------------------------------------------------------------------- */

START_TEST(error_table)
{
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_INVALID_JSON), 400);
    ck_assert_str_eq(hutil_error_code(HUTIL_ERR_INVALID_JSON), "invalid_json");
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_TEMPLATE_NOT_FOUND), 404);
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_METHOD_NOT_ALLOWED), 405);
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_DUPLICATE_TASK), 409);
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_PAYLOAD_TOO_LARGE), 413);
    ck_assert_str_eq(hutil_error_code(HUTIL_ERR_PAYLOAD_TOO_LARGE), "payload_too_large");
    ck_assert_int_eq(hutil_error_status(HUTIL_ERR_OVERLOADED), 503);
    /* every code is distinct: clients switch on them */
    for (int a = 0; a < HUTIL_ERR_COUNT; a++)
        for (int b = a + 1; b < HUTIL_ERR_COUNT; b++)
            ck_assert_str_ne(hutil_error_code((enum hutil_error)a), hutil_error_code((enum hutil_error)b));
    ck_assert_int_eq(hutil_error_status((enum hutil_error)999), 500);
}
END_TEST

START_TEST(error_body_shape)
{
    json_t *extra = json_pack("{s:s, s:s}", "task_uuid", "01234567-89ab-7def-8123-456789abcdef", "code", "ignored");
    char *text = hutil_error_body(HUTIL_ERR_DUPLICATE_TASK, "a \"quoted\"\nmessage \\ here", extra);
    json_decref(extra);
    ck_assert_ptr_nonnull(text);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    ck_assert_msg(root != NULL, "not JSON: %s", text);
    ck_assert_int_eq(json_object_size(root), 1);
    json_t *err = json_object_get(root, "error");
    ck_assert_str_eq(json_string_value(json_object_get(err, "code")), "duplicate_task");
    ck_assert_str_eq(json_string_value(json_object_get(err, "message")), "a \"quoted\"\nmessage \\ here");
    ck_assert_str_eq(json_string_value(json_object_get(err, "task_uuid")), "01234567-89ab-7def-8123-456789abcdef");
    ck_assert_int_eq(json_object_size(err), 3); /* extra cannot override code */
    /* code and message come first */
    ck_assert_ptr_nonnull(strstr(text, "{\"error\":{\"code\":\"duplicate_task\",\"message\":"));
    json_decref(root);
    free(text);
}
END_TEST

START_TEST(error_body_bad_utf8)
{
    char *text = hutil_error_body(HUTIL_ERR_INVALID_REQUEST, "bad \xff\xfe byte, ok \xc3\xa9", NULL);
    ck_assert_ptr_nonnull(text);
    json_t *root = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "error"), "message")),
                     "bad ?? byte, ok \xc3\xa9");
    json_decref(root);
    free(text);
    /* an overlong form passes the byte scan but not jansson: a fixed message instead */
    text = hutil_error_body(HUTIL_ERR_INVALID_REQUEST, "over\xc0\x80long", NULL);
    ck_assert_ptr_nonnull(text);
    root = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_decref(root);
    free(text);
    text = hutil_error_body(HUTIL_ERR_INTERNAL, NULL, NULL);
    ck_assert_str_eq(text, "{\"error\":{\"code\":\"internal_error\",\"message\":\"\"}}");
    free(text);
}
END_TEST

START_TEST(uuid_and_ints)
{
    ck_assert(hutil_uuid_valid("01234567-89ab-7def-8123-456789abcdef"));
    ck_assert(hutil_uuid_valid("01234567-89AB-7DEF-8123-456789ABCDEF"));
    ck_assert(!hutil_uuid_valid("01234567-89ab-7def-8123-456789abcde"));   /* short */
    ck_assert(!hutil_uuid_valid("01234567-89ab-7def-8123-456789abcdef0")); /* long */
    ck_assert(!hutil_uuid_valid("0123456789ab-7def-8123-456789abcdef-"));  /* dashes misplaced */
    ck_assert(!hutil_uuid_valid("01234567-89ab-7def-8123-456789abcdeg"));  /* not hex */
    ck_assert(!hutil_uuid_valid(""));
    ck_assert(!hutil_uuid_valid(NULL));

    long v = 0;
    ck_assert(hutil_parse_int("1", 1, 100, &v) && v == 1);
    ck_assert(hutil_parse_int("100", 1, 100, &v) && v == 100);
    ck_assert(hutil_parse_int("-5", -10, 10, &v) && v == -5);
    ck_assert(!hutil_parse_int("101", 1, 100, &v));
    ck_assert(!hutil_parse_int("0", 1, 100, &v));
    ck_assert(!hutil_parse_int("", 1, 100, &v));
    ck_assert(!hutil_parse_int("-", -1, 1, &v));
    ck_assert(!hutil_parse_int("+1", 1, 100, &v));
    ck_assert(!hutil_parse_int(" 1", 1, 100, &v));
    ck_assert(!hutil_parse_int("1a", 1, 100, &v));
    ck_assert(!hutil_parse_int("1.0", 1, 100, &v));
    ck_assert(!hutil_parse_int("99999999999999999999999", 1, 100, &v));
    ck_assert(!hutil_parse_int(NULL, 1, 100, &v));

    ck_assert(namespace_name_valid("a"));
    ck_assert(namespace_name_valid("payments_v2"));
    ck_assert(namespace_name_valid("a2345678901234567890123456789")); /* 29 */
    ck_assert(!namespace_name_valid("a23456789012345678901234567890")); /* 30 */
    ck_assert(!namespace_name_valid("2a"));
    ck_assert(!namespace_name_valid("Ab"));
    ck_assert(!namespace_name_valid("a-b"));
    ck_assert(!namespace_name_valid(""));
}
END_TEST

START_TEST(operator_text)
{
    ck_assert(hutil_text_safe("ops-anna"));
    ck_assert(hutil_text_safe("Zo\xc3\xab O'Brien (ops) \"x\" \\ \xe2\x82\xac"));
    ck_assert(hutil_text_safe(""));
    ck_assert(!hutil_text_safe("ops\nINFO forged"));
    ck_assert(!hutil_text_safe("ops\t"));
    ck_assert(!hutil_text_safe("\x1b[2J"));
    ck_assert(!hutil_text_safe("del\x7f"));
    ck_assert(!hutil_text_safe("nel\xc2\x85"));          /* U+0085, a C1 control */
    ck_assert(!hutil_text_safe("rtl\xe2\x80\xae"));      /* U+202E */
    ck_assert(!hutil_text_safe("iso\xe2\x81\xa8"));      /* U+2068 */
    ck_assert(!hutil_text_safe("ls\xe2\x80\xa8"));       /* U+2028 */
    ck_assert(!hutil_text_safe("bad\xff"));               /* not UTF-8 */
    ck_assert(!hutil_text_safe(NULL));
}
END_TEST

START_TEST(query_nul)
{
    ck_assert(!hutil_query_has_nul("namespace=payments&page=2"));
    ck_assert(!hutil_query_has_nul(""));
    ck_assert(!hutil_query_has_nul(NULL));
    ck_assert(hutil_query_has_nul("namespace=%00"));
    ck_assert(hutil_query_has_nul("a=1&namespace=x%00y"));
    ck_assert(hutil_query_has_nul("na%00me=x"));           /* in a name too */
    ck_assert(hutil_query_has_nul("a=%%00"));              /* "%" then an encoded NUL */
    ck_assert(!hutil_query_has_nul("a=%2500"));            /* the text "%00" */
    ck_assert(!hutil_query_has_nul("a=%0"));               /* a truncated escape is text */
    ck_assert(!hutil_query_has_nul("a=%g00"));
}
END_TEST

START_TEST(request_framing)
{
    const char *one[] = {"12"};
    const char *same[] = {"12", "12"};
    const char *two[] = {"2", "40"};
    const char *three[] = {"2", "2", "3"};
    ck_assert_ptr_null(hutil_framing_error(NULL, 0, false));
    ck_assert_ptr_null(hutil_framing_error(one, 1, false));
    ck_assert_ptr_null(hutil_framing_error(same, 2, false)); /* RFC 9112 6.3: identical values are one */
    ck_assert_ptr_nonnull(hutil_framing_error(two, 2, false));
    ck_assert_ptr_nonnull(strstr(hutil_framing_error(two, 2, false), "Content-Length"));
    ck_assert_ptr_nonnull(hutil_framing_error(three, 3, false));
    ck_assert_ptr_null(hutil_framing_error(NULL, 0, true));  /* chunked alone is fine */
    ck_assert_ptr_nonnull(hutil_framing_error(one, 1, true));
    ck_assert_ptr_nonnull(strstr(hutil_framing_error(one, 1, true), "Transfer-Encoding"));
}
END_TEST

/* ---- permissions and keys --------------------------------------------------------------------- */

static unsigned grant(const char *g)
{
    unsigned bits = 0;
    return auth_grant_parse(g, strlen(g), &bits) ? bits : 0;
}

START_TEST(permission_matching)
{
    ck_assert(auth_allows(grant("tasks:create"), AUTH_TASKS_CREATE));
    ck_assert(!auth_allows(grant("tasks:create"), AUTH_TASKS_READ));
    unsigned tasks = grant("tasks:*");
    ck_assert(auth_allows(tasks, AUTH_TASKS_CREATE) && auth_allows(tasks, AUTH_TASKS_READ) &&
              auth_allows(tasks, AUTH_TASKS_LIST) && auth_allows(tasks, AUTH_TASKS_CANCEL));
    ck_assert(!auth_allows(tasks, AUTH_STEPS_READ) && !auth_allows(tasks, AUTH_TEMPLATES_READ));
    unsigned steps = grant("steps:*");
    ck_assert(auth_allows(steps, AUTH_STEPS_READ) && auth_allows(steps, AUTH_STEPS_RESOLVE));
    ck_assert(!auth_allows(steps, AUTH_TASKS_READ));
    unsigned all = grant("*");
    for (int p = 0; p < AUTH_PERM_COUNT; p++)
        ck_assert(auth_allows(all, (enum auth_perm)p));
    ck_assert(!auth_allows(all, AUTH_PERM_COUNT));
    /* not grants */
    ck_assert_uint_eq(grant("tasks:fly"), 0);
    ck_assert_uint_eq(grant("bogus:*"), 0);
    ck_assert_uint_eq(grant("tasks:"), 0);
    ck_assert_uint_eq(grant("tasks"), 0);
    ck_assert_uint_eq(grant("task:*"), 0); /* a resource prefix must be whole */
    ck_assert_uint_eq(grant(""), 0);
    ck_assert_uint_eq(grant("**"), 0);
    ck_assert_uint_eq(grant("*:*"), 0);
    ck_assert_str_eq(auth_perm_name(AUTH_DLQ_UPDATE), "dlq:update");
}
END_TEST

START_TEST(keys_parse)
{
    struct auth_keys k;
    char err[256];
    ck_assert(auth_keys_parse("", &k, err, sizeof err));
    ck_assert_int_eq(k.n, 0);
    ck_assert(auth_keys_parse("  \n\t ", &k, err, sizeof err));
    ck_assert_int_eq(k.n, 0);
    ck_assert_msg(auth_keys_parse("ops@0123456789abcdef0123:*\n"
                                  "   fedcba9876543210:tasks:read,tasks:list,templates:*  "
                                  "x.y-z_1@AAAA.bbbb~cccc+dd/ee-ff:dlq:read",
                                  &k, err, sizeof err),
                  "%s", err);
    ck_assert_int_eq(k.n, 3);
    ck_assert_str_eq(k.keys[0].name, "ops");
    ck_assert_str_eq(k.keys[0].secret, "0123456789abcdef0123");
    ck_assert_uint_eq(k.keys[0].grants, (1u << AUTH_PERM_COUNT) - 1);
    ck_assert_str_eq(k.keys[1].name, "key2"); /* default name: its position */
    ck_assert(auth_allows(k.keys[1].grants, AUTH_TASKS_LIST) && auth_allows(k.keys[1].grants, AUTH_TEMPLATES_WRITE));
    ck_assert(!auth_allows(k.keys[1].grants, AUTH_TASKS_CREATE));
    ck_assert_str_eq(k.keys[2].name, "x.y-z_1");
    ck_assert_str_eq(k.keys[2].secret, "AAAA.bbbb~cccc+dd/ee-ff");
    ck_assert(auth_keys_parse("0123456789abcdef0123:*", NULL, err, sizeof err)); /* validate only */
}
END_TEST

/* Each bad key list, and a word its message must contain. The secrets must never show up. */
static const struct {
    const char *text;
    const char *want;
} bad_keys[] = {
    {"short-secret:*", "the key must be 16"},
    {"0123456789abcdef0123", "expected [NAME@]KEY:PERMISSION"},
    {"0123456789abcdef0123:", "no permission after ':'"},
    {"0123456789abcdef0123:tasks:read,", "empty permission"},
    {"0123456789abcdef0123:tasks:fly", "unknown permission \"tasks:fly\""},
    {"0123456789abcd=ef0123:*", "the key may contain only"},
    {"@0123456789abcdef0123:*", "the name before '@'"},
    {"bad name@0123456789abcdef0123:*", "expected"}, /* "bad" is its own entry */
    {"a!b@0123456789abcdef0123:*", "the name may contain only"},
    {"a@0123456789abcdef0123:* a@1123456789abcdef0123:*", "the name a is used twice"},
    {"a@0123456789abcdef0123:* b@0123456789abcdef0123:*", "the same key as entry 1 (a)"},
};

START_TEST(keys_parse_errors)
{
    char err[256] = "";
    ck_assert_msg(!auth_keys_parse(bad_keys[_i].text, NULL, err, sizeof err), "accepted: %s", bad_keys[_i].text);
    ck_assert_msg(strstr(err, bad_keys[_i].want) != NULL, "%s: message \"%s\" lacks \"%s\"", bad_keys[_i].text, err,
                  bad_keys[_i].want);
    ck_assert_msg(strstr(err, "0123456789abcdef") == NULL && strstr(err, "short-secret") == NULL,
                  "the message shows a key: %s", err);
}
END_TEST

START_TEST(keys_limits)
{
    char text[4096] = "";
    char err[256];
    for (int i = 0; i <= AUTH_KEYS_MAX; i++) {
        char e[64];
        snprintf(e, sizeof e, "k%d@secret-secret-%04d:* ", i, i);
        strcat(text, e);
    }
    ck_assert(!auth_keys_parse(text, NULL, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "more than 32 keys"));
    char longkey[200];
    memset(longkey, 'a', 129);
    strcpy(longkey + 129, ":*");
    ck_assert(!auth_keys_parse(longkey, NULL, err, sizeof err)); /* 129 characters */
    strcpy(longkey + 128, ":*");
    ck_assert_msg(auth_keys_parse(longkey, NULL, err, sizeof err), "%s", err); /* 128 characters */
}
END_TEST

START_TEST(keys_mask)
{
    char out[256];
    auth_keys_mask("ops@0123456789abcdef0123:*\n  fedcba9876543210:tasks:read,tasks:list  ", out, sizeof out);
    ck_assert_str_eq(out, "ops@***:* ***:tasks:read,tasks:list");
    auth_keys_mask("", out, sizeof out);
    ck_assert_str_eq(out, "");
    auth_keys_mask("nocolonsecret", out, sizeof out);
    ck_assert_str_eq(out, "***");
    char tiny[6];
    auth_keys_mask("ops@0123456789abcdef0123:*", tiny, sizeof tiny);
    ck_assert_str_eq(tiny, "ops@*");
}
END_TEST

START_TEST(keys_lookup)
{
    struct auth_keys k;
    char err[256];
    ck_assert(auth_keys_parse("a@0123456789abcdef0123:* b@ffffffffffffffff:tasks:read", &k, err, sizeof err));
    const struct auth_key *f = auth_lookup(&k, "ffffffffffffffff");
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(f->name, "b");
    ck_assert_str_eq(auth_lookup(&k, "0123456789abcdef0123")->name, "a");
    ck_assert_ptr_null(auth_lookup(&k, "0123456789abcdef012"));   /* a prefix */
    ck_assert_ptr_null(auth_lookup(&k, "0123456789abcdef01234")); /* longer */
    ck_assert_ptr_null(auth_lookup(&k, "0123456789ABCDEF0123"));  /* case matters */
    ck_assert_ptr_null(auth_lookup(&k, ""));
    ck_assert_ptr_null(auth_lookup(&k, NULL));
    struct auth_keys none = {.n = 0};
    ck_assert_ptr_null(auth_lookup(&none, ""));
}
END_TEST

START_TEST(keys_presented)
{
    char out[AUTH_SECRET_MAX + 1];
    ck_assert(auth_presented("  abc  ", "Bearer other", out, sizeof out));
    ck_assert_str_eq(out, "abc"); /* X-API-Key first */
    ck_assert(auth_presented(NULL, "Bearer tok123", out, sizeof out));
    ck_assert_str_eq(out, "tok123");
    ck_assert(auth_presented("", "bearer\ttok123 ", out, sizeof out));
    ck_assert_str_eq(out, "tok123");
    ck_assert(!auth_presented(NULL, "Basic dXNlcjpwYXNz", out, sizeof out));
    ck_assert(!auth_presented(NULL, "Bearer", out, sizeof out));
    ck_assert(!auth_presented(NULL, "Bearer    ", out, sizeof out));
    ck_assert(!auth_presented(NULL, "Bearertok", out, sizeof out));
    ck_assert(!auth_presented(NULL, NULL, out, sizeof out));
    char small[4];
    ck_assert(!auth_presented("toolong", NULL, small, sizeof small));
}
END_TEST

/* The configuration key uses the same parser; errors do not echo the key list. */
START_TEST(keys_in_config)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    ck_assert_msg(conf_load_buffer(&c, "t.conf",
                                   "web { auth { enabled = true\n api_keys = \"ops@0123456789abcdef0123:*\n"
                                   "  ro@fedcba9876543210:tasks:read\" } }\n",
                                   err, sizeof err),
                  "%s", err);
    ck_assert(c.web_auth_enabled);
    ck_assert_ptr_nonnull(strstr(c.web_auth_api_keys, "ro@fedcba9876543210:tasks:read"));
    conf_defaults(&c);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web { auth { api_keys = \"x@tooshortkey:*\" } }\n", err, sizeof err));
    ck_assert_str_eq(err, "t.conf:1: web.auth.api_keys entry 1 (x): the key must be 16 to 128 characters");
    conf_defaults(&c);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web {\n auth {\n  enabled = true\n }\n}\n", err, sizeof err));
    ck_assert_str_eq(err, "t.conf:3: web.auth.enabled = true needs at least one key in web.auth.api_keys or web.auth.jwt.enabled = true");
    conf_defaults(&c);
    ck_assert(conf_load_buffer(&c, "t.conf", "web { backpressure_queue_depth = 7 }\n", err, sizeof err));
    ck_assert_int_eq(c.web_backpressure_queue_depth, 7);
    ck_assert(!conf_load_buffer(&c, "t.conf", "web { backpressure_queue_depth = 0 }\n", err, sizeof err));
}
END_TEST

/* ---- routing ---------------------------------------------------------------------------------- */

#define U1 "01234567-89ab-7def-8123-456789abcdef"
#define U2 "fedcba98-7654-7321-8fed-cba987654321"

static enum route_id route_of(const char *path, unsigned method, struct route_match *m)
{
    return route_match(path, method, m) == ROUTE_OK ? m->id : ROUTE_NONE;
}

START_TEST(route_table)
{
    struct route_match m;
    ck_assert_int_eq(route_of("/health", RM_GET, &m), ROUTE_HEALTH);
    ck_assert_int_eq(route_of("/health/live", RM_GET, &m), ROUTE_HEALTH_LIVE);
    ck_assert_int_eq(route_of("/health/ready", RM_GET, &m), ROUTE_HEALTH_READY);
    ck_assert_int_eq(route_of("/metrics", RM_GET, &m), ROUTE_METRICS);
    ck_assert_int_eq(route_of("/v1/tasks", RM_GET, &m), ROUTE_TASKS_LIST);
    ck_assert_int_eq(route_of("/v1/tasks", RM_POST, &m), ROUTE_TASK_CREATE);
    ck_assert_int_eq(route_of("/v1/tasks/" U1, RM_GET, &m), ROUTE_TASK_GET);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_str_eq(m.params[0], U1);
    ck_assert_int_eq(route_of("/v1/tasks/" U1, RM_DELETE, &m), ROUTE_TASK_CANCEL);
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/workflow_steps", RM_GET, &m), ROUTE_STEPS_LIST);
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/workflow_steps/" U2, RM_GET, &m), ROUTE_STEP_GET);
    ck_assert_int_eq(m.nparams, 2);
    ck_assert_str_eq(m.params[1], U2);
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/workflow_steps/" U2, RM_PATCH, &m), ROUTE_STEP_RESOLVE);
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/workflow_steps/" U2 "/audit", RM_GET, &m), ROUTE_STEP_AUDIT);
    ck_assert_int_eq(route_of("/v1/templates", RM_GET, &m), ROUTE_TEMPLATES_LIST);
    ck_assert_int_eq(route_of("/v1/templates", RM_POST, &m), ROUTE_TEMPLATE_REGISTER);
    ck_assert_int_eq(route_of("/v1/templates/ns/my%20flow/1.0.0", RM_GET, &m), ROUTE_TEMPLATE_GET);
    ck_assert_int_eq(m.nparams, 3);
    ck_assert_str_eq(m.params[0], "ns");
    ck_assert_str_eq(m.params[1], "my flow");
    ck_assert_str_eq(m.params[2], "1.0.0");
    ck_assert_int_eq(route_of("/v1/dlq", RM_GET, &m), ROUTE_DLQ_LIST);
    ck_assert_int_eq(route_of("/v1/dlq/" U1, RM_PATCH, &m), ROUTE_DLQ_UPDATE);
    ck_assert_int_eq(route_of("/v1/dlq/stats", RM_GET, &m), ROUTE_DLQ_STATS);
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/recover", RM_POST, &m), ROUTE_TASK_RECOVER);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_str_eq(m.params[0], U1);
    ck_assert_int_eq(route_match("/v1/tasks/" U1 "/recover", RM_GET, &m), ROUTE_METHOD_NOT_ALLOWED);
    /* path parameters are not judged here (a bad UUID is the handler's 400) */
    ck_assert_int_eq(route_of("/v1/tasks/nope", RM_GET, &m), ROUTE_TASK_GET);
    ck_assert_str_eq(m.params[0], "nope");
    /* the pictures */
    ck_assert_int_eq(route_of("/v1/tasks/" U1 "/graph", RM_GET, &m), ROUTE_TASK_GRAPH);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_str_eq(m.params[0], U1);
    ck_assert_int_eq(route_of("/v1/templates/ns/my%20flow/1.0.0/graph", RM_GET, &m), ROUTE_TEMPLATE_GRAPH);
    ck_assert_int_eq(m.nparams, 3);
    ck_assert_str_eq(m.params[1], "my flow");
    ck_assert_str_eq(m.params[2], "1.0.0");
    /* a template whose version is "graph" is still the template, not its picture */
    ck_assert_int_eq(route_of("/v1/templates/ns/flow/graph", RM_GET, &m), ROUTE_TEMPLATE_GET);
    ck_assert_str_eq(m.params[2], "graph");
    ck_assert_int_eq(route_match("/v1/tasks/" U1 "/graph", RM_POST, &m), ROUTE_METHOD_NOT_ALLOWED);
    ck_assert_int_eq(route_match("/v1/templates/ns/flow/1.0.0/graph", RM_DELETE, &m), ROUTE_METHOD_NOT_ALLOWED);
    ck_assert_int_eq(route_match("/v1/tasks/" U1 "/graph/x", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/templates/ns/flow/graph/x/y", RM_GET, &m), ROUTE_NOT_FOUND);
}
END_TEST

START_TEST(route_misses)
{
    struct route_match m;
    ck_assert_int_eq(route_match("/", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match(NULL, RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("v1/tasks", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/task", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/tasks/x/y", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1//tasks", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/tasks//", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/templates/a/b", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/a/b/c/d/e/f/g/h/i/j", RM_GET, &m), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/HEALTH", RM_GET, &m), ROUTE_NOT_FOUND); /* case matters */
    /* a trailing slash is fine */
    ck_assert_int_eq(route_of("/v1/tasks/", RM_GET, &m), ROUTE_TASKS_LIST);
    ck_assert_int_eq(route_of("/health/", RM_GET, &m), ROUTE_HEALTH);
    /* percent-encoding */
    ck_assert_int_eq(route_of("/v1/%74asks", RM_GET, &m), ROUTE_TASKS_LIST);
    ck_assert_int_eq(route_match("/v1/tasks/%zz", RM_GET, &m), ROUTE_BAD_PATH);
    ck_assert_int_eq(route_match("/v1/tasks/%4", RM_GET, &m), ROUTE_BAD_PATH);
    ck_assert_int_eq(route_match("/v1/tasks/%", RM_GET, &m), ROUTE_BAD_PATH);
    ck_assert_int_eq(route_match("/v1/tasks/a%00b", RM_GET, &m), ROUTE_BAD_PATH);
    char longpath[400] = "/v1/tasks/";
    memset(longpath + 10, 'x', 300);
    longpath[310] = '\0';
    ck_assert_int_eq(route_match(longpath, RM_GET, &m), ROUTE_BAD_PATH);
}
END_TEST

START_TEST(route_methods)
{
    struct route_match m;
    char allow[64];
    ck_assert_int_eq(route_match("/v1/tasks", RM_PUT, &m), ROUTE_METHOD_NOT_ALLOWED);
    route_allow_header(m.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, POST");
    ck_assert_int_eq(route_match("/v1/tasks/" U1, RM_POST, &m), ROUTE_METHOD_NOT_ALLOWED);
    route_allow_header(m.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, DELETE");
    ck_assert_int_eq(route_match("/v1/tasks/" U1 "/workflow_steps/" U2, RM_DELETE, &m), ROUTE_METHOD_NOT_ALLOWED);
    route_allow_header(m.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, PATCH");
    ck_assert_int_eq(route_match("/v1/dlq/" U1, RM_GET, &m), ROUTE_METHOD_NOT_ALLOWED);
    route_allow_header(m.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "PATCH");
    ck_assert_int_eq(route_match("/metrics", RM_HEAD, &m), ROUTE_METHOD_NOT_ALLOWED);
    /* HEAD on the health routes (load balancers probe with it) */
    ck_assert_int_eq(route_match("/health", RM_HEAD, &m), ROUTE_OK);
    ck_assert_int_eq(m.id, ROUTE_HEALTH);
    ck_assert_int_eq(route_match("/health/live", RM_HEAD, &m), ROUTE_OK);
    ck_assert_int_eq(m.id, ROUTE_HEALTH_LIVE);
    ck_assert_int_eq(route_match("/health/ready", RM_HEAD, &m), ROUTE_OK);
    ck_assert_int_eq(m.id, ROUTE_HEALTH_READY);
    route_allow_header(m.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, HEAD");
    ck_assert_int_eq(route_match("/v1/tasks", RM_HEAD, &m), ROUTE_METHOD_NOT_ALLOWED);
    ck_assert_int_eq(route_match("/metrics", RM_OTHER, &m), ROUTE_METHOD_NOT_ALLOWED);
    /* a matched route also says what else its path takes */
    ck_assert_int_eq(route_match("/v1/templates", RM_GET, &m), ROUTE_OK);
    ck_assert_uint_eq(m.allow, RM_GET | RM_POST);
    char tiny[5];
    route_allow_header(RM_GET | RM_POST, tiny, sizeof tiny);
    ck_assert_str_eq(tiny, "GET");
}
END_TEST

START_TEST(route_permissions)
{
    enum auth_perm p;
    ck_assert(!route_permission(ROUTE_HEALTH, &p));
    ck_assert(!route_permission(ROUTE_HEALTH_READY, &p));
    ck_assert(!route_permission(ROUTE_METRICS, &p));
    ck_assert(!route_permission(ROUTE_NONE, &p));
    ck_assert(route_permission(ROUTE_TASK_CREATE, &p) && p == AUTH_TASKS_CREATE);
    ck_assert(route_permission(ROUTE_TASKS_LIST, &p) && p == AUTH_TASKS_LIST);
    ck_assert(route_permission(ROUTE_TASK_CANCEL, &p) && p == AUTH_TASKS_CANCEL);
    ck_assert(route_permission(ROUTE_STEP_AUDIT, &p) && p == AUTH_STEPS_READ);
    ck_assert(route_permission(ROUTE_STEP_RESOLVE, &p) && p == AUTH_STEPS_RESOLVE);
    ck_assert(route_permission(ROUTE_TEMPLATE_REGISTER, &p) && p == AUTH_TEMPLATES_WRITE);
    ck_assert(route_permission(ROUTE_DLQ_UPDATE, &p) && p == AUTH_DLQ_UPDATE);
    ck_assert(route_permission(ROUTE_DLQ_STATS, &p) && p == AUTH_DLQ_READ);
    ck_assert(route_permission(ROUTE_TASK_RECOVER, &p) && p == AUTH_STEPS_RESOLVE);
    ck_assert(route_permission(ROUTE_TASK_GRAPH, &p) && p == AUTH_TASKS_READ);
    ck_assert(route_permission(ROUTE_TEMPLATE_GRAPH, &p) && p == AUTH_TEMPLATES_READ);
    ck_assert_str_eq(route_label(ROUTE_TASK_GRAPH), "task_graph");
    ck_assert_str_eq(route_label(ROUTE_TEMPLATE_GRAPH), "template_graph");
    /* every /v1 route needs a permission */
    for (int r = 0; r < ROUTE_COUNT; r++) {
        bool public_route =
            r == ROUTE_HEALTH || r == ROUTE_HEALTH_LIVE || r == ROUTE_HEALTH_READY || r == ROUTE_METRICS;
        ck_assert_msg(route_permission((enum route_id)r, &p) == !public_route, "%s", route_label((enum route_id)r));
    }
    ck_assert_str_eq(route_label(ROUTE_TASK_CREATE), "task_create");
    ck_assert_str_eq(route_label(ROUTE_NONE), "none");
}
END_TEST

/* The recovery inputs: POST …/recover and PATCH /v1/dlq/{uuid} with recover. */
static bool input_ok(bool (*check)(const json_t *, struct hinput_error *), const char *body, const char *want_msg)
{
    struct hinput_error e = {0};
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_msg(j != NULL, "test body is not JSON: %s", body);
    bool ok = check(j, &e);
    json_decref(j);
    if (want_msg)
        ck_assert_msg(!ok && strstr(e.message, want_msg), "%s: wanted a refusal with \"%s\", got %s \"%s\"", body,
                      want_msg, ok ? "accepted" : "refused", e.message);
    return ok;
}

START_TEST(recovery_inputs)
{
    ck_assert(input_ok(hinput_task_recover, "{}", NULL));
    ck_assert(input_ok(hinput_task_recover, "{\"steps\": [\"" U1 "\", \"" U2 "\"], \"reason\": \"r\", \"recovered_by\": \"op\"}", NULL));
    input_ok(hinput_task_recover, "{\"steps\": []}", "steps must be a non-empty array of UUIDs");
    input_ok(hinput_task_recover, "{\"steps\": [\"x\"]}", "steps must be a non-empty array of UUIDs");
    input_ok(hinput_task_recover, "{\"steps\": \"" U1 "\"}", "steps must be a non-empty array of UUIDs");
    input_ok(hinput_task_recover, "{\"reason\": 1}", "reason must be a string");
    input_ok(hinput_task_recover, "{\"recovered_by\": {}}", "recovered_by must be a string");
    ck_assert(input_ok(hinput_dlq_update, "{\"recover\": true}", NULL));
    ck_assert(input_ok(hinput_dlq_update, "{\"recover\": true, \"steps\": [\"" U1 "\"]}", NULL));
    ck_assert(input_ok(hinput_dlq_update, "{\"recover\": false, \"resolution_status\": \"cancelled\"}", NULL));
    input_ok(hinput_dlq_update, "{\"recover\": \"yes\"}", "recover must be true or false");
    input_ok(hinput_dlq_update, "{\"steps\": [\"" U1 "\"]}", "steps goes with recover: true");
    input_ok(hinput_dlq_update, "{\"recover\": false, \"steps\": [\"" U1 "\"]}", "steps goes with recover: true");
    input_ok(hinput_dlq_update, "{\"recover\": true, \"steps\": [1]}", "steps must be a non-empty array of UUIDs");
}
END_TEST

/* graph_query: the query string qs of route as GET …/graph reads it: fold on success, else the
 * refusal's message. */
static bool graph_query(const char *qs, enum route_id id, char fold[16], char msg[256])
{
    struct evkeyvalq kv;
    struct hinput_error e = {0};
    bool ok = hinput_query_parse(qs, id, &kv, &e);
    if (ok) {
        ok = hinput_graph_query(&kv, id, fold, &e);
        evhttp_clear_headers(&kv);
    }
    snprintf(msg, 256, "%s", ok ? "" : e.message);
    return ok;
}

START_TEST(graph_queries)
{
    char fold[16], msg[256];
    ck_assert(graph_query(NULL, ROUTE_TASK_GRAPH, fold, msg));
    ck_assert_str_eq(fold, "8"); /* the default */
    ck_assert(graph_query("format=dot&fold=0", ROUTE_TASK_GRAPH, fold, msg));
    ck_assert_str_eq(fold, "0");
    ck_assert(graph_query("fold=100000", ROUTE_TASK_GRAPH, fold, msg));
    ck_assert_str_eq(fold, "100000");
    ck_assert(graph_query("format=", ROUTE_TEMPLATE_GRAPH, fold, msg));
    /* svg and png are taskerctl's: the message says so */
    ck_assert(!graph_query("format=svg", ROUTE_TASK_GRAPH, fold, msg));
    ck_assert_msg(strstr(msg, "format \"svg\" is not served") && strstr(msg, "taskerctl task visualize"), "%s", msg);
    ck_assert(!graph_query("format=png", ROUTE_TEMPLATE_GRAPH, fold, msg));
    ck_assert_msg(strstr(msg, "taskerctl template visualize"), "%s", msg);
    ck_assert(!graph_query("format=DOT", ROUTE_TASK_GRAPH, fold, msg)); /* case matters, as everywhere */
    ck_assert(!graph_query("fold=-1", ROUTE_TASK_GRAPH, fold, msg));
    ck_assert_msg(strstr(msg, "fold must be an integer between 0 and 100000"), "%s", msg);
    ck_assert(!graph_query("fold=100001", ROUTE_TASK_GRAPH, fold, msg));
    ck_assert(!graph_query("fold=8x", ROUTE_TASK_GRAPH, fold, msg));
    /* a template has no batches to fold */
    ck_assert(!graph_query("fold=3", ROUTE_TEMPLATE_GRAPH, fold, msg));
    ck_assert_msg(strstr(msg, "unknown query parameter \"fold\""), "%s", msg);
    ck_assert(!graph_query("format=dot&format=dot", ROUTE_TASK_GRAPH, fold, msg));
}
END_TEST

START_TEST(percent_decode)
{
    char out[16];
    ck_assert(route_percent_decode("a%2Fb+c", 7, out, sizeof out));
    ck_assert_str_eq(out, "a/b+c");
    ck_assert(route_percent_decode("%e2%82%ac", 9, out, sizeof out));
    ck_assert_str_eq(out, "\xe2\x82\xac");
    ck_assert(!route_percent_decode("0123456789abcdef", 16, out, sizeof out)); /* no room for the NUL */
    ck_assert(route_percent_decode("", 0, out, sizeof out));
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- metrics ---------------------------------------------------------------------------------- */

/* render: the metrics text (caller frees). */
static char *render(const struct metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    metrics_render(m, f);
    fclose(f);
    return text;
}

START_TEST(metrics_histogram)
{
    struct metrics_hist h = {0};
    metrics_hist_observe(&h, METRICS_HIST_SECONDS, 0.0005);
    metrics_hist_observe(&h, METRICS_HIST_SECONDS, 0.001); /* on a bound: counts in that bucket */
    metrics_hist_observe(&h, METRICS_HIST_SECONDS, 0.3);
    metrics_hist_observe(&h, METRICS_HIST_SECONDS, 99);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    metrics_write_hist(f, "x_seconds", "a=\"b\"", &h, METRICS_HIST_SECONDS);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_bucket{a=\"b\",le=\"0.001\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_bucket{a=\"b\",le=\"0.25\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_bucket{a=\"b\",le=\"0.5\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_bucket{a=\"b\",le=\"10\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_bucket{a=\"b\",le=\"+Inf\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_sum{a=\"b\"} 99.3015\n"));
    ck_assert_ptr_nonnull(strstr(text, "x_seconds_count{a=\"b\"} 4\n"));
    free(text);
}
END_TEST

START_TEST(metrics_samples_and_labels)
{
    char label[64];
    ck_assert_str_eq(metrics_label(label, sizeof label, "ns", "a\"b\\c\nd"), "ns=\"a\\\"b\\\\c\\nd\"");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    metrics_write_sample(f, "n", NULL, 3);
    metrics_write_sample(f, "n", "", 2.5);
    metrics_write_sample(f, "n", "k=\"v\"", 1e20);
    metrics_write_sample(f, "n", NULL, -0.125);
    fclose(f);
    ck_assert_str_eq(text, "n 3\nn 2.5\nn{k=\"v\"} 1e+20\nn -0.125\n");
    free(text);
}
END_TEST

START_TEST(metrics_completions_by_namespace)
{
    static struct metrics m; /* large: keep it off the stack */
    memset(&m, 0, sizeof m);
    struct metrics_batch b = {.messages = 5, .steps_completed = 3, .steps_retrying = 1, .steps_failed = 1,
                              .steps_enqueued = 4, .tasks_completed = 1, .tasks_blocked = 1};
    metrics_record_completions(&m, "alpha", &b);
    metrics_record_completions(&m, "alpha", &b);
    metrics_record_completions(&m, "beta", &(struct metrics_batch){.messages = 1, .steps_completed = 1});
    metrics_record_completions(&m, "beta", &(struct metrics_batch){.messages = 0}); /* an empty poll */
    metrics_task_created(&m, "alpha", 2);
    metrics_observe_step_latency(&m, 0.004);
    ck_assert_uint_eq(m.completion_batches, 3);
    ck_assert_uint_eq(m.steps_completed, 7);
    ck_assert_uint_eq(m.steps_enqueued, 10);
    ck_assert_uint_eq(m.completion_batch_size.count, 3);
    ck_assert_int_eq(m.nns, 2);
    char *text = render(&m);
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_steps_completed_total 7\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_tasks_created_total 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_namespace_steps_completed_total{namespace=\"alpha\"} 6\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_namespace_steps_completed_total{namespace=\"beta\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_namespace_tasks_failed_total{namespace=\"alpha\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_namespace_tasks_created_total{namespace=\"alpha\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_completion_batch_size_bucket{le=\"1\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_completion_batch_size_bucket{le=\"5\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntasker_step_orchestration_latency_seconds_count 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE tasker_step_orchestration_latency_seconds histogram\n"));
    /* every sample line belongs to a metric announced by a TYPE line above it */
    char *save = NULL;
    char announced[128] = "";
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%127s", announced);
            continue;
        }
        if (line[0] == '#')
            continue;
        ck_assert_msg(strncmp(line, announced, strlen(announced)) == 0, "%s after TYPE %s", line, announced);
    }
    free(text);
}
END_TEST

START_TEST(metrics_latency_array)
{
    static struct metrics m;
    memset(&m, 0, sizeof m);
    ck_assert_int_eq(metrics_observe_step_latencies(&m, "{12,5,NULL,7000}"), 3);
    ck_assert_int_eq(metrics_observe_step_latencies(&m, "{}"), 0);
    ck_assert_int_eq(metrics_observe_step_latencies(&m, NULL), 0);
    ck_assert_uint_eq(m.step_latency.count, 3);
    ck_assert_uint_eq(m.step_latency.bucket[2], 1);  /* 5 ms: le 0.005 */
    ck_assert_uint_eq(m.step_latency.bucket[4], 1);  /* 12 ms: le 0.025 */
    ck_assert_uint_eq(m.step_latency.bucket[12], 1); /* 7 s: le 10 */
}
END_TEST

START_TEST(metrics_namespace_table_full)
{
    static struct metrics m;
    memset(&m, 0, sizeof m);
    char ns[32];
    for (int i = 0; i < METRICS_NS_MAX; i++) {
        snprintf(ns, sizeof ns, "ns%d", i);
        ck_assert_ptr_nonnull(metrics_ns_get(&m, ns));
    }
    ck_assert_ptr_null(metrics_ns_get(&m, "one_more"));
    ck_assert_ptr_nonnull(metrics_ns_get(&m, "ns7")); /* existing ones still found */
    ck_assert_ptr_null(metrics_ns_get(&m, ""));
    ck_assert_ptr_null(metrics_ns_get(&m, NULL));
    /* the totals still count when a namespace has no row */
    metrics_record_completions(&m, "one_more", &(struct metrics_batch){.messages = 2, .steps_completed = 2});
    ck_assert_uint_eq(m.steps_completed, 2);
}
END_TEST

Suite *make_http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc;

    tc = tcase_create("errors");
    tcase_add_test(tc, error_table);
    tcase_add_test(tc, error_body_shape);
    tcase_add_test(tc, error_body_bad_utf8);
    tcase_add_test(tc, uuid_and_ints);
    tcase_add_test(tc, operator_text);
    tcase_add_test(tc, query_nul);
    tcase_add_test(tc, request_framing);
    suite_add_tcase(s, tc);

    tc = tcase_create("auth");
    tcase_add_test(tc, permission_matching);
    tcase_add_test(tc, keys_parse);
    tcase_add_loop_test(tc, keys_parse_errors, 0, (int)(sizeof bad_keys / sizeof bad_keys[0]));
    tcase_add_test(tc, keys_limits);
    tcase_add_test(tc, keys_mask);
    tcase_add_test(tc, keys_lookup);
    tcase_add_test(tc, keys_presented);
    tcase_add_test(tc, keys_in_config);
    suite_add_tcase(s, tc);

    tc = tcase_create("routes");
    tcase_add_test(tc, route_table);
    tcase_add_test(tc, route_misses);
    tcase_add_test(tc, route_methods);
    tcase_add_test(tc, route_permissions);
    tcase_add_test(tc, percent_decode);
    tcase_add_test(tc, recovery_inputs);
    tcase_add_test(tc, graph_queries);
    suite_add_tcase(s, tc);

    tc = tcase_create("metrics");
    tcase_add_test(tc, metrics_histogram);
    tcase_add_test(tc, metrics_samples_and_labels);
    tcase_add_test(tc, metrics_completions_by_namespace);
    tcase_add_test(tc, metrics_latency_array);
    tcase_add_test(tc, metrics_namespace_table_full);
    suite_add_tcase(s, tc);
    return s;
}
