#!/usr/bin/env bash
# 64_daemon_lease.sh — a worker that claims a step and dies. (A) a claim made with psql with a 2 s
# lease and never handed back: the daemon's sweep (every 1 s) expires the lease, the step is
# retried per its policy (attempts left → waiting_for_retry → dispatched again; max_attempts 1 →
# error, task blocked_by_failures), the late hand-back of the dead attempt is refused as stale, and
# the task completes. (B) kill -9 of a tasker-worker in the middle of an 8 s sleep handler with a
# 2 s lease: retried on another worker and completed; a sleep longer than the lease completes on
# its first attempt when the worker lives (its heartbeats keep the lease).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

url=$(fresh_db tasker_lease) || { fail "fresh database tasker_lease"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" lease noop || { fail "register the templates"; finish; exit 1; }
psql "$url" -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "register the lease templates"
-- One attempt only: an expired lease is final.
SELECT tasker.register_task_template('{"name": "lease_once", "namespace_name": "lease", "version": "1.0.0",
  "steps": [{"name": "only", "handler": {"callable": "noop"}, "retry": {"retryable": true, "max_attempts": 1}}]}');
-- An 8 s sleep (long enough that the kill lands inside it on a loaded machine, where noticing
-- the claim can lag seconds), then a child.
SELECT tasker.register_task_template('{"name": "lease_sleep", "namespace_name": "leasek", "version": "1.0.0",
  "steps": [{"name": "nap", "handler": {"callable": "sleep", "initialization": {"ms": 8000}},
             "retry": {"retryable": true, "max_attempts": 3, "backoff_base_ms": 100, "max_backoff_ms": 1000}},
            {"name": "after", "handler": {"callable": "noop"}, "dependencies": ["nap"]}]}');
SQL
[ "$TESTS_FAILED" = 0 ] || { finish; exit 1; }

dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"

# ---- A: claimed with psql, never handed back ---------------------------------------------------
t1=$(q "SELECT task_uuid FROM tasker.create_task('{\"name\": \"e2e_linear\", \"namespace\": \"lease\", \"context\": {\"k\": 1}}')")
t2=$(q "SELECT task_uuid FROM tasker.create_task('{\"name\": \"lease_once\", \"namespace\": \"lease\", \"context\": {\"k\": 2}}')")
claims=$(q "SELECT string_agg(step_name || ':' || workflow_step_uuid || ':' || attempt, ' ' ORDER BY step_name)
            FROM tasker.tasker_claim_and_execute_step('lease', 10, 2, 'ghost')")
a_uuid=$(tr ' ' '\n' <<<"$claims" | awk -F: '$1 == "a" { print $2 }')
only_uuid=$(tr ' ' '\n' <<<"$claims" | awk -F: '$1 == "only" { print $2 }')
t_claim=$(now_ms)
[ -n "$a_uuid" ] && [ -n "$only_uuid" ] && ok "psql claimed the two root steps with a 2 s lease as 'ghost'" ||
  fail "psql claimed the two root steps (got '$claims')"

# The sweep expires both leases; a (3 attempts) is dispatched again, only (1 attempt) fails.
deadline=$(( $(now_ms) + 15000 ))
while [ "$(q "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$a_uuid'")" != enqueued ] ||
      [ "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t2'")" != blocked_by_failures ]; do
  [ "$(now_ms)" -lt "$deadline" ] || break
  sleep 0.1
done
t_redispatched=$(now_ms)
is "$(q "SELECT state || ' attempts ' || attempts || ' ' || (error->>'error_type') FROM tasker.workflow_steps WHERE workflow_step_uuid = '$a_uuid'")" \
  "enqueued attempts 1 lease_expired" "step a: lease expired, dispatched again for attempt 2"
is "$(q "SELECT string_agg(CASE WHEN from_state IS NULL THEN '>' || to_state ELSE from_state || '>' || to_state || '@' || attempt || '/' || processor END, ' ' ORDER BY ordinal)
         FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = '$a_uuid'")" \
  ">enqueued enqueued>in_progress@1/ghost in_progress>waiting_for_retry@1/d1 waiting_for_retry>enqueued@1/d1" \
  "step a's history: claimed by ghost, expired and re-dispatched by the daemon"
is "$(q "SELECT metadata->>'reason' FROM tasker.workflow_step_transitions
         WHERE workflow_step_uuid = '$a_uuid' AND to_state = 'waiting_for_retry'")" "lease expired" \
  "the retry transition says why: lease expired"
is "$(q "SELECT state || ' attempts ' || attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = '$only_uuid'")" \
  "error attempts 1" "step only (max_attempts 1): lease expired → error"
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t2'")" blocked_by_failures \
  "its task is blocked_by_failures (waits for an operator)"
dt_log d1 | grep "lease_expired task=$t1 step=$a_uuid: attempt 1 on ghost: now waiting_for_retry" >/dev/null &&
  ok "daemon logged the expired lease" || fail "daemon logged the expired lease"
echo "# claim (2 s lease) → re-dispatched and blocked: $(secs_between "$t_claim" "$t_redispatched") s (sweep every 1 s)"

# The dead attempt's hand-back comes too late.
is "$(q "SELECT status FROM tasker.submit_step_result('$a_uuid', 1, true, '{}', NULL, 'ghost')")" stale \
  "a late hand-back of the expired attempt is refused (stale)"

dt_start_worker w1 "$url" lease --poll-ms 100
deadline=$(( $(now_ms) + 20000 ))
until [ "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t1'")" = complete ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t1'")" complete "task of step a completes after the retry"
is "$(q "SELECT attempts || ' ' || claimed_by FROM tasker.workflow_steps WHERE workflow_step_uuid = '$a_uuid'")" "2 w1" \
  "step a completed on attempt 2 by the worker"
is "$(q "SELECT string_agg(attempt || ':' || worker_id || ':' || success, ' ' ORDER BY attempt)
         FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = '$a_uuid'")" "2:w1:true" \
  "one result for step a: attempt 2's (the dead attempt left none)"
is "$(q "SELECT string_agg(message->>'attempt', ',' ORDER BY msg_id) FROM pgmq.a_tasker_dispatch_lease
         WHERE message->>'step_uuid' = '$a_uuid'")" "1,2" "two dispatch messages for step a: attempt 1 and attempt 2"
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t2'")" blocked_by_failures "the one-attempt task stays blocked"

# ---- B: kill -9 of a worker in the middle of a handler ----------------------------------------
dt_start_worker wk "$url" leasek --lease-secs 2 --poll-ms 100
t3=$(q "SELECT task_uuid FROM tasker.create_task('{\"name\": \"lease_sleep\", \"namespace\": \"leasek\", \"context\": {\"k\": 3}}')")
nap=$(q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = '$t3' AND name = 'nap'")
deadline=$(( $(now_ms) + 10000 ))
until [ "$(q "SELECT state || ' ' || claimed_by FROM tasker.workflow_steps WHERE workflow_step_uuid = '$nap'")" = "in_progress wk" ] ||
      [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
sleep 1
t_kill=$(now_ms)
dt_kill9 wk
is "$DT_RC" 137 "worker wk killed with SIGKILL one second into its 8 s sleep"
is "$(q "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$nap'")" in_progress "step nap still in_progress (leased to the dead worker)"
dt_start_worker w2 "$url" leasek --lease-secs 2 --poll-ms 100
deadline=$(( $(now_ms) + 30000 ))
until [ "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t3'")" = complete ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
t_done=$(now_ms)
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t3'")" complete "the task completes on another worker"
is "$(q "SELECT attempts || ' ' || claimed_by || ' ' || (results->>'slept_ms') FROM tasker.workflow_steps WHERE workflow_step_uuid = '$nap'")" \
  "2 w2 8000" "step nap: attempt 2 on w2 slept its 8 s"
is "$(q "SELECT string_agg(CASE WHEN from_state IS NULL THEN '>' || to_state ELSE from_state || '>' || to_state || '@' || attempt || '/' || processor END, ' ' ORDER BY ordinal)
         FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = '$nap'")" \
  ">enqueued enqueued>in_progress@1/wk in_progress>waiting_for_retry@1/d1 waiting_for_retry>enqueued@1/d1 enqueued>in_progress@2/w2 in_progress>enqueued_for_orchestration@2/w2 enqueued_for_orchestration>complete@2/d1" \
  "step nap's history: wk's attempt expired, w2's completed"
first_retry=$(dt_first_transition_after "$url" "$t_kill" waiting_for_retry)
echo "# worker killed → lease expired by the sweep $(secs_between "$t_kill" "${first_retry:-$t_kill}") s (lease 2 s, sweep 1 s);" \
     "→ task complete $(secs_between "$t_kill" "$t_done") s (including the 8 s sleep of attempt 2)"

# Heartbeats: an 8 s handler with a 2 s lease on a live worker needs no retry.
t4=$(q "SELECT task_uuid FROM tasker.create_task('{\"name\": \"lease_sleep\", \"namespace\": \"leasek\", \"context\": {\"k\": 4}}')")
deadline=$(( $(now_ms) + 20000 ))
until [ "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t4'")" = complete ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
is "$(q "SELECT t.state || ' ' || s.attempts FROM tasker.tasks t JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid AND s.name = 'nap'
         WHERE t.task_uuid = '$t4'")" "complete 1" \
  "an 8 s sleep under a 2 s lease completes on attempt 1 (heartbeats extend the lease)"

is "$(q "SELECT count(*) FROM pgmq.q_tasker_dispatch_lease") $(q "SELECT count(*) FROM pgmq.q_tasker_completion_lease")" "0 0" \
  "no message left in lease's queues (the dead attempt's dispatch message was archived)"
is "$(q "SELECT count(*) FROM pgmq.q_tasker_dispatch_leasek") $(q "SELECT count(*) FROM pgmq.q_tasker_completion_leasek")" "0 0" \
  "no message left in leasek's queues"

dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
dt_stop w1 TERM 15
dt_stop w2 TERM 15
dt_finish
