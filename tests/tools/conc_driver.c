/* conc_driver.c — concurrency test of the SQL core without the daemon: forked workers and orchestrators run diamond and fan-out/fan-in tasks. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#define FANOUT_WIDTH     50   /* middle steps of the fan-out/fan-in template (root → 50 → join) */
#define MAX_RETRIES      200  /* serialization/deadlock retries of one call before we give up */
#define IDLE_MAX_MS      8    /* idle backoff cap: a few ms, so an empty queue costs little */
#define POLL_EVERY_MS    50   /* how often an orchestrator runs enqueue_ready_steps */
#define WAIT_POLL_MS     20   /* how often the parent looks at the tasks */
#define DIAMOND_TEMPLATE "conc_diamond"
#define FANOUT_TEMPLATE  "conc_fanout"
#define TEMPLATE_VERSION "1.0.0"

/* Counters of one process. They live in shared memory: each child writes only its own slot and
 * the parent reads them after waitpid(), which orders the reads after the writes. */
struct stats {
    long claim_calls, claimed, submit_calls, accepted;
    long process_calls, messages, completed, stale, steps_enqueued, tasks_completed;
    long poll_calls, poll_enqueued;
    long retries;
};

struct opts {
    const char *url;
    const char *ns;
    int workers, orchestrators, diamonds, fanouts;
    int batch, completion_batch, lease, timeout;
};

/* Process-wide state: the fatal path of either side needs it, and children must see it after fork. */
static volatile sig_atomic_t g_stop;
static const char *g_role = "parent";   /* prefix of error messages */
static bool g_child;
static pid_t *g_pids;                   /* the children; 0 once reaped */
static int g_nchildren;

static const char SQL_CLAIM[] =
    "SELECT workflow_step_uuid, attempt, step_name, task_name, handler_callable, dependency_results "
    "FROM tasker.tasker_claim_and_execute_step($1::text, $2::integer, $3::integer, $4::text)";
static const char SQL_SUBMIT[] =
    "SELECT workflow_step_uuid, attempt, status, state FROM tasker.submit_step_results($1::jsonb)";
static const char SQL_PROCESS[] =
    "SELECT messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued, "
    "tasks_completed, tasks_blocked, rejected_details "
    "FROM tasker.process_completions($1::text, $2::integer, 30)";
static const char SQL_POLL[] = "SELECT steps_enqueued FROM tasker.enqueue_ready_steps(100)";
static const char SQL_SET_ACTOR[] = "SELECT set_config('tasker.actor', $1, false)";
static const char SQL_REGISTER[] = "SELECT status FROM tasker.register_task_template($1::jsonb)";
static const char SQL_CREATE[] = "SELECT task_uuid, created FROM tasker.create_task($1::jsonb)";
/* Progress of this run's tasks; terminal-ness comes from the state table, the one source of truth. */
static const char SQL_PROGRESS[] =
    "SELECT count(*), count(*) FILTER (WHERE ts.is_terminal), count(*) FILTER (WHERE t.state = 'complete') "
    "FROM tasker.tasks t JOIN tasker.task_states ts ON ts.state = t.state WHERE t.context->>'run' = $1";
static const char SQL_STEP_COUNT[] =
    "SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.tasks t ON t.task_uuid = s.task_uuid "
    "WHERE t.context->>'run' = $1";
static const char SQL_STEP_STATES[] =
    "SELECT coalesce(string_agg(st || ' ' || n, ', ' ORDER BY st), 'none') FROM ("
    " SELECT s.state AS st, count(*) AS n FROM tasker.workflow_steps s"
    " JOIN tasker.tasks t ON t.task_uuid = s.task_uuid WHERE t.context->>'run' = $1 GROUP BY s.state) x";

static int stop_and_reap(void);

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

__attribute__((format(printf, 1, 2), noreturn))
static void fatal(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "conc_driver: %s: ", g_role);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (!g_child)
        stop_and_reap();   /* never leave workers behind hammering the database */
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);   /* EINTR (SIGTERM) just ends the nap early: the loop then sees g_stop */
}

