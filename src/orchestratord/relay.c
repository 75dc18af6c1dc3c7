/* relay.c — messaging.backend = rabbitmq: the dispatch relay from the PGMQ outbox to RabbitMQ.
 *
 * The SQL keeps sending dispatch messages into tasker_dispatch_<ns> in the transaction that
 * enqueues the step, so that queue is the transactional outbox. One burst at a time:
 *   1. relay_read_dispatch(vt, relay_batch) takes up to relay_batch visible messages per
 *      namespace and hides them for vt (PGMQ read semantics: two daemons split the work);
 *   2. each is published, persistent and mandatory, to the RabbitMQ queue of the same name on a
 *      confirm channel (a namespace's queue is declared, durable, the first time a burst has it);
 *   3. when every confirm is in (or confirm_timeout_ms passed), one relay_archive_dispatch
 *      archives the messages the broker acked and routed — as PGMQ mode's hand-back archives.
 * A nack, a return, a confirm timeout, a broker or daemon crash anywhere in between leaves the
 * message in PGMQ; it is read and published again once its vt expires: at-least-once. The worker's
 * claim fences duplicates by (step, attempt, state enqueued).
 * Lost inside RabbitMQ: once archived here, "gone from the outbox" no longer says a message is
 * lost, since it may wait in the broker behind a backlog. So before each sweep the relay asks the
 * broker for every namespace's ready count (relay_probe, an asynchronous queue.declare) and
 * remembers when each queue was last seen with nothing ready; the sweep re-sends an enqueued step
 * only if its message was archived before that moment (relay_broker_drained). A queue never seen
 * drained holds its steps: a backlog is never mistaken for loss.
 * Wake-ups: NOTIFY on a dispatch queue (the listener), a full burst (more may wait), and a
 * fallback timer with the completions' interval and idle backoff, so an idle database is polled no
 * more often than the completions already poll it.
 */
#include "relay.h"

#include "amqp_link.h"
#include "backoff.h"
#include "db_pool.h"
#include "fault.h"
#include "log.h"
#include "names.h"
#include "orchd.h"
#include "statements.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISPATCH_PREFIX "tasker_dispatch_"

enum relay_phase { RELAY_IDLE, RELAY_READING, RELAY_CONFIRMING, RELAY_ARCHIVING };

struct relay_msg {
    char ns[NAMESPACE_NAME_MAX + 1];
    long long msg_id;
};

/* One namespace's RabbitMQ dispatch queue: declared on this connection?, and what the broker said
 * of it. Declares (relay_declare) and probes (relay_probe) are both a queue.declare whose answers
 * come back in order; a probe goes out only when no answer is pending, so the next answer after
 * it is its own. */
struct relay_queue {
    char ns[NAMESPACE_NAME_MAX + 1];
    bool declared;        /* on this connection */
    int pending;          /* declare answers still to come */
    long long asked_ms;   /* mono_ms() the probe in flight was sent; 0 = none in flight */
    long long drained_ms; /* mono_ms() of the last probe answered with 0 ready; 0 = never */
    long long ready;      /* the last probe's ready count; -1 = none yet */
};

struct relay {
    struct orchd *o;
    struct amqp_link *link;
    enum relay_phase phase;
    struct event *timer;         /* fallback poll */
    struct event *confirm_timer; /* confirm_timeout_ms of the burst in flight */
    struct idle_backoff idle;
    bool again, stopping;
    bool die_before_publish;     /* TASKER_FAULT_INJECT=relay-before-publish (tests only) */
    struct amqp_confirms cf;
    struct relay_msg *msgs;      /* the burst: msgs[i] was published with tag cf.first + i */
    size_t nmsgs, capmsgs;
    struct relay_queue *queues;  /* one per namespace relayed to or probed */
    size_t nqueues, capqueues;
    struct relay_stats st;
};

static void relay_run(struct relay *r);

static void relay_arm(struct relay *r, long long ms)
{
    if (!r->stopping)
        timer_in_ms(r->timer, ms);
}

