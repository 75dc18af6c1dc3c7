#!/usr/bin/env bash
# 68_daemon_vacuum.sh — the daemon vacuums the hot tables while work flows, and only then
# (src/orchestratord/vacuum.c). One daemon (orchestration.vacuum at its defaults but for the task tables every
# 2 s) and two workers:
#   1. idle, before any work: no VACUUM of the queue or task tables;
#   2. under load: pgmq.q_tasker_dispatch_vac, pgmq.q_tasker_completion_vac, tasker.workflow_steps
#      and tasker.tasks are vacuumed (pg_stat_user_tables.vacuum_count / last_vacuum), the daemon
#      counts it in /metrics, and every task completes exactly as it should;
#   3. idle again: no more VACUUM;
#   4. a daemon whose role does not own the tables logs one warning and vacuums nothing.
# VACUUM_TASKS=N changes the load (default 600 tasks, about 5,000 steps), VACUUM_TASK_TABLES_MS the
# task tables' period (default 2000); the log's vacuum timings are printed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=vac
DB=tasker_vacuum
TASKS=${VACUUM_TASKS:-600}
OTHER_ROLE=tasker_test_not_owner
url=$(fresh_db "$DB") || { fail "fresh database $DB"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

HOT="('pgmq', 'q_tasker_dispatch_$NS'), ('pgmq', 'q_tasker_completion_$NS'), ('tasker', 'workflow_steps'), ('tasker', 'tasks')"
# vacuums: "relname=vacuum_count …" of the four hot tables (manual VACUUMs only; autovacuum counts apart).
vacuums() {
  q "SELECT string_agg(relname || '=' || vacuum_count, ' ' ORDER BY relname) FROM pg_stat_user_tables
     WHERE (schemaname, relname) IN ($HOT)"
}
# vacuumed_since EPOCH_MS: how many of the four were vacuumed at or after then.
vacuumed_since() {
  q "SELECT count(*) FROM pg_stat_user_tables WHERE (schemaname, relname) IN ($HOT)
     AND last_vacuum >= to_timestamp($1 / 1000.0)"
}
count_of() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

DT_LOG_LEVEL=debug DT_WEB=true dt_conf d1 "$url" >/dev/null
sed -i "s/^orchestration {\$/orchestration {\n    vacuum { task_tables_interval_ms = ${VACUUM_TASK_TABLES_MS:-2000} }/" "$DT_DIR/d1.conf"

# ---- 1. idle -------------------------------------------------------------------------------------
v0=$(vacuums)
t0=$(now_ms)
dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"
sleep 3
is "$(vacuums)" "$v0" "an idle daemon vacuums nothing (vacuum counts: $v0)"
is "$(vacuumed_since "$t0")" 0 "… no last_vacuum since it started"

# ---- 2. load -------------------------------------------------------------------------------------
dt_start_worker w1 "$url" "$NS" --concurrency 50 --batch 25 --poll-ms 100
dt_start_worker w2 "$url" "$NS" --concurrency 50 --batch 25 --poll-ms 100
dt_wait_log w1 'connected to the database' 10 && dt_wait_log w2 'connected to the database' 10 || fail "workers connected"
t_load=$(now_ms)
created=$(dt_create "$url" "$NS" "$TASKS" load)
is "$created" "$TASKS" "$TASKS tasks created"
dt_wait_done "$url" 120 && ok "every task terminal" || fail "every task terminal within 120 s ($(dt_states "$url"))"
t_done=$(now_ms)
sleep 2.5   # one more round for what the last completions left behind
v1=$(vacuums)
echo "# $TASKS tasks ($(dt_expected_steps "$TASKS") steps) in $(secs_between "$t_load" "$t_done") s; vacuum counts before: $v0; after: $v1"
for t in "q_tasker_dispatch_$NS" "q_tasker_completion_$NS" workflow_steps tasks; do
  n=$(( $(count_of "$t" "$v1") - $(count_of "$t" "$v0") ))
  [ "$n" -ge 1 ] && ok "$t vacuumed under load ($n times)" || fail "$t vacuumed under load ($n times)"
done
is "$(vacuumed_since "$t_load")" 4 "all four have a last_vacuum since the load began"
# The daemon's own account: its debug lines and /metrics.
dt_log d1 | grep 'vacuum: vacuumed' | sed -E 's/.* in ([0-9]+) ms$/\1/' >"$DT_DIR/vacuum_ms"
runs=$(wc -l <"$DT_DIR/vacuum_ms")
echo "# VACUUM statements: $runs; ms each: $(sort -n "$DT_DIR/vacuum_ms" | awk '{ a[NR] = $1; s += $1 } END {
  if (NR) printf "median %d, max %d, total %d", a[int((NR + 1) / 2)], a[NR], s }')"
dt_log d1 | grep 'vacuum: vacuumed' | head -n 3 | sed 's/^/#   /'
port=$(dt_http_port d1)
metric=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "tasker_vacuum_runs_total" { print $2 }')
[ -n "$metric" ] && [ "$metric" -ge 1 ] && [ "$metric" -eq "$runs" ] && ok "/metrics: tasker_vacuum_runs_total $metric" ||
  fail "/metrics: tasker_vacuum_runs_total '$metric' (log: $runs)"
is "$(dt_log d1 | grep -c 'vacuum:.*failed\|may not VACUUM')" 0 "no vacuum failure or privilege warning logged"
dt_check_invariants "$url" "$NS" "$TASKS" "$(dt_expected_steps "$TASKS")"

# ---- 3. idle again ----------------------------------------------------------------------------------
sleep 4
is "$(vacuums)" "$v1" "idle again: no more VACUUM (4 s)"
dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"

# ---- 4. a role that does not own the tables -----------------------------------------------------------
psql "$url" -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL || fail "a role that may use but not own the tables"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$OTHER_ROLE') THEN CREATE ROLE $OTHER_ROLE LOGIN; END IF;
END \$\$;
GRANT USAGE ON SCHEMA tasker, pgmq TO $OTHER_ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tasker, pgmq TO $OTHER_ROLE;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA tasker, pgmq TO $OTHER_ROLE;
SQL
other_url=$(sed -E "s|//[^@/]*@|//$OTHER_ROLE@|" <<<"$url")
DT_LOG_LEVEL=debug dt_conf d2 "$other_url" >/dev/null
v2=$(vacuums)
t2=$(now_ms)
dt_start_daemon d2 "$other_url"
dt_wait_ready d2 20 && ok "daemon d2 ready as $OTHER_ROLE" || fail "daemon d2 ready as $OTHER_ROLE"
dt_create "$url" "$NS" 20 other >/dev/null
dt_wait_done "$url" 30 && ok "d2 orchestrates 20 more tasks" || fail "d2 orchestrates 20 more tasks ($(dt_states "$url"))"
dt_wait_log d2 'may not VACUUM' 5
sleep 2
is "$(dt_log d2 | grep -c 'may not VACUUM')" 1 "d2 logs exactly one warning: $(dt_log d2 | grep -m 1 'may not VACUUM' | sed 's/^[^ ]* //')"
is "$(dt_log d2 | grep -c 'vacuum: vacuumed')" 0 "d2 runs no VACUUM"
is "$(vacuums)" "$v2" "… and the vacuum counts did not move"
dt_stop d2 TERM 15
is "$DT_RC" 0 "daemon d2: SIGTERM → exit 0"
dt_stop w1 TERM 15
dt_stop w2 TERM 15
dt_finish
