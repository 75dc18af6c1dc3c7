#!/usr/bin/env bash
# 92_bench_rabbitmq_smoke.sh — `make bench BACKEND=rabbitmq` cannot rot: the smallest run of
# bench/run with BENCH_BACKEND=rabbitmq (one shape, phases of a second) against the harness's
# PostgreSQL and a private broker of its own. The JSON names the backend; the daemon relayed to the
# broker and the workers consumed from it; every task drained; the broker's CPU per step is there;
# bench/compare sets it beside a PGMQ result; the broker and its epmd are gone afterwards.
# 91_bench_smoke.sh covers every other key of the JSON. Skipped only where rabbitmq-server cannot start.
# make-check: long 135
# make-check: broker
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh

if ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1; then
  skip "rabbitmq-server not installed (scripts/install-deps installs it)"
  finish; exit 0
fi
D=$(mktemp -d "$PWD/var/test-bench-rmq.XXXXXX")
chmod 755 "$D"   # the broker's user (as root: rabbitmq) keeps its node under $D/rabbitmq
rmq=$D/rabbitmq
cleanup() {
  scripts/rabbitmq-sandbox stop "$rmq" >/dev/null 2>&1
  case $(cat "$rmq/nodedir" 2>/dev/null) in /var/tmp/tasker-rabbitmq.*/node) rm -rf "$(dirname "$(cat "$rmq/nodedir")")" ;; esac
  for db in tasker_bench_rmq_smoke tasker_bench_rmq_smoke_pgbench tasker_bench_rmq_smoke_probe; do
    PGOPTIONS="-c client_min_messages=warning" psql "$(db_url postgres)" -X -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  done
  if [ "$TESTS_FAILED" -gt 0 ]; then echo "# kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT

start=$(date +%s)
env -u TASKER_ENV -u TASKER_CONFIG_PATH -u BENCH_SCALE \
  DATABASE_URL="$SERVER_URL" BIN="${BIN:-bin}" BENCH_BACKEND=rabbitmq BENCH_RMQDIR="$rmq" BENCH_DB=tasker_bench_rmq_smoke \
  BENCH_OUT="$D/out.json" BENCH_RUN_DIR="$D/run" BENCH_SHAPES=linear BENCH_TASKS=10 BENCH_PROBE_TASKS=10 \
  BENCH_LIGHT_SECS=1 BENCH_LIGHT_RATE=5 BENCH_IDLE_SECS=1 BENCH_SUSTAIN_SECS=0 BENCH_PGBENCH_SECS=1 BENCH_PGBENCH_SCALE=1 \
  BENCH_POOL_MAX=2 BENCH_TIMEOUT=60 \
  bench/run >"$D/bench.out" 2>&1
rc=$?
if [ "$rc" != 0 ] && grep -q '^rabbitmq-sandbox: the node did not start' "$D/bench.out"; then
  skip "rabbitmq-server cannot start here: $(grep -A 3 '^rabbitmq-sandbox:' "$D/bench.out" | tail -n 3 | tr '\n' ' ')"
  finish; exit 0
fi
is "$rc" 0 "bench/run with BENCH_BACKEND=rabbitmq finishes ($(( $(date +%s) - start )) s)"
[ "$rc" = 0 ] || sed 's/^/#   /' "$D/bench.out" | tail -n 30

J=$D/out.json
jqt() {
  if jq -e "$1" "$J" >/dev/null 2>&1; then ok "$2"; else fail "$2 ($1 → $(jq -c "$1" "$J" 2>&1 | head -c 200))"; fi
}
jqt '.backend == "rabbitmq" and .config.daemon["messaging.backend"] == "rabbitmq"' "the JSON says the backend: rabbitmq"
jqt '.shapes.linear.throughput | .tasks == 10 and .tasks_complete == 10 and .steps == 40 and .steps_complete == 40' \
  "linear: the backlog of 10 tasks (40 steps) drained over RabbitMQ"
jqt '.shapes.linear.light | .tasks >= 2 and .tasks_complete == .tasks' "linear: every light-load task completed"
jqt '.shapes.linear | (.steps_per_sec > 0) and (.step_overhead_ms_p50 >= 0) and (.commits_per_step > 0)' \
  "linear: steps/s, step overhead and commits per step are there"
jqt '.shapes.linear.throughput.broker_cpu_us_per_step | type == "number" and . >= 0' "the broker's CPU per step is there"
log=$D/run/daemon-throughput-linear.log
grep -q 'messaging.backend = rabbitmq: relaying dispatch messages' "$log" && grep -q 'broker link up' "$log" &&
  ok "the daemon relayed dispatch messages to the private broker" || fail "the daemon's log names the relay and its link ($log)"
is "$(grep -l 'broker link up, consuming tasker_dispatch_bench' "$D"/run/worker-throughput-linear-*.log 2>/dev/null | wc -l | tr -d ' ')" 2 \
  "both workers consumed tasker_dispatch_bench from RabbitMQ"
grep -q 'backend rabbitmq' "$D/out.txt" && ok "the table's header names the backend" || fail "the table's header names the backend"

# bench/compare across the two backends: the same figures relabelled pgmq compare as equal, and
# each side is named by its backend.
jq '.backend = "pgmq" | .config.daemon["messaging.backend"] = "pgmq"' "$J" >"$D/pgmq.json"
out=$(bench/compare "$D/pgmq.json" "$J"); rc=$?
is "$rc" 0 "bench/compare PGMQ-result RabbitMQ-result: exit 0 on equal figures"
grep -q '^old: .* backend pgmq,' <<<"$out" && grep -q '^new: .* backend rabbitmq,' <<<"$out" &&
  ok "bench/compare names each result's backend" || fail "bench/compare names each result's backend: $(head -n 2 <<<"$out")"

# Nothing left behind: the broker and its epmd, the daemon's and workers' connections.
if scripts/rabbitmq-sandbox url "$rmq" >/dev/null 2>&1; then fail "the bench stopped its broker"; else ok "the bench stopped its broker"; fi
read -r _ _ epmd_port <"$rmq/ports" 2>/dev/null
left=$(for p in $(pgrep -x epmd 2>/dev/null); do
         tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "ERL_EPMD_PORT=${epmd_port:-none}" && echo "$p"; done | wc -l | tr -d ' ')
is "$(pgrep -f "$rmq" 2>/dev/null | wc -l | tr -d ' ')/$left" 0/0 "no broker process and no epmd of the bench still runs"
is "$(psql_at "$(db_url postgres)" "SELECT count(*) FROM pg_stat_activity WHERE datname = 'tasker_bench_rmq_smoke' AND application_name LIKE 'tasker-%'")" 0 \
  "no daemon or worker of the bench is still connected"
finish
