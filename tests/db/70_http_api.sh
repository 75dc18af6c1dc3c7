#!/usr/bin/env bash
# 70_http_api.sh — the HTTP API end to end: a daemon on a free port, every endpoint driven with curl,
# each bad input answered with its status and JSON error code and nothing changed in the database;
# steps finished by hand-backs made with psql; API keys on a second daemon; SIGTERM exits 0. Under
# the ASan build (BIN=bin/asan) the daemon's own report must stay empty.
# make-check: long 120
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh

command -v curl >/dev/null && command -v jq >/dev/null || { echo "curl and jq are needed (scripts/install-deps)" >&2; exit 1; }

url=$(fresh_db tasker_http) || { fail "fresh database tasker_http"; finish; exit 1; }
tmp=$(mktemp -d)
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

NS=httpns    # the diamond: the only tasks whose steps the test claims
NS2=httpns2  # linear tasks, never claimed
q() { psql_at "$url" "$1"; }

# ---- helpers --------------------------------------------------------------------------------------

# start_daemon NAME WEB_EXTRA: write NAME.conf (web { WEB_EXTRA } added), start the daemon with
# TASKER_WEB_BIND_ADDRESS=127.0.0.1:0 (the file names an address that cannot be bound, so the
# override must win), read the port it logs, wait for /health/ready. Sets DAEMON_PID, PORT, BASE, LOG.
start_daemon() {
  local name=$1 extra=$2
  LOG=$tmp/$name.log
  cat >"$tmp/$name.conf" <<EOF
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
    bind_address = "192.0.2.1:9"
    max_body_bytes = 65536
    $extra
}
log { level = "debug" }
EOF
  DATABASE_URL="$url" TASKER_WEB_BIND_ADDRESS=127.0.0.1:0 TASKER_ENV= \
    "$BIN/tasker-orchestratord" -c "$tmp/$name.conf" >"$LOG" 2>&1 &
  DAEMON_PID=$!
  PORT=
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/.*HTTP API listening on .* (port \([0-9]*\)).*/\1/p' "$LOG" | head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  BASE=http://127.0.0.1:$PORT
  local st=
  for _ in $(seq 1 100); do
    [ -n "$PORT" ] || break
    st=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health/ready")
    [ "$st" = 200 ] && break
    sleep 0.1
  done
  if [ "$st" = 200 ]; then ok "$name: daemon up on the logged port $PORT, /health/ready 200"; else
    fail "$name: daemon did not get ready (port '$PORT', last status '$st')"; sed 's/^/# /' "$LOG" | tail -n 30
    finish; exit 1
  fi
}

# stop_daemon NAME: SIGTERM, wait, exit status 0, and no sanitizer report in the log.
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local rc
  wait "$DAEMON_PID"; rc=$?
  DAEMON_PID=
  is "$rc" 0 "$1: SIGTERM, the daemon exits 0"
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOG"; then
    fail "$1: sanitizer report in the daemon's log"; grep -E -A 15 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOG" | head -n 60 | sed 's/^/# /'
  else
    ok "$1: no sanitizer report in the daemon's log"
  fi
}

# req METHOD PATH [BODY [CURL ARGS…]]: sets STATUS, BODY (the response) and HEADERS (a file).
# BODY "-" = no body. The request body is sent as given (--data-binary).
HEADERS=$tmp/headers
req() {
  local method=$1 path=$2 data=()
  shift 2
  if [ $# -gt 0 ]; then
    [ "$1" != - ] && data=(--data-binary "$1")
    shift
  fi
  STATUS=$(curl -sS -o "$tmp/body" -D "$HEADERS" -w '%{http_code}' -X "$method" "${data[@]}" "$@" "$BASE$path")
  BODY=$(cat "$tmp/body")
}
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }
header() { tr -d '\r' <"$HEADERS" | sed -n "s/^$1: //Ip" | head -n 1; }

# expect STATUS CODE DESCRIPTION: the last response has this status and (CODE not "-") this error
# code in a JSON error body with a non-empty message.
expect() {
  if [ "$STATUS" = "$1" ] && { [ "$2" = - ] || { [ "$(j .error.code)" = "$2" ] && [ -n "$(j .error.message)" ]; }; }; then
    ok "$3 → $1${2:+ $2}"
  else
    fail "$3: want $1 $2, got $STATUS $(printf '%s' "$BODY" | head -c 300)"
  fi
}

# snapshot: what a refused request must leave as it was.
snapshot() {
  q "SELECT concat_ws('/', (SELECT count(*) FROM tasker.tasks), (SELECT count(*) FROM tasker.workflow_steps),
       (SELECT count(*) FROM tasker.task_templates), (SELECT count(*) FROM tasker.named_steps),
       (SELECT count(*) FROM tasker.task_transitions), (SELECT count(*) FROM tasker.workflow_step_transitions),
       (SELECT count(*) FROM tasker.tasks_dlq), (SELECT max(updated_at) FROM tasker.tasks_dlq),
       (SELECT max(updated_at) FROM tasker.workflow_steps), (SELECT max(updated_at) FROM tasker.tasks),
       (SELECT max(updated_at) FROM tasker.task_templates))"
}

# wait_sql SQL WANT DESCRIPTION: poll (up to 15 s) until SQL returns WANT.
wait_sql() {
  local got=
  for _ in $(seq 1 150); do
    got=$(q "$1")
    [ "$got" = "$2" ] && break
    sleep 0.1
  done
  is "$got" "$2" "$3"
}

