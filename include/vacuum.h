/* vacuum.h — keeps the hot tables lean: VACUUM of the queue (and task) tables while work flows. */
#ifndef TASKER_VACUUM_H
#define TASKER_VACUUM_H

struct orchd;
struct vacuum;

struct vacuum *vacuum_new(struct orchd *o) __attribute__((warn_unused_result));
/* vacuum_start: arm the timer (orchestration.vacuum.interval_ms); a round with nothing dirty sends
 * no query. */
void vacuum_start(struct vacuum *v);
/* vacuum_note_completions: completions of namespace ns were processed: its queue tables and the task
 * tables are due for a vacuum at their next round. NULL-safe. */
void vacuum_note_completions(struct vacuum *v, const char *ns);
void vacuum_stop(struct vacuum *v);
void vacuum_free(struct vacuum *v);

#endif
