#!/usr/bin/env bash
# 86_rabbitmq_faults.sh — messaging.backend = rabbitmq under the faults of issue 12, in one run:
# two daemons, two workers, a private broker, linear, diamond and fan-out tasks created in chunks
# while, one after the other,
#   1. a daemon is killed (SIGKILL, TASKER_FAULT_INJECT=relay-before-publish) after its relay read a
#      burst from the PGMQ outbox and before it published any of it; the others publish it later;
#   2. a worker running slow handlers is stopped and killed with -9 while it holds unacked
#      deliveries: the broker redelivers those to the other workers (the steps stay first
#      attempts), and the steps it had claimed come back when their (3 s) lease expires — the one
#      case where a step may run twice;
#   3. the broker closes every connection (rabbitmqctl close_all_connections: the CONNECTION_FORCED
#      close a broker's shutdown sends its clients); everyone reconnects;
#   4. the broker is killed with -9 mid-run, stays down 30 s (both daemons' /health/ready: 503
#      naming the broker) and is started again on the same URL, its confirmed messages intact;
#   5. malformed messages are published straight into RabbitMQ's tasker_dispatch_<ns> and
#      tasker_completion_<ns>: recorded in
#      tasker.rejected_messages and acked, the processes still serve.
# Then every task is complete, every step ran once (twice only after an expired lease of the
# killed worker, the first attempt fenced), no message is left in PGMQ or in RabbitMQ, no outbox
# row unsent, no other rejected message, no error line, no sanitizer report.
# Why 3 and 4 are not a kill -9 with an immediate restart plus a graceful stop for 30 s: each
# broker start costs 15-25 s here (far more while other scripts start theirs: rabbitmq-sandbox
# starts one node at a time on the machine), so one crash that lasts the 30 s, and the shutdown's
# close frames without a shutdown, show the same client paths for one start instead of two (85
# restarts at once after its kill -9).
# The issue's 1,000 tasks (RMQ_TASKS=N any count): the broker's starts and the 30 s outage bound
# the run, about 105 s on a quiet machine, not the tasks (300 took as long). Skipped only where
# rabbitmq-server cannot start.
# make-check: long 240
# make-check: broker
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=rmqf
TASKS=${RMQ_TASKS:-1000}
HOOK_TASKS=10
OUTAGE_SECS=30
DQ=tasker_dispatch_$NS
CQ=tasker_completion_$NS
t_start=$(now_ms)

if ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 || ! command -v amqp-publish >/dev/null; then
  skip "rabbitmq-server or amqp-tools not installed (scripts/install-deps installs both)"
  finish; exit 0
fi
rdir=$(mktemp -d "$PWD/var/test-rabbitmq-86.XXXXXX")
rcleanup() {
  scripts/rabbitmq-sandbox stop "$rdir" >/dev/null 2>&1
  [ -f "$rdir/nodedir" ] && case $(cat "$rdir/nodedir") in /var/tmp/tasker-rabbitmq.*/node) rm -rf "$(dirname "$(cat "$rdir/nodedir")")" ;; esac
  rm -rf "$rdir"
}
trap 'dt_cleanup; rcleanup' EXIT
# bstart OUT: start (or restart) the broker, its line in OUT. A start that fails on this shared
# machine (a node that did not boot in time beside others) is said and tried once more: the broker's
# boot is not what this script tests.
bstart() {
  scripts/rabbitmq-sandbox start "$rdir" >"$1" 2>"$1.err" && return 0
  echo "# rabbitmq-sandbox start failed; once more. It said: $(tail -n 5 "$1.err" | tr '\n' ' ')"
  scripts/rabbitmq-sandbox start "$rdir" >"$1" 2>"$1.err"
}

