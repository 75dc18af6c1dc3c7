/* metrics.h — the daemon's counters, bumped by the components and rendered by /metrics and STATUS=. */
#ifndef TASKER_METRICS_H
#define TASKER_METRICS_H

#include <stddef.h>
#include <stdio.h>

#define METRICS_NS_MAX 128      /* namespaces with their own series; later ones only count in the totals */
#define METRICS_NS_NAME_MAX 32  /* a namespace name is at most 29 characters */
#define METRICS_HIST_BUCKETS 16 /* upper bounds per histogram, +Inf included */

/* The histograms, each with fixed bucket bounds (metrics.c). */
enum metrics_hist_kind {
    METRICS_HIST_BATCH_SIZE, /* messages per completion batch: 1, 2, 5 … 5000, +Inf */
    METRICS_HIST_SECONDS     /* durations: 1 ms … 10 s, +Inf */
};

/* A histogram: per-bucket counts (not cumulative; rendering sums them), count and sum. */
struct metrics_hist {
    unsigned long long bucket[METRICS_HIST_BUCKETS];
    unsigned long long count;
    double sum;
};

/* Per-namespace counters (the completion batches are per namespace). */
struct metrics_ns {
    char name[METRICS_NS_NAME_MAX];
    unsigned long long tasks_created;
    unsigned long long completion_messages;
    unsigned long long steps_completed;
    unsigned long long steps_retried;
    unsigned long long steps_failed;
    unsigned long long tasks_completed;
    unsigned long long tasks_failed;
};

/* Plain counters; single-threaded (the one loop), so no atomics. Owned by struct orchd (zeroed
 * with it: every field starts at 0 and needs no init). */
struct metrics {
    unsigned long long completion_batches;   /* process_completions calls that consumed messages */
    unsigned long long completion_messages;  /* messages consumed */
    unsigned long long steps_completed;
    unsigned long long steps_retried;        /* failures sent to waiting_for_retry */
    unsigned long long steps_failed;         /* failures that ended in error */
    unsigned long long steps_enqueued;       /* dispatched by the daemon: roots, children, retries, resolutions, recoveries */
    unsigned long long messages_stale;
    unsigned long long messages_rejected;
    unsigned long long tasks_completed;
    unsigned long long tasks_blocked;        /* moved to blocked_by_failures: a step failed for good */
    unsigned long long poll_runs;
    unsigned long long sweep_runs;
    unsigned long long sweep_actions;
    unsigned long long handbacks_recovered;  /* rabbitmq: hand-backs the sweep processed, their pointer lost */
    unsigned long long vacuum_runs;          /* VACUUM statements of the hot tables that succeeded */
    unsigned long long vacuum_ms;            /* their wall time, ms */
    unsigned long long query_errors;         /* failed daemon queries of any kind */

    /* the HTTP API */
    unsigned long long tasks_created;        /* POST /v1/tasks that created a task */
    unsigned long long tasks_cancelled;      /* DELETE /v1/tasks/{uuid} that cancelled one */
    unsigned long long steps_resolved;       /* PATCH …/workflow_steps/{step} that changed a step */
    unsigned long long templates_registered; /* POST /v1/templates that created or updated one */

    struct metrics_hist completion_batch_size; /* METRICS_HIST_BATCH_SIZE: messages per consuming batch */
    struct metrics_hist step_latency;          /* METRICS_HIST_SECONDS: hand-back → completion processed */

    struct metrics_ns ns[METRICS_NS_MAX];
    size_t nns;
};

/* One process_completions result, as completions.c reads it. */
struct metrics_batch {
    long long messages;
    long long steps_completed;
    long long steps_retrying;
    long long steps_failed;
    long long stale;
    long long rejected;
    long long steps_enqueued;
    long long tasks_completed;
    long long tasks_blocked;
};

/* metrics_ns_get: the per-namespace counters of ns, added on first use; NULL when the table is
 * full or ns is not a namespace name (the daemon-wide counters still count). */
struct metrics_ns *metrics_ns_get(struct metrics *m, const char *ns);

/* metrics_record_completions: one process_completions call of namespace ns — bumps the
 * daemon-wide counters, the namespace's counters and (when it consumed messages) the batch-size
 * histogram. */
void metrics_record_completions(struct metrics *m, const char *ns, const struct metrics_batch *b);

/* metrics_observe_step_latency: one step's orchestration latency — seconds from its hand-back
 * (submit_step_results) to process_completions having recorded it. */
void metrics_observe_step_latency(struct metrics *m, double seconds);

/* metrics_observe_step_latencies: the same for a PostgreSQL integer[] of milliseconds in its text
 * form ("{12,5,NULL,7}", as db_rows_text gives it); NULLs and junk are skipped. Returns how many
 * were observed. */
int metrics_observe_step_latencies(struct metrics *m, const char *pg_array_ms);

/* metrics_task_created: a task of namespace ns was created through the API. */
void metrics_task_created(struct metrics *m, const char *ns, long long steps_enqueued);

/* metrics_hist_observe: add v to h (whose bounds are those of kind). */
void metrics_hist_observe(struct metrics_hist *h, enum metrics_hist_kind kind, double v);

/* ---- Prometheus text format (version 0.0.4) ------------------------------------------------- */

/* metrics_render: every counter and histogram of m, with HELP and TYPE lines. */
void metrics_render(const struct metrics *m, FILE *out);

/* metrics_write_header: the # HELP and # TYPE lines of a metric (type: counter, gauge, histogram). */
void metrics_write_header(FILE *out, const char *name, const char *type, const char *help);

/* metrics_write_sample: one sample line `name{labels} value`. labels is the text between the
 * braces (already escaped, see metrics_label) or NULL/"" for none. Integral values print without
 * a decimal point. */
void metrics_write_sample(FILE *out, const char *name, const char *labels, double value);

/* metrics_write_hist: the _bucket, _sum and _count lines of h (labels as above, may be NULL). */
void metrics_write_hist(FILE *out, const char *name, const char *labels, const struct metrics_hist *h,
                        enum metrics_hist_kind kind);

/* metrics_label: `key="value"` with value escaped (\\, \", \n) into out; returns out. */
char *metrics_label(char *out, size_t outlen, const char *key, const char *value);

#endif
