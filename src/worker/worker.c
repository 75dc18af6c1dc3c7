/* worker.c — the worker's loop state: two connections, claims, heartbeats, hand-backs and drain.
 *
 * One main connection carries every statement, one at a time, chosen by worker_pump in this order:
 * heartbeats that are due (leases must not lapse), then the checkpoints handlers asked for (all of
 * them in one statement; handlers wait for them), then the results waiting for a hand-back (all
 * of them in one submit_step_results call), then a claim — except that a claim goes first right
 * after a hand-back, so a steady stream of results cannot starve intake. A second connection only
 * LISTENs on pgmq_message_ready; a notification for our dispatch queue, the poll timer, or a claim
 * that came back full asks for the next claim. Both connections reconnect with capped, jittered
 * backoff. Nothing blocks: libpq through db_conn, children through worker_exec.
 * With --backend rabbitmq dispatch messages come from RabbitMQ instead of the claim's PGMQ read, the
 * hand-back writes no PGMQ completion message, and once it committed the step's completion pointer
 * goes to RabbitMQ (worker_pointers.c) on the same link, in confirm mode.
 *
 * Ownership: struct worker owns the jobs (running handlers), the results (waiting or in flight) and
 * the connections. A connection that breaks is freed from its reconnect timer, never inside its
 * own callback. The pump runs from its own event, never from inside a database callback.
 */
#include "worker.h"

#include "amqp_link.h"
#include "backoff.h"
#include "db_conn.h"
#include "log.h"
#include "worker_exec.h"
#include "worker_pointers.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define WORKER_CHANNEL "pgmq_message_ready"

enum worker_op {
    WOP_NONE,      /* the main connection is idle (or down) */
    WOP_CLAIM,     /* tasker_claim_and_execute_step in flight */
    WOP_SUBMIT,    /* submit_step_results in flight */
    WOP_HEARTBEAT, /* a batch of heartbeat_step in flight */
    WOP_CHECKPOINT /* a batch of checkpoint_step in flight */
};

/* worker_result: one hand-back entry, from its handler's end until the server answered for it. */
struct worker_result {
    json_t *entry;                       /* owned: the submit_step_results array element */
    char task_uuid[WORKER_UUID_LEN + 1];
    char step_uuid[WORKER_UUID_LEN + 1];
    int attempt;
    int tries;                           /* server-side rejections of its batch so far */
    struct worker_result *next;
};

/* A list of results, in order. */
struct worker_rlist {
    struct worker_result *head, **tail;
    int n;
};

/* worker: everything the process has. Owned by worker_main.c (worker_init … worker_free). */
struct worker {
    struct event_base *base;
    struct worker_opts o;
    char queue[64];                      /* tasker_dispatch_<namespace> */
    char lease_arg[16];                  /* lease_secs as text, for the statements */
    struct db_statement stmts[5];

    /* --backend rabbitmq: deliveries waiting for a claim, and those of the claim in flight. A
     * delivery is acked only after the claim that took it committed (claimed, or fenced as a
     * duplicate); tags of an older AMQP connection (amqp_gen) are void and never acked. */
    struct amqp_link *amqp;
    json_t *deliveries;                  /* [{msg_id, message}] in arrival order */
    uint64_t *tags;                      /* their delivery tags */
    size_t ntags, captags;
    size_t claim_n;                      /* deliveries[0..claim_n) are in the claim in flight */
    unsigned amqp_gen, claim_gen;
    struct worker_pointers *wp;          /* completion pointers of committed hand-backs */

    struct db_conn *main;                /* NULL while down */
    bool main_ready;
    bool main_was_up;                    /* for the "reconnected" log line */
    struct db_conn *main_dead;           /* broken, freed from the reconnect timer */
    int main_failures;      /* consecutive failed connects of the main connection */
    struct event *main_retry_ev;

    struct db_conn *listen;
    bool listen_ready;
    bool listen_querying;                /* LISTEN in flight */
    struct db_conn *listen_dead;
    int listen_failures;    /* same, LISTEN connection */
    struct event *listen_retry_ev;

    enum worker_op op;                   /* what the main connection is doing */
    enum worker_op last_op;
    int64_t op_sent_ms;
    int claim_qty;

    struct event *pump_ev;               /* activated to run worker_pump from the loop */
    struct event *poll_ev;               /* EV_PERSIST, --poll-ms */
    struct event *hb_ev;                 /* EV_PERSIST, a sixth of the lease (50 ms .. 1 s) */
    struct event *drain_ev;              /* drain deadlines */
    struct event *sigterm_ev, *sigint_ev;
    bool want_claim;                     /* steps may be waiting */

    struct worker_job *jobs;             /* running handlers */
    int running;
    struct worker_rlist pending;         /* results waiting for a hand-back */
    struct worker_rlist submitting;      /* results of the hand-back in flight */

    int signals;                         /* SIGTERM/SIGINT received */
    int drain_stage;                     /* 0 running, 1 draining, 2 handlers given up, 3 exiting */
    bool stopped;                        /* the loop is exiting; no new work */
    int exit_code;
    uint32_t rng;
    char claim_error[600];               /* the last claim error logged (repeats go to debug) */

    /* Counters for the exit summary. */
    long long n_claimed, n_succeeded, n_failed, n_accepted, n_not_accepted, n_lost, n_dropped;
};

static void w_pump_soon(struct worker *w);
static void w_main_connect(struct worker *w);
static void w_listen_connect(struct worker *w);
static void w_check_drained(struct worker *w);

/* ---- small helpers -------------------------------------------------------------------------- */

static int64_t w_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t w_rand(struct worker *w)
{
    /* xorshift32: jitter only. */
    uint32_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rng = x;
}

static void w_timer_ms(struct event *ev, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    event_add(ev, &tv);
}

static void w_rlist_init(struct worker_rlist *l)
{
    l->head = NULL;
    l->tail = &l->head;
    l->n = 0;
}

static void w_rlist_push(struct worker_rlist *l, struct worker_result *r)
{
    r->next = NULL;
    *l->tail = r;
    l->tail = &r->next;
    l->n++;
}

/* w_rlist_prepend: put all of src (in order) in front of dst; src becomes empty. */
static void w_rlist_prepend(struct worker_rlist *dst, struct worker_rlist *src)
{
    if (!src->head)
        return;
    *src->tail = dst->head;
    if (!dst->head)
        dst->tail = src->tail;
    dst->head = src->head;
    dst->n += src->n;
    w_rlist_init(src);
}

static void w_result_free(struct worker_result *r)
{
    json_decref(r->entry);
    free(r);
}

static void w_rlist_free(struct worker_rlist *l)
{
    struct worker_result *r = l->head;
    while (r) {
        struct worker_result *next = r->next;
        w_result_free(r);
        r = next;
    }
    w_rlist_init(l);
}