# claim: every dispatched step of $NS, claimed by worker w1 (lines "uuid|attempt|name").
claim() { q "SELECT workflow_step_uuid, attempt, step_name FROM tasker.tasker_claim_and_execute_step('$NS', 50, 60, 'w1')"; }
# hand_back NAME SUCCESS RESULT ERROR: hand back the claimed step NAME (from $CLAIMED).
hand_back() {
  local line; line=$(printf '%s\n' "$CLAIMED" | awk -F'|' -v n="$1" '$3 == n' | head -n 1)
  local uuid=${line%%|*} rest=${line#*|}
  local attempt=${rest%%|*}
  q "SELECT status FROM tasker.submit_step_result('$uuid', $attempt, $2, $3, $4, 'w1', 7, NULL)"
}
step_uuid() { q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = '$1' AND name = '$2'"; }

DIAMOND='{"name":"diamond","namespace_name":"'$NS'","version":"1.0.0","description":"a diamond",
  "steps":[{"name":"a","handler":{"callable":"noop"}},
           {"name":"b","handler":{"callable":"noop"},"dependencies":["a"],"retry":{"retryable":false,"max_attempts":1}},
           {"name":"c","handler":{"callable":"noop"},"dependencies":["a"]},
           {"name":"d","handler":{"callable":"noop"},"dependencies":["b","c"]}]}'
LINEAR='{"name":"linear","namespace_name":"'$NS2'","version":"1.0.0",
  "steps":[{"name":"a","handler":{"callable":"noop"}},{"name":"b","handler":{"callable":"noop"},"dependencies":["a"]}]}'
RANDOM_UUID=01234567-89ab-7def-8123-456789abcdef

# ==== daemon A: auth off ============================================================================
start_daemon plain "request_timeout_ms = 10000
    backpressure_queue_depth = 3"

# ---- public endpoints ------------------------------------------------------------------------------
req GET /health/live; expect 200 - "GET /health/live"
is "$(j .status)" alive "/health/live says alive"
req GET /health/ready; expect 200 - "GET /health/ready"
is "$(j '.status + " " + .checks.database + " " + .checks.listener')" "ready up up" "/health/ready: database and listener up"
req GET /health; expect 200 - "GET /health"
is "$(j '.status + " " + .checks.database.status + " " + (.checks.http.port|tostring) + " " + (.pool.max|tostring)')" \
  "healthy up $PORT 4" "/health: healthy, database up, the bound port, pool stats"
is "$(j '.version | length > 0')" true "/health: version"
req GET /metrics; expect 200 - "GET /metrics"
case "$(header Content-Type)" in text/plain*) ok "/metrics is text/plain" ;; *) fail "/metrics content type $(header Content-Type)" ;; esac
grep -q '^tasker_build_info{version="' <<<"$BODY" && ok "/metrics: tasker_build_info" || fail "/metrics: no tasker_build_info"
grep -q '^tasker_db_pool_max_connections 4$' <<<"$BODY" && ok "/metrics: pool gauges" || fail "/metrics: no pool gauges"
out=$(curl -sv -o /dev/null -o /dev/null "$BASE/health/live" "$BASE/v1/dlq" 2>&1)
grep -qi 're-using existing connection' <<<"$out" && ok "keep-alive: the second request reuses the connection" \
  || fail "keep-alive: the connection was not reused"

# ---- templates -------------------------------------------------------------------------------------
before=$(snapshot)
req POST /v1/templates '{"name":"cyc","namespace_name":"'$NS'","steps":[{"name":"x","handler":{"callable":"h"},"dependencies":["y"]},{"name":"y","handler":{"callable":"h"},"dependencies":["x"]}]}'
expect 400 invalid_template "POST /v1/templates with a cycle"
case "$(j .error.message)" in *"dependency cycle"*) ok "the cycle error names the cycle" ;; *) fail "cycle message: $(j .error.message)" ;; esac
req POST /v1/templates '{"name":"dep","namespace_name":"'$NS'","steps":[{"name":"x","handler":{"callable":"h"},"dependencies":["nope"]}]}'
expect 400 invalid_template "POST /v1/templates with an unknown dependency"
req POST /v1/templates '{"name":"nosteps","namespace_name":"'$NS'"}'
expect 400 invalid_template "POST /v1/templates without steps"
req POST /v1/templates '{"name":'
expect 400 invalid_json "POST /v1/templates with malformed JSON"
req POST /v1/templates '[1,2]'
expect 400 invalid_request "POST /v1/templates with an array"
req POST /v1/templates -
expect 400 invalid_json "POST /v1/templates without a body"
is "$(snapshot)" "$before" "refused templates changed nothing"
# SQL text never reaches a client
grep -qiE 'sqlstate|select |plpgsql|TK4' <<<"$BODY" && fail "an error body leaks SQL" || ok "error bodies carry no SQL"

req POST /v1/templates "$DIAMOND"; expect 201 - "POST /v1/templates (new)"
is "$(j .status)" created "register: status created"
is "$(q "SELECT count(*) FROM tasker.named_steps n JOIN tasker.task_templates t USING (task_template_uuid) WHERE t.name = 'diamond'")" 4 \
  "the template's four steps are stored"
req POST /v1/templates "$DIAMOND"; expect 200 - "POST /v1/templates (same again)"
is "$(j .status)" unchanged "register again: unchanged"
req POST /v1/templates "$LINEAR"; expect 201 - "POST /v1/templates (second template)"

