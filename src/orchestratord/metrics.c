/* metrics.c — the daemon's counters and histograms, and their Prometheus text rendering (format
 * 0.0.4). The components bump struct metrics; /metrics (http_api.c) renders it with
 * metrics_render and adds the gauges it reads at scrape time with the metrics_write_* helpers. */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000};
static const double seconds_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

_Static_assert(sizeof batch_bounds / sizeof batch_bounds[0] < METRICS_HIST_BUCKETS, "batch buckets + Inf fit");
_Static_assert(sizeof seconds_bounds / sizeof seconds_bounds[0] < METRICS_HIST_BUCKETS, "seconds buckets + Inf fit");

/* bounds_of: the finite upper bounds of a histogram kind (+Inf is implied after them). */
static const double *bounds_of(enum metrics_hist_kind kind, size_t *n)
{
    if (kind == METRICS_HIST_BATCH_SIZE) {
        *n = sizeof batch_bounds / sizeof batch_bounds[0];
        return batch_bounds;
    }
    *n = sizeof seconds_bounds / sizeof seconds_bounds[0];
    return seconds_bounds;
}

void metrics_hist_observe(struct metrics_hist *h, enum metrics_hist_kind kind, double v)
{
    size_t n;
    const double *b = bounds_of(kind, &n);
    size_t i = 0;
    while (i < n && v > b[i])
        i++;
    h->bucket[i]++; /* i == n is +Inf */
    h->count++;
    h->sum += v;
}

static bool ns_name_ok(const char *ns)
{
    size_t n = ns ? strlen(ns) : 0;
    return n >= 1 && n < METRICS_NS_NAME_MAX;
}

struct metrics_ns *metrics_ns_get(struct metrics *m, const char *ns)
{
    if (!ns_name_ok(ns))
        return NULL;
    for (size_t i = 0; i < m->nns; i++)
        if (strcmp(m->ns[i].name, ns) == 0)
            return &m->ns[i];
    if (m->nns == METRICS_NS_MAX)
        return NULL;
    struct metrics_ns *s = &m->ns[m->nns++];
    memset(s, 0, sizeof *s);
    memcpy(s->name, ns, strlen(ns) + 1);
    return s;
}

static unsigned long long nonneg(long long v)
{
    return v > 0 ? (unsigned long long)v : 0;
}

void metrics_record_completions(struct metrics *m, const char *ns, const struct metrics_batch *b)
{
    if (b->messages <= 0)
        return;
    m->completion_batches++;
    m->completion_messages += nonneg(b->messages);
    m->steps_completed += nonneg(b->steps_completed);
    m->steps_retried += nonneg(b->steps_retrying);
    m->steps_failed += nonneg(b->steps_failed);
    m->messages_stale += nonneg(b->stale);
    m->messages_rejected += nonneg(b->rejected);
    m->steps_enqueued += nonneg(b->steps_enqueued);
    m->tasks_completed += nonneg(b->tasks_completed);
    m->tasks_blocked += nonneg(b->tasks_blocked);
    metrics_hist_observe(&m->completion_batch_size, METRICS_HIST_BATCH_SIZE, (double)b->messages);
    struct metrics_ns *s = metrics_ns_get(m, ns);
    if (s) {
        s->completion_messages += nonneg(b->messages);
        s->steps_completed += nonneg(b->steps_completed);
        s->steps_retried += nonneg(b->steps_retrying);
        s->steps_failed += nonneg(b->steps_failed);
        s->tasks_completed += nonneg(b->tasks_completed);
        s->tasks_failed += nonneg(b->tasks_blocked);
    }
}

void metrics_observe_step_latency(struct metrics *m, double seconds)
{
    metrics_hist_observe(&m->step_latency, METRICS_HIST_SECONDS, seconds < 0 ? 0 : seconds);
}

int metrics_observe_step_latencies(struct metrics *m, const char *pg_array_ms)
{
    int n = 0;
    const char *p = pg_array_ms ? pg_array_ms : "";
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end != p) {
            metrics_observe_step_latency(m, (double)v / 1000.0);
            n++;
            p = end;
        } else {
            p++; /* '{', ',', '}', spaces, NULL */
        }
    }
    return n;
}