static void relay_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    relay_run(arg);
}

/* relay_done: the burst is over; plan the next one. */
static void relay_done(struct relay *r, long long read)
{
    r->phase = RELAY_IDLE;
    r->nmsgs = 0;
    amqp_confirms_reset(&r->cf);
    r->st.in_flight = 0;
    const struct conf *c = &r->o->conf;
    if (r->again || (read > 0 && amqp_link_is_up(r->link))) {
        r->again = false;
        relay_run(r);
    } else {
        relay_arm(r, idle_backoff_next(&r->idle, read > 0, c->completions_interval_ms, c->completions_idle_interval_ms));
    }
}

static void on_archived(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct relay *r = arg;
    long long read = (long long)r->nmsgs;
    if (err) {
        r->o->metrics.query_errors++;
        log_warn("relay", "archiving relayed dispatch messages failed: %s (they are published again after their vt)",
                 err->message);
    } else {
        r->st.archived += (unsigned long long)db_rows_int(rows, 0, 0);
    }
    relay_done(r, read);
}

/* append: add s to buf (capacity cap); false when it does not fit. */
static bool append(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > cap)
        return false;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return true;
}

/* relay_settle: every confirm is in, or the wait is over: archive what was acked and routed. */
static void relay_settle(struct relay *r)
{
    evtimer_del(r->confirm_timer);
    size_t cap = r->nmsgs * (NAMESPACE_NAME_MAX + 24) + 8;
    char *names = malloc(cap), *ids = malloc(cap);
    size_t nl = 0, il = 0, n = 0;
    bool ok = names && ids && append(names, cap, &nl, "{") && append(ids, cap, &il, "{");
    for (size_t i = 0; ok && i < r->nmsgs; i++) {
        if (r->cf.st[i] != AMQP_CONFIRM_ACKED)
            continue;
        char id[32];
        snprintf(id, sizeof id, "%s%lld", n ? "," : "", r->msgs[i].msg_id);
        ok = (!n || append(names, cap, &nl, ",")) && append(names, cap, &nl, r->msgs[i].ns) && append(ids, cap, &il, id);
        n++;
    }
    r->st.confirms += n;
    ok = ok && append(names, cap, &nl, "}") && append(ids, cap, &il, "}");
    if (n > 0 && ok && r->o->db_up) {
        const char *params[2] = { names, ids };
        if (db_pool_query(r->o->pool, STMT_RELAY_ARCHIVE, params, 2, on_archived, r)) {
            r->phase = RELAY_ARCHIVING;
            free(names);
            free(ids);
            return;
        }
    }
    if (n > 0)
        log_warn("relay", "could not archive %zu confirmed dispatch message(s) now; they are published again after their vt", n);
    free(names);
    free(ids);
    relay_done(r, (long long)r->nmsgs);
}

static void relay_on_confirm_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct relay *r = arg;
    if (r->phase != RELAY_CONFIRMING)
        return;
    r->st.confirm_timeouts++;
    log_warn("relay", "%zu of %zu confirm(s) did not come within %d ms; those messages are published again after their vt",
             r->cf.n - r->cf.settled, r->cf.n, r->o->conf.rabbitmq_confirm_timeout_ms);
    relay_settle(r);
}

static struct relay_queue *relay_queue_of(struct relay *r, const char *ns, bool add)
{
    for (size_t i = 0; i < r->nqueues; i++)
        if (strcmp(r->queues[i].ns, ns) == 0)
            return &r->queues[i];
    if (!add)
        return NULL;
    if (r->nqueues == r->capqueues) {
        size_t cap = r->capqueues ? r->capqueues * 2 : 8;
        void *grown = realloc(r->queues, cap * sizeof *r->queues);
        if (!grown)
            return NULL;
        r->queues = grown;
        r->capqueues = cap;
    }
    struct relay_queue *q = &r->queues[r->nqueues++];
    *q = (struct relay_queue){ .ready = -1 };
    snprintf(q->ns, sizeof q->ns, "%s", ns);
    return q;
}