/* w_transient: a failure worth retrying as is (connection, serialization, resources, shutdown). */
static bool w_transient(const struct db_error *err)
{
    const char *s = err->sqlstate;
    return err->connection_lost || !s[0] || strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 ||
           strncmp(s, "53", 2) == 0 || strncmp(s, "57", 2) == 0;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static void w_job_free(struct worker_job *job)
{
    if (job->timer)
        event_free(job->timer);
    free(job->step_name);
    free(job->callable);
    free(job->namespace_name);
    free(job->task_name);
    free(job->correlation_id);
    free(job->handler_method);
    free(job->handler_resolver);
    free(job->step_type);
    json_decref(job->checkpoint);
    json_decref(job->cp_pending);
    json_decref(job->initialization);
    json_decref(job->inputs);
    json_decref(job->context);
    json_decref(job->dependencies);
    free(job);
}

static void w_job_unlink(struct worker *w, struct worker_job *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        w->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->prev = job->next = NULL;
    w->running--;
}

static struct worker_job *w_job_find(struct worker *w, const char *step_uuid, int attempt)
{
    for (struct worker_job *j = w->jobs; j; j = j->next)
        if (j->attempt == attempt && strcmp(j->step_uuid, step_uuid) == 0)
            return j;
    return NULL;
}

/* w_job_drop: stop a job's handler and forget it, without a hand-back (its lease is gone). */
static void w_job_drop(struct worker *w, struct worker_job *job)
{
    worker_handler_abort(job);
    w_job_unlink(w, job);
    w_job_free(job);
    w_pump_soon(w);
}

void worker_job_finish(struct worker_job *job, struct worker_outcome *out)
{
    struct worker *w = job->w;
    int64_t ms = w_now_ms() - job->started_ms;
    struct worker_result *r = calloc(1, sizeof *r);
    json_t *entry = json_pack("{s:s, s:i, s:b, s:o*, s:o*, s:s, s:I}", "step_uuid", job->step_uuid, "attempt",
                              job->attempt, "success", out->success, "result", out->result, "error", out->error,
                              "worker_id", w->o.worker_id, "execution_ms", (json_int_t)ms);
    out->result = out->error = NULL; /* json_pack took them (or freed them on failure) */
    if (entry && out->retry_after_secs >= 0)
        json_object_set_new(entry, "retry_after_secs", json_integer(out->retry_after_secs));
    if (!r || !entry) {
        log_error("worker", "task %s step %s (%s) attempt %d: out of memory building the hand-back; the lease will "
                  "expire and the step be retried", job->task_uuid, job->step_uuid, job->step_name, job->attempt);
        free(r);
        json_decref(entry);
    } else {
        if (out->success) {
            w->n_succeeded++;
            log_debug("worker", "task %s step %s (%s) attempt %d: %s succeeded in %lld ms", job->task_uuid,
                      job->step_uuid, job->step_name, job->attempt, job->callable, (long long)ms);
        } else {
            w->n_failed++;
            const json_t *error = json_object_get(entry, "error");
            const char *message = json_string_value(json_object_get(error, "message"));
            char line[1024];
            snprintf(line, sizeof line, "%s", message ? message : "?");
            for (char *p = line; *p; p++) /* one log line per event */
                if (*p == '\n' || *p == '\r')
                    *p = '|';
            log_info("worker", "task %s step %s (%s) attempt %d: %s failed in %lld ms%s: %s", job->task_uuid,
                     job->step_uuid, job->step_name, job->attempt, job->callable, (long long)ms,
                     json_is_false(json_object_get(error, "retryable")) ? " (permanent)" : "", line);
        }
        r->entry = entry;
        memcpy(r->task_uuid, job->task_uuid, sizeof r->task_uuid);
        memcpy(r->step_uuid, job->step_uuid, sizeof r->step_uuid);
        r->attempt = job->attempt;
        w_rlist_push(&w->pending, r);
    }
    w_job_unlink(w, job);
    w_job_free(job);
    w_pump_soon(w); /* a slot is free, a result waits */
}

/* ---- claim ---------------------------------------------------------------------------------- */

static json_t *w_json_col(const struct db_rows *rows, int row, int col, const char *what, const char *step)
{
    if (db_rows_isnull(rows, row, col))
        return json_null();
    json_error_t jerr;
    json_t *j = json_loads(db_rows_text(rows, row, col), JSON_DECODE_ANY, &jerr);
    if (!j) {
        log_warn("worker", "step %s: cannot parse %s (%s); using null", step, what, jerr.text);
        return json_null();
    }
    return j;
}

static char *w_strdup_col(const struct db_rows *rows, int row, int col)
{
    return strdup(db_rows_text(rows, row, col));
}

/* w_opt_col: an optional text column: NULL when NULL or absent (an older schema); *oom on failure. */
static char *w_opt_col(const struct db_rows *rows, int row, int col, bool *oom)
{
    if (db_rows_isnull(rows, row, col))
        return NULL;
    char *s = strdup(db_rows_text(rows, row, col));
    if (!s)
        *oom = true;
    return s;
}

/* w_job_from_row: a job from one claim row; NULL on allocation failure (logged). */
static struct worker_job *w_job_from_row(struct worker *w, const struct db_rows *rows, int i, const int *col)
{
    struct worker_job *job = calloc(1, sizeof *job);
    if (!job)
        goto oom;
    job->w = w;
    snprintf(job->task_uuid, sizeof job->task_uuid, "%s", db_rows_text(rows, i, col[1]));
    snprintf(job->step_uuid, sizeof job->step_uuid, "%s", db_rows_text(rows, i, col[2]));
    job->msg_id = db_rows_int(rows, i, col[0]);
    job->attempt = (int)db_rows_int(rows, i, col[3]);
    job->step_name = w_strdup_col(rows, i, col[4]);
    job->callable = w_strdup_col(rows, i, col[5]);
    job->initialization = w_json_col(rows, i, col[6], "handler_initialization", job->step_uuid);
    if (json_is_null(job->initialization)) {
        json_decref(job->initialization);
        job->initialization = json_object();
    }
    job->inputs = w_json_col(rows, i, col[7], "inputs", job->step_uuid);
    job->context = w_json_col(rows, i, col[8], "task_context", job->step_uuid);
    job->dependencies = w_json_col(rows, i, col[9], "dependency_results", job->step_uuid);
    job->timeout_seconds = (int)db_rows_int(rows, i, col[10]);
    job->correlation_id = w_strdup_col(rows, i, col[11]);
    job->namespace_name = w_strdup_col(rows, i, col[12]);
    job->task_name = w_strdup_col(rows, i, col[13]);
    /* Columns of dynamic workflows (issue 10), read by name: absent from an older schema. */
    bool oom = false;
    job->handler_method = w_opt_col(rows, i, col[14], &oom);
    job->handler_resolver = w_opt_col(rows, i, col[15], &oom);
    job->step_type = w_opt_col(rows, i, col[16], &oom);
    job->checkpoint = w_json_col(rows, i, col[17], "checkpoint", job->step_uuid);
    if (oom || !job->step_name || !job->callable || !job->initialization || !job->inputs || !job->context ||
        !job->dependencies || !job->correlation_id || !job->namespace_name || !job->task_name || !job->checkpoint)
        goto oom;
    job->handler = worker_handler_resolve(&w->o, job->callable, job->handler_method);
    return job;
oom:
    log_error("worker", "out of memory taking claimed step %s; its lease will expire and it will be retried",
              db_rows_text(rows, i, col[2]));
    if (job)
        w_job_free(job);
    return NULL;
}

/* w_amqp_settle: the claim of deliveries[0..claim_n) is over. Committed: ack them all (claimed
 * or fenced duplicates alike) and drop them. Failed: keep them for the next claim. */
static void w_amqp_settle(struct worker *w, bool committed)
{
    size_t n = w->claim_n;
    w->claim_n = 0;
    if (!w->amqp || !committed || n == 0)
        return;
    if (w->claim_gen == w->amqp_gen)
        for (size_t i = 0; i < n; i++)
            if (!amqp_link_ack(w->amqp, w->tags[i]))
                break; /* the link broke: the broker redelivers; the claim fences */
    if (n > w->ntags)
        n = w->ntags;
    memmove(w->tags, w->tags + n, (w->ntags - n) * sizeof *w->tags);
    w->ntags -= n;
    for (size_t i = 0; i < n; i++)
        json_array_remove(w->deliveries, 0);
}

static void w_on_claim(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct worker *w = arg;
    w->op = WOP_NONE;
    w->last_op = WOP_CLAIM;
    w_amqp_settle(w, !err);
    if (w->stopped)
        return;
    if (err) {
        if (!err->connection_lost) {
            char msg[sizeof w->claim_error];
            snprintf(msg, sizeof msg, "[%s] %s", err->sqlstate, err->message);
            if (strcmp(msg, w->claim_error) != 0) {
                log_warn("worker", "claim from %s failed: %s%s", w->queue, msg,
                         strcmp(err->sqlstate, "TK404") == 0 ? " (no template registered in this namespace yet?)" : "");
                snprintf(w->claim_error, sizeof w->claim_error, "%s", msg);
            } else {
                log_debug("worker", "claim from %s failed again: %s", w->queue, msg);
            }
        }
        /* The poll timer asks again. */
        w_pump_soon(w);
        w_check_drained(w);
        return;
    }
    if (w->claim_error[0]) {
        log_info("worker", "claims from %s work again", w->queue);
        w->claim_error[0] = '\0';
    }
    static const char *const names[] = { "msg_id", "task_uuid", "workflow_step_uuid", "attempt", "step_name",
                                         "handler_callable", "handler_initialization", "inputs", "task_context",
                                         "dependency_results", "timeout_seconds", "correlation_id", "namespace",
                                         "task_name", "handler_method", "handler_resolver", "step_type",
                                         "checkpoint" };
    int col[sizeof names / sizeof names[0]];
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        col[k] = db_rows_col(rows, names[k]);
    int n = db_rows_count(rows);
    if (n > 0)
        log_debug("worker", "claimed %d of %d step(s) from %s", n, w->claim_qty, w->queue);
    int64_t now = w_now_ms();
    for (int i = 0; i < n; i++) {
        struct worker_job *job = w_job_from_row(w, rows, i, col);
        if (!job)
            continue;
        job->started_ms = now;
        job->lease_renewed_ms = w->op_sent_ms; /* the lease was granted after we asked */
        job->next = w->jobs;
        if (w->jobs)
            w->jobs->prev = job;
        w->jobs = job;
        w->running++;
        w->n_claimed++;
        log_debug("worker", "task %s step %s (%s) attempt %d: claimed (msg %lld), handler %s%s%s -> %s",
                  job->task_uuid, job->step_uuid, job->step_name, job->attempt, job->msg_id, job->callable,
                  job->handler_method ? "#" : "", job->handler_method ? job->handler_method : "",
                  worker_builtin_name(job->handler));
        worker_handler_start(job); /* may finish (and free) the job at once */
    }
    /* A full batch: more may be waiting; ask again as soon as a slot allows. */
    if (n >= w->claim_qty)
        w->want_claim = true;
    w_pump_soon(w);
    w_check_drained(w);
}

static void w_send_claim_amqp(struct worker *w, int qty)
{
    size_t n = json_array_size(w->deliveries);
    if ((size_t)qty < n)
        n = (size_t)qty;
    json_t *batch = json_array();
    for (size_t i = 0; batch && i < n; i++)
        json_array_append(batch, json_array_get(w->deliveries, i));
    char *text = batch ? json_dumps(batch, JSON_COMPACT) : NULL;
    json_decref(batch);
    if (!text) {
        log_error("worker", "out of memory");
        return;
    }
    const char *params[4] = { w->o.namespace_name, text, w->lease_arg, w->o.worker_id };
    w->want_claim = false;
    w->claim_qty = (int)n;
    w->claim_n = n;
    w->claim_gen = w->amqp_gen;
    w->op_sent_ms = w_now_ms();
    w->op = WOP_CLAIM;
    if (!db_conn_query(w->main, true, "worker_claim_amqp", 4, params, w_on_claim, w)) {
        w->op = WOP_NONE;
        w->claim_n = 0;
        w->want_claim = true;
    }
    free(text);
}

static void w_send_claim(struct worker *w)
{
    int free_slots = w->o.concurrency - w->running;
    int qty = w->o.batch < free_slots ? w->o.batch : free_slots;
    if (w->amqp) {
        w_send_claim_amqp(w, qty);
        return;
    }
    char qty_s[16];
    snprintf(qty_s, sizeof qty_s, "%d", qty);
    const char *params[4] = { w->o.namespace_name, qty_s, w->lease_arg, w->o.worker_id };
    w->want_claim = false;
    w->claim_qty = qty;
    w->op_sent_ms = w_now_ms();
    w->op = WOP_CLAIM; /* before the call: a failure may call back from inside it */
    if (!db_conn_query(w->main, true, "worker_claim", 4, params, w_on_claim, w)) {
        w->op = WOP_NONE;
        w->want_claim = true;
        log_debug("worker", "claim not sent: connection not idle");
    }
}

/* ---- hand-back ------------------------------------------------------------------------------ */

static void w_on_submit(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct worker *w = arg;
    w->op = WOP_NONE;
    w->last_op = WOP_SUBMIT;
    if (w->stopped)
        return;
    if (err) {
        bool transient = w_transient(err);
        if (transient) {
            log_warn("worker", "hand-back of %d result(s) failed (%s%s%s); will retry", w->submitting.n,
                     err->sqlstate[0] ? err->sqlstate : "", err->sqlstate[0] ? ": " : "", err->message);
        } else {
            log_error("worker", "hand-back of %d result(s) rejected: [%s] %s", w->submitting.n, err->sqlstate,
                      err->message);
            /* Count the rejection; give up on results rejected too often (their leases expire). */
            struct worker_rlist keep;
            w_rlist_init(&keep);
            struct worker_result *r = w->submitting.head;
            w_rlist_init(&w->submitting);
            while (r) {
                struct worker_result *next = r->next;
                if (++r->tries >= WORKER_SUBMIT_MAX_TRIES) {
                    log_error("worker", "task %s step %s attempt %d: dropping its result after %d rejected "
                              "hand-backs", r->task_uuid, r->step_uuid, r->attempt, r->tries);
                    w->n_dropped++;
                    w_result_free(r);
                } else {
                    w_rlist_push(&keep, r);
                }
                r = next;
            }
            w_rlist_prepend(&w->pending, &keep);
        }
        w_rlist_prepend(&w->pending, &w->submitting);
        w_rlist_init(&w->submitting);
        w_pump_soon(w);
        w_check_drained(w);
        return;
    }
    int c_step = db_rows_col(rows, "workflow_step_uuid");
    int c_status = db_rows_col(rows, "status");
    int c_state = db_rows_col(rows, "state");
    int n = db_rows_count(rows);
    if (n != w->submitting.n)
        log_warn("worker", "hand-back of %d result(s) answered %d row(s)", w->submitting.n, n);
    int i = 0, accepted = 0;
    for (struct worker_result *r = w->submitting.head; r; r = r->next, i++) {
        const char *status = i < n ? db_rows_text(rows, i, c_status) : "(no answer)";
        if (strcmp(status, "accepted") == 0) {
            accepted++;
            continue;
        }
        w->n_not_accepted++;
        log_warn("worker", "task %s step %s attempt %d: hand-back %s (step %s is now %s)", r->task_uuid,
                 r->step_uuid, r->attempt, status, i < n ? db_rows_text(rows, i, c_step) : r->step_uuid,
                 i < n && !db_rows_isnull(rows, i, c_state) ? db_rows_text(rows, i, c_state) : "unknown");
    }
    /* Committed: now the completion pointers (RabbitMQ). A duplicate may be the retry of a
     * hand-back whose answer was lost before its pointer went out; a second pointer is harmless. */
    i = 0;
    for (struct worker_result *r = w->submitting.head; w->wp && r; r = r->next, i++) {
        const char *status = i < n ? db_rows_text(rows, i, c_status) : "";
        if (strcmp(status, "accepted") == 0 || strcmp(status, "duplicate") == 0)
            wp_add(w->wp, r->task_uuid, r->step_uuid, r->attempt);
    }
    w->n_accepted += accepted;
    log_debug("worker", "handed back %d result(s), %d accepted", w->submitting.n, accepted);
    w_rlist_free(&w->submitting);
    w_pump_soon(w);
    w_check_drained(w);
}

static void w_send_submit(struct worker *w)
{
    json_t *arr = json_array();
    for (struct worker_result *r = w->pending.head; arr && r; r = r->next)
        if (json_array_append(arr, r->entry) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text) {
        log_error("worker", "out of memory encoding %d result(s); retrying", w->pending.n);
        return;
    }
    w_rlist_prepend(&w->submitting, &w->pending); /* submitting is empty: this moves them */
    const char *params[1] = { text };
    w->op_sent_ms = w_now_ms();
    w->op = WOP_SUBMIT;
    if (!db_conn_query(w->main, true, w->amqp ? "worker_submit_amqp" : "worker_submit", 1, params, w_on_submit, w)) {
        w->op = WOP_NONE;
        w_rlist_prepend(&w->pending, &w->submitting);
        log_debug("worker", "hand-back not sent: connection not idle");
    }
    free(text);
}

/* ---- heartbeats ----------------------------------------------------------------------------- */

static int64_t w_hb_interval_ms(const struct worker *w)
{
    return (int64_t)w->o.lease_secs * 1000 / 3;
}

static bool w_hb_due(const struct worker *w, int64_t now)
{
    for (const struct worker_job *j = w->jobs; j; j = j->next)
        if (!j->hb_inflight && now - j->lease_renewed_ms >= w_hb_interval_ms(w))
            return true;
    return false;
}

/* w_lease_rows: the answer of a heartbeat or checkpoint statement, one (step, attempt, alive) row
 * per job it named. A job that is still there and was part of the statement (asked) goes to alive
 * while its lease holds; one whose lease is lost (cancelled, resolved or expired) is dropped: its
 * handler stops and nothing is handed back. WHERE says when, for the log ("" or " at a checkpoint"). */
static void w_lease_rows(struct worker *w, const struct db_rows *rows, const char *where,
                         bool (*asked)(struct worker_job *), void (*alive)(struct worker *, struct worker_job *))
{
    int c_step = db_rows_col(rows, "step");
    int c_attempt = db_rows_col(rows, "attempt");
    int c_alive = db_rows_col(rows, "alive");
    int n = db_rows_count(rows);
    for (int i = 0; i < n; i++) {
        struct worker_job *job = w_job_find(w, db_rows_text(rows, i, c_step), (int)db_rows_int(rows, i, c_attempt));
        if (!job || !asked(job))
            continue; /* finished or dropped meanwhile */
        if (strcmp(db_rows_text(rows, i, c_alive), "t") == 0) {
            alive(w, job);
        } else {
            w->n_lost++;
            log_warn("worker", "task %s step %s (%s) attempt %d: lease lost%s (cancelled, resolved or expired); "
                     "stopping the handler, no hand-back", job->task_uuid, job->step_uuid, job->step_name,
                     job->attempt, where);
            w_job_drop(w, job);
        }
    }
}

/* Heartbeat answers: every job named was asked; a held lease counts from the send time. */
static bool w_hb_was_sent(struct worker_job *job)
{
    job->hb_inflight = false;
    return true;
}

static void w_hb_alive(struct worker *w, struct worker_job *job)
{
    job->lease_renewed_ms = job->hb_sent_ms;
    log_debug("worker", "task %s step %s (%s) attempt %d: lease extended by %d s", job->task_uuid, job->step_uuid,
              job->step_name, job->attempt, w->o.lease_secs);
}

static void w_on_heartbeat(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct worker *w = arg;
    w->op = WOP_NONE;
    w->last_op = WOP_HEARTBEAT;
    if (w->stopped)
        return;
    if (err) {
        if (!err->connection_lost)
            log_warn("worker", "heartbeat failed: [%s] %s; retrying", err->sqlstate, err->message);
        for (struct worker_job *j = w->jobs; j; j = j->next)
            j->hb_inflight = false;
        w_pump_soon(w);
        return;
    }
    w_lease_rows(w, rows, "", w_hb_was_sent, w_hb_alive);
    for (struct worker_job *j = w->jobs; j; j = j->next)
        j->hb_inflight = false;
    w_pump_soon(w);
    w_check_drained(w);
}

/* w_append: append text to a growing buffer; false on allocation failure. */
static bool w_append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t want = (*cap ? *cap * 2 : 256) + n;
        char *p = realloc(*buf, want);
        if (!p)
            return false;
        *buf = p;
        *cap = want;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return true;
}