/* Back off while there is nothing to do: 1, 2, 4, … IDLE_MAX_MS ms; work resets it to 0. */
static void idle_backoff(unsigned *idle_ms)
{
    *idle_ms = *idle_ms == 0 ? 1 : (*idle_ms * 2 > IDLE_MAX_MS ? IDLE_MAX_MS : *idle_ms * 2);
    sleep_ms(*idle_ms);
}

static PGconn *connect_db(const char *url)
{
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        fatal("cannot connect: %s", msg);
    }
    return conn;
}

/* One autocommit call = one transaction. A serialization failure or deadlock rolled it back as
 * a whole, so running the same statement again is the retry; any other error fails the run. */
static PGresult *exec_retry(PGconn *conn, long *retries, const char *what, const char *sql,
                            int nparams, const char *const *params)
{
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return res;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) && attempt < MAX_RETRIES) {
            (*retries)++;
            PQclear(res);
            sleep_ms(1 + (unsigned)(attempt % 10));   /* let the other side finish before we collide again */
            continue;
        }
        /* Copy what we report: both point into res. */
        char msg[1024], code[8];
        snprintf(code, sizeof code, "%s", state ? state : "none");
        snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        fatal("%s failed (SQLSTATE %s): %s", what, code, msg);
    }
}

static long get_long(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtol(PQgetvalue(res, row, col), NULL, 10);
}

/* How many ancestors a step has, hence how many results dependency_results must carry once all
 * its parents are complete; -1 for a step we did not define. */
static int expected_ancestors(const char *task_name, const char *step_name)
{
    if (strcmp(task_name, DIAMOND_TEMPLATE) == 0) {
        if (strcmp(step_name, "a") == 0) return 0;
        if (strcmp(step_name, "b") == 0 || strcmp(step_name, "c") == 0) return 1;
        if (strcmp(step_name, "d") == 0) return 3;
    } else if (strcmp(task_name, FANOUT_TEMPLATE) == 0) {
        if (strcmp(step_name, "root") == 0) return 0;
        if (strcmp(step_name, "join") == 0) return FANOUT_WIDTH + 1;
        if (strncmp(step_name, "m", 1) == 0) return 1;
    }
    return -1;
}

/* A step must never be claimed before its parents are complete: then every ancestor's result is
 * there, each one the {"by": worker} object a worker handed back. */
static void check_dependencies(const char *task_name, const char *step_name, const char *deps_text)
{
    int want = expected_ancestors(task_name, step_name);
    if (want < 0)
        fatal("claimed unknown step %s of %s", step_name, task_name);
    json_error_t jerr;
    json_t *deps = json_loads(deps_text, 0, &jerr);
    if (!json_is_object(deps))
        fatal("step %s/%s: dependency_results is not an object: %s", task_name, step_name, deps_text);
    if ((int)json_object_size(deps) != want)
        fatal("step %s/%s claimed with %zu ancestor results, want %d: %s", task_name, step_name,
              json_object_size(deps), want, deps_text);
    const char *key;
    json_t *val;
    json_object_foreach(deps, key, val) {
        if (!json_is_string(json_object_get(val, "by")))
            fatal("step %s/%s claimed before ancestor %s had its result: %s", task_name, step_name, key, deps_text);
    }
    json_decref(deps);
}

