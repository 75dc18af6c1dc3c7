/* conf.c — the daemon's configuration: one libconfuse table, base file + environment overlay + env vars. */
#include "conf.h"

#include <confuse.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "amqp_link.h"
#include "http_auth.h"
#include "jwt_auth.h"
#include "log.h"

/* A configuration file larger than this is a mistake (the fully commented one is ~12 KiB). */
#define CONF_FILE_MAX_BYTES (1024 * 1024)
/* Our tree is three sections deep; deeper braces only need remembering for the error line. */
#define CONF_NESTING_MAX 16

enum key_kind {
    KIND_INT,  /* int field; bounds min..max, inclusive */
    KIND_BOOL, /* bool field */
    KIND_STR,  /* char[] field; format rule in check */
    KIND_ENV,  /* enum conf_env field; a string in files */
};

enum key_apply {
    RELOAD,  /* SIGHUP copies the new value in */
    RESTART, /* SIGHUP reports the change and keeps the running value */
};

/* One configuration key: the single source for defaults, validation, reload and documentation. */
struct conf_key {
    const char *path;    /* dotted, as written in docs and messages: "database.pool.max_connections" */
    enum key_kind kind;
    size_t offset;       /* of the field in struct conf */
    size_t size;         /* of that field (the buffer size for strings) */
    long def_int;        /* default of INT and BOOL keys */
    const char *def_str; /* default of STR and ENV keys */
    long min, max;       /* INT bounds */
    bool (*check)(const char *value, char *why, size_t whylen); /* STR/ENV format rule; NULL = any */
    bool restart;        /* needs a restart to change */
    const char *comment; /* one line, for etc/ and docs/ */
};

/* String format rules (the key table below names them). Each writes why a value is wrong. */
static bool check_environment(const char *v, char *why, size_t whylen);
static bool check_url(const char *v, char *why, size_t whylen);
static bool check_listen_url(const char *v, char *why, size_t whylen);
static bool check_backend(const char *v, char *why, size_t whylen);
static bool check_amqp_url(const char *v, char *why, size_t whylen);
static bool check_processor_id(const char *v, char *why, size_t whylen);
static bool check_bind_address(const char *v, char *why, size_t whylen);
static bool check_log_level(const char *v, char *why, size_t whylen);
static bool check_api_keys(const char *v, char *why, size_t whylen);
static bool check_jwt_public_keys(const char *v, char *why, size_t whylen);
static bool check_jwt_jwks_file(const char *v, char *why, size_t whylen);
static bool check_jwt_secret(const char *v, char *why, size_t whylen);
static bool check_jwt_text(const char *v, char *why, size_t whylen);
static bool check_jwt_claim(const char *v, char *why, size_t whylen);

/* libconfuse calls this after it stores each value it parsed (see opt_validate below). */
static int opt_validate(cfg_t *sec, cfg_opt_t *opt);

/* ---- the key table ----------------------------------------------------------------------------
 * Each section's entries, alphabetical as in the file: SECTION(name) for a subsection (its own list
 * is <NAME>_OPTS) and, per key, on three lines,
 *     KEY(kind, "dotted.path",
 *         name, struct conf field, default, min, max, format check, apply,
 *         comment)
 * From these lists come both the libconfuse cfg_opt_t tables and the key table, so a default is
 * written once. scripts/check-config-coverage greps `KEY(KIND, "path"`: keep that on one line. */

#define ROOT_OPTS(KEY, SECTION)                                                                                      \
    SECTION(database)                                                                                                \
    KEY(ENV, "environment",                                                                                          \
        environment, environment, "development", 0, 0, check_environment, RESTART,                                   \
        "test | development | production; picks environments/<env>.conf")                                            \
    SECTION(log)                                                                                                     \
    SECTION(messaging)                                                                                               \
    SECTION(orchestration)                                                                                           \
    SECTION(templates)                                                                                               \
    SECTION(web)

#define DATABASE_OPTS(KEY, SECTION)                                                                                  \
    KEY(STR, "database.listen_url",                                                                                  \
        listen_url, database_listen_url, "", 0, 0, check_listen_url, RESTART,                                        \
        "libpq URL of the LISTEN connection; empty = database.url. Direct when database.url is PgBouncer's")         \
    SECTION(pool)                                                                                                    \
    KEY(BOOL, "database.prepared_statements",                                                                        \
        prepared_statements, database_prepared_statements, true, 0, 0, NULL, RESTART,                                \
        "false = send every statement unnamed with its text (PgBouncer before 1.21 in transaction mode)")            \
    KEY(BOOL, "database.transaction_pooling",                                                                        \
        transaction_pooling, database_transaction_pooling, false, 0, 0, NULL, RESTART,                               \
        "true = database.url is a transaction-pooling PgBouncer: session settings go with every transaction")        \
    KEY(STR, "database.url",                                                                                         \
        url, database_url, "postgresql://localhost/tasker", 0, 0, check_url, RESTART,                                \
        "libpq URL; DATABASE_URL overrides")

#define POOL_OPTS(KEY, SECTION)                                                                                      \
    KEY(INT, "database.pool.acquire_timeout_secs",                                                                   \
        acquire_timeout_secs, pool_acquire_timeout_secs, 5, 1, 300, NULL, RELOAD,                                    \
        "wait this long for a free connection before failing a query")                                               \
    KEY(INT, "database.pool.breaker_failure_threshold",                                                              \
        breaker_failure_threshold, pool_breaker_failure_threshold, 5, 1, 1000, NULL, RELOAD,                         \
        "consecutive connect failures that open the circuit breaker")                                                \
    KEY(INT, "database.pool.breaker_open_secs",                                                                      \
        breaker_open_secs, pool_breaker_open_secs, 30, 1, 3600, NULL, RELOAD,                                        \
        "how long the breaker stays open before one probe connection")                                               \
    KEY(INT, "database.pool.idle_timeout_secs",                                                                      \
        idle_timeout_secs, pool_idle_timeout_secs, 300, 1, 86400, NULL, RELOAD,                                      \
        "close connections above min_connections that were idle this long")                                          \
    KEY(INT, "database.pool.max_connections",                                                                        \
        max_connections, pool_max_connections, 30, 1, 1000, NULL, RESTART,                                           \
        "most connections open at once; 10/25/50 in the test/development/production overlays")                       \
    KEY(INT, "database.pool.max_lifetime_secs",                                                                      \
        max_lifetime_secs, pool_max_lifetime_secs, 1800, 1, 604800, NULL, RELOAD,                                    \
        "recycle a connection this old once it is idle")                                                             \
    KEY(INT, "database.pool.min_connections",                                                                        \
        min_connections, pool_min_connections, 8, 0, 1000, NULL, RESTART,                                            \
        "connections opened at start and kept open; at most max_connections")                                        \
    KEY(INT, "database.pool.reconnect_initial_ms",                                                                   \
        reconnect_initial_ms, pool_reconnect_initial_ms, 100, 1, 60000, NULL, RELOAD,                                \
        "first reconnect delay; doubles with jitter up to reconnect_max_ms")                                         \
    KEY(INT, "database.pool.reconnect_max_ms",                                                                       \
        reconnect_max_ms, pool_reconnect_max_ms, 10000, 1, 600000, NULL, RELOAD,                                     \
        "cap of the reconnect delay; at least reconnect_initial_ms")                                                 \
    KEY(INT, "database.pool.reserved_for_orchestration",                                                             \
        reserved_for_orchestration, pool_reserved_for_orchestration, 2, 0, 1000, NULL, RELOAD,                       \
        "connections API requests never use, kept for orchestration; the API keeps at least one")                    \
    KEY(INT, "database.pool.statement_timeout_ms",                                                                   \
        statement_timeout_ms, pool_statement_timeout_ms, 0, 0, 86400000, NULL, RELOAD,                               \
        "server-side statement_timeout of orchestration statements; 0 = none (API: web.statement_timeout_ms)")

#define MESSAGING_OPTS(KEY, SECTION)                                                                                 \
    KEY(STR, "messaging.backend",                                                                                    \
        backend, messaging_backend, "pgmq", 0, 0, check_backend, RESTART,                                            \
        "pgmq | rabbitmq: where workers get dispatch messages; TASKER_MESSAGING_BACKEND overrides")                  \
    SECTION(rabbitmq)

