/* metrics.h — the daemon's counters, bumped by the components and rendered by /metrics and STATUS=. */
#ifndef TASKER_METRICS_H
#define TASKER_METRICS_H

/* Plain counters; single-threaded (the one loop), so no atomics. Owned by struct orchd. */
struct metrics {
    unsigned long long completion_batches;   /* process_completions calls that consumed messages */
    unsigned long long completion_messages;  /* messages consumed */
    unsigned long long steps_completed;
    unsigned long long steps_retried;        /* failures sent to waiting_for_retry */
    unsigned long long steps_failed;         /* failures that ended in error */
    unsigned long long steps_enqueued;       /* dispatched by the daemon (children, retries) */
    unsigned long long messages_stale;
    unsigned long long messages_rejected;
    unsigned long long tasks_completed;
    unsigned long long tasks_blocked;
    unsigned long long poll_runs;
    unsigned long long sweep_runs;
    unsigned long long sweep_actions;
    unsigned long long query_errors;         /* failed daemon queries of any kind */
};

#endif
