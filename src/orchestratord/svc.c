/* svc.c — systemd integration: READY/STATUS/WATCHDOG/STOPPING/RELOADING via sd_notify.
 *
 * The watchdog pings at half of WATCHDOG_USEC, but only if the pool's progress counter moved since
 * the last ping (a query finished, or it sat idle with nothing waiting): a wedged pool stops the
 * pings and systemd restarts us, while a database outage — the pool idle, components waiting —
 * does not.
 */
#include "svc.h"

#include "completions.h"
#include "db_pool.h"
#include "listen.h"
#include "log.h"
#include "orchd.h"
#include "timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#define SVC_STATUS_INTERVAL_MS 5000

struct svc {
    struct orchd *o;
    struct event *watchdog;
    struct event *status;
    long long watchdog_ms;            /* ping interval; 0 = no watchdog */
    unsigned long long last_progress;
};

/* The one-line summary for STATUS= (systemctl status shows it). */
static void svc_summary(struct svc *s, char *buf, size_t len)
{
    struct db_pool_stats st;
    db_pool_stats(s->o->pool, &st);
    const struct metrics *m = &s->o->metrics;
    /* An error from long ago says nothing about now: show the last one for five minutes. */
    char err[600] = "";
    if (st.last_error[0] && st.last_error_age_ms >= 0 && st.last_error_age_ms < 300000)
        snprintf(err, sizeof err, "; last error %llds ago: %s", st.last_error_age_ms / 1000, st.last_error);
    /* A pool that cannot grow runs on what it has, and says so. */
    char grow[320] = "";
    if (st.cannot_grow[0])
        snprintf(grow, sizeof grow, "; pool at %d of %d, cannot grow: %s", st.idle + st.busy, st.max, st.cannot_grow);
    snprintf(buf, len,
             "%s; db %s%s, connections %d/%d (busy %d), queued %d; listen %s; namespaces %zu; "
             "steps completed %llu, dispatched %llu; tasks completed %llu%s%s",
             s->o->stopping ? "draining" : "running", s->o->db_up ? "up" : "DOWN",
             st.breaker_open ? " (circuit breaker open)" : "", st.total, st.max, st.busy, st.queued,
             s->o->listener && listener_connected(s->o->listener) ? "up" : "down",
             s->o->completions ? completions_namespace_count(s->o->completions) : (size_t)0, m->steps_completed,
             m->steps_enqueued, m->tasks_completed, grow, err);
}

static void svc_on_status(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct svc *s = arg;
    char line[1024];
    svc_summary(s, line, sizeof line);
    sd_notifyf(0, "STATUS=%s", line);
    timer_in_ms(s->status, SVC_STATUS_INTERVAL_MS);
}

static void svc_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct svc *s = arg;
    unsigned long long progress = db_pool_progress(s->o->pool);
    if (progress != s->last_progress) {
        sd_notify(0, "WATCHDOG=1");
        s->last_progress = progress;
    } else {
        log_warn("svc", "no progress since the last watchdog ping; not pinging");
    }
    timer_in_ms(s->watchdog, s->watchdog_ms);
}

struct svc *svc_new(struct orchd *o)
{
    struct svc *s = calloc(1, sizeof *s);
    if (!s) {
        log_error("svc", "out of memory");
        return NULL;
    }
    s->o = o;
    s->watchdog = evtimer_new(o->base, svc_on_watchdog, s);
    s->status = evtimer_new(o->base, svc_on_status, s);
    if (!s->watchdog || !s->status) {
        log_error("svc", "out of memory");
        svc_free(s);
        return NULL;
    }
    return s;
}

void svc_start(struct svc *s)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        s->watchdog_ms = (long long)(usec / 2000);
        if (s->watchdog_ms < 1)
            s->watchdog_ms = 1;
        log_info("svc", "systemd watchdog: pinging every %lld ms while making progress", s->watchdog_ms);
        s->last_progress = db_pool_progress(s->o->pool) - 1; /* first ping goes out */
        timer_in_ms(s->watchdog, 0);
    }
    timer_in_ms(s->status, SVC_STATUS_INTERVAL_MS);
}

void svc_ready(struct svc *s)
{
    char line[1024];
    svc_summary(s, line, sizeof line);
    sd_notifyf(0, "READY=1\nSTATUS=%s", line);
}

void svc_reloading(struct svc *s)
{
    (void)s;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
}

void svc_stopping(struct svc *s)
{
    (void)s;
    sd_notify(0, "STOPPING=1\nSTATUS=draining in-flight work");
}

void svc_status(struct svc *s, const char *fmt, ...)
{
    (void)s;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", line);
}

void svc_free(struct svc *s)
{
    if (!s)
        return;
    if (s->watchdog)
        event_free(s->watchdog);
    if (s->status)
        event_free(s->status);
    free(s);
}