/* Worker: claim a batch, "run" each step (noop), hand the whole batch back in one call. */
static void worker_loop(const struct opts *o, PGconn *conn, int idx, const char *wid, struct stats *st)
{
    char batch[16], lease[16];
    /* Batch sizes spread from 1 (worker 0) to --batch (the last worker): with equal batches one
     * worker would claim both siblings of a diamond together and the fan-in would rarely be
     * contested; mixed sizes split siblings between workers, hand-backs and orchestrators. */
    int my_batch = o->workers > 1 ? 1 + (o->batch - 1) * idx / (o->workers - 1) : o->batch;
    snprintf(batch, sizeof batch, "%d", my_batch);
    snprintf(lease, sizeof lease, "%d", o->lease);
    const char *claim_params[4] = { o->ns, batch, lease, wid };
    unsigned idle_ms = 0;

    while (!g_stop) {
        PGresult *res = exec_retry(conn, &st->retries, "tasker_claim_and_execute_step", SQL_CLAIM, 4, claim_params);
        st->claim_calls++;
        int n = PQntuples(res);
        if (n == 0) {
            PQclear(res);
            idle_backoff(&idle_ms);
            continue;
        }
        idle_ms = 0;
        st->claimed += n;

        json_t *results = json_array();
        for (int i = 0; i < n; i++) {
            const char *step = PQgetvalue(res, i, 0);
            int attempt = (int)get_long(res, i, 1);
            if (strcmp(PQgetvalue(res, i, 4), "noop") != 0)
                fatal("step %s: handler %s, want noop", step, PQgetvalue(res, i, 4));
            if (attempt != 1)
                fatal("step %s claimed for attempt %d; nothing fails here, so every step runs once", step, attempt);
            check_dependencies(PQgetvalue(res, i, 3), PQgetvalue(res, i, 2), PQgetvalue(res, i, 5));
            json_array_append_new(results,
                json_pack("{s:s, s:i, s:b, s:{s:s}, s:s, s:i}", "step_uuid", step, "attempt", attempt,
                          "success", 1, "result", "by", wid, "worker_id", wid, "execution_ms", 0));
        }
        PQclear(res);

        char *body = json_dumps(results, JSON_COMPACT);
        json_decref(results);
        if (!body)
            fatal("out of memory building the hand-back");
        const char *submit_params[1] = { body };
        res = exec_retry(conn, &st->retries, "submit_step_results", SQL_SUBMIT, 1, submit_params);
        free(body);
        st->submit_calls++;
        if (PQntuples(res) != n)
            fatal("submit_step_results returned %d rows for %d results", PQntuples(res), n);
        for (int i = 0; i < n; i++) {
            if (strcmp(PQgetvalue(res, i, 2), "accepted") != 0)
                fatal("hand-back of step %s attempt %s: %s (step now %s), want accepted", PQgetvalue(res, i, 0),
                      PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
        }
        st->accepted += n;
        PQclear(res);
    }
}

/* Orchestrator: consume completions (which dispatches the children that became ready and
 * finishes tasks), and now and then the poller's pass, as the daemon's timers would. */
static void orchestrator_loop(const struct opts *o, PGconn *conn, struct stats *st)
{
    char batch[16];
    snprintf(batch, sizeof batch, "%d", o->completion_batch);
    const char *params[2] = { o->ns, batch };
    unsigned idle_ms = 0;
    double next_poll = now_s();

    while (!g_stop) {
        PGresult *res = exec_retry(conn, &st->retries, "process_completions", SQL_PROCESS, 2, params);
        st->process_calls++;
        long messages = get_long(res, 0, 0);
        st->messages += messages;
        st->completed += get_long(res, 0, 1);
        st->stale += get_long(res, 0, 4);
        st->steps_enqueued += get_long(res, 0, 6);
        st->tasks_completed += get_long(res, 0, 7);
        /* Nothing fails in this run: a retry, error, rejection or blocked task is a bug. */
        if (get_long(res, 0, 2) || get_long(res, 0, 3) || get_long(res, 0, 5) || get_long(res, 0, 8))
            fatal("process_completions: retrying %ld, failed %ld, rejected %ld (%s), tasks blocked %ld",
                  get_long(res, 0, 2), get_long(res, 0, 3), get_long(res, 0, 5), PQgetvalue(res, 0, 9),
                  get_long(res, 0, 8));
        PQclear(res);

        if (now_s() >= next_poll) {
            res = exec_retry(conn, &st->retries, "enqueue_ready_steps", SQL_POLL, 0, NULL);
            st->poll_calls++;
            st->poll_enqueued += get_long(res, 0, 0);
            PQclear(res);
            next_poll = now_s() + POLL_EVERY_MS / 1000.0;
        }
        if (messages == 0)
            idle_backoff(&idle_ms);
        else
            idle_ms = 0;
    }
}

static void run_child(const struct opts *o, int idx, struct stats *st, pid_t parent)
{
    char role[32];
    g_child = true;
    /* If the parent dies (timeout kill, crash), the children must not keep running. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        exit(1);
    bool worker = idx < o->workers;
    snprintf(role, sizeof role, worker ? "conc-w%d" : "conc-o%d", worker ? idx : idx - o->workers);
    g_role = role;
    PGconn *conn = connect_db(o->url);
    if (!worker) {
        /* As the daemon does once per connection: transitions then say which orchestrator made them. */
        const char *params[1] = { role };
        PQclear(exec_retry(conn, &st->retries, "set tasker.actor", SQL_SET_ACTOR, 1, params));
    }
    if (worker)
        worker_loop(o, conn, idx, role, st);
    else
        orchestrator_loop(o, conn, st);
    PQfinish(conn);
    exit(0);
}

