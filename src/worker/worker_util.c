/* worker_util.c — the worker's pure logic: options, handler choice, outcomes, text helpers. No I/O besides
 * reading the environment and the host name for defaults, so tests/unit/check_worker.c can drive it. */
#include "worker.h"
#include "worker_exec.h"

#include "amqp_link.h"
#include "names.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static bool wu_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- options -------------------------------------------------------------------------------- */

static bool wu_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("._:@/+-", c) != NULL);
}

bool worker_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > WORKER_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!wu_id_char(id[i]))
            return false;
    return true;
}

void worker_usage(FILE *out)
{
    fprintf(out,
            "usage: tasker-worker --namespace NS [options]\n"
            "\n"
            "Claims the steps of one namespace from PostgreSQL, runs their handlers and hands the results\n"
            "back. SIGTERM/SIGINT drain: stop claiming, let running handlers finish, hand back, exit 0; a\n"
            "second signal exits at once.\n"
            "\n"
            "Options:\n"
            "  -n, --namespace NS             namespace to work for (required)\n"
            "  -c, --concurrency N            handlers running at once (default %d, 1..1000)\n"
            "  -b, --batch N                  most steps per claim (default %d, 1..1000)\n"
            "  -l, --lease-secs S             lease per claim and heartbeat (default %d, 1..86400)\n"
            "  -p, --poll-ms MS               claim at least this often (default %d, 10..3600000)\n"
            "  -w, --worker-id ID             id recorded with claims and results\n"
            "                                 (default worker-<host>-<pid>; [A-Za-z0-9._:@/+-], <= %d)\n"
            "  -t, --handler-timeout-secs S   exec timeout when the step sets none, and the drain\n"
            "                                 limit (default %d, 1..604800)\n"
            "  -d, --database-url URL         database (default: $DATABASE_URL)\n"
            "      --listen-url URL           the LISTEN connection's database (default: $TASKER_LISTEN_URL,\n"
            "                                 else the database URL); direct when that is PgBouncer's\n"
            "      --transaction-pooling      the database URL is a transaction-pooling PgBouncer: session\n"
            "                                 settings go with every transaction (or $TASKER_TRANSACTION_POOLING=1)\n"
            "      --no-prepared-statements   send every statement unnamed, with its text (PgBouncer < 1.21 in\n"
            "                                 transaction mode; or $TASKER_PREPARED_STATEMENTS=0)\n"
            "      --backend pgmq|rabbitmq    where dispatch messages come from (default: $TASKER_MESSAGING_BACKEND,\n"
            "                                 else pgmq); rabbitmq consumes tasker_dispatch_<ns> with prefetch =\n"
            "                                 concurrency and acks after the claim committed\n"
            "      --amqp-url URL             the broker with --backend rabbitmq (default: $TASKER_AMQP_URL)\n"
            "      --handler-map C=B          run built-in B for steps whose handler callable is C, or\n"
            "                                 C#METHOD for that callable and handler method (repeatable,\n"
            "                                 up to %d; C#METHOD wins over C)\n"
            "      --default-handler B        run built-in B for any callable not mapped or built in\n"
            "                                 (default: such steps fail permanently)\n"
            "  -v, --verbose                  debug logging\n"
            "  -h, --help                     show this help\n"
            "  -V, --version                  show the version\n"
            "\n"
            "Built-in handlers (the step's handler.callable, or mapped; configured by handler.initialization):\n"
            "  noop             succeed with {}\n"
            "  echo             succeed with the context, initialization, dependencies and attempt\n"
            "  fail             fail: message, retryable, succeed_on_attempt, retry_after_secs\n"
            "  sleep            succeed after ms milliseconds\n"
            "  exec             run command (argv), the step as JSON on stdin, the result as JSON on stdout\n"
            "  decision         choose branches by rules on the task context (decision_point_outcome)\n"
            "  batch_plan       split total_items into batches of batch_size (batch_processing_outcome)\n"
            "  batch_work       process one batch's cursor range, checkpointing every checkpoint_interval\n"
            "  batch_aggregate  sum the results of the batch workers (convergence)\n"
            "See docs/worker.md or tasker-worker(1) for their keys.\n"
            "\n"
            "Exit status: 0 drained cleanly, 1 failure or forced exit, 2 usage error.\n",
            WORKER_DEFAULT_CONCURRENCY, WORKER_DEFAULT_BATCH, WORKER_DEFAULT_LEASE_SECS, WORKER_DEFAULT_POLL_MS,
            WORKER_ID_MAX, WORKER_DEFAULT_HANDLER_TIMEOUT_SECS, WORKER_HANDLER_MAP_MAX);
}

