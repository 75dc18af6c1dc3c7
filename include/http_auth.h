/* http_auth.h — API keys of the HTTP API: the key list format of web.auth.api_keys, permissions
 * with wildcards, and lookup of a presented key. Pure (no I/O); the secrets never reach a log. */
#ifndef TASKER_HTTP_AUTH_H
#define TASKER_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Every permission: X(enum suffix, name). A grant is a name, "<resource>:*" or "*". */
#define AUTH_PERMS(X)                                                                              \
    X(TASKS_CREATE, "tasks:create")       /* POST /v1/tasks */                                     \
    X(TASKS_READ, "tasks:read")           /* GET /v1/tasks/{uuid} */                               \
    X(TASKS_LIST, "tasks:list")           /* GET /v1/tasks */                                      \
    X(TASKS_CANCEL, "tasks:cancel")       /* DELETE /v1/tasks/{uuid} */                            \
    X(STEPS_READ, "steps:read")           /* GET …/workflow_steps[/{step}[/audit]] */              \
    X(STEPS_RESOLVE, "steps:resolve")     /* PATCH …/workflow_steps/{step}, POST …/recover */      \
    X(TEMPLATES_READ, "templates:read")   /* GET /v1/templates[/…] */                              \
    X(TEMPLATES_WRITE, "templates:write") /* POST /v1/templates */                                 \
    X(DLQ_READ, "dlq:read")               /* GET /v1/dlq, /v1/dlq/stats */                         \
    X(DLQ_UPDATE, "dlq:update")           /* PATCH /v1/dlq/{uuid} (+ steps:resolve to recover) */

enum auth_perm {
#define AUTH_ENUM(name, text) AUTH_##name,
    AUTH_PERMS(AUTH_ENUM)
#undef AUTH_ENUM
    AUTH_PERM_COUNT
};

#define AUTH_KEYS_MAX 32      /* keys in one configuration */
#define AUTH_NAME_MAX 33      /* 32 characters: [A-Za-z0-9_.-] */
#define AUTH_SECRET_MIN 16    /* shortest key accepted */
#define AUTH_SECRET_MAX 129   /* 128 characters: [A-Za-z0-9_.~+/-] */

/* One configured key. name is what logs and audit rows show; secret never leaves this module's
 * callers' memory. grants: bit (1u << perm) per permission granted, wildcards expanded. */
struct auth_key {
    char name[AUTH_NAME_MAX];
    char secret[AUTH_SECRET_MAX];
    unsigned grants;
};

/* The parsed key list; a plain value owned by whoever parsed it. */
struct auth_keys {
    struct auth_key keys[AUTH_KEYS_MAX];
    int n;
};

const char *auth_perm_name(enum auth_perm p);

/* auth_grant_parse: one grant ("tasks:create", "tasks:*", "*") → its permission bits. false if it
 * names no known permission or resource. */
bool auth_grant_parse(const char *grant, size_t len, unsigned *bits);

/* auth_allows: the grants include permission p. */
bool auth_allows(unsigned grants, enum auth_perm p);

/* auth_keys_parse: the web.auth.api_keys format — entries separated by white space (newlines
 * included), each `[NAME@]KEY:GRANT[,GRANT…]`. NAME defaults to "key<N>" (N counts from 1); KEY is
 * 16 to 128 of [A-Za-z0-9_.~+/-]. An empty text is an empty list. On error, err says which entry
 * (by number and name, never by key) and why; out is then unspecified. out may be NULL to only
 * validate. */
bool auth_keys_parse(const char *text, struct auth_keys *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* auth_keys_mask: text with every KEY replaced by "***" (names and grants kept), for dumps. */
void auth_keys_mask(const char *text, char *out, size_t outlen);

/* auth_lookup: the key whose secret equals presented, or NULL. Compares against every key in
 * time independent of where the strings differ. */
const struct auth_key *auth_lookup(const struct auth_keys *keys, const char *presented);

/* auth_presented: the key a request presents — the X-API-Key header, else the token of an
 * "Authorization: Bearer TOKEN" header (scheme case-insensitive); either may be NULL. Copies it,
 * trimmed, into out. false when neither carries a key (or it does not fit out). */
bool auth_presented(const char *x_api_key, const char *authorization, char *out, size_t outlen);

#endif
