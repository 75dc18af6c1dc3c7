/* conf.h — the daemon's configuration: a libconfuse table, base file + environment overlay + env vars. */
#ifndef TASKER_CONF_H
#define TASKER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONF_URL_MAX 1024
#define CONF_NAME_MAX 128
#define CONF_API_KEYS_MAX 4096 /* web.auth.api_keys: the whole key list */

enum conf_env { CONF_ENV_TEST, CONF_ENV_DEVELOPMENT, CONF_ENV_PRODUCTION };

/* The typed configuration. Owned by whoever called conf_load(); plain values, no pointers, so a
 * reload can build a new one and copy the reloadable fields over (see conf_apply_reload). Keys
 * marked [restart] need a restart to change; the rest apply on SIGHUP. */
struct conf {
    enum conf_env environment;              /* [restart] test | development | production */

    /* database { … } */
    char database_url[CONF_URL_MAX];        /* [restart] libpq URL; DATABASE_URL overrides */
    char database_listen_url[CONF_URL_MAX]; /* [restart] the LISTEN connection's URL; "" = database_url */
    bool database_prepared_statements;      /* [restart] false: every statement unnamed, with its text */
    bool database_transaction_pooling;      /* [restart] session settings per transaction, none at connect */
    int pool_max_connections;               /* [restart] seed: 30 base; 10/25/50 by environment */
    int pool_min_connections;               /* [restart] opened at start and kept */
    int pool_acquire_timeout_secs;          /* wait for a free connection before failing a query */
    int pool_idle_timeout_secs;             /* close connections above min idle this long */
    int pool_max_lifetime_secs;             /* recycle a connection this old when it is idle */
    int pool_reconnect_initial_ms;          /* first reconnect delay; doubles, jittered */
    int pool_reconnect_max_ms;              /* cap of the reconnect delay */
    int pool_breaker_failure_threshold;     /* consecutive connect failures that open the breaker */
    int pool_breaker_open_secs;             /* how long the breaker stays open before one probe */
    int pool_statement_timeout_ms;          /* server-side statement_timeout of orchestration; 0 = none */
    int pool_reserved_for_orchestration;    /* connections API queries never use */

    /* messaging { … } */
    char messaging_backend[16];             /* [restart] pgmq | rabbitmq */
    char rabbitmq_url[CONF_URL_MAX];        /* [restart] AMQP URL; TASKER_AMQP_URL overrides */
    int rabbitmq_confirm_timeout_ms;        /* wait for a relayed batch's confirms */
    int rabbitmq_heartbeat_secs;            /* [restart] AMQP heartbeat; 0 = none */
    int rabbitmq_relay_batch;               /* dispatch messages per namespace per relay burst */
    int rabbitmq_prefetch;                  /* [restart] unacked completion pointers per namespace */

    /* orchestration { … } */
    char processor_id[CONF_NAME_MAX];       /* [restart] who we are in audit rows; "" = host:pid */
    int completions_interval_ms;            /* fallback poll of the completion queues (NOTIFY is the fast path) */
    int completions_idle_interval_ms;       /* its ceiling while a namespace's polls find nothing */
    int completions_batch_size;             /* messages per process_completions call */
    int completions_visibility_timeout_secs;/* vt of completion messages being processed */
    int poller_interval_ms;                 /* fallback poll for ready steps and retries */
    int poller_idle_interval_ms;            /* its ceiling while polls find nothing */
    int poller_batch_size;                  /* tasks per enqueue_ready_steps call */
    int sweeper_interval_secs;              /* stuck/stale sweep period */
    int sweeper_batch_size;                 /* rows per sweep action */
    bool sweeper_dry_run;                   /* report what the sweep would do, change nothing */
    int stale_waiting_for_dependencies_minutes;
    int stale_waiting_for_retry_minutes;
    int stale_steps_in_process_minutes;
    int stale_blocked_by_failures_minutes;
    int stale_task_max_lifetime_hours;
    int sweeper_resend_grace_secs;          /* an enqueued step's message may be missing this long */
    int sweeper_reevaluate_after_secs;      /* re-evaluate unfinished tasks untouched this long */
    bool vacuum_enabled;                    /* VACUUM the hot tables while completions flow */
    int vacuum_interval_ms;                 /* period of the queue tables' vacuum */
    int batch_max_workers;                  /* most workers one batch plan may create */
    int decision_max_steps;                 /* most steps one decision may choose */
    int templates_max_steps;                /* most steps a template may have */
    char templates_path[CONF_URL_MAX];      /* template directory or file; "" = none; TASKER_TEMPLATE_PATH overrides */
    int vacuum_task_tables_interval_ms;     /* period of tasker.tasks/workflow_steps' vacuum; 0 = never */
    int namespace_refresh_secs;             /* how often the list of namespaces is re-read */
    int shutdown_timeout_secs;              /* SIGTERM: how long in-flight work may take to drain */

