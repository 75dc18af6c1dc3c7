/* statements.c — every SQL statement the daemon runs, prepared on each pool connection at connect.
 *
 * Preparing them all at connect is our counterpart of SQLx's compile-time checks: a function
 * renamed or a signature changed in sql/ makes the daemon fail at start, loudly, naming the
 * statement — and `make sql-check` does the same against a freshly migrated database in CI.
 * Every parameter is typed in the text, so no call depends on server-side type guessing.
 */
#include "statements.h"

#include "log.h"

#include <libpq-fe.h>
#include <stdio.h>

const struct db_statement statements[STMT_COUNT] = {
    [STMT_PING] = { "ping", "SELECT 1", 0 },
    [STMT_NAMESPACES] = { "namespaces", "SELECT name FROM tasker.task_namespaces ORDER BY name", 0 },
    [STMT_PROCESS_COMPLETIONS] = {
        "process_completions",
        "SELECT messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued,"
        "       tasks_completed, tasks_blocked, rejected_details, handback_latency_ms"
        "  FROM tasker.process_completions($1::text, $2::integer, $3::integer)",
        3 },
    [STMT_ENQUEUE_READY] = {
        "enqueue_ready_steps",
        "SELECT steps_enqueued, tasks_touched,"
        "       (extract(epoch FROM next_retry_at - clock_timestamp()) * 1000)::bigint AS next_retry_in_ms"
        "  FROM tasker.enqueue_ready_steps($1::integer)",
        1 },
    [STMT_SWEEP] = {
        "sweep",
        "SELECT action, task_uuid, workflow_step_uuid, detail"
        "  FROM tasker.detect_and_transition_stuck_tasks($1::integer, $2::boolean, $3::integer, $4::integer,"
        "       $5::integer, $6::integer, $7::integer, $8::integer, $9::integer, $10::jsonb)",
        10 },
    /* Which of the tables named (text[] of qualified names) exist and may be vacuumed by our role:
     * its owner, else before PostgreSQL 17 the database's owner, from 17 on the MAINTAIN privilege
     * (the rules VACUUM applies; a table it may not vacuum it skips with a mere WARNING). */
    [STMT_VACUUM_CHECK] = {
        "vacuum_check",
        "SELECT t.name, c.oid IS NOT NULL AS present,"
        "       coalesce(pg_has_role(c.relowner, 'USAGE') OR CASE"
        "         WHEN current_setting('server_version_num')::integer >= 170000"
        "           THEN has_table_privilege(c.oid, 'MAINTAIN')"
        "         ELSE NOT c.relisshared AND pg_has_role((SELECT datdba FROM pg_database"
        "                                                  WHERE datname = current_database()), 'USAGE')"
        "       END, false) AS permitted"
        "  FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)"
        "  LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)"
        " ORDER BY t.i",
        1 },

    /* The HTTP API. Reads return the document the client gets (sql/0260_tasker_api.sql builds
     * it); writes return their function's row as json. Bodies travel as the client's own text,
     * cast to jsonb here, so numbers keep every digit. */
    [STMT_API_CREATE_TASK] = {
        "api_create_task",
        "SELECT c.created, c.task_uuid, c.state,"
        "       tasker.api_json_extend(tasker.api_task_json(c.task_uuid, false, false),"
        "                              json_build_object('steps_enqueued', c.steps_enqueued))::text AS task,"
        "       c.steps_enqueued"  /* column 4: the root steps dispatched, for the metrics */
        "  FROM tasker.create_task($1::jsonb) c",
        1 },
    [STMT_API_LIST_TASKS] = {
        "api_list_tasks",
        "SELECT tasker.api_list_tasks($1::text, $2::text, $3::text, $4::text, $5::text, $6::integer, $7::integer)::text",
        7 },
    [STMT_API_GET_TASK] = { "api_get_task", "SELECT tasker.api_task_json($1::uuid, true, true)::text", 1 },
    [STMT_API_CANCEL_TASK] = {
        "api_cancel_task",
        "SELECT row_to_json(r)::text FROM tasker.cancel_task($1::uuid, $2::text, $3::text, $4::text) r",
        4 },
    [STMT_API_LIST_STEPS] = { "api_list_steps", "SELECT tasker.api_steps_json($1::uuid)::text", 1 },
    [STMT_API_GET_STEP] = { "api_get_step", "SELECT tasker.api_step_json($1::uuid, $2::uuid)::text", 2 },
    [STMT_API_RESOLVE_STEP] = {
        "api_resolve_step",
        "SELECT json_build_object('workflow_step_uuid', r.workflow_step_uuid, 'previous_state', r.previous_state,"
        "         'state', r.state, 'task_state', r.task_state, 'steps_enqueued', r.steps_enqueued,"
        "         'step', tasker.api_step_json($1::uuid, $2::uuid))::text, r.steps_enqueued"
        "  FROM tasker.resolve_step($1::uuid, $2::uuid, $3::jsonb ->> 'action_type',"
        "       $3::jsonb -> 'completion_data' -> 'result', $3::jsonb ->> 'reason', $4::text, $5::text) r",
        5 },
    [STMT_API_STEP_AUDIT] = { "api_step_audit", "SELECT tasker.api_step_audit_json($1::uuid, $2::uuid)::text", 2 },
    [STMT_API_REGISTER_TEMPLATE] = {
        "api_register_template",
        "SELECT r.status, row_to_json(r)::text FROM tasker.register_task_template($1::jsonb) r",
        1 },
    [STMT_API_LIST_TEMPLATES] = {
        "api_list_templates",
        "SELECT tasker.api_list_templates($1::text, $2::integer, $3::integer)::text",
        3 },
    [STMT_API_GET_TEMPLATE] = {
        "api_get_template",
        "SELECT tasker.api_template_json($1::text, $2::text, $3::text)::text",
        3 },
    /* DOT text (sql/0265_tasker_graph.sql), sent as it is */
    [STMT_API_TASK_GRAPH] = {
        "api_task_graph",
        "SELECT tasker.api_task_graph_dot($1::uuid, $2::integer)",
        2 },
    [STMT_API_TEMPLATE_GRAPH] = {
        "api_template_graph",
        "SELECT tasker.api_template_graph_dot($1::text, $2::text, $3::text)",
        3 },
    [STMT_API_LIST_DLQ] = {
        "api_list_dlq",
        "SELECT tasker.api_list_dlq($1::text, $2::integer, $3::integer)::text",
        3 },
    [STMT_API_UPDATE_DLQ] = {
        "api_update_dlq",
        "SELECT tasker.api_update_dlq($1::uuid, $2::jsonb, $3::text)::text",
        3 },
    [STMT_API_RECOVER_TASK] = {
        "api_recover_task",
        "SELECT j::text, (j ->> 'steps_enqueued')::integer"
        "  FROM tasker.api_recover_task($1::uuid, $2::jsonb, $3::text, $4::text) j",
        4 },
    [STMT_API_DLQ_STATS] = { "api_dlq_stats", "SELECT tasker.api_dlq_stats()::text", 0 },
    [STMT_API_QUEUE_DEPTHS] = {
        "api_queue_depths",
        "SELECT m.queue_name, m.queue_length, m.oldest_msg_age_sec FROM pgmq.metrics_all() m"
        " WHERE m.queue_name LIKE 'tasker\\_dispatch\\_%' OR m.queue_name LIKE 'tasker\\_completion\\_%'"
        " ORDER BY m.queue_name",
        0 },
    /* messaging.backend = rabbitmq: the dispatch relay (relay.c, sql/0270_tasker_rabbitmq.sql) */
    [STMT_RELAY_READ] = {
        "relay_read",
        "SELECT namespace, msg_id, read_ct, message::text FROM tasker.relay_read_dispatch($1::integer, $2::integer)",
        2 },
    [STMT_RELAY_ARCHIVE] = {
        "relay_archive",
        "SELECT tasker.relay_archive_dispatch($1::text[], $2::bigint[])",
        2 },
    /* … and completions over RabbitMQ (pointer_consumer.c, sweeper.c): process_completions' columns */
    [STMT_PROCESS_POINTERS] = {
        "process_pointers",
        "SELECT messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued,"
        "       tasks_completed, tasks_blocked, rejected_details, handback_latency_ms"
        "  FROM tasker.process_completion_pointers($1::text, $2::jsonb)",
        2 },
    [STMT_RECOVER_HANDED_BACK] = {
        "recover_handed_back",
        "SELECT messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued,"
        "       tasks_completed, tasks_blocked, rejected_details, handback_latency_ms"
        "  FROM tasker.recover_handed_back_steps($1::integer, $2::integer)",
        2 },
};

/* statements_verify: prepare every statement on a blocking connection (the `sql-check` command,
 * never the event loop) and report each one; false if any fails to prepare. */
bool statements_verify(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_error("sql-check", "cannot connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return false;
    }
    int failed = 0;
    for (int i = 0; i < STMT_COUNT; i++) {
        PGresult *r = PQprepare(pg, statements[i].name, statements[i].sql, statements[i].nparams, NULL);
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            printf("ok   %s\n", statements[i].name);
        } else {
            printf("FAIL %s: %s", statements[i].name, PQresultErrorMessage(r));
            failed++;
        }
        PQclear(r);
    }
    PQfinish(pg);
    printf("sql-check: %d of %d statements prepare against this database\n", STMT_COUNT - failed, (int)STMT_COUNT);
    return failed == 0;
}
