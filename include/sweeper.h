/* sweeper.h — the periodic stuck/stale sweep (detect_and_transition_stuck_tasks). */
#ifndef TASKER_SWEEPER_H
#define TASKER_SWEEPER_H

struct orchd;
struct sweeper;

struct sweeper *sweeper_new(struct orchd *o) __attribute__((warn_unused_result));
void sweeper_start(struct sweeper *s);
/* sweeper_kick: sweep now (e.g. after the database came back). NULL-safe. */
void sweeper_kick(struct sweeper *s);
void sweeper_stop(struct sweeper *s);
void sweeper_free(struct sweeper *s);

#endif
