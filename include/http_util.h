/* http_util.h — pure helpers of the HTTP API: the error table and error bodies, UUID and integer
 * parsing. No I/O, no libevent: unit-tested in tests/unit/check_http.c. */
#ifndef TASKER_HTTP_UTIL_H
#define TASKER_HTTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Every error the API returns: X(enum suffix, HTTP status, stable code). The code is the contract
 * with clients (docs/api.md lists them); the message next to it is for humans and may change. */
#define HUTIL_ERRORS(X)                                                                            \
    X(INVALID_JSON, 400, "invalid_json")             /* the body is not JSON */                    \
    X(INVALID_REQUEST, 400, "invalid_request")       /* wrong field type, missing field, bad query */ \
    X(INVALID_UUID, 400, "invalid_uuid")             /* a path segment that must be a UUID is not */ \
    X(INVALID_TEMPLATE, 400, "invalid_template")     /* POST /templates refused (invalid or cyclic) */ \
    X(UNAUTHORIZED, 401, "unauthorized")             /* no API key, or an unknown one */           \
    X(FORBIDDEN, 403, "forbidden")                   /* the key lacks the permission */            \
    X(NOT_FOUND, 404, "not_found")                   /* no such path, task, step or DLQ entry */   \
    X(TEMPLATE_NOT_FOUND, 404, "template_not_found") /* the task names an unknown template */      \
    X(METHOD_NOT_ALLOWED, 405, "method_not_allowed") /* the path exists; the Allow header says how */ \
    X(DUPLICATE_TASK, 409, "duplicate_task")         /* same identity as an existing task */       \
    X(CONFLICT, 409, "conflict")                     /* not possible in the current state */       \
    X(TEMPLATE_IN_USE, 409, "template_in_use")       /* that version has tasks; register a new one */ \
    X(PAYLOAD_TOO_LARGE, 413, "payload_too_large")   /* body above web.max_body_bytes */           \
    X(INTERNAL, 500, "internal_error")               /* a bug or an unexpected database error */   \
    X(UNAVAILABLE, 503, "service_unavailable")       /* database unreachable or breaker open */    \
    X(OVERLOADED, 503, "overloaded")                 /* too many queries waiting: back off */      \
    X(SHUTTING_DOWN, 503, "shutting_down")           /* SIGTERM received: go to another daemon */  \
    X(TIMEOUT, 503, "timeout")                       /* no answer within web.request_timeout_ms */

enum hutil_error {
#define HUTIL_ENUM(name, status, code) HUTIL_ERR_##name,
    HUTIL_ERRORS(HUTIL_ENUM)
#undef HUTIL_ENUM
    HUTIL_ERR_COUNT
};

/* hutil_error_status / hutil_error_code: the HTTP status and the stable code of an error. */
int hutil_error_status(enum hutil_error e);
const char *hutil_error_code(enum hutil_error e);

/* hutil_error_body: the JSON text {"error": {"code": …, "message": …, <extra's keys>}}. extra is
 * borrowed and may be NULL; its keys follow code and message. Returns a malloc'd string the caller
 * frees, or NULL when out of memory. message may be any UTF-8 text (it is escaped); invalid UTF-8
 * is replaced so the body always parses. */
char *hutil_error_body(enum hutil_error e, const char *message, json_t *extra)
    __attribute__((warn_unused_result));

/* hutil_uuid_valid: s is a UUID in its canonical 8-4-4-4-12 hex form (either case). */
bool hutil_uuid_valid(const char *s);

/* hutil_parse_int: s is a decimal integer (optional leading '-', no spaces, no '+') within
 * [min, max]; stores it in *out. */
bool hutil_parse_int(const char *s, long min, long max, long *out);

/* hutil_text_safe: s is UTF-8 without control characters — no C0, DEL or C1 control, no line or
 * paragraph separator, no bidi override or isolate (what log_first_unsafe flags). Operator names
 * (cancelled_by, resolved_by, …) must be: they go to audit rows, logs and people's screens.
 * false for NULL. */
bool hutil_text_safe(const char *s);

/* hutil_hex_digit: the value of a hexadecimal digit, -1 for any other character. */
int hutil_hex_digit(char c);

/* hutil_query_has_nul: the raw (still percent-encoded) query string holds an encoded NUL (%00),
 * decoding it the way evhttp does. A decoded NUL would end the C string early: "?namespace=%00"
 * would read as an empty value, that is no filter. */
bool hutil_query_has_nul(const char *qs);

/* hutil_framing_error: a reason to refuse a request whose body length is ambiguous — two different
 * Content-Length values, or Content-Length next to Transfer-Encoding — or NULL. A proxy in front
 * may pick the other length and see a second request ("request smuggling"), so such a request is
 * refused and its connection closed. lengths: the values of every Content-Length header. */
const char *hutil_framing_error(const char *const *lengths, int n, bool transfer_encoding);


#endif