# The broker boots (~15 s on a busy machine) while the database is prepared.
bstart "$rdir/start.out" &
bpid=$!
url=$(fresh_db tasker_rmqf) || { fail "fresh database tasker_rmqf"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
wait "$bpid"
line=$(cat "$rdir/start.out")
amqp=${line##*AMQP_URL=}
case "$amqp" in amqp://*) ;; *) skip "rabbitmq-server cannot start here: $(tail -n 3 "$rdir/start.out.err")"; finish; exit 0 ;; esac
ok "private broker up ($amqp)"

# Both daemons: HTTP for /health/ready; the sweep's resend grace above the run (a stopped worker's
# held deliveries are re-sent once their queue drains — the intended recovery of a stuck worker,
# test 85 covers it — but here the archive must prove one dispatch per attempt); confirm_timeout
# 2 s so a relayed burst's vt is 5 s.
export DT_WEB=true DT_RESEND_GRACE_SECS=300
for d in d1 d2; do
  cat >>"$(dt_conf "$d" "$url")" <<CONF
messaging {
    backend = "rabbitmq"
    rabbitmq {
        url = "$amqp"
        confirm_timeout_ms = 2000
    }
}
CONF
done
declare -A PORT=()   # daemon → its HTTP port (read from its log once it is ready)
ready_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$1]}/health/ready"; }
ready_body() { curl -s "http://127.0.0.1:${PORT[$1]}/health/ready"; }
# phase WHAT: a timing line, to see where the run's time goes.
phase() { echo "# +$(secs_between "$t_start" "$(now_ms)") s: $*"; }
# broker_down_seen WHAT: both daemons answer 503 on /health/ready and name the broker as down.
broker_down_seen() {
  local d got
  for d in d1 d2; do
    got=no
    for _ in $(seq 100); do [ "$(ready_code "$d")" = 503 ] && { got=yes; break; }; sleep 0.1; done
    is "$got" yes "$d: /health/ready 503 $1"
    ready_body "$d" | grep '"broker": *"down"' >/dev/null && ok "$d: /health/ready names the broker as down ($1)" \
      || fail "$d: /health/ready body ($1): $(ready_body "$d")"
  done
}
# rmq_queues: "name messages_ready messages_unacknowledged" of every queue in the broker.
rmq_queues() { scripts/rabbitmq-sandbox ctl "$rdir" -q list_queues name messages_ready messages_unacknowledged 2>&1; }

TASKS_MADE=0
STEPS=0
# mk_tasks N TAG: create N tasks (one transaction), counted in TASKS_MADE and STEPS.
mk_tasks() {
  local got
  got=$(dt_create "$url" "$NS" "$1" "$2")
  [ "${got:-0}" = "$1" ] || fail "create_task batch $2: created ${got:-0} of $1"
  TASKS_MADE=$((TASKS_MADE + $1))
  STEPS=$((STEPS + $(dt_expected_steps "$1")))
}

# ---- 1. a daemon killed between its outbox read (committed) and its publish ------------------
DT_DAEMON_ENV="TASKER_FAULT_INJECT=relay-before-publish" dt_start_daemon d2 "$url"
dt_wait_ready d2 20 && dt_wait_log d2 'broker link up' 30 && ok "d2 (fault hook armed) ready, broker link up" \
  || fail "d2 ready with its broker link within 30 s"
dt_log d2 | grep 'TASKER_FAULT_INJECT=relay-before-publish: this process kills itself' >/dev/null \
  && ok "d2 says at start that the fault hook is armed" || fail "d2 announced the armed fault hook"
mk_tasks "$HOOK_TASKS" hook
dt_wait_exit d2 20
is "$DT_RC" 137 "d2 killed itself with SIGKILL at its first relay burst"
dt_log d2 | grep 'relay-before-publish reached' >/dev/null && ok "d2 logged the fault point it died at" || fail "d2 logged the fault point"
is "$(q "SELECT count(*) || ' ' || count(*) FILTER (WHERE read_ct = 1 AND vt > clock_timestamp()) FROM pgmq.q_$DQ")" \
  "$HOOK_TASKS $HOOK_TASKS" "its burst (the $HOOK_TASKS root steps) was read and committed: hidden in the PGMQ outbox for its vt"