req GET /v1/templates; expect 200 - "GET /v1/templates"
is "$(j '.templates | length')/$(j .pagination.total_count)" 2/2 "two templates listed"
req GET "/v1/templates?per_page=1&page=2"; expect 200 - "GET /v1/templates paginated"
is "$(j '.templates[0].name')/$(j .pagination.total_pages)" linear/2 "page 2 of 2 holds the second template"
req GET "/v1/templates?namespace=$NS2"; expect 200 - "GET /v1/templates?namespace="
is "$(j '[.templates[].name] | join(",")')" linear "the namespace filter"
req GET "/v1/templates?namespace=Bad"; expect 400 invalid_request "GET /v1/templates?namespace=Bad"
req GET "/v1/templates?per_page=0"; expect 400 invalid_request "GET /v1/templates?per_page=0"
req GET "/v1/templates?bogus=1"; expect 400 invalid_request "GET /v1/templates?bogus=1"
req GET "/v1/templates/$NS/diamond/1.0.0"; expect 200 - "GET /v1/templates/{ns}/{name}/{version}"
is "$(j '[.steps[].name] | join(",")')|$(j '.steps[3].dependencies | join(",")')|$(j .definition.description)" \
  "a,b,c,d|b,c|a diamond" "the template's steps, dependencies and definition"
req GET "/v1/templates/$NS/diamond/9.9.9"; expect 404 not_found "GET an unknown template version"
req DELETE /v1/templates; expect 405 method_not_allowed "DELETE /v1/templates"
is "$(header Allow)" "GET, POST" "405 says Allow: GET, POST"

# ---- task creation ---------------------------------------------------------------------------------
TASK_REQ='{"name":"diamond","namespace":"'$NS'","version":"1.0.0","context":{"order":1,"big":123456789012345678901234567890},
  "initiator":"tester","source_system":"ci","reason":"http test","tags":["x","y"],"priority":5,
  "correlation_id":"01234567-89ab-7def-8123-000000000001"}'
req POST /v1/tasks "$TASK_REQ"; expect 201 - "POST /v1/tasks"
T1=$(j .task_uuid)
is "$(header Location)" "/v1/tasks/$T1" "Location header"
is "$(j '.state + " " + (.steps_enqueued|tostring) + " " + .namespace + " " + .name + " " + .version')" \
  "steps_in_process 1 $NS diamond 1.0.0" "the new task: state, root dispatched, identity"
is "$(q "SELECT initiator || ' ' || source_system || ' ' || reason || ' ' || priority || ' ' || tags::text || ' ' || correlation_id || ' ' || (context->>'big') FROM tasker.tasks WHERE task_uuid = '$T1'")" \
  "tester ci http test 5 [\"x\", \"y\"] 01234567-89ab-7def-8123-000000000001 123456789012345678901234567890" \
  "every TaskRequest field stored (a 30-digit number keeps its digits)"

before=$(snapshot)
req POST /v1/tasks "$TASK_REQ"; expect 409 duplicate_task "POST the same task again"
is "$(j .error.task_uuid)" "$T1" "409 names the existing task"
req POST /v1/tasks '{"name":"nope","namespace":"'$NS'"}'; expect 404 template_not_found "POST a task of an unknown template"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","version":"7.0.0"}'; expect 404 template_not_found "POST a task of an unknown version"
req POST /v1/tasks '{"namespace":"'$NS'"}'; expect 400 invalid_request "POST a task without name"
case "$(j .error.message)" in *name*) ok "the message names the missing field" ;; *) fail "message: $(j .error.message)" ;; esac
req POST /v1/tasks '{"name":7}'; expect 400 invalid_request "POST a task with a numeric name"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","context":[1]}'; expect 400 invalid_request "context as an array"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","tags":[1]}'; expect 400 invalid_request "tags with a number"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","priority":1.5}'; expect 400 invalid_request "fractional priority"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","priority":1000}'; expect 400 invalid_request "priority out of range (SQL check)"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","correlation_id":"nope"}'; expect 400 invalid_request "correlation_id not a UUID"
req POST /v1/tasks '{"name":"diamond","namespace":"Bad NS"}'; expect 400 invalid_request "malformed namespace"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","requested_at":"yesterday-ish"}'; expect 400 invalid_request "requested_at not a timestamp"
req POST /v1/tasks '{"name":"diamond","name":"linear","namespace":"'$NS'"}'; expect 400 invalid_json "duplicate key"
req POST /v1/tasks '{"name":"diamond",'; expect 400 invalid_json "truncated JSON"
req POST /v1/tasks 'name=diamond'; expect 400 invalid_json "a form body"
req POST /v1/tasks '"diamond"'; expect 400 invalid_json "a JSON string"
req POST /v1/tasks '[{"name":"diamond"}]'; expect 400 invalid_request "a JSON array"
req POST /v1/tasks -; expect 400 invalid_json "no body"
req POST /v1/tasks '{"name":"diamond","namespace":"'$NS'","context":{"s":"\u0000"}}'; expect 400 invalid_json "\\u0000 in a string"
head -c 70000 /dev/zero | tr '\0' ' ' >"$tmp/big"
printf '{"name":"diamond","namespace":"%s","pad":"x"}' "$NS" >>"$tmp/big"
req POST /v1/tasks - --data-binary @"$tmp/big"
expect 413 payload_too_large "a body over web.max_body_bytes → JSON 413"
head -c 400000 /dev/zero | tr '\0' ' ' >"$tmp/huge"
req POST /v1/tasks - --data-binary @"$tmp/huge"
is "$STATUS" 413 "a body over 4× web.max_body_bytes is refused by the HTTP layer (still 413)"
req POST /v1/tasks '{"name":"linear","namespace":"'$NS2'","context":{"order":2}}' -H 'Expect: 100-continue'
is "$STATUS" 201 "after the refusals the next task is created (Expect: 100-continue)"
T2=$(j .task_uuid)
is "$(q "SELECT count(*) FROM tasker.tasks")" 2 "only the two good requests created tasks"
req POST /v1/tasks '{"name":"linear","namespace":"'$NS2'","idempotency_key":"k-1","context":{"v":1}}'; expect 201 - "POST with an idempotency_key"
T3=$(j .task_uuid)
req POST /v1/tasks '{"name":"linear","namespace":"'$NS2'","idempotency_key":"k-1","context":{"v":2}}'; expect 409 duplicate_task "same idempotency_key, other context"
is "$(j .error.task_uuid)" "$T3" "409 names the task of that key"
after=$(q "SELECT count(*) FROM tasker.tasks")
is "$after" 3 "refused task requests created nothing"