#define RABBITMQ_OPTS(KEY, SECTION)                                                                                  \
    KEY(INT, "messaging.rabbitmq.confirm_timeout_ms",                                                                \
        confirm_timeout_ms, rabbitmq_confirm_timeout_ms, 5000, 100, 600000, NULL, RELOAD,                            \
        "wait this long for the broker's confirms of a relayed batch; the rest is re-published later")               \
    KEY(INT, "messaging.rabbitmq.heartbeat_secs",                                                                    \
        heartbeat_secs, rabbitmq_heartbeat_secs, 30, 0, 3600, NULL, RESTART,                                         \
        "AMQP heartbeat asked of the broker; 0 = none")                                                              \
    KEY(INT, "messaging.rabbitmq.prefetch",                                                                          \
        prefetch, rabbitmq_prefetch, 200, 1, 65535, NULL, RESTART,                                                   \
        "completion pointers per namespace the daemon holds unacked (basic.qos); one SQL call takes a batch of them") \
    KEY(INT, "messaging.rabbitmq.relay_batch",                                                                       \
        relay_batch, rabbitmq_relay_batch, 100, 1, 10000, NULL, RELOAD,                                              \
        "dispatch messages per namespace relayed from PGMQ to RabbitMQ in one burst")                                \
    KEY(STR, "messaging.rabbitmq.url",                                                                               \
        url, rabbitmq_url, "amqp://localhost:5672/%2F", 0, 0, check_amqp_url, RESTART,                   \
        "AMQP URL of the broker; TASKER_AMQP_URL overrides; its password is never shown")

#define ORCHESTRATION_OPTS(KEY, SECTION)                                                                             \
    SECTION(batch_processing)                                                                                        \
    SECTION(completions)                                                                                             \
    SECTION(decision_points)                                                                                         \
    KEY(INT, "orchestration.namespace_refresh_secs",                                                                 \
        namespace_refresh_secs, namespace_refresh_secs, 30, 1, 3600, NULL, RELOAD,                                   \
        "how often the list of namespaces is re-read")                                                               \
    SECTION(poller)                                                                                                  \
    KEY(STR, "orchestration.processor_id",                                                                           \
        processor_id, processor_id, "", 0, 0, check_processor_id, RESTART,                                           \
        "who we are in audit rows; empty = host:pid")                                                                \
    KEY(INT, "orchestration.shutdown_timeout_secs",                                                                  \
        shutdown_timeout_secs, shutdown_timeout_secs, 30, 1, 3600, NULL, RELOAD,                                     \
        "on SIGTERM, how long in-flight work may take to drain")                                                     \
    SECTION(sweeper)                                                                                                 \
    SECTION(vacuum)

/* Limits on steps created at run time (docs/dynamic-steps.md), enforced in SQL: set on every pool
 * connection as tasker.* settings, read by tasker.setting_int(). */
#define BATCH_PROCESSING_OPTS(KEY, SECTION)                                                                          \
    KEY(INT, "orchestration.batch_processing.max_workers",                                                           \
        max_workers, batch_max_workers, 10000, 1, 1000000, NULL, RESTART,                                            \
        "most batch workers one batch plan may create; a bigger plan fails its batchable step")

#define DECISION_POINTS_OPTS(KEY, SECTION)                                                                           \
    KEY(INT, "orchestration.decision_points.max_steps",                                                              \
        max_steps, decision_max_steps, 100, 0, 100000, NULL, RESTART,                                                \
        "most steps one decision may choose; more fails the decision step")

#define TEMPLATES_OPTS(KEY, SECTION)                                                                                 \
    KEY(INT, "templates.max_steps",                                                                                  \
        max_steps, templates_max_steps, 1000, 1, 100000, NULL, RESTART,                                              \
        "most steps a registered template may have (registration is linear in its size)")                       \
    KEY(STR, "templates.path",                                                                                       \
        path, templates_path, "", 0, 0, NULL, RELOAD,                                                                \
        "directory (or file) of YAML/JSON templates registered at start and on SIGHUP; empty = none; TASKER_TEMPLATE_PATH overrides")

#define COMPLETIONS_OPTS(KEY, SECTION)                                                                               \
    KEY(INT, "orchestration.completions.batch_size",                                                                 \
        batch_size, completions_batch_size, 100, 1, 10000, NULL, RELOAD,                                             \
        "messages per process_completions call")                                                                     \
    KEY(INT, "orchestration.completions.idle_interval_ms",                                                           \
        idle_interval_ms, completions_idle_interval_ms, 10000, 10, 3600000, NULL, RELOAD,                            \
        "ceiling of a namespace's fallback poll while it finds nothing; below interval_ms = no backoff")             \
    KEY(INT, "orchestration.completions.interval_ms",                                                                \
        interval_ms, completions_interval_ms, 5000, 10, 3600000, NULL, RELOAD,                                       \
        "fallback poll of the completion queues; NOTIFY is the fast path")                                           \
    KEY(INT, "orchestration.completions.visibility_timeout_secs",                                                    \
        visibility_timeout_secs, completions_visibility_timeout_secs, 30, 1, 86400, NULL, RELOAD,                    \
        "no effect: completion messages are taken under a row lock and consumed in one transaction; kept so existing files load")

#define POLLER_OPTS(KEY, SECTION)                                                                                    \
    KEY(INT, "orchestration.poller.batch_size",                                                                      \
        batch_size, poller_batch_size, 100, 1, 10000, NULL, RELOAD,                                                  \
        "tasks per enqueue_ready_steps call")                                                                        \
    KEY(INT, "orchestration.poller.idle_interval_ms",                                                                \
        idle_interval_ms, poller_idle_interval_ms, 5000, 10, 3600000, NULL, RELOAD,                                  \
        "ceiling of the poll interval while polls find nothing; below interval_ms = no backoff")                     \
    KEY(INT, "orchestration.poller.interval_ms",                                                                     \
        interval_ms, poller_interval_ms, 1000, 10, 3600000, NULL, RELOAD,                                            \
        "fallback poll for ready steps and due retries")

#define SWEEPER_OPTS(KEY, SECTION)                                                                                   \
    KEY(INT, "orchestration.sweeper.batch_size",                                                                     \
        batch_size, sweeper_batch_size, 100, 1, 10000, NULL, RELOAD,                                                 \
        "rows per sweep action")                                                                                     \
    KEY(BOOL, "orchestration.sweeper.dry_run",                                                                       \
        dry_run, sweeper_dry_run, false, 0, 0, NULL, RELOAD,                                                         \
        "report what the sweep would do and change nothing")                                                         \
    KEY(INT, "orchestration.sweeper.interval_secs",                                                                  \
        interval_secs, sweeper_interval_secs, 30, 1, 86400, NULL, RELOAD,                                            \
        "period of the stuck/stale sweep")                                                                           \
    KEY(INT, "orchestration.sweeper.reevaluate_after_secs",                                                          \
        reevaluate_after_secs, sweeper_reevaluate_after_secs, 60, 1, 86400, NULL, RELOAD,                            \
        "re-evaluate unfinished tasks untouched this long")                                                          \
    KEY(INT, "orchestration.sweeper.resend_grace_secs",                                                              \
        resend_grace_secs, sweeper_resend_grace_secs, 30, 1, 86400, NULL, RELOAD,                                    \
        "an enqueued step's queue message may be missing this long before it is re-sent")                            \
    KEY(INT, "orchestration.sweeper.stale_blocked_by_failures_minutes",                                              \
        stale_blocked_by_failures_minutes, stale_blocked_by_failures_minutes, 1440, 1, 525600, NULL, RELOAD,         \
        "a task blocked by failures this long is stale")                                                             \
    KEY(INT, "orchestration.sweeper.stale_steps_in_process_minutes",                                                 \
        stale_steps_in_process_minutes, stale_steps_in_process_minutes, 30, 1, 525600, NULL, RELOAD,                 \
        "a task with steps in process this long is stale")                                                           \
    KEY(INT, "orchestration.sweeper.stale_task_max_lifetime_hours",                                                  \
        stale_task_max_lifetime_hours, stale_task_max_lifetime_hours, 24, 1, 8760, NULL, RELOAD,                     \
        "an unfinished task older than this is stale whatever its state")                                            \
    KEY(INT, "orchestration.sweeper.stale_waiting_for_dependencies_minutes",                                         \
        stale_waiting_for_dependencies_minutes, stale_waiting_for_dependencies_minutes, 60, 1, 525600, NULL, RELOAD, \
        "a task waiting for dependencies this long is stale")                                                        \
    KEY(INT, "orchestration.sweeper.stale_waiting_for_retry_minutes",                                                \
        stale_waiting_for_retry_minutes, stale_waiting_for_retry_minutes, 30, 1, 525600, NULL, RELOAD,               \
        "a task waiting for a retry this long is stale")