/* relay_forget_link: the connection changed: declare again; answers pending will not come. */
static void relay_forget_link(struct relay *r)
{
    for (size_t i = 0; i < r->nqueues; i++) {
        r->queues[i].declared = false;
        r->queues[i].pending = 0;
        r->queues[i].asked_ms = 0;
    }
}

/* relay_declare: the namespace's durable queue, once per connection (not per message; sent
 * without waiting: the publishes that follow on the channel find it). */
static bool relay_declare(struct relay *r, const char *ns)
{
    struct relay_queue *q = relay_queue_of(r, ns, true);
    if (!q)
        return false;
    if (q->declared)
        return true;
    char queue[64];
    snprintf(queue, sizeof queue, DISPATCH_PREFIX "%s", ns);
    if (!amqp_link_declare(r->link, queue))
        return false;
    q->declared = true;
    q->pending++;
    log_info("relay", "declared RabbitMQ queue %s", queue);
    return true;
}

static void on_read(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct relay *r = arg;
    if (err) {
        r->o->metrics.query_errors++;
        log_warn("relay", "reading the dispatch outbox failed: %s", err->message);
        r->phase = RELAY_IDLE;
        relay_arm(r, r->o->conf.completions_interval_ms);
        return;
    }
    int n = db_rows_count(rows);
    r->st.last_batch = n;
    if (n == 0) {
        relay_done(r, 0);
        return;
    }
    /* The read committed (the burst is hidden for its vt) and nothing is published yet: the crash
     * window tests/db/86_rabbitmq_faults.sh must hit. */
    if (r->die_before_publish)
        fault_kill(FAULT_RELAY_BEFORE_PUBLISH);
    if ((size_t)n > r->capmsgs) {
        void *grown = realloc(r->msgs, (size_t)n * sizeof *r->msgs);
        if (!grown) {
            log_error("relay", "out of memory");
            relay_done(r, 0);
            return;
        }
        r->msgs = grown;
        r->capmsgs = (size_t)n;
    }
    r->nmsgs = 0;
    amqp_confirms_reset(&r->cf);
    for (int i = 0; i < n; i++) {
        const char *ns = db_rows_text(rows, i, 0);
        long long id = db_rows_int(rows, i, 1);
        const char *body = db_rows_text(rows, i, 3);
        char queue[64], mid[32];
        uint64_t tag;
        snprintf(queue, sizeof queue, DISPATCH_PREFIX "%s", ns);
        snprintf(mid, sizeof mid, "%lld", id);
        /* A failure here means the link broke: what was not published stays hidden until its vt. */
        if (!relay_declare(r, ns) || !amqp_link_publish(r->link, queue, mid, body, strlen(body), &tag) ||
            !amqp_confirms_add(&r->cf, tag))
            break;
        snprintf(r->msgs[r->nmsgs].ns, sizeof r->msgs[0].ns, "%s", ns);
        r->msgs[r->nmsgs].msg_id = id;
        r->nmsgs++;
        r->st.publishes++;
        if (db_rows_int(rows, i, 2) > 1)
            r->st.republished++;
    }
    log_debug("relay", "published %zu of %d dispatch message(s)", r->nmsgs, n);
    if (r->nmsgs == 0) {
        r->phase = RELAY_IDLE;
        relay_arm(r, r->o->conf.completions_interval_ms);
        return;
    }
    r->phase = RELAY_CONFIRMING;
    r->st.in_flight = (long long)r->nmsgs;
    timer_in_ms(r->confirm_timer, r->o->conf.rabbitmq_confirm_timeout_ms);
}

/* relay_vt: how long a read message stays hidden: past the confirm wait, with margin, so a burst
 * is settled before anyone can read its messages again. */
static int relay_vt(const struct relay *r)
{
    return (r->o->conf.rabbitmq_confirm_timeout_ms + 999) / 1000 * 2 + 1;
}