/* ---- handler choice ------------------------------------------------------------------------- */

static const char *const wu_builtin_names[] = {
    [WORKER_H_UNKNOWN] = "unknown",
    [WORKER_H_NOOP] = "noop",
    [WORKER_H_ECHO] = "echo",
    [WORKER_H_FAIL] = "fail",
    [WORKER_H_SLEEP] = "sleep",
    [WORKER_H_EXEC] = "exec",
    [WORKER_H_DECISION] = "decision",
    [WORKER_H_BATCH_PLAN] = "batch_plan",
    [WORKER_H_BATCH_WORK] = "batch_work",
    [WORKER_H_BATCH_AGGREGATE] = "batch_aggregate",
};
#define WU_NBUILTINS ((int)(sizeof wu_builtin_names / sizeof wu_builtin_names[0]))

enum worker_builtin worker_builtin_parse(const char *name)
{
    for (int b = WORKER_H_UNKNOWN + 1; b < WU_NBUILTINS; b++)
        if (strcmp(name, wu_builtin_names[b]) == 0)
            return (enum worker_builtin)b;
    return WORKER_H_UNKNOWN;
}

const char *worker_builtin_name(enum worker_builtin b)
{
    return (int)b >= 0 && (int)b < WU_NBUILTINS ? wu_builtin_names[b] : "unknown";
}

/* wu_map_find: the map entry whose callable is exactly s[0..len), or NULL. */
static const struct worker_handler_map_entry *wu_map_find(const struct worker_opts *o, const char *s, size_t len)
{
    for (int i = 0; o && i < o->handler_map_n; i++)
        if (o->handler_map[i].callable_len == len && memcmp(o->handler_map[i].callable, s, len) == 0)
            return &o->handler_map[i];
    return NULL;
}

enum worker_builtin worker_handler_resolve(const struct worker_opts *o, const char *callable, const char *method)
{
    const struct worker_handler_map_entry *e;
    if (method && *method) {
        /* "steps that share a callable differ only by method": CALLABLE#METHOD first. */
        size_t cl = strlen(callable), ml = strlen(method);
        char *key = malloc(cl + ml + 2);
        if (key) {
            memcpy(key, callable, cl);
            key[cl] = '#';
            memcpy(key + cl + 1, method, ml + 1);
            e = wu_map_find(o, key, cl + ml + 1);
            free(key);
            if (e)
                return e->builtin;
        }
    }
    if ((e = wu_map_find(o, callable, strlen(callable))))
        return e->builtin;
    enum worker_builtin b = worker_builtin_parse(callable);
    if (b != WORKER_H_UNKNOWN)
        return b;
    return o ? o->default_handler : WORKER_H_UNKNOWN;
}

/* wu_builtin_arg: parse a built-in's name for an option; false with err filled. */
static bool wu_builtin_arg(const char *opt, const char *arg, const char *name, enum worker_builtin *out, char *err,
                           size_t errlen)
{
    *out = worker_builtin_parse(name);
    if (*out != WORKER_H_UNKNOWN)
        return true;
    snprintf(err, errlen, "invalid %s '%s': '%s' is not a built-in handler (noop, echo, fail, sleep, exec, decision, "
             "batch_plan, batch_work, batch_aggregate)", opt, arg, name);
    return false;
}

