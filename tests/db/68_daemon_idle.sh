#!/usr/bin/env bash
# 68_daemon_idle.sh — an idle daemon costs the database little, and its idle backoff delays nothing
# that is due. Daemons with the built-in orchestration defaults (no test overlay), two namespaces,
# nothing to do:
#   1. after it has settled, it commits at most 1 transaction per second (pg_stat_database of its
#      own database; only the daemon is connected to it meanwhile);
#   2. a completion message sent without a NOTIFY (a hand-back done by hand, with pgmq.send, which
#      does not notify) is still processed, within the completion poll's idle ceiling;
#   3. retries scheduled after the long idle period go out on time: one with a 100 ms backoff and
#      one with 2.5 s (the poller sleeps until it is due, not until its next idle poll);
#   4. the idle daemon runs no VACUUM (src/orchestratord/vacuum.c: only completions make tables due).
# Two daemons, each on a database of its own, started and left idle together: d1 (tasker_idle) is
# the idle one measured in 1 and 4; d2 (tasker_idle_b) does 2 and 3 during d1's measurement window
# (pg_stat_database counts per database, so d2's work does not reach d1's figure), which saves
# running them one after the other.
# make-check: exclusive (it counts the idle daemon's queries and timings)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=idle
DB=tasker_idle
SETTLE_SECS=${IDLE_SETTLE_SECS:-12}   # > 10 s: a backend flushes pending statistics within 10 s of going idle
WINDOW_SECS=${IDLE_WINDOW_SECS:-10}
CEILING_MS=10000                      # orchestration.completions.idle_interval_ms, default

