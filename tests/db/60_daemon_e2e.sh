#!/usr/bin/env bash
# 60_daemon_e2e.sh — end to end with real processes: one tasker-orchestratord and three
# tasker-workers run 1,000 tasks of mixed shapes (linear a → b → c → d, diamond, 1 → 50 → 1) to
# completion, created in batches while they run. Prints tasks, steps, wall time and steps/s.
# E2E_TASKS overrides the task count (for a longer run by hand).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=e2e
TASKS=${E2E_TASKS:-1000}
CHUNK=100
WORKERS=3
STEPS=$(dt_expected_steps "$TASKS")

url=$(fresh_db tasker_e2e) || { fail "fresh database tasker_e2e"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready (pool and LISTEN up)" || fail "daemon ready within 20 s"
for i in $(seq "$WORKERS"); do
  dt_start_worker "w$i" "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 200
done

t0=$(now_ms)
created=0
while [ "$created" -lt "$TASKS" ]; do
  n=$(( TASKS - created < CHUNK ? TASKS - created : CHUNK ))
  got=$(dt_create "$url" "$NS" "$n" "run-$created")
  created=$(( created + ${got:-0} ))
  [ "${got:-0}" = "$n" ] || { fail "create_task batch at $created: created ${got:-0} of $n"; break; }
done
t_created=$(now_ms)
is "$created" "$TASKS" "created $TASKS tasks in batches of $CHUNK while the daemon and workers ran"

if dt_wait_done "$url" 120; then
  ok "every task terminal within 120 s"
else
  fail "every task terminal within 120 s ($(dt_states "$url"))"
fi
t1=$(now_ms)

cpu_d=$(dt_cpu_ms d1)
cpu_w=0; for i in $(seq "$WORKERS"); do cpu_w=$(( cpu_w + $(dt_cpu_ms "w$i" || echo 0) )); done
dt_alive d1 && ok "the daemon is still running" || fail "the daemon is still running"
for i in $(seq "$WORKERS"); do
  dt_alive "w$i" || fail "worker w$i is still running"
done

dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.rejected_messages")" 0 "no rejected messages"
is "$(psql_at "$url" "SELECT count(DISTINCT processor) FILTER (WHERE processor = 'd1') FROM tasker.task_transitions
                      WHERE to_state = 'complete'")" 1 "the daemon (processor d1) completed the tasks"

# Stop: SIGTERM drains and exits 0, workers likewise.
dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
grep -q 'drained; exiting' "${DT_LOG[d1]}" && ok "daemon logged its drain" || fail "daemon logged its drain"
for i in $(seq "$WORKERS"); do
  dt_stop "w$i" TERM 15
  is "$DT_RC" 0 "worker w$i: SIGTERM → exit 0"
done
is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[d1]}")" 0 "no error lines in the daemon's log"

wall=$(secs_between "$t0" "$t1")
db_wall=$(psql_at "$url" "SELECT round(extract(epoch FROM (SELECT max(created_at) FROM tasker.task_transitions WHERE to_state = 'complete')
                                                       - (SELECT min(created_at) FROM tasker.tasks))::numeric, 3)")
echo "# e2e: $TASKS tasks, $STEPS steps; created in $(secs_between "$t0" "$t_created") s;" \
     "wall $wall s (first create → all complete seen), $db_wall s in the database (first task created → last task complete)"
echo "# e2e: $(awk -v s="$STEPS" -v w="$wall" 'BEGIN { printf "%.0f", s / w }') steps/s," \
     "$(awk -v s="$STEPS" -v w="$db_wall" 'BEGIN { printf "%.0f", s / w }') steps/s by the database's clock" \
     "(1 daemon, $WORKERS workers × concurrency 20, batch 10)"
echo "# e2e: CPU used: daemon ${cpu_d:-?} ms ($(awk -v c="${cpu_d:-0}" -v s="$STEPS" 'BEGIN { printf "%.0f", c * 1000 / s }') µs/step)," \
     "workers ${cpu_w} ms together; the rest is PostgreSQL (2 cores)"
dt_finish
