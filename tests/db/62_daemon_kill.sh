#!/usr/bin/env bash
# 62_daemon_kill.sh — kill -9 of a daemon in the middle of a run, more tasks created while it is
# down, then a restart: no task lost or stuck (all complete, every step exactly once), and how long
# recovery took. (1) The only daemon: nothing is orchestrated while it is down; restart → first
# completion processed, restart → all tasks complete. (2) One of two daemons: the other carries on
# at once (kill → next completion processed), the restarted one joins in again.
# make-check: long 60
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS='kill'
TASKS_BEFORE=300
TASKS_DURING=100
DOWN_SECS=2

url=$(fresh_db tasker_kill) || { fail "fresh database tasker_kill"; finish; exit 1; }
# sleep (100 ms) steps: the run lasts a few seconds, so "the middle" is easy to hit.
dt_register "$url" "$NS" sleep || { fail "register the templates"; finish; exit 1; }
STEPS=$(( $(dt_expected_steps "$TASKS_BEFORE") + $(dt_expected_steps "$TASKS_DURING") ))
TASKS=$(( TASKS_BEFORE + TASKS_DURING ))

dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"
for i in 1 2 3; do dt_start_worker "w$i" "$url" "$NS" --concurrency 25 --batch 10 --poll-ms 100; done
for c in 0 1 2; do dt_create "$url" "$NS" $((TASKS_BEFORE / 3)) "before-$c" >/dev/null; done