void metrics_task_created(struct metrics *m, const char *ns, long long steps_enqueued)
{
    m->tasks_created++;
    m->steps_enqueued += nonneg(steps_enqueued);
    struct metrics_ns *s = metrics_ns_get(m, ns);
    if (s)
        s->tasks_created++;
}

/* ---- rendering -------------------------------------------------------------------------------- */

char *metrics_label(char *out, size_t outlen, const char *key, const char *value)
{
    size_t used = 0;
    if (outlen == 0)
        return out;
    int n = snprintf(out, outlen, "%s=\"", key);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return out;
    }
    used = (size_t)n;
    for (const char *p = value ? value : ""; *p && used + 3 < outlen; p++) {
        if (*p == '\\' || *p == '"') {
            out[used++] = '\\';
            out[used++] = *p;
        } else if (*p == '\n') {
            out[used++] = '\\';
            out[used++] = 'n';
        } else {
            out[used++] = *p;
        }
    }
    out[used++] = '"';
    out[used] = '\0';
    return out;
}

void metrics_write_header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_write_sample(FILE *out, const char *name, const char *labels, double value)
{
    bool has_labels = labels && *labels;
    fprintf(out, "%s%s%s%s ", name, has_labels ? "{" : "", has_labels ? labels : "", has_labels ? "}" : "");
    if (isnan(value))
        fputs("NaN\n", out);
    else if (isinf(value))
        fputs(value > 0 ? "+Inf\n" : "-Inf\n", out);
    else if (value == floor(value) && fabs(value) < 9e15)
        fprintf(out, "%.0f\n", value);
    else
        fprintf(out, "%.9g\n", value);
}