hook_ids=$(q "SELECT string_agg(msg_id::text, ',') FROM pgmq.q_$DQ")
# No consumer yet: a message d2 had published would wait in RabbitMQ (the relay declares the queue
# before its first publish, so a queue that does not exist was never published to either; the
# sweep's depth probe may have declared it). amqp-get prints nothing for an empty queue.
left=$(amqp-get --url="$amqp" -q "$DQ" 2>&1)
case "$left" in "") ok "nothing of it reached RabbitMQ (the queue is empty)" ;; *NOT_FOUND*) ok "nothing of it reached RabbitMQ (no queue)" ;;
  *) fail "a message of the killed burst is in RabbitMQ: $left" ;; esac
t_hook_kill=$(now_ms)
phase "d2 killed by its hook"

# The survivors: d1, and d2 restarted without the hook.
dt_start_daemon d1 "$url"
DT_DAEMON_ENV='' dt_start_daemon d2 "$url"
for d in d1 d2; do
  dt_wait_ready "$d" 20 && dt_wait_log "$d" 'broker link up' 30 && ok "$d ready, broker link up" || fail "$d ready with its broker link"
  PORT[$d]=$(dt_http_port "$d")
done

# ---- 2. a worker killed with -9 while it holds unacked deliveries ----------------------------
# w2 first, alone: every step sleeps 100 ms (noop mapped to sleep), 8 at a time, so with a backlog
# in RabbitMQ it runs 8 claimed steps and holds 8 more deliveries (prefetch = concurrency; acks
# follow the claim); a 3 s lease; debug log, for its deliveries and claims. After its death, w1
# and w3 (fast, noop) are the two workers.
dt_start_worker w2 "$url" "$NS" --backend rabbitmq --amqp-url "$amqp" --concurrency 8 --batch 8 --lease-secs 3 \
  --handler-map noop=sleep -v
dt_wait_log w2 'broker link up' 30 || fail "w2: broker link up within 30 s"
# w2_held: message ids w2 received and has not claimed (so not acked: acks follow the claim).
w2_held() {
  comm -23 <(dt_log w2 | sed -n 's/.* delivery [0-9]* (msg \([0-9]*\)).*/\1/p' | sort -u) \
           <(dt_log w2 | sed -n 's/.*: claimed (msg \([0-9]*\)).*/\1/p' | sort -u)
}
w2_running() { q "SELECT count(*) FROM tasker.workflow_steps WHERE state = 'in_progress' AND claimed_by = 'w2'"; }
# w2_handed_back: w2's hand-backs not yet completed. Still there 0.3 s after the SIGSTOP, they are
# a hand-back the server committed for the stopped w2 before it could publish the pointers: lost
# by design, found by the sweep only after resend_grace_secs (300 s here, above the run). An instant
# with such a hand-back is not the one this case tests (it failed so once: 7 tasks left waiting).
w2_handed_back() { q "SELECT count(*) FROM tasker.workflow_steps WHERE claimed_by = 'w2'
                      AND state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')"; }
# w2_unclaimed: of the deliveries w2's log shows unclaimed, those whose step is still enqueued in
# the database (its log lags: a claim may have committed and not been logged yet).
w2_unclaimed() {
  local ids; ids=$(w2_held | paste -sd,)
  q "SELECT count(*) FROM (SELECT message FROM pgmq.q_$DQ WHERE msg_id IN (${ids:-NULL})
                           UNION ALL SELECT message FROM pgmq.a_$DQ WHERE msg_id IN (${ids:-NULL})) m
     JOIN tasker.workflow_steps s ON s.workflow_step_uuid = (m.message->>'step_uuid')::uuid WHERE s.state = 'enqueued'"
}
mk_tasks $((TASKS / 4)) a
# The instant to kill: w2 runs claimed steps and has read deliveries it has not claimed. SIGSTOP
# it, wait a moment for a statement it had sent to finish in PostgreSQL, and measure the state it
# will die in: its steps in progress and the deliveries it read and has not claimed (the
# database), then all it holds unacked (RabbitMQ: w2 is the only consumer yet, so the queue's
# unacked messages are its own, read or still in its socket's buffer; its leases may run out
# meanwhile, which changes nothing: it dies either way).
running=0 held=0 unacked=0
for _ in $(seq 100); do
  if [ "$(w2_running)" -gt 0 ]; then
    kill -STOP "${DT_PID[w2]}"
    sleep 0.3
    running=$(w2_running) held=$(w2_unclaimed)
    [ "$running" -gt 0 ] && [ "$held" -gt 0 ] && [ "$(w2_handed_back)" = 0 ] && break
    kill -CONT "${DT_PID[w2]}"
  fi
  sleep 0.05
