#!/usr/bin/env bash
# 90_demo.sh — `make demo` works from a clean state while the test harness's own PostgreSQL runs:
# scripts/demo starts a second sandbox (on another port), the daemon and a worker, creates its eight
# sample tasks through the HTTP API, prints a summary and stops everything. We check its exit
# status, that every task ended as the templates say it must (from the summary it prints: its
# PostgreSQL is gone once it exits), and that it left nothing running.
#
# The demo runs from a private tree under var/ whose scripts/ and etc/ are links to ours: the very
# same script, but its var/demo (database, logs) is a fresh one, so a developer's own var/demo —
# perhaps still running after DEMO_KEEP=1 — is neither reused nor stopped by this test.
#
# TEST_DEMO_BACKEND=rabbitmq (90_demo_rabbitmq.sh): the same demo and checks with
# DEMO_BACKEND=rabbitmq (`make demo BACKEND=rabbitmq`), plus that the dispatch went through its
# private broker and that the broker and its epmd are gone too. Skipped only where rabbitmq-server
# cannot start.
set -uo pipefail
unset DEMO_KEEP
backend=${TEST_DEMO_BACKEND:-pgmq}
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh
if [ "$backend" = rabbitmq ] && ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1; then
  skip "rabbitmq-server not installed (scripts/install-deps installs it)"
  finish; exit 0
fi

ROOT=$(pwd)
ABS_BIN=$(cd "${BIN:-bin}" && pwd)
T=$(mktemp -d "$ROOT/var/test-demo.XXXXXX")
chmod 755 "$T"   # the sandbox's data directory lives below; PostgreSQL's user must reach it
ln -s "$ROOT/scripts" "$T/scripts"
ln -s "$ROOT/etc" "$T/etc"
rdir=$T/var/demo/rabbitmq
cleanup() {
  # Only if the demo failed to stop its cluster (or broker) itself.
  "$ROOT/scripts/pg-sandbox" stop "$T/var/demo/pg" >/dev/null 2>&1 || true
  if [ -f "$rdir/ports" ]; then
    "$ROOT/scripts/rabbitmq-sandbox" stop "$rdir" >/dev/null 2>&1 || true
    case $(cat "$rdir/nodedir" 2>/dev/null) in /var/tmp/tasker-rabbitmq.*/node) rm -rf "$(dirname "$(cat "$rdir/nodedir")")" ;; esac
  fi
  if [ "$TESTS_FAILED" -gt 0 ]; then
    echo "# demo output and logs kept in $T"
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT

start=$(date +%s)
BIN=$ABS_BIN DEMO_BACKEND=$backend "$T/scripts/demo" >"$T/demo.out" 2>&1
rc=$?
if [ "$backend" = rabbitmq ] && [ "$rc" != 0 ] && grep -q '^demo: the RabbitMQ broker did not start' "$T/demo.out"; then
  skip "rabbitmq-server cannot start here: $(grep -m 1 '^rabbitmq-sandbox:' "$T/demo.out")"
  finish; exit 0
fi
is "$rc" 0 "scripts/demo exits 0 ($(( $(date +%s) - start )) s)"
if [ "$rc" != 0 ]; then
  sed 's/^/#   /' "$T/demo.out" | tail -n 40
  for f in "$T"/var/demo/daemon.log "$T"/var/demo/worker.log; do
    [ -f "$f" ] && { echo "# ---- $f"; tail -n 15 "$f" | sed 's/^/#   /'; }
  done
fi
# Without colours, for the greps below.
out=$(sed 's/\x1b\[[0-9;]*m//g' "$T/demo.out")

# Its own PostgreSQL, on a port other than the harness's.
demo_port=$(sed -n 's/^==> PostgreSQL: postgresql:\/\/[^@]*@[^:]*:\([0-9]*\)\/.*/\1/p' <<<"$out" | head -n 1)
harness_port=$(sed -n 's/^postgresql:\/\/[^@]*@[^:]*:\([0-9]*\)\/.*/\1/p' <<<"$SERVER_URL")
if [ -n "$demo_port" ] && [ "$demo_port" != "$harness_port" ]; then
  ok "the demo ran its own PostgreSQL (port $demo_port; the harness's is $harness_port)"
else
  fail "the demo's PostgreSQL port ('$demo_port') differs from the harness's ($harness_port)"
fi

if grep -q '^==> templates registered from etc/templates by the daemon' <<<"$out"; then ok "templates registered"; else fail "templates registered"; fi
# The daemon registered etc/templates itself (TASKER_TEMPLATE_PATH): YAML and JSON files, none refused.
is "$(sed -n 's/^  etc\/templates: \([0-9]*\) registered, \([0-9]*\) unchanged, \([0-9]*\) refused$/\1+\2 \3/p' <<<"$out" | awk -F'[+ ]' '{ print $1 + $2, $3 }')" "7 0" \
  "the daemon registered the 7 files of etc/templates (or found them unchanged), refusing none"
is "$(grep -Ec '^  (linear_pipeline|diamond|fan_out_fan_in|flaky_payment|conditional_approval|batch_processing|decision_batch)@1\.0\.0: [0-9]+ steps$' <<<"$out")" 7 \
  "GET /v1/templates lists them, the YAML ones (conditional_approval, batch_processing) among them"
is "$(grep -Ec '^  [a-z_]+ +[0-9a-f-]{36}$' <<<"$out")" 8 "8 tasks created through POST /v1/tasks"