#define VACUUM_OPTS(KEY, SECTION)                                                                                    \
    KEY(BOOL, "orchestration.vacuum.enabled",                                                                        \
        enabled, vacuum_enabled, true, 0, 0, NULL, RELOAD,                                                           \
        "VACUUM the hot tables while completions flow (never while idle)")                                           \
    KEY(INT, "orchestration.vacuum.interval_ms",                                                                     \
        interval_ms, vacuum_interval_ms, 1000, 100, 3600000, NULL, RELOAD,                                           \
        "how often the queue tables of namespaces with completions since are vacuumed")                              \
    KEY(INT, "orchestration.vacuum.task_tables_interval_ms",                                                         \
        task_tables_interval_ms, vacuum_task_tables_interval_ms, 2000, 0, 3600000, NULL, RELOAD,                    \
        "how often tasker.tasks and tasker.workflow_steps are vacuumed while work flows; 0 = never")

#define WEB_OPTS(KEY, SECTION)                                                                                       \
    SECTION(auth)                                                                                                    \
    KEY(INT, "web.backpressure_queue_depth",                                                                         \
        backpressure_queue_depth, web_backpressure_queue_depth, 200, 1, 1000000, NULL, RELOAD,                       \
        "answer API requests 503 (Retry-After) while this many queries wait for a pool connection")                  \
    KEY(STR, "web.bind_address",                                                                                     \
        bind_address, web_bind_address, "127.0.0.1:8080", 0, 0, check_bind_address, RESTART,                         \
        "host:port of the HTTP API (loopback unless set); TASKER_WEB_BIND_ADDRESS overrides")                                              \
    KEY(BOOL, "web.enabled",                                                                                         \
        enabled, web_enabled, true, 0, 0, NULL, RESTART,                                                             \
        "serve the HTTP API at all")                                                                                 \
    KEY(INT, "web.max_body_bytes",                                                                                   \
        max_body_bytes, web_max_body_bytes, 1048576, 1024, 268435456, NULL, RELOAD,                                  \
        "request bodies above this get 413")                                                                         \
    KEY(INT, "web.max_connections",                                                                                  \
        max_connections, web_max_connections, 1024, 1, 1000000, NULL, RELOAD,                                        \
        "open HTTP connections at most; one more is closed at once, unanswered")                                     \
    KEY(INT, "web.request_read_timeout_ms",                                                                          \
        request_read_timeout_ms, web_request_read_timeout_ms, 15000, 100, 600000, NULL, RELOAD,                      \
        "a whole request (line, headers, body) must arrive within this, else the connection is closed")              \
    KEY(INT, "web.request_timeout_ms",                                                                               \
        request_timeout_ms, web_request_timeout_ms, 30000, 100, 600000, NULL, RELOAD,                                \
        "longest one request may take once it has arrived, database included; its statement is then cancelled")      \
    KEY(INT, "web.statement_timeout_ms",                                                                             \
        statement_timeout_ms, web_statement_timeout_ms, 20000, 0, 86400000, NULL, RELOAD,                            \
        "server-side statement_timeout of API statements; 0 = none")

#define AUTH_OPTS(KEY, SECTION)                                                                                      \
    KEY(STR, "web.auth.api_keys",                                                                                    \
        api_keys, web_auth_api_keys, "", 0, 0, check_api_keys, RELOAD,                                              \
        "API keys, white-space separated, each [NAME@]KEY:PERMISSION[,PERMISSION...]; secret, never logged")         \
    KEY(BOOL, "web.auth.enabled",                                                                                    \
        enabled, web_auth_enabled, false, 0, 0, NULL, RELOAD,                                                        \
        "require an API key on /v1 (X-API-Key or Authorization: Bearer); /health* and /metrics stay public")         \
    SECTION(jwt)

/* JWT bearer tokens next to the API keys (jwt_auth.h, docs/api.md). Key files are read when the
 * configuration is checked, so --check-config and a SIGHUP refuse an unreadable one by name. */
#define JWT_OPTS(KEY, SECTION)                                                                                       \
    KEY(STR, "web.auth.jwt.audience",                                                                                \
        audience, web_auth_jwt_audience, "", 0, 0, check_jwt_text, RELOAD,                                           \
        "the aud a token must include; empty = a token must not name an audience")                                   \
    KEY(BOOL, "web.auth.jwt.enabled",                                                                                \
        enabled, web_auth_jwt_enabled, false, 0, 0, NULL, RELOAD,                                                    \
        "accept JWT bearer tokens on /v1 next to the API keys (needs web.auth.enabled)")                             \
    KEY(STR, "web.auth.jwt.hs256_secret",                                                                            \
        hs256_secret, web_auth_jwt_hs256_secret, "", 0, 0, check_jwt_secret, RELOAD,                                 \
        "HS256 shared secret, at least 32 bytes; TASKER_JWT_HS256_SECRET overrides; secret, never logged")           \
    KEY(STR, "web.auth.jwt.issuer",                                                                                  \
        issuer, web_auth_jwt_issuer, "", 0, 0, check_jwt_text, RELOAD,                                               \
        "the iss a token must carry; empty = not checked")                                                           \
    KEY(STR, "web.auth.jwt.jwks_file",                                                                               \
        jwks_file, web_auth_jwt_jwks_file, "", 0, 0, check_jwt_jwks_file, RELOAD,                                    \
        "a JSON Web Key Set file of RS256/ES256 public keys; re-read on SIGHUP")                                     \
    KEY(INT, "web.auth.jwt.leeway_secs",                                                                             \
        leeway_secs, web_auth_jwt_leeway_secs, 30, 0, 600, NULL, RELOAD,                                             \
        "clock skew allowed on exp and nbf")                                                                         \
    KEY(STR, "web.auth.jwt.permissions_claim",                                                                       \
        permissions_claim, web_auth_jwt_permissions_claim, "permissions", 0, 0, check_jwt_claim, RELOAD,             \
        "the claim holding the token's permissions (an array, or a space-separated string)")                         \
    KEY(STR, "web.auth.jwt.public_keys",                                                                             \
        public_keys, web_auth_jwt_public_keys, "", 0, 0, check_jwt_public_keys, RELOAD,                              \
        "PEM public keys or certificates, white-space separated, each [KID=]PATH; re-read on SIGHUP")

#define LOG_OPTS(KEY, SECTION)                                                                                       \
    KEY(BOOL, "log.json",                                                                                            \
        json, log_json, false, 0, 0, NULL, RELOAD,                                                                   \
        "one JSON object per line instead of text")                                                                  \
    KEY(STR, "log.level",                                                                                            \
        level, log_level, "info", 0, 0, check_log_level, RELOAD,                                                     \
        "error | warn | info | debug")

/* Every list, in the order of the key table (and of enum key_index). */
#define ALL_OPTS(KEY, SECTION)                                                                  \
    ROOT_OPTS(KEY, SECTION) DATABASE_OPTS(KEY, SECTION) POOL_OPTS(KEY, SECTION)                 \
    ORCHESTRATION_OPTS(KEY, SECTION) BATCH_PROCESSING_OPTS(KEY, SECTION)                        \
    COMPLETIONS_OPTS(KEY, SECTION) DECISION_POINTS_OPTS(KEY, SECTION) POLLER_OPTS(KEY, SECTION) \
    SWEEPER_OPTS(KEY, SECTION) VACUUM_OPTS(KEY, SECTION) TEMPLATES_OPTS(KEY, SECTION)           \
    WEB_OPTS(KEY, SECTION)                                                                      \
    AUTH_OPTS(KEY, SECTION) JWT_OPTS(KEY, SECTION) LOG_OPTS(KEY, SECTION)                        \
    MESSAGING_OPTS(KEY, SECTION) RABBITMQ_OPTS(KEY, SECTION)

