#!/usr/bin/env bash
# 87_rabbitmq_blackhole.sh — a broker that accepts TCP connections and never answers (a hung
# host, a firewall that swallows the AMQP handshake) must not stall the daemon: its connect
# attempts run off the event loop, so the HTTP API and the PostgreSQL work keep going while an
# attempt waits out messaging.rabbitmq.confirm_timeout_ms (20 s here). /health/ready says the
# broker is down; tasks can still be created; when the listener goes away the attempt fails at
# once and is retried; SIGTERM ends the daemon cleanly. Needs no rabbitmq-server.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=hole
url=$(fresh_db tasker_blackhole) || { fail "fresh database tasker_blackhole"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }

# The silent broker: listens, lets the kernel complete the handshake, never reads or writes.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
time.sleep(600)' >"$DT_DIR/hole.port" &
hole=$!
for _ in $(seq 50); do [ -s "$DT_DIR/hole.port" ] && break; sleep 0.1; done
hport=$(cat "$DT_DIR/hole.port")
[ -n "$hport" ] && ok "a silent listener on port $hport" || { fail "start the silent listener"; finish; exit 1; }

export DT_WEB=true
conf=$(dt_conf d1 "$url")
cat >>"$conf" <<CONF
messaging {
    backend = "rabbitmq"
    rabbitmq {
        url = "amqp://guest:guest@127.0.0.1:$hport/%2F"
        confirm_timeout_ms = 20000
    }
}
CONF
dt_start_daemon d1 "$url"
dt_wait_log d1 'listening' 20 && ok "daemon up" || fail "daemon up within 20 s"
port=$(dt_http_port d1)
# Every request must be answered while the connect attempt hangs (the old, on-loop connect held
# the loop for the full 20 s).
answered=0 slowest=0
for i in $(seq 8); do
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "http://127.0.0.1:$port/health/live")
  case "$t" in 200\ *) answered=$((answered + 1)) ;; esac
  sleep 0.5
done
is "$answered" 8 "/health/live answered 8 of 8 times during the hung connect attempt (4 s of it)"
is "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/health/ready")" 503 \
  "/health/ready: 503 while the broker has not answered"
uuid=$(curl -s --max-time 5 -H 'Content-Type: application/json' -d "{\"name\": \"e2e_linear\", \"namespace\": \"$NS\", \"version\": \"1.0.0\", \"context\": {}}" \
  "http://127.0.0.1:$port/v1/tasks" | jq -r '.task_uuid // empty')
[ -n "$uuid" ] && ok "a task is created over HTTP meanwhile" || fail "create a task during the hung connect"
is "$(dt_log d1 | grep -c 'broker link up')" 0 "the link is not up (the attempt is still waiting)"
kill "$hole" 2>/dev/null; wait "$hole" 2>/dev/null
dt_wait_log d1 'broker link down: .*retrying' 15 && ok "the listener gone: the attempt fails and is retried" \
  || fail "no 'broker link down … retrying' line within 15 s"
t0=$(now_ms)
dt_stop d1 TERM 15
is "$DT_RC" 0 "SIGTERM → exit 0"
[ $(( $(now_ms) - t0 )) -lt 10000 ] && ok "shutdown did not wait out the connect timeout" \
  || fail "shutdown took $(( $(now_ms) - t0 )) ms"
dt_finish