/* Reap any child that exited on its own: before we ask them to stop, that is always a failure. */
static void check_children(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < g_nchildren; i++) {
            if (g_pids[i] == pid)
                g_pids[i] = 0;
        }
        if (WIFEXITED(status))
            fatal("child %d exited early with status %d", (int)pid, WEXITSTATUS(status));
        fatal("child %d killed by signal %d", (int)pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
}

/* SIGTERM every child still running and wait for it; returns how many did not exit cleanly. */
static int stop_and_reap(void)
{
    int bad = 0;
    for (int i = 0; i < g_nchildren; i++) {
        if (g_pids && g_pids[i] > 0)
            kill(g_pids[i], SIGTERM);
    }
    for (int i = 0; i < g_nchildren; i++) {
        if (!g_pids || g_pids[i] <= 0)
            continue;
        int status;
        while (waitpid(g_pids[i], &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "conc_driver: child %d did not exit cleanly (status 0x%x)\n", (int)g_pids[i], status);
            bad++;
        }
        g_pids[i] = 0;
    }
    return bad;
}

static char *template_json(bool fanout, const char *ns)
{
    json_t *steps = json_array();
    if (!fanout) {
        /* a → b, a → c, {b, c} → d */
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}}", "name", "a", "handler", "callable", "noop"));
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:[s]}", "name", "b", "handler", "callable", "noop",
                                               "dependencies", "a"));
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:[s]}", "name", "c", "handler", "callable", "noop",
                                               "dependencies", "a"));
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:[s,s]}", "name", "d", "handler", "callable", "noop",
                                               "dependencies", "b", "c"));
    } else {
        /* root → m01 … m50 → join */
        json_t *mids = json_array();
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}}", "name", "root", "handler", "callable", "noop"));
        for (int i = 1; i <= FANOUT_WIDTH; i++) {
            char name[16];
            snprintf(name, sizeof name, "m%02d", i);
            json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:[s]}", "name", name, "handler", "callable",
                                                   "noop", "dependencies", "root"));
            json_array_append_new(mids, json_string(name));
        }
        json_array_append_new(steps, json_pack("{s:s, s:{s:s}, s:o}", "name", "join", "handler", "callable", "noop",
                                               "dependencies", mids));
    }
    json_t *tpl = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", fanout ? FANOUT_TEMPLATE : DIAMOND_TEMPLATE,
                            "namespace_name", ns, "version", TEMPLATE_VERSION,
                            "description", fanout ? "conc_driver fan-out/fan-in 1 -> 50 -> 1" : "conc_driver diamond",
                            "steps", steps);
    char *text = json_dumps(tpl, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(tpl);
    if (!text)
        fatal("out of memory building a template");
    return text;
}