# ---- reading tasks ---------------------------------------------------------------------------------
req GET /v1/tasks; expect 200 - "GET /v1/tasks"
is "$(j '.tasks | length')/$(j .pagination.total_count)/$(j .pagination.page)/$(j .pagination.per_page)" 3/3/1/25 "all tasks, default page"
is "$(j '.tasks[0].execution_context.total_steps')" 2 "newest first, with its execution context"
req GET "/v1/tasks?namespace=$NS&name=diamond&initiator=tester&source_system=ci&state=steps_in_process"; expect 200 - "GET /v1/tasks with every filter"
is "$(j '[.tasks[].task_uuid] | join(",")')" "$T1" "filters pick the one task"
req GET "/v1/tasks?status=steps_in_process"; expect 200 - "GET /v1/tasks?status="
is "$(j .pagination.total_count)" 3 "status is an alias of state"
req GET "/v1/tasks?namespace=$NS2&name=linear"; expect 200 - "GET /v1/tasks?namespace=&name="
# docs/api.md: one line of JSON per response, PostgreSQL's spacing in documents.
[ "$(j '.tasks | length')" -ge 2 ] && [[ "$BODY" != *$'\n'* ]] && [[ "$BODY" == '{"tasks" : [{'* ]] &&
  ok "a list of tasks is one line of JSON with PostgreSQL's spacing, as docs/api.md says" ||
  fail "the response format docs/api.md describes: $(head -c 80 <<<"$BODY")"
is "$(j .pagination.total_count)" 2 "two linear tasks"
req GET "/v1/tasks?per_page=1&page=3"; expect 200 - "GET /v1/tasks page 3 of 3"
is "$(j '.tasks | length')/$(j .pagination.total_pages)/$(j '.tasks[0].task_uuid')" "1/3/$T1" "pagination: the oldest on the last page"
req GET "/v1/tasks?page=9"; expect 200 - "a page past the end"
is "$(j '.tasks | length')" 0 "is empty"
req GET "/v1/tasks?state=bogus"; expect 400 invalid_request "unknown state filter"
req GET "/v1/tasks?per_page=101"; expect 400 invalid_request "per_page over 100"
req GET "/v1/tasks?page=0"; expect 400 invalid_request "page 0"
req GET "/v1/tasks?page=x"; expect 400 invalid_request "page not a number"
req GET "/v1/tasks?state=complete&status=error"; expect 400 invalid_request "state and status disagree"
req GET "/v1/tasks?colour=red"; expect 400 invalid_request "unknown query parameter"

req GET "/v1/tasks/$T1"; expect 200 - "GET /v1/tasks/{uuid}"
is "$(j '.task_uuid + " " + .state + " " + .execution_context.execution_status + " " + (.execution_context.total_steps|tostring) + " " + (.steps|length|tostring)')" \
  "$T1 steps_in_process processing 4 4" "the task with its execution context and steps"
is "$(j '.steps[0].name + ": " + .steps[0].not_ready_reason')" "a: already dispatched: waiting for a worker to claim it" "step a: its not-ready reason"
is "$(j '.steps[3].name + " " + (.steps[3].ready_for_execution|tostring) + " " + .steps[3].not_ready_reason')" \
  "d false waiting for 2 of 2 parent step(s): b (pending), c (pending)" "step d: waiting for its parents, named"
req GET "/v1/tasks/not-a-uuid"; expect 400 invalid_uuid "GET /v1/tasks/not-a-uuid"
req GET "/v1/tasks/$RANDOM_UUID"; expect 404 not_found "GET an unknown task"
req GET "/v1/tasks/$T1?x=1"; expect 400 invalid_request "a query string where none is taken"
req PUT "/v1/tasks/$T1"; expect 405 method_not_allowed "PUT /v1/tasks/{uuid}"
is "$(header Allow)" "GET, DELETE" "Allow: GET, DELETE"

# ---- steps, hand-backs, resolution ----------------------------------------------------------------
A=$(step_uuid "$T1" a); B=$(step_uuid "$T1" b); C=$(step_uuid "$T1" c); D=$(step_uuid "$T1" d)
req GET "/v1/tasks/$T1/workflow_steps"; expect 200 - "GET /v1/tasks/{uuid}/workflow_steps"
is "$(j '[.[].name] | join(",")')" "a,b,c,d" "four steps, in template order"
req GET "/v1/tasks/$RANDOM_UUID/workflow_steps"; expect 404 not_found "steps of an unknown task"
req GET "/v1/tasks/$T1/workflow_steps/$A"; expect 200 - "GET one step"
is "$(j '.name + " " + .state + " " + (.attempts|tostring) + "/" + (.max_attempts|tostring)')" "a enqueued 0/3" "step a: state and attempts"
req GET "/v1/tasks/$T1/workflow_steps/$RANDOM_UUID"; expect 404 not_found "an unknown step"
req GET "/v1/tasks/$T2/workflow_steps/$A"; expect 404 not_found "a step of another task"
req GET "/v1/tasks/$T1/workflow_steps/xyz"; expect 400 invalid_uuid "a step id that is not a UUID"

