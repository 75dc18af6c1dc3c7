/* sweeper.c — the periodic stuck/stale sweep (detect_and_transition_stuck_tasks).
 *
 * The SQL takes an advisory lock, so with several daemons one sweeps and the others return at
 * once; every action it takes comes back as a row and is logged here, one line each.
 * With messaging.backend = rabbitmq each sweep is followed by recover_handed_back_steps: a
 * hand-back whose completion pointer never reached a daemon (the worker died between its commit
 * and its publish, the broker lost it) is processed from PostgreSQL's state once it has waited
 * sweeper.resend_grace_secs, the grace the sweep already gives a dispatch message.
 */
#include "sweeper.h"

#include "completions.h"
#include "db_pool.h"
#include "log.h"
#include "orchd.h"
#include "poller.h"
#include "relay.h"
#include "statements.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sweeper {
    struct orchd *o;
    struct event *timer;
    bool in_flight;
    bool stopping;
};

static void sweeper_rearm(struct sweeper *s)
{
    if (!s->stopping)
        timer_in_ms(s->timer, s->o->conf.sweeper_interval_secs * 1000LL);
}

static void sweeper_on_recovered(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct sweeper *s = arg;
    s->in_flight = false;
    if (err) {
        s->o->metrics.query_errors++;
        log_warn("sweeper", "recovering hand-backs without a completion pointer failed: %s", err->message);
    } else if (db_rows_count(rows) == 1 &&
               db_rows_int(rows, 0, 1) + db_rows_int(rows, 0, 2) + db_rows_int(rows, 0, 3) > 0) {
        /* Steps this call moved on; one another daemon's call or a late pointer took first is stale. */
        long long n = db_rows_int(rows, 0, 1) + db_rows_int(rows, 0, 2) + db_rows_int(rows, 0, 3);
        s->o->metrics.handbacks_recovered += (unsigned long long)n;
        s->o->metrics.sweep_actions += (unsigned long long)n;
        log_warn("sweeper", "%lld hand-back(s) waited %d s without their completion pointer; processed from PostgreSQL "
                 "(%lld completed, %lld retrying, %lld failed, %lld step(s) dispatched)", n,
                 s->o->conf.sweeper_resend_grace_secs, db_rows_int(rows, 0, 1), db_rows_int(rows, 0, 2),
                 db_rows_int(rows, 0, 3), db_rows_int(rows, 0, 6));
        poller_kick(s->o->poller);
    }
    sweeper_rearm(s);
}

/* sweeper_recover: messaging.backend = rabbitmq: after the sweep, the hand-backs whose pointer was lost. */
static bool sweeper_recover(struct sweeper *s)
{
    const struct conf *c = &s->o->conf;
    if (s->stopping || !s->o->db_up || c->sweeper_dry_run || strcmp(c->messaging_backend, "rabbitmq") != 0)
        return false;
    char grace[16], limit[16];
    snprintf(grace, sizeof grace, "%d", c->sweeper_resend_grace_secs);
    snprintf(limit, sizeof limit, "%d", c->sweeper_batch_size);
    const char *params[2] = { grace, limit };
    if (!db_pool_query(s->o->pool, STMT_RECOVER_HANDED_BACK, params, 2, sweeper_on_recovered, s))
        return false;
    s->in_flight = true;
    return true;
}

static void sweeper_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct sweeper *s = arg;
    s->in_flight = false;
    if (err) {
        s->o->metrics.query_errors++;
        log_warn("sweeper", "sweep failed: %s", err->message);
    } else {
        s->o->metrics.sweep_runs++;
        int acted = 0;
        for (int i = 0; i < db_rows_count(rows); i++) {
            const char *action = db_rows_text(rows, i, 0);
            if (strcmp(action, "skipped_locked") == 0) {
                log_debug("sweeper", "another daemon is sweeping");
                continue;
            }
            acted++;
            log_info("sweeper", "%s task=%s%s%s: %s", action, db_rows_text(rows, i, 1),
                     db_rows_isnull(rows, i, 2) ? "" : " step=", db_rows_text(rows, i, 2), db_rows_text(rows, i, 3));
        }
        s->o->metrics.sweep_actions += (unsigned long long)acted;
        if (acted > 0)
            poller_kick(s->o->poller); /* expired leases may have set retry times */
    }
    if (!sweeper_recover(s))
        sweeper_rearm(s);
}

static void sweeper_run(struct sweeper *s)
{
    const struct conf *c = &s->o->conf;
    if (s->stopping || s->in_flight)
        return;
    if (!s->o->db_up) {
        timer_in_ms(s->timer, c->sweeper_interval_secs * 1000LL);
        return;
    }
    char v[9][16], *drained = NULL;
    /* RabbitMQ: ask for each namespace's ready count now (this sweep uses what the last asks
     * learned; relay.c says why the sweep needs it). */
    if (s->o->relay) {
        for (size_t i = 0; i < completions_namespace_count(s->o->completions); i++)
            relay_probe(s->o->relay, completions_namespace(s->o->completions, i));
        drained = relay_broker_drained(s->o->relay);
    }
    snprintf(v[0], 16, "%d", c->sweeper_batch_size);
    snprintf(v[1], 16, "%s", c->sweeper_dry_run ? "true" : "false");
    snprintf(v[2], 16, "%d", c->stale_waiting_for_dependencies_minutes);
    snprintf(v[3], 16, "%d", c->stale_waiting_for_retry_minutes);
    snprintf(v[4], 16, "%d", c->stale_steps_in_process_minutes);
    snprintf(v[5], 16, "%d", c->stale_blocked_by_failures_minutes);
    snprintf(v[6], 16, "%d", c->stale_task_max_lifetime_hours);
    snprintf(v[7], 16, "%d", c->sweeper_resend_grace_secs);
    snprintf(v[8], 16, "%d", c->sweeper_reevaluate_after_secs);
    const char *params[10];
    for (int i = 0; i < 9; i++)
        params[i] = v[i];
    /* NULL: PGMQ, where a message gone from its queue is lost; "{}" (no memory): hold them all. */
    params[9] = s->o->relay ? (drained ? drained : "{}") : NULL;
    if (db_pool_query(s->o->pool, STMT_SWEEP, params, 10, sweeper_on_result, s))
        s->in_flight = true;
    else
        timer_in_ms(s->timer, c->sweeper_interval_secs * 1000LL);
    free(drained);
}

static void sweeper_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweeper_run(arg);
}

struct sweeper *sweeper_new(struct orchd *o)
{
    struct sweeper *s = calloc(1, sizeof *s);
    if (!s || !(s->timer = evtimer_new(o->base, sweeper_on_timer, s))) {
        log_error("sweeper", "out of memory");
        free(s);
        return NULL;
    }
    s->o = o;
    return s;
}

void sweeper_start(struct sweeper *s)
{
    timer_in_ms(s->timer, s->o->conf.sweeper_interval_secs * 1000LL);
}

void sweeper_kick(struct sweeper *s)
{
    if (s && !s->stopping && !s->in_flight)
        timer_in_ms(s->timer, 0);
}

void sweeper_stop(struct sweeper *s)
{
    s->stopping = true;
    evtimer_del(s->timer);
}

void sweeper_free(struct sweeper *s)
{
    if (!s)
        return;
    event_free(s->timer);
    free(s);
}
