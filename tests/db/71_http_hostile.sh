#!/usr/bin/env bash
# 71_http_hostile.sh — the HTTP API against hostile or careless clients: operator names with
# control characters refused; audit rows that name the authenticated key, with the operator the
# caller claims next to it; NUL and repeated query parameters refused; HEAD on the health routes;
# a request head trickled a byte a second closed at web.request_read_timeout_ms; connections over
# web.max_connections closed while the others are served; a declared Content-Length above the hard
# limit answered 413 at once; conflicting Content-Length / Transfer-Encoding refused with 400.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh
# shellcheck source=tests/daemon_lib.sh
. tests/daemon_lib.sh

# The daemon closes connections on purpose here: a write to one must fail, not kill the script.
trap '' PIPE

command -v curl >/dev/null && command -v jq >/dev/null || { echo "curl and jq are needed (scripts/install-deps)" >&2; exit 1; }

url=$(fresh_db tasker_http_hostile) || { fail "fresh database tasker_http_hostile"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
NS=hostns
KEY=ops-0123456789abcdef0123
RANDOM_UUID=01234567-89ab-7def-8123-456789abcdef
dt_register "$url" "$NS"

# The daemon: API keys on, a 3 s deadline for a whole request, at most 6 connections.
DT_WEB=true dt_conf h1 "$url" >/dev/null
sed -i "s|^    bind_address = \"127.0.0.1:0\"\$|&\n    request_read_timeout_ms = 3000\n    max_connections = 6\n    auth {\n        enabled = true\n        api_keys = \"opskey@$KEY:*\"\n    }|" "$DT_DIR/h1.conf"
dt_start_daemon h1 "$url"
if ! dt_wait_ready h1 20; then
  fail "the daemon did not get ready"; dt_finish; exit 1
fi
PORT=$(dt_http_port h1)
BASE=http://127.0.0.1:$PORT
ok "daemon up on port $PORT"

# req METHOD PATH [BODY]: sets STATUS and BODY (the response), with the API key.
req() {
  local data=()
  [ $# -ge 3 ] && data=(--data-binary "$3")
  STATUS=$(curl -sS -o "$DT_DIR/body" -w '%{http_code}' -X "$1" -H "X-API-Key: $KEY" "${data[@]}" "$BASE$2")
  BODY=$(cat "$DT_DIR/body")
}
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }
# expect STATUS CODE DESCRIPTION [MESSAGE-PART]: status, error code, and (optional) a part of the message.
expect() {
  if [ "$STATUS" = "$1" ] && { [ "$2" = - ] || [ "$(j .error.code)" = "$2" ]; } &&
     { [ -z "${4:-}" ] || [[ "$(j .error.message)" == *"$4"* ]]; }; then
    ok "$3 → $1 $2"
  else
    fail "$3: want $1 $2${4:+ ($4)}, got $STATUS $(printf '%s' "$BODY" | head -c 300)"
  fi
}
# raw REQUEST [SECS]: send REQUEST (printf format) on a fresh connection; RAW = everything the
# daemon wrote until it closed the connection (or SECS, default 10, passed), RAW_MS = how long.
raw() {
  local fd t0
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  t0=$(now_ms)
  # shellcheck disable=SC2059
  printf "$1" >&"$fd" 2>/dev/null
  RAW=$(timeout "${2:-10}" cat <&"$fd" | tr -d '\r')
  RAW_MS=$(( $(now_ms) - t0 ))
  exec {fd}>&-
}
# still_open FD: the daemon has not closed connection FD (nothing to read, no EOF, for 0.3 s).
still_open() { local x; read -r -t 0.3 -u "$1" x; [ $? -gt 128 ]; }
transitions() { q "SELECT (SELECT count(*) FROM tasker.task_transitions) + (SELECT count(*) FROM tasker.workflow_step_transitions)"; }

# ---- tasks to act on ---------------------------------------------------------------------------------
for i in 1 2 3; do
  req POST /v1/tasks '{"name":"e2e_linear","namespace":"'$NS'","context":{"i":'$i'}}'
  [ "$STATUS" = 201 ] || fail "create task $i: $STATUS $BODY"
  eval "T$i=$(j .task_uuid)"
done
A1=$(q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = '$T1' AND name = 'a'")
B1=$(q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = '$T1' AND name = 'b'")

# ---- operator names: no control characters ----------------------------------------------------------
before=$(transitions)
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"resolve_manually","resolved_by":"ops\nINFO forged line"}'
expect 400 invalid_request "resolved_by with a newline" resolved_by
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"reset_for_retry","reset_by":"ops\u001b[2J"}'
expect 400 invalid_request "reset_by with an ESC sequence" reset_by
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"complete_manually","completion_data":{"result":{}},"completed_by":"ops\u202eanna"}'
expect 400 invalid_request "completed_by with a bidi override" completed_by
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"resolve_manually","resolved_by":"ops\u0085x"}'
expect 400 invalid_request "resolved_by with a C1 control (NEL)" resolved_by
req DELETE "/v1/tasks/$T1?cancelled_by=ops%0Aforged"
expect 400 invalid_request "cancelled_by with a newline" cancelled_by
req DELETE "/v1/tasks/$T1?cancelled_by=ops%E2%80%AEx"
expect 400 invalid_request "cancelled_by with a bidi override" cancelled_by
req DELETE "/v1/tasks/$T1?cancelled_by=ops%FFx"
expect 400 invalid_request "cancelled_by that is not UTF-8" cancelled_by
req PATCH "/v1/dlq/$RANDOM_UUID" '{"resolved_by":"a\tb"}'
expect 400 invalid_request "DLQ resolved_by with a TAB" resolved_by
is "$(transitions)" "$before" "the refused requests changed nothing"
is "$(q "SELECT state FROM tasker.tasks WHERE task_uuid = '$T1'")" steps_in_process "task 1 still runs"
req PATCH "/v1/tasks/$T1/workflow_steps/$A1" '{"action_type":"resolve_manually","resolved_by":"Zoë O'"'"'Brien (ops)"}'
expect 200 - "an operator name with spaces, quotes and accents is fine"