/* wu_handler_map_arg: one --handler-map CALLABLE[#METHOD]=BUILTIN into o; false with err filled. */
static bool wu_handler_map_arg(struct worker_opts *o, const char *arg, char *err, size_t errlen)
{
    /* The last '=': a callable may hold one, a built-in's name never does. */
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || eq[1] == '\0') {
        snprintf(err, errlen, "invalid --handler-map '%s': want CALLABLE=BUILTIN or CALLABLE#METHOD=BUILTIN", arg);
        return false;
    }
    size_t len = (size_t)(eq - arg);
    if (arg[0] == '#' || arg[len - 1] == '#') {
        snprintf(err, errlen, "invalid --handler-map '%s': empty callable or method around '#'", arg);
        return false;
    }
    enum worker_builtin b;
    if (!wu_builtin_arg("--handler-map", arg, eq + 1, &b, err, errlen))
        return false;
    if (wu_map_find(o, arg, len)) {
        snprintf(err, errlen, "invalid --handler-map '%s': '%.*s' is mapped twice", arg, (int)len, arg);
        return false;
    }
    if (o->handler_map_n >= WORKER_HANDLER_MAP_MAX) {
        snprintf(err, errlen, "too many --handler-map options (at most %d)", WORKER_HANDLER_MAP_MAX);
        return false;
    }
    o->handler_map[o->handler_map_n++] = (struct worker_handler_map_entry){ arg, len, b };
    return true;
}

/* wu_int: parse a whole decimal integer within [min, max]. */
static bool wu_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* wu_default_id: worker-<host>-<pid>, the host name reduced to id characters. */
static void wu_default_id(char *out, size_t len)
{
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!wu_id_char(*p))
            *p = '_';
    snprintf(out, len, "worker-%s-%ld", host, (long)getpid());
}

/* Long-only options: values outside the short-option letters. */
enum { WU_OPT_HANDLER_MAP = 256, WU_OPT_DEFAULT_HANDLER, WU_OPT_LISTEN_URL, WU_OPT_TX_POOLING, WU_OPT_NO_PREPARED,
       WU_OPT_BACKEND, WU_OPT_AMQP_URL };

/* wu_env_bool: $name as a boolean (1/true/yes/on, 0/false/no/off); def when unset or empty, false
 * with err set when it is something else. */
static bool wu_env_bool(const char *name, bool def, bool *out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    *out = def;
    if (!v || !*v)
        return true;
    static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return true;
        }
    }
    snprintf(err, errlen, "invalid $%s '%.32s': want 1, true, yes, on, 0, false, no or off", name, v);
    return false;
}

