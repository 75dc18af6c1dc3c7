#!/usr/bin/env bash
# 85_daemon_rabbitmq.sh — messaging.backend = rabbitmq end to end: a private broker
# (scripts/rabbitmq-sandbox), two daemons relaying dispatch messages from the PGMQ outbox to
# RabbitMQ with confirms, two workers consuming from RabbitMQ (--backend rabbitmq) and publishing
# each hand-back's completion pointer back over RabbitMQ, both daemons consuming those. A mix of
# linear, diamond and fan-out tasks completes; the broker is killed with -9 mid-run (/health/ready
# says not ready meanwhile) and started again; every task still completes, every step ran once,
# no PGMQ completion message was ever written, and no message is left in PGMQ or in RabbitMQ.
# Then a hand-back whose pointer was never published (a worker that died after its commit) is
# completed by the sweep from PostgreSQL's state. Skipped only where rabbitmq-server cannot start.
# make-check: long 115
# make-check: broker
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=rmq
TASKS=${RMQ_TASKS:-200}
CHUNK=50
STEPS=$(dt_expected_steps "$TASKS")

if ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 || ! command -v amqp-get >/dev/null; then
  skip "rabbitmq-server or amqp-tools not installed (scripts/install-deps installs both)"
  finish; exit 0
fi
rdir=$(mktemp -d "$PWD/var/test-rabbitmq-85.XXXXXX")
rcleanup() {
  scripts/rabbitmq-sandbox stop "$rdir" >/dev/null 2>&1
  [ -f "$rdir/nodedir" ] && case $(cat "$rdir/nodedir") in /var/tmp/tasker-rabbitmq.*/node) rm -rf "$(dirname "$(cat "$rdir/nodedir")")" ;; esac
  rm -rf "$rdir"
}
trap 'rcleanup' EXIT
line=$(scripts/rabbitmq-sandbox start "$rdir" 2>"$rdir/start.err")
amqp=${line##*AMQP_URL=}
case "$amqp" in amqp://*) ;; *) skip "rabbitmq-server cannot start here: $(tail -n 3 "$rdir/start.err")"; finish; exit 0 ;; esac
ok "private broker up ($amqp)"

url=$(fresh_db tasker_rmq) || { fail "fresh database tasker_rmq"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

# A short resend grace (2 s): the run builds backlogs far older than that in RabbitMQ, and the sweep
# must tell them from lost messages (it asks the broker for each queue's ready count), so the
# archive still holds exactly one dispatch message per attempt.
export DT_WEB=true DT_RESEND_GRACE_SECS=2
for d in d1 d2; do DT_DAEMON_ENV="TASKER_MESSAGING_BACKEND=rabbitmq TASKER_AMQP_URL=$amqp" dt_start_daemon $d "$url"; done
dt_wait_ready d1 20 && dt_wait_ready d2 20 && ok "two daemons ready" || fail "daemons ready within 20 s"
dt_wait_log d1 'broker link up' 30 && ok "the daemon's broker link is up" || fail "broker link up within 30 s"
port=$(dt_http_port d1)
ready_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready"; }
is "$(ready_code)" 200 "/health/ready: 200 with the broker up"
for w in w1 w2; do
  dt_start_worker "$w" "$url" "$NS" --backend rabbitmq --amqp-url "$amqp" --concurrency 20 --batch 10
done

created=0
half=$(( TASKS / 2 ))
killed=no
t0=$(now_ms)
while [ "$created" -lt "$TASKS" ]; do
  n=$(( TASKS - created < CHUNK ? TASKS - created : CHUNK ))
  got=$(dt_create "$url" "$NS" "$n" "rmq-$created")
  [ "${got:-0}" = "$n" ] || { fail "create_task batch at $created: created ${got:-0} of $n"; break; }
  created=$(( created + n ))
  if [ "$killed" = no ] && [ "$created" -ge "$half" ]; then
    killed=yes
    kill -9 "$(cat "$rdir/rabbitmq.pid")" 2>/dev/null && ok "broker killed with -9 mid-run" || fail "kill -9 the broker"
    down=no
    for _ in $(seq 100); do [ "$(ready_code)" = 503 ] && { down=yes; break; }; sleep 0.1; done
    is "$down" yes "/health/ready: 503 while the broker is down"
    curl -s "http://127.0.0.1:$port/health/ready" | grep -q '"broker": *"down"' && ok "/health/ready names the broker as down" \
      || fail "/health/ready body: $(curl -s "http://127.0.0.1:$port/health/ready")"
    scripts/rabbitmq-sandbox stop "$rdir" >/dev/null 2>&1   # epmd and the pid file of the dead node
    line2=$(scripts/rabbitmq-sandbox start "$rdir" 2>"$rdir/start2.err")
    is "${line2##*AMQP_URL=}" "$amqp" "broker restarted on the same URL"
    [ "${line2##*AMQP_URL=}" = "$amqp" ] || sed 's/^/#   /' "$rdir/start2.err"
  fi
done

if dt_wait_done "$url" 120; then ok "every task terminal within 120 s"; else fail "every task terminal within 120 s ($(dt_states "$url"))"; fi
t1=$(now_ms)
is "$(ready_code)" 200 "/health/ready: 200 again after the broker came back"
dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.rejected_messages")" 0 "no rejected messages"
is "$(psql_at "$url" "SELECT (SELECT count(*) FROM pgmq.q_tasker_completion_$NS) + (SELECT count(*) FROM pgmq.a_tasker_completion_$NS)")" 0 \
  "no PGMQ completion message was written: completions went over RabbitMQ"

for w in w1 w2; do dt_stop "$w" TERM 15; done

# Messages lost inside the broker. With no worker running, LOST tasks' first steps are relayed and
# wait in RabbitMQ well past the grace: not re-sent (a backlog is not a loss). Then they are taken
# off the queue without a claim (amqp-get acks them: lost), the sweep sees the queue drained and
# re-sends them, and a new worker completes every task.
LOST=10
resent_lines() { cat "${DT_LOG[d1]}" "${DT_LOG[d2]}" | grep -c ' resent task='; }  # whichever daemon swept
resent0=$(resent_lines)
[ "$(dt_create "$url" "$NS" "$LOST" "rmq-lost")" = "$LOST" ] || fail "create the $LOST tasks whose messages get lost"
relayed=no
for _ in $(seq 100); do
  [ "$(psql_at "$url" "SELECT count(*) FROM pgmq.q_tasker_dispatch_$NS")" = 0 ] && { relayed=yes; break; }; sleep 0.1
done
is "$relayed" yes "the $LOST first steps were relayed to RabbitMQ"
sleep 5   # > grace + two sweep intervals: each sweep asked the broker, which holds the messages
is "$(resent_lines)" "$resent0" "messages waiting in RabbitMQ past the grace are not re-sent"
taken=0
for _ in $(seq "$LOST"); do
  amqp-get --url="$amqp" -q "tasker_dispatch_$NS" >/dev/null 2>&1 && taken=$((taken + 1))
done
is "$taken" "$LOST" "the $LOST messages taken off RabbitMQ's queue without a claim (lost)"
dt_start_worker w3 "$url" "$NS" --backend rabbitmq --amqp-url "$amqp" --concurrency 20 --batch 10
if dt_wait_done "$url" 60; then ok "the tasks whose messages were lost complete"; else fail "lost tasks terminal within 60 s ($(dt_states "$url"))"; fi
[ $(( $(resent_lines) - resent0 )) -ge "$LOST" ] && ok "the sweep re-sent the lost messages ($(( $(resent_lines) - resent0 )) resent)" \
  || fail "resent after the loss: $(( $(resent_lines) - resent0 )), want >= $LOST"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state <> 'complete'")" 0 "all $(( TASKS + LOST )) tasks complete"

# A hand-back whose pointer is never published: claimed and handed back by hand in a namespace no
# worker serves, as a worker that died between its commit and its publish leaves it. Past the
# grace (sweeper.resend_grace_secs; its hand-back time is moved back) the sweep
# processes it from PostgreSQL and dispatches its child.
LOSTNS=rmqlost
dt_register "$url" "$LOSTNS" || fail "register the templates in $LOSTNS"
# One transaction: the task, the claim, the hand-back (no pointer), its hand-back time moved back.
read -r lost_task got < <(psql_at "$url" "
  CREATE TEMP TABLE lt AS SELECT c.task_uuid AS t
    FROM tasker.create_task('{\"name\": \"e2e_linear\", \"namespace\": \"$LOSTNS\"}') c;
  CREATE TEMP TABLE l AS SELECT lt.t, s.workflow_step_uuid AS a
    FROM lt JOIN tasker.workflow_steps s ON s.task_uuid = lt.t AND s.name = 'a';
  CREATE TEMP TABLE lc AS SELECT count(*) AS n FROM l, tasker.claim_dispatched_steps('$LOSTNS', jsonb_build_array(
    jsonb_build_object('msg_id', 0, 'message', jsonb_build_object('step_uuid', l.a, 'attempt', 1))), 300, 'crashed-worker');
  CREATE TEMP TABLE ls AS SELECT r.status FROM l, tasker.submit_step_results(jsonb_build_array(jsonb_build_object(
    'step_uuid', l.a, 'attempt', 1, 'success', true)), false) r;
  UPDATE tasker.workflow_steps s SET updated_at = now() - interval '10 minutes' FROM l WHERE s.workflow_step_uuid = l.a; -- TEST-ONLY: its grace has passed
  SELECT l.t || ' ' || lc.n || '/' || ls.status FROM l, lc, ls")
is "$got" "1/accepted" "a step claimed and handed back without a pointer"
lost_state() { psql_at "$url" "SELECT string_agg(name || '=' || state, ',' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = '$lost_task' AND name IN ('a', 'b')"; }
got=""
for _ in $(seq 150); do got=$(lost_state); [ "$got" = "a=complete,b=enqueued" ] && break; sleep 0.2; done
is "$got" "a=complete,b=enqueued" "the sweep completed the hand-back whose pointer was lost, and dispatched its child"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_step_transitions x JOIN tasker.workflow_steps s USING (workflow_step_uuid)
  WHERE s.task_uuid = '$lost_task' AND s.name = 'a' AND x.to_state = 'complete'")" 1 "… once, though both daemons sweep"
said=no
for _ in $(seq 50); do { dt_log d1; dt_log d2; } | grep 'without their completion pointer' >/dev/null && { said=yes; break; }; sleep 0.1; done
is "$said" yes "a daemon's log says it recovered a hand-back without its pointer"
# Everything in RabbitMQ was consumed and acked: the queue is empty once the workers stop.
dt_stop w3 TERM 15
left=$(amqp-get --url="$amqp" -q "tasker_dispatch_$NS" 2>&1)
case "$left" in *"queue is empty"*|"") ok "no message left in RabbitMQ's tasker_dispatch_$NS" ;; *) fail "message left in RabbitMQ: $left" ;; esac
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
metrics2=$(curl -s "http://127.0.0.1:$(dt_http_port d2)/metrics")
# sample NAME OUTCOME: the counter summed over both daemons; sample1 NAME OUTCOME TEXT: in one.
sample1() { echo "$3" | sed -n "s/^$1{outcome=\"$2\"} \([0-9]*\)$/\1/p"; }
sample() { echo $(( $(sample1 "$1" "$2" "$metrics") + $(sample1 "$1" "$2" "$metrics2") )); }
pub=$(sample tasker_relay_messages_total published)
[ "${pub:-0}" -ge "$STEPS" ] && ok "/metrics: $pub messages published (>= $STEPS steps)" || fail "/metrics published: '${pub:-}'"
grep -q '^tasker_broker_connects_total [2-9]' <<<"$metrics" && ok "/metrics: the link reconnected after the kill" \
  || fail "/metrics broker connects: $(echo "$metrics" | grep tasker_broker_connects_total)"
echo "# relay: $(echo "$metrics" | grep '^tasker_relay_messages_total' | sed 's/tasker_relay_messages_total//' | xargs)"
pointers() { sample tasker_completion_pointers_total "$1"; }
[ "$(sample1 tasker_completion_pointers_total acked "$metrics")" -gt 0 ] && [ "$(sample1 tasker_completion_pointers_total acked "$metrics2")" -gt 0 ] \
  && ok "both daemons processed completion pointers ($(sample1 tasker_completion_pointers_total acked "$metrics") and $(sample1 tasker_completion_pointers_total acked "$metrics2") acked)" \
  || fail "pointers acked per daemon: '$(sample1 tasker_completion_pointers_total acked "$metrics")', '$(sample1 tasker_completion_pointers_total acked "$metrics2")'"
[ "$(pointers consumed)" -ge "$STEPS" ] && [ "$(pointers acked)" -ge "$STEPS" ] \
  && ok "/metrics: $(pointers consumed) completion pointers consumed, $(pointers acked) acked (>= $STEPS steps)" \
  || fail "/metrics completion pointers: consumed '$(pointers consumed)', acked '$(pointers acked)'"
[ "$(pointers rejected)" = 0 ] && [ "$(pointers recovered_by_sweep)" -ge 1 ] \
  && ok "/metrics: no pointer rejected; $(pointers recovered_by_sweep) hand-back(s) recovered by the sweep" \
  || fail "/metrics: rejected '$(pointers rejected)', recovered_by_sweep '$(pointers recovered_by_sweep)'"
for m in "$metrics" "$metrics2"; do
  echo "# completion pointers: $(echo "$m" | grep '^tasker_completion_pointers_total' | sed 's/tasker_completion_pointers_total//' | xargs)"
done
curl -s "http://127.0.0.1:$port/health" | tr -d ' \n' | grep -q '"completions":{[^}]*"consumers_up":2' \
  && ok "/health: checks.broker.completions, one consumer up per namespace" \
  || fail "/health broker: $(curl -s "http://127.0.0.1:$port/health")"

for d in d1 d2; do
  dt_stop $d TERM 15
  is "$DT_RC" 0 "daemon $d: SIGTERM → exit 0"
done
# The daemon acked every pointer it consumed, after its commit: none is left (or went back) in RabbitMQ.
left=$(amqp-get --url="$amqp" -q "tasker_completion_$NS" 2>&1)
case "$left" in *"queue is empty"*|"") ok "no message left in RabbitMQ's tasker_completion_$NS" ;; *) fail "completion pointer left in RabbitMQ: $left" ;; esac
is "$(cat "${DT_LOG[d1]}" "${DT_LOG[d2]}" | grep -Ec '^[0-9TZ:.-]+ error ')" 0 "no error lines in the daemons' logs"
echo "# rabbitmq: $TASKS tasks, $STEPS steps in $(secs_between "$t0" "$t1") s"
dt_finish
