/* backoff.c — capped exponential backoff: with jitter for reconnects (pool, listener, worker), and
 * the idle backoff of the daemon's periodic polls (poller, completions). */
#include "backoff.h"

long long backoff_ms(long long initial_ms, long long max_ms, int failures, int jitter_pct, unsigned rnd)
{
    if (initial_ms < 0)
        initial_ms = 0;
    if (max_ms < initial_ms)
        max_ms = initial_ms;
    long long d = initial_ms;
    /* Doubling stops at the cap, so no overflow however many failures. */
    for (int i = 1; i < failures && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    if (jitter_pct > 0 && d > 0) {
        long long span = d * jitter_pct / 100; /* ± span */
        d = d - span + (long long)(rnd % (unsigned)(2 * span + 1));
    }
    return d < 0 ? 0 : d;
}

long long idle_backoff_next(struct idle_backoff *b, bool found, long long base_ms, long long ceiling_ms)
{
    if (found)
        b->level = 0;
    long long ms = backoff_ms(base_ms, ceiling_ms, b->level + 1, 0, 0);
    /* Stop counting once at the ceiling: the level stays small however long the daemon idles. */
    if (ms < ceiling_ms)
        b->level++;
    return ms;
}

void idle_backoff_reset(struct idle_backoff *b)
{
    b->level = 0;
}
