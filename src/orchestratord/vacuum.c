/* vacuum.c — keeps the hot tables lean: VACUUM of the queue (and task) tables while work flows.
 *
 * Why: every step leaves dead rows behind in its namespace's dispatch and completion queues (a
 * message is inserted, read — an update — and archived — a delete) and several row versions in
 * tasker.workflow_steps and tasker.tasks. Autovacuum visits a database once per
 * autovacuum_naptime (60 s by default); at thousands of steps a second that is far too rarely, and
 * DESIGN §11 measured long runs losing half their throughput to bloat. So while completions flow
 * we run a plain lazy VACUUM (no ANALYZE, no FULL: no lock that blocks reads or writes) of the
 * queue tables of each namespace that had completions, every vacuum.interval_ms, and of
 * tasker.tasks and tasker.workflow_steps every vacuum.task_tables_interval_ms. The two are separate
 * statements in flight independently, so a slow vacuum of the big tables never holds back the
 * queues'. An idle daemon vacuums nothing and sends no query from here: only completions mark
 * tables dirty.
 *
 * Often is cheaper than seldom: a lazy VACUUM reads only the pages changed since the previous one
 * (the visibility map), and with few dead rows it skips the index passes. Driving 3,000 tasks
 * (26,400 steps, 12–14 s) through a test daemon on the shared 2-core VM, all its VACUUMs together
 * took 404 ms with the task tables every 1 s (the longest 59 ms), 512 ms every 2 s (74 ms) and
 * 858 ms every 10 s (391 ms). The default is 2 s: about as cheap, and half the fixed cost per
 * statement that large production tables add.
 *
 * TRUNCATE false: giving the queue tables' empty tail pages back to the OS is useless (they refill
 * within a second) and harmful: the truncation needs an ACCESS EXCLUSIVE lock, which under load it
 * retries for up to 5 s (before TRUNCATE false we saw single VACUUMs of 4 s under load), and which
 * stops every queue reader and writer while held.
 *
 * Without blocking the loop: each statement goes as a simple query on a pooled connection
 * (db_pool_query_sql). VACUUM refuses to run inside a transaction block; pool connections never
 * open one, each statement is its own implicit transaction, and VACUUM of a list of tables commits
 * per table. Table names are never input: "pgmq.q_tasker_dispatch_" / "…completion_" plus a
 * namespace name checked by namespace_name_valid (^[a-z][a-z0-9_]*$, so a valid unquoted
 * identifier), or our own two fixed names.
 *
 * Several daemons: SKIP_LOCKED rather than an advisory lock. Two VACUUMs of one table conflict
 * (SHARE UPDATE EXCLUSIVE), and so do ours and autovacuum's. Without SKIP_LOCKED the second one
 * waits — holding a pool connection, maybe behind an autovacuum of a big table — and then finds
 * nothing left to do. With it, whoever comes second skips that table this round (the server logs a
 * WARNING "skipping vacuum of … lock not available"; db_conn.c logs it at debug level only), at no
 * extra round trip; a queue table takes a
 * few ms, and the interval is jittered, so two daemons rarely meet. An advisory lock would cost a
 * round trip each time and would not keep us from waiting on autovacuum.
 *
 * Privileges: VACUUM of a table our role may not vacuum does not fail, it skips it with a WARNING.
 * So before a table's first vacuum we ask once (vacuum_check) whether we may: if not for
 * tasker.tasks / tasker.workflow_steps, one warning and the component disables itself (autovacuum
 * still runs); a queue table we may not vacuum (a namespace created by another role) gets one
 * warning and is left out.
 */
#include "vacuum.h"

#include "db_pool.h"
#include "log.h"
#include "names.h"
#include "orchd.h"
#include "statements.h"
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VAC_NAME_MAX 64
#define VAC_CORE 2             /* t[0], t[1]: tasker.tasks, tasker.workflow_steps */
#define VAC_ERROR_LOG_MS 60000 /* the same failure is logged at most this often */
#define VAC_PREFIX "VACUUM (SKIP_LOCKED, TRUNCATE false) "

