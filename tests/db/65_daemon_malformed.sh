#!/usr/bin/env bash
# 65_daemon_malformed.sh — malformed messages put straight into a completion queue while real
# completions flow. The daemon is paused (SIGSTOP) while workers hand back results and the bad
# messages are sent in between them, so on SIGCONT they are read in the same process_completions
# batch as real ones. Each bad message is archived, its reason logged by the daemon and recorded
# in tasker.rejected_messages; a stale duplicate of a real completion is archived silently; and
# the real completions of the batch are processed (every task completes, nothing runs twice).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=bad
TASKS=200
STEPS=$(( $(dt_expected_steps 1) + $(dt_expected_steps $((TASKS / 2))) + $(dt_expected_steps $((TASKS / 2 - 1))) ))
CQ=tasker_completion_$NS

url=$(fresh_db tasker_bad) || { fail "fresh database tasker_bad"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"
dt_start_worker w1 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 100
dt_start_worker w2 "$url" "$NS" --concurrency 20 --batch 10 --poll-ms 100

# One task through first, so there is a completed step to send a stale duplicate for.
dt_create "$url" "$NS" 1 warmup >/dev/null
dt_wait_done "$url" 20 || fail "warm-up task complete"
done_step=$(q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE name = 'a' AND state = 'complete' LIMIT 1")
done_task=$(q "SELECT task_uuid FROM tasker.workflow_steps WHERE workflow_step_uuid = '$done_step'")

kill -STOP "${DT_PID[d1]}"
dt_create "$url" "$NS" $((TASKS / 2)) first >/dev/null
# Wait until real completions are waiting in the queue, then the bad ones, then more real ones.
deadline=$(( $(now_ms) + 10000 ))
until [ "$(q "SELECT count(*) FROM pgmq.q_$CQ")" -ge 20 ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
before=$(q "SELECT count(*) FROM pgmq.q_$CQ")
bad_ids=$(q "SELECT string_agg(id::text, ',') FROM (
  SELECT pgmq.send('$CQ', '{\"garbage\": true}') AS id
  UNION ALL SELECT pgmq.send('$CQ', '[1, 2, 3]')
  UNION ALL SELECT pgmq.send('$CQ', '\"just a string\"')
  UNION ALL SELECT pgmq.send('$CQ', 'null')
  UNION ALL SELECT pgmq.send('$CQ', '{\"task_uuid\": \"nope\", \"step_uuid\": \"not-a-uuid\", \"attempt\": 1}')
  UNION ALL SELECT pgmq.send('$CQ', '{\"step_uuid\": \"$done_step\", \"attempt\": \"one\"}')
  UNION ALL SELECT pgmq.send('$CQ', '{\"step_uuid\": \"$done_step\", \"attempt\": 99999999999999999999}')
  UNION ALL SELECT pgmq.send('$CQ', jsonb_build_object('task_uuid', gen_random_uuid(), 'step_uuid', gen_random_uuid(), 'attempt', 1))
) x")
stale_id=$(q "SELECT pgmq.send('$CQ', '{\"task_uuid\": \"$done_task\", \"step_uuid\": \"$done_step\", \"attempt\": 1}')")
NBAD=8
dt_create "$url" "$NS" $((TASKS / 2 - 1)) second >/dev/null
deadline=$(( $(now_ms) + 10000 ))
until [ "$(q "SELECT count(*) FROM pgmq.q_$CQ")" -ge $((before + NBAD + 1 + 20)) ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.05; done
echo "# queued while the daemon was stopped: $before real completions, $NBAD malformed + 1 stale, then $(( $(q "SELECT count(*) FROM pgmq.q_$CQ") - before - NBAD - 1 )) more real ones"
kill -CONT "${DT_PID[d1]}"

if dt_wait_done "$url" 60; then ok "every task terminal within 60 s"; else fail "every task terminal within 60 s ($(dt_states "$url"))"; fi
dt_alive d1 && ok "the daemon is still running" || fail "the daemon is still running"

dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"

# The bad messages: archived, not in the queue, recorded with a reason, logged.
is "$(q "SELECT count(*) FROM pgmq.a_$CQ WHERE msg_id IN ($bad_ids, $stale_id)")" $((NBAD + 1)) \
  "all $NBAD malformed messages and the stale one are archived"
is "$(q "SELECT count(*) FROM pgmq.q_$CQ")" 0 "the completion queue is empty"
is "$(q "SELECT string_agg(reason, ' | ' ORDER BY msg_id) FROM tasker.rejected_messages WHERE msg_id IN ($bad_ids)")" \
  "step_uuid missing or not a UUID | message is not a JSON object | message is not a JSON object | message is not a JSON object | step_uuid missing or not a UUID | attempt missing or not an integer | attempt missing or not an integer | unknown step $(q "SELECT message->>'step_uuid' FROM pgmq.a_$CQ WHERE msg_id = ${bad_ids##*,}")" \
  "tasker.rejected_messages holds each malformed message with its reason"
is "$(q "SELECT count(*) FROM tasker.rejected_messages WHERE queue_name = '$CQ'")" "$NBAD" \
  "nothing else was rejected (not the stale duplicate, not a real completion)"
is "$(q "SELECT count(*) FROM tasker.rejected_messages r JOIN pgmq.a_$CQ a USING (msg_id) WHERE r.message IS NOT DISTINCT FROM a.message")" "$NBAD" \
  "each record keeps the message as it was sent"
logged=0
for id in ${bad_ids//,/ }; do
  reason=$(q "SELECT reason FROM tasker.rejected_messages WHERE msg_id = $id")
  if dt_log d1 | grep -F "rejected message $id in $CQ: $reason" >/dev/null; then logged=$((logged + 1)); else echo "# not logged: message $id ($reason)"; fi
done
is "$logged" "$NBAD" "the daemon logged each rejected message with its reason"
dt_log d1 | grep 'rejected message' | head -n 3 | sed 's/^/#   /'
# Same batch: the bad messages were archived by the same transaction as real completions.
same_batch=$(q "SELECT count(*) FROM pgmq.a_$CQ a WHERE a.msg_id NOT IN ($bad_ids, $stale_id)
                AND a.archived_at IN (SELECT archived_at FROM pgmq.a_$CQ WHERE msg_id IN ($bad_ids))")
echo "# real completions archived in the same transaction as the malformed ones: $same_batch"
[ "${same_batch:-0}" -gt 0 ] && ok "real completions were processed in the same batch as the malformed ones" ||
  fail "real completions were processed in the same batch as the malformed ones"
is "$(q "SELECT state || ' ' || attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = '$done_step'")" "complete 1" \
  "the stale duplicate changed nothing"
is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[d1]}")" 0 "no error lines in the daemon's log (a bad message is a warning)"

dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
dt_stop w1 TERM 15
dt_stop w2 TERM 15
dt_finish
