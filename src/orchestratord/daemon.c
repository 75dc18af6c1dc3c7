/* daemon.c — the daemon mode: configuration, the event loop and its components, signals.
 *
 * Start order (each step needs the previous): configuration → logging → event base → schema
 * check (blocking, before the loop runs) → pool → listener → completions, poller, sweeper, vacuum
 * → HTTP (bound before the loop runs; a bind failure stops the start) → systemd. READY=1 goes out once
 * the pool has a working connection, LISTEN is in place, with web.enabled HTTP is bound, and the
 * template directory (templates.path) has been registered — or TEMPLATE_DIR_READY_WAIT_SECS have
 * passed since that began, so tasks created right after READY find their templates but a slow
 * database cannot hold readiness for ever. The directory is loaded when the pool first connects.
 * Stop order is the reverse: SIGTERM closes the HTTP listener and stops the timers and LISTEN (no
 * new work), the pool drains what is in flight (HTTP requests included), then the loop ends; a
 * second SIGTERM ends it at once. Freeing: the pool first (its in-flight queries complete into
 * live components), then HTTP (answers what is left, closes connections), then the rest.
 */
#include "daemon.h"

#include "completions.h"
#include "db_pool.h"
#include "http_api.h"
#include "listen.h"
#include "log.h"
#include "migrate.h"
#include "orchd.h"
#include "poller.h"
#include "relay.h"
#include "statements.h"
#include "svc.h"
#include "sweeper.h"
#include "template_dir.h"
#include "vacuum.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The -c / -e arguments, kept for SIGHUP. */
struct daemon_args {
    const char *config_path;
    const char *env_name;
};

struct daemon {
    struct orchd o;
    struct daemon_args args;
    struct event *sigterm, *sigint, *sighup;
    struct event *shutdown_timer;
    struct template_dir *templates;
    struct event *templates_wait;  /* TEMPLATE_DIR_READY_WAIT_SECS after the first load began */
    bool templates_started;
    bool templates_wait_over;
    bool ready_sent;
};

static bool daemon_load_conf(struct conf *c, struct conf_source *src, const struct daemon_args *a)
{
    char err[1024];
    if (!conf_load(c, src, a->config_path, a->env_name, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return false;
    }
    return true;
}

int daemon_check_config(const char *config_path, const char *env_name, bool verbose)
{
    struct conf c;
    struct conf_source src;
    struct daemon_args a = { config_path, env_name };
    if (!daemon_load_conf(&c, &src, &a))
        return 1;
    printf("configuration OK: %s%s%s, environment %s\n", src.base_path[0] ? src.base_path : "built-in defaults",
           src.overlay_path[0] ? " + " : "", src.overlay_path, conf_env_name(c.environment));
    if (verbose)
        conf_dump(&c, stdout);
    return 0;
}

static void daemon_maybe_ready(struct daemon *d)
{
    struct orchd *o = &d->o;
    if (d->ready_sent || o->stopping || !o->db_up || !listener_connected(o->listener))
        return;
    if (o->conf.web_enabled && !http_api_bound(o->http))
        return;
    if (!template_dir_done(d->templates) && !d->templates_wait_over)
        return;
    o->templates_pending = false;
    d->ready_sent = true;
    log_info("daemon", "ready: pool and LISTEN connections are up%s",
             o->conf.web_enabled ? ", HTTP bound" : "");
    svc_ready(o->svc);
}

static void on_templates_done(void *arg)
{
    struct daemon *d = arg;
    if (template_dir_done(d->templates))
        d->o.templates_pending = false;
    daemon_maybe_ready(d);
}

static void on_templates_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    d->templates_wait_over = true;
    if (!template_dir_done(d->templates))
        log_warn("templates", "still registering after %d s; ready without waiting for the rest",
                 TEMPLATE_DIR_READY_WAIT_SECS);
    d->o.templates_pending = false;
    daemon_maybe_ready(d);
}