static void w_send_heartbeats(struct worker *w, int64_t now)
{
    char *steps = NULL, *attempts = NULL;
    size_t sl = 0, sc = 0, al = 0, ac = 0;
    bool ok = w_append(&steps, &sl, &sc, "{") && w_append(&attempts, &al, &ac, "{");
    int n = 0;
    for (struct worker_job *j = w->jobs; ok && j; j = j->next) {
        if (j->hb_inflight || now - j->lease_renewed_ms < w_hb_interval_ms(w))
            continue;
        char a[16];
        snprintf(a, sizeof a, "%s%d", n ? "," : "", j->attempt);
        ok = (!n || w_append(&steps, &sl, &sc, ",")) && w_append(&steps, &sl, &sc, j->step_uuid) &&
             w_append(&attempts, &al, &ac, a);
        j->hb_inflight = true;
        j->hb_sent_ms = now;
        n++;
    }
    ok = ok && w_append(&steps, &sl, &sc, "}") && w_append(&attempts, &al, &ac, "}");
    if (ok && n > 0) {
        const char *params[3] = { steps, attempts, w->lease_arg };
        w->op_sent_ms = now;
        w->op = WOP_HEARTBEAT;
        if (!db_conn_query(w->main, true, "worker_heartbeat", 3, params, w_on_heartbeat, w)) {
            w->op = WOP_NONE;
            ok = false;
        } else {
            log_debug("worker", "heartbeat for %d step(s)", n);
        }
    }
    if (!ok) {
        for (struct worker_job *j = w->jobs; j; j = j->next)
            j->hb_inflight = false;
    }
    free(steps);
    free(attempts);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Sent as a plain parameterized statement, not prepared at connect: a database without
 * checkpoint_step (an older schema) still serves every other handler. One statement for all the
 * checkpoints waiting; each also extends its step's lease. */
#define W_CHECKPOINT_SQL                                                                                  \
    "SELECT c.step, c.attempt, tasker.checkpoint_step(c.step, c.attempt, c.checkpoint, $2::integer) AS alive " \
    "FROM jsonb_to_recordset($1::jsonb) AS c(step uuid, attempt integer, checkpoint jsonb)"

void worker_job_checkpoint(struct worker_job *job, json_t *checkpoint, void (*done)(struct worker_job *job, bool saved))
{
    json_decref(job->cp_pending);
    job->cp_pending = checkpoint;
    job->cp_done = done;
    w_pump_soon(job->w);
}

static bool w_cp_due(const struct worker *w)
{
    for (const struct worker_job *j = w->jobs; j; j = j->next)
        if (j->cp_pending && !j->cp_inflight)
            return true;
    return false;
}

/* w_cp_answer: tell job's handler how its checkpoint went (the handler may finish the job). */
static void w_cp_answer(struct worker_job *job, bool saved)
{
    void (*done)(struct worker_job *, bool) = job->cp_done;
    job->cp_inflight = false;
    job->cp_done = NULL;
    json_decref(job->cp_pending);
    job->cp_pending = NULL;
    if (done)
        done(job, saved);
}

/* Checkpoint answers: only jobs waiting for one were asked; a saved one extends the lease from the
 * statement's send time. */
static bool w_cp_was_sent(struct worker_job *job)
{
    return job->cp_inflight;
}

static void w_cp_alive(struct worker *w, struct worker_job *job)
{
    job->lease_renewed_ms = w->op_sent_ms;
    w_cp_answer(job, true);
}

/* w_cp_unsaved: every job still waiting for its checkpoint hears that it was not saved. */
static void w_cp_unsaved(struct worker *w)
{
    struct worker_job *j = w->jobs;
    while (j) {
        struct worker_job *next = j->next; /* the callback may finish (free) j */
        if (j->cp_inflight)
            w_cp_answer(j, false);
        j = next;
    }
}

static void w_on_checkpoint(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct worker *w = arg;
    w->op = WOP_NONE;
    w->last_op = WOP_CHECKPOINT;
    if (w->stopped)
        return;
    if (err) {
        /* A checkpoint is progress insurance, not a condition: the handlers carry on without it. */
        log_warn("worker", "checkpoint failed: %s%s%s; carrying on without it%s", err->sqlstate[0] ? err->sqlstate : "",
                 err->sqlstate[0] ? ": " : "", err->message,
                 strcmp(err->sqlstate, "42883") == 0 ? " (no tasker.checkpoint_step: run `tasker-orchestratord migrate`)"
                                                     : "");
        w_cp_unsaved(w);
        w_pump_soon(w);
        w_check_drained(w);
        return;
    }
    w_lease_rows(w, rows, " at a checkpoint", w_cp_was_sent, w_cp_alive);
    /* A row missing from the answer cannot happen; should it, do not leave a handler waiting. */
    w_cp_unsaved(w);
    w_pump_soon(w);
    w_check_drained(w);
}

static void w_send_checkpoints(struct worker *w, int64_t now)
{
    json_t *arr = json_array();
    for (struct worker_job *j = w->jobs; arr && j; j = j->next) {
        if (!j->cp_pending || j->cp_inflight)
            continue;
        if (json_array_append_new(arr, json_pack("{s:s, s:i, s:O}", "step", j->step_uuid, "attempt", j->attempt,
                                                 "checkpoint", j->cp_pending)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text) {
        log_error("worker", "out of memory encoding checkpoints; retrying");
        return;
    }
    const char *params[2] = { text, w->lease_arg };
    w->op_sent_ms = now;
    w->op = WOP_CHECKPOINT;
    if (!db_conn_query(w->main, false, W_CHECKPOINT_SQL, 2, params, w_on_checkpoint, w)) {
        w->op = WOP_NONE;
        log_debug("worker", "checkpoints not sent: connection not idle");
    } else {
        int n = 0;
        for (struct worker_job *j = w->jobs; j; j = j->next)
            if (j->cp_pending && !j->cp_inflight) {
                j->cp_inflight = true;
                n++;
            }
        log_debug("worker", "checkpoints for %d step(s)", n);
    }
    free(text);
}

/* ---- the pump ------------------------------------------------------------------------------- */

static bool w_can_claim(const struct worker *w)
{
    if (w->amqp)
        return w->drain_stage == 0 && json_array_size(w->deliveries) > 0 && w->running < w->o.concurrency;
    return w->drain_stage == 0 && w->want_claim && w->running < w->o.concurrency;
}

/* ---- RabbitMQ (--backend rabbitmq) ----------------------------------------------------------- */

static void w_amqp_on_delivery(void *arg, uint64_t tag, bool redelivered, const char *message_id, const char *body,
                               size_t len)
{
    struct worker *w = arg;
    json_error_t jerr;
    /* Not JSON: passed on as a string, so the claim records it as malformed and it is acked. */
    json_t *msg = json_loadb(body, len, 0, &jerr);
    if (!msg)
        msg = json_stringn_nocheck(body, len);
    char *end = NULL;
    long long id = strtoll(message_id, &end, 10);
    if (!*message_id || (end && *end) || id < 0)
        id = 0;
    if (w->ntags == w->captags) {
        size_t cap = w->captags ? w->captags * 2 : 64;
        uint64_t *grown = realloc(w->tags, cap * sizeof *grown);
        if (!grown) {
            json_decref(msg);
            return; /* never acked: the broker redelivers it after we reconnect */
        }
        w->tags = grown;
        w->captags = cap;
    }
    w->tags[w->ntags++] = tag;
    json_array_append_new(w->deliveries, json_pack("{s:I, s:o}", "msg_id", (json_int_t)id, "message", msg));
    log_debug("worker", "delivery %llu (msg %lld)%s", (unsigned long long)tag, id, redelivered ? ", redelivered" : "");
    w_pump_soon(w);
}

static void w_amqp_on_down(void *arg, const char *why)
{
    struct worker *w = arg;
    (void)why;
    /* Unacked deliveries went back to the queue at the broker; their tags are void. The claim in
     * flight (if any) keeps its prefix and drops it, unacked, when it returns. */
    w->amqp_gen++;
    wp_on_down(w->wp);
    size_t keep = w->op == WOP_CLAIM ? w->claim_n : 0;
    while (json_array_size(w->deliveries) > keep)
        json_array_remove(w->deliveries, keep);
    w->ntags = keep;
    w_check_drained(w); /* pointers are not waited for while the broker is away */
}

static void w_amqp_on_up(void *arg)
{
    struct worker *w = arg;
    wp_on_up(w->wp);
}

static void w_amqp_on_confirm(void *arg, uint64_t tag, bool multiple, bool ack)
{
    struct worker *w = arg;
    wp_on_confirm(w->wp, tag, multiple, ack);
    w_check_drained(w);
}

static void w_amqp_on_return(void *arg, const char *routing_key, const char *message_id, int reply_code)
{
    struct worker *w = arg;
    log_warn("worker", "RabbitMQ returned completion pointer %s for %s (%d); publishing it again", message_id,
             routing_key, reply_code);
    wp_on_return(w->wp, message_id);
}

/* w_pump: give the idle main connection its next statement (see the file comment for the order). */
static void w_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (w->stopped || !w->main || !w->main_ready || w->op != WOP_NONE)
        return;
    int64_t now = w_now_ms();
    /* Results go back as soon as the connection is free, with no timer: results that finish while a
     * statement is in flight wait for it and share the next hand-back, so batches grow with load by
     * themselves and light load pays no delay. */
    bool submit = w->pending.n > 0;
    bool claim = w_can_claim(w);
    if (w_hb_due(w, now))
        w_send_heartbeats(w, now);
    if (w->op == WOP_NONE && w_cp_due(w))
        w_send_checkpoints(w, now);
    if (w->op != WOP_NONE)
        return;
    if (submit && !(claim && w->last_op == WOP_SUBMIT))
        w_send_submit(w);
    else if (claim)
        w_send_claim(w);
    else if (submit)
        w_send_submit(w);
}

static void w_pump_soon(struct worker *w)
{
    if (!w->stopped)
        event_active(w->pump_ev, EV_TIMEOUT, 0);
}

static void w_on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    w->want_claim = true;
    w_pump_soon(w);
}

static void w_on_hb_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    w_pump_soon(arg);
}