done
unacked=$(rmq_queues | awk -v q="$DQ" '$1 == q { print $3 }')
t_w2_kill=$(now_ms)
phase "w2 kill"
dt_kill9 w2
is "$DT_RC" 137 "w2 killed with -9 running $running claimed steps, ${unacked:-?} deliveries unacked ($held of them read and not claimed)"
[ "${unacked:-0}" -gt 0 ] && [ "$held" -gt 0 ] && [ "$running" -gt 0 ] && ok "w2 died holding unacked deliveries and running claimed steps" \
  || fail "w2 died holding unacked deliveries (${unacked:-?}, $held read and not claimed) and running claimed steps ($running)"
w2_held >"$DT_DIR/w2.held"
for w in w1 w3; do dt_start_worker "$w" "$url" "$NS" --backend rabbitmq --amqp-url "$amqp" --concurrency 20 --batch 10; done

# ---- 3. the broker closes every connection (what it sends its clients when it shuts down) -----
mk_tasks $((TASKS / 4)) b
for d in d1 d2; do dt_log_skip "$d"; done   # (their next "broker link up" is the reconnection)
t_close=$(now_ms)
phase "broker closes all connections"
scripts/rabbitmq-sandbox ctl "$rdir" -q close_all_connections "86: forced close" >/dev/null 2>&1 \
  && ok "the broker closed every client connection (CONNECTION_FORCED)" || fail "rabbitmqctl close_all_connections"
for d in d1 d2; do
  dt_wait_log "$d" 'broker link (lost|down): .*CONNECTION_FORCED' 10 && dt_wait_log "$d" 'broker link up' 30 \
    && ok "$d: its link was closed by the broker and came back" || fail "$d: link closed by the broker and back within 30 s"
