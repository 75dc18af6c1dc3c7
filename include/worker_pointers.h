/* worker_pointers.h — tasker-worker --backend rabbitmq: publishes the completion pointer of each
 * hand-back that committed to RabbitMQ's tasker_completion_<ns>, with publisher confirms. */
#ifndef TASKER_WORKER_POINTERS_H
#define TASKER_WORKER_POINTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct amqp_link;
struct worker_pointers;

#define WORKER_POINTER_MAX_TRIES 5 /* publishes of one pointer (nack, return) before leaving it to the sweep */

struct worker_pointers *wp_new(struct event_base *base, struct amqp_link *link, const char *namespace_name)
    __attribute__((warn_unused_result));
/* wp_add: publish the pointer of (step, attempt) of task, now if the link is up, else once it is. */
void wp_add(struct worker_pointers *wp, const char *task_uuid, const char *step_uuid, int attempt);
/* The link's events, forwarded by the worker (the link has one set of handlers). */
void wp_on_up(struct worker_pointers *wp);
void wp_on_down(struct worker_pointers *wp);
void wp_on_confirm(struct worker_pointers *wp, uint64_t tag, bool multiple, bool ack);
void wp_on_return(struct worker_pointers *wp, const char *message_id);
/* wp_outstanding: pointers not yet confirmed by the broker (waiting or published). */
size_t wp_outstanding(const struct worker_pointers *wp);
/* wp_summary: counters for the exit line. */
void wp_summary(const struct worker_pointers *wp, long long *published, long long *confirmed, long long *dropped);
void wp_free(struct worker_pointers *wp);

#endif
