/* completions.h — consumes tasker_completion_<ns> queues: process_completions per namespace. */
#ifndef TASKER_COMPLETIONS_H
#define TASKER_COMPLETIONS_H

#include <stddef.h>

struct orchd;
struct completions;
struct pointer_stats;

struct completions *completions_new(struct orchd *o) __attribute__((warn_unused_result));
/* completions_start: read the namespace list; each namespace found then has its own fallback poll
 * (completions.interval_ms, backing off to completions.idle_interval_ms while it finds nothing). */
void completions_start(struct completions *c);
/* completions_kick: a message arrived on `queue` (a NOTIFY); process that namespace now and bring
 * its fallback poll back to the base interval. Queues that are not completion queues are ignored. */
void completions_kick(struct completions *c, const char *queue);
/* completions_kick_all: process every namespace now (after a reconnect, or the database came up). */
void completions_kick_all(struct completions *c);
void completions_stop(struct completions *c);
void completions_free(struct completions *c);
size_t completions_namespace_count(const struct completions *c);
/* completions_namespace: the i-th namespace known (i < completions_namespace_count), else NULL. */
const char *completions_namespace(const struct completions *c, size_t i);
/* completions_in_flight: calls running now (shutdown waits for these through the pool). */
int completions_in_flight(const struct completions *c);
/* completions_pointer_stats: messaging.backend = rabbitmq: the pointer consumers' counters, summed
 * over namespaces (all zero with pgmq). */
void completions_pointer_stats(const struct completions *c, struct pointer_stats *out);

#endif