static void register_templates(PGconn *conn, const char *ns, long *retries)
{
    for (int f = 0; f <= 1; f++) {
        char *tpl = template_json(f == 1, ns);
        const char *params[1] = { tpl };
        PGresult *res = exec_retry(conn, retries, "register_task_template", SQL_REGISTER, 1, params);
        free(tpl);
        PQclear(res);
    }
}

/* Task k of the run. Diamonds and fan-outs are spread evenly over the creation order, and the
 * context carries the run id and k, so identity hashes differ within a run and across runs. */
static void create_task(PGconn *conn, const struct opts *o, const char *run, int k, long *retries)
{
    int total = o->diamonds + o->fanouts;
    bool fanout = (long)k * o->fanouts / total != (long)(k + 1) * o->fanouts / total;
    json_t *req = json_pack("{s:s, s:s, s:s, s:{s:s, s:i, s:s}, s:s}", "name",
                            fanout ? FANOUT_TEMPLATE : DIAMOND_TEMPLATE, "namespace", o->ns,
                            "version", TEMPLATE_VERSION, "context", "run", run, "n", k,
                            "kind", fanout ? "fanout" : "diamond", "initiator", "conc_driver");
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body)
        fatal("out of memory building a task request");
    const char *params[1] = { body };
    PGresult *res = exec_retry(conn, retries, "create_task", SQL_CREATE, 1, params);
    free(body);
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        fatal("create_task #%d did not create a task (identity clash?)", k);
    PQclear(res);
}

static long query_long(PGconn *conn, const char *what, const char *sql, const char *run, int col, long *retries)
{
    const char *params[1] = { run };
    PGresult *res = exec_retry(conn, retries, what, sql, 1, params);
    long v = get_long(res, 0, col);
    PQclear(res);
    return v;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: conc_driver [options]\n"
            "  --url URL               database (default: $DATABASE_URL)\n"
            "  --workers N             worker processes (default 6)\n"
            "  --orchestrators N       orchestrator processes (default 2)\n"
            "  --diamonds N            diamond tasks a -> {b,c} -> d (default 200)\n"
            "  --fanouts N             fan-out/fan-in tasks root -> 50 -> join (default 50)\n"
            "  --batch N               steps per claim / hand-back of the last worker; worker batch sizes\n"
            "                          are spread from 1 to N (default 10)\n"
            "  --completion-batch N    messages per process_completions call (default 50)\n"
            "  --lease SECS            claim lease (default 30)\n"
            "  --ns NAME               namespace of the templates (default conc)\n"
            "  --timeout SECS          fail unless every task is terminal by then (default 300)\n");
}