enum vac_state {
    VAC_UNCHECKED, /* privilege not asked yet */
    VAC_OK,
    VAC_DENIED     /* our role may not vacuum it: left out */
};

enum vac_lane_id { LANE_QUEUES, LANE_TASKS, LANES };

struct vac_table {
    char name[VAC_NAME_MAX]; /* schema-qualified, a valid unquoted identifier pair */
    enum vac_state state;
    bool dirty;              /* completions touched it since its last vacuum */
    bool sent;               /* part of its lane's statement in flight */
};

struct vacuum;

/* One statement in flight at a time per lane: the queue tables, the task tables. */
struct vac_lane {
    struct vacuum *v;
    enum vac_lane_id id;
    bool in_flight;
    long long started_ms;
};

struct vacuum {
    struct orchd *o;
    struct event *timer;
    struct vac_table *t;     /* VAC_CORE fixed tables, then two per namespace */
    size_t n, cap;
    struct vac_lane lane[LANES];
    bool check_in_flight;
    bool stopping;
    bool disabled;           /* our role may not vacuum the task tables */
    long long tasks_due_ms;  /* monotonic: the task tables are due again at or after this */
    char last_error[512];    /* the last failure logged (a db_error message) */
    long long last_error_ms;
};

static enum vac_lane_id vac_lane_of(size_t i)
{
    return i < VAC_CORE ? LANE_TASKS : LANE_QUEUES;
}

/* Jittered by ±10 %, so daemons started together do not vacuum in lockstep. */
static void vacuum_arm(struct vacuum *v)
{
    if (v->stopping)
        return;
    long long ms = v->o->conf.vacuum_interval_ms;
    long long span = ms / 10;
    ms += (long long)((unsigned)rand() % (unsigned)(2 * span + 1)) - span;
    timer_in_ms(v->timer, ms);
}

static struct vac_table *vac_find(struct vacuum *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->t[i].name, name) == 0)
            return &v->t[i];
    return NULL;
}

/* vac_add: the table called name, added (clean, unchecked) if new; NULL when out of memory. The
 * pointer is valid until the next vac_add or vac_remove. */
