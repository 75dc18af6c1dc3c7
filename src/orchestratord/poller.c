/* poller.c — the ready-step poll: dispatches retries whose backoff passed (enqueue_ready_steps).
 *
 * Sleeps until the earlier of its interval and the next retry the database reports, so a retry
 * with a 100 ms backoff goes out after ~100 ms, not after the next interval. A full batch runs
 * again at once. While polls find nothing to dispatch the interval doubles, from
 * poller.interval_ms up to poller.idle_interval_ms, so an idle daemon asks rarely; a poll that
 * dispatched, a kick (a retry was just scheduled, the sweeper acted, the database or LISTEN came
 * back, a reload) or completions being processed bring it back to the base interval at once.
 * Retry times need no base-rate polling: the database reports the earliest one and we wake for
 * it exactly, whatever the backoff says.
 */
#include "poller.h"

#include "db_pool.h"
#include "log.h"
#include "orchd.h"
#include "statements.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct poller {
    struct orchd *o;
    struct event *timer;
    struct idle_backoff idle;
    long long due_ms;       /* monotonic time the timer fires at, while it is armed */
    bool in_flight;
    bool again;
    bool stopping;
};

static void poller_arm(struct poller *p, long long ms)
{
    if (ms < 0)
        ms = 0;
    p->due_ms = mono_ms() + ms;
    timer_in_ms(p->timer, ms);
}

long long poller_plan(struct idle_backoff *idle, const struct poller_pass *r, int batch_size, long long base_ms,
                      long long ceiling_ms)
{
    if (!r->ok) {
        idle_backoff_reset(idle);
        return base_ms;
    }
    /* A full batch that dispatched something: more may be waiting. A full batch that dispatched
     * nothing (tasks held back by a failed step) must not turn into a busy loop. */
    if (r->touched >= batch_size && r->enqueued > 0) {
        idle_backoff_reset(idle);
        return 0;
    }
    long long next = idle_backoff_next(idle, r->enqueued > 0, base_ms, ceiling_ms);
    if (r->retry_pending && r->retry_in_ms < next)
        next = r->retry_in_ms + 1; /* just after the earliest retry is due */
    return next < 0 ? 0 : next;
}

static void poller_run(struct poller *p);

static void poller_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct poller *p = arg;
    const struct conf *c = &p->o->conf;
    p->in_flight = false;
    struct poller_pass pass = { .ok = false };
    if (err) {
        p->o->metrics.query_errors++;
        log_warn("poller", "enqueue_ready_steps failed: %s", err->message);
    } else if (db_rows_count(rows) == 1) {
        pass.ok = true;
        pass.enqueued = db_rows_int(rows, 0, 0);
        pass.touched = db_rows_int(rows, 0, 1);
        pass.retry_pending = !db_rows_isnull(rows, 0, 2);
        pass.retry_in_ms = db_rows_int(rows, 0, 2);
        p->o->metrics.poll_runs++;
        p->o->metrics.steps_enqueued += (unsigned long long)pass.enqueued;
        if (pass.enqueued > 0)
            log_debug("poller", "dispatched %lld step(s) of %lld task(s)", pass.enqueued, pass.touched);
    }
    long long next_ms = poller_plan(&p->idle, &pass, c->poller_batch_size, c->poller_interval_ms,
                                    c->poller_idle_interval_ms);
    if (p->again) {
        p->again = false;
        next_ms = 0;
    }
    if (!p->stopping)
        poller_arm(p, next_ms);
}

static void poller_run(struct poller *p)
{
    if (p->stopping)
        return;
    if (!p->o->db_up) {
        poller_arm(p, p->o->conf.poller_interval_ms);
        return;
    }
    char limit[16];
    snprintf(limit, sizeof limit, "%d", p->o->conf.poller_batch_size);
    const char *params[1] = { limit };
    if (db_pool_query(p->o->pool, STMT_ENQUEUE_READY, params, 1, poller_on_result, p))
        p->in_flight = true;
    else
        poller_arm(p, p->o->conf.poller_interval_ms);
}

static void poller_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poller_run(arg);
}

struct poller *poller_new(struct orchd *o)
{
    struct poller *p = calloc(1, sizeof *p);
    if (!p || !(p->timer = evtimer_new(o->base, poller_on_timer, p))) {
        log_error("poller", "out of memory");
        free(p);
        return NULL;
    }
    p->o = o;
    return p;
}

void poller_start(struct poller *p)
{
    poller_arm(p, 0);
}

void poller_kick(struct poller *p)
{
    if (!p || p->stopping)
        return;
    idle_backoff_reset(&p->idle);
    if (p->in_flight)
        p->again = true;
    else
        poller_arm(p, 0);
}

void poller_note_activity(struct poller *p)
{
    if (!p || p->stopping)
        return;
    idle_backoff_reset(&p->idle);
    /* A call in flight plans from the reset state when it returns; an armed timer further out than
     * the base interval is brought in (one that fires sooner, for a retry, is left alone). */
    long long base = p->o->conf.poller_interval_ms;
    if (!p->in_flight && evtimer_pending(p->timer, NULL) && p->due_ms - mono_ms() > base)
        poller_arm(p, base);
}

void poller_stop(struct poller *p)
{
    p->stopping = true;
    evtimer_del(p->timer);
}

void poller_free(struct poller *p)
{
    if (!p)
        return;
    event_free(p->timer);
    free(p);
}