# The "Tasks" table of the summary: task | template | state | steps | attempts | took_ms.
tasks=$(awk '/^Tasks$/ { on = 1; next } /^Steps/ { on = 0 } on && /\|/ && !/template/' <<<"$out" |
        awk -F'|' '{ for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i); print $2, $3, $4, $5, $6 }')
is "$(wc -l <<<"$tasks" | tr -d ' ')" 8 "the summary lists 8 tasks"
# template → "state steps attempts" every one of its tasks must show.
declare -A want=(
  [linear_pipeline]="complete 4 4"   # extract → transform → load → report
  [diamond]="complete 4 4"           # fetch → {score_credit, score_fraud} → decide
  [fan_out_fan_in]="complete 22 22"  # split → 20 shards → merge
  [flaky_payment]="complete 3 5"     # charge fails twice, succeeds on its third attempt
  [conditional_approval]="complete 4 4"  # validate → decision (amount 2500) → manager_approval → finalize
  [batch_processing]="complete 13 13"    # analyze → 10 batch workers (1000 rows / 100) → aggregate → report
)
declare -A count=([linear_pipeline]=2 [diamond]=2 [fan_out_fan_in]=1 [flaky_payment]=1 [conditional_approval]=1
                  [batch_processing]=1)
for tpl in "${!want[@]}"; do
  got=$(awk -v t="$tpl" '$1 == t { print $2, $3, $4 }' <<<"$tasks" | sort -u)
  n=$(awk -v t="$tpl" '$1 == t' <<<"$tasks" | wc -l | tr -d ' ')
  is "$n:$got" "${count[$tpl]}:${want[$tpl]}" "$tpl: ${count[$tpl]} task(s), each state/steps/attempts ${want[$tpl]}"
done
# The flaky step's history: two failed attempts sent to waiting_for_retry, then complete.
charge=$(awk '/^How the flaky charge step got there$/ { on = 1; next } on && /\|/' <<<"$out")
is "$(grep -c 'enqueued_as_error_for_orchestration *| *waiting_for_retry' <<<"$charge")" 2 \
  "flaky_payment/charge: two failures went to waiting_for_retry"
is "$(grep -c 'enqueued_for_orchestration *| *complete' <<<"$charge")" 1 "flaky_payment/charge: then it completed"
if grep -Eq '^==> all 8 tasks complete' <<<"$out"; then ok "the demo reports all 8 tasks complete"
else fail "the demo reports all 8 tasks complete"; fi

if [ "$backend" = rabbitmq ]; then
  # It says which backend ran, and the daemon's own counters show the dispatch went through the
  # broker: at least one confirmed publish per step attempt (the 8 tasks' 60; more only where a
  # confirm came late and the message was published again, which the claim fences).
  grep -Eq '^==> messaging: RabbitMQ, a private broker at amqp://[^ ]+ \(node under var/demo/rabbitmq\)$' <<<"$out" &&
    ok "the demo says it runs on its own RabbitMQ broker" || fail "the demo says it runs on its own RabbitMQ broker"
  read -r att pub conf nack < <(sed -n 's/^==> messaging backend rabbitmq: \([0-9]*\) step attempts; the daemon published \([0-9]*\) dispatch messages to RabbitMQ, the broker confirmed \([0-9]*\) (\([0-9]*\) nacked.*/\1 \2 \3 \4/p' <<<"$out")
  is "${att:-}" 60 "the summary counts the 60 step attempts of the 8 tasks"
  if [ -n "${pub:-}" ] && [ "$pub" -ge 60 ] && [ "$conf" -ge 60 ] && [ "$nack" = 0 ]; then
    ok "the daemon published $pub dispatch messages to RabbitMQ and the broker confirmed $conf (>= 60, none nacked)"
  else
    fail "published/confirmed/nacked over RabbitMQ: '${pub:-}' '${conf:-}' '${nack:-}' (want >= 60, >= 60, 0)"
  fi
  grep -Eq '^==> all 8 tasks complete over RabbitMQ' <<<"$out" && ok "the closing line names RabbitMQ" || fail "the closing line names RabbitMQ"
  # The broker is gone with its Erlang VM and its epmd (which would outlive the node).
  if "$ROOT/scripts/rabbitmq-sandbox" url "$rdir" >/dev/null 2>&1; then fail "the demo stopped its broker on exit"
  else ok "the demo stopped its broker on exit"; fi
  read -r _ _ epmd_port <"$rdir/ports" 2>/dev/null
  beam=$(pgrep -f "$rdir" 2>/dev/null | wc -l | tr -d ' ')
  epmd=$(for p in $(pgrep -x epmd 2>/dev/null); do
           tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "ERL_EPMD_PORT=${epmd_port:-none}" && echo "$p"; done | wc -l | tr -d ' ')
  is "$beam/$epmd" 0/0 "no broker process and no epmd of the demo still runs"
fi

# Nothing left behind: its PostgreSQL stopped, no daemon or worker of its own still running.
if "$ROOT/scripts/pg-sandbox" url "$T/var/demo/pg" >/dev/null 2>&1; then
  fail "the demo stopped its PostgreSQL on exit"
else
  ok "the demo stopped its PostgreSQL on exit"
fi
left=$(pgrep -f "$ABS_BIN/tasker-(orchestratord|worker) .*" 2>/dev/null | while read -r p; do
         [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$T" ] && echo "$p"; done | wc -l | tr -d ' ')
is "$left" 0 "no daemon or worker of the demo still runs"
finish
