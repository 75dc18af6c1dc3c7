/* states.h — the task and step state names, mirroring tasker.task_states / tasker.step_states
 * (sql/0201_tasker_states.sql is the authority; tests/unit/check_states.c checks they agree). */
#ifndef TASKER_STATES_H
#define TASKER_STATES_H

#include <stdbool.h>

enum task_state {
    TASK_PENDING,                  /* created, nothing dispatched yet */
    TASK_INITIALIZING,             /* exists only inside task creation */
    TASK_ENQUEUING_STEPS,          /* exists only inside a transaction */
    TASK_STEPS_IN_PROCESS,         /* something dispatched, running or awaiting orchestration */
    TASK_EVALUATING_RESULTS,       /* exists only inside a transaction */
    TASK_WAITING_FOR_DEPENDENCIES, /* nothing in flight, nothing ready */
    TASK_WAITING_FOR_RETRY,        /* nothing in flight; a failed step waits for its backoff */
    TASK_BLOCKED_BY_FAILURES,      /* a step in error, nothing in flight: waits for an operator */
    TASK_COMPLETE,                 /* terminal */
    TASK_ERROR,                    /* terminal */
    TASK_CANCELLED,                /* terminal */
    TASK_RESOLVED_MANUALLY,        /* terminal */
    TASK_STATE_COUNT
};

enum step_state {
    STEP_PENDING,
    STEP_ENQUEUED,
    STEP_IN_PROGRESS,
    STEP_ENQUEUED_FOR_ORCHESTRATION,
    STEP_ENQUEUED_AS_ERROR_FOR_ORCHESTRATION,
    STEP_WAITING_FOR_RETRY,
    STEP_COMPLETE,                 /* terminal */
    STEP_ERROR,                    /* blocks its task until an operator acts */
    STEP_CANCELLED,                /* terminal */
    STEP_RESOLVED_MANUALLY,        /* terminal */
    STEP_STATE_COUNT
};

extern const char *const task_state_names[TASK_STATE_COUNT];
extern const char *const step_state_names[STEP_STATE_COUNT];

bool task_state_is_terminal(enum task_state s);
bool step_state_is_terminal(enum step_state s);

/* *_state_parse: name → enum; false if the name is not a state. */
bool task_state_parse(const char *name, enum task_state *out);
bool step_state_parse(const char *name, enum step_state *out);

#endif