#define SKIP_SECTION(name)

/* The compiler checks that each key's kind matches its struct conf field. */
#define IS_INT(e) _Generic((e), int: 1, default: 0)
#define IS_BOOL(e) _Generic((e), bool: 1, default: 0)
#define IS_STR(e) _Generic((e), char *: 1, default: 0)
#define IS_ENV(e) _Generic((e), enum conf_env: 1, default: 0)
#define ASSERT_KEY(kind, path, name, field, ...) \
    _Static_assert(IS_##kind(((struct conf *)0)->field), path ": the field's type does not match the key's kind");
ALL_OPTS(ASSERT_KEY, SKIP_SECTION)

/* KEY_<field>: a key's index in keys[], for the cross-field rules. */
#define INDEX_KEY(kind, path, name, field, ...) KEY_##field,
enum key_index { ALL_OPTS(INDEX_KEY, SKIP_SECTION) KEY_COUNT };

#define DEF_INT(d) .def_int = (d)
#define DEF_BOOL(d) .def_int = (d)
#define DEF_STR(d) .def_str = (d)
#define DEF_ENV(d) .def_str = (d)
#define TABLE_KEY(kind_, path_, name_, field_, def_, min_, max_, check_, apply_, comment_)              \
    {.path = path_, .kind = KIND_##kind_, .offset = offsetof(struct conf, field_),                      \
     .size = sizeof(((struct conf *)0)->field_), DEF_##kind_(def_), .min = (min_), .max = (max_),       \
     .check = (check_), .restart = (apply_) == RESTART, .comment = (comment_)},
static const struct conf_key keys[KEY_COUNT] = {ALL_OPTS(TABLE_KEY, SKIP_SECTION)};

/* The libconfuse tables. Our own initializers rather than CFG_INT() & co. because those cannot set
 * validcb, which libconfuse runs right after storing a parsed value — while it still knows the line. */
#define OPT_INT(n_, d_) {.name = #n_, .type = CFGT_INT, .def.number = (d_), .validcb = opt_validate},
#define OPT_BOOL(n_, d_) \
    {.name = #n_, .type = CFGT_BOOL, .def.boolean = (d_) ? cfg_true : cfg_false, .validcb = opt_validate},
#define OPT_STR(n_, d_) {.name = #n_, .type = CFGT_STR, .def.string = (d_), .validcb = opt_validate},
#define OPT_ENV(n_, d_) OPT_STR(n_, d_)
#define OPT_KEY(kind, path, name, field, def, ...) OPT_##kind(name, def)
#define OPT_SECTION(name) CFG_SEC(#name, name##_opts, CFGF_NONE),

static cfg_opt_t pool_opts[] = {POOL_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t database_opts[] = {DATABASE_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t batch_processing_opts[] = {BATCH_PROCESSING_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t decision_points_opts[] = {DECISION_POINTS_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t templates_opts[] = {TEMPLATES_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t completions_opts[] = {COMPLETIONS_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t poller_opts[] = {POLLER_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t sweeper_opts[] = {SWEEPER_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t vacuum_opts[] = {VACUUM_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t orchestration_opts[] = {ORCHESTRATION_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t jwt_opts[] = {JWT_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t auth_opts[] = {AUTH_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t web_opts[] = {WEB_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t log_opts[] = {LOG_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t rabbitmq_opts[] = {RABBITMQ_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t messaging_opts[] = {MESSAGING_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};
static cfg_opt_t root_opts[] = {ROOT_OPTS(OPT_KEY, OPT_SECTION) CFG_END()};

/* Cross-field rules: keys[lo] must not exceed keys[hi]. */
static const struct {
    enum key_index lo, hi;
} order_rules[] = {
    {KEY_pool_min_connections, KEY_pool_max_connections},
    {KEY_pool_reconnect_initial_ms, KEY_pool_reconnect_max_ms},
};

/* ---- environments ----------------------------------------------------------------------------- */

static const char *const env_names[] = {
    [CONF_ENV_TEST] = "test",
    [CONF_ENV_DEVELOPMENT] = "development",
    [CONF_ENV_PRODUCTION] = "production",
};

const char *conf_env_name(enum conf_env e)
{
    if ((unsigned)e < sizeof env_names / sizeof env_names[0])
        return env_names[e];
    return "?";
}

bool conf_env_parse(const char *name, enum conf_env *out)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++) {
        if (strcmp(env_names[i], name) == 0) {
            *out = (enum conf_env)i;
            return true;
        }
    }
    return false;
}

/* ---- format rules ----------------------------------------------------------------------------- */

static bool check_environment(const char *v, char *why, size_t whylen)
{
    enum conf_env e;
    if (conf_env_parse(v, &e))
        return true;
    snprintf(why, whylen, "must be test, development or production");
    return false;
}

/* check_url: a libpq URL. Its text is never echoed, since it may carry a password. */
static bool check_url(const char *v, char *why, size_t whylen)
{
    if (strncmp(v, "postgresql://", 13) != 0 && strncmp(v, "postgres://", 11) != 0) {
        snprintf(why, whylen, "must be a postgresql:// or postgres:// URL");
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            snprintf(why, whylen, "must not contain spaces or control characters (percent-encode them)");
            return false;
        }
    }
    return true;
}

/* check_backend: the messaging backends that work end to end. */
static bool check_backend(const char *v, char *why, size_t whylen)
{
    if (strcmp(v, "pgmq") == 0 || strcmp(v, "rabbitmq") == 0)
        return true;
    snprintf(why, whylen, "must be pgmq or rabbitmq");
    return false;
}

/* check_amqp_url: never echoed either (amqp_url_check says what is wrong without the text). */
static bool check_amqp_url(const char *v, char *why, size_t whylen)
{
    return amqp_url_check(v, why, whylen);
}

/* check_listen_url: empty (database.url serves) or a libpq URL, never echoed either. */
static bool check_listen_url(const char *v, char *why, size_t whylen)
{
    return !*v || check_url(v, why, whylen);
}

static bool check_processor_id(const char *v, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            snprintf(why, whylen, "may contain only printable ASCII other than space");
            return false;
        }
    }
    return true;
}

/* check_bind_address: "host:port" or "[v6]:port", port 0..65535 (0 = any free port, for tests). */
static bool check_bind_address(const char *v, char *why, size_t whylen)
{
    const char *colon = strrchr(v, ':');
    bool ok = colon && colon > v && colon[1] != '\0';
    if (ok && v[0] == '[')
        ok = colon - v >= 3 && colon[-1] == ']';
    else if (ok)
        ok = memchr(v, ':', (size_t)(colon - v)) == NULL; /* a bare IPv6 address needs brackets */
    for (const char *p = v; ok && p < colon; p++)
        ok = (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f;
    long port = 0;
    for (const char *p = colon ? colon + 1 : ""; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9' && p - colon <= 5;
        port = port * 10 + (*p - '0');
    }
    if (!ok || port > 65535) {
        snprintf(why, whylen, "must be host:port with port 0..65535 (e.g. 0.0.0.0:8080 or [::1]:8080)");
        return false;
    }
    return true;
}

/* check_api_keys: the key list format (http_auth.h). The message names entries by number and
 * name, never by key. */
static bool check_api_keys(const char *v, char *why, size_t whylen)
{
    return auth_keys_parse(v, NULL, why, whylen);
}

/* check_jwt_key_source: the keys of one source load (files readable, keys supported). */
static bool check_jwt_key_source(const struct jwt_sources *src, char *why, size_t whylen)
{
    struct jwt_keyset *ks = jwt_keyset_load(src, why, whylen);
    jwt_keyset_free(ks);
    return ks != NULL;
}

static bool check_jwt_public_keys(const char *v, char *why, size_t whylen)
{
    return check_jwt_key_source(&(struct jwt_sources){.public_keys = v}, why, whylen);
}

static bool check_jwt_jwks_file(const char *v, char *why, size_t whylen)
{
    return check_jwt_key_source(&(struct jwt_sources){.jwks_file = v}, why, whylen);
}

/* check_jwt_secret: never echoes the value (check_str knows it is a secret). */
static bool check_jwt_secret(const char *v, char *why, size_t whylen)
{
    return check_jwt_key_source(&(struct jwt_sources){.hs256_secret = v}, why, whylen);
}

/* check_jwt_text: an issuer or audience: no control characters (they are compared, and logged). */
static bool check_jwt_text(const char *v, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < ' ' || *p == 0x7f) {
            snprintf(why, whylen, "must not contain control characters");
            return false;
        }
    }
    return true;
}

static bool check_jwt_claim(const char *v, char *why, size_t whylen)
{
    bool ok = *v != '\0';
    for (const unsigned char *p = (const unsigned char *)v; ok && *p; p++)
        ok = *p > ' ' && *p < 0x7f;
    if (!ok)
        snprintf(why, whylen, "must be a claim name: printable ASCII without spaces");
    return ok;
}

static bool check_log_level(const char *v, char *why, size_t whylen)
{
    enum log_level level;
    if (log_level_parse(v, &level))
        return true;
    snprintf(why, whylen, "must be error, warn, info or debug");
    return false;
}

/* ---- the key table at work -------------------------------------------------------------------- */

static void *field_of(struct conf *c, const struct conf_key *k)
{
    return (char *)c + k->offset;
}

static const void *cfield_of(const struct conf *c, const struct conf_key *k)
{
    return (const char *)c + k->offset;
}

/* key_by_path: the key with this dotted path, or NULL. */
static const struct conf_key *key_by_path(const char *path)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

/* key_by_leaf: the key called name in the section called section ("root" at the top). Section
 * names are unique in our tree, so the last two path components identify a key. */
static const struct conf_key *key_by_leaf(const char *section, const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const char *path = keys[i].path;
        const char *dot = strrchr(path, '.');
        const char *leaf = dot ? dot + 1 : path;
        if (strcmp(leaf, name) != 0)
            continue;
        if (!dot) {
            if (strcmp(section, "root") == 0)
                return &keys[i];
            continue;
        }
        const char *sec = dot;
        while (sec > path && sec[-1] != '.')
            sec--;
        size_t len = (size_t)(dot - sec);
        if (strlen(section) == len && strncmp(sec, section, len) == 0)
            return &keys[i];
    }
    return NULL;
}

/* check_int / check_str: whether v is a valid value of k; if not, why says so, naming the key. */
static bool check_int(const struct conf_key *k, long v, char *why, size_t whylen)
{
    if (v >= k->min && v <= k->max)
        return true;
    snprintf(why, whylen, "%s = %ld is out of range (%ld..%ld)", k->path, v, k->min, k->max);
    return false;
}

static bool check_str(const struct conf_key *k, const char *v, char *why, size_t whylen)
{
    if (k->kind == KIND_STR && strlen(v) >= k->size) {
        snprintf(why, whylen, "%s is longer than %zu bytes", k->path, k->size - 1);
        return false;
    }
    char detail[300];
    if (!k->check || k->check(v, detail, sizeof detail))
        return true;
    if (k == &keys[KEY_web_auth_jwt_hs256_secret]) /* a secret; the message names the key itself */
        snprintf(why, whylen, "%s", detail);
    else if (k == &keys[KEY_database_url] || k == &keys[KEY_database_listen_url] || k == &keys[KEY_web_auth_api_keys] ||
             k == &keys[KEY_rabbitmq_url])
        /* secrets: never echoed */
        snprintf(why, whylen, "%s %s", k->path, detail);
    else
        snprintf(why, whylen, "%s = \"%.64s\": %s", k->path, v, detail);
    return false;
}

void conf_defaults(struct conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct conf_key *k = &keys[i];
        void *f = field_of(c, k);
        switch (k->kind) {
        case KIND_INT: *(int *)f = (int)k->def_int; break;
        case KIND_BOOL: *(bool *)f = k->def_int != 0; break;
        case KIND_STR: snprintf(f, k->size, "%s", k->def_str); break;
        case KIND_ENV: (void)conf_env_parse(k->def_str, f); break;
        }
    }
}

/* ---- parsing ----------------------------------------------------------------------------------
 * One parse_ctx lives for one conf_load / conf_load_buffer / conf_validate. It remembers where
 * each key's value came from, so that errors found after parsing (cross-field rules, env vars)
 * still point at a file and line. */

struct origin {
    const char *file; /* NULL = built-in default */
    int line;         /* 0 = no line (environment variable, argument) */
    unsigned seq;     /* order of assignment, to blame the later of two keys */
};

struct parse_ctx {
    char *err;
    size_t errlen;
    bool failed;              /* err holds the first error; later ones are dropped */
    const char *file;         /* name of the text being parsed */
    const char *fallback;     /* named in errors about values no text set */
    struct origin origins[KEY_COUNT];
    unsigned seq;
    char names[2][1024];      /* the file names that origins point into */
};

_Static_assert(sizeof(((struct parse_ctx *)0)->names[1]) <= sizeof(((struct conf_source *)0)->overlay_path),
               "conf_load copies an overlay name into conf_source.overlay_path");

/* libconfuse's scanner is global, and its callbacks take no user pointer: the context of the parse
 * in progress lives here. */
static struct parse_ctx *parsing;

static void ctx_fail(struct parse_ctx *ctx, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ctx_fail(struct parse_ctx *ctx, const char *file, int line, const char *fmt, ...)
{
    if (ctx->failed)
        return;
    ctx->failed = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(ctx->err, ctx->errlen, "%s:%d: %s", file, line, msg);
    else
        snprintf(ctx->err, ctx->errlen, "%s: %s", file, msg);
}

/* ctx_fail_at: an error about key i, located where its value came from. */
static void ctx_fail_at(struct parse_ctx *ctx, size_t i, const char *msg)
{
    const struct origin *o = &ctx->origins[i];
    ctx_fail(ctx, o->file ? o->file : ctx->fallback, o->line, "%s", msg);
}

/* section_path: the dotted path of the section called name, searched from opts under prefix. */
static bool section_path(const cfg_opt_t *opts, const char *prefix, const char *name, char *out, size_t outlen)
{
    for (const cfg_opt_t *o = opts; o->name; o++) {
        if (o->type != CFGT_SEC)
            continue;
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", o->name);
        if (strcmp(o->name, name) == 0) {
            snprintf(out, outlen, "%s", path);
            return true;
        }
        if (section_path(o->subopts, path, name, out, outlen))
            return true;
    }
    return false;
}

/* parse_error: libconfuse's error function. Its section cfg_t has the line but no file name (the
 * sections were made by cfg_init, before any file), so the name comes from the context. */
static void parse_error(cfg_t *sec, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void parse_error(cfg_t *sec, const char *fmt, va_list ap)
{
    struct parse_ctx *ctx = parsing;
    if (!ctx)
        return;
    char msg[400], where[300] = "";
    vsnprintf(msg, sizeof msg, fmt, ap);
    char path[256];
    if (sec->name && strcmp(sec->name, "root") != 0 && section_path(root_opts, "", sec->name, path, sizeof path))
        snprintf(where, sizeof where, " (in section %s)", path);
    ctx_fail(ctx, ctx->file, sec->line, "%s%s", msg, where);
}

/* opt_validate: libconfuse's validcb, run as each value is stored; checks it against the key table
 * and records where it came from. Returns 0 to accept, -1 to stop the parse. */
static int opt_validate(cfg_t *sec, cfg_opt_t *opt)
{
    struct parse_ctx *ctx = parsing;
    if (!ctx)
        return 0;
    const struct conf_key *k = key_by_leaf(sec->name, opt->name);
    if (!k) {
        ctx_fail(ctx, ctx->file, sec->line, "internal error: '%s' is not in the key table", opt->name);
        return -1;
    }
    ctx->origins[k - keys] = (struct origin){ctx->file, sec->line, ++ctx->seq};
    char why[400];
    bool ok = true;
    switch (k->kind) {
    case KIND_INT: ok = check_int(k, cfg_opt_getnint(opt, 0), why, sizeof why); break;
    case KIND_BOOL: break;
    case KIND_STR:
    case KIND_ENV: ok = check_str(k, cfg_opt_getnstr(opt, 0), why, sizeof why); break;
    }
    if (!ok) {
        ctx_fail(ctx, ctx->file, sec->line, "%s", why);
        return -1;
    }
    return 0;
}

/* Character classes of libconfuse's lexer (lexer.l): an unquoted string is a run of these. */
static bool is_token_char(char ch)
{
    return ch != '\0' && !strchr(" \t\r\n#\"'={}()+,*", ch);
}

/* blank_comments: copy text with every comment turned into spaces (newlines kept) and check that
 * braces balance. Why: libconfuse 3.3 miscounts lines after each comment (two extra per `#` line),
 * so with our commented files its line numbers would be wrong; and it takes end of file as closing
 * any open section, so a truncated file would load. Unclosed strings and comments get a line too.
 * Strings, `${VAR}` and unquoted words are scanned as lexer.l does; `//` and `/ *` start comments
 * only where a word could start. Returns the copy (caller frees) or NULL after ctx_fail. */
static char *blank_comments(struct parse_ctx *ctx, const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1);
    if (!out) {
        ctx_fail(ctx, ctx->file, 0, "out of memory");
        return NULL;
    }
    memcpy(out, text, n + 1);

    int open_line[CONF_NESTING_MAX];
    int depth = 0, line = 1;
    bool in_word = false;
    size_t i = 0;
    while (i < n) {
        char ch = out[i];
        if (ch == '#' || (!in_word && ch == '/' && out[i + 1] == '/')) {
            while (i < n && out[i] != '\n')
                out[i++] = ' ';
            in_word = false;
        } else if (!in_word && ch == '/' && out[i + 1] == '*') {
            int start = line;
            out[i++] = ' ';
            out[i++] = ' ';
            while (i < n && !(out[i] == '*' && out[i + 1] == '/')) {
                if (out[i] == '\n')
                    line++;
                else
                    out[i] = ' ';
                i++;
            }
            if (i >= n) {
                ctx_fail(ctx, ctx->file, start, "comment opened here is not closed");
                free(out);
                return NULL;
            }
            out[i++] = ' ';
            out[i++] = ' ';
            in_word = false;
        } else if (ch == '"' || ch == '\'') {
            /* Strings stay as they are. libconfuse says only "premature end of file" about an
             * unterminated one, so point at where it starts. */
            int start = line;
            for (i++; i < n && out[i] != ch; i++) {
                if (out[i] == '\\' && i + 1 < n)
                    i++;
                if (out[i] == '\n')
                    line++;
            }
            if (i >= n) {
                ctx_fail(ctx, ctx->file, start, "string opened here is not closed");
                free(out);
                return NULL;
            }
            i++;
            in_word = false;
        } else if (!in_word && ch == '$' && out[i + 1] == '{' && strchr(out + i, '}')) {
            /* ${VAR} (the lexer substitutes the environment variable): not a section brace. */
            while (out[i] != '}') {
                if (out[i] == '\n')
                    line++;
                i++;
            }
            i++;
            in_word = false; /* the lexer starts a new token after it */
        } else {
            if (ch == '\n')
                line++;
            else if (ch == '{') {
                if (depth < CONF_NESTING_MAX)
                    open_line[depth] = line;
                depth++;
            } else if (ch == '}' && depth > 0)
                depth--; /* one too many: libconfuse reports "unexpected closing brace" */
            in_word = is_token_char(ch);
            i++;
        }
    }
    if (depth > 0) {
        int at = open_line[(depth <= CONF_NESTING_MAX ? depth : CONF_NESTING_MAX) - 1];
        ctx_fail(ctx, ctx->file, at, "'{' opened here is not closed before the end of the file");
        free(out);
        return NULL;
    }
    return out;
}

/* parse_text: parse text (named name in messages; name must outlive ctx) onto cfg. Returns
 * false after ctx_fail. */
static bool parse_text(struct parse_ctx *ctx, cfg_t *cfg, const char *name, const char *text)
{
    ctx->file = name;
    char *clean = blank_comments(ctx, text);
    if (!clean)
        return false;
    parsing = ctx;
    errno = 0; /* libconfuse tests errno for ERANGE after strtol without clearing it */
    int rc = cfg_parse_buf(cfg, clean);
    parsing = NULL;
    free(clean);
    if (rc != CFG_SUCCESS) {
        ctx_fail(ctx, name, 0, "cannot parse (libconfuse error %d)", rc); /* if it said nothing */
        return false;
    }
    return true;
}

/* read_file: the whole file at path, NUL-terminated (caller frees), or NULL after ctx_fail. */
static char *read_file(struct parse_ctx *ctx, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        ctx_fail(ctx, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONF_FILE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CONF_FILE_MAX_BYTES + 1, fp) : 0;
    int read_errno = errno;
    bool bad = ferror(fp);
    fclose(fp);
    if (!buf)
        ctx_fail(ctx, path, 0, "out of memory");
    else if (bad)
        ctx_fail(ctx, path, 0, "cannot read: %s", strerror(read_errno));
    else if (n > CONF_FILE_MAX_BYTES)
        ctx_fail(ctx, path, 0, "larger than %d bytes", CONF_FILE_MAX_BYTES);
    else if (memchr(buf, '\0', n))
        ctx_fail(ctx, path, 0, "contains a NUL byte; not a text file");
    else {
        buf[n] = '\0';
        return buf;
    }
    free(buf);
    return NULL;
}

static bool parse_file(struct parse_ctx *ctx, cfg_t *cfg, const char *path)
{
    char *text = read_file(ctx, path);
    if (!text)
        return false;
    bool ok = parse_text(ctx, cfg, path, text);
    free(text);
    return ok;
}

/* cfg_path: "database.pool.max_connections" → "database|pool|max_connections", libconfuse's form. */
static void cfg_path(const struct conf_key *k, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", k->path);
    for (char *p = out; *p; p++)
        if (*p == '.')
            *p = '|';
}

static cfg_t *new_cfg(struct parse_ctx *ctx)
{
    cfg_t *cfg = cfg_init(root_opts, CFGF_NONE);
    if (!cfg) {
        ctx_fail(ctx, ctx->fallback, 0, "out of memory");
        return NULL;
    }
    cfg_set_error_function(cfg, parse_error);
    return cfg;
}

/* seed: store c's values in cfg, so that a parse changes only what its text sets. */
static bool seed(struct parse_ctx *ctx, cfg_t *cfg, const struct conf *c)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct conf_key *k = &keys[i];
        const void *f = cfield_of(c, k);
        char path[256];
        cfg_path(k, path, sizeof path);
        cfg_opt_t *opt = cfg_getopt(cfg, path);
        int rc = CFG_FAIL;
        if (opt) {
            switch (k->kind) {
            case KIND_INT: rc = cfg_opt_setnint(opt, *(const int *)f, 0); break;
            case KIND_BOOL: rc = cfg_opt_setnbool(opt, *(const bool *)f ? cfg_true : cfg_false, 0); break;
            case KIND_STR: rc = cfg_opt_setnstr(opt, memchr(f, '\0', k->size) ? f : "", 0); break;
            case KIND_ENV: rc = cfg_opt_setnstr(opt, conf_env_name(*(const enum conf_env *)f), 0); break;
            }
        }
        if (rc != CFG_SUCCESS) {
            ctx_fail(ctx, ctx->fallback, 0, "internal error: cannot set %s", k->path);
            return false;
        }
    }
    return true;
}

/* copy_out: cfg's values into c. Parsed values were range-checked as they were read, so each fits
 * its field; anything else is caught again by validate(). */
static void copy_out(cfg_t *cfg, struct conf *c)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct conf_key *k = &keys[i];
        void *f = field_of(c, k);
        char path[256];
        cfg_path(k, path, sizeof path);
        switch (k->kind) {
        case KIND_INT: {
            long v = cfg_getint(cfg, path);
            *(int *)f = v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v;
            break;
        }
        case KIND_BOOL: *(bool *)f = cfg_getbool(cfg, path) == cfg_true; break;
        case KIND_STR: {
            const char *s = cfg_getstr(cfg, path);
            snprintf(f, k->size, "%s", s ? s : "");
            break;
        }
        case KIND_ENV: {
            const char *s = cfg_getstr(cfg, path);
            if (!s || !conf_env_parse(s, f))
                *(enum conf_env *)f = (enum conf_env)-1; /* validate() reports it */
            break;
        }
        }
    }
}

/* validate_jwt: JWT on needs auth on (else /v1 is open while the operator believes it is not) and
 * keys; the sources together must load (a key id used in two of them is an error). */
static bool validate_jwt(struct parse_ctx *ctx, const struct conf *c)
{
    if (!c->web_auth_jwt_enabled)
        return true;
    if (!c->web_auth_enabled) {
        ctx_fail_at(ctx, KEY_web_auth_jwt_enabled, "web.auth.jwt.enabled = true needs web.auth.enabled = true");
        return false;
    }
    char why[400];
    struct jwt_sources src = {.public_keys = c->web_auth_jwt_public_keys, .jwks_file = c->web_auth_jwt_jwks_file,
                              .hs256_secret = c->web_auth_jwt_hs256_secret};
    struct jwt_keyset *ks = jwt_keyset_load(&src, why, sizeof why);
    int n = jwt_keyset_count(ks);
    jwt_keyset_free(ks);
    if (!ks) {
        ctx_fail_at(ctx, KEY_web_auth_jwt_enabled, why);
        return false;
    }
    if (n == 0) {
        ctx_fail_at(ctx, KEY_web_auth_jwt_enabled, "web.auth.jwt.enabled = true needs a key: web.auth.jwt.public_keys, "
                                                   "web.auth.jwt.jwks_file or web.auth.jwt.hs256_secret");
        return false;
    }
    return true;
}

/* validate: every key's value and the cross-field rules, blaming each value's origin. */
static bool validate(struct parse_ctx *ctx, const struct conf *c)
{
    char why[400];
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct conf_key *k = &keys[i];
        const void *f = cfield_of(c, k);
        bool ok = true;
        switch (k->kind) {
        case KIND_INT: ok = check_int(k, *(const int *)f, why, sizeof why); break;
        case KIND_BOOL: break;
        case KIND_STR:
            if (!memchr(f, '\0', k->size)) {
                snprintf(why, sizeof why, "%s is not NUL-terminated", k->path);
                ok = false;
            } else {
                ok = check_str(k, f, why, sizeof why);
            }
            break;
        case KIND_ENV:
            ok = (unsigned)*(const enum conf_env *)f <= CONF_ENV_PRODUCTION;
            if (!ok)
                snprintf(why, sizeof why, "%s must be test, development or production", k->path);
            break;
        }
        if (!ok) {
            ctx_fail_at(ctx, i, why);
            return false;
        }
    }
    for (size_t r = 0; r < sizeof order_rules / sizeof order_rules[0]; r++) {
        size_t lo = order_rules[r].lo, hi = order_rules[r].hi;
        int vlo = *(const int *)cfield_of(c, &keys[lo]), vhi = *(const int *)cfield_of(c, &keys[hi]);
        if (vlo <= vhi)
            continue;
        /* Blame whichever of the two was set last: that is the line someone just changed. */
        size_t blame = ctx->origins[lo].seq >= ctx->origins[hi].seq ? lo : hi;
        size_t other = blame == lo ? hi : lo;
        const struct origin *o = &ctx->origins[other];
        char also[300] = "";
        if (o->file && o->line > 0)
            snprintf(also, sizeof also, " (%s is set at %s:%d)", keys[other].path, o->file, o->line);
        else if (o->file)
            snprintf(also, sizeof also, " (%s is set by %s)", keys[other].path, o->file);
        snprintf(why, sizeof why, "%s = %d must not exceed %s = %d%s", keys[lo].path, vlo, keys[hi].path, vhi,
                 also);
        ctx_fail_at(ctx, blame, why);
        return false;
    }
    /* Auth on with no key would lock every client out of /v1. */
    struct auth_keys ak;
    if (c->web_auth_enabled && !c->web_auth_jwt_enabled && auth_keys_parse(c->web_auth_api_keys, &ak, why, sizeof why) &&
        ak.n == 0) {
        explicit_bzero(&ak, sizeof ak);
        ctx_fail_at(ctx, KEY_web_auth_enabled, "web.auth.enabled = true needs at least one key in web.auth.api_keys "
                                               "or web.auth.jwt.enabled = true");
        return false;
    }
    explicit_bzero(&ak, sizeof ak);
    return validate_jwt(ctx, c);
}

static void ctx_init(struct parse_ctx *ctx, char *err, size_t errlen, const char *fallback)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->err = err;
    ctx->errlen = errlen;
    ctx->fallback = fallback;
    ctx->file = fallback;
    if (errlen > 0)
        err[0] = '\0';
}

/* getenv_set: the variable's value, or NULL when it is unset or empty. */
static const char *getenv_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* override: set key i of c from the environment variable var, if that is set. */
static bool override(struct parse_ctx *ctx, struct conf *c, enum key_index i, const char *var)
{
    const char *v = getenv_set(var);
    if (!v)
        return true;
    const struct conf_key *k = &keys[i];
    ctx->origins[i] = (struct origin){var, 0, ++ctx->seq};
    if (strlen(v) >= k->size) {
        ctx_fail(ctx, var, 0, "%s is longer than %zu bytes", k->path, k->size - 1);
        return false;
    }
    snprintf(field_of(c, k), k->size, "%s", v);
    return true; /* validate() checks the format */
}

bool conf_load(struct conf *c, struct conf_source *src, const char *path, const char *env_name, char *err,
               size_t errlen)
{
    struct conf_source scratch;
    struct parse_ctx pc, *ctx = &pc;
    ctx_init(ctx, err, errlen, "(built-in defaults)");
    if (!src)
        src = &scratch;
    src->base_path[0] = src->overlay_path[0] = '\0';
    conf_defaults(c);

    /* An environment asked for by -e or TASKER_ENV beats the base file's `environment` key. */
    const char *env_from = env_name ? "-e" : "TASKER_ENV";
    const char *env_req = env_name ? env_name : getenv_set("TASKER_ENV");
    enum conf_env env = CONF_ENV_DEVELOPMENT;
    if (env_req && !conf_env_parse(env_req, &env)) {
        ctx_fail(ctx, env_from, 0, "unknown environment \"%.64s\"; must be test, development or production", env_req);
        return false;
    }
    if (!path)
        path = getenv_set("TASKER_CONFIG_PATH");
    /* The overlays live next to the base file. Asked for one without a file, we would run on the
     * bare defaults while the operator believes the overlay applies: refuse instead. */
    if (env_req && !path) {
        ctx_fail(ctx, env_from, 0,
                 "environment \"%s\" is read from environments/%s.conf next to the configuration file, and there "
                 "is none: pass -c FILE (e.g. -c etc/tasker-orchestratord.conf) or set TASKER_CONFIG_PATH",
                 conf_env_name(env), conf_env_name(env));
        return false;
    }

    cfg_t *cfg = new_cfg(ctx);
    bool ok = cfg != NULL;
    if (ok && path) {
        if (strlen(path) >= sizeof ctx->names[0]) {
            ctx_fail(ctx, "configuration", 0, "file name longer than %zu bytes", sizeof ctx->names[0] - 1);
            ok = false;
        } else {
            snprintf(ctx->names[0], sizeof ctx->names[0], "%s", path);
            snprintf(src->base_path, sizeof src->base_path, "%s", path);
            ok = parse_file(ctx, cfg, ctx->names[0]);
        }
    }
    if (ok && env_req) {
        ok = cfg_setstr(cfg, "environment", conf_env_name(env)) == CFG_SUCCESS;
        ctx->origins[KEY_environment] = (struct origin){env_from, 0, ++ctx->seq};
        if (!ok)
            ctx_fail(ctx, env_from, 0, "internal error: cannot set environment");
    }
    if (ok && !env_req && !conf_env_parse(cfg_getstr(cfg, "environment"), &env)) {
        /* cannot happen: opt_validate checked it while parsing */
        ctx_fail_at(ctx, KEY_environment, "environment must be test, development or production");
        ok = false;
    }

    /* The overlay: parsed onto the same cfg_t, where libconfuse merges sections key by key (a
     * section that appears again is the same cfg_t, and only the keys the overlay names are
     * reassigned), so an overlay changes exactly what it sets. */
    if (ok && path) {
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int)(slash - path + 1) : 0;
        char *overlay = ctx->names[1];
        int n = snprintf(overlay, sizeof ctx->names[1], "%.*senvironments/%s.conf", dirlen, path, conf_env_name(env));
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof ctx->names[1]) {
            ctx_fail(ctx, path, 0, "overlay file name longer than %zu bytes", sizeof ctx->names[1] - 1);
            ok = false;
        } else if (stat(overlay, &st) == 0) {
            memcpy(src->overlay_path, overlay, (size_t)n + 1); /* fits: see the _Static_assert */
            ok = parse_file(ctx, cfg, overlay);
            const char *now = ok ? cfg_getstr(cfg, "environment") : NULL;
            if (ok && (!now || strcmp(now, conf_env_name(env)) != 0)) {
                char why[200];
                snprintf(why, sizeof why, "environment = \"%s\" in the overlay of environment \"%s\"",
                         now ? now : "", conf_env_name(env));
                ctx_fail_at(ctx, KEY_environment, why);
                ok = false;
            }
        } else if (errno != ENOENT && errno != ENOTDIR) {
            ctx_fail(ctx, overlay, 0, "cannot stat: %s", strerror(errno));
            ok = false;
        }
    }
    if (ok)
        copy_out(cfg, c);
    if (cfg)
        cfg_free(cfg);

    ok = ok && override(ctx, c, KEY_database_url, "DATABASE_URL") &&
         override(ctx, c, KEY_web_bind_address, "TASKER_WEB_BIND_ADDRESS") &&
         override(ctx, c, KEY_web_auth_jwt_hs256_secret, "TASKER_JWT_HS256_SECRET") &&
         override(ctx, c, KEY_templates_path, "TASKER_TEMPLATE_PATH") &&
         override(ctx, c, KEY_messaging_backend, "TASKER_MESSAGING_BACKEND") &&
         override(ctx, c, KEY_rabbitmq_url, "TASKER_AMQP_URL") && validate(ctx, c);
    return ok;
}

bool conf_load_buffer(struct conf *c, const char *name, const char *text, char *err, size_t errlen)
{
    struct parse_ctx pc, *ctx = &pc;
    ctx_init(ctx, err, errlen, name);
    cfg_t *cfg = new_cfg(ctx);
    bool ok = cfg && seed(ctx, cfg, c) && parse_text(ctx, cfg, name, text);
    if (ok)
        copy_out(cfg, c);
    if (cfg)
        cfg_free(cfg);
    return ok && validate(ctx, c);
}

bool conf_validate(const struct conf *c, char *err, size_t errlen)
{
    struct parse_ctx pc;
    ctx_init(&pc, err, errlen, "configuration");
    return validate(&pc, c);
}

/* ---- reload ----------------------------------------------------------------------------------- */

static bool field_equal(const struct conf *a, const struct conf *b, const struct conf_key *k)
{
    if (k->kind == KIND_STR)
        return strncmp(cfield_of(a, k), cfield_of(b, k), k->size) == 0;
    return memcmp(cfield_of(a, k), cfield_of(b, k), k->size) == 0;
}

void conf_apply_reload(struct conf *cur, const struct conf *next, char *changed_restart, size_t len)
{
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const struct conf_key *k = &keys[i];
        if (!k->restart) {
            memcpy(field_of(cur, k), cfield_of(next, k), k->size);
        } else if (!field_equal(cur, next, k) && len > 0) {
            size_t used = strnlen(changed_restart, len);
            if (used < len)
                snprintf(changed_restart + used, len - used, "%s%s", used ? ", " : "", k->path);
        }
    }
}

/* ---- dump ------------------------------------------------------------------------------------- */

/* append: add n bytes of s to out (size outlen, *used bytes used), truncating; keeps out terminated. */
static void append(char *out, size_t outlen, size_t *used, const char *s, size_t n)
{
    if (*used + 1 >= outlen)
        return;
    if (n > outlen - 1 - *used)
        n = outlen - 1 - *used;
    memcpy(out + *used, s, n);
    *used += n;
    out[*used] = '\0';
}

/* mask_url: copy url with its passwords — in the userinfo and in a password= parameter — as "***". */
static void mask_url(const char *url, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    const char *p = url;
    const char *scheme = strstr(url, "://");
    const char *query = strchr(url, '?');
    if (scheme && (!query || scheme < query)) {
        const char *auth = scheme + 3, *end = query ? query : url + strlen(url), *at = NULL;
        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q; /* the last '@' ends the userinfo: a raw '@' in a password comes before it */
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
            append(out, outlen, &used, url, (size_t)(colon + 1 - url));
            append(out, outlen, &used, "***", 3);
            p = at;
        }
    }
    while (*p) {
        if ((*p == '?' || *p == '&') && strncmp(p + 1, "password=", 9) == 0) {
            append(out, outlen, &used, p, 10);
            append(out, outlen, &used, "***", 3);
            p += 10;
            p += strcspn(p, "&");
            continue;
        }
        append(out, outlen, &used, p, 1);
        p++;
    }
}