/* ---- connections ---------------------------------------------------------------------------- */

static void w_schedule_reconnect(struct worker *w, struct event *ev, int *failures, const char *which, const char *why)
{
    (*failures)++;
    int delay = (int)backoff_ms(WORKER_RECONNECT_MIN_MS, WORKER_RECONNECT_MAX_MS, *failures, 25, w_rand(w));
    log_warn("worker", "%s connection: %s; reconnecting in %d ms", which, why, delay);
    w_timer_ms(ev, delay);
}

static void w_on_main_event(void *arg, struct db_conn *c, enum db_conn_event ev, const char *channel,
                            const char *payload)
{
    (void)channel;
    (void)payload;
    struct worker *w = arg;
    switch (ev) {
    case DB_CONN_EV_READY:
        w->main_ready = true;
        w->main_failures = 0;
        log_info("worker", "%s to the database; working for namespace %s as %s", w->main_was_up ? "reconnected" : "connected",
                 w->o.namespace_name, w->o.worker_id);
        w->main_was_up = true;
        w->want_claim = true;
        w_pump_soon(w);
        break;
    case DB_CONN_EV_BROKEN:
        w->main_ready = false;
        w->main = NULL;
        w->main_dead = c;
        if (db_conn_prepare_failed(c))
            log_error("worker", "the database does not have the worker functions this build expects (run "
                      "`tasker-orchestratord migrate`?): %s", db_conn_last_error(c));
        if (!w->stopped)
            w_schedule_reconnect(w, w->main_retry_ev, &w->main_failures, "main", db_conn_last_error(c));
        break;
    case DB_CONN_EV_NOTIFY:
        break;
    }
}