enum worker_parse_status worker_opts_parse(int argc, char **argv, struct worker_opts *o, char *err, size_t errlen)
{
    static const struct option longopts[] = {
        { "namespace", required_argument, NULL, 'n' },
        { "concurrency", required_argument, NULL, 'c' },
        { "batch", required_argument, NULL, 'b' },
        { "lease-secs", required_argument, NULL, 'l' },
        { "poll-ms", required_argument, NULL, 'p' },
        { "worker-id", required_argument, NULL, 'w' },
        { "handler-timeout-secs", required_argument, NULL, 't' },
        { "handler-map", required_argument, NULL, WU_OPT_HANDLER_MAP },
        { "default-handler", required_argument, NULL, WU_OPT_DEFAULT_HANDLER },
        { "database-url", required_argument, NULL, 'd' },
        { "backend", required_argument, NULL, WU_OPT_BACKEND },
        { "amqp-url", required_argument, NULL, WU_OPT_AMQP_URL },
        { "listen-url", required_argument, NULL, WU_OPT_LISTEN_URL },
        { "transaction-pooling", no_argument, NULL, WU_OPT_TX_POOLING },
        { "no-prepared-statements", no_argument, NULL, WU_OPT_NO_PREPARED },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->concurrency = WORKER_DEFAULT_CONCURRENCY;
    o->batch = WORKER_DEFAULT_BATCH;
    o->lease_secs = WORKER_DEFAULT_LEASE_SECS;
    o->poll_ms = WORKER_DEFAULT_POLL_MS;
    o->handler_timeout_secs = WORKER_DEFAULT_HANDLER_TIMEOUT_SECS;
    wu_default_id(o->worker_id, sizeof o->worker_id);
    err[0] = '\0';
    if (!wu_env_bool("TASKER_TRANSACTION_POOLING", false, &o->transaction_pooling, err, errlen) ||
        !wu_env_bool("TASKER_PREPARED_STATEMENTS", true, &o->prepared_statements, err, errlen))
        return WORKER_PARSE_ERROR;

    bool have_ns = false;
    const char *backend = getenv("TASKER_MESSAGING_BACKEND");
    optind = 0; /* glibc: full re-initialisation, so tests may parse several times */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":n:c:b:l:p:w:t:d:vhV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if (!namespace_name_valid(optarg)) {
                snprintf(err, errlen, "invalid --namespace '%s': must match ^[a-z][a-z0-9_]{0,28}$", optarg);
                return WORKER_PARSE_ERROR;
            }
            snprintf(o->namespace_name, sizeof o->namespace_name, "%s", optarg);
            have_ns = true;
            break;
        case 'c':
            if (!wu_int(optarg, 1, 1000, &o->concurrency)) {
                snprintf(err, errlen, "invalid --concurrency '%s': want an integer from 1 to 1000", optarg);
                return WORKER_PARSE_ERROR;
            }
            break;
        case 'b':
            if (!wu_int(optarg, 1, 1000, &o->batch)) {
                snprintf(err, errlen, "invalid --batch '%s': want an integer from 1 to 1000", optarg);
                return WORKER_PARSE_ERROR;
            }
            break;
        case 'l':
            if (!wu_int(optarg, 1, 86400, &o->lease_secs)) {
                snprintf(err, errlen, "invalid --lease-secs '%s': want an integer from 1 to 86400", optarg);
                return WORKER_PARSE_ERROR;
            }
            break;
        case 'p':
            if (!wu_int(optarg, 10, 3600000, &o->poll_ms)) {
                snprintf(err, errlen, "invalid --poll-ms '%s': want an integer from 10 to 3600000", optarg);
                return WORKER_PARSE_ERROR;
            }
            break;
        case 'w':
            if (!worker_id_valid(optarg)) {
                snprintf(err, errlen, "invalid --worker-id '%s': 1 to %d of A-Z a-z 0-9 . _ : @ / + -", optarg,
                         WORKER_ID_MAX);
                return WORKER_PARSE_ERROR;
            }
            snprintf(o->worker_id, sizeof o->worker_id, "%s", optarg);
            break;
        case 't':
            if (!wu_int(optarg, 1, 604800, &o->handler_timeout_secs)) {
                snprintf(err, errlen, "invalid --handler-timeout-secs '%s': want an integer from 1 to 604800", optarg);
                return WORKER_PARSE_ERROR;
            }
            break;
        case WU_OPT_HANDLER_MAP:
            if (!wu_handler_map_arg(o, optarg, err, errlen))
                return WORKER_PARSE_ERROR;
            break;
        case WU_OPT_DEFAULT_HANDLER:
            if (!wu_builtin_arg("--default-handler", optarg, optarg, &o->default_handler, err, errlen))
                return WORKER_PARSE_ERROR;
            break;
        case 'd':
            o->database_url = optarg;
            break;
        case WU_OPT_BACKEND:
            backend = optarg;
            break;
        case WU_OPT_AMQP_URL:
            o->amqp_url = optarg;
            break;
        case WU_OPT_LISTEN_URL:
            o->listen_url = optarg;
            break;
        case WU_OPT_TX_POOLING:
            o->transaction_pooling = true;
            break;
        case WU_OPT_NO_PREPARED:
            o->prepared_statements = false;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            return WORKER_PARSE_HELP;
        case 'V':
            return WORKER_PARSE_VERSION;
        case ':':
            snprintf(err, errlen, "option %s needs a value", argv[optind - 1]);
            return WORKER_PARSE_ERROR;
        default:
            if (optopt)
                snprintf(err, errlen, "unknown option -%c", optopt);
            else
                snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
            return WORKER_PARSE_ERROR;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return WORKER_PARSE_ERROR;
    }
    if (!have_ns) {
        snprintf(err, errlen, "--namespace is required");
        return WORKER_PARSE_ERROR;
    }
    if (!o->database_url) {
        const char *env = getenv("DATABASE_URL");
        if (env && *env)
            o->database_url = env;
    }
    if (!o->database_url || !*o->database_url) {
        snprintf(err, errlen, "no database: set DATABASE_URL or pass --database-url");
        return WORKER_PARSE_ERROR;
    }
    if (backend && *backend && strcmp(backend, "pgmq") != 0 && strcmp(backend, "rabbitmq") != 0) {
        snprintf(err, errlen, "invalid backend '%.32s': want pgmq or rabbitmq", backend);
        return WORKER_PARSE_ERROR;
    }
    o->rabbitmq = backend && strcmp(backend, "rabbitmq") == 0;
    if (o->rabbitmq) {
        if (!o->amqp_url || !*o->amqp_url)
            o->amqp_url = getenv("TASKER_AMQP_URL");
        char why[200];
        if (!o->amqp_url || !*o->amqp_url) {
            snprintf(err, errlen, "--backend rabbitmq needs --amqp-url or TASKER_AMQP_URL");
            return WORKER_PARSE_ERROR;
        }
        if (!amqp_url_check(o->amqp_url, why, sizeof why)) {
            snprintf(err, errlen, "--amqp-url %s", why);
            return WORKER_PARSE_ERROR;
        }
    }
    if (!o->listen_url || !*o->listen_url) {
        const char *env = getenv("TASKER_LISTEN_URL");
        o->listen_url = env && *env ? env : o->database_url;
    }
    return WORKER_PARSE_OK;
}