# a completes; b fails for good (not retryable); c completes → the task is blocked by failures
CLAIMED=$(claim)
is "$(hand_back a true "'{\"a\":1}'" NULL)" accepted "hand back a (psql)"
wait_sql "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$B'" enqueued "the daemon completes a and dispatches b"
CLAIMED=$(claim)
is "$(hand_back b false NULL "'{\"message\":\"boom\",\"retryable\":false}'")" accepted "hand back b as failed"
is "$(hand_back c true "'{\"c\":3}'" NULL)" accepted "hand back c"
wait_sql "SELECT state FROM tasker.tasks WHERE task_uuid = '$T1'" blocked_by_failures "the task is blocked by failures"
req GET "/v1/tasks/$T1/workflow_steps/$B"; expect 200 - "GET the failed step"
is "$(j '.state + " " + (.error.message)')" "error boom" "step b: error and its message"
case "$(j .not_ready_reason)" in *"needs an operator"*) ok "step b: the reason says an operator is needed" ;; *) fail "reason: $(j .not_ready_reason)" ;; esac
req GET "/v1/tasks/$T1"; is "$(j .execution_context.execution_status)" blocked_by_failures "execution status blocked_by_failures"

before=$(snapshot)
req PATCH "/v1/tasks/$T1/workflow_steps/$B" -; expect 400 invalid_json "PATCH without a body"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{}'; expect 400 invalid_request "PATCH without action_type"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"retry_harder"}'; expect 400 invalid_request "unknown action_type"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":7}'; expect 400 invalid_request "action_type not a string"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"complete_manually"}'; expect 400 invalid_request "complete_manually without completion_data"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"complete_manually","completion_data":{}}'; expect 400 invalid_request "completion_data without result"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"reset_for_retry","reset_by":5}'; expect 400 invalid_request "reset_by not a string"
req PATCH "/v1/tasks/$T1/workflow_steps/$D" '{"action_type":"reset_for_retry","reason":"x"}'; expect 409 conflict "reset a step that is not in error"
req PATCH "/v1/tasks/$T1/workflow_steps/$RANDOM_UUID" '{"action_type":"resolve_manually"}'; expect 404 not_found "resolve an unknown step"
req PATCH "/v1/tasks/$RANDOM_UUID/workflow_steps/$B" '{"action_type":"resolve_manually"}'; expect 404 not_found "resolve a step of an unknown task"
req PATCH "/v1/tasks/$T1/workflow_steps/nope" '{"action_type":"resolve_manually"}'; expect 400 invalid_uuid "resolve a step id that is not a UUID"
is "$(snapshot)" "$before" "refused resolutions changed nothing"

req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"reset_for_retry","reason":"flaky dependency fixed","reset_by":"ops-anna"}'
expect 200 - "PATCH reset_for_retry"
is "$(j '.previous_state + " " + .state + " " + .task_state + " " + (.steps_enqueued|tostring) + " " + (.step.attempts|tostring)')" \
  "error enqueued steps_in_process 1 0" "b is reset and dispatched at once; the task moves on"
is "$(q "SELECT processor || ' ' || (metadata->>'claimed_operator') || ' ' || event || ' ' || (metadata->>'reason') FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = '$B' AND from_state = 'error'")" \
  "api ops-anna reset_for_retry flaky dependency fixed" "the audit row names who (auth off: api, and the operator claimed) and why"
# (A reset step is not handed back here: a hand-back of its attempt 1 would collide with the first
# one's result-audit row — UNIQUE (workflow_step_uuid, attempt); reported to the lead.)
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"complete_manually","completion_data":{"result":{"v":42},"metadata":{"note":"by hand"}},"reason":"done by hand","completed_by":"ops-bo"}'
expect 200 - "PATCH complete_manually"
is "$(j '.previous_state + " " + .state + " " + (.steps_enqueued|tostring) + " " + (.step.results.v|tostring)')" "enqueued complete 1 42" \
  "b (dispatched again) completed by hand with the operator's result; d dispatched"
is "$(q "SELECT results::text FROM tasker.workflow_steps WHERE workflow_step_uuid = '$B'")" '{"v": 42}' "the result is stored"
CLAIMED=$(claim)
is "$(printf '%s\n' "$CLAIMED" | cut -d'|' -f3)" d "d was dispatched"
is "$(hand_back d true "'{\"d\":4}'" NULL)" accepted "hand back d"
wait_sql "SELECT state FROM tasker.tasks WHERE task_uuid = '$T1'" complete "the task completes"
req GET "/v1/tasks/$T1"; is "$(j '.state + " " + (.completed_at != null|tostring) + " " + .execution_context.execution_status')" "complete true all_complete" "GET: complete"
req PATCH "/v1/tasks/$T1/workflow_steps/$B" '{"action_type":"resolve_manually"}'; expect 409 conflict "resolve a step of a finished task"

req GET "/v1/tasks/$T1/workflow_steps/$B/audit"; expect 200 - "GET …/workflow_steps/{step}/audit"
is "$(j '[.transitions[].to_state] | join(",")')" \
  "pending,enqueued,in_progress,enqueued_as_error_for_orchestration,error,pending,enqueued,complete" \
  "the audit lists every transition of b in order"
