#!/usr/bin/env bash
# 40_concurrency.sh — the SQL core under concurrency, without the daemon (tests/tools/conc_driver): every step runs exactly once, nothing is left behind.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

# The issue's figures by default; CONC_* override them for longer stress runs by hand.
DIAMONDS=${CONC_DIAMONDS:-200}
FANOUTS=${CONC_FANOUTS:-50}
WORKERS=${CONC_WORKERS:-6}
ORCHESTRATORS=${CONC_ORCHESTRATORS:-2}
BATCH=${CONC_BATCH:-10}
WIDTH=50                                   # FANOUT_WIDTH in conc_driver.c
TASKS=$((DIAMONDS + FANOUTS))
STEPS=$((DIAMONDS * 4 + FANOUTS * (WIDTH + 2)))
NS=conc

url=$(fresh_db tasker_conc) || { fail "fresh database tasker_conc"; finish; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Several clients on a 2-core machine: 6 workers and 2 orchestrators, each its own connection.
"$BIN/tests/conc_driver" --url "$url" --ns "$NS" --workers "$WORKERS" --orchestrators "$ORCHESTRATORS" \
  --diamonds "$DIAMONDS" --fanouts "$FANOUTS" --batch "$BATCH" --timeout "${CONC_TIMEOUT:-120}" >"$out" 2>&1
rc=$?
sed 's/^/# /' "$out"
is "$rc" 0 "conc_driver: $TASKS tasks, every one terminal, children stopped cleanly"
# The driver says what went wrong; checking the tables of an unfinished run would only repeat it.
[ "$rc" -eq 0 ] || { finish; exit 1; }

q() { psql_at "$url" "$1"; }

# ---- tasks and steps ---------------------------------------------------------------------------

is "$(q "SELECT count(*) || '/' || count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks")" "$TASKS/$TASKS" \
  "every task is complete"
is "$(q "SELECT count(*) FROM tasker.task_transitions WHERE to_state = 'complete'")" "$TASKS" \
  "each task moved to complete exactly once"
is "$(q "SELECT count(*) FROM tasker.workflow_steps")" "$STEPS" "$STEPS steps"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE state <> 'complete' OR attempts <> 1")" 0 \
  "every step complete with attempts = 1"

# Nothing ran twice: one claim (enqueued → in_progress) and one hand-back per step.
is "$(q "SELECT count(*) FROM tasker.workflow_steps s
         WHERE (SELECT count(*) FROM tasker.workflow_step_transitions t
                WHERE t.workflow_step_uuid = s.workflow_step_uuid AND t.to_state = 'in_progress') <> 1")" 0 \
  "exactly one in_progress transition (claim) per step"
is "$(q "SELECT count(*) FROM tasker.workflow_steps s
         WHERE (SELECT count(*) FROM tasker.workflow_step_result_audit a
                WHERE a.workflow_step_uuid = s.workflow_step_uuid) <> 1")" 0 \
  "exactly one result-audit row per step"
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit")" "$STEPS" "result-audit rows: one per step, no more"
is "$(q "SELECT count(*) FROM tasker.workflow_steps s
         JOIN tasker.workflow_step_result_audit a ON a.workflow_step_uuid = s.workflow_step_uuid
         JOIN tasker.workflow_step_transitions c ON c.workflow_step_uuid = s.workflow_step_uuid AND c.to_state = 'in_progress'
         WHERE NOT a.success OR s.results->>'by' IS DISTINCT FROM a.worker_id OR a.worker_id IS DISTINCT FROM c.processor")" 0 \
  "each result was handed back by the worker that claimed the step"

# The fan-ins: the join step of each task was dispatched exactly once, however the completions of
# its parents were split between the orchestrators.
joins="SELECT s.workflow_step_uuid FROM tasker.workflow_steps s
       JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
       JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
       WHERE (tt.name = 'conc_diamond' AND s.name = 'd') OR (tt.name = 'conc_fanout' AND s.name = 'join')"
is "$(q "SELECT count(*) FROM ($joins) j")" "$TASKS" "one join step per task"
# Contested fan-ins: joins whose parents' completions were recorded by several orchestrators (the
# processor of a transition is the orchestrator's tasker.actor). Without any the race is untested.
contested=$(q "SELECT count(*) FROM ($joins) j
               WHERE (SELECT count(DISTINCT t.processor) FROM tasker.workflow_step_edges e
                      JOIN tasker.workflow_step_transitions t ON t.workflow_step_uuid = e.from_step_uuid
                      WHERE e.to_step_uuid = j.workflow_step_uuid AND t.to_state = 'complete') > 1")
echo "# join steps whose parents were completed by more than one orchestrator: $contested of $TASKS"
if [ "$ORCHESTRATORS" -lt 2 ]; then
  skip "one orchestrator: no contested fan-ins to look for"
elif [ "${contested:-0}" -gt 0 ]; then
  ok "fan-ins were contested by the orchestrators"
else
  fail "no fan-in was contested"
fi
is "$(q "SELECT count(*) FROM ($joins) j
         WHERE (SELECT count(*) FROM tasker.workflow_step_transitions t
                WHERE t.workflow_step_uuid = j.workflow_step_uuid AND t.to_state = 'enqueued') <> 1")" 0 \
  "every join step enqueued exactly once"
is "$(q "SELECT count(*) FROM tasker.workflow_steps s
         WHERE (SELECT count(*) FROM tasker.workflow_step_transitions t
                WHERE t.workflow_step_uuid = s.workflow_step_uuid AND t.to_state = 'enqueued') <> 1")" 0 \
  "every step enqueued exactly once"

# The whole history of every step, in order: roots are created enqueued, the rest pending.
is "$(q "SELECT count(*) FROM (
           SELECT string_agg(coalesce(t.from_state, '-') || '>' || t.to_state, ' ' ORDER BY t.ordinal) AS path
           FROM tasker.workflow_step_transitions t GROUP BY t.workflow_step_uuid) p
         WHERE p.path NOT IN (
           '->enqueued enqueued>in_progress in_progress>enqueued_for_orchestration enqueued_for_orchestration>complete',
           '->pending pending>enqueued enqueued>in_progress in_progress>enqueued_for_orchestration enqueued_for_orchestration>complete')")" 0 \
  "every step went create → enqueued → in_progress → enqueued_for_orchestration → complete, nothing else"
is "$(q "SELECT count(*) FROM (
           SELECT string_agg(coalesce(t.from_state, '-') || '>' || t.to_state, ' ' ORDER BY t.ordinal) AS path
           FROM tasker.task_transitions t GROUP BY t.task_uuid) p
         WHERE p.path <> '->steps_in_process steps_in_process>complete'")" 0 \
  "every task went steps_in_process → complete (never idle in between)"

# Transitions only along the edge tables (the foreign keys enforce it; this says so out loud).
is "$(q "SELECT count(*) FROM tasker.workflow_step_transitions t
         WHERE t.event = 'illegal' OR NOT EXISTS (SELECT 1 FROM tasker.step_state_edges e
               WHERE e.from_state IS NOT DISTINCT FROM t.from_state AND e.to_state = t.to_state)")" 0 \
  "step transitions only along tasker.step_state_edges"
is "$(q "SELECT count(*) FROM tasker.task_transitions t
         WHERE t.event = 'illegal' OR NOT EXISTS (SELECT 1 FROM tasker.task_state_edges e
               WHERE e.from_state IS NOT DISTINCT FROM t.from_state AND e.to_state = t.to_state)")" 0 \
  "task transitions only along tasker.task_state_edges"

# ---- queues ------------------------------------------------------------------------------------

# count_rows LIKE: total rows of the pgmq tables whose name matches LIKE (query_to_xml runs the
# dynamic count inside one query).
count_rows() {
  q "SELECT coalesce(sum((xpath('/row/n/text()',
            query_to_xml(format('SELECT count(*) AS n FROM pgmq.%I', tablename), false, true, '')))[1]::text::bigint), 0)
     FROM pg_tables WHERE schemaname = 'pgmq' AND tablename LIKE '$1'"
}
is "$(q "SELECT count(*) FROM pg_tables WHERE schemaname = 'pgmq' AND tablename IN
         ('q_tasker_dispatch_$NS', 'q_tasker_completion_$NS', 'a_tasker_dispatch_$NS', 'a_tasker_completion_$NS')")" 4 \
  "the namespace's queue and archive tables exist (the counts below are not vacuous)"