# ---- audit: the authenticated key is the processor; the claimed operator sits next to it -------------
is "$(q "SELECT processor || ' ' || coalesce(metadata->>'claimed_operator', '-') FROM tasker.workflow_step_transitions
         WHERE workflow_step_uuid = '$A1' AND to_state = 'resolved_manually'")" \
  "api:opskey Zoë O'Brien (ops)" "resolve: processor = the key, metadata.claimed_operator = resolved_by"
req PATCH "/v1/tasks/$T1/workflow_steps/$B1" '{"action_type":"complete_manually","completion_data":{"result":{"v":1}},"reason":"by hand","completed_by":"ops-bo"}'
expect 200 - "complete_manually"
req GET "/v1/tasks/$T1/workflow_steps/$B1/audit"
is "$(j '.transitions[] | select(.event == "complete_manually") | .processor + " " + .metadata.claimed_operator + " " + .metadata.reason')" \
  "api:opskey ops-bo by hand" "the audit document shows the key, the claimed operator and the reason"
req DELETE "/v1/tasks/$T2?reason=not%20needed&cancelled_by=ops-di"
expect 200 - "cancel with cancelled_by"
is "$(q "SELECT processor || ' ' || (metadata->>'claimed_operator') || ' ' || (metadata->>'reason') FROM tasker.task_transitions
         WHERE task_uuid = '$T2' AND to_state = 'cancelled'")" "api:opskey ops-di not needed" \
  "cancel: processor = the key, metadata.claimed_operator = cancelled_by"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = '$T2' AND to_state = 'cancelled'
         AND (processor <> 'api:opskey' OR metadata->>'claimed_operator' IS DISTINCT FROM 'ops-di')")" 0 \
  "the cancelled steps' transitions say the same"
req DELETE "/v1/tasks/$T3"
expect 200 - "cancel without cancelled_by"
is "$(q "SELECT processor || ' ' || (metadata ? 'claimed_operator')::text FROM tasker.task_transitions
         WHERE task_uuid = '$T3' AND to_state = 'cancelled'")" "api:opskey false" "no claim: just the key"

# ---- query strings: no NUL, no repeated parameter ----------------------------------------------------
req GET "/v1/tasks?namespace=%00"; expect 400 invalid_request "?namespace=%00" NUL
req GET "/v1/templates?namespace=x%00y"; expect 400 invalid_request "a NUL inside a value" NUL
req GET "/v1/tasks?state=complete&state=error"; expect 400 invalid_request "a repeated parameter" state
req GET "/v1/dlq?page=1&per_page=5&page=2"; expect 400 invalid_request "a repeated page" page
req GET "/v1/tasks?namespace=&namespace=$NS"; expect 400 invalid_request "repeated, one of them empty" namespace
req GET "/v1/tasks?namespace=$NS&per_page=2"; expect 200 - "one of each is fine"
is "$(j '.tasks | length')" 2 "and filters"
req GET "/v1/tasks?namespace=%2500"; expect 400 invalid_request "%2500 is the text %00, not a NUL (an invalid namespace)" namespace

# ---- HEAD on the health routes -------------------------------------------------------------------------
for p in /health /health/live /health/ready; do
  out=$(curl -sS -I -o "$DT_DIR/head" -w '%{http_code} %{size_download}' "$BASE$p")
  is "$out" "200 0" "HEAD $p → 200, no body"
done
out=$(curl -sS -o /dev/null -w '%{http_code}' -X OPTIONS -D "$DT_DIR/hdr" "$BASE/health")
is "$(tr -d '\r' <"$DT_DIR/hdr" | sed -n 's/^Allow: //Ip')" "GET, HEAD" "OPTIONS /health lists HEAD"