void metrics_write_hist(FILE *out, const char *name, const char *labels, const struct metrics_hist *h,
                        enum metrics_hist_kind kind)
{
    size_t n;
    const double *b = bounds_of(kind, &n);
    bool has_labels = labels && *labels;
    unsigned long long cum = 0;
    for (size_t i = 0; i <= n; i++) {
        cum += h->bucket[i];
        char le[32];
        if (i < n)
            snprintf(le, sizeof le, "%g", b[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        fprintf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, has_labels ? labels : "", has_labels ? "," : "", le, cum);
    }
    char sname[128];
    snprintf(sname, sizeof sname, "%s_sum", name);
    metrics_write_sample(out, sname, labels, h->sum);
    snprintf(sname, sizeof sname, "%s_count", name);
    metrics_write_sample(out, sname, labels, (double)h->count);
}

/* counter: header + one unlabelled sample. */
static void counter(FILE *out, const char *name, const char *help, unsigned long long v)
{
    metrics_write_header(out, name, "counter", help);
    metrics_write_sample(out, name, NULL, (double)v);
}

/* ns_counter: header + one sample per namespace of the field at offset off. */
static void ns_counter(FILE *out, const struct metrics *m, const char *name, const char *help, size_t off)
{
    metrics_write_header(out, name, "counter", help);
    for (size_t i = 0; i < m->nns; i++) {
        char label[96];
        unsigned long long v = *(const unsigned long long *)((const char *)&m->ns[i] + off);
        metrics_write_sample(out, name, metrics_label(label, sizeof label, "namespace", m->ns[i].name), (double)v);
    }
}

void metrics_render(const struct metrics *m, FILE *out)
{
    counter(out, "tasker_tasks_created_total", "Tasks created through this daemon's API.", m->tasks_created);
    counter(out, "tasker_tasks_completed_total", "Tasks this daemon moved to complete.", m->tasks_completed);
    counter(out, "tasker_tasks_failed_total",
            "Tasks this daemon moved to blocked_by_failures (a step failed for good; an operator or the sweep "
            "decides next).",
            m->tasks_blocked);
    counter(out, "tasker_tasks_cancelled_total", "Tasks cancelled through this daemon's API.", m->tasks_cancelled);
    counter(out, "tasker_steps_enqueued_total",
            "Steps this daemon dispatched (roots at creation, children, retries, after manual resolution).",
            m->steps_enqueued);
    counter(out, "tasker_steps_completed_total", "Step results this daemon recorded as complete.", m->steps_completed);
    counter(out, "tasker_steps_retried_total", "Step failures this daemon sent to waiting_for_retry.",
            m->steps_retried);
    counter(out, "tasker_steps_failed_total", "Step failures this daemon recorded as error (no retry left).",
            m->steps_failed);
    counter(out, "tasker_steps_resolved_total", "Steps changed by an operator through the API (PATCH).",
            m->steps_resolved);
    counter(out, "tasker_templates_registered_total", "Templates created or updated through the API.",
            m->templates_registered);
    counter(out, "tasker_completion_batches_total", "process_completions calls that consumed messages.",
            m->completion_batches);
    counter(out, "tasker_completion_messages_total", "Completion messages consumed.", m->completion_messages);
    counter(out, "tasker_completion_messages_stale_total",
            "Completion messages whose step no longer awaited orchestration (duplicates, late results).",
            m->messages_stale);
    counter(out, "tasker_completion_messages_rejected_total",
            "Malformed completion messages (archived; see tasker.rejected_messages).", m->messages_rejected);
    counter(out, "tasker_poll_runs_total", "enqueue_ready_steps passes.", m->poll_runs);
    counter(out, "tasker_sweep_runs_total", "Stuck/stale sweeps.", m->sweep_runs);
    counter(out, "tasker_sweep_actions_total", "Actions the sweep took (lease expiries, re-sends, DLQ moves, …).",
            m->sweep_actions);
    counter(out, "tasker_vacuum_runs_total", "VACUUM statements this daemon ran on the hot queue and task tables.",
            m->vacuum_runs);
    metrics_write_header(out, "tasker_vacuum_seconds_total", "counter", "Wall time of those VACUUM statements.");
    metrics_write_sample(out, "tasker_vacuum_seconds_total", NULL, (double)m->vacuum_ms / 1000.0);
    counter(out, "tasker_query_errors_total", "Failed orchestration queries of any kind.", m->query_errors);

    ns_counter(out, m, "tasker_namespace_tasks_created_total", "Tasks created through the API, by namespace.",
               offsetof(struct metrics_ns, tasks_created));
    ns_counter(out, m, "tasker_namespace_completion_messages_total", "Completion messages consumed, by namespace.",
               offsetof(struct metrics_ns, completion_messages));
    ns_counter(out, m, "tasker_namespace_steps_completed_total", "Steps recorded complete, by namespace.",
               offsetof(struct metrics_ns, steps_completed));
    ns_counter(out, m, "tasker_namespace_steps_retried_total", "Step failures sent to retry, by namespace.",
               offsetof(struct metrics_ns, steps_retried));
    ns_counter(out, m, "tasker_namespace_steps_failed_total", "Step failures recorded as error, by namespace.",
               offsetof(struct metrics_ns, steps_failed));
    ns_counter(out, m, "tasker_namespace_tasks_completed_total", "Tasks moved to complete, by namespace.",
               offsetof(struct metrics_ns, tasks_completed));
    ns_counter(out, m, "tasker_namespace_tasks_failed_total", "Tasks moved to blocked_by_failures, by namespace.",
               offsetof(struct metrics_ns, tasks_failed));

    metrics_write_header(out, "tasker_completion_batch_size", "histogram",
                         "Messages per process_completions call that consumed any.");
    metrics_write_hist(out, "tasker_completion_batch_size", NULL, &m->completion_batch_size,
                       METRICS_HIST_BATCH_SIZE);
    metrics_write_header(out, "tasker_step_orchestration_latency_seconds", "histogram",
                         "Per step: from the worker's hand-back (submit_step_results) to this daemon having "
                         "recorded the result (process_completions committed).");
    metrics_write_hist(out, "tasker_step_orchestration_latency_seconds", NULL, &m->step_latency,
                       METRICS_HIST_SECONDS);
}
