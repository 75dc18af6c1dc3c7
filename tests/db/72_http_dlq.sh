#!/usr/bin/env bash
# 72_http_dlq.sh — dead letters over HTTP (issue 15 §6): a task the sweep moved to the DLQ is
# recovered in place, by POST /v1/tasks/{uuid}/recover and by PATCH /v1/dlq/{uuid} with recover,
# and runs on; GET /v1/dlq/stats counts the entries; the step audit shows every attempt's result and
# error; refusals (bad input, wrong state, a key without steps:resolve) change nothing. One daemon,
# API keys on; steps are claimed and handed back with psql, the sweep is called with psql.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh

command -v curl >/dev/null && command -v jq >/dev/null || { echo "curl and jq are needed (scripts/install-deps)" >&2; exit 1; }

url=$(fresh_db tasker_http_dlq) || { fail "fresh database tasker_http_dlq"; finish; exit 1; }
tmp=$(mktemp -d)
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

NS=httpdlq
q() { psql_at "$url" "$1"; }
ADMIN=adm-0123456789abcdef0123
DLQOPS=dlq-0123456789abcdef0123     # dlq:* only: may record an investigation, not run steps again
READER=rdr-0123456789abcdef0123     # dlq:read
CREATOR=crt-0123456789abcdef0123    # tasks:*

LOG=$tmp/daemon.log
cat >"$tmp/daemon.conf" <<EOF
environment = "test"
database {
    url = "$url"
    pool { max_connections = 4  min_connections = 4  acquire_timeout_secs = 5 }
}
orchestration {
    namespace_refresh_secs = 1
    shutdown_timeout_secs = 5
    completions { interval_ms = 200 }
    poller { interval_ms = 200 }
    sweeper { interval_secs = 3600 }
}
web {
    bind_address = "127.0.0.1:0"
    request_timeout_ms = 10000
    auth {
        enabled = true
        api_keys = "admin@$ADMIN:*
                    dlqops@$DLQOPS:dlq:*
                    reader@$READER:dlq:read
                    creator@$CREATOR:tasks:*"
    }
}
log { level = "debug" }
EOF
DATABASE_URL="$url" TASKER_ENV= "$BIN/tasker-orchestratord" -c "$tmp/daemon.conf" >"$LOG" 2>&1 &
DAEMON_PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*HTTP API listening on .* (port \([0-9]*\)).*/\1/p' "$LOG" | head -n 1)
  [ -n "$PORT" ] && break
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  sleep 0.1
done
BASE=http://127.0.0.1:$PORT
st=
for _ in $(seq 1 100); do
  [ -n "$PORT" ] || break
  st=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health/ready")
  [ "$st" = 200 ] && break
  sleep 0.1
done
if [ "$st" = 200 ]; then ok "daemon up on port $PORT"; else
  fail "daemon did not get ready (port '$PORT', last status '$st')"; tail -n 30 "$LOG" | sed 's/^/# /'; finish; exit 1
fi

