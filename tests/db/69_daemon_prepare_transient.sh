#!/usr/bin/env bash
# 69_daemon_prepare_transient.sh — a statement prepare that fails for a transient reason is not a
# schema mismatch. The pool prepares every statement on each new connection and exits the daemon
# (status 1, "the database schema does not match this build") when one does not prepare. That is
# right for a missing function, wrong for a prepare that was cancelled: while a table the
# statements name is locked (a migration, VACUUM FULL, an operator's LOCK), new connections wait
# in PREPARE, and
#   (1) with database.pool.statement_timeout_ms set (production sets 30000) the wait ends in
#       57014 "canceling statement due to statement timeout";
#   (2) an operator's pg_cancel_backend() on such a connection gives the same 57014.
# Either way the daemon must reconnect with backoff and carry on, not exit.
#
# Regression test. Before the fix both cases exited 1 with "cannot prepare statement namespaces
# (57014): … — the database schema does not match this build". The fix is in src/common/db_conn.c
# (dbc_prepare_done). Only SQLSTATE class 42 and 0A000 now mean "not our schema"; any other prepare
# error drops the connection, and the pool reconnects with backoff.
# make-check: exclusive (it times statement timeouts against a held lock)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=prep
url=$(fresh_db tasker_prep) || { fail "fresh database tasker_prep"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
dt_start_worker w1 "$url" "$NS" --poll-ms 100

# lock_for SECS: hold tasker.task_namespaces exclusively for SECS in the background.
lock_for() {
  hold_lock "$url" tasker.task_namespaces "$1" || return 1
  DT_PID[locker]=$HOLD_LOCK_PID
}
pool_pids() { q "SELECT pid FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord'"; }
# preparing: the daemon's connections waiting on the lock in the prepare of the namespaces statement.
preparing() { q "SELECT pid FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord' AND wait_event_type = 'Lock'
                 AND query = 'SELECT name FROM tasker.task_namespaces ORDER BY name'"; }
# still_works NAME TAG: the daemon is alive, and a new task completes.
still_works() {
  if dt_alive "$1"; then
    ok "$1: the daemon is still running"
  else
    dt_wait_exit "$1" 1
    fail "$1: the daemon is still running (it exited with status $DT_RC:)"
    dt_log "$1" | grep -E 'exiting: the database schema does not match' | sed 's/^/#   /'
    fail "$1: tasks created afterwards complete (no daemon left to run them)"
    return
  fi
  dt_create "$url" "$NS" 5 "$2" >/dev/null
  dt_wait_done "$url" 20 && ok "$1: tasks created afterwards complete" || fail "$1: tasks created afterwards complete ($(dt_states "$url"))"
}

# ---- 1. statement_timeout_ms ------------------------------------------------------------------
DT_STATEMENT_TIMEOUT_MS=500 dt_conf d1 "$url" >/dev/null
dt_start_daemon d1 "$url"
dt_wait_ready d1 20 || fail "d1 ready"
lock_for 3 || fail "lock taken"
# Make the pool reconnect while the table is locked.
q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord'" >/dev/null
# The case is only tested if a prepare really ran into the timeout (and not, say, past the lock).
# Then the lock may go: the daemon took the error by now (were it fatal, it would have exited).
dt_wait_log d1 'cannot prepare statement [a-z_]+ \(57014\): .*statement timeout' 3 &&
  ok "d1: a prepare on the locked table ended in the statement timeout (57014)" ||
  fail "d1: a prepare on the locked table ended in the statement timeout (no 57014 in the log)"
sleep 0.5
release_lock "$url" tasker.task_namespaces
dt_wait_exit locker 5
still_works d1 st
dt_stop d1 TERM 10

# ---- 2. pg_cancel_backend on a preparing connection --------------------------------------------
dt_start_daemon d2 "$url"
dt_wait_ready d2 20 || fail "d2 ready"
lock_for 4 || fail "lock taken"
q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tasker-orchestratord'" >/dev/null
deadline=$(( $(now_ms) + 3000 ))
until [ -n "$(preparing)" ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
pids=$(preparing)
[ -n "$pids" ] && ok "d2: new pool connections wait in PREPARE on the locked table" || fail "d2: new pool connections wait in PREPARE"
q "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE pid IN ($(echo $pids | tr ' ' ','))" >/dev/null
# A second for the daemon to take the cancel (were it fatal, it would exit); then the lock may go.
sleep 1
release_lock "$url" tasker.task_namespaces
dt_wait_exit locker 6
still_works d2 cancel
dt_stop d2 TERM 10
dt_stop w1 TERM 10
dt_finish