static void w_on_main_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    db_conn_free(w->main_dead);
    w->main_dead = NULL;
    if (!w->stopped)
        w_main_connect(w);
}

static void w_main_connect(struct worker *w)
{
    /* jit=off: short OLTP calls; see src/orchestratord/db_pool.c. */
    const struct db_setting settings[] = { { "tasker.actor", w->o.worker_id }, { "jit", "off" } };
    struct db_conn_params p = {
        .url = w->o.database_url,
        .application_name = "tasker-worker",
        .settings = settings,
        .nsettings = sizeof settings / sizeof settings[0],
        .settings_per_transaction = w->o.transaction_pooling,
        .unnamed_statements = !w->o.prepared_statements,
        .connect_timeout_ms = WORKER_CONNECT_TIMEOUT_MS,
        .prepare = w->stmts,
        .nprepare = sizeof w->stmts / sizeof w->stmts[0],
    };
    w->main = db_conn_start(w->base, &p, w_on_main_event, w);
    if (!w->main)
        w_schedule_reconnect(w, w->main_retry_ev, &w->main_failures, "main", "cannot start");
}

static void w_on_listen_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    (void)rows;
    struct worker *w = arg;
    w->listen_querying = false;
    if (w->stopped)
        return;
    if (err) {
        if (!err->connection_lost)
            log_warn("worker", "LISTEN %s failed: %s; relying on polling", WORKER_CHANNEL, err->message);
        return;
    }
    log_debug("worker", "listening on %s for %s", WORKER_CHANNEL, w->queue);
    /* Anything sent while we were not listening: look now. */
    w->want_claim = true;
    w_pump_soon(w);
}

