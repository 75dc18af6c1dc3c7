#!/usr/bin/env bash
# 61_daemon_dynamic.sh — dynamic workflows end to end (issue 10): two daemons and two workers with
# the built-in decision and batch handlers over 500 tasks of five shapes (conditional approval,
# a 1,000-row batch with parallelism 4, a decision that creates a batch, an empty decision, an
# empty batch plan). Every task completes; every step that exists ran exactly once; each decision
# created exactly the branches its rule chose; no batch ever had more than 4 workers in flight;
# each convergence saw every worker; no queue message is left.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=dyn
TASKS=${DYN_TASKS:-500}

url=$(fresh_db tasker_dynamic) || { fail "fresh database tasker_dynamic"; finish; exit 1; }
q() { psql_at "$url" "$1"; }

# The templates, in tasker-core's key spelling (the aliases `step_type` and `deferred` included).
psql "$url" -X -q -v ON_ERROR_STOP=1 -v ns="$NS" >/dev/null <<'SQL' || fail "register the dynamic templates"
SELECT tasker.register_task_template(jsonb_build_object('name', 'approval', 'namespace_name', :'ns', 'version', '1.0.0',
  'steps', '[
    {"name": "validate", "handler": {"callable": "noop"}},
    {"name": "route", "type": "decision", "dependencies": ["validate"],
     "handler": {"callable": "decision", "initialization": {
       "rules": [{"path": "amount", "lt": 0, "choose": []},
                 {"path": "amount", "lt": 1000, "choose": ["auto_approve"]},
                 {"path": "amount", "lt": 5000, "choose": ["manager_approval"]}],
       "default": ["manager_approval", "finance_review"]}}},
    {"name": "auto_approve", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "manager_approval", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "finance_review", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "finalize", "step_type": "deferred", "dependencies": ["auto_approve", "manager_approval", "finance_review"],
     "handler": {"callable": "echo"}}]'::jsonb));
SELECT tasker.register_task_template(jsonb_build_object('name', 'rows', 'namespace_name', :'ns', 'version', '1.0.0',
  'steps', '[
    {"name": "plan", "type": "batchable", "handler": {"callable": "batch_plan", "initialization": {
       "total_items_path": "rows", "batch_size": 100, "max_workers": 50, "worker_template_name": "work"}}},
    {"name": "work", "type": "batch_worker", "dependencies": ["plan"], "handler": {"callable": "batch_work"},
     "batch_config": {"batch_size": 100, "parallelism": 4, "cursor_field": "id", "failure_strategy": "fail_fast",
                      "checkpoint_interval": 25}},
    {"name": "total", "type": "deferred_convergence", "dependencies": ["work"],
     "handler": {"callable": "batch_aggregate", "initialization": {"worker_template_name": "work"}}},
    {"name": "report", "dependencies": ["total"], "handler": {"callable": "echo"}}]'::jsonb));
SELECT tasker.register_task_template(jsonb_build_object('name', 'routed_batch', 'namespace_name', :'ns', 'version', '1.0.0',
  'steps', '[
    {"name": "start", "handler": {"callable": "noop"}},
    {"name": "pick", "type": "decision_point", "dependencies": ["start"], "handler": {"callable": "decision", "initialization": {
       "rules": [{"path": "parity", "eq": "even", "choose": ["even_plan"]}], "default": ["odd_plan"]}}},
    {"name": "even_plan", "type": "batchable", "dependencies": ["pick"], "handler": {"callable": "batch_plan",
       "initialization": {"total_items": 50, "batch_size": 10, "worker_template_name": "even_work"}}},
    {"name": "even_work", "type": "batch_worker", "dependencies": ["even_plan"], "handler": {"callable": "batch_work"},
     "batch_config": {"batch_size": 10, "parallelism": 2, "failure_strategy": "isolate"}},
    {"name": "even_total", "type": "deferred_convergence", "dependencies": ["even_work"],
     "handler": {"callable": "batch_aggregate", "initialization": {"worker_template_name": "even_work"}}},
    {"name": "odd_plan", "type": "batchable", "dependencies": ["pick"], "handler": {"callable": "batch_plan",
       "initialization": {"total_items": 30, "batch_size": 10, "worker_template_name": "odd_work"}}},
    {"name": "odd_work", "type": "batch_worker", "dependencies": ["odd_plan"], "handler": {"callable": "batch_work"},
     "batch_config": {"batch_size": 10, "parallelism": 2, "failure_strategy": "continue_on_failure"}},
    {"name": "odd_total", "type": "deferred_convergence", "dependencies": ["odd_work"],
     "handler": {"callable": "batch_aggregate", "initialization": {"worker_template_name": "odd_work"}}}]'::jsonb));
SQL

dt_start_daemon d1 "$url"
dt_start_daemon d2 "$url"
dt_wait_ready d1 20 && ok "daemon d1 ready" || fail "daemon d1 ready within 20 s"
dt_wait_ready d2 20 && ok "daemon d2 ready" || fail "daemon d2 ready within 20 s"
dt_start_worker w1 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 100
dt_start_worker w2 "$url" "$NS" --concurrency 20 --batch 5 --poll-ms 100

# Five shapes in turn: approval (amount 500 / 2000 / 9000 by turn), a 1,000-row batch, a decision
# that creates a batch (even/odd), an empty decision (amount < 0), an empty batch plan (rows 0).
created=$(q "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $TASKS) i,
  LATERAL tasker.create_task(jsonb_build_object('namespace', '$NS', 'initiator', 'e2e',
    'name', CASE i % 5 WHEN 0 THEN 'approval' WHEN 1 THEN 'rows' WHEN 2 THEN 'routed_batch'
                       WHEN 3 THEN 'approval' ELSE 'rows' END,
    'context', CASE i % 5 WHEN 0 THEN jsonb_build_object('i', i, 'amount', (ARRAY[500, 2000, 9000])[1 + (i / 5) % 3])
                          WHEN 1 THEN jsonb_build_object('i', i, 'rows', 1000)
                          WHEN 2 THEN jsonb_build_object('i', i, 'parity', CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END)
                          WHEN 3 THEN jsonb_build_object('i', i, 'amount', -1)
                          ELSE jsonb_build_object('i', i, 'rows', 0) END)) c")
is "$created" "$TASKS" "$TASKS tasks created"

if dt_wait_done "$url" 240; then ok "every task terminal within 240 s"; else fail "every task terminal within 240 s ($(dt_states "$url"))"; fi

is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks")" "$TASKS" "all $TASKS tasks complete"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE state <> 'complete' OR attempt_no <> 1")" 0 \
  "every step that exists completed, in exactly one run"
is "$(q "SELECT count(*) FROM (SELECT task_uuid, name FROM tasker.workflow_steps GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 \
  "no step was created twice (one row per task and name)"
is "$(q "SELECT count(*) FROM (SELECT workflow_step_uuid FROM tasker.workflow_step_transitions
         WHERE to_state = 'enqueued' GROUP BY 1 HAVING count(*) > 1) x")" 0 "no step was dispatched twice"
is "$(q "SELECT (SELECT count(*) FROM pgmq.q_tasker_dispatch_$NS) + (SELECT count(*) FROM pgmq.q_tasker_completion_$NS)")" 0 \
  "no message left in the dispatch and completion queues"

# Decisions: exactly the branches the rule chose, created by the decision's completion.
branches="SELECT t.context, (SELECT string_agg(s.name, ',' ORDER BY s.name) FROM tasker.workflow_steps s
                             WHERE s.task_uuid = t.task_uuid AND s.name IN ('auto_approve', 'manager_approval', 'finance_review', 'finalize')) AS b
          FROM tasker.tasks t JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
          WHERE tt.name = 'approval'"
is "$(q "SELECT count(*) FROM ($branches) x WHERE x.b IS DISTINCT FROM CASE
           WHEN (x.context->>'amount')::int < 0 THEN NULL
           WHEN (x.context->>'amount')::int < 1000 THEN 'auto_approve,finalize'
           WHEN (x.context->>'amount')::int < 5000 THEN 'finalize,manager_approval'
           ELSE 'finalize,finance_review,manager_approval' END")" 0 \
  "each decision created exactly the branches its rule chose (none, and no convergence, for an empty choice)"
is "$(q "SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.workflow_steps c ON c.workflow_step_uuid = s.created_by
         WHERE s.created_at <> c.completed_at")" 0 \
  "every created step was created in the transaction that completed its creator"

# Batches: 10 workers for 1,000 rows, a placeholder for 0, sums right, parallelism held.
is "$(q "SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid)
         WHERE s.name = 'total' AND (s.results->>'sum', s.results->>'batches') IS DISTINCT FROM
           (CASE WHEN (t.context->>'rows')::int = 0 THEN '0' ELSE '499500' END,
            CASE WHEN (t.context->>'rows')::int = 0 THEN '0' ELSE '10' END)")" 0 \
  "every 1,000-row batch summed 0..999 over its 10 workers; every empty plan summed nothing"
is "$(q "SELECT count(*) FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid)
         WHERE t.context ? 'rows' AND s.name LIKE 'work\_%'
           AND s.name <> ALL (CASE WHEN (t.context->>'rows')::int = 0 THEN ARRAY['work_000']
                                   ELSE ARRAY(SELECT 'work_' || lpad(g::text, 3, '0') FROM generate_series(1, 10) g) END)")" 0 \
  "workers are named <template>_<batch_id> (work_001..work_010, or the placeholder work_000)"
# In flight = from the worker's dispatch to its completion; at each dispatch, count the siblings in
# flight.
maxpar=$(q "WITH w AS (
    SELECT s.created_by, s.workflow_step_uuid,
           (SELECT min(x.created_at) FROM tasker.workflow_step_transitions x WHERE x.workflow_step_uuid = s.workflow_step_uuid AND x.to_state = 'enqueued') AS t0,
           (SELECT max(x.created_at) FROM tasker.workflow_step_transitions x WHERE x.workflow_step_uuid = s.workflow_step_uuid AND x.to_state = 'complete') AS t1,
           s.batch_parallelism
    FROM tasker.workflow_steps s WHERE s.batch_parallelism IS NOT NULL)
  SELECT coalesce(max(n - p), 0) FROM (
    SELECT a.workflow_step_uuid, a.batch_parallelism AS p,
           (SELECT count(*) FROM w b WHERE b.created_by = a.created_by AND b.t0 <= a.t0 AND b.t1 > a.t0) AS n
    FROM w a) z")
is "$maxpar" 0 "no batch ever had more workers in flight than its parallelism"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name IN ('even_total', 'odd_total')
         AND (results->>'failed_batches')::int <> 0")" 0 "no batch worker failed"

for d in d1 d2; do
  dt_stop "$d" TERM 15
  is "$DT_RC" 0 "daemon $d: SIGTERM → exit 0"
  is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[$d]}")" 0 "no error lines in the log of $d"
done
for w in w1 w2; do dt_stop "$w" TERM 15; done
echo "# steps: $(q "SELECT count(*) || ' (' || count(*) FILTER (WHERE created_by IS NOT NULL) || ' created at run time)' FROM tasker.workflow_steps")"
dt_finish
