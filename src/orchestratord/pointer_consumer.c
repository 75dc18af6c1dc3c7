/* pointer_consumer.c — messaging.backend = rabbitmq: consumes completion pointers
 * ({"step_uuid", "attempt"}, published by workers after their hand-back committed) from one
 * namespace's durable RabbitMQ queue tasker_completion_<ns>.
 *
 * One AMQP connection per namespace (amqp_link with consume_queue): the queue is declared when the
 * namespace first appears (the link's connect declares it), never per message, and a namespace's
 * prefetch window (messaging.rabbitmq.prefetch) and reconnects are its own, so a busy namespace
 * cannot hold the quiet ones' pointers behind its own.
 * Deliveries are buffered; the first one read arms a zero-delay timer, so everything one drain of
 * the socket brought becomes one batch. One call at a time: up to completions.batch_size buffered
 * deliveries go to tasker.process_completion_pointers in one transaction, and only after it
 * committed are they acked. Whatever arrives meanwhile (up to the prefetch) forms the next batch.
 * A failed call keeps the deliveries and tries again after completions.interval_ms. When the link
 * breaks, unacked deliveries go back to the queue at the broker and their tags are void: the
 * buffer is dropped (a call in flight keeps its prefix until it returns, then drops it unacked);
 * the broker redelivers them and the SQL's compare-and-swap makes a second processing a no-op.
 */
#include "pointer_consumer.h"

#include "amqp_link.h"
#include "db_pool.h"
#include "log.h"
#include "orchd.h"
#include "statements.h"
#include "timer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pointer_consumer {
    struct orchd *o;
    char ns[32];
    char queue[64];
    struct amqp_link *link;
    void (*record)(void *arg, const struct db_rows *rows);
    void *record_arg;
    struct event *run_ev;   /* zero-delay batching, and the retry after a failed call */
    json_t *buf;            /* [{msg_id: delivery tag, message}] in arrival order */
    uint64_t *tags;         /* their delivery tags */
    size_t ntags, captags;
    size_t call_n;          /* buf[0..call_n) are in the call in flight */
    unsigned gen, call_gen; /* link generation: tags of an older connection are void */
    bool in_flight, stopping;
    struct pointer_stats st;
};

static void pc_run(struct pointer_consumer *pc);

static void pc_on_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pc_run(arg);
}

/* pc_drop: forget buf[0..n) and their tags. */
static void pc_drop(struct pointer_consumer *pc, size_t n)
{
    if (n > pc->ntags)
        n = pc->ntags;
    memmove(pc->tags, pc->tags + n, (pc->ntags - n) * sizeof *pc->tags);
    pc->ntags -= n;
    for (size_t i = 0; i < n; i++)
        json_array_remove(pc->buf, 0);
}

static void pc_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct pointer_consumer *pc = arg;
    size_t n = pc->call_n;
    pc->in_flight = false;
    pc->call_n = 0;
    if (err || db_rows_count(rows) != 1) {
        if (err) {
            pc->o->metrics.query_errors++;
            log_warn("completions", "process_completion_pointers(%s) failed: %s%s%s; %zu pointer(s) kept for the next "
                     "try", pc->ns, err->message, err->sqlstate[0] ? " SQLSTATE " : "", err->sqlstate, n);
        }
        if (pc->call_gen != pc->gen)
            pc_drop(pc, n); /* void tags: the broker redelivers them */
        if (!pc->stopping)
            timer_in_ms(pc->run_ev, pc->o->conf.completions_interval_ms);
        return;
    }
    pc->st.rejected += (unsigned long long)db_rows_int(rows, 0, 5);
    pc->record(pc->record_arg, rows);
    /* Committed: settle them at the broker. A link lost meanwhile voided the tags (redelivered,
     * then stale); an ack that fails means the same. */
    if (pc->call_gen == pc->gen)
        for (size_t i = 0; i < n; i++) {
            if (!amqp_link_ack(pc->link, pc->tags[i]))
                break;
            pc->st.acked++;
        }
    pc_drop(pc, n);
    if (json_array_size(pc->buf) > 0)
        pc_run(pc);
}

static void pc_run(struct pointer_consumer *pc)
{
    size_t n = json_array_size(pc->buf);
    if (pc->stopping || pc->in_flight || n == 0)
        return;
    if (!pc->o->db_up) {
        timer_in_ms(pc->run_ev, pc->o->conf.completions_interval_ms); /* and pc_kick when it comes back */
        return;
    }
    if (n > (size_t)pc->o->conf.completions_batch_size)
        n = (size_t)pc->o->conf.completions_batch_size;
    json_t *batch = json_array();
    for (size_t i = 0; batch && i < n; i++)
        json_array_append(batch, json_array_get(pc->buf, i));
    char *text = batch ? json_dumps(batch, JSON_COMPACT) : NULL;
    json_decref(batch);
    if (!text) {
        log_error("completions", "out of memory");
        timer_in_ms(pc->run_ev, pc->o->conf.completions_interval_ms);
        return;
    }
    const char *params[2] = { pc->ns, text };
    if (db_pool_query(pc->o->pool, STMT_PROCESS_POINTERS, params, 2, pc_on_result, pc)) {
        pc->in_flight = true;
        pc->call_n = n;
        pc->call_gen = pc->gen;
        evtimer_del(pc->run_ev);
    } else {
        timer_in_ms(pc->run_ev, pc->o->conf.completions_interval_ms);
    }
    free(text);
}

