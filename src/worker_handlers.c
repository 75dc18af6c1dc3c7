/* worker_handlers.c — the worker's handlers: the synchronous built-ins (noop, echo, fail; see
 * worker_util.c), sleep (a timer) and exec (a child process, worker_exec.c). Each ends in exactly
 * one worker_job_finish, unless worker_handler_abort stops it first. */
#include "worker.h"

#include "log.h"
#include "worker_exec.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

extern char **environ;

static void wh_finish(struct worker_job *job, struct worker_outcome *out)
{
    worker_job_finish(job, out);
}

/* ---- sleep ---------------------------------------------------------------------------------- */

static void wh_on_sleep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker_job *job = arg;
    struct worker_outcome out = {
        .success = true,
        .result = json_pack("{s:I}", "slept_ms", (json_int_t)worker_sleep_ms(job->initialization)),
        .retry_after_secs = -1,
    };
    wh_finish(job, &out);
}

static void wh_sleep(struct worker_job *job)
{
    long long ms = worker_sleep_ms(job->initialization);
    struct worker_outcome out;
    if (ms < 0) {
        worker_outcome_failure(&out, false, "sleep: initialization.ms must be an integer from 0 to 604800000 (ms)");
        wh_finish(job, &out);
        return;
    }
    job->timer = evtimer_new(worker_base(job->w), wh_on_sleep, job);
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    if (!job->timer || evtimer_add(job->timer, &tv) != 0) {
        worker_outcome_failure(&out, true, "sleep: cannot arm a timer");
        wh_finish(job, &out);
        return;
    }
    log_debug("worker", "task %s step %s (%s) attempt %d: sleeping %lld ms", job->task_uuid, job->step_uuid,
              job->step_name, job->attempt, ms);
}

/* ---- exec ----------------------------------------------------------------------------------- */

static void wh_on_exec_done(void *arg, const struct worker_exec_result *r)
{
    struct worker_job *job = arg;
    job->exec = NULL; /* freed by worker_exec.c after this returns */
    struct worker_outcome out;
    worker_exec_outcome(r, &out);
    wh_finish(job, &out);
}

/* wh_env: the worker's environment plus TASKER_* variables naming the step (malloc'd array of
 * malloc'd strings; free with wh_env_free). NULL on allocation failure. */
static char **wh_env(const struct worker_job *job)
{
    static const char *const ours[] = { "TASKER_TASK_UUID=", "TASKER_STEP_UUID=", "TASKER_STEP_NAME=",
                                        "TASKER_ATTEMPT=", "TASKER_NAMESPACE=", "TASKER_WORKER_ID=" };
    size_t n = 0;
    while (environ && environ[n])
        n++;
    size_t nours = sizeof ours / sizeof ours[0];
    char **env = calloc(n + nours + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool shadowed = false;
        for (size_t j = 0; j < nours; j++)
            if (strncmp(environ[i], ours[j], strlen(ours[j])) == 0)
                shadowed = true;
        if (!shadowed && !(env[k++] = strdup(environ[i])))
            goto oom;
    }
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", job->attempt);
    const char *vals[] = { job->task_uuid, job->step_uuid, job->step_name, attempt, job->namespace_name,
                           worker_id(job->w) };
    for (size_t j = 0; j < nours; j++) {
        size_t len = strlen(ours[j]) + strlen(vals[j]) + 1;
        char *v = malloc(len);
        if (!v)
            goto oom;
        snprintf(v, len, "%s%s", ours[j], vals[j]);
        env[k++] = v;
    }
    return env;
oom:
    for (size_t i = 0; i < k; i++)
        free(env[i]);
    free(env);
    return NULL;
}

static void wh_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

static void wh_exec(struct worker_job *job)
{
    struct worker_outcome out;
    char err[512];
    char **argv = worker_exec_argv(job->initialization, err, sizeof err);
    if (!argv) {
        worker_outcome_failure(&out, false, "%s", err);
        wh_finish(job, &out);
        return;
    }
    int timeout = worker_exec_timeout_secs(job->initialization, job->timeout_seconds,
                                           worker_handler_timeout_secs(job->w));
    if (timeout < 0) {
        free(argv);
        worker_outcome_failure(&out, false, "exec: initialization.timeout_secs must be an integer from 1 to 604800");
        wh_finish(job, &out);
        return;
    }
    char *input = worker_exec_input(job);
    char **env = wh_env(job);
    if (!input || !env) {
        free(argv);
        free(input);
        wh_env_free(env);
        worker_outcome_failure(&out, true, "exec: out of memory");
        wh_finish(job, &out);
        return;
    }
    job->exec = worker_exec_start(argv, env, input, strlen(input), timeout, WORKER_EXEC_STDOUT_CAP_BYTES,
                                  wh_on_exec_done, job, err, sizeof err);
    wh_env_free(env);
    free(input);
    if (!job->exec) {
        log_warn("worker", "task %s step %s (%s) attempt %d: %s", job->task_uuid, job->step_uuid, job->step_name,
                 job->attempt, err);
        free(argv);
        worker_outcome_failure(&out, true, "exec: %s", err);
        wh_finish(job, &out);
        return;
    }
    log_debug("worker", "task %s step %s (%s) attempt %d: exec %s as pid %d, timeout %d s", job->task_uuid,
              job->step_uuid, job->step_name, job->attempt, argv[0], worker_exec_pid(job->exec), timeout);
    free(argv);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void worker_handler_start(struct worker_job *job)
{
    struct worker_outcome out;
    if (worker_outcome_builtin(job, &out)) {
        wh_finish(job, &out);
        return;
    }
    if (strcmp(job->callable, "sleep") == 0)
        wh_sleep(job);
    else
        wh_exec(job);
}

void worker_handler_abort(struct worker_job *job)
{
    if (job->timer)
        evtimer_del(job->timer);
    if (job->exec) {
        log_info("worker", "task %s step %s (%s) attempt %d: stopping exec pid %d", job->task_uuid, job->step_uuid,
                 job->step_name, job->attempt, worker_exec_pid(job->exec));
        worker_exec_cancel(job->exec);
        job->exec = NULL;
    }
}