static struct vac_table *vac_add(struct vacuum *v, const char *name)
{
    struct vac_table *t = vac_find(v, name);
    if (t)
        return t;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        struct vac_table *grown = realloc(v->t, cap * sizeof *grown);
        if (!grown) {
            log_error("vacuum", "out of memory");
            return NULL;
        }
        v->t = grown;
        v->cap = cap;
    }
    t = &v->t[v->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

static void vac_remove(struct vacuum *v, size_t i)
{
    memmove(&v->t[i], &v->t[i + 1], (v->n - i - 1) * sizeof *v->t);
    v->n--;
}

/* Log a failure, but the same one at most once a minute: a persistent one repeats every round. */
static void vacuum_note_error(struct vacuum *v, const char *what, const struct db_error *err)
{
    v->o->metrics.query_errors++;
    long long now = mono_ms();
    if (strcmp(v->last_error, err->message) == 0 && now - v->last_error_ms < VAC_ERROR_LOG_MS)
        return;
    snprintf(v->last_error, sizeof v->last_error, "%s", err->message);
    v->last_error_ms = now;
    log_warn("vacuum", "%s failed: %s%s%s", what, err->message, err->sqlstate[0] ? " SQLSTATE " : "", err->sqlstate);
}

static void vacuum_on_result(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    (void)rows;
    struct vac_lane *lane = arg;
    struct vacuum *v = lane->v;
    lane->in_flight = false;
    long long ms = mono_ms() - lane->started_ms;
    if (err) {
        vacuum_note_error(v, "VACUUM", err);
        /* Try these tables again next round. One of them may have been dropped with its namespace
         * (the whole statement then fails): ask about the queue tables again first. */
        for (size_t i = 0; i < v->n; i++) {
            if (!v->t[i].sent || vac_lane_of(i) != lane->id)
                continue;
            v->t[i].dirty = true;
            if (i >= VAC_CORE)
                v->t[i].state = VAC_UNCHECKED;
        }
    } else {
        v->o->metrics.vacuum_runs++;
        v->o->metrics.vacuum_ms += (unsigned long long)ms;
        if (log_enabled(LOG_LVL_DEBUG)) {
            char list[512] = "";
            size_t len = 0;
            for (size_t i = 0; i < v->n && len < sizeof list; i++)
                if (v->t[i].sent && vac_lane_of(i) == lane->id)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", v->t[i].name);
            log_debug("vacuum", "vacuumed %s in %lld ms", list, ms);
        }
    }
    for (size_t i = 0; i < v->n; i++)
        if (vac_lane_of(i) == lane->id)
            v->t[i].sent = false;
    /* The timer keeps the cadence; nothing to arm here. */
}

/* VACUUM the lane's dirty tables that we may vacuum, in one statement; nothing if there are none. */
static void vacuum_send(struct vacuum *v, struct vac_lane *lane, long long now)
{
    size_t cap = sizeof VAC_PREFIX;
    for (size_t i = 0; i < v->n; i++) {
        struct vac_table *t = &v->t[i];
        if (vac_lane_of(i) != lane->id)
            continue; /* the other lane's (its statement may be in flight) */
        t->sent = t->dirty && t->state == VAC_OK;
        if (t->sent)
            cap += strlen(t->name) + 2;
    }
    if (cap == sizeof VAC_PREFIX)
        return;
    char *sql = malloc(cap);
    if (!sql) {
        log_error("vacuum", "out of memory");
        return;
    }
    size_t len = (size_t)snprintf(sql, cap, "%s", VAC_PREFIX);
    bool first = true;
    for (size_t i = 0; i < v->n; i++) {
        if (vac_lane_of(i) != lane->id || !v->t[i].sent)
            continue;
        len += (size_t)snprintf(sql + len, cap - len, "%s%s", first ? "" : ", ", v->t[i].name);
        first = false;
    }
    bool sent = db_pool_query_sql(v->o->pool, sql, vacuum_on_result, lane);
    free(sql);
    for (size_t i = 0; i < v->n; i++) {
        if (vac_lane_of(i) != lane->id || !v->t[i].sent)
            continue;
        if (sent)
            v->t[i].dirty = false; /* completions arriving while it runs make it dirty again */
        else
            v->t[i].sent = false;
    }
    if (!sent)
        return;
    lane->in_flight = true;
    lane->started_ms = now;
    if (lane->id == LANE_TASKS)
        v->tasks_due_ms = now + v->o->conf.vacuum_task_tables_interval_ms;
}

/* Each lane that is free and due sends its statement. */
static void vacuum_send_due(struct vacuum *v)
{
    const struct conf *c = &v->o->conf;
    long long now = mono_ms();
    if (!v->lane[LANE_QUEUES].in_flight)
        vacuum_send(v, &v->lane[LANE_QUEUES], now);
    if (!v->lane[LANE_TASKS].in_flight && c->vacuum_task_tables_interval_ms > 0 && now >= v->tasks_due_ms)
        vacuum_send(v, &v->lane[LANE_TASKS], now);
}

static void vacuum_on_check(void *arg, const struct db_rows *rows, const struct db_error *err)
{
    struct vacuum *v = arg;
    v->check_in_flight = false;
    if (err) {
        vacuum_note_error(v, "checking the VACUUM privilege", err);
        return;
    }
    for (int r = 0; r < db_rows_count(rows); r++) {
        const char *name = db_rows_text(rows, r, 0);
        bool present = strcmp(db_rows_text(rows, r, 1), "t") == 0;
        bool permitted = strcmp(db_rows_text(rows, r, 2), "t") == 0;
        struct vac_table *t = vac_find(v, name);
        if (!t)
            continue;
        size_t i = (size_t)(t - v->t);
        if (permitted) {
            t->state = VAC_OK;
        } else if (i < VAC_CORE) {
            if (!v->disabled)
                log_warn("vacuum", "this role may not VACUUM %s (it is not the table's owner): the daemon will not "
                         "vacuum the hot tables, autovacuum alone will", name);
            v->disabled = true;
            t->state = VAC_DENIED;
        } else if (!present) {
            log_debug("vacuum", "%s no longer exists", name); /* its namespace is gone */
            vac_remove(v, i);
        } else {
            if (!v->disabled) /* (the task tables come first: once disabled, one warning was enough) */
                log_warn("vacuum", "this role may not VACUUM %s (it is not the table's owner): leaving it to "
                         "autovacuum", name);
            t->state = VAC_DENIED;
        }
    }
    if (!v->stopping && !v->disabled && v->o->conf.vacuum_enabled)
        vacuum_send_due(v); /* the tables just checked are still dirty: vacuum them now */
}

/* Ask whether we may vacuum the dirty tables not checked yet; true if the question went out. */
static bool vacuum_send_check(struct vacuum *v)
{
    size_t len = 0, cap = 3;
    for (size_t i = 0; i < v->n; i++)
        if (v->t[i].dirty && v->t[i].state == VAC_UNCHECKED)
            cap += strlen(v->t[i].name) + 1;
    if (cap == 3)
        return false;
    char *arr = malloc(cap);
    if (!arr) {
        log_error("vacuum", "out of memory");
        return false;
    }
    arr[len++] = '{';
    for (size_t i = 0; i < v->n; i++) {
        if (!v->t[i].dirty || v->t[i].state != VAC_UNCHECKED)
            continue;
        if (len > 1)
            arr[len++] = ',';
        size_t l = strlen(v->t[i].name);
        memcpy(arr + len, v->t[i].name, l); /* [a-z0-9_.] only: no quoting needed in an array literal */
        len += l;
    }
    arr[len++] = '}';
    arr[len] = '\0';
    const char *params[1] = { arr };
    v->check_in_flight = db_pool_query(v->o->pool, STMT_VACUUM_CHECK, params, 1, vacuum_on_check, v);
    free(arr);
    return v->check_in_flight;
}

static void vacuum_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vacuum *v = arg;
    if (v->stopping)
        return;
    if (v->o->conf.vacuum_enabled && !v->disabled && v->o->db_up && !v->check_in_flight && !vacuum_send_check(v))
        vacuum_send_due(v);
    vacuum_arm(v);
}