# The middle of the run: a third of the tasks complete.
deadline=$(( $(now_ms) + 60000 ))
while [ "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state = 'complete'")" -lt $((TASKS_BEFORE / 3)) ] &&
      [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
done_at_kill=$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state = 'complete'")
t_kill=$(now_ms)
dt_kill9 d1
is "$DT_RC" 137 "daemon killed with SIGKILL mid-run ($done_at_kill of $TASKS_BEFORE tasks complete)"

# While it is down: workers go on, new tasks arrive (create_task dispatches their roots itself).
dt_create "$url" "$NS" "$TASKS_DURING" during >/dev/null
sleep "$DOWN_SECS"
# A process_completions that was running at the kill may still commit (its transaction started
# before t_kill); nothing may start after it.
is "$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_step_transitions
                      WHERE to_state = 'complete' AND created_at > to_timestamp($t_kill / 1000.0) + interval '200 ms'")" 0 \
  "no completion processed while the daemon was down (the kill really stopped orchestration)"
backlog=$(psql_at "$url" "SELECT count(*) FROM pgmq.q_tasker_completion_$NS")
waiting=$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_steps WHERE state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')")
echo "# down for ${DOWN_SECS} s: $backlog completion messages waiting, $waiting steps awaiting orchestration"
[ "$backlog" -gt 0 ] && ok "completions piled up while the daemon was down" || fail "completions piled up while the daemon was down"

t_restart=$(now_ms)
dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "restarted daemon ready" || fail "restarted daemon ready within 20 s"
t_ready=$(now_ms)
if dt_wait_done "$url" 90; then ok "every task terminal within 90 s of the restart"; else fail "every task terminal within 90 s of the restart ($(dt_states "$url"))"; fi
t_done=$(now_ms)

dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks_dlq")" 0 "nothing in the DLQ"

first=$(dt_first_transition_after "$url" "$t_restart" complete)
last=$(dt_last_task_completion "$url")
echo "# recovery: restart → ready $(secs_between "$t_restart" "$t_ready") s;" \
     "restart → first completion processed $(secs_between "$t_restart" "${first:-$t_restart}") s;" \
     "kill → first completion processed $(secs_between "$t_kill" "${first:-$t_kill}") s (${DOWN_SECS} s of it down on purpose);" \
     "restart → all $TASKS tasks complete $(secs_between "$t_restart" "${last:-$t_done}") s"
[ -n "$first" ] && [ $(( first - t_restart )) -lt 3000 ] && ok "first completion within 3 s of the restart" ||
  fail "first completion within 3 s of the restart (got ${first:-none})"

dt_stop d1 TERM 15
is "$DT_RC" 0 "restarted daemon: SIGTERM → exit 0"
for w in w1 w2 w3; do
  dt_stop "$w" TERM 15
  is "$DT_RC" 0 "worker $w: SIGTERM → exit 0 (it never noticed the daemon's death)"
done

# ---- 2. one of two daemons ----------------------------------------------------------------------
NS=kill2
url=$(fresh_db tasker_kill2) || { fail "fresh database tasker_kill2"; finish; exit 1; }
dt_register "$url" "$NS" sleep || { fail "register the templates"; finish; exit 1; }
dt_start_daemon da "$url"
dt_start_daemon db "$url"
dt_wait_ready da 20 && dt_wait_ready db 20 && ok "two daemons ready" || fail "two daemons ready within 20 s"
for i in 1 2 3; do dt_start_worker "x$i" "$url" "$NS" --concurrency 25 --batch 10 --poll-ms 100; done
for c in 0 1 2; do dt_create "$url" "$NS" $((TASKS_BEFORE / 3)) "before-$c" >/dev/null; done
deadline=$(( $(now_ms) + 60000 ))
while [ "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state = 'complete'")" -lt $((TASKS_BEFORE / 3)) ] &&
      [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
t_kill=$(now_ms)
dt_kill9 da
is "$DT_RC" 137 "daemon da killed with SIGKILL mid-run; db goes on"
dt_create "$url" "$NS" "$TASKS_DURING" during >/dev/null
sleep "$DOWN_SECS"
by_db=$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_step_transitions
                        WHERE to_state = 'complete' AND processor = 'db' AND created_at > to_timestamp($t_kill / 1000.0)")
echo "# while da was down (${DOWN_SECS} s): db completed $by_db steps"
[ "$by_db" -gt 0 ] && ok "the other daemon kept processing completions" || fail "the other daemon kept processing completions"
first_other=$(psql_at "$url" "SELECT (extract(epoch FROM min(created_at)) * 1000)::bigint FROM tasker.workflow_step_transitions
                              WHERE to_state = 'complete' AND created_at > to_timestamp($t_kill / 1000.0)")
t_restart=$(now_ms)
dt_start_daemon da "$url"
dt_wait_ready da 20 && ok "restarted daemon da ready" || fail "restarted daemon da ready within 20 s"
dt_create "$url" "$NS" "$TASKS_DURING" after >/dev/null   # work for both again
if dt_wait_done "$url" 90; then ok "every task terminal within 90 s of the restart"; else fail "every task terminal within 90 s of the restart ($(dt_states "$url"))"; fi
dt_check_invariants "$url" "$NS" $((TASKS + TASKS_DURING)) $((STEPS + $(dt_expected_steps "$TASKS_DURING")))
split=$(psql_at "$url" "SELECT string_agg(processor || ' ' || n, ', ' ORDER BY processor) FROM
          (SELECT processor, count(*) AS n FROM tasker.workflow_step_transitions
           WHERE to_state = 'complete' AND created_at >= to_timestamp($t_restart / 1000.0) GROUP BY 1) x")
echo "# steps completed after da's restart: $split"
first_da=$(psql_at "$url" "SELECT (extract(epoch FROM min(created_at)) * 1000)::bigint FROM tasker.workflow_step_transitions
                           WHERE to_state = 'complete' AND processor = 'da' AND created_at >= to_timestamp($t_restart / 1000.0)")
last=$(dt_last_task_completion "$url")
echo "# two daemons: kill of da → next completion processed (by db) $(secs_between "$t_kill" "${first_other:-$t_kill}") s;" \
     "restart → first completion processed by da $( [ -n "$first_da" ] && secs_between "$t_restart" "$first_da" || echo 'never (db had finished the work)') s;" \
     "restart → all $((TASKS + TASKS_DURING)) tasks complete $(secs_between "$t_restart" "${last:-$t_restart}") s"
for d in da db; do dt_stop "$d" TERM 15; is "$DT_RC" 0 "daemon $d: SIGTERM → exit 0"; done
for w in x1 x2 x3; do dt_stop "$w" TERM 15; done
dt_finish
