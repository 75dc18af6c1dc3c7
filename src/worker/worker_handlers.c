/* worker_handlers.c — the worker's handlers: the synchronous built-ins (noop, echo, fail, decision,
 * batch_plan, batch_aggregate; see worker_util.c and worker_dynamic.c), sleep (a timer), exec (a
 * child process, worker_exec.c) and batch_work (timers and checkpoints). Each ends in exactly one
 * worker_job_finish, unless worker_handler_abort stops it first. */
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

/* ---- batch_work ----------------------------------------------------------------------------- */

/* The state machine is worker_dynamic.c's (worker_batch_*); this drives it without blocking the
 * loop: item_ms waits on the job's timer, checkpoints go through worker_job_checkpoint and resume
 * from its callback. Without item_ms a stretch between checkpoints is one O(1) step. */

static void wh_batch_run(struct worker_job *job);

static void wh_on_batch_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker_job *job = arg;
    if (!worker_batch_advance(&job->batch, 1)) {
        struct worker_outcome out;
        worker_outcome_failure(&out, false, "batch_work: the sum overflows 64 bits");
        wh_finish(job, &out);
        return;
    }
    wh_batch_run(job);
}

static void wh_on_batch_checkpoint(struct worker_job *job, bool saved)
{
    if (saved)
        log_debug("worker", "task %s step %s (%s) attempt %d: checkpoint at item %lld saved", job->task_uuid,
                  job->step_uuid, job->step_name, job->attempt, job->batch.pos);
    worker_batch_checkpointed(&job->batch, saved);
    wh_batch_run(job);
}

static void wh_batch_run(struct worker_job *job)
{
    struct worker_outcome out;
    for (;;) {
        long long count;
        switch (worker_batch_next(&job->batch, &count)) {
        case WORKER_BATCH_DONE:
            out = (struct worker_outcome){ .success = true, .result = worker_batch_result(&job->batch),
                                           .retry_after_secs = -1 };
            if (!out.result)
                worker_outcome_failure(&out, true, "batch_work: out of memory");
            wh_finish(job, &out);
            return;
        case WORKER_BATCH_FAIL:
            worker_batch_fail(&job->batch, &out);
            wh_finish(job, &out);
            return;
        case WORKER_BATCH_CHECKPOINT: {
            json_t *doc = worker_batch_checkpoint_doc(&job->batch);
            if (!doc) {
                worker_batch_checkpointed(&job->batch, false);
                continue;
            }
            worker_job_checkpoint(job, doc, wh_on_batch_checkpoint);
            return;
        }
        case WORKER_BATCH_WORK:
            if (job->batch.item_ms > 0) {
                if (!job->timer)
                    job->timer = evtimer_new(worker_base(job->w), wh_on_batch_tick, job);
                long long ms = job->batch.item_ms;
                struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
                if (!job->timer || evtimer_add(job->timer, &tv) != 0) {
                    worker_outcome_failure(&out, true, "batch_work: cannot arm a timer");
                    wh_finish(job, &out);
                }
                return;
            }
            if (!worker_batch_advance(&job->batch, count)) {
                worker_outcome_failure(&out, false, "batch_work: the sum overflows 64 bits");
                wh_finish(job, &out);
                return;
            }
            break;
        }
    }
}

static void wh_batch_work(struct worker_job *job)
{
    char err[512];
    if (!worker_batch_setup(&job->batch, job->initialization, job->inputs, job->checkpoint, job->attempt, err,
                            sizeof err)) {
        struct worker_outcome out;
        worker_outcome_failure(&out, false, "batch_work: %s", err);
        wh_finish(job, &out);
        return;
    }
    const struct worker_batch_run *b = &job->batch;
    if (b->resumed)
        log_info("worker", "task %s step %s (%s) attempt %d: batch %s resumes at item %lld of [%lld, %lld)",
                 job->task_uuid, job->step_uuid, job->step_name, job->attempt, b->batch_id, b->pos, b->start, b->end);
    else if (b->checkpoint_ignored)
        log_warn("worker", "task %s step %s (%s) attempt %d: batch %s: the checkpoint's cursor is not an item of "
                 "[%lld, %lld]; starting over", job->task_uuid, job->step_uuid, job->step_name, job->attempt,
                 b->batch_id, b->start, b->end);
    wh_batch_run(job);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void worker_handler_start(struct worker_job *job)
{
    struct worker_outcome out;
    if (worker_outcome_builtin(job, &out)) {
        wh_finish(job, &out);
        return;
    }
    switch (job->handler) {
    case WORKER_H_SLEEP:
        wh_sleep(job);
        break;
    case WORKER_H_BATCH_WORK:
        wh_batch_work(job);
        break;
    default:
        wh_exec(job);
        break;
    }
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