# req METHOD PATH [BODY|- [CURL ARGS…]]: as admin unless ARGS give another key. Sets STATUS, BODY.
req() {
  local method=$1 path=$2 data=() key=(-H "X-API-Key: $ADMIN")
  shift 2
  if [ $# -gt 0 ]; then
    [ "$1" != - ] && data=(--data-binary "$1")
    shift
  fi
  [ $# -gt 0 ] && key=()
  STATUS=$(curl -sS -o "$tmp/body" -w '%{http_code}' -X "$method" "${data[@]}" "${key[@]}" "$@" "$BASE$path")
  BODY=$(cat "$tmp/body")
}
j() { printf '%s' "$BODY" | jq -c -r "$1" 2>/dev/null; }
expect() {
  if [ "$STATUS" = "$1" ] && { [ "$2" = - ] || { [ "$(j .error.code)" = "$2" ] && [ -n "$(j .error.message)" ]; }; }; then
    ok "$3 → $1${2:+ $2}"
  else
    fail "$3: want $1 $2, got $STATUS $(printf '%s' "$BODY" | head -c 300)"
  fi
}
snapshot() {
  q "SELECT concat_ws('/', (SELECT string_agg(state || state_changed_at, ',' ORDER BY task_uuid) FROM tasker.tasks),
       (SELECT string_agg(state || attempts, ',' ORDER BY workflow_step_uuid) FROM tasker.workflow_steps),
       (SELECT count(*) FROM tasker.task_transitions), (SELECT count(*) FROM tasker.workflow_step_transitions),
       (SELECT string_agg(resolution_status || updated_at, ',' ORDER BY dlq_entry_uuid) FROM tasker.tasks_dlq))"
}
wait_sql() {
  local got=
  for _ in $(seq 1 150); do
    got=$(q "$1")
    [ "$got" = "$2" ] && break
    sleep 0.1
  done
  is "$got" "$2" "$3"
}
sid() { q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = '$1' AND name = '$2'"; }
sst() { q "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$1' AND name = '$2'"; }
# claim_and_hand_back TASK STEP SUCCESS RESULT ERROR: claim what is dispatched, hand back STEP.
claim_and_hand_back() {
  q "SELECT count(*) FROM tasker.tasker_claim_and_execute_step('$NS', 50, 60, 'w1')" >/dev/null
  local s; s=$(sid "$1" "$2")
  q "SELECT status FROM tasker.submit_step_result('$s', (SELECT attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = '$s'), $3, $4, $5, 'w1', 5, NULL)"
}
# give_up TASK AGE: back-date the task and its steps, run the sweep: the task goes to the DLQ.
give_up() {
  q "UPDATE tasker.tasks SET state_changed_at = now() - interval '$2', created_at = now() - interval '$2' WHERE task_uuid = '$1';
     UPDATE tasker.workflow_steps SET updated_at = now() - interval '$2' WHERE task_uuid = '$1'" >/dev/null
  q "SELECT string_agg(action, ',') FROM tasker.detect_and_transition_stuck_tasks(100, false) WHERE task_uuid = '$1'"
}

req POST /v1/templates '{"name":"lin","namespace_name":"'$NS'","version":"1.0.0",
  "steps":[{"name":"a","handler":{"callable":"noop"},"retry":{"max_attempts":1}},
           {"name":"b","handler":{"callable":"noop"},"dependencies":["a"]},
           {"name":"c","handler":{"callable":"noop"},"dependencies":["b"]}]}'
expect 201 - "register the template"

# ---- stats of an empty DLQ -----------------------------------------------------------------------
req GET /v1/dlq/stats
expect 200 - "GET /v1/dlq/stats"
is "$(j '[.total, .by_status.pending, .oldest_open, (.by_reason | length)]')" '[0,0,null,0]' "stats of an empty DLQ"

# ---- two tasks given up on -----------------------------------------------------------------------
req POST /v1/tasks '{"name":"lin","namespace":"'$NS'","context":{"n":1}}'; expect 201 - "create T1"
T1=$(j .task_uuid)
req POST /v1/tasks '{"name":"lin","namespace":"'$NS'","context":{"n":2}}'; expect 201 - "create T2"
T2=$(j .task_uuid)
# T2: a fails for good (an error object), the task is blocked, then given up on (blocked_timeout).
is "$(claim_and_hand_back "$T2" a false NULL "'{\"message\": \"card declined\", \"error_type\": \"PaymentError\", \"retryable\": false}'")" \
  accepted "T2: a fails"
wait_sql "SELECT state FROM tasker.tasks WHERE task_uuid = '$T2'" blocked_by_failures "T2 is blocked by its failed step"
is "$(give_up "$T2" '25 hours')" moved_to_dlq "T2 is given up on"
# T1: nothing ran for two hours (staleness_timeout); the older entry.
is "$(give_up "$T1" '2 hours')" moved_to_dlq "T1 is given up on"
q "UPDATE tasker.tasks_dlq SET dlq_timestamp = now() - interval '1 hour' WHERE task_uuid = '$T1'" >/dev/null  # the oldest open
D1=$(q "SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = '$T1'")
D2=$(q "SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = '$T2'")
is "$(q "SELECT string_agg(state, ',' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid IN ('$T1', '$T2') GROUP BY task_uuid ORDER BY task_uuid = '$T2'")" \
  "$(printf 'cancelled,cancelled,cancelled\nerror,cancelled,cancelled')" "their open steps are cancelled, the failed one keeps its error"

req GET /v1/dlq/stats - -H "X-API-Key: $READER"
expect 200 - "stats with dlq:read"
is "$(j '[.total, .by_status.pending, .oldest_open.task_uuid, .oldest_open.dlq_entry_uuid, (.oldest_open.age_seconds >= 3600)]')" \
  "[2,2,\"$T1\",\"$D1\",true]" "stats: two open entries, the oldest named with its age"
is "$(j '[.by_reason[] | [.dlq_reason, .total, .pending]] | sort')" '[["blocked_timeout",1,1],["staleness_timeout",1,1]]' "stats: counts by reason"
req GET /v1/dlq/stats - -H "X-API-Key: $CREATOR"; expect 403 forbidden "stats without dlq:read"
req GET "/v1/dlq/stats?x=1"; expect 400 invalid_request "stats take no query parameters"

# Before this change a task in the DLQ could not be brought back: its steps refuse operator actions.
A1=$(sid "$T1" a)
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"reset_for_retry"}'
expect 409 conflict "a step of a task in error cannot be reset"

# ---- POST /v1/tasks/{uuid}/recover: refusals --------------------------------------------------
before=$(snapshot)
req POST /v1/tasks/zzz/recover '{}'; expect 400 invalid_uuid "recover: a task id that is not a UUID"
req POST /v1/tasks/01234567-89ab-7def-8123-456789abcdef/recover; expect 404 not_found "recover: unknown task"
req POST "/v1/tasks/$T1/recover" '{"steps":[]}'; expect 400 invalid_request "recover: an empty step list"
req POST "/v1/tasks/$T1/recover" '{"steps":["a"]}'; expect 400 invalid_request "recover: a step that is not a UUID"
req POST "/v1/tasks/$T1/recover" '{"reason":7}'; expect 400 invalid_request "recover: reason not a string"
req POST "/v1/tasks/$T1/recover" '{"steps":["'"$(sid "$T2" a)"'"]}'; expect 404 not_found "recover: a step of another task"
req POST "/v1/tasks/$T1/recover" '[1]'; expect 400 invalid_request "recover: a body that is not an object"
req POST "/v1/tasks/$T1/recover" - -H "X-API-Key: $DLQOPS"; expect 403 forbidden "recover without steps:resolve"
req GET "/v1/tasks/$T1/recover"; expect 405 method_not_allowed "GET …/recover"
is "$(snapshot)" "$before" "refused recoveries changed nothing"

# ---- POST /v1/tasks/{uuid}/recover: every step ---------------------------------------------------
req POST "/v1/tasks/$T1/recover" '{"reason":"workers were down","recovered_by":"ops-anna"}'
expect 200 - "POST /v1/tasks/{uuid}/recover"
is "$(j '[.previous_state, .state, .steps_recovered, .steps_enqueued, (.recovered_steps | length), .dlq_entry_uuid, .task.state]')" \
  "[\"error\",\"steps_in_process\",3,1,3,\"$D1\",\"steps_in_process\"]" "T1 runs again: three steps recovered, a dispatched"
is "$(q "SELECT processor || ' ' || (metadata->>'claimed_operator') || ' ' || (metadata->>'reason') FROM tasker.task_transitions WHERE task_uuid = '$T1' AND event = 'recover'")" \
  "api:admin ops-anna workers were down" "the task's recover transition: the key, the operator, why"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = '$T1' AND event = 'recover' AND processor = 'api:admin'")" 3 \
  "one recover transition per step"
is "$(q "SELECT resolution_status || ' ' || resolved_by FROM tasker.tasks_dlq WHERE dlq_entry_uuid = '$D1'")" "manually_resolved ops-anna" \
  "its DLQ entry is resolved"
req POST "/v1/tasks/$T1/recover"; expect 409 conflict "recover again: nothing in error or cancelled"
# … and it finishes.
for s in a b c; do
  is "$(claim_and_hand_back "$T1" $s true "'{\"step\": \"$s\"}'" NULL)" accepted "T1: $s handed back"
  wait_sql "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$T1' AND name = '$s'" complete "T1: $s completes"
done
wait_sql "SELECT state FROM tasker.tasks WHERE task_uuid = '$T1'" complete "the recovered task T1 completes"
req POST "/v1/tasks/$T1/recover"; expect 409 conflict "recover a complete task"

# ---- PATCH /v1/dlq/{uuid} with recover: a chosen step --------------------------------------------
A2=$(sid "$T2" a)
before=$(snapshot)
req PATCH "/v1/dlq/$D2" '{"steps":["'"$A2"'"]}'; expect 400 invalid_request "steps without recover"
req PATCH "/v1/dlq/$D2" '{"recover":"yes"}'; expect 400 invalid_request "recover not a boolean"
req PATCH "/v1/dlq/$D2" '{"recover":true,"resolution_status":"cancelled"}'; expect 400 invalid_request "recover with another status"
req PATCH "/v1/dlq/$D2" '{"recover":true}' -H "X-API-Key: $DLQOPS"; expect 403 forbidden "recover through the DLQ without steps:resolve"
case "$(j .error.message)" in *steps:resolve*) ok "the 403 names steps:resolve" ;; *) fail "403 message: $(j .error.message)" ;; esac
is "$(snapshot)" "$before" "refused DLQ updates changed nothing"
req PATCH "/v1/dlq/$D2" '{"resolution_notes":"looked at it"}' -H "X-API-Key: $DLQOPS"; expect 200 - "dlq:update alone still records notes"
req PATCH "/v1/dlq/$D2" '{"recover":true,"steps":["'"$A2"'"],"resolution_notes":"card fixed","resolved_by":"ops-ben"}'
expect 200 - "PATCH /v1/dlq/{uuid} with recover"
is "$(j '[.resolution_status, .resolved_by, .resolution_notes, .task_state, .metadata.recovery.steps]')" \
  "[\"manually_resolved\",\"ops-ben\",\"card fixed\",\"steps_in_process\",[\"$A2\"]]" "the entry is resolved and its task runs again"