static void w_on_listen_event(void *arg, struct db_conn *c, enum db_conn_event ev, const char *channel,
                              const char *payload)
{
    struct worker *w = arg;
    switch (ev) {
    case DB_CONN_EV_READY:
        w->listen_ready = true;
        w->listen_failures = 0;
        w->listen_querying = true;
        if (!db_conn_query(c, false, "LISTEN " WORKER_CHANNEL, 0, NULL, w_on_listen_result, w)) {
            w->listen_querying = false;
            log_warn("worker", "cannot send LISTEN; relying on polling");
        }
        break;
    case DB_CONN_EV_BROKEN:
        w->listen_ready = false;
        w->listen = NULL;
        w->listen_dead = c;
        if (!w->stopped && w->drain_stage == 0)
            w_schedule_reconnect(w, w->listen_retry_ev, &w->listen_failures, "LISTEN", db_conn_last_error(c));
        break;
    case DB_CONN_EV_NOTIFY:
        if (channel && strcmp(channel, WORKER_CHANNEL) == 0 && worker_notify_wakes(payload, w->queue)) {
            log_debug("worker", "woken: %s", payload);
            w->want_claim = true;
            w_pump_soon(w);
        }
        break;
    }
}

static void w_on_listen_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    db_conn_free(w->listen_dead);
    w->listen_dead = NULL;
    if (!w->stopped && w->drain_stage == 0)
        w_listen_connect(w);
}