# setup_db NAME: a fresh database with the templates of namespace idle (retry_twice, pair) and
# idle2 (dt_register's); prints its URL.
setup_db() {
  local u
  u=$(fresh_db "$1") || return 1
  psql "$u" -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || return 1
SELECT tasker.register_task_template('{"name": "retry_twice", "namespace_name": "idle", "version": "1.0.0",
  "steps": [{"name": "a", "handler": {"callable": "fail", "initialization": {"succeed_on_attempt": 2}},
             "retry": {"retryable": true, "max_attempts": 3, "backoff": "exponential", "backoff_base_ms": 100, "max_backoff_ms": 1000}},
            {"name": "b", "handler": {"callable": "fail", "initialization": {"succeed_on_attempt": 2}}, "dependencies": ["a"],
             "retry": {"retryable": true, "max_attempts": 3, "backoff": "exponential", "backoff_base_ms": 2500, "max_backoff_ms": 2500}}]}');
SELECT tasker.register_task_template('{"name": "pair", "namespace_name": "idle", "version": "1.0.0",
  "steps": [{"name": "x", "handler": {"callable": "noop"}},
            {"name": "y", "handler": {"callable": "noop"}, "dependencies": ["x"]}]}');
SQL
  dt_register "$u" idle2 || return 1
  echo "$u"
}
url=$(setup_db "$DB") || { fail "database $DB with the templates of two namespaces"; finish; exit 1; }
urlb=$(setup_db "${DB}_b") || { fail "database ${DB}_b with the templates of two namespaces"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
qb() { psql_at "$urlb" "$1"; }
q "ALTER DATABASE $DB SET track_functions = 'pl'" >/dev/null
# Nothing left for autovacuum to do in this database, so its workers add no transactions.
q "VACUUM ANALYZE" >/dev/null

# daemon_conf NAME URL: the daemon's configuration: connection settings only, every orchestration
# key at its default.
daemon_conf() {
  cat >"$DT_DIR/$1.conf" <<CONF
environment = "production"
database {
    url = "$2"
    pool {
        max_connections = 4
        min_connections = 2
    }
}
orchestration {
    processor_id = "$1"
}
web {
    enabled = false
}
log {
    level = "info"
}
CONF
}
daemon_conf d1 "$url"
daemon_conf d2 "$urlb"

# xacts: transactions committed or rolled back in our database so far, as the statistics show them.
xacts() { q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"; }
# calls: the daemon's calls of its periodic functions so far (track_functions = pl).
calls() {
  q "SELECT coalesce(string_agg(funcname || ' ' || calls, ', ' ORDER BY funcname), 'none') FROM pg_stat_user_functions
     WHERE schemaname = 'tasker' AND funcname IN ('enqueue_ready_steps', 'process_completions', 'detect_and_transition_stuck_tasks')"
}
dt_start_daemon d1 "$url"
dt_start_daemon d2 "$urlb"
for d in d1 d2; do
  dt_wait_ready "$d" 20 && ok "daemon $d ready" || fail "daemon $d ready within 20 s"
  dt_wait_log "$d" 'consuming tasker_completion_idle2' 10 || fail "daemon $d found both namespaces"
done

# ---- 1. the idle rate (d1): the window opens --------------------------------------------------------
sleep "$SETTLE_SECS"
others=$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
            AND pid <> pg_backend_pid() AND application_name NOT LIKE 'tasker-orchestratord%'")
is "$others" 0 "only the daemon is connected to $DB during the measurement"
calls0=$(calls)
x0=$(xacts); t0=$(now_ms)

# ---- 2. a completion without NOTIFY (d2, during d1's window) ----------------------------------------
# By now every namespace's completion poll is at its idle ceiling (from interval_ms 5 s to
# idle_interval_ms 10 s: there after one empty poll). Hand step x back by hand: the step's state
# change and a completion message sent with pgmq.send, which sends no NOTIFY.
task=$(qb "SELECT task_uuid FROM tasker.create_task('{\"name\": \"pair\", \"namespace\": \"$NS\", \"context\": {\"n\": 1}}')")
claimed=$(qb "SELECT workflow_step_uuid || ' ' || attempt FROM tasker.tasker_claim_and_execute_step('$NS', 1, 60, 'by-hand')")
read -r step attempt <<<"$claimed"
[ -n "$step" ] && ok "step x claimed by hand" || fail "step x claimed by hand"
psql "$urlb" -X -q -v ON_ERROR_STOP=1 -v step="$step" >/dev/null <<'SQL' || fail "hand step x back without a NOTIFY"
BEGIN;
SELECT tasker.audit_context('by-hand');
UPDATE tasker.workflow_steps SET state = 'enqueued_for_orchestration', results = '{"by_hand": true}',
       lease_expires_at = NULL, updated_at = now()
 WHERE workflow_step_uuid = :'step' AND state = 'in_progress';
SELECT pgmq.send(tasker.completion_queue(t.namespace), tasker.step_message(s.task_uuid, s.workflow_step_uuid, s.attempt_no, t.correlation_id)),
       tasker.archive_messages(tasker.dispatch_queue(t.namespace), ARRAY[s.dispatch_msg_id])
  FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid) WHERE s.workflow_step_uuid = :'step';
COMMIT;
SQL
t_sent=$(now_ms)
deadline=$((t_sent + CEILING_MS + 5000))
until [ "$(qb "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$step'")" = complete ] ||
      [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
t_done=$(now_ms)
state=$(qb "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = '$step'")
is "$state" complete "a completion sent without NOTIFY is processed (step x complete)"
took=$((t_done - t_sent))
echo "# completion without NOTIFY processed after $(secs_between "$t_sent" "$t_done") s (idle ceiling $((CEILING_MS / 1000)) s)"
[ "$took" -le $((CEILING_MS + 1500)) ] && ok "… within the completion poll's idle ceiling (${took} ms <= ${CEILING_MS} ms + 1.5 s)" ||
  fail "… within the completion poll's idle ceiling (${took} ms, want <= ${CEILING_MS} ms + 1.5 s)"
is "$(qb "SELECT state FROM tasker.workflow_steps WHERE task_uuid = '$task' AND name = 'y'")" enqueued "its child y was dispatched"

# ---- 3. retries after a long idle period -------------------------------------------------------------
dt_start_worker w1 "$urlb" "$NS" --concurrency 4 --batch 4 --poll-ms 100
dt_wait_log w1 'connected to the database' 10 || fail "worker connected"
dt_wait_done "$urlb" 10 && ok "task pair done (the worker ran y)" || fail "task pair done ($(dt_states "$urlb"))"
rtask=$(qb "SELECT task_uuid FROM tasker.create_task('{\"name\": \"retry_twice\", \"namespace\": \"$NS\", \"context\": {\"n\": 2}}')")
dt_wait_done "$urlb" 20 && ok "task retry_twice complete" || fail "task retry_twice complete ($(dt_states "$urlb"))"
# late STEP: ms from the step's move to waiting_for_retry to its retry's move to enqueued, and its backoff.
late() {
  qb "SELECT round(extract(epoch FROM e.created_at - w.created_at) * 1000)::bigint
       FROM tasker.workflow_steps s
       JOIN tasker.workflow_step_transitions w ON w.workflow_step_uuid = s.workflow_step_uuid AND w.to_state = 'waiting_for_retry'
       JOIN tasker.workflow_step_transitions e ON e.workflow_step_uuid = s.workflow_step_uuid AND e.to_state = 'enqueued' AND e.ordinal > w.ordinal
      WHERE s.task_uuid = '$rtask' AND s.name = '$1' ORDER BY e.ordinal LIMIT 1"
}
la=$(late a); lb=$(late b)
echo "# retry dispatched after: a ${la:-?} ms (backoff 100 ms ±15 %), b ${lb:-?} ms (backoff 2500 ms ±15 %)"
[ -n "$la" ] && [ "$la" -le 1000 ] && ok "a 100 ms retry goes out within 1 s after a long idle period (${la} ms)" ||
  fail "a 100 ms retry goes out within 1 s after a long idle period (${la:-none} ms)"
[ -n "$lb" ] && [ "$lb" -le 3450 ] && ok "a 2.5 s retry goes out on time, not at the next idle poll (${lb} ms <= 2875 + 575)" ||
  fail "a 2.5 s retry goes out on time (${lb:-none} ms, want <= 3450)"
is "$(qb "SELECT string_agg(name || ':' || attempt_no, ' ' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = '$rtask'")" \
  "a:2 b:2" "each step of retry_twice ran twice"

vacuumed=$(qb "SELECT coalesce(string_agg(relname, ' ' ORDER BY relname), 'none') FROM pg_stat_user_tables
              WHERE schemaname IN ('pgmq', 'tasker') AND last_vacuum >= to_timestamp($t_sent / 1000.0)")
echo "# d2 vacuumed since the completions began: $vacuumed"

# ---- 1. the idle rate (d1): the window closes -------------------------------------------------------
# At least WINDOW_SECS, longer when 2 and 3 took longer.
rest=$(( t0 + WINDOW_SECS * 1000 - $(now_ms) ))
[ "$rest" -le 0 ] || sleep "$(secs_between 0 "$rest")"
x1=$(xacts); t1=$(now_ms)
calls1=$(calls)
# The first snapshot is counted in the second: its query and its connection start-up (2 transactions).
n=$((x1 - x0 - 2))
rate=$(awk -v n="$n" -v ms="$((t1 - t0))" 'BEGIN { printf "%.2f", n * 1000 / ms }')
echo "# idle daemon: $n transactions in $(secs_between "$t0" "$t1") s = $rate/s (function calls before: $calls0; after: $calls1)"
awk -v r="$rate" 'BEGIN { exit !(r <= 1.0) }' && ok "an idle daemon commits at most 1 transaction/s ($rate/s)" ||
  fail "an idle daemon commits at most 1 transaction/s ($rate/s)"

# ---- 4. no VACUUM while idle (d1) ---------------------------------------------------------------------
is "$(q "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname IN ('pgmq', 'tasker')
         AND last_vacuum >= to_timestamp($t0 / 1000.0) AND last_vacuum < to_timestamp($t1 / 1000.0)")" 0 \
  "the idle daemon ran no VACUUM during the measurement"

dt_stop w1 TERM 15
for d in d1 d2; do
  dt_stop "$d" TERM 15
  is "$DT_RC" 0 "daemon $d: SIGTERM → exit 0"
done
dt_finish