/* ---- outcomes ------------------------------------------------------------------------------- */

void worker_outcome_clear(struct worker_outcome *out)
{
    json_decref(out->result);
    json_decref(out->error);
    out->result = NULL;
    out->error = NULL;
}

/* wu_string: a jansson string from text that may not be valid UTF-8. New reference. */
static json_t *wu_string(const char *s)
{
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n + 1);
    worker_utf8_fix(copy, n);
    json_t *j = json_stringn(copy, n);
    free(copy);
    return j;
}

static void wu_failure_v(struct worker_outcome *out, bool retryable, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void wu_failure_v(struct worker_outcome *out, bool retryable, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    out->success = false;
    out->result = NULL;
    out->error = json_object();
    out->retry_after_secs = -1;
    json_object_set_new(out->error, "message", wu_string(msg));
    json_object_set_new(out->error, "retryable", json_boolean(retryable));
}

void worker_outcome_failure(struct worker_outcome *out, bool retryable, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    wu_failure_v(out, retryable, fmt, ap);
    va_end(ap);
}

static void wu_success(struct worker_outcome *out, json_t *result)
{
    out->success = true;
    out->result = result;
    out->error = NULL;
    out->retry_after_secs = -1;
}

/* wu_fail_handler: the `fail` built-in (docs/worker.md). */
static void wu_fail_handler(const struct worker_job *job, struct worker_outcome *out)
{
    const json_t *init = job->initialization;
    const json_t *succeed_on = json_object_get(init, "succeed_on_attempt");
    if (json_is_integer(succeed_on) && job->attempt >= json_integer_value(succeed_on)) {
        wu_success(out, json_pack("{s:i, s:I}", "attempt", job->attempt, "succeeded_on_attempt",
                                  (json_int_t)json_integer_value(succeed_on)));
        return;
    }
    bool retryable = !json_is_false(json_object_get(init, "retryable"));
    const char *message = json_string_value(json_object_get(init, "message"));
    if (message)
        worker_outcome_failure(out, retryable, "%s", message);
    else
        worker_outcome_failure(out, retryable, "failed as configured (fail handler, attempt %d)", job->attempt);
    json_object_set_new(out->error, "attempt", json_integer(job->attempt));
    const json_t *after = json_object_get(init, "retry_after_secs");
    if (json_is_integer(after) && json_integer_value(after) >= 0 && json_integer_value(after) <= INT_MAX)
        out->retry_after_secs = (int)json_integer_value(after);
}

/* wu_dynamic: a synchronous dynamic handler's outcome (ok, result, err: what it returned); a
 * configuration error fails permanently. */
static void wu_dynamic(struct worker_outcome *out, const char *name, bool ok, json_t *result, const char *err)
{
    if (ok)
        wu_success(out, result);
    else
        worker_outcome_failure(out, false, "%s: %s", name, err);
}

bool worker_outcome_builtin(const struct worker_job *job, struct worker_outcome *out)
{
    json_t *result = NULL;
    char err[512] = "";
    bool ok;
    switch (job->handler) {
    case WORKER_H_NOOP:
        wu_success(out, json_object());
        break;
    case WORKER_H_ECHO:
        wu_success(out, json_pack("{s:O, s:O, s:O, s:i}", "context", job->context, "initialization",
                                  job->initialization, "dependencies", job->dependencies, "attempt", job->attempt));
        break;
    case WORKER_H_FAIL:
        wu_fail_handler(job, out);
        break;
    case WORKER_H_DECISION:
        ok = worker_decision(job->initialization, job->context, &result, err, sizeof err);
        wu_dynamic(out, "decision", ok, result, err);
        break;
    case WORKER_H_BATCH_PLAN:
        ok = worker_batch_plan(job->initialization, job->context, &result, err, sizeof err);
        wu_dynamic(out, "batch_plan", ok, result, err);
        break;
    case WORKER_H_BATCH_AGGREGATE:
        ok = worker_batch_aggregate(job->initialization, job->dependencies, &result, err, sizeof err);
        wu_dynamic(out, "batch_aggregate", ok, result, err);
        break;
    case WORKER_H_SLEEP:
    case WORKER_H_EXEC:
    case WORKER_H_BATCH_WORK:
        return false;
    case WORKER_H_UNKNOWN:
    default:
        worker_outcome_failure(out, false,
                               "unknown handler callable \"%s\"%s%s: this worker runs noop, echo, fail, sleep, exec, "
                               "decision, batch_plan, batch_work and batch_aggregate (map others with "
                               "--handler-map or --default-handler)",
                               job->callable, job->handler_method && *job->handler_method ? " method " : "",
                               job->handler_method && *job->handler_method ? job->handler_method : "");
        break;
    }
    return true;
}

long long worker_sleep_ms(const json_t *initialization)
{
    const json_t *ms = json_object_get(initialization, "ms");
    if (!ms || json_is_null(ms))
        return WORKER_DEFAULT_SLEEP_MS;
    if (!json_is_integer(ms) || json_integer_value(ms) < 0 || json_integer_value(ms) > 7LL * 86400 * 1000)
        return -1;
    return json_integer_value(ms);
}

/* ---- exec ----------------------------------------------------------------------------------- */

char **worker_exec_argv(const json_t *initialization, char *err, size_t errlen)
{
    const json_t *cmd = json_object_get(initialization, "command");
    if (!json_is_array(cmd) || json_array_size(cmd) == 0) {
        snprintf(err, errlen, "exec: initialization.command must be a non-empty array of strings (argv, no shell)");
        return NULL;
    }
    size_t n = json_array_size(cmd);
    char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) {
        snprintf(err, errlen, "exec: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(cmd, i));
        if (!s || (i == 0 && !*s) || strlen(s) != json_string_length(json_array_get(cmd, i))) {
            snprintf(err, errlen, "exec: initialization.command[%zu] must be a %sstring without NUL bytes", i,
                     i == 0 ? "non-empty " : "");
            free(argv);
            return NULL;
        }
        argv[i] = (char *)s;
    }
    return argv;
}

int worker_exec_timeout_secs(const json_t *initialization, int step_timeout_secs, int fallback_secs)
{
    const json_t *t = json_object_get(initialization, "timeout_secs");
    if (t && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 7 * 86400)
            return -1;
        return (int)json_integer_value(t);
    }
    return step_timeout_secs > 0 ? step_timeout_secs : fallback_secs;
}