static void on_pool_event(void *arg, enum db_pool_event ev, const char *detail)
{
    struct daemon *d = arg;
    struct orchd *o = &d->o;
    switch (ev) {
    case DB_POOL_EV_UP:
        o->db_up = true;
        log_info("daemon", "database connection established");
        completions_kick_all(o->completions);
        relay_kick_all(o->relay);
        poller_kick(o->poller);
        /* The template directory is registered once the database answers; a load that could not
         * reach it for some file runs again when it is back. */
        if (!d->templates_started) {
            d->templates_started = true;
            struct timeval tv = {.tv_sec = TEMPLATE_DIR_READY_WAIT_SECS, .tv_usec = 0};
            evtimer_add(d->templates_wait, &tv);
            template_dir_load(d->templates);
        } else {
            template_dir_retry(d->templates);
        }
        daemon_maybe_ready(d);
        break;
    case DB_POOL_EV_DOWN:
        o->db_up = false;
        log_error("daemon", "database unreachable: %s (retrying)", detail ? detail : "");
        break;
    case DB_POOL_EV_SCHEMA_MISMATCH:
        log_error("daemon", "exiting: the database schema does not match this build (%s)", detail ? detail : "");
        o->exit_code = 1;
        event_base_loopbreak(o->base);
        break;
    }
}

static void on_listen_message(void *arg, const char *queue, const char *ns)
{
    (void)ns;
    struct daemon *d = arg;
    completions_kick(d->o.completions, queue);
    relay_kick(d->o.relay, queue);
}

static void on_listen_connected(void *arg)
{
    struct daemon *d = arg;
    /* Notifications sent while we were not listening are lost: look at everything once. */
    completions_kick_all(d->o.completions);
    relay_kick_all(d->o.relay);
    poller_kick(d->o.poller);
    daemon_maybe_ready(d);
}

static void on_drained(void *arg)
{
    struct daemon *d = arg;
    log_info("daemon", "drained; exiting");
    event_base_loopexit(d->o.base, NULL);
}

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    log_warn("daemon", "in-flight work did not finish within %d s; exiting anyway", d->o.conf.shutdown_timeout_secs);
    event_base_loopbreak(d->o.base);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct daemon *d = arg;
    struct orchd *o = &d->o;
    if (o->stopping) {
        log_warn("daemon", "second %s: exiting now", sig == SIGINT ? "SIGINT" : "SIGTERM");
        event_base_loopbreak(o->base);
        return;
    }
    log_info("daemon", "%s: draining in-flight work (up to %d s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
             o->conf.shutdown_timeout_secs);
    o->stopping = true;
    svc_stopping(o->svc);
    template_dir_stop(d->templates);
    http_api_stop(o->http);
    completions_stop(o->completions);
    relay_stop(o->relay);
    poller_stop(o->poller);
    sweeper_stop(o->sweeper);
    vacuum_stop(o->vacuum);
    listener_stop(o->listener);
    struct timeval tv = { .tv_sec = o->conf.shutdown_timeout_secs, .tv_usec = 0 };
    evtimer_add(d->shutdown_timer, &tv);
    db_pool_stop(o->pool, on_drained, d);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct daemon *d = arg;
    struct orchd *o = &d->o;
    svc_reloading(o->svc);
    struct conf next;
    struct conf_source src;
    char err[1024];
    if (!conf_load(&next, &src, d->args.config_path, d->args.env_name, err, sizeof err)) {
        log_error("daemon", "reload refused, keeping the running configuration: %s", err);
    } else {
        char restart[512] = "";
        conf_apply_reload(&o->conf, &next, restart, sizeof restart);
        enum log_level lvl = LOG_LVL_INFO;
        (void)log_level_parse(o->conf.log_level, &lvl);
        log_init(lvl, o->conf.log_json);
        log_info("daemon", "configuration reloaded from %s", src.base_path[0] ? src.base_path : "built-in defaults");
        if (restart[0])
            log_warn("daemon", "changed keys that need a restart (not applied): %s", restart);
        poller_kick(o->poller);
        http_api_reload(o->http);
    }
    /* Templates too, refused reload or not: SIGHUP is how an operator says "the files changed". */
    if (d->templates_started)
        template_dir_load(d->templates);
    if (d->ready_sent)
        svc_ready(o->svc);
}

/* Before the loop: refuse to run on a database that is reachable but not migrated to this build.
 * An unreachable database is not fatal: the pool keeps trying, and its prepared statements check
 * the schema once it connects. */
static bool daemon_check_schema(const struct conf *c)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
    const char *vals[] = { c->database_url, "5", "tasker-orchestratord-check", NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pg));
        msg[strcspn(msg, "\n")] = '\0';
        log_warn("daemon", "database not reachable at start (%s); will keep trying", msg);
        PQfinish(pg);
        return true;
    }
    char err[512];
    bool ok = migrate_check_current(pg, err, sizeof err);
    PQfinish(pg);
    if (!ok)
        log_error("daemon", "the database is not migrated for this build: %s", err); /* err says to run migrate */
    return ok;
}