/* put_string: s as a double-quoted libconfuse string that reads back as s (`$` escaped, since the
 * lexer substitutes ${VAR} inside double quotes). */
static void put_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '$': fputs("\\$", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\t': fputs("\\t", fp); break;
        default:
            if (*p < ' ' || *p == 0x7f)
                fprintf(fp, "\\x%02x", *p);
            else
                fputc(*p, fp);
        }
    }
    fputc('"', fp);
}

static void dump_value(FILE *fp, const struct conf *c, const struct conf_key *k)
{
    const void *f = cfield_of(c, k);
    char url[CONF_URL_MAX];
    bool is_default = true;
    switch (k->kind) {
    case KIND_INT:
        fprintf(fp, "%d", *(const int *)f);
        is_default = *(const int *)f == k->def_int;
        break;
    case KIND_BOOL:
        fputs(*(const bool *)f ? "true" : "false", fp);
        is_default = *(const bool *)f == (k->def_int != 0);
        break;
    case KIND_STR:
        if (k == &keys[KEY_database_url] || k == &keys[KEY_database_listen_url]) {
            mask_url(f, url, sizeof url);
            put_string(fp, url);
        } else if (k == &keys[KEY_rabbitmq_url]) {
            amqp_url_mask(f, url, sizeof url);
            put_string(fp, url);
        } else if (k == &keys[KEY_web_auth_jwt_hs256_secret]) {
            put_string(fp, *(const char *)f ? "***" : "");
        } else if (k == &keys[KEY_web_auth_api_keys]) {
            char masked[CONF_API_KEYS_MAX];
            auth_keys_mask(f, masked, sizeof masked);
            put_string(fp, masked);
        } else {
            put_string(fp, f);
        }
        is_default = strncmp(f, k->def_str, k->size) == 0;
        break;
    case KIND_ENV:
        put_string(fp, conf_env_name(*(const enum conf_env *)f));
        is_default = strcmp(conf_env_name(*(const enum conf_env *)f), k->def_str) == 0;
        break;
    }
    if (!is_default) {
        fputs("  # default ", fp);
        if (k->kind == KIND_INT)
            fprintf(fp, "%ld", k->def_int);
        else if (k->kind == KIND_BOOL)
            fputs(k->def_int ? "true" : "false", fp);
        else
            put_string(fp, k->def_str);
    }
    fputc('\n', fp);
}

static void dump_section(FILE *fp, const struct conf *c, const cfg_opt_t *opts, const char *prefix, int depth)
{
    for (const cfg_opt_t *o = opts; o->name; o++) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", o->name);
        if (depth == 0)
            fputc('\n', fp);
        if (o->type == CFGT_SEC) {
            fprintf(fp, "%*s%s {\n", depth * 4, "", o->name);
            dump_section(fp, c, o->subopts, path, depth + 1);
            fprintf(fp, "%*s}\n", depth * 4, "");
            continue;
        }
        const struct conf_key *k = key_by_path(path);
        if (!k)
            continue; /* cannot happen: both come from the same lists */
        fprintf(fp, "%*s%s = ", depth * 4, "", o->name);
        dump_value(fp, c, k);
    }
}

void conf_dump(const struct conf *c, FILE *fp)
{
    fputs("# tasker-orchestratord: effective configuration\n", fp);
    dump_section(fp, c, root_opts, "", 0);
}
