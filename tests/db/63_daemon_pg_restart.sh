#!/usr/bin/env bash
# 63_daemon_pg_restart.sh — PostgreSQL stopped for several seconds in the middle of a run and
# started again (scripts/pg-sandbox stop/start): the daemon never exits, reconnects (pool and
# LISTEN), and every task completes; prints how long recovery took. Then a daemon started while
# PostgreSQL is down waits for it (no exit, no READY) and becomes ready once it is up.
# The server it stops is its own (own_pg_dir), not the harness's, so the scripts running beside it
# are not disturbed and it need not run alone.
#
# pg-sandbox restarts the cluster on its old port unless another process took that port while it
# was down (e.g. another sandbox starting at that moment): then the URL changes and no client can
# follow it. This test notices that, says so, skips the reconnect checks, and restarts the
# daemon and workers on the new URL so the run still completes.
# make-check: long 60
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=pgr
TASKS=300
DOWN_SECS=${PGR_DOWN_SECS:-4}
STEPS=$(dt_expected_steps "$TASKS")

# The server this test stops and starts: its own. Stopped (after the daemons) on exit.
PGD=$(own_pg_dir 63)
trap 'dt_cleanup; own_pg_forget "$PGD"' EXIT
line=$(scripts/pg-sandbox start "$PGD") || { fail "scripts/pg-sandbox start $PGD"; finish; exit 1; }
SERVER_URL=${line##*DATABASE_URL=}
url=$(fresh_db tasker_pgr) || { fail "fresh database tasker_pgr"; finish; exit 1; }
dt_register "$url" "$NS" sleep || { fail "register the templates"; finish; exit 1; }
port_before=$(cat "$PGD/port")

# The daemon runs with a systemd watchdog (bin/tests/notify_sink as the notification socket); the
# longest gap between its pings across the outage is printed (60_daemon_watchdog_outage.sh
# tests it).
WATCHDOG_MS=1000
"$BIN/tests/notify_sink" "$DT_DIR/notify.sock" >"$DT_DIR/notify.log" 2>&1 &
DT_PID[sink]=$!
for n in $(seq 100); do [ -S "$DT_DIR/notify.sock" ] && break; sleep 0.02; done
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/notify.sock WATCHDOG_USEC=$((WATCHDOG_MS * 1000))" dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"
# The tasks first, the workers after: created while the workers ran, on a loaded machine the run
# was over before the creating was, and the outage came after the end.
for c in 0 1 2; do dt_create "$url" "$NS" $((TASKS / 3)) "pgr-$c" >/dev/null; done
# Leases longer than the outage plus the workers' reconnect backoff (so a result held through
# the outage is still accepted), short enough that a claim lost with the server is retried soon.
# 30 steps of 100 ms at a time: the run lasts 9 s at least, so the looks below, slow on a loaded
# machine, see it early.
for i in 1 2 3; do dt_start_worker "w$i" "$url" "$NS" --concurrency 10 --batch 10 --poll-ms 100 --lease-secs 15; done

# The outage comes once a tenth of the steps are complete, so that most are left even when the
# looks are slow. (Counting complete tasks instead let it come after the end: the queue hands out
# steps oldest first, so the tasks advance level by level and complete together near the end;
# their count went from 87 to 300 between two looks.)
deadline=$(( $(now_ms) + 60000 ))
while [ "$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_steps WHERE state = 'complete'")" -lt $((STEPS / 10)) ] &&
      [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
done_at_stop=$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state = 'complete'")
steps_at_stop=$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_steps WHERE state = 'complete'")

t_stop=$(now_ms)
scripts/pg-sandbox stop "$PGD" && ok "PostgreSQL stopped ($steps_at_stop of $STEPS steps, $done_at_stop of $TASKS tasks complete)" ||
  fail "scripts/pg-sandbox stop $PGD"
t_stopped=$(now_ms)
# Else the reconnect would be tested on a finished run.
[ "$done_at_stop" -lt "$TASKS" ] && ok "… in the middle of the run: tasks were left to complete after the outage" ||
  fail "… in the middle of the run (every task was complete before the outage)"
# While it is down the daemon must stay up: look every 100 ms.
died=""
deadline=$(( t_stopped + DOWN_SECS * 1000 ))
while [ "$(now_ms)" -lt "$deadline" ]; do
  dt_alive d1 || { died=yes; break; }
  sleep 0.1
done
[ -z "$died" ] && ok "daemon still running after ${DOWN_SECS} s without PostgreSQL" ||
  fail "daemon exited while PostgreSQL was down"
dt_log d1 | grep -E 'database unreachable|connection lost' >/dev/null && ok "daemon logged the lost database" ||
  fail "daemon logged the lost database"
dt_log_skip d1   # what follows must come after the server is back

line=$(scripts/pg-sandbox start "$PGD") || { fail "scripts/pg-sandbox start $PGD"; finish; exit 1; }
t_start=$(now_ms)
SERVER_URL=${line##*DATABASE_URL=}
port_after=$(cat "$PGD/port")
new_url=$(db_url tasker_pgr)

if [ "$port_after" = "$port_before" ]; then
  ok "PostgreSQL back on the same port $port_after after $(secs_between "$t_stop" "$t_start") s"
  dt_wait_log d1 'database connection established' 20 && ok "daemon: pool reconnected" || fail "daemon: pool reconnected within 20 s"
  t_pool=$(dt_log_time d1 'database connection established')
  dt_wait_log d1 'listening on pgmq_message_ready again' 20 && ok "daemon: LISTEN re-established" ||
    fail "daemon: LISTEN re-established within 20 s"
else
  echo "# PostgreSQL came back on port $port_after, not $port_before: another process took the port while it was down."
  echo "# No client can follow a changed URL; restarting the daemon and workers on $new_url."
  skip "pool reconnected: the sandbox's port changed ($port_before → $port_after)"
  skip "LISTEN re-established: the sandbox's port changed"
  # They cannot drain without the server: a second SIGTERM makes each exit at once.
  for p in d1 w1 w2 w3; do kill -TERM "${DT_PID[$p]}"; done
  sleep 0.5
  for p in d1 w1 w2 w3; do kill -TERM "${DT_PID[$p]}" 2>/dev/null; dt_wait_exit "$p" 10; done
  url=$new_url
  dt_conf d1 "$url" >/dev/null
  dt_start_daemon d1 "$url"
  for i in 1 2 3; do dt_start_worker "w$i" "$url" "$NS" --concurrency 10 --batch 10 --poll-ms 100 --lease-secs 15; done
  t_pool=$(now_ms)
fi

if dt_wait_done "$url" 90; then ok "every task terminal within 90 s of the restart"; else fail "every task terminal within 90 s of the restart ($(dt_states "$url"))"; fi
t_done=$(now_ms)
dt_alive d1 && ok "daemon still running at the end" || fail "daemon still running at the end"
for w in w1 w2 w3; do dt_alive "$w" || fail "worker $w still running at the end"; done

dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS" retries-allowed
retried=$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_steps WHERE attempts > 1")
echo "# steps that needed a second attempt (claim or hand-back lost with the server, lease expired): $retried"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_steps WHERE attempts > max_attempts")" 0 \
  "no step ran more often than its max_attempts"

first=$(dt_first_transition_after "$url" "$t_start" complete)
last=$(dt_last_task_completion "$url")
echo "# PostgreSQL down $(secs_between "$t_stop" "$t_start") s (stop took $(secs_between "$t_stop" "$t_stopped") s);" \
     "server start → pool up $(secs_between "$t_start" "${t_pool:-$t_start}") s;" \
     "→ first completion processed $(secs_between "$t_start" "${first:-$t_start}") s;" \
     "→ all $TASKS tasks complete $(secs_between "$t_start" "${last:-$t_done}") s"

# Watchdog pings across the outage, for information: 60_daemon_watchdog_outage.sh tests them.
gaps=$(awk -v a="$t_stop" -v b="$t_done" '$3 == "WATCHDOG=1" { if (p && $1 >= a - 1000 && $1 <= b) { g = $1 - p; if (g > m) m = g } p = $1 }
                                          END { print m + 0 }' "$DT_DIR/notify.log")
echo "# watchdog (WATCHDOG_USEC = ${WATCHDOG_MS} ms, pings every $((WATCHDOG_MS / 2)) ms): longest gap between pings across the outage: $gaps ms"
grep -E 'STATUS=.*db DOWN' "$DT_DIR/notify.log" | head -n 1 | cut -d' ' -f3- | sed 's/^/# status during the outage: /'

dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"

# ---- 2. the daemon started while PostgreSQL is down (boot order) -----------------------------
port_before=$(cat "$PGD/port")
scripts/pg-sandbox stop "$PGD" || fail "scripts/pg-sandbox stop $PGD (2)"
DT_DAEMON_ENV='' dt_start_daemon d1 "$url"
sleep 2
dt_alive d1 && ok "daemon started without a database: still running after 2 s" || fail "daemon started without a database: still running"
dt_log d1 | grep 'database not reachable at start' >/dev/null && ok "… it said the database is not reachable yet" ||
  fail "… it said the database is not reachable yet"
dt_log d1 | grep 'ready: pool and LISTEN' >/dev/null && fail "… and is not ready" || ok "… and is not ready"
line=$(scripts/pg-sandbox start "$PGD") || { fail "scripts/pg-sandbox start $PGD (2)"; finish; exit 1; }
t_start=$(now_ms)
SERVER_URL=${line##*DATABASE_URL=}
if [ "$(cat "$PGD/port")" = "$port_before" ]; then
  dt_wait_ready d1 20 && ok "ready once PostgreSQL is up" || fail "ready once PostgreSQL is up (within 20 s)"
  t_ready=$(dt_log_time d1 'ready: pool and LISTEN')
  echo "# server start → daemon ready $(secs_between "$t_start" "${t_ready:-$t_start}") s"
  dt_create "$url" "$NS" 20 late >/dev/null
  dt_wait_done "$url" 30 && ok "… and runs new tasks" || fail "… and runs new tasks ($(dt_states "$url"))"
else
  skip "ready once PostgreSQL is up: the sandbox's port changed on restart, the daemon cannot follow"
  skip "… and runs new tasks: the sandbox's port changed"
fi
dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
for w in w1 w2 w3; do dt_stop "$w" TERM 15; done
dt_finish