static void relay_run(struct relay *r)
{
    if (r->stopping)
        return;
    if (r->phase != RELAY_IDLE) {
        r->again = true;
        return;
    }
    if (!r->o->db_up || !amqp_link_is_up(r->link)) {
        relay_arm(r, r->o->conf.completions_interval_ms); /* and UP events kick us */
        return;
    }
    char vt[16], qty[16];
    snprintf(vt, sizeof vt, "%d", relay_vt(r));
    snprintf(qty, sizeof qty, "%d", r->o->conf.rabbitmq_relay_batch);
    const char *params[2] = { vt, qty };
    if (db_pool_query(r->o->pool, STMT_RELAY_READ, params, 2, on_read, r)) {
        r->phase = RELAY_READING;
        evtimer_del(r->timer);
    } else {
        relay_arm(r, r->o->conf.completions_interval_ms);
    }
}

void relay_probe(struct relay *r, const char *ns)
{
    if (!r || !amqp_link_is_up(r->link) || !namespace_name_valid(ns))
        return;
    struct relay_queue *q = relay_queue_of(r, ns, true);
    if (!q || q->asked_ms || q->pending)
        return; /* an answer is on its way: it would be credited to this probe */
    char queue[64];
    snprintf(queue, sizeof queue, DISPATCH_PREFIX "%s", ns);
    if (amqp_link_declare(r->link, queue)) {
        q->asked_ms = mono_ms();
        q->pending++;
    }
}

static void link_on_queue_depth(void *arg, const char *queue, uint32_t ready, uint32_t consumers)
{
    (void)consumers;
    struct relay *r = arg;
    if (strncmp(queue, DISPATCH_PREFIX, strlen(DISPATCH_PREFIX)) != 0)
        return;
    struct relay_queue *q = relay_queue_of(r, queue + strlen(DISPATCH_PREFIX), false);
    if (!q || q->pending == 0)
        return;
    q->pending--;
    if (!q->asked_ms)
        return; /* a declare's answer */
    q->ready = ready;
    if (ready == 0)
        q->drained_ms = q->asked_ms;
    q->asked_ms = 0;
}

char *relay_broker_drained(const struct relay *r)
{
    size_t cap = r->nqueues * (NAMESPACE_NAME_MAX + 32) + 3, len = 1;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '{';
    long long now = mono_ms();
    for (size_t i = 0; i < r->nqueues; i++) {
        if (!r->queues[i].drained_ms)
            continue;
        /* One second of margin: the sweep's now() is taken a little after this moment. */
        double ago = (double)(now - r->queues[i].drained_ms) / 1000.0 + 1.0;
        len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\": %.3f", len > 1 ? ", " : "", r->queues[i].ns, ago);
    }
    snprintf(buf + len, cap - len, "}");
    return buf;
}

static void link_on_up(void *arg)
{
    struct relay *r = arg;
    relay_forget_link(r); /* a new connection: declare again (idempotent at the broker) */
    relay_kick_all(r);
}

static void link_on_down(void *arg, const char *why)
{
    struct relay *r = arg;
    snprintf(r->st.last_error, sizeof r->st.last_error, "%s", why);
    relay_forget_link(r);
    if (r->phase == RELAY_CONFIRMING) {
        /* Those confirms will never come; the messages come back after their vt. */
        relay_settle(r);
    }
}

static void link_on_confirm(void *arg, uint64_t tag, bool multiple, bool ack)
{
    struct relay *r = arg;
    if (r->phase != RELAY_CONFIRMING)
        return; /* a late confirm of a burst already settled: its messages are handled by vt */
    if (!ack) {
        size_t before = r->cf.settled;
        amqp_confirms_settle(&r->cf, tag, multiple, false);
        r->st.nacks += r->cf.settled - before;
    } else {
        amqp_confirms_settle(&r->cf, tag, multiple, true);
    }
    if (amqp_confirms_done(&r->cf))
        relay_settle(r);
}