static void pc_on_delivery(void *arg, uint64_t tag, bool redelivered, const char *message_id, const char *body,
                           size_t len)
{
    (void)message_id;
    struct pointer_consumer *pc = arg;
    if (pc->ntags == pc->captags) {
        size_t cap = pc->captags ? pc->captags * 2 : 64;
        uint64_t *grown = realloc(pc->tags, cap * sizeof *grown);
        if (!grown) {
            log_error("completions", "out of memory; pointer left unacked (redelivered after a reconnect)");
            return;
        }
        pc->tags = grown;
        pc->captags = cap;
    }
    json_error_t jerr;
    /* Not JSON: passed on as a string, so the SQL records it as malformed and it is acked. */
    json_t *msg = json_loadb(body, len, 0, &jerr);
    if (!msg)
        msg = json_stringn_nocheck(body, len);
    if (json_array_append_new(pc->buf, json_pack("{s:I, s:o}", "msg_id", (json_int_t)(tag & 0x7fffffffffffffffULL),
                                                 "message", msg)) != 0) {
        log_error("completions", "out of memory; pointer left unacked (redelivered after a reconnect)");
        return;
    }
    pc->tags[pc->ntags++] = tag;
    pc->st.consumed++;
    if (redelivered)
        pc->st.redelivered++;
    if (!pc->in_flight)
        timer_in_ms(pc->run_ev, 0); /* after this drain: one batch for everything it read */
}

static void pc_on_down(void *arg, const char *why)
{
    struct pointer_consumer *pc = arg;
    (void)why;
    pc->gen++;
    size_t keep = pc->in_flight ? pc->call_n : 0;
    while (json_array_size(pc->buf) > keep)
        json_array_remove(pc->buf, keep);
    if (pc->ntags > keep)
        pc->ntags = keep;
}

struct pointer_consumer *pc_new(struct orchd *o, const char *ns, void (*record)(void *arg, const struct db_rows *rows),
                                void *arg)
{
    struct pointer_consumer *pc = calloc(1, sizeof *pc);
    if (!pc)
        return NULL;
    pc->o = o;
    pc->record = record;
    pc->record_arg = arg;
    snprintf(pc->ns, sizeof pc->ns, "%s", ns);
    snprintf(pc->queue, sizeof pc->queue, "tasker_completion_%s", ns);
    const struct conf *c = &o->conf;
    struct amqp_link_opts lo = {
        .url = c->rabbitmq_url, .tag = "amqp", .heartbeat_secs = c->rabbitmq_heartbeat_secs,
        .timeout_ms = c->rabbitmq_confirm_timeout_ms, .reconnect_initial_ms = c->pool_reconnect_initial_ms,
        .reconnect_max_ms = c->pool_reconnect_max_ms, .consume_queue = pc->queue, .prefetch = c->rabbitmq_prefetch,
    };
    struct amqp_link_handlers h = { .on_delivery = pc_on_delivery, .on_down = pc_on_down };
    pc->buf = json_array();
    pc->run_ev = evtimer_new(o->base, pc_on_run, pc);
    pc->link = pc->buf && pc->run_ev ? amqp_link_new(o->base, &lo, &h, pc) : NULL;
    if (!pc->link) {
        pc_free(pc);
        return NULL;
    }
    return pc;
}

void pc_start(struct pointer_consumer *pc)
{
    amqp_link_start(pc->link);
}

void pc_kick(struct pointer_consumer *pc)
{
    if (pc)
        pc_run(pc);
}

int pc_in_flight(const struct pointer_consumer *pc)
{
    return pc && pc->in_flight;
}

void pc_stats_add(const struct pointer_consumer *pc, struct pointer_stats *sum)
{
    sum->consumed += pc->st.consumed;
    sum->redelivered += pc->st.redelivered;
    sum->acked += pc->st.acked;
    sum->rejected += pc->st.rejected;
    sum->links++;
    sum->links_up += amqp_link_is_up(pc->link);
}

void pc_stop(struct pointer_consumer *pc)
{
    if (!pc)
        return;
    pc->stopping = true;
    evtimer_del(pc->run_ev);
}

void pc_free(struct pointer_consumer *pc)
{
    if (!pc)
        return;
    amqp_link_free(pc->link);
    if (pc->run_ev)
        event_free(pc->run_ev);
    json_decref(pc->buf);
    free(pc->tags);
    free(pc);
}
