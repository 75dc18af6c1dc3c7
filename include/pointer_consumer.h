/* pointer_consumer.h — messaging.backend = rabbitmq: one namespace's consumer of completion
 * pointers from the RabbitMQ queue tasker_completion_<ns>, processed in batches by
 * tasker.process_completion_pointers and acked after that transaction commits. */
#ifndef TASKER_POINTER_CONSUMER_H
#define TASKER_POINTER_CONSUMER_H

#include <stdbool.h>

struct orchd;
struct db_rows;
struct pointer_consumer;

struct pointer_stats {
    unsigned long long consumed;    /* deliveries received */
    unsigned long long redelivered; /* … of which the broker had delivered before */
    unsigned long long acked;       /* acked after their batch committed */
    unsigned long long rejected;    /* malformed: recorded in tasker.rejected_messages, acked */
    unsigned links, links_up;       /* consumers, and those whose broker link is up */
};

/* pc_new: the consumer of tasker_completion_<ns>. record(arg, rows) gets each committed batch's
 * result row (process_completions' columns) for the metrics and wake-ups PGMQ mode has. */
struct pointer_consumer *pc_new(struct orchd *o, const char *ns, void (*record)(void *arg, const struct db_rows *rows),
                                void *arg) __attribute__((warn_unused_result));
/* pc_start: connect (declaring the durable queue, basic.qos messaging.rabbitmq.prefetch, consume). */
void pc_start(struct pointer_consumer *pc);
/* pc_kick: process what is buffered now (the database came back). */
void pc_kick(struct pointer_consumer *pc);
/* pc_in_flight: 1 while a process_completion_pointers call runs (shutdown waits for it). */
int pc_in_flight(const struct pointer_consumer *pc);
/* pc_stats_add: add this consumer's counters to *sum. */
void pc_stats_add(const struct pointer_consumer *pc, struct pointer_stats *sum);
void pc_stop(struct pointer_consumer *pc);
void pc_free(struct pointer_consumer *pc);

#endif