static void daemon_free(struct daemon *d)
{
    struct orchd *o = &d->o;
    /* The pool first: queries still in flight complete (with an error) into live components. */
    db_pool_free(o->pool);
    o->pool = NULL;
    template_dir_free(d->templates);
    d->templates = NULL;
    if (d->templates_wait)
        event_free(d->templates_wait);
    http_api_free(o->http);
    o->http = NULL;
    vacuum_free(o->vacuum);
    sweeper_free(o->sweeper);
    poller_free(o->poller);
    completions_free(o->completions);
    relay_free(o->relay);
    listener_free(o->listener);
    svc_free(o->svc);
    if (d->sigterm)
        event_free(d->sigterm);
    if (d->sigint)
        event_free(d->sigint);
    if (d->sighup)
        event_free(d->sighup);
    if (d->shutdown_timer)
        event_free(d->shutdown_timer);
    if (o->base)
        event_base_free(o->base);
}

int daemon_run(const char *config_path, const char *env_name)
{
    static struct daemon d; /* lives for the whole run; static keeps it off the stack */
    struct orchd *o = &d.o;
    d.args.config_path = config_path;
    d.args.env_name = env_name;
    if (!daemon_load_conf(&o->conf, &o->conf_src, &d.args))
        return 1;
    enum log_level lvl = LOG_LVL_INFO;
    (void)log_level_parse(o->conf.log_level, &lvl);
    log_init(lvl, o->conf.log_json);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);

    if (o->conf.processor_id[0]) {
        snprintf(o->actor, sizeof o->actor, "%s", o->conf.processor_id);
    } else {
        char host[64] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(o->actor, sizeof o->actor, "orchestratord@%s:%d", host, (int)getpid());
    }
    log_info("daemon", "starting as %s, environment %s, config %s%s%s", o->actor, conf_env_name(o->conf.environment),
             o->conf_src.base_path[0] ? o->conf_src.base_path : "built-in defaults",
             o->conf_src.overlay_path[0] ? " + " : "", o->conf_src.overlay_path);

    if (!daemon_check_schema(&o->conf))
        return 1;

    o->base = event_base_new();
    if (!o->base) {
        log_error("daemon", "cannot create the event loop");
        return 1;
    }
    o->pool = db_pool_new(o->base, &o->conf, o->actor, statements, STMT_COUNT, on_pool_event, &d);
    o->listener = listener_new(o, on_listen_message, on_listen_connected, &d);
    o->completions = completions_new(o);
    o->poller = poller_new(o);
    bool rabbit = strcmp(o->conf.messaging_backend, "rabbitmq") == 0;
    if (rabbit)
        o->relay = relay_new(o);
    o->sweeper = sweeper_new(o);
    o->vacuum = vacuum_new(o);
    o->http = http_api_new(o);
    o->svc = svc_new(o);
    d.sigterm = evsignal_new(o->base, SIGTERM, on_sigterm, &d);
    d.sigint = evsignal_new(o->base, SIGINT, on_sigterm, &d);
    d.sighup = evsignal_new(o->base, SIGHUP, on_sighup, &d);
    d.shutdown_timer = evtimer_new(o->base, on_shutdown_timeout, &d);
    d.templates = template_dir_new(o, on_templates_done, &d);
    d.templates_wait = evtimer_new(o->base, on_templates_wait, &d);
    o->templates_pending = o->conf.templates_path[0] != '\0';
    if (!d.templates || !d.templates_wait || !o->pool || !o->listener || !o->completions || !o->poller || !o->sweeper || !o->vacuum || !o->http ||
        !o->svc || (rabbit && !o->relay) || !d.sigterm || !d.sigint || !d.sighup || !d.shutdown_timer) {
        log_error("daemon", "startup failed");
        daemon_free(&d);
        return 1;
    }
    event_add(d.sigterm, NULL);
    event_add(d.sigint, NULL);
    event_add(d.sighup, NULL);

    db_pool_start(o->pool);
    listener_start(o->listener);
    completions_start(o->completions);
    if (o->relay)
        relay_start(o->relay);
    poller_start(o->poller);
    sweeper_start(o->sweeper);
    vacuum_start(o->vacuum);
    if (!http_api_start(o->http)) {
        /* errors have already been logged */
        daemon_free(&d);
        return 1;
    }
    svc_start(o->svc);

    event_base_dispatch(o->base);

    log_info("daemon", "stopped (exit %d)", o->exit_code);
    daemon_free(&d);
    return o->exit_code;
}
