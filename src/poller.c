/* poller.c — the ready-step poll: dispatches retries whose backoff passed (enqueue_ready_steps).
 *
 * Sleeps until the earlier of its interval and the next retry the database reports, so a retry
 * with a 100 ms backoff goes out after ~100 ms, not after the next interval, and an idle daemon
 * asks once per interval. A full batch runs again at once.
 */
#include "poller.h"

#include "db_pool.h"
#include "log.h"
#include "orchd.h"
#include "statements.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>

struct poller {
    struct orchd *o;
    struct event *timer;
    bool in_flight;
    bool again;
    bool stopping;
};

static void poller_run(struct poller *p);

static void poller_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct poller *p = arg;
    p->in_flight = false;
    long long next_ms = p->o->conf.poller_interval_ms;
    if (err) {
        p->o->metrics.query_errors++;
        log_warn("poller", "enqueue_ready_steps failed: %s", err->message);
    } else if (db_rows_count(rows) == 1) {
        long long enqueued = db_rows_int(rows, 0, 0);
        long long touched = db_rows_int(rows, 0, 1);
        p->o->metrics.poll_runs++;
        p->o->metrics.steps_enqueued += (unsigned long long)enqueued;
        if (enqueued > 0)
            log_debug("poller", "dispatched %lld step(s) of %lld task(s)", enqueued, touched);
        /* A full batch that dispatched something: more may be waiting. A full batch that dispatched
         * nothing (tasks held back by a failed step) must not turn into a busy loop. */
        if (touched >= p->o->conf.poller_batch_size && enqueued > 0)
            next_ms = 0;
        else if (!db_rows_isnull(rows, 0, 2) && db_rows_int(rows, 0, 2) < next_ms)
            next_ms = db_rows_int(rows, 0, 2) + 1; /* just after the earliest retry is due */
    }
    if (p->again) {
        p->again = false;
        next_ms = 0;
    }
    if (!p->stopping)
        timer_in_ms(p->timer, next_ms);
}

static void poller_run(struct poller *p)
{
    if (p->stopping)
        return;
    if (!p->o->db_up) {
        timer_in_ms(p->timer, p->o->conf.poller_interval_ms);
        return;
    }
    char limit[16];
    snprintf(limit, sizeof limit, "%d", p->o->conf.poller_batch_size);
    const char *params[1] = { limit };
    if (db_pool_query(p->o->pool, STMT_ENQUEUE_READY, params, 1, poller_on_result, p))
        p->in_flight = true;
    else
        timer_in_ms(p->timer, p->o->conf.poller_interval_ms);
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
    timer_in_ms(p->timer, 0);
}

void poller_kick(struct poller *p)
{
    if (!p || p->stopping)
        return;
    if (p->in_flight)
        p->again = true;
    else
        timer_in_ms(p->timer, 0);
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