is "$(sst "$T2" a)/$(sst "$T2" b)/$(q "SELECT attempts || ':' || attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = '$A2'")" \
  "enqueued/cancelled/0:1" "only a was recovered: dispatched with fresh attempts; b stays cancelled"
is "$(claim_and_hand_back "$T2" a true "'{\"charged\": 42}'" NULL)" accepted "T2: a succeeds on its second run"
wait_sql "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$A2'" complete "T2: a completes"

# ---- the step audit keeps both attempts' payloads --------------------------------------------------
req GET "/v1/tasks/$T2/workflow_steps/$A2/audit"
expect 200 - "GET …/audit"
is "$(printf '%s' "$BODY" | jq -S -c '[.results[] | [.attempt, .success, .result, .error]]')" \
  '[[1,false,null,{"error_type":"PaymentError","message":"card declined","retryable":false}],[2,true,{"charged":42},null]]' \
  "the audit shows each attempt's result and error"
is "$(j '[.transitions[] | select(.event == "recover") | [.from_state, .to_state, .processor, .metadata.claimed_operator]]')" \
  '[["error","pending","api:admin","ops-ben"]]' "the audit shows the recovery"

req GET /v1/dlq/stats
is "$(j '[.total, .by_status.pending, .by_status.manually_resolved, .oldest_open]')" '[2,0,2,null]' "stats: both entries resolved, none open"

kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; rc=$?; DAEMON_PID=
is "$rc" 0 "SIGTERM, the daemon exits 0"
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOG"; then fail "sanitizer report in the daemon's log"; else ok "no sanitizer report"; fi
finish