char *worker_exec_input(const struct worker_job *job)
{
    json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:s?, s:s?, s:s?, s:O?}",
                            "task_uuid", job->task_uuid, "step_uuid", job->step_uuid, "step_name", job->step_name,
                            "attempt", job->attempt, "namespace", job->namespace_name, "task_name", job->task_name,
                            "correlation_id", job->correlation_id, "context", job->context, "initialization",
                            job->initialization, "inputs", job->inputs, "dependencies", job->dependencies,
                            "handler_method", job->handler_method, "handler_resolver", job->handler_resolver,
                            "step_type", job->step_type, "checkpoint", job->checkpoint);
    if (!doc)
        return NULL;
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(doc);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    return line;
}

static const char *wu_signal_name(int sig)
{
    const char *d = sigabbrev_np(sig);
    return d ? d : "?";
}

/* wu_only_space: buf holds nothing but whitespace. */
static bool wu_only_space(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!wu_is_space(buf[i]))
            return false;
    return true;
}

void worker_exec_outcome(const struct worker_exec_result *r, struct worker_outcome *out)
{
    char tail[WORKER_ERR_TAIL_CHARS + 16];
    worker_text_tail(r->err, r->err_len, WORKER_ERR_TAIL_LINES, WORKER_ERR_TAIL_CHARS, tail, sizeof tail);
    const char *sep = tail[0] ? "; stderr: " : "";

    if (r->overflow) {
        worker_outcome_failure(out, true, "stdout exceeded the %zu-byte output cap; the command was killed%s%s",
                               r->cap_bytes, sep, tail);
    } else if (r->timed_out) {
        worker_outcome_failure(out, true, "timed out after %d s (killed)%s%s", r->timeout_secs, sep, tail);
        json_object_set_new(out->error, "timed_out", json_true());
    } else if (r->exited && r->exit_code == 0) {
        json_error_t jerr;
        json_t *result = NULL;
        if (wu_only_space(r->out, r->out_len)) {
            worker_outcome_failure(out, true, "stdout is not valid JSON: no output (exit 0 must print one JSON value)");
            return;
        }
        result = json_loadb(r->out, r->out_len, JSON_DECODE_ANY, &jerr);
        if (!result) {
            worker_outcome_failure(out, true, "stdout is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                                   jerr.column);
            return;
        }
        wu_success(out, result);
        return;
    } else if (r->exited) {
        worker_outcome_failure(out, true, "exited with status %d%s%s", r->exit_code, tail[0] ? ": " : "", tail);
        json_object_set_new(out->error, "exit_code", json_integer(r->exit_code));
        /* A JSON object on stdout refines the error: retryable, retry_after_secs, message, details. */
        json_t *extra = r->out_len ? json_loadb(r->out, r->out_len, 0, NULL) : NULL;
        if (json_is_object(extra)) {
            const json_t *after = json_object_get(extra, "retry_after_secs");
            if (json_is_integer(after) && json_integer_value(after) >= 0 && json_integer_value(after) <= INT_MAX)
                out->retry_after_secs = (int)json_integer_value(after);
            json_object_update(out->error, extra);
            if (!json_is_string(json_object_get(out->error, "message")))
                json_object_set_new(out->error, "message", json_string("exec: command failed"));
        }
        json_decref(extra);
    } else {
        worker_outcome_failure(out, true, "killed by signal %d (SIG%s)%s%s", r->term_signal,
                               wu_signal_name(r->term_signal), sep, tail);
    }
    if (r->err_len)
        json_object_set_new(out->error, "stderr_tail", wu_string(tail));
}

/* ---- text ----------------------------------------------------------------------------------- */

void worker_utf8_fix(char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c == 0) {
            s[i++] = '?';
            continue;
        } else if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            s[i++] = '?';
            continue;
        }
        bool ok = i + need < len;
        if (ok) {
            unsigned char c1 = (unsigned char)s[i + 1];
            ok = c1 >= lo && c1 <= hi;
            for (size_t k = 2; ok && k <= need; k++) {
                unsigned char ck = (unsigned char)s[i + k];
                ok = ck >= 0x80 && ck <= 0xBF;
            }
        }
        if (ok) {
            i += need + 1;
        } else {
            s[i++] = '?';
        }
    }
}