done
# Which queues the broker has (completions may travel over RabbitMQ too), asked while work flows.
rmq_queues >"$DT_DIR/queues" &
qpid=$!
# The work flows again (a step completes after the close) before the next fault.
deadline=$(( t_close + 30000 ))
until [ -n "$(dt_first_transition_after "$url" "$t_close" complete)" ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
[ -n "$(dt_first_transition_after "$url" "$t_close" complete)" ] \
  && ok "steps complete after the forced close" || fail "steps complete after the forced close ($(dt_states "$url"))"
wait "$qpid"

# ---- 4. the broker killed with -9 mid-run, down for 30 s, started again on the same URL --------
mk_tasks $((TASKS / 8)) c
for d in d1 d2; do dt_log_skip "$d"; done
kill -9 "$(cat "$rdir/rabbitmq.pid")" 2>/dev/null && ok "broker killed with -9 mid-run" || fail "kill -9 the broker"
t_broker_kill=$(now_ms)
phase "broker kill -9"
broker_down_seen "after the broker's kill -9"
mk_tasks $((TASKS / 4)) d   # arrive while it is down: their roots wait in the outbox
while [ $(( $(now_ms) - t_broker_kill )) -lt $((OUTAGE_SECS * 1000)) ]; do sleep 0.2; done
broker_down_seen "after $OUTAGE_SECS s without the broker"
bstart "$rdir/start2.out"
line2=$(cat "$rdir/start2.out")
is "${line2##*AMQP_URL=}" "$amqp" "broker started again after $OUTAGE_SECS s, on the same URL"
phase "broker back after the outage"
for d in d1 d2; do
  dt_wait_log "$d" 'broker link up' 30 && ok "$d: broker link up after the outage" || fail "$d: broker link up after the outage"
done

# ---- 5. malformed messages straight into RabbitMQ's queues -------------------------------------
done_step=$(q "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE state = 'complete' AND attempt_no = 1 LIMIT 1")
done_task=$(q "SELECT task_uuid FROM tasker.workflow_steps WHERE workflow_step_uuid = '$done_step'")
ghost=$(q "SELECT gen_random_uuid()")
bodies=("this is not JSON" '{"garbage": true}' '[1, 2, 3]'
        "{\"task_uuid\": \"$done_task\", \"step_uuid\": \"$done_step\", \"attempt\": \"one\"}"
        "{\"task_uuid\": \"$ghost\", \"step_uuid\": \"$ghost\", \"attempt\": 1}"
        "{\"task_uuid\": \"$done_task\", \"step_uuid\": \"$done_step\", \"attempt\": 7}")
# (sorted: one claim may take them in any order)
want_reasons="attempt missing or not an integer | message is not a JSON object | message is not a JSON object | step_uuid missing or not a UUID | unknown step $ghost"
sent=0
for b in "${bodies[@]}"; do
  amqp-publish --url="$amqp" -r "$DQ" -p -b "$b" && sent=$((sent + 1))
done
is "$sent" "${#bodies[@]}" "published ${#bodies[@]} malformed or stale messages to RabbitMQ's $DQ"
queues=$(cat "$DT_DIR/queues")
cq_sent=0
if grep -q "^${CQ}[[:space:]]" <<<"$queues"; then
  for b in "this is not JSON" '{"garbage": true}' "{\"task_uuid\": \"$ghost\", \"step_uuid\": \"$ghost\", \"attempt\": 1}"; do
    amqp-publish --url="$amqp" -r "$CQ" -p -b "$b" && cq_sent=$((cq_sent + 1))
  done
  is "$cq_sent" 3 "published 3 malformed messages to RabbitMQ's $CQ"
else
  fail "RabbitMQ has no $CQ: the daemons should consume completion pointers from it"
fi
mk_tasks $((TASKS - TASKS_MADE)) e   # the rest: the processes still serve

# ---- the end state ------------------------------------------------------------------------------
if dt_wait_done "$url" 120; then ok "every task terminal within 120 s"; else fail "every task terminal within 120 s ($(dt_states "$url"))"; fi
t_done=$(now_ms)
phase "all tasks done"
# RabbitMQ's queues at the end, asked (a few seconds of Erlang) while PostgreSQL's state is checked.
rmq_queues >"$DT_DIR/queues.end" &
qpid=$!
# The malformed messages went out before the last tasks were created, so they were claimed long
# before those completed; wait a little all the same rather than race.
deadline=$(( $(now_ms) + 10000 ))
until [ "$(q "SELECT count(*) FROM tasker.rejected_messages")" -ge $((5 + cq_sent)) ] || [ "$(now_ms)" -ge "$deadline" ]; do sleep 0.1; done
is "$TASKS_MADE" "$TASKS" "created $TASKS tasks"
dt_check_invariants "$url" "$NS" "$TASKS_MADE" "$STEPS" yes

# Ran twice only where the killed worker's lease expired; the dead attempt was fenced (never
# handed back, no second result).
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE attempt_no > 2")" 0 "no step ran more than twice"
again=$(q "SELECT count(*) FROM tasker.workflow_steps WHERE attempt_no = 2")
is "$(q "SELECT count(*) FROM tasker.workflow_steps s WHERE s.attempt_no = 2 AND
          (SELECT t.processor FROM tasker.workflow_step_transitions t WHERE t.workflow_step_uuid = s.workflow_step_uuid
             AND t.to_state = 'in_progress' ORDER BY t.ordinal LIMIT 1) = 'w2' AND
          EXISTS (SELECT 1 FROM tasker.workflow_step_transitions t WHERE t.workflow_step_uuid = s.workflow_step_uuid
             AND t.from_state = 'in_progress' AND t.to_state = 'waiting_for_retry' AND t.event = 'lease_expired')")" "$again" \
  "each of the $again steps that ran twice was first claimed by the killed w2 and its lease expired"
is "$again" "$running" "the steps run twice are the $running w2 was running"
is "$(q "SELECT count(*) FROM tasker.workflow_step_result_audit a JOIN tasker.workflow_steps s USING (workflow_step_uuid)
         WHERE s.attempt_no = 2 AND a.attempt = 1")" 0 "no result of a dead attempt was accepted"
# The deliveries w2 held: the broker gave them to another worker, as first attempts (no new
# dispatch message: one per step in the archive, checked above).
held_ids=$(paste -sd, "$DT_DIR/w2.held")
is "$(q "SELECT count(*) FROM pgmq.a_$DQ a JOIN tasker.workflow_steps s ON s.workflow_step_uuid = (a.message->>'step_uuid')::uuid
         WHERE a.msg_id IN (${held_ids:-NULL}) AND s.attempt_no = 1 AND
          (SELECT t.processor FROM tasker.workflow_step_transitions t
           WHERE t.workflow_step_uuid = s.workflow_step_uuid AND t.to_state = 'in_progress') IN ('w1', 'w3')")" "$held" \
  "the $held deliveries w2 had read and not claimed were redelivered to w1 and w3 and ran there as first attempts"
# The burst the hooked daemon died with: read again after its vt, published by a survivor.
is "$(q "SELECT count(*) FROM pgmq.a_$DQ WHERE msg_id IN ($hook_ids) AND read_ct >= 2")" "$HOOK_TASKS" \
  "the $HOOK_TASKS messages of d2's lost burst were read again after their vt and relayed"

# Rejected: exactly the malformed messages, each with its reason; the stale one acked silently.
is "$(q "SELECT string_agg(reason, ' | ' ORDER BY reason) FROM tasker.rejected_messages WHERE queue_name = '$DQ'")" \
  "$want_reasons" "the 5 malformed dispatch messages recorded with their reasons (the stale one not)"
is "$(q "SELECT count(*) FROM tasker.rejected_messages WHERE queue_name = '$CQ'")" "$cq_sent" \
  "malformed completion messages recorded: $cq_sent"
is "$(q "SELECT count(*) FROM tasker.rejected_messages WHERE queue_name NOT IN ('$DQ', '$CQ')")" 0 "no other rejected message"
is "$(q "SELECT state || ' ' || attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = '$done_step'")" "complete 1" \
  "the stale message changed nothing"
for p in d1 d2 w1 w3; do dt_alive "$p" && ok "$p still running" || fail "$p still running"; done

# RabbitMQ holds nothing: every queue empty, nothing unacked.
wait "$qpid"
queues=$(cat "$DT_DIR/queues.end")
echo "$queues" | sed 's/^/# rabbitmq: /'
is "$(awk -v ns="_$NS" 'index($1, ns) && ($2 != 0 || $3 != 0)' <<<"$queues" | wc -l)" 0 "no message left in RabbitMQ's queues"
grep -q "^${DQ}[[:space:]]" <<<"$queues" && ok "RabbitMQ still has $DQ (durable through both restarts)" || fail "$DQ in list_queues"

# No error line in any log (a lost broker, a dead worker, a malformed message are warnings).
for p in d1 d2 w1 w2 w3; do
  is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[$p]}")" 0 "no error lines in the log of $p"
done
metrics=$(curl -s "http://127.0.0.1:${PORT[d1]}/metrics")
echo "# d1 relay: $(echo "$metrics" | grep '^tasker_relay_messages_total' | sed 's/tasker_relay_messages_total//' | xargs)"
echo "$metrics" | grep '^tasker_broker_connects_total [3-9]' >/dev/null && ok "d1's link connected 3 times (start, after the forced close, after the outage)" \
  || fail "d1 broker connects: $(echo "$metrics" | grep tasker_broker_connects_total)"
for p in d1 d2 w1 w3; do dt_stop "$p" TERM 20; is "$DT_RC" 0 "$p: SIGTERM → exit 0"; done
echo "# faults: $TASKS_MADE tasks, $STEPS steps; hook kill at +$(secs_between "$t_start" "$t_hook_kill") s," \
     "w2 kill at +$(secs_between "$t_start" "$t_w2_kill") s," \
     "forced close at +$(secs_between "$t_start" "$t_close") s, broker kill -9 (down $OUTAGE_SECS s) at +$(secs_between "$t_start" "$t_broker_kill") s, all done at +$(secs_between "$t_start" "$t_done") s"
dt_finish
