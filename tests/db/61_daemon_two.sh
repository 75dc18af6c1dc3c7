#!/usr/bin/env bash
# 61_daemon_two.sh — two daemons on one database at once (active-active) with four workers: every
# task completes; no (step, attempt) is dispatched twice (transitions into enqueued, dispatch
# messages in the archive); every join step runs exactly once, also when the completions of its
# parents were processed by different daemons (contested fan-ins, counted and required).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=two
TASKS=${TWO_TASKS:-600}
CHUNK=50
FANOUT_EVERY=5          # more fan-ins than the e2e mix: they are what two daemons could both miss or both do
STEPS=$(dt_expected_steps "$TASKS" "$FANOUT_EVERY")

url=$(fresh_db tasker_two) || { fail "fresh database tasker_two"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

dt_start_daemon d1 "$url"
dt_start_daemon d2 "$url"
dt_wait_ready d1 20 && ok "daemon d1 ready" || fail "daemon d1 ready within 20 s"
dt_wait_ready d2 20 && ok "daemon d2 ready" || fail "daemon d2 ready within 20 s"
# Batch sizes from 1 to 20: siblings of a fan-in are handed back in different transactions, so
# their completion messages land in different process_completions calls (and daemons).
dt_start_worker w1 "$url" "$NS" --concurrency 10 --batch 1 --poll-ms 100
dt_start_worker w2 "$url" "$NS" --concurrency 10 --batch 3 --poll-ms 100
dt_start_worker w3 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 100
dt_start_worker w4 "$url" "$NS" --concurrency 20 --batch 20 --poll-ms 100

t0=$(now_ms)
created=0
while [ "$created" -lt "$TASKS" ]; do
  n=$(( TASKS - created < CHUNK ? TASKS - created : CHUNK ))
  got=$(dt_create "$url" "$NS" "$n" "two-$created" "$FANOUT_EVERY")
  [ "${got:-0}" = "$n" ] || { fail "create_task batch at $created: created ${got:-0} of $n"; break; }
  created=$(( created + n ))
done

if dt_wait_done "$url" 120; then ok "every task terminal within 120 s"; else fail "every task terminal within 120 s ($(dt_states "$url"))"; fi
t1=$(now_ms)
dt_alive d1 && dt_alive d2 && ok "both daemons still running" || fail "both daemons still running"

dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"

q() { psql_at "$url" "$1"; }
# Who did what: the processor of a transition is the daemon's processor_id (d1, d2).
split=$(q "SELECT string_agg(processor || ' ' || n, ', ' ORDER BY processor) FROM
           (SELECT processor, count(*) AS n FROM tasker.workflow_step_transitions WHERE to_state = 'complete' GROUP BY 1) x")
echo "# steps completed by each daemon: $split"
is "$(q "SELECT count(DISTINCT processor) FROM tasker.workflow_step_transitions
         WHERE to_state = 'complete' AND processor IN ('d1', 'd2')")" 2 "both daemons processed completions"
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions WHERE to_state IN ('complete', 'enqueued')
         AND from_state IS NOT NULL AND processor NOT IN ('d1', 'd2')")" 0 \
  "every orchestration transition was made by one of the two daemons"
joins="SELECT s.workflow_step_uuid FROM tasker.workflow_steps s
       JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
       JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
       WHERE (tt.name = 'e2e_diamond' AND s.name = 'd') OR (tt.name = 'e2e_fanout' AND s.name = 'join')"
contested=$(q "SELECT count(*) FROM ($joins) j
               WHERE (SELECT count(DISTINCT t.processor) FROM tasker.workflow_step_edges e
                      JOIN tasker.workflow_step_transitions t ON t.workflow_step_uuid = e.from_step_uuid
                      WHERE e.to_step_uuid = j.workflow_step_uuid AND t.to_state = 'complete') > 1")
total_joins=$(q "SELECT count(*) FROM ($joins) j")
echo "# fan-ins whose parents were completed by both daemons: $contested of $total_joins"
[ "${contested:-0}" -gt 0 ] && ok "fan-ins were contested by the two daemons" || fail "no fan-in was contested (the race went untested)"
# The dispatch of each join, by whom: with contested ones, both daemons must have dispatched some.
echo "# join steps dispatched by: $(q "SELECT string_agg(processor || ' ' || n, ', ' ORDER BY processor) FROM
  (SELECT t.processor, count(*) AS n FROM ($joins) j JOIN tasker.workflow_step_transitions t
   ON t.workflow_step_uuid = j.workflow_step_uuid AND t.to_state = 'enqueued' GROUP BY 1) x")"

for d in d1 d2; do
  dt_stop "$d" TERM 15
  is "$DT_RC" 0 "daemon $d: SIGTERM → exit 0"
  is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[$d]}")" 0 "no error lines in the log of $d"
done
for w in w1 w2 w3 w4; do dt_stop "$w" TERM 15; done

wall=$(secs_between "$t0" "$t1")
echo "# two daemons: $TASKS tasks, $STEPS steps in $wall s = $(awk -v s="$STEPS" -v w="$wall" 'BEGIN { printf "%.0f", s / w }') steps/s"
dt_finish