is "$(count_rows 'q\_tasker\_%')" 0 "no message left in any pgmq.q_tasker_* queue"
is "$(count_rows 'a\_tasker\_%')" "$((2 * STEPS))" "archives hold 2 messages per step (dispatch + completion)"
is "$(q "SELECT count(*) || '/' || count(DISTINCT message->>'step_uuid') FROM pgmq.a_tasker_dispatch_$NS")" "$STEPS/$STEPS" \
  "one dispatch message per step"
is "$(q "SELECT count(*) || '/' || count(DISTINCT message->>'step_uuid') FROM pgmq.a_tasker_completion_$NS")" "$STEPS/$STEPS" \
  "one completion message per step"
is "$(q "SELECT count(*) FROM tasker.rejected_messages")" 0 "tasker.rejected_messages is empty"
is "$(q "SELECT count(*) FROM tasker.tasks_dlq")" 0 "nothing in the DLQ"

steps_s=$(awk '$1 == "steps_per_second" { print $2 }' "$out")
wall=$(awk '$1 == "wall_seconds" { print $2 }' "$out")
echo "# concurrency: $TASKS tasks, $STEPS steps in ${wall:-?} s = ${steps_s:-?} steps/s ($WORKERS workers, $ORCHESTRATORS orchestrators)"
finish
