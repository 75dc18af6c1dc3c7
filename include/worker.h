/* worker.h — tasker-worker: claims the steps of one namespace, runs their handlers, hands results back.
 *
 * The worker speaks the SQL protocol of DESIGN §5 (tasker_claim_and_execute_step, heartbeat_step,
 * submit_step_results) on one libevent loop. Pieces:
 *   worker.c          the loop's state: connections, claims, heartbeats, hand-backs, drain (worker_*)
 *   worker_handlers.c the handlers: noop, echo, fail, sleep, exec, decision, batch_plan, batch_work,
 *                     batch_aggregate (worker_handler_*)
 *   worker_exec.c     child processes for exec: pipes, timeout, reaping (worker_exec_*, worker_exec.h)
 *   worker_util.c     pure logic, unit-tested: options, handler choice, outcomes, text helpers (no I/O)
 *   worker_dynamic.c  pure logic, unit-tested: decision rules, batch planning, batch work, aggregation
 *   worker_main.c     main(): options, signals, the event_base
 */
#ifndef TASKER_WORKER_H
#define TASKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "names.h"

struct event;
struct event_base;
struct worker;
struct worker_exec;
struct worker_exec_result;

/* Limits and defaults (units in the names). */
#define WORKER_NAMESPACE_MAX NAMESPACE_NAME_MAX /* names.h */
#define WORKER_ID_MAX 128                   /* worker ids: [A-Za-z0-9._:@/+-]{1,128} */
#define WORKER_UUID_LEN 36                  /* text form of a uuid */
#define WORKER_DEFAULT_CONCURRENCY 10
#define WORKER_DEFAULT_BATCH 10
#define WORKER_DEFAULT_LEASE_SECS 30
#define WORKER_DEFAULT_POLL_MS 500
#define WORKER_DEFAULT_HANDLER_TIMEOUT_SECS 300
#define WORKER_DEFAULT_SLEEP_MS 100         /* sleep handler without "ms" */
#define WORKER_EXEC_STDOUT_CAP_BYTES (1024 * 1024) /* more stdout than this fails the step */
#define WORKER_EXEC_STDERR_KEEP_BYTES (64 * 1024)  /* the tail of stderr we keep */
#define WORKER_EXEC_KILL_GRACE_MS 2000      /* SIGTERM, then SIGKILL this much later */
#define WORKER_EXEC_LINGER_MS 2000          /* after exit, wait this long for the pipes to close */
#define WORKER_ERR_TAIL_LINES 5             /* stderr lines quoted in an error message */
#define WORKER_ERR_TAIL_CHARS 1000          /* … at most this many bytes of them */
#define WORKER_RECONNECT_MIN_MS 100         /* reconnect backoff: first delay */
#define WORKER_RECONNECT_MAX_MS 10000       /* … capped here (±25 % jitter) */
#define WORKER_CONNECT_TIMEOUT_MS 10000     /* give up one connection attempt after this long */
#define WORKER_HANDBACK_GRACE_SECS 15       /* drain: after the handler deadline, this long to hand back */
#define WORKER_SUBMIT_MAX_TRIES 3           /* a hand-back the server rejects (not transient) is dropped after this */
#define WORKER_HANDLER_MAP_MAX 64           /* --handler-map entries */
#define WORKER_BATCH_DEFAULT_MAX_WORKERS 1000 /* batch_plan without max_workers */
#define WORKER_BATCH_MAX_WORKERS 10000      /* batch_plan: max_workers at most this */
#define WORKER_BATCH_MAX_ITEM_MS 3600000    /* batch_work: item_ms at most this */

/* worker_builtin: the handlers this worker runs. A step's handler is chosen from its callable (and
 * method) by worker_handler_resolve. */
enum worker_builtin {
    WORKER_H_UNKNOWN = 0, /* no handler: the step fails permanently */
    WORKER_H_NOOP,
    WORKER_H_ECHO,
    WORKER_H_FAIL,
    WORKER_H_SLEEP,
    WORKER_H_EXEC,
    WORKER_H_DECISION,
    WORKER_H_BATCH_PLAN,
    WORKER_H_BATCH_WORK,
    WORKER_H_BATCH_AGGREGATE,
};

/* worker_handler_map_entry: one --handler-map CALLABLE[#METHOD]=BUILTIN. */
struct worker_handler_map_entry {
    const char *callable;  /* borrowed from argv: CALLABLE or CALLABLE#METHOD, callable_len bytes */
    size_t callable_len;
    enum worker_builtin builtin;
};

