#!/usr/bin/env bash
# 50_worker.sh — tasker-worker end to end, without the daemon: the test orchestrates by calling
# process_completions / enqueue_ready_steps itself while real worker processes claim, run their
# handlers (noop, echo, fail, sleep, exec) and hand back. Covers retries, exec success/failure/
# timeout/garbage/output cap, heartbeats keeping a short lease, a lost lease killing its child,
# SIGTERM drain, and --concurrency/--batch. WORKER_WRAPPER (e.g. "valgrind --leak-check=full
# --error-exitcode=99") runs every worker under a tool; any worker exit status but 0 fails.
# make-check: long 80
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

NS=wt
WRAP=${WORKER_WRAPPER:-}
url=$(fresh_db tasker_worker) || { fail "fresh database tasker_worker"; finish; exit 1; }
tmp=$(mktemp -d)
WORKER_PIDS=()
cleanup() {
  for p in "${WORKER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # Any exec child a test left behind (pid files written by the scripts below).
  for f in "$tmp"/*.pid; do [ -e "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

q() { psql_at "$url" "$1"; }

# tpl NAME STEPS [VERSION]: register a template of namespace $NS.
tpl() {
  local st
  st=$(q "SELECT status FROM tasker.register_task_template(\$json\$
    {\"name\": \"$1\", \"namespace_name\": \"$NS\", \"version\": \"1.0.0\", \"steps\": $2}\$json\$::jsonb)") \
    || { fail "register template $1"; return 1; }
}

# task NAME CONTEXT: create a task; prints its uuid.
task() {
  q "SELECT task_uuid FROM tasker.create_task(\$json\$
    {\"name\": \"$1\", \"namespace\": \"$NS\", \"context\": $2}\$json\$::jsonb)"
}

# start_worker LOGNAME ARGS…: a worker in the background; its pid in WPID, output in $tmp/LOGNAME.log.
start_worker() {
  local log=$1; shift
  $WRAP "$BIN/tasker-worker" --namespace "$NS" --database-url "$url" --poll-ms 100 -v "$@" >"$tmp/$log.log" 2>&1 &
  WPID=$!
  WORKER_PIDS+=("$WPID")
}

# stop_worker PID LOGNAME: SIGTERM, wait (at most 60 s), check a clean exit.
stop_worker() {
  local pid=$1 log=$2 i rc
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "worker $log exits after SIGTERM (still running after 60 s)"
    kill -KILL "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid"; rc=$?
  is "$rc" 0 "worker $log drained and exited 0 after SIGTERM"
}

# orchestrate_until SECS SWEEP SQL WANT: orchestration passes (consume completions, enqueue ready
# steps, and with SWEEP=sweep the stuck-task sweep) until SQL prints WANT; false after SECS.
orchestrate_until() {
  local deadline=$((SECONDS + $1)) sweep="SELECT 0" got
  [ "$2" = sweep ] && sweep="SELECT count(*) FROM tasker.detect_and_transition_stuck_tasks()"
  while :; do
    got=$(psql "$url" -X -qAt -v ON_ERROR_STOP=1 \
      -c "SELECT count(*) FROM tasker.process_completions('$NS', 100, 30)" \
      -c "SELECT count(*) FROM tasker.enqueue_ready_steps(100)" \
      -c "$sweep" -c "$3" | tail -n 1) || got="(psql failed)"
    [ "$got" = "$4" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# drive SECS [sweep] UUID…: orchestrate until every task listed is terminal or blocked_by_failures.
drive() {
  local secs=$1 sweep=none; shift
  if [ "${1:-}" = sweep ]; then sweep=sweep; shift; fi
  local arr; arr="{$(IFS=,; echo "$*")}"
  orchestrate_until "$secs" "$sweep" "SELECT count(*) FROM tasker.tasks WHERE task_uuid = ANY ('$arr'::uuid[])
    AND state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually', 'blocked_by_failures')" 0
}

# wait_for SECS SQL WANT: poll (without orchestrating) until SQL prints WANT.
wait_for() {
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(q "$2")" = "$3" ] && return 0
    sleep 0.1
  done
  return 1
}

# like GOT GLOB DESCRIPTION
like() { case "$1" in $2) ok "$3" ;; *) fail "$3 (got '$1', want $2)" ;; esac; }

# step TASK NAME COLUMN-EXPR: one value of a step.
step() { q "SELECT $3 FROM tasker.workflow_steps WHERE task_uuid = '$1' AND name = '$2'"; }

# alive PID: the process exists and is not a zombie (an orphan's zombie waits for init to reap it).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}

# ---- scripts the exec steps run -----------------------------------------------------------------

cat >"$tmp/ok.sh" <<'EOF'
#!/bin/sh
# Reads the step document from stdin (plain cat), answers with it wrapped, plus the env it saw.
input=$(cat)
printf '{"got": %s, "env_step": "%s", "env_attempt": "%s"}\n' "$input" "$TASKER_STEP_UUID" "$TASKER_ATTEMPT"
EOF
cat >"$tmp/fail.sh" <<'EOF'
#!/bin/sh
cat >/dev/null
echo "starting up" >&2
echo "boom: the frobnicator is on fire" >&2
exit 3
EOF
cat >"$tmp/conc.sh" <<'EOF'
#!/bin/sh
# Records how many of us run at once: each run holds a file in $1 while it works.
touch "$1/run.$$"
set -- "$1" "$1"/run.*
echo $(($# - 1)) >>"$1.counts"
sleep 0.4
rm -f "$1/run.$$"
echo '{"ok": true}'
EOF
mkdir -p "$tmp/conc"

# ---- templates --------------------------------------------------------------------------------

NONE='"retry": {"max_attempts": 3, "backoff": "none"}'
ONCE='"retry": {"max_attempts": 1, "backoff": "none"}'
tpl diamond '[
  {"name": "a", "handler": {"callable": "noop"}},
  {"name": "b", "handler": {"callable": "echo", "initialization": {"x": 1}}, "dependencies": ["a"]},
  {"name": "c", "handler": {"callable": "noop"}, "dependencies": ["a"]},
  {"name": "d", "handler": {"callable": "echo"}, "dependencies": ["b", "c"]}]'
tpl fail3 "[{\"name\": \"f\", \"handler\": {\"callable\": \"fail\", \"initialization\": {\"message\": \"always fails\"}}, $NONE}]"
tpl flaky "[{\"name\": \"f\", \"handler\": {\"callable\": \"fail\", \"initialization\": {\"succeed_on_attempt\": 3}}, $NONE}]"
tpl permanent "[{\"name\": \"f\", \"handler\": {\"callable\": \"fail\", \"initialization\": {\"retryable\": false, \"message\": \"no way\"}}, $NONE}]"
tpl retry_after '[{"name": "f", "handler": {"callable": "fail", "initialization": {"retry_after_secs": 300}},
  "retry": {"max_attempts": 2, "backoff": "none", "max_backoff_ms": 600000}}]'
tpl unknown "[{\"name\": \"u\", \"handler\": {\"callable\": \"no_such_handler\"}, $NONE}]"
tpl exec_ok "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"sh\", \"$tmp/ok.sh\"], \"k\": \"v\"}}, $ONCE}]"
tpl exec_fail "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"sh\", \"$tmp/fail.sh\"]}}, $ONCE}]"
tpl exec_timeout "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"timeout_secs\": 1,
  \"command\": [\"sh\", \"-c\", \"echo \$\$ > $tmp/timeout_child.pid; sleep 10 & echo \$! > $tmp/timeout_grandchild.pid; wait\"]}}, $ONCE}]"
tpl exec_garbage "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"echo\", \"hello, not json\"]}}, $ONCE}]"
tpl exec_big "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"yes\"]}}, $ONCE}]"
tpl exec_missing "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"/nonexistent/tasker-test-cmd\"]}}, $ONCE}]"
tpl exec_badcmd "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": \"echo hi\"}}, $NONE}]"
tpl longsleep "[{\"name\": \"s\", \"handler\": {\"callable\": \"sleep\", \"initialization\": {\"ms\": 5000}}, $ONCE}]"
tpl cancelme "[{\"name\": \"run\", \"handler\": {\"callable\": \"exec\", \"initialization\": {
  \"command\": [\"sh\", \"-c\", \"echo \$\$ > $tmp/cancel_child.pid; exec sleep 30\"]}}, $ONCE}]"
tpl drain "[{\"name\": \"s\", \"handler\": {\"callable\": \"sleep\", \"initialization\": {\"ms\": 1500}}, $ONCE}]"
fan='[{"name": "root", "handler": {"callable": "noop"}}'
for i in 1 2 3 4 5 6 7 8 9; do
  fan+=", {\"name\": \"w$i\", \"handler\": {\"callable\": \"exec\", \"initialization\": {\"command\": [\"sh\", \"$tmp/conc.sh\", \"$tmp/conc\"]}}, \"dependencies\": [\"root\"]}"
done
fan+=', {"name": "join", "handler": {"callable": "noop"}, "dependencies": ["w1","w2","w3","w4","w5","w6","w7","w8","w9"]}]'
tpl fan "$fan"
wide='[{"name": "root", "handler": {"callable": "noop"}}'
for i in $(seq 1 20); do wide+=", {\"name\": \"n$i\", \"handler\": {\"callable\": \"noop\"}, \"dependencies\": [\"root\"]}"; done
wide+=']'
tpl wide "$wide"
is "$(q "SELECT count(*) FROM tasker.task_templates")" 18 "18 templates registered"

# ==== 1. built-ins and exec, one worker with the defaults ========================================

start_worker main --worker-id w-main
W1=$WPID
t_diamond=$(task diamond '{"order": 1}')
t_fail3=$(task fail3 '{}')
t_flaky=$(task flaky '{}')
t_perm=$(task permanent '{}')
t_after=$(task retry_after '{}')
t_unknown=$(task unknown '{}')
# 100 kB of context: more than a pipe holds (64 kB), so stdin and stdout both go through partial
# writes. (One command-line argument may not exceed 128 kB, hence not more.)
blob=$(head -c 100000 /dev/zero | tr '\0' x)
t_exok=$(task exec_ok "{\"order\": 2, \"blob\": \"$blob\"}")
t_exfail=$(task exec_fail '{}')
t_exto=$(task exec_timeout '{}')
t_exgarb=$(task exec_garbage '{}')
t_exbig=$(task exec_big '{}')
t_exmiss=$(task exec_missing '{}')
t_exbad=$(task exec_badcmd '{}')

if drive 60 "$t_diamond" "$t_fail3" "$t_flaky" "$t_perm" "$t_unknown" "$t_exok" "$t_exfail" "$t_exto" \
     "$t_exgarb" "$t_exbig" "$t_exmiss" "$t_exbad"; then
  ok "section 1: every task finished or blocked"
else
  fail "section 1: tasks still running after 60 s: $(q "SELECT string_agg(t.state || ':' || tt.name, ' ')
    FROM tasker.tasks t JOIN tasker.task_templates tt USING (task_template_uuid)")"
fi

# Diamond: noop and echo; d's echo shows its ancestors' results, b's its initialization.
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_diamond'")" complete "diamond: task complete"
is "$(step "$t_diamond" a "results::text")" "{}" "noop: result {}"
is "$(step "$t_diamond" b "results->'initialization'->>'x' || '/' || (results->'context'->>'order') || '/' || (results->>'attempt') || '/' || (results->'dependencies' ? 'a')")" \
  "1/1/1/true" "echo: initialization, context, attempt and the parent's result"
is "$(step "$t_diamond" d "(SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(results->'dependencies') k)")" \
  "a,b,c" "echo on the join: dependencies of every ancestor"
is "$(step "$t_diamond" d "results->'dependencies'->'b'->'initialization'->>'x'")" 1 \
  "echo on the join: the parent's echo result is inside"
is "$(q "SELECT count(*) || '/' || count(*) FILTER (WHERE a.worker_id = 'w-main' AND a.execution_time_ms >= 0 AND a.success)
         FROM tasker.workflow_step_result_audit a WHERE a.task_uuid = '$t_diamond'")" "4/4" \
  "each hand-back carries worker_id and execution_ms"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = '$t_diamond'
         AND to_state IN ('in_progress', 'enqueued_for_orchestration') AND processor IS DISTINCT FROM 'w-main'")" 0 \
  "claims and hand-backs are recorded as the worker's (tasker.actor)"

# fail: retried up to max_attempts, then error.
is "$(step "$t_fail3" f "state || '/' || attempts || '/' || (error->>'message') || '/' || (error->>'retryable')")" \
  "error/3/always fails/true" "fail (retryable, max_attempts 3): error after 3 attempts, with its message"
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_fail3'")" blocked_by_failures "fail: task blocked_by_failures"
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE task_uuid = '$t_fail3' AND NOT success")" 3 \
  "fail: three failed hand-backs"
is "$(step "$t_flaky" f "state || '/' || attempts || '/' || (results->>'attempt')")" "complete/3/3" \
  "fail with succeed_on_attempt 3: complete on attempt 3"
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_flaky'")" complete "flaky task complete"
is "$(step "$t_perm" f "state || '/' || attempts || '/' || (error->>'retryable') || '/' || (error->>'message')")" \
  "error/1/false/no way" "fail with retryable false: permanent after one attempt"
is "$(step "$t_unknown" u "state || '/' || attempts || '/' || (error->>'retryable')")" "error/1/false" \
  "unknown callable: permanent failure after one attempt"
like "$(step "$t_unknown" u "error->>'message'")" '*"no_such_handler"*' "unknown callable: the message names it"
# retry_after_secs passes through: the retry waits 300 s instead of backoff none. Measured from the
# failure's own transition (updated_at), not from now: drive above may already have handed the
# failure back, seconds ago on a loaded machine (and 300 s, so the retry never comes first).
orchestrate_until 20 none "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_after'" waiting_for_retry
is "$(step "$t_after" f "state || '/' || retry_after_secs || '/' || (next_retry_at > updated_at + interval '295 s')")" \
  "waiting_for_retry/300/true" "fail with retry_after_secs 300: passed through to the hand-back"
q "SELECT 1 FROM tasker.cancel_task('$t_after')" >/dev/null

# exec
is "$(step "$t_exok" run "state")" complete "exec ok: complete"
is "$(step "$t_exok" run "(results->'got'->>'step_name') || '/' || (results->'got'->>'attempt') || '/' || (results->'got'->'context'->>'order') || '/' || (results->'got'->'initialization'->>'k') || '/' || (results->'got'->>'task_uuid' = task_uuid::text) || '/' || (results->'got'->>'step_uuid' = workflow_step_uuid::text)")" \
  "run/1/2/v/true/true" "exec ok: stdin carried the step document, stdout became the result"
is "$(step "$t_exok" run "length(results->'got'->'context'->>'blob')")" 100000 \
  "exec ok: a 100 kB context went through stdin and came back on stdout"
is "$(step "$t_exok" run "(results->>'env_step' = workflow_step_uuid::text) || '/' || (results->>'env_attempt')")" "true/1" \
  "exec ok: TASKER_STEP_UUID and TASKER_ATTEMPT in the environment"
is "$(step "$t_exfail" run "state || '/' || (error->>'exit_code')")" "error/3" "exec exit 3: failure with exit_code 3"
like "$(step "$t_exfail" run "error->>'message'")" "exited with status 3*boom: the frobnicator is on fire*" \
  "exec exit 3: the stderr text is in the error message"
is "$(step "$t_exto" run "state || '/' || (error->>'timed_out')")" "error/true" "exec timeout: failure"
like "$(step "$t_exto" run "error->>'message'")" "*timed out after 1 s*" "exec timeout: the message says so"
ms=$(q "SELECT execution_time_ms FROM tasker.workflow_step_result_audit WHERE task_uuid = '$t_exto'")
if [ "${ms:-0}" -ge 900 ] && [ "${ms:-0}" -lt 6000 ]; then ok "exec timeout: killed after ~1 s (${ms} ms)"; else fail "exec timeout took ${ms:-?} ms"; fi
gone=yes
for f in timeout_child timeout_grandchild; do
  if [ ! -s "$tmp/$f.pid" ]; then gone="no pid file $f"; elif alive "$(cat "$tmp/$f.pid")"; then gone="$f still alive"; fi
done
is "$gone" yes "exec timeout: the child and its own child (same process group) are gone"
is "$(step "$t_exgarb" run "state")" error "exec with garbage on stdout: failure"
like "$(step "$t_exgarb" run "error->>'message'")" "stdout is not valid JSON: *" "exec garbage: 'stdout is not valid JSON: …'"
is "$(step "$t_exbig" run "state")" error "exec with > 1 MiB of stdout: failure"
like "$(step "$t_exbig" run "error->>'message'")" "*1048576-byte output cap*" "exec output cap: the message says so"
is "$(step "$t_exmiss" run "state")" error "exec of a missing command: failure"
like "$(step "$t_exmiss" run "error->>'message'")" "*cannot run /nonexistent/tasker-test-cmd*" "exec missing: the message names it"
is "$(step "$t_exbad" run "state || '/' || attempts || '/' || (error->>'retryable')")" "error/1/false" \
  "exec with a malformed command: permanent failure"
stop_worker "$W1" main

# ==== 2. heartbeats, lost lease, drain: a worker with a 2 s lease ===============================

start_worker lease --worker-id w-lease --lease-secs 2
W2=$WPID
t_long=$(task longsleep '{}')
# The sweep runs on every pass: without heartbeats the 2 s lease would expire during the 5 s sleep.
if drive 40 sweep "$t_long"; then ok "heartbeat: the 5 s sleep finished"; else fail "heartbeat: task not finished in 40 s"; fi
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_long'")" complete "heartbeat: task complete"
is "$(q "SELECT string_agg(to_state, ',' ORDER BY ordinal) FROM tasker.workflow_step_transitions WHERE task_uuid = '$t_long'")" \
  "enqueued,in_progress,enqueued_for_orchestration,complete" "heartbeat: one attempt, no lease_expired transition"
hb=$(grep -c "lease extended" "$tmp/lease.log")
if [ "$hb" -ge 3 ]; then ok "heartbeat: lease extended $hb times"; else fail "heartbeat: lease extended $hb times, want >= 3"; fi

# Lost lease: cancel the task while its exec child sleeps; the next heartbeat says false.
t_cancel=$(task cancelme '{}')
wait_for 20 "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_cancel'" in_progress
for ((i = 0; i < 100; i++)); do [ -s "$tmp/cancel_child.pid" ] && break; sleep 0.1; done
cpid=$(cat "$tmp/cancel_child.pid" 2>/dev/null)
if [ -n "$cpid" ] && alive "$cpid"; then ok "lost lease: the exec child runs (pid $cpid)"; else fail "lost lease: no exec child"; fi
q "SELECT 1 FROM tasker.cancel_task('$t_cancel', 'test')" >/dev/null
for ((i = 0; i < 100; i++)); do alive "$cpid" || break; sleep 0.1; done
if alive "$cpid"; then fail "lost lease: the exec child still runs 10 s after the cancel"; else ok "lost lease: the exec child was killed"; fi
is "$(grep -c "lease lost" "$tmp/lease.log")" 1 "lost lease: the worker logged it"
sleep 0.5
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE task_uuid = '$t_cancel'")" 0 \
  "lost lease: nothing handed back"
is "$(step "$t_cancel" run "state")" cancelled "lost lease: the step stays cancelled"

# Drain: SIGTERM while a sleep handler runs; the worker hands back, then exits 0.
t_drain=$(task drain '{}')
wait_for 20 "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_drain'" in_progress
stop_worker "$W2" lease
is "$(step "$t_drain" s "state || '/' || (results->>'slept_ms')")" "enqueued_for_orchestration/1500" \
  "drain: the running sleep finished and was handed back before the exit"
grep -q "drained" "$tmp/lease.log" && ok "drain: logged" || fail "drain: no 'drained' line in the log"
drive 10 "$t_drain" && is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_drain'")" complete "drain: task completes"

# A second signal exits at once, even with a handler running.
start_worker twice --worker-id w-twice
W3=$WPID
t_twice=$(task longsleep '{"n": 2}')
wait_for 20 "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_twice'" in_progress
kill -TERM "$W3"; sleep 0.3; kill -TERM "$W3"
for ((i = 0; i < 50; i++)); do alive "$W3" || break; sleep 0.1; done
if alive "$W3"; then fail "second signal: still running"; kill -KILL "$W3"; else ok "second signal: exited at once"; fi
wait "$W3"; rc=$?
is "$rc" 1 "second signal: exit status 1"
q "SELECT 1 FROM tasker.cancel_task('$t_twice')" >/dev/null

# Drain limit: a handler still running after --handler-timeout-secs is stopped and handed back as
# a retryable failure; the worker still exits 0.
start_worker limit --worker-id w-limit --handler-timeout-secs 1
W6=$WPID
t_limit=$(task longsleep '{"n": 3}')
wait_for 20 "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_limit'" in_progress
stop_worker "$W6" limit
is "$(step "$t_limit" s "state || '/' || (error->>'retryable')")" "enqueued_as_error_for_orchestration/true" \
  "drain limit: the unfinished handler was handed back as a retryable failure"
like "$(step "$t_limit" s "error->>'message'")" "*did not finish within the 1 s drain limit*" "drain limit: the message says why"
q "SELECT 1 FROM tasker.cancel_task('$t_limit')" >/dev/null

# ==== 3. --concurrency 3 --batch 2 ==============================================================

start_worker conc --worker-id w-conc --concurrency 3 --batch 2
W4=$WPID
t_fan=$(task fan '{}')
if drive 60 "$t_fan"; then ok "fan-out: finished"; else fail "fan-out: not finished in 60 s"; fi
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$t_fan'")" complete "fan-out: task complete"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = '$t_fan' AND state = 'complete' AND attempts = 1")" 11 \
  "fan-out: 11 steps, each ran once"
max=$(sort -n "$tmp/conc.counts" | tail -n 1)
is "$(wc -l <"$tmp/conc.counts" | tr -d ' ')" 9 "fan-out: 9 exec runs recorded"
is "$max" 3 "--concurrency 3: at most 3 handlers at once (and 3 reached)"
claims=$(grep -o "claimed [0-9]* of [0-9]* step" "$tmp/conc.log" | awk '{print $2, $4}')
maxgot=$(echo "$claims" | awk '{print $1}' | sort -n | tail -n 1)
maxasked=$(echo "$claims" | awk '{print $2}' | sort -n | tail -n 1)
is "$maxasked/$maxgot" "2/2" "--batch 2: no claim asked for or got more than 2 steps"
stop_worker "$W4" conc

# ==== 4. NOTIFY alone (no polling to speak of) and reconnecting =================================

start_worker notify --worker-id w-notify --poll-ms 600000
W5=$WPID
for ((i = 0; i < 100; i++)); do grep -q "listening on" "$tmp/notify.log" && break; sleep 0.1; done
t_n1=$(task diamond '{"order": 3}')
if drive 15 "$t_n1"; then ok "NOTIFY wakes the worker (poll 600 s): a diamond completes"; else fail "NOTIFY: diamond not done in 15 s"; fi
t_rc=$(task drain '{"n": 3}')
wait_for 20 "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$t_rc'" in_progress
# Only this database's: other scripts' workers share the server (run-db-tests runs scripts in parallel).
is "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name IN ('tasker-worker', 'tasker-worker-listen') AND datname = current_database()")" 2 \
  "reconnect: both worker connections terminated while a handler runs"
if drive 20 "$t_rc"; then ok "reconnect: the running step was handed back after reconnecting"; else fail "reconnect: step not done"; fi
is "$(step "$t_rc" s "state || '/' || attempts")" "complete/1" "reconnect: complete on its first attempt"
for ((i = 0; i < 100; i++)); do [ "$(grep -c "listening on" "$tmp/notify.log")" -ge 2 ] && break; sleep 0.1; done
grep -q "reconnected to the database" "$tmp/notify.log" && ok "reconnect: main connection back" || fail "reconnect: no 'reconnected' line"
t_n2=$(task diamond '{"order": 4}')
if drive 15 "$t_n2"; then ok "reconnect: LISTEN is back (a diamond completes without polling)"; else fail "reconnect: diamond not done in 15 s"; fi

# Batches: 20 ready noops are claimed 10 at a time (a full claim claims again at once) and each
# claim's results go back in one submit_step_results call — one transaction, one recorded_at.
t_wide=$(task wide '{}')
if drive 15 "$t_wide"; then ok "batches: 21-step fan-out done"; else fail "batches: fan-out not done in 15 s"; fi
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit a JOIN tasker.workflow_steps s USING (workflow_step_uuid)
         WHERE a.task_uuid = '$t_wide' AND s.name LIKE 'n%'")" 20 "batches: 20 hand-backs"
nb=$(q "SELECT count(DISTINCT a.recorded_at) FROM tasker.workflow_step_result_audit a
        JOIN tasker.workflow_steps s USING (workflow_step_uuid) WHERE a.task_uuid = '$t_wide' AND s.name LIKE 'n%'")
if [ "$nb" -ge 1 ] && [ "$nb" -le 4 ]; then ok "batches: 20 results handed back in $nb transaction(s)"; else fail "batches: 20 results in $nb transactions, want 1..4"; fi
grep -q "claimed 10 of 10 step(s)" "$tmp/notify.log" && ok "batches: a claim of 10 (--batch default)" || fail "batches: no claim of 10"
stop_worker "$W5" notify

# ==== the workers themselves ==================================================================

bad=$(grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|Invalid (read|write)|uninitialised|definitely lost: [1-9]|indirectly lost: [1-9]|ERROR SUMMARY: [1-9]" "$tmp"/*.log 2>/dev/null)
is "${bad:-none}" none "no sanitizer or valgrind reports in the worker logs"
if [ -n "$bad" ]; then for f in $bad; do sed 's/^/# /' "$f" | grep -v " debug " | tail -n 60; done; fi
errors=$(grep -h "Z error " "$tmp"/*.log | head -n 5)
is "${errors:-none}" none "no error lines in the worker logs"
if [ "$TESTS_FAILED" -gt 0 ]; then
  for f in "$tmp"/*.log; do echo "# ---- $f"; grep -v " debug " "$f" | tail -n 30 | sed 's/^/# /'; done
fi

finish
