/* backoff.h — capped exponential backoff: with jitter for reconnects (pool, listener, worker), and
 * the idle backoff of the daemon's periodic polls (poller, completions). */
#ifndef TASKER_BACKOFF_H
#define TASKER_BACKOFF_H

#include <stdbool.h>

/* backoff_ms: the delay before retry number `failures` (1 = after the first failure):
 * initial_ms × 2^(failures-1), capped at max_ms, then spread by ±jitter_pct percent using rnd
 * (any random number; pass rand()). Never negative; failures < 1 counts as 1. Pure: same inputs,
 * same result, so tests can pin it. */
long long backoff_ms(long long initial_ms, long long max_ms, int failures, int jitter_pct, unsigned rnd);

/* The idle backoff of a periodic poll: while passes find nothing, the wait between them doubles
 * from the base interval up to an idle ceiling; activity brings it back to the base at once.
 * Zero-initialized, it is fresh: the next wait is the base interval. Pure arithmetic, no clock. */
struct idle_backoff {
    int level; /* the next empty pass waits base × 2^level (capped) */
};

/* idle_backoff_next: the wait after a pass. found: the pass did work (or was asked for by a
 * wake-up), so wait the base interval and start doubling again from there; otherwise wait the
 * current interval and double it for next time. The result lies in [base_ms, max(base_ms,
 * ceiling_ms)]: a ceiling below the base means no backoff. */
long long idle_backoff_next(struct idle_backoff *b, bool found, long long base_ms, long long ceiling_ms);

/* idle_backoff_reset: activity outside a pass (a notification, another component's work): the
 * next wait is the base interval again. */
void idle_backoff_reset(struct idle_backoff *b);

#endif