# ---- request framing -------------------------------------------------------------------------------------
raw "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nX-API-Key: $KEY\r\nContent-Length: 100000000000\r\n\r\n{"
case "$RAW" in "HTTP/1.1 413"*) ok "a declared Content-Length over the hard limit → 413 ($RAW_MS ms)" ;;
  *) fail "Content-Length 10^11: got '$(printf '%s' "$RAW" | head -n 1)' after $RAW_MS ms" ;; esac
[ "$RAW_MS" -lt 2500 ] && ok "at once, before the 3 s request deadline" || fail "the 413 took $RAW_MS ms"
raw "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nX-API-Key: $KEY\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
case "$RAW" in "HTTP/1.1 400"*'"invalid_request"'*Content-Length*) ok "two different Content-Length headers → 400" ;;
  *) fail "two Content-Lengths: got '$(printf '%s' "$RAW" | head -c 400)'" ;; esac
grep -qi '^Connection: close' <<<"$RAW" && [ "$RAW_MS" -lt 2500 ] && ok "and the connection is closed" \
  || fail "two Content-Lengths: the connection stayed open ($RAW_MS ms)"
raw "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: $KEY\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
case "$RAW" in "HTTP/1.1 400"*'name is required'*) ok "the same Content-Length twice is one length (the body is read)" ;;
  *) fail "two equal Content-Lengths: got '$(printf '%s' "$RAW" | head -c 400)'" ;; esac
raw "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nX-API-Key: $KEY\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
# (libevent itself refuses some of these with its HTML 400; either way: 400 and closed)
case "$RAW" in "HTTP/1.1 400"*) ok "Content-Length with Transfer-Encoding → 400" ;;
  *) fail "CL + TE: got '$(printf '%s' "$RAW" | head -c 400)'" ;; esac
grep -qi '^Connection: close' <<<"$RAW" && [ "$RAW_MS" -lt 2500 ] && ok "and the connection is closed" \
  || fail "CL + TE: the connection stayed open ($RAW_MS ms)"

# ---- slowloris: a request head trickled a byte a second ---------------------------------------------
dt_log_skip h1
t0=$(now_ms)
fds=()
tricklers=()
for i in 1 2 3 4 5; do
  exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
  fds+=("$fd")
  ( printf 'GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ' >&"$fd"
    for _ in $(seq 1 40); do printf 'a' >&"$fd" || exit 0; sleep 1; done ) 2>/dev/null &
  tricklers+=($!)
done
closed=0
for fd in "${fds[@]}"; do
  timeout 25 cat <&"$fd" >/dev/null && closed=$((closed + 1))
done
secs=$(secs_between "$t0" "$(now_ms)")
is "$closed" 5 "5 connections trickling a byte a second are all closed by the daemon"
awk -v s="$secs" 'BEGIN { exit !(s >= 2.5 && s < 15) }' && ok "at the 3 s request deadline (after $secs s)" \
  || fail "closed after $secs s (deadline 3 s)"
for fd in "${fds[@]}"; do exec {fd}>&-; done
for p in "${tricklers[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
dt_wait_log h1 'request not complete within 3000 ms' 5 && ok "the daemon logs why it closed them" || fail "no log line about the deadline"

# A request that takes longer than the deadline in total, but arrives whole in time, is served: the
# deadline counts from the previous answer, so a kept-alive connection used twice is fine.
out=$(curl -sS -o /dev/null -o /dev/null -w '%{http_code} ' "$BASE/health/live" "$BASE/health/live")
is "$out" "200 200 " "two requests on one kept-alive connection"

# ---- max_connections ---------------------------------------------------------------------------------
held=()
for i in 1 2 3 4 5 6; do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; held+=("$fd"); done
open=0
for fd in "${held[@]}"; do still_open "$fd" && open=$((open + 1)); done
is "$open" 6 "6 idle connections (web.max_connections = 6) are held open"
out=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health/live" 2>/dev/null)
is "$out" 000 "a 7th connection is closed without an answer"
for fd in "${held[@]}"; do exec {fd}>&-; done
sleep 0.3
out=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health/live")
is "$out" 200 "once they are gone the daemon serves again"
dt_wait_log h1 'web.max_connections \(6\) reached' 5 && ok "the refusal is logged" || fail "no log line about the cap"
req GET /metrics
grep -qE '^tasker_http_connections_closed_total\{reason="max_connections"\} [1-9]' <<<"$BODY" \
  && grep -qE '^tasker_http_connections_closed_total\{reason="read_timeout"\} [5-9]' <<<"$BODY" \
  && ok "/metrics counts the closed connections by reason" || fail "/metrics: $(printf '%s\n' "$BODY" | grep connections)"
grep -qE '^tasker_http_connections_open [12]$' <<<"$BODY" && ok "/metrics: connections open" \
  || fail "/metrics: $(printf '%s\n' "$BODY" | grep connections_open)"

dt_stop h1
is "$DT_RC" 0 "SIGTERM: the daemon exits 0"
dt_finish