struct vacuum *vacuum_new(struct orchd *o)
{
    struct vacuum *v = calloc(1, sizeof *v);
    if (!v || !(v->timer = evtimer_new(o->base, vacuum_on_timer, v))) {
        log_error("vacuum", "out of memory");
        free(v);
        return NULL;
    }
    v->o = o;
    for (int i = 0; i < LANES; i++) {
        v->lane[i].v = v;
        v->lane[i].id = (enum vac_lane_id)i;
    }
    if (!vac_add(v, "tasker.tasks") || !vac_add(v, "tasker.workflow_steps")) {
        vacuum_free(v);
        return NULL;
    }
    return v;
}

void vacuum_start(struct vacuum *v)
{
    vacuum_arm(v);
}

void vacuum_note_completions(struct vacuum *v, const char *ns)
{
    if (!v || v->stopping || !namespace_name_valid(ns))
        return;
    char name[VAC_NAME_MAX];
    snprintf(name, sizeof name, "pgmq.q_tasker_dispatch_%s", ns);
    struct vac_table *t = vac_add(v, name);
    if (t)
        t->dirty = true;
    snprintf(name, sizeof name, "pgmq.q_tasker_completion_%s", ns);
    if ((t = vac_add(v, name)))
        t->dirty = true;
    for (size_t i = 0; i < VAC_CORE; i++)
        v->t[i].dirty = true;
}

void vacuum_stop(struct vacuum *v)
{
    v->stopping = true;
    evtimer_del(v->timer);
}

void vacuum_free(struct vacuum *v)
{
    if (!v)
        return;
    if (v->timer)
        event_free(v->timer);
    free(v->t);
    free(v);
}
