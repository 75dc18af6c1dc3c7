#!/usr/bin/env bash
# 85_daemon_rabbitmq.sh — messaging.backend = rabbitmq end to end: a private broker
# (scripts/rabbitmq-sandbox), one daemon relaying dispatch messages from the PGMQ outbox to
# RabbitMQ with confirms, two workers consuming from RabbitMQ (--backend rabbitmq). A mix of
# linear, diamond and fan-out tasks completes; the broker is killed with -9 mid-run (/health/ready
# says not ready meanwhile) and started again; every task still completes, every step ran once,
# and no message is left in PGMQ's dispatch queue or in RabbitMQ. Skipped only where
# rabbitmq-server cannot start.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=rmq
TASKS=${RMQ_TASKS:-300}
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

# The sweep re-sends an enqueued step whose outbox message is gone after resend_grace; with RabbitMQ
# the relay archives it once the broker confirmed it, so a step still waiting in RabbitMQ past the
# grace gets a (fenced) duplicate. 300 s keeps the broker outage below it, so the archive proves
# one dispatch per attempt (60 s was not: beside 84 and 86 the restart waits for their broker
# starts — rabbitmq-sandbox starts one node at a time — and the run took 75 s).
export DT_WEB=true DT_RESEND_GRACE_SECS=300
DT_DAEMON_ENV="TASKER_MESSAGING_BACKEND=rabbitmq TASKER_AMQP_URL=$amqp" dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || fail "daemon ready within 20 s"
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
  fi
done

if dt_wait_done "$url" 120; then ok "every task terminal within 120 s"; else fail "every task terminal within 120 s ($(dt_states "$url"))"; fi
t1=$(now_ms)
is "$(ready_code)" 200 "/health/ready: 200 again after the broker came back"
dt_check_invariants "$url" "$NS" "$TASKS" "$STEPS"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.rejected_messages")" 0 "no rejected messages"
# Everything in RabbitMQ was consumed and acked: the queue is empty once the workers stop.
for w in w1 w2; do dt_stop "$w" TERM 15; done
left=$(amqp-get --url="$amqp" -q "tasker_dispatch_$NS" 2>&1)
case "$left" in *"queue is empty"*|"") ok "no message left in RabbitMQ's tasker_dispatch_$NS" ;; *) fail "message left in RabbitMQ: $left" ;; esac
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
pub=$(echo "$metrics" | sed -n 's/^tasker_relay_messages_total{outcome="published"} \([0-9]*\)$/\1/p')
[ "${pub:-0}" -ge "$STEPS" ] && ok "/metrics: $pub messages published (>= $STEPS steps)" || fail "/metrics published: '${pub:-}'"
echo "$metrics" | grep -q '^tasker_broker_connects_total [2-9]' && ok "/metrics: the link reconnected after the kill" \
  || fail "/metrics broker connects: $(echo "$metrics" | grep tasker_broker_connects_total)"
echo "# relay: $(echo "$metrics" | grep '^tasker_relay_messages_total' | sed 's/tasker_relay_messages_total//' | xargs)"

dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[d1]}")" 0 "no error lines in the daemon's log"
echo "# rabbitmq: $TASKS tasks, $STEPS steps in $(secs_between "$t0" "$t1") s"
dt_finish