static void w_listen_connect(struct worker *w)
{
    struct db_conn_params p = {
        .url = w->o.listen_url,
        .application_name = "tasker-worker-listen",
        .connect_timeout_ms = WORKER_CONNECT_TIMEOUT_MS,
    };
    w->listen = db_conn_start(w->base, &p, w_on_listen_event, w);
    if (!w->listen)
        w_schedule_reconnect(w, w->listen_retry_ev, &w->listen_failures, "LISTEN", "cannot start");
}

/* w_conn_close: complete a query in flight with an error (its callback sees it), then free. */
static void w_conn_close(struct db_conn **c, const char *why)
{
    if (!*c)
        return;
    db_conn_fail_pending(*c, why);
    db_conn_free(*c);
    *c = NULL;
}

/* ---- drain and stop ------------------------------------------------------------------------- */

static void w_stop(struct worker *w, int code)
{
    if (w->stopped)
        return;
    w->stopped = true;
    w->exit_code = code;
    event_base_loopexit(w->base, NULL);
}

static void w_check_drained(struct worker *w)
{
    if (w->drain_stage == 0 || w->stopped)
        return;
    /* Completion pointers are waited for while the broker can confirm them; without it the
     * daemon's sweep finds those hand-backs (worker_pointers.c). */
    bool pointers = w->wp && wp_outstanding(w->wp) > 0 && amqp_link_is_up(w->amqp);
    if (w->running == 0 && w->pending.n == 0 && w->submitting.n == 0 && w->op != WOP_CLAIM && w->op != WOP_SUBMIT &&
        !pointers) {
        log_info("worker", "drained: every result handed back; exiting");
        w_stop(w, 0);
    }
}

static void w_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    if (w->drain_stage == 1) {
        w->drain_stage = 2;
        log_warn("worker", "drain: %d handler(s) still running after %d s; stopping them and handing back failures",
                 w->running, w->o.handler_timeout_secs);
        while (w->jobs) {
            struct worker_job *job = w->jobs;
            worker_handler_abort(job);
            struct worker_outcome out;
            worker_outcome_failure(&out, true, "worker %s shut down: the handler did not finish within the %d s drain limit",
                                   w->o.worker_id, w->o.handler_timeout_secs);
            worker_job_finish(job, &out);
        }
        w_pump_soon(w);
        w_timer_ms(w->drain_ev, (int64_t)WORKER_HANDBACK_GRACE_SECS * 1000);
        w_check_drained(w);
    } else {
        log_error("worker", "drain: could not hand back %d result(s) within %d s; exiting without them (their "
                  "leases will expire)", w->pending.n + w->submitting.n, WORKER_HANDBACK_GRACE_SECS);
        w_stop(w, 1);
    }
}

static void w_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    w->signals++;
    if (w->signals > 1 || w->drain_stage > 0) {
        log_warn("worker", "SIG%s again: exiting at once (%d handler(s) killed, %d result(s) not handed back)",
                 sigabbrev_np((int)sig), w->running, w->pending.n + w->submitting.n);
        w_stop(w, 1);
        return;
    }
    w->drain_stage = 1;
    w->want_claim = false;
    event_del(w->poll_ev);
    log_info("worker", "SIG%s: draining — no new claims; %d handler(s) running, up to %d s", sigabbrev_np((int)sig),
             w->running, w->o.handler_timeout_secs);
    /* Notifications are of no use any more. */
    event_del(w->listen_retry_ev);
    db_conn_free(w->listen_dead);
    w->listen_dead = NULL;
    w_conn_close(&w->listen, "draining");
    w_timer_ms(w->drain_ev, (int64_t)w->o.handler_timeout_secs * 1000);
    w_pump_soon(w);
    w_check_drained(w);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