is "$(j '[.results[] | (.attempt|tostring) + ":" + (.success|tostring) + ":" + .worker_id] | join(",")')" "1:false:w1" \
  "and its hand-back"
is "$(j '.transitions[-1].processor + " " + .transitions[-1].metadata.claimed_operator + " " + .transitions[-1].event')" \
  "api ops-bo complete_manually" "who completed it by hand"
req GET "/v1/tasks/$T1/workflow_steps/$RANDOM_UUID/audit"; expect 404 not_found "audit of an unknown step"

# resolve_manually on T2 (a linear task; its root a is enqueued): satisfies b, which is dispatched
A2=$(step_uuid "$T2" a)
req PATCH "/v1/tasks/$T2/workflow_steps/$A2" '{"action_type":"resolve_manually","reason":"skip","resolved_by":"ops-cy"}'
expect 200 - "PATCH resolve_manually"
is "$(j '.previous_state + " " + .state + " " + (.steps_enqueued|tostring)')" "enqueued resolved_manually 1" "a resolved, its child dispatched"

# ---- cancel ----------------------------------------------------------------------------------------
req DELETE "/v1/tasks/$T2?reason=not%20needed&cancelled_by=ops-di"; expect 200 - "DELETE /v1/tasks/{uuid}"
is "$(j '.task_uuid + " " + .previous_state + " " + .state + " " + (.steps_cancelled|tostring)')" \
  "$T2 steps_in_process cancelled 1" "the task and its open step are cancelled"
is "$(q "SELECT state || ' ' || processor || ' ' || (metadata->>'claimed_operator') || ' ' || (metadata->>'reason') FROM tasker.tasks t JOIN tasker.task_transitions x USING (task_uuid) WHERE task_uuid = '$T2' AND to_state = 'cancelled'")" \
  "cancelled api ops-di not needed" "cancel audited with who and why"
before=$(snapshot)
req DELETE "/v1/tasks/$T2"; expect 409 conflict "cancel a cancelled task"
req DELETE "/v1/tasks/$T1"; expect 409 conflict "cancel a complete task"
req DELETE "/v1/tasks/$RANDOM_UUID"; expect 404 not_found "cancel an unknown task"
req DELETE "/v1/tasks/123"; expect 400 invalid_uuid "cancel with a bad uuid"
req DELETE "/v1/tasks/$T3?force=1"; expect 400 invalid_request "cancel with an unknown parameter"
is "$(snapshot)" "$before" "refused cancels changed nothing"

# ---- templates in use ------------------------------------------------------------------------------
before=$(snapshot)
req POST /v1/templates "${DIAMOND/a diamond/a changed diamond}"; expect 409 template_in_use "change a template version that has tasks"
is "$(snapshot)" "$before" "the used template is unchanged"
req POST /v1/templates '{"name":"spare","namespace_name":"'$NS'","steps":[{"name":"s","handler":{"callable":"h"}}]}'; expect 201 - "register an unused template"
req POST /v1/templates '{"name":"spare","namespace_name":"'$NS'","description":"v2","steps":[{"name":"s","handler":{"callable":"h"}}]}'; expect 200 - "change it"
is "$(j .status)" updated "an unused version is updated"

# ---- DLQ -------------------------------------------------------------------------------------------
DLQ=$(q "INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot) VALUES ('$T3', 'steps_in_process', 'staleness_timeout', '{\"why\":\"test\"}') RETURNING dlq_entry_uuid")
req GET /v1/dlq; expect 200 - "GET /v1/dlq"
is "$(j '.entries | length')/$(j '.entries[0].dlq_entry_uuid')/$(j '.entries[0].task_state')" "1/$DLQ/steps_in_process" "the entry, with its task's state"
req GET "/v1/dlq?resolution_status=pending"; is "$(j .pagination.total_count)" 1 "filter pending"
req GET "/v1/dlq?resolution_status=manually_resolved"; is "$(j .pagination.total_count)" 0 "filter manually_resolved"
req GET "/v1/dlq?resolution_status=lost"; expect 400 invalid_request "unknown resolution_status filter"
req GET "/v1/dlq?limit=5"; expect 400 invalid_request "limit is not a parameter (page/per_page)"
before=$(snapshot)
req PATCH "/v1/dlq/$DLQ" '{}'; expect 400 invalid_request "PATCH /v1/dlq with nothing to change"
req PATCH "/v1/dlq/$DLQ" '{"resolution_status":"lost"}'; expect 400 invalid_request "an unknown resolution_status"
req PATCH "/v1/dlq/$DLQ" '{"resolution_status":3}'; expect 400 invalid_request "resolution_status not a string"
req PATCH "/v1/dlq/$DLQ" '{"metadata":[1]}'; expect 400 invalid_request "metadata not an object"
req PATCH "/v1/dlq/$DLQ" '{"resolution_notes":'; expect 400 invalid_json "malformed JSON"
req PATCH "/v1/dlq/$RANDOM_UUID" '{"resolution_notes":"x"}'; expect 404 not_found "an unknown DLQ entry"
req PATCH "/v1/dlq/zzz" '{"resolution_notes":"x"}'; expect 400 invalid_uuid "a DLQ id that is not a UUID"
req GET "/v1/dlq/$DLQ"; expect 405 method_not_allowed "GET /v1/dlq/{uuid}"
is "$(header Allow)" PATCH "Allow: PATCH"
is "$(snapshot)" "$before" "refused DLQ updates changed nothing"
req PATCH "/v1/dlq/$DLQ" '{"resolution_status":"manually_resolved","resolution_notes":"re-ran by hand","resolved_by":"ops-ed","metadata":{"ticket":"T-1"}}'
expect 200 - "PATCH /v1/dlq/{uuid}"
is "$(j '.resolution_status + " " + .resolution_notes + " " + .resolved_by + " " + .metadata.ticket + " " + (.resolution_timestamp != null|tostring)')" \
  "manually_resolved re-ran by hand ops-ed T-1 true" "the investigation is recorded"