    /* web { … } */
    char web_bind_address[CONF_NAME_MAX];   /* [restart] host:port; TASKER_WEB_BIND_ADDRESS overrides */
    bool web_enabled;                       /* [restart] */
    int web_max_body_bytes;                 /* request bodies above this get 413 */
    int web_request_timeout_ms;             /* longest a request may take, I/O and database included */
    int web_request_read_timeout_ms;        /* the whole request must arrive within this (slow clients) */
    int web_max_connections;                /* open HTTP connections at most */
    int web_backpressure_queue_depth;       /* 503 while this many queries wait for a pool connection */
    int web_statement_timeout_ms;           /* server-side statement_timeout of API statements; 0 = none */
    bool web_auth_enabled;                  /* /v1 needs an API key (health and metrics stay public) */
    char web_auth_api_keys[CONF_API_KEYS_MAX]; /* "[NAME@]KEY:PERM[,PERM…] …" (http_auth.h); secret */
    bool web_auth_jwt_enabled;              /* JWT bearer tokens accepted on /v1 (jwt_auth.h) */
    char web_auth_jwt_public_keys[CONF_API_KEYS_MAX]; /* "[KID=]PATH …" PEM files */
    char web_auth_jwt_jwks_file[CONF_URL_MAX];
    char web_auth_jwt_hs256_secret[512];    /* secret; TASKER_JWT_HS256_SECRET overrides */
    char web_auth_jwt_issuer[512];          /* "" = not checked */
    char web_auth_jwt_audience[512];        /* "" = tokens must name no audience */
    char web_auth_jwt_permissions_claim[CONF_NAME_MAX];
    int web_auth_jwt_leeway_secs;

    /* log { … } */
    char log_level[16];                     /* error | warn | info | debug */
    bool log_json;                          /* one JSON object per line */
};

/* Where the configuration came from, for messages and reloads. */
struct conf_source {
    char base_path[1024];     /* "" = built-in defaults only */
    char overlay_path[1024];  /* "" = no overlay file was read */
};

/* conf_defaults: fill c with the built-in defaults of every key (the seed's values). */
void conf_defaults(struct conf *c);

/* conf_load: build a configuration.
 *   path: the base file (-c), or NULL → $TASKER_CONFIG_PATH, else no file (defaults only).
 *   env_name: -e, or NULL → $TASKER_ENV, else "development".
 * Order: defaults → base file → overlay `<dir of base>/environments/<env>.conf` (if it exists) →
 * environment variables (DATABASE_URL, TASKER_WEB_BIND_ADDRESS). With neither -e nor $TASKER_ENV,
 * the base file's own `environment` key (default "development") picks the overlay; -e or $TASKER_ENV
 * without a base file is an error (there is nowhere to find the overlay); an overlay
 * that sets `environment` to another name is an error. Unknown keys, bad types, out-of-range
 * values and cross-field violations fail with messages of the form `file:line: message` written
 * to err (`NAME: message` when the value came from an environment variable or argument).
 * src may be NULL. Returns false on any error (c is then unspecified). Not re-entrant:
 * libconfuse's scanner is global state. */
bool conf_load(struct conf *c, struct conf_source *src, const char *path, const char *env_name,
               char *err, size_t errlen) __attribute__((warn_unused_result));

/* conf_load_buffer: parse one configuration text (no overlay, no env vars) on top of c — for tests.
 * name is used in error messages as the file name. */
bool conf_load_buffer(struct conf *c, const char *name, const char *text, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* conf_apply_reload: copy the reloadable keys of next into cur; append to changed_restart (a
 * comma-separated list) the names of restart-only keys whose values differ. */
void conf_apply_reload(struct conf *cur, const struct conf *next, char *changed_restart, size_t len);

/* conf_validate: check every key's bounds and format and the cross-field rules (min_connections
 * <= max_connections, reconnect_initial_ms <= reconnect_max_ms) on a struct built by hand; errors
 * read "configuration: message". conf_load and conf_load_buffer already do this. */
bool conf_validate(const struct conf *c, char *err, size_t errlen) __attribute__((warn_unused_result));

/* conf_dump: write c to fp in the configuration file syntax (every key, alphabetical, as loaded),
 * with the password of database.url masked and a "# default …" note on values that differ from
 * the built-in default. For `--check-config -v`. */
void conf_dump(const struct conf *c, FILE *fp);

const char *conf_env_name(enum conf_env e);
bool conf_env_parse(const char *name, enum conf_env *out);

#endif
