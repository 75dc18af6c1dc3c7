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
        "       tasks_completed, tasks_blocked, rejected_details"
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
        "       $5::integer, $6::integer, $7::integer, $8::integer, $9::integer)",
        9 },
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
