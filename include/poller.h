/* poller.h — the ready-step poll: dispatches retries whose backoff passed (enqueue_ready_steps). */
#ifndef TASKER_POLLER_H
#define TASKER_POLLER_H

#include <stdbool.h>

#include "backoff.h"

struct orchd;
struct poller;

struct poller *poller_new(struct orchd *o) __attribute__((warn_unused_result));
void poller_start(struct poller *p);
/* poller_kick: run now (coalesced: if a call is in flight, once more when it returns), and leave
 * the idle backoff. NULL-safe. */
void poller_kick(struct poller *p);
/* poller_note_activity: the daemon is busy elsewhere (completions were processed): leave the idle
 * backoff, so the next poll comes within the base interval. Runs nothing now. NULL-safe. */
void poller_note_activity(struct poller *p);
void poller_stop(struct poller *p);
void poller_free(struct poller *p);

/* What one enqueue_ready_steps call reported, for poller_plan. */
struct poller_pass {
    bool ok;                /* false: the call failed */
    long long enqueued;     /* steps_enqueued */
    long long touched;      /* tasks_touched */
    bool retry_pending;     /* next_retry_in_ms is not NULL: a retry is scheduled in the future */
    long long retry_in_ms;  /* ms until the earliest one is due */
};

/* poller_plan: ms until the next poll after pass r (pure; idle is the poller's backoff state).
 * A full batch that dispatched something: 0 (more may be waiting). Otherwise the idle backoff
 * (base_ms after a pass that dispatched, doubling up to ceiling_ms while passes find nothing), but
 * never later than just after the earliest pending retry is due. A failed call: base_ms. */
long long poller_plan(struct idle_backoff *idle, const struct poller_pass *r, int batch_size, long long base_ms,
                      long long ceiling_ms);

#endif
