/* statements.h — every SQL statement the daemon runs, prepared on each pool connection at connect. */
#ifndef TASKER_STATEMENTS_H
#define TASKER_STATEMENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "db_conn.h"

/* Indexes into statements[]; the order is the table's. */
enum stmt_id {
    STMT_PING,                /* SELECT 1: health checks */
    STMT_NAMESPACES,          /* names of every namespace */
    STMT_PROCESS_COMPLETIONS, /* tasker.process_completions(ns, batch, vt) */
    STMT_ENQUEUE_READY,       /* tasker.enqueue_ready_steps(limit) */
    STMT_SWEEP,               /* tasker.detect_and_transition_stuck_tasks(...) */
    STMT_VACUUM_CHECK,        /* name, present, permitted for each of text[] table names (vacuum.c) */
    /* the HTTP API (src/orchestratord/http_api.c); each returns one JSON text column unless noted */
    STMT_API_CREATE_TASK,     /* create_task(request): created, task_uuid, state, task json */
    STMT_API_LIST_TASKS,      /* api_list_tasks(namespace, state, name, initiator, source_system, page, per_page) */
    STMT_API_GET_TASK,        /* api_task_json(task) with context and steps; NULL = unknown */
    STMT_API_CANCEL_TASK,     /* cancel_task(task, reason, actor) as json */
    STMT_API_LIST_STEPS,      /* api_steps_json(task); NULL = unknown task */
    STMT_API_GET_STEP,        /* api_step_json(task, step); NULL = unknown */
    STMT_API_RESOLVE_STEP,    /* resolve_step(task, step, body's action/result/reason, actor) + the step */
    STMT_API_STEP_AUDIT,      /* api_step_audit_json(task, step); NULL = unknown */
    STMT_API_REGISTER_TEMPLATE, /* register_task_template(template): status, json */
    STMT_API_LIST_TEMPLATES,  /* api_list_templates(namespace, page, per_page) */
    STMT_API_GET_TEMPLATE,    /* api_template_json(namespace, name, version); NULL = unknown */
    STMT_API_TASK_GRAPH,      /* api_task_graph_dot(task, fold): DOT text; NULL = unknown */
    STMT_API_TEMPLATE_GRAPH,  /* api_template_graph_dot(namespace, name, version): DOT text; NULL = unknown */
    STMT_API_LIST_DLQ,        /* api_list_dlq(resolution_status, page, per_page) */
    STMT_API_UPDATE_DLQ,      /* api_update_dlq(entry, update, actor); NULL = unknown */
    STMT_API_RECOVER_TASK,    /* api_recover_task(task, body, actor, claimed): json, steps_enqueued */
    STMT_API_DLQ_STATS,       /* api_dlq_stats() */
    STMT_API_QUEUE_DEPTHS,    /* queue_name, queue_length, oldest_msg_age_sec of our PGMQ queues */
    STMT_RELAY_READ,          /* relay_read_dispatch(vt, qty): namespace, msg_id, read_ct, message (relay.c) */
    STMT_RELAY_ARCHIVE,       /* relay_archive_dispatch(namespaces text[], msg_ids bigint[]) */
    STMT_PROCESS_POINTERS,    /* process_completion_pointers(ns, deliveries): process_completions' columns */
    STMT_RECOVER_HANDED_BACK, /* recover_handed_back_steps(grace_secs, limit): the same columns (sweeper.c) */
    STMT_COUNT
};

extern const struct db_statement statements[STMT_COUNT];

/* statements_verify: prepare every statement against conninfo on a blocking connection and print
 * one line per statement (the `sql-check` command, never the event loop). false if any fails. */
bool statements_verify(const char *conninfo) __attribute__((warn_unused_result));

#endif
