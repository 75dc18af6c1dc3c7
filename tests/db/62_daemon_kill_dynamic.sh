#!/usr/bin/env bash
# 62_daemon_kill_dynamic.sh — crashes around dynamic steps (issue 10). (1) kill -9 of the daemon
# between decisions' hand-backs and their processing, three times at different moments, then a
# second daemon: every decision's branches exist exactly once and every task completes. (2) kill -9
# of a worker in the middle of checkpointed batches: the leases expire, the batches are retried and
# resume from their last checkpoint (not from their start), and every sum is still right.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=dkill
DECISIONS=200
BATCH_TASKS=4

url=$(fresh_db tasker_kill_dynamic) || { fail "fresh database tasker_kill_dynamic"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
psql "$url" -X -q -v ON_ERROR_STOP=1 -v ns="$NS" >/dev/null <<'SQL' || fail "register the templates"
-- The decision is the root, so create_task dispatches it and a worker hands it back with no
-- daemon running: the hand-backs pile up before any is processed.
SELECT tasker.register_task_template(jsonb_build_object('name', 'route_first', 'namespace_name', :'ns', 'version', '1',
  'steps', '[
    {"name": "route", "type": "decision", "handler": {"callable": "decision", "initialization": {
       "rules": [{"path": "i", "lt": 100, "choose": ["a", "b"]}], "default": ["c"]}}},
    {"name": "a", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "b", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "c", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "join", "type": "deferred_convergence", "dependencies": ["a", "b", "c"], "handler": {"callable": "echo"}}]'::jsonb));
-- Two slow batches per task (100 items, 30 ms each: 3 s), a checkpoint every 10 items.
SELECT tasker.register_task_template(jsonb_build_object('name', 'slow_rows', 'namespace_name', :'ns', 'version', '1',
  'steps', '[
    {"name": "plan", "type": "batchable", "handler": {"callable": "batch_plan", "initialization": {
       "total_items": 200, "batch_size": 100, "worker_template_name": "work"}}},
    {"name": "work", "type": "batch_worker", "dependencies": ["plan"],
     "handler": {"callable": "batch_work", "initialization": {"item_ms": 30}},
     "retry": {"max_attempts": 3, "backoff_base_ms": 100, "max_backoff_ms": 500},
     "batch_config": {"batch_size": 100, "parallelism": 2, "failure_strategy": "fail_fast", "checkpoint_interval": 10}},
    {"name": "total", "type": "deferred_convergence", "dependencies": ["work"],
     "handler": {"callable": "batch_aggregate", "initialization": {"worker_template_name": "work"}}}]'::jsonb));
SQL

# ---- (1) the daemon dies between hand-back and processing ------------------------------------
is "$(q "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $DECISIONS) i,
         LATERAL tasker.create_task(jsonb_build_object('name', 'route_first', 'namespace', '$NS',
                                                       'context', jsonb_build_object('i', i))) c")" "$DECISIONS" \
  "$DECISIONS decision tasks created"
dt_start_worker w0 "$url" "$NS" --concurrency 50 --batch 50 --poll-ms 50
deadline=$(( $(now_ms) + 60000 ))
while [ "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'route' AND state = 'enqueued_for_orchestration'")" -lt "$DECISIONS" ] &&
      [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.1; done
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'route' AND state = 'enqueued_for_orchestration'")" "$DECISIONS" \
  "every decision handed back, none processed (no daemon yet)"

# Three lives of d1, each killed a little later into its work (the first before it can have done
# anything, the last most likely mid-batch or after some commits).
for delay in 0.05 0.3 0.6; do
  dt_start_daemon d1 "$url"
  sleep "$delay"
  dt_kill9 d1
done
echo "# after three kills: $(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'route' AND state = 'complete'") of $DECISIONS decisions processed"
dt_start_daemon d2 "$url"
dt_wait_ready d2 20 && ok "second daemon ready" || fail "second daemon ready within 20 s"
if dt_wait_done "$url" 120; then ok "every decision task terminal"; else fail "every decision task terminal ($(dt_states "$url"))"; fi
is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks")" "$DECISIONS" "all decision tasks complete"
is "$(q "SELECT count(*) FROM (SELECT task_uuid, name FROM tasker.workflow_steps GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 \
  "no branch created twice"
is "$(q "SELECT count(*) FROM tasker.tasks t WHERE (SELECT string_agg(s.name, ',' ORDER BY s.name) FROM tasker.workflow_steps s
           WHERE s.task_uuid = t.task_uuid) <> CASE WHEN (t.context->>'i')::int < 100 THEN 'a,b,join,route' ELSE 'c,join,route' END")" 0 \
  "each task has exactly the branches its decision chose, and its convergence"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions t JOIN tasker.workflow_steps s USING (workflow_step_uuid)
         WHERE s.name = 'route' AND t.to_state = 'complete'")" "$DECISIONS" "each decision completed exactly once"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE attempt_no <> 1")" 0 "every step ran exactly once"

# ---- (2) a worker dies in the middle of checkpointed batches ------------------------------------
dt_stop w0 TERM 15
is "$(q "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $BATCH_TASKS) i,
         LATERAL tasker.create_task(jsonb_build_object('name', 'slow_rows', 'namespace', '$NS',
                                                       'context', jsonb_build_object('i', i))) c")" "$BATCH_TASKS" \
  "$BATCH_TASKS batch tasks created"
dt_start_worker w1 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 50 --lease-secs 2
# The middle: every batch worker running has checkpointed at least twice.
deadline=$(( $(now_ms) + 60000 ))
while [ "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name LIKE 'work\_%' AND state = 'in_progress'
              AND (checkpoint->>'items_processed')::int >= 20")" -lt $((BATCH_TASKS * 2)) ] &&
      [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
running=$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name LIKE 'work\_%' AND state = 'in_progress'")
dt_kill9 w1
is "$DT_RC" 137 "worker killed with SIGKILL while $running batch workers were running"
cps=$(q "SELECT string_agg(name || '@' || (checkpoint->>'cursor'), ' ' ORDER BY name) FROM tasker.workflow_steps
         WHERE name LIKE 'work\_%' AND state = 'in_progress'")
echo "# checkpoints at the kill: $cps"
dt_start_worker w2 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 50 --lease-secs 10
if dt_wait_done "$url" 120; then ok "every batch task terminal after the worker's death"; else fail "every batch task terminal ($(dt_states "$url"))"; fi
is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks")" "$((DECISIONS + BATCH_TASKS))" "all tasks complete"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'total' AND (results->>'sum')::bigint <> 19900")" 0 \
  "every convergence summed 0..199 exactly (nothing lost, nothing counted twice)"
killed=$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name LIKE 'work\_%' AND attempt_no = 2")
is "$killed" "$running" "each batch worker running at the kill ran a second attempt (lease expired, retried)"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name LIKE 'work\_%' AND attempt_no = 2
         AND ((results->>'resumed_from') IS NULL
              OR (results->>'resumed_from')::int <= (inputs->'cursor'->>'start_cursor')::int
              OR (results->>'processed_this_attempt')::int >= 100)")" 0 \
  "every retried batch resumed from its checkpoint, past its start, and did not redo the whole range"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions t JOIN tasker.workflow_steps s USING (workflow_step_uuid)
         WHERE s.name LIKE 'work\_%' AND t.event = 'lease_expired'")" "$running" "the killed attempts ended by lease expiry"

dt_stop d2 TERM 15
dt_stop w2 TERM 15
dt_finish
