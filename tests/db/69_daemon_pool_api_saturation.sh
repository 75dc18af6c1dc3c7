#!/usr/bin/env bash
# 69_daemon_pool_api_saturation.sh — slow API requests cannot starve orchestration, and a request
# that outlives its deadline or its statement timeout does not leave its query running.
#
#  1. database.pool.reserved_for_orchestration: HTTP requests share the pool with completions, the
#     poller and the sweeper. A psql session holds tasker.tasks_dlq (which only GET /v1/dlq reads
#     here) so every GET /v1/dlq blocks on it holding its connection, and a stream of them is kept
#     in flight; meanwhile new tasks must still complete. Before the reservation the API took every
#     connection and orchestration queries timed out waiting for one.
#  2. A request whose query outlives web.request_timeout_ms gets 503 "timeout", and its query is
#     cancelled on the server (gone from pg_stat_activity while the lock is still held); the pool
#     goes on serving. Before, the query waited on until the lock went.
#  3. web.statement_timeout_ms: API statements have a server-side timeout in every environment;
#     with it below the deadline the request gets 503 and the statement is gone.
# make-check: exclusive (its slow requests are timed against the pool)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh
command -v curl >/dev/null || { echo "curl is needed (scripts/install-deps)" >&2; exit 1; }

NS=sat
url=$(fresh_db tasker_sat) || { fail "fresh database tasker_sat"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
dt_start_worker w1 "$url" "$NS" --poll-ms 100

# conf_set NAME SECTION LINE: add LINE at the top of SECTION ("pool" or "web") of NAME's config.
conf_set() { sed -i "s|^\( *\)$2 {\$|&\n\1    $3|" "$DT_DIR/$1.conf"; }

# lock_dlq SECS: hold tasker.tasks_dlq exclusively for SECS in the background (DT_PID[locker]).
lock_dlq() {
  hold_lock "$url" tasker.tasks_dlq "$1" || return 1
  DT_PID[locker]=$HOLD_LOCK_PID
}
# unlock_dlq: end the locking session and reap it.
unlock_dlq() {
  release_lock "$url" tasker.tasks_dlq
  dt_wait_exit locker 10
}
# blocked: the daemon's statements waiting for that lock.
blocked() {
  q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord' AND state = 'active'
     AND wait_event_type = 'Lock' AND query ILIKE '%dlq%'"
}
# wait_blocked N SECS: until at most N statements wait for the lock; false on timeout.
wait_blocked() {
  local deadline=$(( $(now_ms) + $2 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(blocked)" -le "$1" ] && return 0
    sleep 0.1
  done
  return 1
}

# ---- 1. orchestration keeps moving while slow API calls saturate the pool -----------------------
# 6 connections; the reservation is left at its default (2), so the API may hold 4.
DT_WEB=true DT_MAX_CONN=6 DT_ACQUIRE_SECS=2 dt_conf d1 "$url" >/dev/null
conf_set d1 web "request_timeout_ms = 30000"
dt_start_daemon d1 "$url"
dt_wait_ready d1 20 || fail "d1 ready"
BASE=http://127.0.0.1:$(dt_http_port d1)
lock_dlq 40 || fail "lock on tasker.tasks_dlq taken"
# Keep about 12 GET /v1/dlq in flight: each blocks on the lock and holds its connection until the
# lock goes or its deadline passes; those that find no connection are refused (503) and re-sent.
# Until the checks below are done (hammer.stop), 25 s at most.
hammer_until=$(( $(now_ms) + 25000 ))
( while [ ! -e "$DT_DIR/hammer.stop" ] && [ "$(now_ms)" -lt "$hammer_until" ]; do
    for i in $(seq 12); do curl -s -o /dev/null -m 35 "$BASE/v1/dlq" & done
    wait
  done ) >/dev/null 2>&1 &
DT_PID[hammer]=$!
deadline=$(( $(now_ms) + 10000 ))
until [ "$(blocked)" -ge 4 ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
n_blocked=$(blocked)
[ "$n_blocked" -ge 4 ] && ok "the API is saturated: $n_blocked API statements wait for the lock" \
  || fail "the API is saturated (only $n_blocked statements wait for the lock)"
start=$(now_ms)
dt_create "$url" "$NS" 10 sat >/dev/null
if dt_wait_done "$url" 20; then
  ok "tasks created while the API is saturated complete ($(secs_between "$start" "$(now_ms)") s)"
else
  fail "tasks created while the API is saturated complete ($(dt_states "$url"))"
fi
n_blocked=$(blocked)
[ "$n_blocked" -le 4 ] && ok "the API holds at most max_connections - reserved_for_orchestration = 4 connections ($n_blocked)" \
  || fail "the API holds at most 4 connections (it holds $n_blocked)"
dt_alive locker && ok "the lock was held all along" || fail "the lock was held all along (the check proves nothing)"
touch "$DT_DIR/hammer.stop"
unlock_dlq
dt_wait_exit hammer 45
dt_stop d1 TERM 15
is "$DT_RC" 0 "d1 exits 0"

# ---- 2. the deadline cancels the query ----------------------------------------------------------
DT_WEB=true dt_conf d2 "$url" >/dev/null
conf_set d2 web "request_timeout_ms = 1500"
dt_start_daemon d2 "$url"
dt_wait_ready d2 20 || fail "d2 ready"
BASE=http://127.0.0.1:$(dt_http_port d2)
lock_dlq 30 || fail "lock on tasker.tasks_dlq taken"
code=$(curl -s -o "$DT_DIR/body" -w '%{http_code}' -m 20 "$BASE/v1/dlq")
is "$code $(grep -o '"code":"[a-z_]*"' "$DT_DIR/body")" '503 "code":"timeout"' "past the deadline: 503 timeout"
if wait_blocked 0 5; then
  ok "its query is cancelled on the server (no longer in pg_stat_activity) while the lock is still held"
else
  fail "its query is cancelled on the server ($(blocked) statement(s) still wait for the lock)"
fi
dt_alive locker && ok "(the lock was still held)" || fail "the lock was still held (the check proves nothing)"
unlock_dlq
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$BASE/v1/dlq")
is "$code" 200 "afterwards the API is served again"
# "busy" counts orchestration's queries too (the poller's, every 100 ms here): one may be in flight
# at the moment /health answers. A connection the cancel left busy stays busy, so ask again for up
# to 5 s: a transient query is gone by then, a leaked connection is not.
deadline=$(( $(now_ms) + 5000 ))
while code=$(curl -s -o "$DT_DIR/health" -w '%{http_code}' -m 10 "$BASE/health"); do
  { [ "$code" = 200 ] && grep -q '"busy":0' "$DT_DIR/health"; } || [ "$(now_ms)" -ge "$deadline" ] && break
  sleep 0.1
done
is "$code $(grep -o '"busy":[0-9]*' "$DT_DIR/health")" '200 "busy":0' "/health: 200, no connection left busy"
dt_create "$url" "$NS" 4 after_cancel >/dev/null
dt_wait_done "$url" 20 && ok "tasks complete after the cancel" || fail "tasks complete after the cancel ($(dt_states "$url"))"
dt_stop d2 TERM 15
is "$DT_RC" 0 "d2 exits 0"

# ---- 3. web.statement_timeout_ms --------------------------------------------------------------
DT_WEB=true dt_conf d3 "$url" >/dev/null
conf_set d3 web "statement_timeout_ms = 1000"
dt_start_daemon d3 "$url"
if dt_wait_ready d3 20; then
  BASE=http://127.0.0.1:$(dt_http_port d3)
  lock_dlq 30 || fail "lock on tasker.tasks_dlq taken"
  start=$(now_ms)
  code=$(curl -s -o "$DT_DIR/body" -w '%{http_code}' -m 20 "$BASE/v1/dlq")
  took=$(( $(now_ms) - start ))
  is "$code $(grep -o '"code":"[a-z_]*"' "$DT_DIR/body")" '503 "code":"service_unavailable"' \
    "an API statement past web.statement_timeout_ms: 503 service_unavailable"
  [ "$took" -lt 10000 ] && ok "…after about the statement timeout (${took} ms), well before the 30 s deadline" \
    || fail "…after about the statement timeout (took ${took} ms)"
  wait_blocked 0 3 && ok "the statement is gone from pg_stat_activity" || fail "the statement is gone ($(blocked) left)"
  dt_create "$url" "$NS" 4 st >/dev/null
  dt_wait_done "$url" 20 && ok "tasks still complete" \
    || fail "tasks complete ($(dt_states "$url"))"
  unlock_dlq
  dt_stop d3 TERM 15
  is "$DT_RC" 0 "d3 exits 0"
else
  fail "d3 (web.statement_timeout_ms = 1000) ready"
  dt_log d3 | tail -n 3 | sed 's/^/#   /'
fi
dt_stop w1 TERM 10
dt_finish