static void link_on_return(void *arg, const char *routing_key, const char *message_id, int reply_code)
{
    struct relay *r = arg;
    r->st.returns++;
    log_warn("relay", "RabbitMQ returned message %s for %s (%d): not archived, published again after its vt",
             message_id, routing_key, reply_code);
    for (size_t i = 0; i < r->nqueues; i++)
        r->queues[i].declared = false; /* declare again before the next publish */
    if (r->phase != RELAY_CONFIRMING || strncmp(routing_key, DISPATCH_PREFIX, strlen(DISPATCH_PREFIX)) != 0)
        return;
    const char *ns = routing_key + strlen(DISPATCH_PREFIX);
    long long id = strtoll(message_id, NULL, 10);
    for (size_t i = 0; i < r->nmsgs; i++)
        if (r->msgs[i].msg_id == id && strcmp(r->msgs[i].ns, ns) == 0)
            amqp_confirms_returned(&r->cf, i);
    if (amqp_confirms_done(&r->cf))
        relay_settle(r);
}

struct relay *relay_new(struct orchd *o)
{
    struct relay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->o = o;
    r->die_before_publish = fault_armed(FAULT_RELAY_BEFORE_PUBLISH);
    const struct conf *c = &o->conf;
    struct amqp_link_opts lo = {
        .url = c->rabbitmq_url, .tag = "amqp", .heartbeat_secs = c->rabbitmq_heartbeat_secs,
        .timeout_ms = c->rabbitmq_confirm_timeout_ms, .reconnect_initial_ms = c->pool_reconnect_initial_ms,
        .reconnect_max_ms = c->pool_reconnect_max_ms, .confirms = true,
    };
    struct amqp_link_handlers h = {
        .on_up = link_on_up, .on_down = link_on_down, .on_confirm = link_on_confirm, .on_return = link_on_return,
        .on_queue_depth = link_on_queue_depth,
    };
    r->timer = evtimer_new(o->base, relay_on_timer, r);
    r->confirm_timer = evtimer_new(o->base, relay_on_confirm_timeout, r);
    r->link = amqp_link_new(o->base, &lo, &h, r);
    if (!r->timer || !r->confirm_timer || !r->link) {
        log_error("relay", "out of memory");
        relay_free(r);
        return NULL;
    }
    return r;
}

void relay_start(struct relay *r)
{
    char masked[CONF_URL_MAX];
    amqp_url_mask(r->o->conf.rabbitmq_url, masked, sizeof masked);
    log_info("relay", "messaging.backend = rabbitmq: relaying dispatch messages to %s", masked);
    amqp_link_start(r->link);
}

void relay_kick(struct relay *r, const char *queue)
{
    if (r && strncmp(queue, DISPATCH_PREFIX, strlen(DISPATCH_PREFIX)) == 0)
        relay_kick_all(r);
}

void relay_kick_all(struct relay *r)
{
    if (!r)
        return;
    idle_backoff_reset(&r->idle);
    relay_run(r);
}

bool relay_link_up(const struct relay *r)
{
    return r && amqp_link_is_up(r->link);
}

void relay_stats(const struct relay *r, struct relay_stats *out)
{
    *out = r->st;
    out->link_up = amqp_link_is_up(r->link);
    out->link_connects = amqp_link_connects(r->link);
    if (!out->link_up)
        snprintf(out->last_error, sizeof out->last_error, "%s", amqp_link_last_error(r->link));
}

bool relay_busy(const struct relay *r)
{
    return r && (r->phase == RELAY_READING || r->phase == RELAY_ARCHIVING);
}

void relay_stop(struct relay *r)
{
    if (!r)
        return;
    r->stopping = true;
    evtimer_del(r->timer);
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    amqp_link_free(r->link);
    if (r->timer)
        event_free(r->timer);
    if (r->confirm_timer)
        event_free(r->confirm_timer);
    amqp_confirms_free(&r->cf);
    free(r->msgs);
    free(r->queues);
    free(r);
}