/* worker_opts: the command line, parsed. Owned by main; the worker copies it. */
struct worker_opts {
    char namespace_name[WORKER_NAMESPACE_MAX + 1]; /* --namespace (required) */
    int concurrency;                  /* --concurrency: handlers running at once */
    int batch;                        /* --batch: most steps per claim call */
    int lease_secs;                   /* --lease-secs: lease asked for at claim and heartbeat */
    int poll_ms;                      /* --poll-ms: claim at least this often when idle */
    char worker_id[WORKER_ID_MAX + 1];/* --worker-id (default worker-<host>-<pid>) */
    int handler_timeout_secs;         /* --handler-timeout-secs: exec default timeout, drain limit */
    const char *database_url;         /* --database-url or $DATABASE_URL (borrowed from argv/env) */
    const char *listen_url;           /* --listen-url, $TASKER_LISTEN_URL, else database_url */
    bool transaction_pooling;         /* --transaction-pooling: settings per transaction (db_conn.h) */
    bool prepared_statements;         /* false: --no-prepared-statements, statements unnamed */
    bool verbose;                     /* -v: debug logging */
    bool rabbitmq;                    /* --backend rabbitmq ($TASKER_MESSAGING_BACKEND): dispatch from RabbitMQ */
    const char *amqp_url;             /* --amqp-url or $TASKER_AMQP_URL (borrowed) */
    /* --handler-map (in order given) and --default-handler (WORKER_H_UNKNOWN = none). */
    struct worker_handler_map_entry handler_map[WORKER_HANDLER_MAP_MAX];
    int handler_map_n;
    enum worker_builtin default_handler;
};

enum worker_parse_status {
    WORKER_PARSE_OK,    /* run */
    WORKER_PARSE_HELP,  /* --help was asked for: print usage, exit 0 */
    WORKER_PARSE_VERSION, /* --version was asked for: print it, exit 0 */
    WORKER_PARSE_ERROR  /* err says why: exit 2 */
};

/* worker_opts_parse: parse argv into o (defaults first; DATABASE_URL from the environment unless
 * --database-url). On WORKER_PARSE_ERROR, err holds a one-line reason. Resets getopt, so it may be
 * called more than once (tests). */
enum worker_parse_status worker_opts_parse(int argc, char **argv, struct worker_opts *o, char *err,
                                           size_t errlen) __attribute__((warn_unused_result));

/* worker_usage: the --help text. */
void worker_usage(FILE *out);

/* worker_id_valid: the accepted form (see the limits above); namespaces: names.h. */
bool worker_id_valid(const char *id);

/* worker_builtin_parse: the built-in named name (WORKER_H_UNKNOWN if none); worker_builtin_name:
 * its name ("unknown" for WORKER_H_UNKNOWN). */
enum worker_builtin worker_builtin_parse(const char *name);
const char *worker_builtin_name(enum worker_builtin b);

/* worker_handler_resolve: the handler for a step, first match wins: a --handler-map entry for
 * "callable#method" (when method is non-empty), one for "callable", the built-in named callable,
 * --default-handler; else WORKER_H_UNKNOWN. o may be NULL (no map, no default). */
enum worker_builtin worker_handler_resolve(const struct worker_opts *o, const char *callable, const char *method);

/* worker_batch_run: the progress of a batch_work handler (worker_dynamic.c), kept in its job. The
 * cursors are integers; the range is [start, end). */
struct worker_batch_run {
    char batch_id[64];
    long long start, end;
    long long pos;              /* the next item */
    long long sum;              /* of the items in [start, pos) */
    long long resumed_from;     /* the checkpoint cursor this attempt began at (resumed only) */
    bool resumed;
    bool checkpoint_ignored;    /* the claim carried a checkpoint that does not fit the range */
    bool no_op;                 /* the placeholder worker of a no_batches outcome */
    long long processed_now;    /* items processed by this attempt */
    long long interval;         /* checkpoint every this many items (0 = never) */
    long long next_checkpoint;  /* the cursor of the next checkpoint */
    int checkpoints;            /* checkpoints saved by this attempt */
    long long fail_at;          /* fail on reaching this item; -1 = never */
    bool fail_permanently;
    int attempt;
    long long item_ms;          /* wait per item */
};

/* What batch_work does next (worker_batch_next). */
enum worker_batch_action {
    WORKER_BATCH_WORK,       /* process count items (after count * item_ms ms) */
    WORKER_BATCH_CHECKPOINT, /* save worker_batch_checkpoint_doc, then worker_batch_checkpointed */
    WORKER_BATCH_FAIL,       /* fail as configured: worker_batch_fail */
    WORKER_BATCH_DONE        /* succeed with worker_batch_result */
};

/* ---- one claimed step ---------------------------------------------------------------------- */