struct worker *worker_init(struct event_base *base, const struct worker_opts *o)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        log_error("worker", "out of memory");
        return NULL;
    }
    w->base = base;
    w->o = *o;
    w_rlist_init(&w->pending);
    w_rlist_init(&w->submitting);
    snprintf(w->queue, sizeof w->queue, "tasker_dispatch_%s", o->namespace_name);
    snprintf(w->lease_arg, sizeof w->lease_arg, "%d", o->lease_secs);
    w->rng = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    if (!w->rng)
        w->rng = 1;
    w->stmts[0] = (struct db_statement){
        "worker_claim",
        /* Every column, read by name: newer schemas append columns (handler_method, …, checkpoint). */
        "SELECT * FROM tasker.tasker_claim_and_execute_step($1::text, $2::integer, $3::integer, $4::text)",
        4
    };
    w->stmts[3] = (struct db_statement){
        "worker_claim_amqp",
        "SELECT * FROM tasker.claim_dispatched_steps($1::text, $2::jsonb, $3::integer, $4::text)",
        4
    };
    w->stmts[4] = (struct db_statement){
        "worker_submit_amqp", /* no PGMQ completion message: the pointer goes to RabbitMQ */
        "SELECT workflow_step_uuid, attempt, status, state FROM tasker.submit_step_results($1::jsonb, false)",
        1
    };
    w->stmts[1] = (struct db_statement){
        "worker_submit",
        "SELECT workflow_step_uuid, attempt, status, state FROM tasker.submit_step_results($1::jsonb)",
        1
    };
    w->stmts[2] = (struct db_statement){
        "worker_heartbeat",
        "SELECT h.step, h.attempt, tasker.heartbeat_step(h.step, h.attempt, $3::integer) AS alive "
        "FROM unnest($1::uuid[], $2::integer[]) AS h(step, attempt)",
        3
    };

    w->pump_ev = event_new(base, -1, 0, w_pump, w);
    w->poll_ev = event_new(base, -1, EV_PERSIST, w_on_poll, w);
    w->hb_ev = event_new(base, -1, EV_PERSIST, w_on_hb_tick, w);
    w->drain_ev = evtimer_new(base, w_on_drain_deadline, w);
    w->main_retry_ev = evtimer_new(base, w_on_main_retry, w);
    w->listen_retry_ev = evtimer_new(base, w_on_listen_retry, w);
    w->sigterm_ev = evsignal_new(base, SIGTERM, w_on_signal, w);
    w->sigint_ev = evsignal_new(base, SIGINT, w_on_signal, w);
    if (o->rabbitmq) {
        struct amqp_link_opts lo = {
            .url = o->amqp_url, .tag = "amqp", .heartbeat_secs = 30, .timeout_ms = WORKER_CONNECT_TIMEOUT_MS,
            .reconnect_initial_ms = WORKER_RECONNECT_MIN_MS, .reconnect_max_ms = WORKER_RECONNECT_MAX_MS,
            .consume_queue = w->queue, .prefetch = o->concurrency, .confirms = true,
        };
        struct amqp_link_handlers h = { .on_delivery = w_amqp_on_delivery, .on_down = w_amqp_on_down,
                                        .on_up = w_amqp_on_up, .on_confirm = w_amqp_on_confirm,
                                        .on_return = w_amqp_on_return };
        w->deliveries = json_array();
        w->amqp = w->deliveries ? amqp_link_new(base, &lo, &h, w) : NULL;
        w->wp = w->amqp ? wp_new(base, w->amqp, o->namespace_name) : NULL;
        if (!w->wp) {
            log_error("worker", "out of memory");
            worker_free(w);
            return NULL;
        }
    }
    if (!w->pump_ev || !w->poll_ev || !w->hb_ev || !w->drain_ev || !w->main_retry_ev ||
        !w->listen_retry_ev || !w->sigterm_ev || !w->sigint_ev) {
        log_error("worker", "out of memory creating events");
        worker_free(w);
        return NULL;
    }
    return w;
}

bool worker_start(struct worker *w)
{
    if (!worker_exec_init(w->base))
        return false; /* errors have already been logged */
    if (event_add(w->sigterm_ev, NULL) != 0 || event_add(w->sigint_ev, NULL) != 0) {
        log_error("worker", "cannot watch SIGTERM/SIGINT");
        return false;
    }
    int64_t tick = (int64_t)w->o.lease_secs * 1000 / 6;
    tick = tick < 50 ? 50 : tick > 1000 ? 1000 : tick;
    w_timer_ms(w->poll_ev, w->o.poll_ms);
    w_timer_ms(w->hb_ev, tick);
    log_info("worker", "starting: namespace %s (queue %s), concurrency %d, batch %d, lease %d s, poll %d ms, "
             "handler timeout %d s, worker id %s", w->o.namespace_name, w->queue, w->o.concurrency, w->o.batch,
             w->o.lease_secs, w->o.poll_ms, w->o.handler_timeout_secs, w->o.worker_id);
    w_main_connect(w);
    if (w->amqp)
        amqp_link_start(w->amqp); /* dispatch comes from RabbitMQ: no LISTEN connection needed */
    else
        w_listen_connect(w);
    return true;
}

int worker_exit_code(const struct worker *w)
{
    return w->exit_code;
}

int worker_handler_timeout_secs(const struct worker *w)
{
    return w->o.handler_timeout_secs;
}

struct event_base *worker_base(const struct worker *w)
{
    return w->base;
}

const char *worker_id(const struct worker *w)
{
    return w->o.worker_id;
}

static void w_event_free(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    w->stopped = true; /* callbacks fired below (failed queries) do nothing */
    if (w->n_claimed || w->pending.n || w->submitting.n)
        log_info("worker", "claimed %lld, succeeded %lld, failed %lld; hand-backs accepted %lld, not accepted %lld; "
                 "leases lost %lld; results dropped %lld, not handed back %d",
                 w->n_claimed, w->n_succeeded, w->n_failed, w->n_accepted, w->n_not_accepted, w->n_lost,
                 w->n_dropped, w->pending.n + w->submitting.n);
    while (w->jobs) {
        struct worker_job *job = w->jobs;
        log_warn("worker", "task %s step %s (%s) attempt %d: stopped without a hand-back", job->task_uuid,
                 job->step_uuid, job->step_name, job->attempt);
        worker_handler_abort(job);
        w_job_unlink(w, job);
        w_job_free(job);
    }
    worker_exec_shutdown();
    w_conn_close(&w->main, "worker exiting");
    w_conn_close(&w->listen, "worker exiting");
    db_conn_free(w->main_dead);
    db_conn_free(w->listen_dead);
    w_rlist_free(&w->pending);
    w_rlist_free(&w->submitting);
    if (w->wp) {
        long long published, confirmed, dropped;
        wp_summary(w->wp, &published, &confirmed, &dropped);
        log_info("worker", "completion pointers: published %lld, confirmed %lld, given up %lld", published, confirmed,
                 dropped);
    }
    wp_free(w->wp);
    amqp_link_free(w->amqp);
    json_decref(w->deliveries);
    free(w->tags);
    w_event_free(&w->pump_ev);
    w_event_free(&w->poll_ev);
    w_event_free(&w->hb_ev);
    w_event_free(&w->drain_ev);
    w_event_free(&w->main_retry_ev);
    w_event_free(&w->listen_retry_ev);
    w_event_free(&w->sigterm_ev);
    w_event_free(&w->sigint_ev);
    free(w);
}