static int parse_int(const char *name, const char *text, int min, int max)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || end == text || v < min || v > max) {
        fprintf(stderr, "conc_driver: --%s must be an integer from %d to %d (got '%s')\n", name, min, max, text);
        exit(2);
    }
    return (int)v;
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "url", required_argument, NULL, 'u' },
        { "workers", required_argument, NULL, 'w' },
        { "orchestrators", required_argument, NULL, 'o' },
        { "diamonds", required_argument, NULL, 'd' },
        { "fanouts", required_argument, NULL, 'f' },
        { "batch", required_argument, NULL, 'b' },
        { "completion-batch", required_argument, NULL, 'c' },
        { "lease", required_argument, NULL, 'l' },
        { "ns", required_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct opts){ .url = getenv("DATABASE_URL"), .ns = "conc", .workers = 6, .orchestrators = 2,
                        .diamonds = 200, .fanouts = 50, .batch = 10, .completion_batch = 50, .lease = 30,
                        .timeout = 300 };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 'w': o->workers = parse_int("workers", optarg, 1, 256); break;
        case 'o': o->orchestrators = parse_int("orchestrators", optarg, 1, 64); break;
        case 'd': o->diamonds = parse_int("diamonds", optarg, 0, 1000000); break;
        case 'f': o->fanouts = parse_int("fanouts", optarg, 0, 100000); break;
        case 'b': o->batch = parse_int("batch", optarg, 1, 1000); break;
        case 'c': o->completion_batch = parse_int("completion-batch", optarg, 1, 10000); break;
        case 'l': o->lease = parse_int("lease", optarg, 1, 86400); break;
        case 'n': o->ns = optarg; break;
        case 't': o->timeout = parse_int("timeout", optarg, 1, 86400); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc || !o->url || !*o->url) {
        if (!o->url || !*o->url)
            fprintf(stderr, "conc_driver: no database: set DATABASE_URL or pass --url\n");
        usage(stderr);
        exit(2);
    }
    if (o->diamonds + o->fanouts == 0) {
        fprintf(stderr, "conc_driver: nothing to do (--diamonds and --fanouts are both 0)\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    parse_opts(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Children inherit the handler; the parent checks g_stop too, so Ctrl-C ends the run cleanly. */
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    g_nchildren = o.workers + o.orchestrators;
    /* Slot i for child i, the last one for the parent. */
    size_t stats_len = sizeof(struct stats) * (size_t)(g_nchildren + 1);
    struct stats *stats = mmap(NULL, stats_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stats == MAP_FAILED)
        fatal("mmap: %s", strerror(errno));
    memset(stats, 0, stats_len);
    struct stats *mine = &stats[g_nchildren];
    g_pids = calloc((size_t)g_nchildren, sizeof *g_pids);
    if (!g_pids)
        fatal("out of memory");

    int total = o.diamonds + o.fanouts;
    long want_steps = (long)o.diamonds * 4 + (long)o.fanouts * (FANOUT_WIDTH + 2);
    char run[64];
    snprintf(run, sizeof run, "%lld-%d", (long long)time(NULL), (int)getpid());
    printf("conc_driver: run %s, namespace %s, %d workers, %d orchestrators, batch %d, completion batch %d\n",
           run, o.ns, o.workers, o.orchestrators, o.batch, o.completion_batch);

    PGconn *conn = connect_db(o.url);
    register_templates(conn, o.ns, &mine->retries);

    /* Half the tasks before the children start, half while they run: creation mixes with
     * processing. The parent's connection is closed across fork() so no child shares it. */
    double t0 = now_s();
    int first_half = total / 2;
    for (int k = 0; k < first_half; k++) {
        if (g_stop)
            fatal("interrupted");
        create_task(conn, &o, run, k, &mine->retries);
    }
    double t_half = now_s();
    PQfinish(conn);

    pid_t parent = getpid();
    for (int i = 0; i < g_nchildren; i++) {
        pid_t pid = fork();
        if (pid < 0)
            fatal("fork: %s", strerror(errno));
        if (pid == 0)
            run_child(&o, i, &stats[i], parent);
        g_pids[i] = pid;
    }

    conn = connect_db(o.url);
    for (int k = first_half; k < total; k++) {
        if (g_stop)
            fatal("interrupted");
        create_task(conn, &o, run, k, &mine->retries);
        if (k % 16 == 0) {
            check_children();
            if (now_s() - t0 > o.timeout)
                fatal("timeout after %d s: still creating tasks (%d of %d)", o.timeout, k + 1, total);
        }
    }
    double t_created = now_s();

    long done = 0, complete = 0;
    for (;;) {
        if (g_stop)
            fatal("interrupted");
        check_children();
        const char *params[1] = { run };
        PGresult *res = exec_retry(conn, &mine->retries, "progress query", SQL_PROGRESS, 1, params);
        long n = get_long(res, 0, 0);
        done = get_long(res, 0, 1);
        complete = get_long(res, 0, 2);
        PQclear(res);
        if (n != total)
            fatal("run %s has %ld tasks, want %d", run, n, total);
        if (done == total)
            break;
        if (now_s() - t0 > o.timeout) {
            char states[1024];
            res = exec_retry(conn, &mine->retries, "step states", SQL_STEP_STATES, 1, params);
            snprintf(states, sizeof states, "%s", PQgetvalue(res, 0, 0));
            PQclear(res);
            fatal("timeout after %d s: %ld of %d tasks terminal; steps: %s", o.timeout, done, total, states);
        }
        sleep_ms(WAIT_POLL_MS);
    }
    double wall = now_s() - t0;

    if (stop_and_reap() > 0)
        fatal("children did not stop cleanly");

    struct stats sum = *mine;
    for (int i = 0; i < g_nchildren; i++) {
        const struct stats *s = &stats[i];
        sum.claim_calls += s->claim_calls;
        sum.claimed += s->claimed;
        sum.submit_calls += s->submit_calls;
        sum.accepted += s->accepted;
        sum.process_calls += s->process_calls;
        sum.messages += s->messages;
        sum.completed += s->completed;
        sum.stale += s->stale;
        sum.steps_enqueued += s->steps_enqueued;
        sum.tasks_completed += s->tasks_completed;
        sum.poll_calls += s->poll_calls;
        sum.poll_enqueued += s->poll_enqueued;
        sum.retries += s->retries;
    }
    long steps = query_long(conn, "step count", SQL_STEP_COUNT, run, 0, &mine->retries);
    PQfinish(conn);

    printf("tasks                 %d\n", total);
    printf("tasks_complete        %ld\n", complete);
    printf("steps                 %ld\n", steps);
    printf("wall_seconds          %.3f\n", wall);
    printf("create_seconds        %.3f (first half %.3f, before the children started)\n", t_created - t0,
           t_half - t0);
    printf("drain_seconds         %.3f (last task created to all terminal)\n", t0 + wall - t_created);
    printf("steps_per_second      %.0f\n", wall > 0 ? (double)steps / wall : 0.0);
    printf("claim_calls           %ld\n", sum.claim_calls);
    printf("steps_claimed         %ld\n", sum.claimed);
    printf("submit_calls          %ld\n", sum.submit_calls);
    printf("steps_accepted        %ld\n", sum.accepted);
    printf("process_calls         %ld\n", sum.process_calls);
    printf("completion_messages   %ld\n", sum.messages);
    printf("steps_completed       %ld\n", sum.completed);
    printf("stale_completions     %ld\n", sum.stale);
    printf("children_enqueued     %ld\n", sum.steps_enqueued);
    printf("tasks_completed       %ld\n", sum.tasks_completed);
    printf("poll_calls            %ld\n", sum.poll_calls);
    printf("poll_enqueued         %ld\n", sum.poll_enqueued);
    printf("deadlock_retries      %ld\n", sum.retries);

    /* The run's own bookkeeping must add up; the SQL assertions of the test check the tables. */
    int bad = 0;
    if (complete != total) {
        fprintf(stderr, "conc_driver: %ld of %d tasks complete (the rest ended otherwise)\n", complete, total);
        bad++;
    }
    if (steps != want_steps) {
        fprintf(stderr, "conc_driver: %ld steps, want %ld\n", steps, want_steps);
        bad++;
    }
    if (sum.claimed != steps || sum.accepted != steps || sum.completed != steps || sum.messages != steps) {
        fprintf(stderr, "conc_driver: claimed %ld, accepted %ld, completion messages %ld, completed %ld; want %ld each\n",
                sum.claimed, sum.accepted, sum.messages, sum.completed, steps);
        bad++;
    }
    /* Every non-root step is dispatched exactly once, by a completion pass or by the poller. */
    if (sum.steps_enqueued + sum.poll_enqueued != steps - total) {
        fprintf(stderr, "conc_driver: %ld children dispatched by completions + %ld by the poller, want %ld\n",
                sum.steps_enqueued, sum.poll_enqueued, steps - total);
        bad++;
    }
    if (sum.tasks_completed != total) {
        fprintf(stderr, "conc_driver: orchestrators completed %ld tasks, want %d\n", sum.tasks_completed, total);
        bad++;
    }
    munmap(stats, stats_len);
    free(g_pids);
    g_pids = NULL;
    return bad ? 1 : 0;
}
