/* states.c — the task and step state names, mirroring tasker.task_states / tasker.step_states. */
#include "states.h"

#include <string.h>

const char *const task_state_names[TASK_STATE_COUNT] = {
    [TASK_PENDING] = "pending",
    [TASK_INITIALIZING] = "initializing",
    [TASK_ENQUEUING_STEPS] = "enqueuing_steps",
    [TASK_STEPS_IN_PROCESS] = "steps_in_process",
    [TASK_EVALUATING_RESULTS] = "evaluating_results",
    [TASK_WAITING_FOR_DEPENDENCIES] = "waiting_for_dependencies",
    [TASK_WAITING_FOR_RETRY] = "waiting_for_retry",
    [TASK_BLOCKED_BY_FAILURES] = "blocked_by_failures",
    [TASK_COMPLETE] = "complete",
    [TASK_ERROR] = "error",
    [TASK_CANCELLED] = "cancelled",
    [TASK_RESOLVED_MANUALLY] = "resolved_manually",
};

const char *const step_state_names[STEP_STATE_COUNT] = {
    [STEP_PENDING] = "pending",
    [STEP_ENQUEUED] = "enqueued",
    [STEP_IN_PROGRESS] = "in_progress",
    [STEP_ENQUEUED_FOR_ORCHESTRATION] = "enqueued_for_orchestration",
    [STEP_ENQUEUED_AS_ERROR_FOR_ORCHESTRATION] = "enqueued_as_error_for_orchestration",
    [STEP_WAITING_FOR_RETRY] = "waiting_for_retry",
    [STEP_COMPLETE] = "complete",
    [STEP_ERROR] = "error",
    [STEP_CANCELLED] = "cancelled",
    [STEP_RESOLVED_MANUALLY] = "resolved_manually",
};

bool task_state_is_terminal(enum task_state s)
{
    return s == TASK_COMPLETE || s == TASK_ERROR || s == TASK_CANCELLED || s == TASK_RESOLVED_MANUALLY;
}

bool step_state_is_terminal(enum step_state s)
{
    return s == STEP_COMPLETE || s == STEP_CANCELLED || s == STEP_RESOLVED_MANUALLY;
}

/* Linear search: a dozen names, called on request parsing only. */
static int state_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

bool task_state_parse(const char *name, enum task_state *out)
{
    int i = state_index(task_state_names, TASK_STATE_COUNT, name);
    if (i < 0)
        return false;
    *out = (enum task_state)i;
    return true;
}

bool step_state_parse(const char *name, enum step_state *out)
{
    int i = state_index(step_state_names, STEP_STATE_COUNT, name);
    if (i < 0)
        return false;
    *out = (enum step_state)i;
    return true;
}
