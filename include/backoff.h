/* backoff.h — capped exponential backoff with jitter, for reconnects (pool, listener, worker). */
#ifndef TASKER_BACKOFF_H
#define TASKER_BACKOFF_H

/* backoff_ms: the delay before retry number `failures` (1 = after the first failure):
 * initial_ms × 2^(failures-1), capped at max_ms, then spread by ±jitter_pct percent using rnd
 * (any random number; pass rand()). Never negative; failures < 1 counts as 1. Pure: same inputs,
 * same result, so tests can pin it. */
long long backoff_ms(long long initial_ms, long long max_ms, int failures, int jitter_pct, unsigned rnd);

#endif
