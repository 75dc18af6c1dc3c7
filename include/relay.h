/* relay.h — messaging.backend = rabbitmq: relays dispatch messages from the PGMQ outbox
 * (tasker_dispatch_<ns>) to the RabbitMQ queues of the same names, with publisher confirms. */
#ifndef TASKER_RELAY_H
#define TASKER_RELAY_H

#include <stdbool.h>

struct orchd;
struct relay;

struct relay_stats {
    bool link_up;
    unsigned long long link_connects;
    unsigned long long publishes;      /* messages published */
    unsigned long long confirms;       /* acked by the broker (and routed) */
    unsigned long long nacks;          /* nacked: left in PGMQ, re-published after their vt */
    unsigned long long returns;        /* returned unrouted: likewise */
    unsigned long long confirm_timeouts; /* bursts whose confirms did not all come in time */
    unsigned long long republished;    /* publishes of a message read before (read_ct > 1) */
    unsigned long long archived;       /* outbox messages archived after their confirm */
    long long in_flight;               /* published, confirm pending */
    long long last_batch;              /* messages in the last burst read */
    char last_error[256];
};

struct relay *relay_new(struct orchd *o) __attribute__((warn_unused_result));
/* relay_start: connect to the broker (retrying with backoff) and relay once it is up. */
void relay_start(struct relay *r);
/* relay_kick: a NOTIFY named `queue`: relay now if it is a dispatch queue. NULL-safe. */
void relay_kick(struct relay *r, const char *queue);
/* relay_kick_all: relay now (the database came back, LISTEN reconnected). NULL-safe. */
void relay_kick_all(struct relay *r);
bool relay_link_up(const struct relay *r);
/* relay_probe: ask the broker how many messages wait ready in namespace ns's dispatch queue (the
 * answer comes later, asynchronously). NULL-safe; a no-op while the link is down. */
void relay_probe(struct relay *r, const char *ns);
/* relay_broker_drained: the sweep's p_broker_drained, a JSON object namespace → seconds since its
 * broker queue was last seen with no ready message (namespaces never seen so are absent); the
 * caller frees it. NULL: out of memory. */
char *relay_broker_drained(const struct relay *r);
void relay_stats(const struct relay *r, struct relay_stats *out);
/* relay_busy: a database call or a confirm wait is in progress (shutdown waits for the call). */
bool relay_busy(const struct relay *r);
void relay_stop(struct relay *r);
void relay_free(struct relay *r);

#endif
