/* fuzz_http_route.c — fuzz target: an HTTP request line ("METHOD /path?query") through the API's
 * router and query-string checks, as http_api.c's dispatch does before any SQL: libevent's URI
 * parser (with evhttp's flags), route_match / route_allow_header / route_permission, the UUID
 * checks of path parameters, and the query parsing and paging of the routes that take a query. */
#include "fuzz.h"

#include "http_input.h"
#include "http_route.h"
#include "http_util.h"
#include "names.h"
#include "states.h"

#include <sys/queue.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static unsigned method_of(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", RM_GET},   {"POST", RM_POST}, {"PATCH", RM_PATCH},     {"DELETE", RM_DELETE},
                   {"PUT", RM_PUT},   {"HEAD", RM_HEAD}, {"OPTIONS", RM_OPTIONS}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(name, methods[i].name) == 0)
            return methods[i].bit;
    return RM_OTHER;
}

/* check_allow: an Allow header lists whole method names from the table, comma-separated. */
static void check_allow(unsigned allow)
{
    char out[64];
    route_allow_header(allow, out, sizeof out);
    FUZZ_CHECK(strlen(out) < sizeof out);
    FUZZ_CHECK(allow == 0 || out[0] != '\0');
    char tiny[8]; /* truncation keeps whole names */
    route_allow_header(allow, tiny, sizeof tiny);
    FUZZ_CHECK(strncmp(out, tiny, strlen(tiny)) == 0);
}

static void check_query(const char *qs, enum route_id id)
{
    struct evkeyvalq kv;
    struct hinput_error e;
    if (!hinput_query_parse(qs, id, &kv, &e)) {
        FUZZ_CHECK(e.message[0] != '\0' && hutil_error_status(e.code) == 400);
        return;
    }
    const char *const *allowed = hinput_query_allowed(id);
    struct evkeyval *p;
    TAILQ_FOREACH(p, &kv, next) { /* only what the route takes got through */
        bool ok = false;
        for (const char *const *a = allowed; a && *a; a++)
            ok = ok || strcmp(*a, p->key) == 0;
        FUZZ_CHECK(ok);
        namespace_name_valid(p->value);
        enum task_state ts;
        if (task_state_parse(p->value, &ts))
            FUZZ_CHECK(strcmp(task_state_names[ts], p->value) == 0);
    }
    char page[16], per_page[16];
    if (hinput_query_page(&kv, page, per_page, &e)) {
        long pg, pp;
        FUZZ_CHECK(hutil_parse_int(page, 1, 1000000000L, &pg));
        FUZZ_CHECK(hutil_parse_int(per_page, 1, 100, &pp));
    } else {
        FUZZ_CHECK(e.message[0] != '\0');
    }
    char fold[16];
    if ((id == ROUTE_TASK_GRAPH || id == ROUTE_TEMPLATE_GRAPH) && hinput_graph_query(&kv, id, fold, &e)) {
        long n; /* what reaches SQL is a fold in range, and only "dot" was asked for */
        const char *format = evhttp_find_header(&kv, "format");
        FUZZ_CHECK(hutil_parse_int(fold, 0, 100000, &n));
        FUZZ_CHECK(!format || !*format || strcmp(format, "dot") == 0);
    }
    evhttp_clear_headers(&kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_cstr(data, size);
    char *target = strchr(line, ' ');
    if (!target) {
        free(line);
        return 0;
    }
    *target++ = '\0';
    target[strcspn(target, " \r\n")] = '\0'; /* evhttp splits the request line at spaces */
    unsigned method = method_of(line);

    /* The raw target through the decoder: the result is never longer, and holds no NUL. */
    char dec[ROUTE_PARAM_MAX];
    size_t tlen = strlen(target);
    if (route_percent_decode(target, tlen, dec, sizeof dec))
        FUZZ_CHECK(strlen(dec) <= tlen);

    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct route_match m;
    enum route_result rr = route_match(path, method == RM_OPTIONS ? RM_GET : method, &m);
    check_allow(m.allow);
    switch (rr) {
    case ROUTE_OK: {
        FUZZ_CHECK(m.id > ROUTE_NONE && m.id < ROUTE_COUNT);
        FUZZ_CHECK(strcmp(route_label(m.id), "none") != 0);
        FUZZ_CHECK(m.nparams >= 0 && m.nparams <= ROUTE_PARAMS_MAX);
        for (int i = 0; i < m.nparams; i++) {
            size_t n = strnlen(m.params[i], ROUTE_PARAM_MAX);
            FUZZ_CHECK(n > 0 && n < ROUTE_PARAM_MAX);
            hutil_uuid_valid(m.params[i]);
        }
        enum auth_perm perm;
        route_permission(m.id, &perm);
        /* the path matched with this method: the Allow list must say so */
        FUZZ_CHECK(m.allow & (method == RM_OPTIONS ? RM_GET : method));
        if (hinput_query_allowed(m.id))
            check_query(uri ? evhttp_uri_get_query(uri) : NULL, m.id);
        break;
    }
    case ROUTE_METHOD_NOT_ALLOWED:
        FUZZ_CHECK(m.allow != 0 && m.id == ROUTE_NONE);
        break;
    case ROUTE_NOT_FOUND:
    case ROUTE_BAD_PATH:
        FUZZ_CHECK(m.id == ROUTE_NONE);
        break;
    }
    if (uri)
        evhttp_uri_free(uri);
    free(line);
    return 0;
}
