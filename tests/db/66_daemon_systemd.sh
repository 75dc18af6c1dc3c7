#!/usr/bin/env bash
# 66_daemon_systemd.sh — systemd integration, observed on a notification socket of our own
# (bin/tests/notify_sink): READY=1 only once the pool and LISTEN are up (and never while the
# database is unreachable), STATUS= lines, WATCHDOG=1 pings every WATCHDOG_USEC/2 (WATCHDOG_PID
# unset or the daemon's own pid; none when it names another process), SIGHUP → RELOADING=1 then READY=1 with reloadable keys
# applied and restart-only ones logged, SIGTERM → STOPPING=1 and exit 0; a drain stuck on a
# query: a second SIGTERM exits at once, otherwise shutdown_timeout_secs ends it; and
# --check-config on bad files prints file:line: message and exits non-zero; an unmigrated database
# or one missing a function makes the daemon exit 1 without READY.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

url=$(fresh_db tasker_sd) || { fail "fresh database tasker_sd"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" sd noop || { fail "register the templates"; finish; exit 1; }
SINK="$BIN/tests/notify_sink"
[ -x "$SINK" ] || { fail "$SINK is built (make test-tools)"; finish; exit 1; }

# sink_start NAME: a notification socket $DT_DIR/NAME.sock, its datagrams in $DT_DIR/NAME.notify.
sink_start() {
  "$SINK" "$DT_DIR/$1.sock" >"$DT_DIR/$1.notify" 2>&1 &
  DT_PID[sink_$1]=$!
  local n
  for n in $(seq 100); do [ -S "$DT_DIR/$1.sock" ] && return 0; sleep 0.02; done
  return 1
}
# notes NAME: the assignments received so far, without timestamp and pid.
notes() { awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' "$DT_DIR/$1.notify"; }
# note_count NAME REGEX
note_count() { notes "$1" | grep -Ec "$2"; }
# wait_note NAME REGEX SECS [MIN_COUNT]
wait_note() {
  local deadline=$(( $(now_ms) + $3 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(note_count "$1" "$2")" -ge "${4:-1}" ] && return 0
    sleep 0.05
  done
  return 1
}
# note_time NAME REGEX [N]: epoch ms of the N-th (default first) assignment matching REGEX.
note_time() { awk -v re="$2" -v n="${3:-1}" '{ l = $0; sub(/^[0-9]+ [0-9]+ /, "", l) } l ~ re && ++k == n { print $1; exit }' "$DT_DIR/$1.notify"; }

# ---- 1. READY, STATUS, WATCHDOG, RELOADING, STOPPING -----------------------------------------
sink_start a || fail "notification socket a"
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/a.sock WATCHDOG_USEC=1000000" dt_start_daemon d1 "$url"
daemon_pid=${DT_PID[d1]}
wait_note a '^READY=1$' 20 && ok "READY=1 received" || fail "READY=1 received within 20 s"
t_ready=$(note_time a '^READY=1$')
t_pool=$(dt_log_time d1 'database connection established')
t_listen=$(dt_log_time d1 'listening on pgmq_message_ready')
[ -n "$t_pool" ] && [ -n "$t_listen" ] && [ "$t_ready" -ge "$t_pool" ] && [ "$t_ready" -ge "$t_listen" ] &&
  ok "READY=1 came after the pool and LISTEN connections were up" ||
  fail "READY=1 ($t_ready) after pool up (${t_pool:-never}) and LISTEN (${t_listen:-never})"
is "$(note_count a '^READY=1$')" 1 "exactly one READY=1 at start"
ready_status=$(awk -v t="$t_ready" '$1 == t && $3 ~ /^STATUS=/' "$DT_DIR/a.notify" | head -n 1 | cut -d' ' -f3-)
echo "# READY's status: $ready_status"
[[ "$ready_status" == STATUS=running*"db up"*"listen up"* ]] && ok "READY=1 carries a STATUS= saying db up, listen up" ||
  fail "READY=1 carries a STATUS= saying db up, listen up (got '$ready_status')"
is "$(awk -v p="$daemon_pid" '$2 != p' "$DT_DIR/a.notify" | wc -l)" 0 "every notification came from the daemon's pid"

# Some work, so STATUS has something to count.
dt_start_worker w1 "$url" sd --poll-ms 100
dt_create "$url" sd 20 sd >/dev/null
dt_wait_done "$url" 30 || fail "20 tasks complete"
# Watchdog: pings every 500 ms; periodic STATUS every 5 s.
wait_note a '^STATUS=running' 8 2 && ok "periodic STATUS= lines" || fail "periodic STATUS= lines within 8 s"
echo "# latest STATUS: $(notes a | grep '^STATUS=' | tail -n 1)"
notes a | grep '^STATUS=' | tail -n 1 | grep -Eq 'steps completed [1-9][0-9]*' &&
  ok "STATUS counts the steps completed" || fail "STATUS counts the steps completed"
pings=$(note_count a '^WATCHDOG=1$')
span=$(( $(note_time a '^WATCHDOG=1$' "$pings") - $(note_time a '^WATCHDOG=1$') ))
echo "# $pings WATCHDOG=1 pings over $span ms (WATCHDOG_USEC=1000000: one every ~500 ms expected)"
[ "$pings" -ge 5 ] && [ "$(( span / (pings - 1) ))" -le 700 ] && ok "WATCHDOG=1 pings about every 500 ms" ||
  fail "WATCHDOG=1 pings about every 500 ms ($pings pings over $span ms)"

# SIGHUP: a reloadable key (log.level → debug) and a restart-only one (max_connections 6 → 7).
DT_LOG_LEVEL=debug DT_MAX_CONN=7 dt_conf d1 "$url" >/dev/null
dt_log_skip d1
t_hup=$(now_ms)
kill -HUP "$daemon_pid"
wait_note a '^RELOADING=1$' 5 && ok "SIGHUP → RELOADING=1" || fail "SIGHUP → RELOADING=1"
wait_note a '^READY=1$' 5 2 && ok "… then READY=1 again" || fail "… then READY=1 again"
t_reloading=$(note_time a '^RELOADING=1$')
t_ready2=$(note_time a '^READY=1$' 2)
[ -n "$t_reloading" ] && [ -n "$t_ready2" ] && [ "$t_reloading" -le "$t_ready2" ] && [ "$t_reloading" -ge "$t_hup" ] &&
  ok "RELOADING=1 before READY=1" || fail "RELOADING=1 ($t_reloading) before READY=1 (${t_ready2:-none})"
note_count a '^MONOTONIC_USEC=[0-9]+$' | grep -qv '^0$' && ok "RELOADING=1 comes with MONOTONIC_USEC=" ||
  fail "RELOADING=1 comes with MONOTONIC_USEC="
dt_wait_log d1 'need a restart.*max_connections' 5 && ok "the changed restart-only key is logged as needing a restart" ||
  fail "the changed restart-only key is logged as needing a restart"
dt_log d1 | grep -E 'need a restart' | sed 's/^/#   /'
dt_wait_log d1 ' debug ' 5 && ok "the reloadable key applied: debug lines after the reload" ||
  fail "the reloadable key applied: debug lines after the reload"

# A bad file on SIGHUP: refused, the running configuration kept, READY=1 again.
echo 'log { level = "loud" }' >"$DT_DIR/d1.conf"
kill -HUP "$daemon_pid"
wait_note a '^READY=1$' 5 3 && ok "SIGHUP with a bad file: READY=1 again" || fail "SIGHUP with a bad file: READY=1 again"
dt_wait_log d1 'reload refused' 5 && ok "… the reload refused and logged" || fail "… the reload refused and logged"
dt_alive d1 && ok "… the daemon keeps running" || fail "… the daemon keeps running"

dt_stop w1 TERM 15
t_term=$(now_ms)
dt_stop d1 TERM 15
is "$DT_RC" 0 "SIGTERM → exit 0"
wait_note a '^STOPPING=1$' 2 && ok "STOPPING=1 sent" || fail "STOPPING=1 sent"
echo "# SIGTERM → exit in $(secs_between "$t_term" "$(now_ms)") s"
kill -TERM "${DT_PID[sink_a]}"; dt_wait_exit sink_a 5

# ---- 2. no READY while the database is unreachable; WATCHDOG_PID of another process ---------------
sink_start b || fail "notification socket b"
closed_port=$(( $(cat "$DT_SANDBOX/port") + 1000 ))
dt_conf d2 "postgresql://nobody@127.0.0.1:$closed_port/none?connect_timeout=2" >/dev/null
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/b.sock WATCHDOG_USEC=200000 WATCHDOG_PID=1" \
  dt_start_daemon d2 "postgresql://nobody@127.0.0.1:$closed_port/none?connect_timeout=2"
sleep 3
dt_alive d2 && ok "daemon without a database: still running after 3 s" || fail "daemon without a database: still running after 3 s"
is "$(note_count b '^READY=1$')" 0 "… and no READY=1"
is "$(note_count b '^WATCHDOG=1$')" 0 "… and no WATCHDOG=1 (WATCHDOG_PID is another process)"
dt_stop d2 TERM 10
is "$DT_RC" 0 "… SIGTERM → exit 0"
wait_note b '^STOPPING=1$' 2 && ok "… STOPPING=1 sent" || fail "… STOPPING=1 sent"
kill -TERM "${DT_PID[sink_b]}"; dt_wait_exit sink_b 5

# WATCHDOG_PID naming the daemon itself (as systemd sets it): pings. sh exports its own pid and
# execs the daemon, which keeps that pid.
sink_start f || fail "notification socket f"
dt_conf d7 "$url" >/dev/null
dt_log_mark d7
dt_spawn d7 "${DT_LOG[d7]}" sh -c 'export WATCHDOG_PID=$$; exec "$@"' sh \
  env DATABASE_URL="$url" NOTIFY_SOCKET="$DT_DIR/f.sock" WATCHDOG_USEC=400000 "$BIN/tasker-orchestratord" -c "$DT_DIR/d7.conf"
wait_note f '^WATCHDOG=1$' 5 4 && ok "WATCHDOG_PID = the daemon's pid: WATCHDOG=1 pings" ||
  fail "WATCHDOG_PID = the daemon's pid: WATCHDOG=1 pings (got $(note_count f '^WATCHDOG=1$'))"
is "$(awk -v p="${DT_PID[d7]}" '$2 != p' "$DT_DIR/f.notify" | wc -l)" 0 "… all from that pid"
dt_stop d7 TERM 10
is "$DT_RC" 0 "… SIGTERM → exit 0"
kill -TERM "${DT_PID[sink_f]}"; dt_wait_exit sink_f 5

# ---- 3. a drain stuck on a query: second SIGTERM, and shutdown_timeout_secs ---------------------
# A transaction holding tasker.task_namespaces exclusively blocks the daemon's namespace refresh
# and every process_completions (check_namespace reads that table).
lock_start() {
  psql "$url" -X -q -c "BEGIN" -c "LOCK TABLE tasker.task_namespaces IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(60)" \
    >/dev/null 2>&1 &
  DT_PID[locker]=$!
}
lock_stop() { kill -TERM "${DT_PID[locker]}" 2>/dev/null; dt_wait_exit locker 5; q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid() AND datname = current_database()" >/dev/null; }
# blocked: how many of the daemon's queries wait for a lock.
blocked() { q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord' AND wait_event_type = 'Lock'"; }

sink_start c || fail "notification socket c"
DT_SHUTDOWN_SECS=30 dt_conf d3 "$url" >/dev/null
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/c.sock" dt_start_daemon d3 "$url"
dt_wait_ready d3 20 || fail "daemon d3 ready"
lock_start
deadline=$(( $(now_ms) + 10000 ))
until [ "$(blocked)" -ge 1 ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
[ "$(blocked)" -ge 1 ] && ok "a query of the daemon is stuck on the lock" || fail "a query of the daemon is stuck on the lock"
kill -TERM "${DT_PID[d3]}"
wait_note c '^STOPPING=1$' 3 && ok "first SIGTERM: STOPPING=1, draining" || fail "first SIGTERM: STOPPING=1"
sleep 1.5
dt_alive d3 && ok "… still draining 1.5 s later (shutdown_timeout_secs = 30)" || fail "… still draining 1.5 s later"
t_second=$(now_ms)
dt_stop d3 TERM 5
t_exit=$(now_ms)
echo "# second SIGTERM → exit in $(secs_between "$t_second" "$t_exit") s, status $DT_RC"
[ "$DT_RC" != timeout ] && [ $(( t_exit - t_second )) -lt 1000 ] && ok "second SIGTERM during the drain exits at once" ||
  fail "second SIGTERM during the drain exits at once (status $DT_RC after $(( t_exit - t_second )) ms)"
dt_log d3 | grep 'second SIGTERM: exiting now' >/dev/null && ok "… and says so in the log" || fail "… and says so in the log"
lock_stop
kill -TERM "${DT_PID[sink_c]}"; dt_wait_exit sink_c 5

DT_SHUTDOWN_SECS=2 dt_conf d4 "$url" >/dev/null
dt_start_daemon d4 "$url"
dt_wait_ready d4 20 || fail "daemon d4 ready"
lock_start
deadline=$(( $(now_ms) + 10000 ))
until [ "$(blocked)" -ge 1 ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
t_term=$(now_ms)
dt_stop d4 TERM 10
t_exit=$(now_ms)
echo "# stuck drain with shutdown_timeout_secs = 2: exit after $(secs_between "$t_term" "$t_exit") s, status $DT_RC"
[ "$DT_RC" != timeout ] && [ $(( t_exit - t_term )) -ge 1900 ] && [ $(( t_exit - t_term )) -lt 4000 ] &&
  ok "a stuck drain ends after shutdown_timeout_secs" || fail "a stuck drain ends after shutdown_timeout_secs"
dt_log d4 | grep 'did not finish within 2 s' >/dev/null && ok "… with a warning in the log" || fail "… with a warning in the log"
lock_stop

# ---- 4. a database that is not ours: exit 1 at once, no READY ------------------------------------
sink_start e || fail "notification socket e"
raw=$(empty_db tasker_sd_raw)
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/e.sock" dt_start_daemon d5 "$raw"
dt_wait_exit d5 10
is "$DT_RC" 1 "daemon on an unmigrated database: exit 1"
dt_log d5 | grep 'not migrated for this build' >/dev/null && ok "… saying it is not migrated" || fail "… saying it is not migrated"
dt_log d5 | grep -E 'not migrated' | head -n 1 | sed 's/^/#   /'
# Migrated, but a function the daemon calls is gone: the prepare at connect catches it.
odd=$(fresh_db tasker_sd_odd) || fail "fresh database tasker_sd_odd"
psql_at "$odd" "DROP FUNCTION tasker.enqueue_ready_steps(integer)" >/dev/null
DT_DAEMON_ENV="NOTIFY_SOCKET=$DT_DIR/e.sock" dt_start_daemon d6 "$odd"
dt_wait_exit d6 10
is "$DT_RC" 1 "daemon on a database missing a function it calls: exit 1"
dt_log d6 | grep 'schema does not match this build' >/dev/null && ok "… naming the schema mismatch" || fail "… naming the schema mismatch"
dt_log d6 | grep -E 'cannot prepare' | head -n 1 | sed 's/^/#   /'
is "$(note_count e '^READY=1$')" 0 "neither sent READY=1"
kill -TERM "${DT_PID[sink_e]}"; dt_wait_exit sink_e 5

# ---- 5. --check-config -----------------------------------------------------------------------
check() { "$BIN/tasker-orchestratord" --check-config -c "$1" 2>&1; }
good="$DT_DIR/good.conf"
dt_conf good "$url" >/dev/null
out=$(check "$good"); rc=$?
is "$rc" 0 "--check-config on a good file: exit 0"
[[ "$out" == "configuration OK"* ]] && ok "… prints 'configuration OK'" || fail "… prints 'configuration OK' (got '$out')"

# expect_bad NAME LINE TEXT: the file with TEXT fails with NAME:LINE: message.
expect_bad() {
  local f="$DT_DIR/$1.conf" out rc
  printf '%s\n' "$3" >"$f"
  out=$(check "$f"); rc=$?
  echo "# $1: $out"
  [ "$rc" -ne 0 ] && [[ "$out" =~ ^"$f":$2:\ [^[:space:]] ]] && ok "--check-config, $1: exit $rc, '$f:$2: message'" ||
    fail "--check-config, $1: want non-zero and '$f:$2: message' (exit $rc, got '$out')"
}
expect_bad unknown_key 3 $'database {\n    pool {\n        max_conections = 10\n    }\n}'
expect_bad out_of_range 4 $'# comment\ndatabase {\n    pool {\n        max_connections = 0\n    }\n}'
expect_bad wrong_type 2 $'log {\n    level = 5\n}'
expect_bad bad_enum 2 $'log {\n    level = "loud"\n}'
expect_bad syntax 3 $'orchestration {\n    poller {\n        interval_ms = = 3\n    }\n}'
out=$(check "$DT_DIR/does-not-exist.conf"); rc=$?
[ "$rc" -ne 0 ] && [ -n "$out" ] && ok "--check-config on a missing file: exit $rc with a message" ||
  fail "--check-config on a missing file: non-zero with a message (exit $rc, '$out')"
echo "# missing file: $out"
dt_finish
