#!/usr/bin/env bash
# 69_daemon_pool_cannot_grow.sh — a pool that cannot grow runs on the connections it has; the
# circuit breaker refuses queries only when no connection works, and its flag clears once queries
# succeed.
#
# The daemon connects as a role of its own, so its connection slots can be exhausted without
# touching anyone else's: ALTER ROLE … CONNECTION LIMIT set to the connections it already holds
# (its two pool connections and LISTEN), then work and API requests that want more connections.
# PostgreSQL refuses every new one ("too many connections for role", SQLSTATE 53300, as when
# max_connections is full).
#
# Before the fix, a few failed attempts to grow opened the breaker while both pooled connections
# were idle and working: for breaker_open_secs (5 s here) every query failed fast, orchestration
# stopped, /health said 503, and after the period tasker_db_pool_breaker_open stayed 1 while
# queries succeeded (it cleared only on a new connect, impossible while the limit held).
# Last, the breaker must still open when no connection works at all, and close when one does.
# make-check: exclusive (its breaker and pool timings assume a quiet machine)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh
command -v curl >/dev/null || { echo "curl is needed (scripts/install-deps)" >&2; exit 1; }

NS=grow
ROLE=tasker_grow_limited
url=$(fresh_db tasker_grow) || { fail "fresh database tasker_grow"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
owner=$(q "SELECT current_user")
q "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
# A member of the owner role (not a superuser, so the limit applies) has the owner's privileges.
q "CREATE ROLE $ROLE LOGIN; GRANT \"$owner\" TO $ROLE" >/dev/null || { fail "create role $ROLE"; finish; exit 1; }
limited_url=$(printf '%s' "$url" | sed "s|//[^@/]*@|//$ROLE@|")
[ "$limited_url" != "$url" ] || limited_url=$(printf '%s' "$url" | sed "s|//|//$ROLE@|")
role_conns() { q "SELECT count(*) FROM pg_stat_activity WHERE usename = '$ROLE'"; }
set_limit() { q "ALTER ROLE $ROLE CONNECTION LIMIT $1" >/dev/null; }
cleanup_role() {
  set_limit -1
  q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '$ROLE'" >/dev/null
}

dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
dt_start_worker w1 "$url" "$NS" --poll-ms 100

DT_WEB=true DT_MAX_CONN=6 DT_MIN_CONN=2 DT_BREAKER_FAILURES=3 dt_conf d1 "$limited_url" >/dev/null
# breaker_open_secs = 5 (it was 30): part 3 waits it out before the breaker can close, and 5 s
# still catch the fault of part 1. A breaker opened by the failed attempts to grow stays open at
# least 5 s (and its flag until a query succeeds, which none does while it is open), while /health
# is asked every 0.2 s throughout the 8 s of load: some 25 answers would say 503 and
# "breaker_open":true. Longer than dt_conf's 1 s so that such a window cannot fall between polls
# slowed down by a loaded machine.
sed -i 's/breaker_open_secs = 1$/breaker_open_secs = 5/' "$DT_DIR/d1.conf"
dt_start_daemon d1 "$limited_url"
dt_wait_ready d1 20 || { fail "d1 ready"; cleanup_role; dt_finish; exit 1; }
BASE=http://127.0.0.1:$(dt_http_port d1)
# Wait until the pool holds its minimum (2) and LISTEN is up, then allow no more.
deadline=$(( $(now_ms) + 10000 ))
until [ "$(role_conns)" -ge 3 ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
have=$(role_conns)
set_limit "$have"
ok "the daemon holds $have connections; the role may open no more"

# ---- 1. connection slots exhausted: run on what we have -----------------------------------------
# Load that wants more connections: bursts of concurrent API requests, and tasks.
hammer_until=$(( $(now_ms) + 8000 ))
( while [ "$(now_ms)" -lt "$hammer_until" ]; do
    for i in $(seq 10); do curl -s -o /dev/null -m 10 "$BASE/v1/tasks?per_page=50" & done
    wait
  done ) >/dev/null 2>&1 &
DT_PID[hammer]=$!
start=$(now_ms)
dt_create "$url" "$NS" 20 grow >/dev/null
health_bad=0 breaker_seen=0 polls=0
while [ "$(now_ms)" -lt "$hammer_until" ]; do
  code=$(curl -s -o "$DT_DIR/health" -w '%{http_code}' -m 5 "$BASE/health")
  polls=$((polls + 1))
  [ "$code" = 200 ] || health_bad=$((health_bad + 1))
  grep -q '"breaker_open":true' "$DT_DIR/health" && breaker_seen=$((breaker_seen + 1))
  sleep 0.2
done
dt_wait_exit hammer 20
is "$health_bad" 0 "/health answered 200 throughout ($polls polls) while the pool could not grow"
is "$breaker_seen" 0 "the breaker never opened while connections worked"
if dt_wait_log d1 'pool at [0-9]+ of 6, cannot grow: .*too many connections' 5; then
  ok "the log says: $(dt_log d1 | grep -oE 'pool at [0-9]+ of 6, cannot grow: .*' | head -n 1 | cut -c1-100)"
else
  fail "the log says the pool cannot grow, and why"
fi
grep -q '"cannot_grow":"[^"]*too many connections' "$DT_DIR/health" && ok "/health's pool says why it cannot grow" \
  || fail "/health's pool says why it cannot grow: $(grep -o '"pool":{[^}]*}' "$DT_DIR/health")"
if dt_wait_done "$url" 30; then
  ok "tasks complete on the connections the pool has ($(secs_between "$start" "$(now_ms)") s)"
else
  fail "tasks complete on the connections the pool has ($(dt_states "$url"))"
fi
is "$(role_conns)" "$have" "(the limit held: still $have connections)"

# ---- 2. the breaker flag follows the queries ---------------------------------------------------
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$BASE/v1/tasks")
is "$code" 200 "an API query succeeds"
curl -s -m 10 "$BASE/metrics" >"$DT_DIR/metrics"
is "$(awk '$1 == "tasker_db_pool_breaker_open" {print $2}' "$DT_DIR/metrics")" 0 \
  "tasker_db_pool_breaker_open is 0 while queries succeed"

# ---- 3. no connection works: the breaker opens, and closes once one does ------------------------
set_limit 0
q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '$ROLE'" >/dev/null
opened=no
deadline=$(( $(now_ms) + 15000 ))
while [ "$(now_ms)" -lt "$deadline" ]; do
  curl -s -m 5 "$BASE/metrics" >"$DT_DIR/metrics"
  [ "$(awk '$1 == "tasker_db_pool_breaker_open" {print $2}' "$DT_DIR/metrics")" = 1 ] && { opened=yes; break; }
  sleep 0.2
done
is "$opened" yes "with no connection at all, the breaker opens"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$BASE/health")
is "$code" 503 "/health: 503 while no connection works"
set_limit -1
# breaker_open_secs is 5: the probe after it reconnects. Allow for it, generously.
closed=no
deadline=$(( $(now_ms) + 45000 ))
while [ "$(now_ms)" -lt "$deadline" ]; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$BASE/health")
  curl -s -m 5 "$BASE/metrics" >"$DT_DIR/metrics"
  [ "$code" = 200 ] && [ "$(awk '$1 == "tasker_db_pool_breaker_open" {print $2}' "$DT_DIR/metrics")" = 0 ] && { closed=yes; break; }
  sleep 0.3
done
is "$closed" yes "once the database takes connections again: /health 200 and the breaker closed"
dt_create "$url" "$NS" 4 after >/dev/null
dt_wait_done "$url" 20 && ok "tasks complete afterwards" || fail "tasks complete afterwards ($(dt_states "$url"))"

dt_stop d1 TERM 15
is "$DT_RC" 0 "d1 exits 0"
dt_stop w1 TERM 10
cleanup_role
q "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
dt_finish
