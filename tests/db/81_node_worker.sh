#!/usr/bin/env bash
# 81_node_worker.sh — the Node.js worker of examples/node-worker (docs/worker-protocol.md) against
# the real daemon: a tasker-orchestratord (web disabled) on a fresh database, the sample templates
# of etc/templates registered and run by worker.mjs, which shows:
#   1. every task completes, retries happen (flaky_payment: 3 attempts), exec and echo handlers
#      see their inputs and ancestors' results, nothing is left in the queues;
#   2. with a 10 s poll the work still flows at once: LISTEN pgmq_message_ready drives it;
#   3. heartbeats keep a 2 s lease alive under a 3 s handler;
#   4. the statuses of submit_step_results: accepted, duplicate, stale, unknown_step, invalid;
#   5. a cancelled step's lease is lost: the worker stops the handler and hands nothing back;
#   6. SIGTERM drains (running handlers finish and are handed back, exit 0); a second one exits 1;
#   7. --no-listen (poll only, the PgBouncer transaction-pooling mode) completes work too;
#   8. an unknown namespace is reported once and polled until it exists.
# Needs node and npm (scripts/install-deps); runs `npm ci` when node_modules is missing.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

WDIR=examples/node-worker
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tasker-81.XXXXXX")
declare -A PID=()
cleanup() {
  local n
  for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null; done
  for n in "${!PID[@]}"; do
    for _ in $(seq 50); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$n]}" 2>/dev/null
    wait "${PID[$n]}" 2>/dev/null
  done
  if [ "$TESTS_FAILED" -gt 0 ]; then
    for f in "$TMP"/*.log; do echo "# ---- $f"; tail -n 20 "$f" | sed 's/^/#   /'; done
    echo "# logs kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
unset TASKER_ENV TASKER_CONFIG_PATH TASKER_WEB_BIND_ADDRESS NOTIFY_SOCKET WATCHDOG_USEC JOURNAL_STREAM

now_ms() { date +%s%3N; }
# wait_for SECS CMD…: run CMD every 0.1 s until it succeeds; false on timeout.
wait_for() {
  local deadline=$(( $(now_ms) + $1 * 1000 )); shift
  until "$@"; do [ "$(now_ms)" -lt "$deadline" ] || return 1; sleep 0.1; done
}
# wait_eq SECS WANT CMD…: wait until CMD's output is WANT; false on timeout.
wait_eq() {
  local deadline=$(( $(now_ms) + $1 * 1000 )) want=$2; shift 2
  until [ "$("$@")" = "$want" ]; do [ "$(now_ms)" -lt "$deadline" ] || return 1; sleep 0.1; done
}
# wait_exit NAME SECS: wait for process NAME to exit; RC = its exit status, or "timeout".
wait_exit() {
  local pid=${PID[$1]} deadline=$(( $(now_ms) + $2 * 1000 ))
  while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then RC=timeout; return; fi
  wait "$pid" 2>/dev/null; RC=$?
  unset "PID[$1]"
}

command -v node >/dev/null && command -v npm >/dev/null || { fail "node and npm are installed (scripts/install-deps)"; finish; exit 1; }
echo "# node $(node --version), npm $(npm --version)"
if [ ! -d "$WDIR/node_modules" ]; then
  echo "# installing $WDIR dependencies (npm ci)"
  (cd "$WDIR" && npm ci --no-audit --no-fund) >"$TMP/npm-ci.log" 2>&1 ||
    { sed 's/^/#   /' "$TMP/npm-ci.log"; fail "npm ci in $WDIR"; finish; exit 1; }
fi
ok "the example's dependencies are installed (package-lock.json)"

url=$(fresh_db tasker_nodeworker) || { fail "fresh database tasker_nodeworker"; finish; exit 1; }
q() { psql_at "$url" "$1"; }

# ---- templates: the samples of etc/templates, plus three of our own in the same namespace -------
for t in etc/templates/demo_*.json; do
  q "SELECT status FROM tasker.register_task_template(\$tpl\$$(cat "$t")\$tpl\$::jsonb)" >/dev/null ||
    fail "register $t"
done
reg() { q "SELECT status FROM tasker.register_task_template('$1'::jsonb)" >/dev/null || fail "register template: $1"; }
reg '{"name": "heartbeat", "namespace_name": "demo", "version": "1.0.0", "steps": [
       {"name": "long", "handler": {"callable": "sleep", "initialization": {"ms": 3000}},
        "retry": {"retryable": true, "max_attempts": 3}}]}'
reg '{"name": "drain", "namespace_name": "demo", "version": "1.0.0", "steps": [
       {"name": "short", "handler": {"callable": "sleep", "initialization": {"ms": 1500}}}]}'
reg '{"name": "forever", "namespace_name": "demo", "version": "1.0.0", "steps": [
       {"name": "wait", "handler": {"callable": "sleep", "initialization": {"ms": 600000}}}]}'
is "$(q "SELECT count(*) FROM tasker.task_templates t JOIN tasker.task_namespaces n USING (task_namespace_uuid) WHERE n.name = 'demo'")" 7 "7 templates registered in namespace demo"

# create NAME COUNT TAG: COUNT tasks of template NAME in one statement; prints how many.
create() {
  q "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $2) i,
       LATERAL tasker.create_task(jsonb_build_object('name', '$1', 'namespace', 'demo', 'initiator', '81_node_worker',
         'context', jsonb_build_object('tag', '$3', 'i', i))) c"
}
unfinished() { q "SELECT count(*) FROM tasker.tasks WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')"; }
all_done() { [ "$(unfinished)" = 0 ]; }

# ---- the daemon ---------------------------------------------------------------------------------
cat >"$TMP/daemon.conf" <<CONF
environment = "test"
database {
    url = "$url"
    pool { max_connections = 6  min_connections = 2 }
}
orchestration {
    processor_id = "daemon-81"
    namespace_refresh_secs = 1
    shutdown_timeout_secs = 5
    completions { interval_ms = 200 }
    poller { interval_ms = 100 }
    sweeper { interval_secs = 1  resend_grace_secs = 2  reevaluate_after_secs = 2 }
}
web { enabled = false }
CONF
"$BIN/tasker-orchestratord" -c "$TMP/daemon.conf" >"$TMP/daemon.log" 2>&1 &
PID[daemon]=$!
wait_for 20 grep -q 'ready: pool and LISTEN connections are up' "$TMP/daemon.log" &&
  ok "tasker-orchestratord is ready" || { fail "tasker-orchestratord is ready"; finish; exit 1; }

# worker NAME [options]: start worker.mjs for namespace demo as NAME (its worker id).
worker() {
  local name=$1; shift
  DATABASE_URL="$url" node "$WDIR/worker.mjs" --worker-id "$name" "$@" >"$TMP/$name.log" 2>&1 &
  PID[$name]=$!
}

# ---- 1–3. the sample workflows, LISTEN-driven, heartbeats ------------------------------------------
worker node-a --namespace demo --poll-ms 10000 --lease-secs 2 --concurrency 20 --batch 20
wait_for 10 grep -q 'listening on pgmq_message_ready' "$TMP/node-a.log" && ok "worker node-a LISTENs" ||
  fail "worker node-a LISTENs"
t0=$(now_ms)
n=0
for name in diamond fan_out_fan_in flaky_payment linear_pipeline; do
  n=$(( n + $(create "$name" 10 round1) ))
done
n=$(( n + $(create heartbeat 2 round1) ))
is "$n" 42 "42 tasks created (10 of each sample, 2 with a 3 s step)"
wait_for 30 all_done && ok "every task finished" || fail "every task finished ($(unfinished) unfinished)"
elapsed=$(( $(now_ms) - t0 ))
echo "# 42 tasks, $(q "SELECT count(*) FROM tasker.workflow_steps") steps in $elapsed ms"
[ "$elapsed" -lt 9000 ] && ok "… well inside the 10 s poll interval: notifications drove the claims" ||
  fail "… within 9 s with a 10 s poll (took $elapsed ms)"

is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') || '/' || count(*) FROM tasker.tasks")" "42/42" "all 42 tasks complete"
is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') || '/' || count(*) FROM tasker.workflow_steps")" "332/332" \
  "all 332 steps complete (10 × (4 + 22 + 3 + 4) + 2)"
is "$(q "SELECT string_agg(DISTINCT attempts::text, ',') FROM tasker.workflow_steps WHERE name = 'charge'")" 3 \
  "flaky_payment's charge ran 3 times (two retryable failures, then success)"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name <> 'charge' AND attempts <> 1")" 0 \
  "every other step ran exactly once"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'long' AND attempts = 1 AND state = 'complete'")" 2 \
  "the 3 s steps under a 2 s lease completed on their first attempt (heartbeats extended the lease)"
is "$(q "SELECT string_agg(DISTINCT worker_id, ',') FROM tasker.workflow_step_result_audit")" node-a \
  "every result's audit row names worker node-a"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state = 'in_progress' AND processor <> 'node-a'")" 0 \
  "every claim transition names node-a"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'decide'
          AND (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(results->'dependencies') k) = '{fetch,score_credit,score_fraud}'")" 10 \
  "echo at the end of the diamond saw the results of all three ancestors"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'load' AND results = '{\"rows_loaded\": 42}'")" 10 \
  "exec ran the sample's command and took its stdout as the result"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'charge' AND results->>'succeeded_on_attempt' = '3'")" 10 \
  "fail with succeed_on_attempt 3 succeeded on attempt 3"
is "$(q "SELECT (SELECT count(*) FROM pgmq.q_tasker_dispatch_demo) + (SELECT count(*) FROM pgmq.q_tasker_completion_demo)")" 0 \
  "no message left in the dispatch and completion queues"

# ---- 4. hand-back statuses -------------------------------------------------------------------------
read -r step attempt < <(q "SELECT workflow_step_uuid, attempts FROM tasker.workflow_steps WHERE name = 'decide' LIMIT 1" | tr '|' ' ')
statuses=$(q "SELECT string_agg(status || ':' || coalesce(state, '-'), ' ' ORDER BY n) FROM (
  SELECT row_number() OVER () AS n, r.* FROM tasker.submit_step_results(jsonb_build_array(
    jsonb_build_object('step_uuid', '$step', 'attempt', $attempt, 'success', true, 'result', '{}'::jsonb),
    jsonb_build_object('step_uuid', '$step', 'attempt', $attempt + 1, 'success', true),
    jsonb_build_object('step_uuid', gen_random_uuid(), 'attempt', 1, 'success', true),
    jsonb_build_object('attempt', 1))) r) x")
is "$statuses" "duplicate:complete stale:complete unknown_step:- invalid:-" \
  "submit_step_results: a repeated hand-back is duplicate, a wrong attempt stale, then unknown_step and invalid"
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = '$step'")" 1 \
  "… and none of them changed anything (one audit row for that step)"

# ---- 5. a lost lease ----------------------------------------------------------------------------------
create forever 1 lease >/dev/null
task=$(q "SELECT task_uuid FROM tasker.tasks t JOIN tasker.task_templates tt USING (task_template_uuid) WHERE tt.name = 'forever'")
wait_eq 10 in_progress q "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$task'" &&
  ok "a 10 min step is running" || fail "a 10 min step is running"
q "SELECT state FROM tasker.cancel_task('$task', 'test: lease loss', '81_node_worker')" >/dev/null
wait_for 10 grep -q 'lease lost (the step was cancelled' "$TMP/node-a.log" &&
  ok "cancelled: the worker's heartbeat learns the lease is lost" || fail "cancelled: the worker logs a lost lease"
wait_for 5 grep -q 'lease lost; result not handed back' "$TMP/node-a.log" &&
  ok "… stops the handler and hands nothing back" || fail "… stops the handler and hands nothing back"
is "$(q "SELECT s.state || ',' || (SELECT count(*) FROM tasker.workflow_step_result_audit a WHERE a.workflow_step_uuid = s.workflow_step_uuid)
          FROM tasker.workflow_steps s WHERE s.task_uuid = '$task'")" "cancelled,0" "… the step stays cancelled with no result"

# ---- 6. SIGTERM drains ----------------------------------------------------------------------------
create drain 4 drain >/dev/null
running() { q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'short' AND state = 'in_progress'"; }
wait_eq 10 4 running && ok "4 steps of 1.5 s running" || fail "4 steps of 1.5 s running (got $(running))"
t0=$(now_ms)
kill -TERM "${PID[node-a]}"
wait_exit node-a 15
echo "# SIGTERM → exit $RC after $(( $(now_ms) - t0 )) ms"
is "$RC" 0 "SIGTERM: the worker drains and exits 0"
grep -q 'drained' "$TMP/node-a.log" && ok "… and logs 'drained'" || fail "… and logs 'drained'"
wait_for 10 all_done && ok "… the 4 drained steps were handed back and their tasks completed" ||
  fail "… the 4 drained steps were handed back and their tasks completed"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'short' AND state = 'complete' AND attempts = 1")" 4 \
  "… each on its first attempt"

# ---- 7. poll only (--no-listen) ---------------------------------------------------------------------
worker node-b --namespace demo --no-listen --poll-ms 200
create diamond 10 round2 >/dev/null
wait_for 20 all_done && ok "--no-listen --poll-ms 200: 10 more diamonds complete" || fail "--no-listen: 10 more diamonds complete"
grep -q 'listening on' "$TMP/node-b.log" && fail "--no-listen opened no LISTEN connection" ||
  ok "--no-listen opened no LISTEN connection"
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE worker_id = 'node-b'")" 40 \
  "… node-b handed back their 40 steps"

# ---- 6b. a second SIGTERM exits at once -----------------------------------------------------------
create forever 1 second >/dev/null
wait_eq 10 1 q "SELECT count(*) FROM tasker.workflow_steps WHERE name = 'wait' AND state = 'in_progress'" ||
  fail "a long step is running on node-b"
kill -TERM "${PID[node-b]}"
sleep 0.3
t0=$(now_ms)
kill -TERM "${PID[node-b]}"
wait_exit node-b 5
is "$RC" 1 "a second SIGTERM during the drain exits 1 at once ($(( $(now_ms) - t0 )) ms)"
grep -q 'second SIGTERM' "$TMP/node-b.log" && ok "… and says so" || fail "… and says so"
q "SELECT count(*) FROM tasker.tasks t, LATERAL tasker.cancel_task(t.task_uuid, 'test cleanup', '81_node_worker') c
   WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')" >/dev/null

# ---- 8. an unknown namespace ----------------------------------------------------------------------
worker node-c --namespace not_yet --poll-ms 100
wait_for 5 grep -q 'namespace is not registered yet' "$TMP/node-c.log" && ok "unknown namespace: reported" ||
  fail "unknown namespace: reported"
sleep 1
is "$(grep -c 'namespace is not registered yet' "$TMP/node-c.log")" 1 "… once, while it keeps polling"
kill -TERM "${PID[node-c]}"
wait_exit node-c 10
is "$RC" 0 "… and it still drains and exits 0"

kill -TERM "${PID[daemon]}"
wait_exit daemon 15
is "$RC" 0 "the daemon stops cleanly"
finish
