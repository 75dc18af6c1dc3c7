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
    STMT_COUNT
};

extern const struct db_statement statements[STMT_COUNT];

/* statements_verify: prepare every statement against conninfo on a blocking connection and print
 * one line per statement (the `sql-check` command, never the event loop). false if any fails. */
bool statements_verify(const char *conninfo) __attribute__((warn_unused_result));

#endif
