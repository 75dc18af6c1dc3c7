/* amqp_link.h — one AMQP 0-9-1 connection (rabbitmq-c) on a libevent loop: connect, one channel,
 * publisher confirms or a consumer, heartbeats, reconnect with backoff. Shared by the daemon's
 * dispatch relay and tasker-worker. Pure helpers (URL check/mask, confirm bookkeeping) at the end. */
#ifndef TASKER_AMQP_LINK_H
#define TASKER_AMQP_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct amqp_link;

struct amqp_link_opts {
    const char *url;            /* amqp://user:pass@host:port/vhost (copied) */
    const char *tag;            /* log component tag */
    int heartbeat_secs;         /* asked of the broker; serviced by a timer every heartbeat/2 */
    int timeout_ms;             /* bounds each step of a connect (on its own thread): TCP, login, RPCs */
    int reconnect_initial_ms;   /* reconnect backoff: first delay, doubling (±25 % jitter) … */
    int reconnect_max_ms;       /* … up to this */
    bool confirms;              /* publisher: confirm mode on the channel */
    const char *consume_queue;  /* consumer: declare it and consume it with manual acks; NULL = none */
    int prefetch;               /* consumer: basic.qos prefetch count */
};

/* Callbacks, all from the loop. on_down comes (once per loss, from a timer, never inside another
 * callback of this link) after the connection broke: publish tags not yet confirmed and delivery
 * tags not yet acked are void (unacked deliveries go back to their queue at the broker). */
struct amqp_link_handlers {
    void (*on_up)(void *arg);
    void (*on_down)(void *arg, const char *why);
    void (*on_confirm)(void *arg, uint64_t tag, bool multiple, bool ack);
    /* a mandatory publish the broker could not route (the ack for it follows) */
    void (*on_return)(void *arg, const char *routing_key, const char *message_id, int reply_code);
    void (*on_delivery)(void *arg, uint64_t delivery_tag, bool redelivered, const char *message_id,
                        const char *body, size_t len);
    /* the answer to an amqp_link_declare: messages ready (not delivered) in `queue`, consumers */
    void (*on_queue_depth)(void *arg, const char *queue, uint32_t ready, uint32_t consumers);
};

struct amqp_link *amqp_link_new(struct event_base *base, const struct amqp_link_opts *opts,
                                const struct amqp_link_handlers *h, void *arg) __attribute__((warn_unused_result));
/* amqp_link_start: the first connect attempt now (a failure is retried with backoff, logged). */
void amqp_link_start(struct amqp_link *l);
bool amqp_link_is_up(const struct amqp_link *l);
/* amqp_link_declare: declare a durable queue (call it when a queue is first needed, not per
 * message). Sent without waiting: publishes that follow on the link find the queue, and the answer,
 * with the queue's ready count, comes to on_queue_depth from the loop (so a declare doubles as a
 * depth probe). false: the link is not up or failed (on_down follows). */
bool amqp_link_declare(struct amqp_link *l, const char *queue);
/* amqp_link_publish: a persistent, mandatory publish to the default exchange with routing key
 * `queue`; *tag is its confirm tag. false: the link failed (on_down follows). */
bool amqp_link_publish(struct amqp_link *l, const char *queue, const char *message_id, const char *body, size_t len,
                       uint64_t *tag);
/* amqp_link_ack: settle a delivery (false: the link failed). */
bool amqp_link_ack(struct amqp_link *l, uint64_t delivery_tag);
const char *amqp_link_last_error(const struct amqp_link *l);
unsigned long long amqp_link_connects(const struct amqp_link *l);
/* amqp_link_free: close (politely if up) and release; NULL-safe. */
void amqp_link_free(struct amqp_link *l);

/* ---- pure helpers (unit-tested) ---- */

/* amqp_url_check: whether url parses as an AMQP URL (amqp:// or amqps://); why says what is wrong
 * without echoing the URL (it may carry a password). */
bool amqp_url_check(const char *url, char *why, size_t whylen);
/* amqp_url_mask: url with the password of its userinfo written as "***". */
void amqp_url_mask(const char *url, char *out, size_t outlen);

/* Confirm bookkeeping for one burst of publishes on a confirm channel: tags first..first+n-1.
 * Acks may come out of order and `multiple` ones cover every tag up to theirs; a returned message
 * is acked too, but was not routed, so it counts as not delivered. */
enum amqp_confirm_state { AMQP_CONFIRM_PENDING, AMQP_CONFIRM_ACKED, AMQP_CONFIRM_NACKED, AMQP_CONFIRM_RETURNED };
struct amqp_confirms {
    uint64_t first;
    size_t n, cap, settled;
    unsigned char *st;
};
void amqp_confirms_reset(struct amqp_confirms *c);
/* amqp_confirms_add: record a publish with tag `tag` (must be first + n; the first add sets first). */
bool amqp_confirms_add(struct amqp_confirms *c, uint64_t tag);
/* amqp_confirms_settle: an ack or nack from the broker; tags outside the burst are ignored. Returns
 * how many entries it settled. */
size_t amqp_confirms_settle(struct amqp_confirms *c, uint64_t tag, bool multiple, bool ack);
/* amqp_confirms_returned: entry i came back unrouted (its ack, if it comes, does not undo that). */
void amqp_confirms_returned(struct amqp_confirms *c, size_t i);
bool amqp_confirms_done(const struct amqp_confirms *c);
void amqp_confirms_free(struct amqp_confirms *c);

#endif