void worker_text_tail(const char *buf, size_t len, int max_lines, size_t max_chars, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!buf || outlen == 0)
        return;
    size_t end = len;
    while (end > 0 && wu_is_space(buf[end - 1]))
        end--;
    /* Walk back over max_lines non-empty lines: each is [ls, pos). */
    size_t start = end, pos = end;
    int lines = 0;
    while (pos > 0 && lines < max_lines) {
        size_t ls = pos;
        while (ls > 0 && buf[ls - 1] != '\n')
            ls--;
        for (size_t k = ls; k < pos; k++) {
            if (!wu_is_space(buf[k])) {
                lines++;
                break;
            }
        }
        start = ls;
        if (ls == 0)
            break;
        pos = ls - 1;
    }
    while (start < end && wu_is_space(buf[start]))
        start++;
    if (end - start > max_chars)
        start = end - max_chars;
    if (end - start >= outlen)
        start = end - (outlen - 1);
    /* Do not start inside a UTF-8 sequence. */
    while (start < end && ((unsigned char)buf[start] & 0xC0) == 0x80)
        start++;
    size_t n = end - start;
    memcpy(out, buf + start, n);
    out[n] = '\0';
    worker_utf8_fix(out, n);
}

/* ---- misc ----------------------------------------------------------------------------------- */

bool worker_notify_wakes(const char *payload, const char *queue)
{
    if (!payload)
        return false;
    json_t *j = json_loads(payload, 0, NULL);
    const char *q = json_string_value(json_object_get(j, "queue"));
    bool wakes = q && strcmp(q, queue) == 0;
    json_decref(j);
    return wakes;
}
