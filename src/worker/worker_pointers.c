/* worker_pointers.c — tasker-worker --backend rabbitmq: after a hand-back committed
 * (tasker.submit_step_results(results, false) wrote no PGMQ completion message), the step's
 * completion pointer {"task_uuid", "step_uuid", "attempt"} is published, persistent and mandatory,
 * to the durable queue tasker_completion_<ns> on the worker's AMQP link in confirm mode.
 *
 * A pointer stays here until the broker acked it. A nack or a return (the queue is missing: it is
 * declared again) puts it back to be published again a second later; a lost link puts every
 * unconfirmed one back, published again once the link is up. After WORKER_POINTER_MAX_TRIES
 * publishes a pointer is given up (logged): the daemon's sweep processes the step from PostgreSQL's
 * state after sweeper.resend_grace_secs, as it does when a worker dies before publishing. A pointer
 * published twice is harmless: the second is stale by then and changes nothing.
 */
#include "worker_pointers.h"

#include "amqp_link.h"
#include "log.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WP_UUID_LEN 36
#define WP_RETRY_MS 1000

struct wp_entry {
    char task[WP_UUID_LEN + 1], step[WP_UUID_LEN + 1];
    int attempt;
    int tries;
    uint64_t tag;  /* confirm tag while published; 0 = waiting to be published */
    bool returned; /* came back unrouted: its ack does not count */
};

struct worker_pointers {
    struct amqp_link *link;
    char queue[64];
    struct event *retry;
    bool declared; /* on this connection */
    struct wp_entry *e;
    size_t n, cap;
    long long published, confirmed, dropped;
};

static void wp_flush(struct worker_pointers *wp);

static void wp_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wp_flush(arg);
}

static void wp_remove(struct worker_pointers *wp, size_t i)
{
    wp->e[i] = wp->e[--wp->n];
}

/* wp_again: entry i failed (nack, return): publish again later, or give it up. */
static bool wp_again(struct worker_pointers *wp, size_t i)
{
    struct wp_entry *x = &wp->e[i];
    if (x->tries >= WORKER_POINTER_MAX_TRIES) {
        log_warn("worker", "task %s step %s attempt %d: completion pointer not accepted by the broker after %d "
                 "publishes; the daemon's sweep will find the hand-back", x->task, x->step, x->attempt, x->tries);
        wp->dropped++;
        wp_remove(wp, i);
        return false;
    }
    x->tag = 0;
    x->returned = false;
    return true;
}

static void wp_flush(struct worker_pointers *wp)
{
    if (!amqp_link_is_up(wp->link))
        return;
    if (!wp->declared) {
        /* An RPC: once per connection (and after a return said the queue is gone), not per pointer. */
        if (!amqp_link_declare(wp->link, wp->queue))
            return;
        wp->declared = true;
    }
    for (size_t i = 0; i < wp->n; i++) {
        struct wp_entry *x = &wp->e[i];
        if (x->tag)
            continue;
        char body[160], id[64];
        snprintf(body, sizeof body, "{\"task_uuid\":\"%s\",\"step_uuid\":\"%s\",\"attempt\":%d}", x->task, x->step,
                 x->attempt);
        snprintf(id, sizeof id, "%s:%d", x->step, x->attempt);
        if (!amqp_link_publish(wp->link, wp->queue, id, body, strlen(body), &x->tag))
            return; /* the link broke: wp_on_down, then wp_on_up, publish again */
        x->tries++;
        wp->published++;
    }
}

struct worker_pointers *wp_new(struct event_base *base, struct amqp_link *link, const char *namespace_name)
{
    struct worker_pointers *wp = calloc(1, sizeof *wp);
    if (!wp)
        return NULL;
    wp->link = link;
    snprintf(wp->queue, sizeof wp->queue, "tasker_completion_%s", namespace_name);
    if (!(wp->retry = evtimer_new(base, wp_on_retry, wp))) {
        free(wp);
        return NULL;
    }
    return wp;
}

void wp_add(struct worker_pointers *wp, const char *task_uuid, const char *step_uuid, int attempt)
{
    for (size_t i = 0; i < wp->n; i++)
        if (wp->e[i].attempt == attempt && strcmp(wp->e[i].step, step_uuid) == 0)
            return; /* already on its way */
    if (wp->n == wp->cap) {
        size_t cap = wp->cap ? wp->cap * 2 : 32;
        struct wp_entry *grown = realloc(wp->e, cap * sizeof *grown);
        if (!grown) {
            log_error("worker", "out of memory: completion pointer of step %s not published (the sweep will find it)",
                      step_uuid);
            wp->dropped++;
            return;
        }
        wp->e = grown;
        wp->cap = cap;
    }
    struct wp_entry *x = &wp->e[wp->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->task, sizeof x->task, "%s", task_uuid);
    snprintf(x->step, sizeof x->step, "%s", step_uuid);
    x->attempt = attempt;
    wp_flush(wp);
}

void wp_on_up(struct worker_pointers *wp)
{
    wp->declared = false;
    wp_flush(wp);
}

void wp_on_down(struct worker_pointers *wp)
{
    /* Confirms of the old connection never come: everything unconfirmed is published again. */
    wp->declared = false;
    for (size_t i = 0; i < wp->n; i++) {
        wp->e[i].tag = 0;
        wp->e[i].returned = false;
    }
}

void wp_on_confirm(struct worker_pointers *wp, uint64_t tag, bool multiple, bool ack)
{
    bool retry = false;
    for (size_t i = 0; i < wp->n;) {
        struct wp_entry *x = &wp->e[i];
        if (!x->tag || x->tag > tag || (!multiple && x->tag != tag)) {
            i++;
            continue;
        }
        if (ack && !x->returned) {
            wp->confirmed++;
            wp_remove(wp, i);
            continue;
        }
        if (wp_again(wp, i)) {
            retry = true;
            i++;
        }
    }
    if (retry)
        event_add(wp->retry, &(struct timeval){ .tv_sec = WP_RETRY_MS / 1000, .tv_usec = (WP_RETRY_MS % 1000) * 1000 });
}

void wp_on_return(struct worker_pointers *wp, const char *message_id)
{
    wp->declared = false; /* unroutable: the queue is gone; declare it again before the next publish */
    for (size_t i = 0; i < wp->n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s:%d", wp->e[i].step, wp->e[i].attempt);
        if (wp->e[i].tag && strcmp(id, message_id) == 0)
            wp->e[i].returned = true;
    }
}

size_t wp_outstanding(const struct worker_pointers *wp)
{
    return wp ? wp->n : 0;
}

void wp_summary(const struct worker_pointers *wp, long long *published, long long *confirmed, long long *dropped)
{
    *published = wp->published;
    *confirmed = wp->confirmed;
    *dropped = wp->dropped;
}

void wp_free(struct worker_pointers *wp)
{
    if (!wp)
        return;
    if (wp->n)
        log_warn("worker", "%zu completion pointer(s) not confirmed by the broker at exit; the daemon's sweep will "
                 "find those hand-backs", wp->n);
    event_free(wp->retry);
    free(wp->e);
    free(wp);
}