is "$(q "SELECT resolution_status || ' ' || resolved_by FROM tasker.tasks_dlq WHERE dlq_entry_uuid = '$DLQ'")" "manually_resolved ops-ed" "and stored"

# ---- paths and methods -----------------------------------------------------------------------------
req GET /v1/nothing; expect 404 not_found "GET /v1/nothing"
req GET /; expect 404 not_found "GET /"
req GET "/v1/tasks/%zz"; expect 400 invalid_request "bad percent-encoding"
req GET "/v1/tasks/"; expect 200 - "a trailing slash is ignored"
req POST /health; expect 405 method_not_allowed "POST /health"
req OPTIONS /v1/tasks
is "$STATUS $(header Allow)" "204 GET, POST" "OPTIONS lists the methods"
req PATCH /v1/tasks '{}'; expect 405 method_not_allowed "PATCH /v1/tasks"

# ---- backpressure and the request deadline ---------------------------------------------------------
# Hold a lock every templates query needs, so the 4 pool connections block and queries queue up;
# with web.backpressure_queue_depth = 2 further API requests are refused at once.
hold_lock "$url" tasker.task_namespaces 3 || fail "lock tasker.task_namespaces"
locker=$HOLD_LOCK_PID
pids=()
for i in 1 2 3 4 5 6 7; do
  curl -s -o "$tmp/bp$i" -w '%{http_code}\n' "$BASE/v1/templates" >"$tmp/bps$i" &
  pids+=($!)
done
sleep 1
req GET /v1/templates
is "$STATUS $(j .error.code) $(header Retry-After)" "503 overloaded 1" "backpressure: 503 overloaded with Retry-After"
req GET /health/live; is "$STATUS" 200 "the loop still answers /health/live meanwhile"
wait "$locker" "${pids[@]}"
bad=$(cat "$tmp"/bps* | grep -vcE '^(200|503)$')
is "$bad" 0 "the requests made meanwhile got 200 (queued, served once the lock went) or 503 (refused)"
req GET /v1/templates; expect 200 - "after the lock, requests are served again"

# ---- metrics after the work --------------------------------------------------------------------------
sleep 5.2 # the queue depths are cached for 5 s
req GET /metrics
m() { printf '%s\n' "$BODY" | awk -v k="$1" '$1 == k {print $2}'; }
is "$(m tasker_tasks_created_total)" 3 "metrics: tasks created"
is "$(m tasker_tasks_cancelled_total)" 1 "metrics: tasks cancelled"
is "$(m tasker_steps_resolved_total)" 3 "metrics: steps resolved"
# Every dispatch this daemon made (roots at creation, children, resolutions) left one transition
# into enqueued; the counter must count each of them once.
is "$(m tasker_steps_enqueued_total)" "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state = 'enqueued'")" \
  "metrics: steps enqueued, root steps included"
is "$(m "tasker_namespace_tasks_created_total{namespace=\"$NS\"}")/$(m "tasker_namespace_tasks_created_total{namespace=\"$NS2\"}")" 1/2 \
  "metrics: tasks created by namespace"
is "$(m "tasker_queue_depth{queue=\"tasker_dispatch_$NS\",namespace=\"$NS\",kind=\"dispatch\"}")" \
  "$(q "SELECT count(*) FROM pgmq.q_tasker_dispatch_$NS")" "metrics: dispatch queue depth of $NS"
is "$(m tasker_queue_metrics_up)" 1 "metrics: queue depths read"
grep -q '^tasker_http_requests_total{route="task_create",code="2xx"} [1-9]' <<<"$BODY" && ok "metrics: HTTP requests by route and class" || fail "metrics: no HTTP request counters"
grep -q '^tasker_event_loop_lag_seconds_count [1-9]' <<<"$BODY" && ok "metrics: loop lag histogram" || fail "metrics: no loop lag"
grep -q '^tasker_step_orchestration_latency_seconds_bucket{le="+Inf"}' <<<"$BODY" && ok "metrics: step latency histogram" || fail "metrics: no step latency histogram"

stop_daemon plain

# ==== daemon B: API keys, a short deadline ===========================================================
ADMIN=adm-0123456789abcdef0123
READER=rdr-0123456789abcdef0123
CREATOR=crt-0123456789abcdef0123
start_daemon auth "request_timeout_ms = 1500
    auth {
        enabled = true
        api_keys = \"admin@$ADMIN:*
                    reader@$READER:tasks:read,tasks:list,templates:read
                    creator@$CREATOR:tasks:*\"
    }"