/* worker_job: one claimed step (one attempt), from its claim row to its hand-back. Owned by
 * worker.c (a list of running jobs); the handler borrows it while it runs and keeps its own state
 * in the handler fields. The json fields are owned references (never NULL: json null instead). */
struct worker_job {
    struct worker *w;                  /* back pointer, for the handler's completion call */
    char task_uuid[WORKER_UUID_LEN + 1];
    char step_uuid[WORKER_UUID_LEN + 1];
    int attempt;                       /* the attempt this claim started (1 = first) */
    long long msg_id;                  /* its dispatch message */
    char *step_name;                   /* owned strings */
    char *callable;
    char *namespace_name;
    char *task_name;
    char *correlation_id;              /* "" when NULL */
    json_t *initialization;            /* handler_initialization ({} when absent) */
    json_t *inputs;
    json_t *context;                   /* the task's context */
    json_t *dependencies;              /* {step name: results} of every ancestor */
    int timeout_seconds;               /* the step's timeout_seconds, 0 = none */
    int64_t started_ms;                /* monotonic: handler start (execution_ms counts from here) */
    int64_t lease_renewed_ms;          /* monotonic: when the current lease was asked for */
    int64_t hb_sent_ms;                /* monotonic: the heartbeat in flight was sent then */
    bool hb_inflight;                  /* a heartbeat for it is in flight */
    /* From the template, NULL when absent: handler.method, handler.resolver, the step's type. */
    char *handler_method;
    char *handler_resolver;
    char *step_type;
    json_t *checkpoint;                /* the step's last checkpoint (json null when none) */
    enum worker_builtin handler;       /* worker_handler_resolve(callable, method) */
    /* Handler state (worker_handlers.c). */
    struct event *timer;               /* sleep, batch_work: the wake-up */
    struct worker_exec *exec;          /* exec: the child, NULL when none */
    struct worker_batch_run batch;     /* batch_work: its progress */
    /* A checkpoint (worker.c, worker_job_checkpoint): waiting to be sent, or in flight. */
    json_t *cp_pending;
    bool cp_inflight;
    void (*cp_done)(struct worker_job *job, bool saved);
    /* The running list (worker.c). */
    struct worker_job *prev, *next;
};

/* worker_outcome: what a handler decided. result/error are owned references (NULL = absent);
 * retry_after_secs < 0 = none. */
struct worker_outcome {
    bool success;
    json_t *result;
    json_t *error;
    int retry_after_secs;
};

/* ---- worker.c ------------------------------------------------------------------------------- */

/* Lifecycle (called by worker_main.c in this order):
 *   worker_init   copy the options, create the timers (no I/O); NULL on allocation failure (logged)
 *   worker_start  connect (main + LISTEN), arm the poll and heartbeat timers and the signals
 *   ... event_base_dispatch ... (returns once drained, or at once on a second signal)
 *   worker_exit_code  0 after a clean drain, 1 otherwise
 *   worker_free   kill what still runs, close, release everything */
struct worker *worker_init(struct event_base *base, const struct worker_opts *o) __attribute__((warn_unused_result));
bool worker_start(struct worker *w) __attribute__((warn_unused_result));
int worker_exit_code(const struct worker *w);
void worker_free(struct worker *w);

/* worker_job_finish: a handler is done with job; takes over the outcome's references. Queues the
 * result for the next hand-back and frees the job. The caller must not touch job afterwards. Safe
 * to call from inside worker_handler_start (a synchronous handler). */
void worker_job_finish(struct worker_job *job, struct worker_outcome *out);

/* worker_job_checkpoint: save checkpoint ({"cursor", "items_processed", "accumulated_results"};
 * the reference is taken) with tasker.checkpoint_step, which also extends the lease. done(job,
 * saved) is called later, from the loop: saved false means it could not be stored (a database
 * error; logged) and the handler may carry on. When the lease turns out to be lost, the job is
 * dropped instead (worker_handler_abort, no hand-back) and done is not called. One at a time. */
void worker_job_checkpoint(struct worker_job *job, json_t *checkpoint, void (*done)(struct worker_job *job, bool saved));

/* worker_handler_timeout_secs / worker_base / worker_id: what handlers need from the worker. */
int worker_handler_timeout_secs(const struct worker *w);
struct event_base *worker_base(const struct worker *w);
const char *worker_id(const struct worker *w);

/* ---- worker_handlers.c ---------------------------------------------------------------------- */

/* worker_handler_start: run job's handler (chosen by job->callable). Calls worker_job_finish
 * exactly once — at once for the synchronous built-ins, later for sleep and exec — unless
 * worker_handler_abort comes first. */
void worker_handler_start(struct worker_job *job);

/* worker_handler_abort: stop job's handler without an outcome (lease lost, shutdown): cancels a
 * sleep, kills an exec child (SIGTERM, SIGKILL after a grace; reaped later). worker_job_finish
 * will not be called for it. */
void worker_handler_abort(struct worker_job *job);

/* ---- worker_util.c (pure) ------------------------------------------------------------------- */

/* worker_outcome_builtin: the outcome of the synchronous handlers (noop, echo, fail, decision,
 * batch_plan, batch_aggregate, and no handler); false if job->handler is not one of them (sleep,
 * exec and batch_work are not). */
bool worker_outcome_builtin(const struct worker_job *job, struct worker_outcome *out);

/* worker_outcome_failure: a failure with {"message": message, "retryable": retryable}. */
void worker_outcome_failure(struct worker_outcome *out, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* worker_outcome_clear: drop the outcome's references. */
void worker_outcome_clear(struct worker_outcome *out);

/* worker_exec_outcome: interpret a finished exec child (see docs/worker.md, "exec"). */
void worker_exec_outcome(const struct worker_exec_result *r, struct worker_outcome *out);

/* worker_exec_argv: initialization "command" as a NULL-terminated argv of borrowed strings
 * (free the array only). NULL and err filled when absent or not an array of strings. */
char **worker_exec_argv(const json_t *initialization, char *err, size_t errlen);

/* worker_exec_timeout_secs: initialization timeout_secs, else the step's timeout_seconds, else
 * the fallback. -1 when timeout_secs is present but not a positive integer. */
int worker_exec_timeout_secs(const json_t *initialization, int step_timeout_secs, int fallback_secs);

/* worker_exec_input: the JSON document written to an exec child's stdin (malloc'd, ends with
 * "\n"; NULL on allocation failure). */
char *worker_exec_input(const struct worker_job *job);

/* worker_sleep_ms: initialization "ms" (default WORKER_DEFAULT_SLEEP_MS); -1 if invalid. */
long long worker_sleep_ms(const json_t *initialization);

/* worker_text_tail: the last max_lines non-empty lines of buf (at most max_chars bytes), as valid
 * UTF-8, into out (always NUL-terminated). */
void worker_text_tail(const char *buf, size_t len, int max_lines, size_t max_chars, char *out, size_t outlen);

/* worker_utf8_fix: replace every byte of s[0..len) that is not part of valid UTF-8 (and NUL) with
 * '?', in place, so jansson accepts the text. */
void worker_utf8_fix(char *s, size_t len);

/* worker_notify_wakes: does a pgmq_message_ready payload concern queue (the dispatch queue)? */
bool worker_notify_wakes(const char *payload, const char *queue);

/* ---- worker_dynamic.c (pure) ---------------------------------------------------------------- */

/* worker_json_path: the value at a dotted path ("order.amount", "items.0.sku": a number indexes
 * an array) under root; NULL when absent or the path is malformed (empty segment). Borrowed. */
const json_t *worker_json_path(const json_t *root, const char *path);

/* The synchronous dynamic handlers (docs/worker.md): each returns true with *result (a new
 * reference) or false with err filled (the configuration is wrong: a permanent failure). */
bool worker_decision(const json_t *init, const json_t *context, json_t **result, char *err, size_t errlen);
bool worker_batch_plan(const json_t *init, const json_t *context, json_t **result, char *err, size_t errlen);
bool worker_batch_aggregate(const json_t *init, const json_t *dependencies, json_t **result, char *err,
                            size_t errlen);

/* batch_work, as a state machine the handler drives (worker_handlers.c):
 *   worker_batch_setup          from initialization, inputs (cursor, batch_metadata, is_no_op), the
 *                               claim's checkpoint and the attempt; false + err: misconfigured
 *   worker_batch_next           what to do now (count: items for WORK)
 *   worker_batch_advance        count items processed; false if the sum overflowed
 *   worker_batch_checkpoint_doc the checkpoint to save (new reference)
 *   worker_batch_checkpointed   after the checkpoint (saved or not)
 *   worker_batch_result / worker_batch_fail  the outcome */
bool worker_batch_setup(struct worker_batch_run *r, const json_t *init, const json_t *inputs, const json_t *checkpoint,
                        int attempt, char *err, size_t errlen);
enum worker_batch_action worker_batch_next(const struct worker_batch_run *r, long long *count);
bool worker_batch_advance(struct worker_batch_run *r, long long count);
json_t *worker_batch_checkpoint_doc(const struct worker_batch_run *r);
void worker_batch_checkpointed(struct worker_batch_run *r, bool saved);
json_t *worker_batch_result(const struct worker_batch_run *r);
void worker_batch_fail(const struct worker_batch_run *r, struct worker_outcome *out);


#endif