before=$(snapshot)
req GET /v1/tasks; expect 401 unauthorized "no key"
case "$(header WWW-Authenticate)" in Bearer*) ok "401 carries WWW-Authenticate: Bearer" ;; *) fail "no WWW-Authenticate" ;; esac
req GET /v1/tasks - -H "X-API-Key: wrong-0123456789abcdef"; expect 401 unauthorized "a wrong key"
req GET /v1/tasks - -H "Authorization: Bearer wrong-0123456789abcdef"; expect 401 unauthorized "a wrong bearer token"
req GET /v1/tasks - -H "Authorization: Basic $ADMIN"; expect 401 unauthorized "a key in another scheme"
req POST /v1/tasks '{"name":"linear","namespace":"'$NS2'"}' -H "X-API-Key: $READER"; expect 403 forbidden "reader creates a task"
case "$(j .error.message)" in *"tasks:create"*) ok "403 names the missing permission" ;; *) fail "403 message: $(j .error.message)" ;; esac
req POST /v1/templates "$LINEAR" -H "X-API-Key: $READER"; expect 403 forbidden "reader registers a template"
req DELETE "/v1/tasks/$T3" - -H "X-API-Key: $READER"; expect 403 forbidden "reader cancels a task"
req GET /v1/templates - -H "X-API-Key: $CREATOR"; expect 403 forbidden "creator lists templates"
req GET /v1/dlq - -H "Authorization: Bearer $CREATOR"; expect 403 forbidden "creator reads the DLQ"
is "$(snapshot)" "$before" "refused keys changed nothing"

req GET /v1/tasks - -H "X-API-Key: $READER"; expect 200 - "reader lists tasks (X-API-Key)"
req GET "/v1/tasks/$T1" - -H "Authorization: Bearer $READER"; expect 200 - "reader reads a task (Bearer)"
req GET /v1/templates - -H "authorization: bearer  $READER "; expect 200 - "scheme and header name are case-insensitive, spaces trimmed"
req POST /v1/tasks '{"name":"linear","namespace":"'$NS2'","context":{"by":"creator"}}' -H "X-API-Key: $CREATOR"; expect 201 - "creator creates a task (tasks:*)"
T4=$(j .task_uuid)
req DELETE "/v1/tasks/$T4" - -H "X-API-Key: $ADMIN"; expect 200 - "admin cancels it (*)"
is "$(q "SELECT processor FROM tasker.task_transitions WHERE task_uuid = '$T4' AND to_state = 'cancelled'")" "api:admin" "the audit names the key"
for p in /health /health/live /health/ready /metrics; do
  req GET "$p"; is "$STATUS" 200 "$p is public with auth on"
done
req GET /v1/nothing; expect 404 not_found "unknown paths are 404 before auth"

# the deadline: hold a lock the query needs for longer than request_timeout_ms (1.5 s): 4 s, so the
# request still meets the lock on a slow machine
hold_lock "$url" tasker.task_namespaces 4 || fail "lock tasker.task_namespaces"
locker=$HOLD_LOCK_PID
req GET /v1/templates - -H "X-API-Key: $ADMIN"; expect 503 timeout "no answer within request_timeout_ms"
wait "$locker"
sleep 0.5
req GET /v1/templates - -H "X-API-Key: $ADMIN"; expect 200 - "the next request is served (the late query's answer was dropped)"

# secrets stay out of logs and dumps
if grep -qE "$ADMIN|$READER|$CREATOR" "$LOG"; then fail "an API key appears in the log"; else ok "no API key in the log"; fi
dump=$(DATABASE_URL="$url" "$BIN/tasker-orchestratord" -c "$tmp/auth.conf" --check-config -v 2>&1)
if grep -qE "$ADMIN|$READER|$CREATOR" <<<"$dump"; then fail "--check-config -v shows a key"; else ok "--check-config -v masks the keys"; fi
grep -q 'reader@\*\*\*:tasks:read,tasks:list,templates:read' <<<"$dump" && ok "the dump keeps names and permissions" || fail "dump: $(printf '%s' "$dump" | grep api_keys)"
printf 'web { auth { enabled = true } }\n' >"$tmp/nokeys.conf"
out=$("$BIN/tasker-orchestratord" -c "$tmp/nokeys.conf" --check-config 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q 'needs at least one key' <<<"$out" && ok "auth on without keys is a config error" || fail "no-key config: rc $rc: $out"
printf 'web { auth { api_keys = "x@short-secret-1:*" } }\n' >"$tmp/short.conf"
out=$("$BIN/tasker-orchestratord" -c "$tmp/short.conf" --check-config 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q 'short.conf:1: web.auth.api_keys entry 1 (x): the key must be 16' <<<"$out" && ! grep -q short-secret <<<"$out" \
  && ok "a short key is refused with file:line, without echoing it" || fail "short key: rc $rc: $out"
printf 'web { auth { api_keys = "x@0123456789abcdef0123:tasks:fly" } }\n' >"$tmp/perm.conf"
out=$("$BIN/tasker-orchestratord" -c "$tmp/perm.conf" --check-config 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q 'unknown permission "tasks:fly"' <<<"$out" && ok "an unknown permission is refused" || fail "bad permission: rc $rc: $out"

stop_daemon auth

# ==== daemon C: web.enabled = false ==================================================================
cat >"$tmp/noweb.conf" <<EOF
database { url = "$url" pool { max_connections = 2  min_connections = 1 } }
orchestration { shutdown_timeout_secs = 5 }
web { enabled = false }
EOF
LOG=$tmp/noweb.log
DATABASE_URL="$url" TASKER_ENV= "$BIN/tasker-orchestratord" -c "$tmp/noweb.conf" >"$LOG" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do grep -q 'daemon: ready' "$LOG" && break; sleep 0.1; done
grep -q 'daemon: ready' "$LOG" && ! grep -q 'HTTP API listening' "$LOG" && ok "web.enabled = false: ready without HTTP" \
  || fail "web.enabled = false: $(tail -n 5 "$LOG")"
stop_daemon noweb

finish
