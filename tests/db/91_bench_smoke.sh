#!/usr/bin/env bash
# 91_bench_smoke.sh — `make bench` cannot rot: a tiny run of bench/run as `make bench` runs it, on
# a private PostgreSQL server that bench/run starts itself (no DATABASE_URL: scripts/pg-sandbox
# under a directory of this script's, pg_stat_statements preloaded; its output in a temporary
# directory, never bench/out/), must finish and write JSON with every figure docs/performance.md
# promises, each of them sane. The sizes are far too small to mean anything; only the plumbing is
# under test. The two dynamic shapes (decision, batch) must also have run as docs/performance.md
# defines them: the steps that exist, the branches chosen, the batch's sum.
# The server is the bench's alone because its commits-per-step figures read server-wide counters
# (xids, pg_stat_wal) that the scripts running beside this one would add to on the harness's
# server; so it need not run alone. BENCH_KEEP=1 leaves the server up for the checks on its
# databases below; the EXIT trap stops it, on failure too.
# make-check: long 200
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh

D=$(mktemp -d "${TMPDIR:-/tmp}/tasker-bench-smoke.XXXXXX")
PGD=$(own_pg_dir 91)
trap 'own_pg_forget "$PGD"; if [ "$TESTS_FAILED" -gt 0 ]; then echo "# kept $D"; else rm -rf "$D"; fi' EXIT
trap 'exit 130' INT TERM

latest_before=$(stat -c %Y.%s bench/out/latest.json 2>/dev/null || echo none)
start=$(date +%s)
env -u TASKER_ENV -u TASKER_CONFIG_PATH -u BENCH_SCALE -u DATABASE_URL \
  BIN="${BIN:-bin}" BENCH_PGDIR="$PGD" BENCH_KEEP=1 BENCH_DB=tasker_bench_smoke \
  BENCH_OUT="$D/out.json" BENCH_RUN_DIR="$D/run" \
  BENCH_TASKS=20 BENCH_FANOUT_TASKS=2 BENCH_BATCH_TASKS=2 BENCH_LIGHT_SECS=1 BENCH_LIGHT_RATE=8 BENCH_LIGHT_FANOUT_RATE=3 \
  BENCH_LIGHT_DECISION_RATE=8 BENCH_LIGHT_BATCH_RATE=3 \
  BENCH_IDLE_SECS=2 BENCH_SUSTAIN_SECS=4 BENCH_SUSTAIN_BUCKET_SECS=2 BENCH_SUSTAIN_BACKLOG=20 BENCH_PGBENCH_SECS=1 BENCH_PGBENCH_SCALE=1 BENCH_POOL_MAX=2 BENCH_TIMEOUT=60 \
  bench/run >"$D/bench.out" 2>&1
rc=$?
is "$rc" 0 "bench/run finishes ($(( $(date +%s) - start )) s)"
[ "$rc" = 0 ] || sed 's/^/#   /' "$D/bench.out" | tail -n 40

J=$D/out.json
if ! jq -e . "$J" >/dev/null 2>&1; then
  fail "bench/run wrote valid JSON to BENCH_OUT"
  finish
fi
ok "bench/run wrote valid JSON to BENCH_OUT"
is "$(stat -c %Y.%s bench/out/latest.json 2>/dev/null || echo none)" "$latest_before" "the smoke run left bench/out/latest.json alone"

# jqt EXPR DESCRIPTION: EXPR is true of the JSON.
jqt() {
  if jq -e "$1" "$J" >/dev/null 2>&1; then ok "$2"; else fail "$2 ($1 → $(jq -c "$1" "$J" 2>&1 | head -c 200))"; fi
}
num='type == "number"'
jqt ".pgbench_tps | $num and . > 0" "pgbench_tps is a positive number"
jqt ".pgbench.command | startswith(\"pgbench -n -N -c 8\")" "the ceiling is pgbench -N with 8 clients"
jqt '.config.shapes == ["linear", "diamond", "fanout", "decision", "batch"]' "every shape runs by default, the two dynamic ones included"
jqt '.config.consumed_messages == "archive"' "consumed messages are archived by default (BENCH_CONSUMED_MESSAGES)"
for s in linear diamond fanout decision batch; do
  S=".shapes.$s"
  jqt "$S | has(\"steps_per_sec\") and has(\"task_latency_ms_p50\") and has(\"task_latency_ms_p99\") and has(\"step_overhead_ms_p50\") and has(\"step_overhead_ms_p99\") and has(\"commits_per_step\")" \
    "$s: every required key is there"
  jqt "$S.steps_per_sec | $num and . > 0 and . < 1000000" "$s: steps_per_sec is sane"
  jqt "$S | (.task_latency_ms_p50 | $num and . > 0) and .task_latency_ms_p95 >= .task_latency_ms_p50 and .task_latency_ms_p99 >= .task_latency_ms_p95 and .task_latency_ms_p99 < 60000" \
    "$s: task latency 0 < p50 ≤ p95 ≤ p99 < 60 s"
  jqt "$S | (.step_overhead_ms_p50 | $num and . >= 0) and .step_overhead_ms_p99 >= .step_overhead_ms_p50 and .step_overhead_ms_p99 < 60000" \
    "$s: step overhead 0 ≤ p50 ≤ p99 < 60 s"
  jqt "$S | (.commits_per_step | $num and . > 0 and . < 100) and (.commits_per_step_light | $num and . > 0 and . < 1000)" \
    "$s: commits per step (full and light load) are sane"
  jqt "$S | (.write_commits_per_step | $num and . > 0 and . < 100) and .write_commits_per_step <= .commits_per_step" \
    "$s: write commits per step are sane and at most the commits"
  jqt "$S | (.daemon_rss_max_kb | $num and . > 1000) and (.daemon_cpu_us_per_step | $num and . >= 0)" \
    "$s: daemon peak RSS and CPU per step are there"
  want_tasks=20; steps=4
  case $s in fanout) want_tasks=2; steps=52 ;; decision) steps=5 ;; batch) want_tasks=2; steps=102 ;; esac
  jqt "$S.throughput | .tasks == $want_tasks and .tasks_complete == $want_tasks and .steps == $((want_tasks * steps)) and .steps_complete == .steps" \
    "$s: the backlog of $want_tasks tasks was drained completely"
  jqt "$S.light | .tasks >= 3 and .tasks_complete == .tasks and .step_overhead_samples > 0" \
    "$s: every light-load task completed"
done
jqt '.idle | (.daemon_xacts_per_sec | type == "number") and (.secs > 1)' "idle: the daemon's transactions per second are there"
jqt '.idle_daemon_queries_per_sec | type == "number"' "idle_daemon_queries_per_sec is there"
jqt '.sustained | .secs == 4 and .bucket_secs == 2 and (.steps_per_sec_by_bucket | length == 2 and all(type == "number" and . >= 0))' \
  "sustained: two whole buckets of steps/s"
jqt '.sustained | (.steps_per_sec_mean > 0) and (.tasks_created >= 20) and (.tables_at_end | length >= 2)' \
  "sustained: steps completed, the backlog was topped up, the hot tables' vacuum figures are there"
jqt '.server.settings.fsync == "on" and .server.settings.synchronous_commit == "on"' "measured with durability on"
jqt '.server.kind == "sandbox" and .server.pg_stat_statements == true' "measured on the server bench/run started, with pg_stat_statements"
jqt '([.shapes[].throughput | (.daemon_statements_per_step | type == "number" and . > 0) and (.worker_statements_per_step | type == "number" and . > 0)] | all) and (.idle.daemon_queries_per_sec | type == "number")' \
  "the statement-level figures (pg_stat_statements) are there"
jqt '.startup_xacts.daemon > 0 and .startup_xacts.workers > 0' "the start-up calibration ran"
jqt '.scale == null' "no scale point unless BENCH_SCALE=1"
# The ceiling probe ran as a phase of its own: every chain's 4 steps completed once, each message
# archived, and every shape's steps/s is given as a ratio to it and to pgbench.
jqt '.probe | .tasks == 20 and .steps == 80 and .steps_complete == 80 and .messages_archived == 80 and .messages_left == 0' \
  "probe: 20 chains of 4 steps, each step completed once and its message archived"
jqt '.probe_steps_per_sec | type == "number" and . > 0' "probe: steps/s is a positive number"
jqt '[.shapes[] | (.steps_per_sec_vs_probe | type == "number" and . > 0) and (.steps_per_sec_vs_pgbench | type == "number" and . > 0)] | all' \
  "every shape's steps/s is given as a ratio to the probe and to pgbench"
jqt '. as $r | [$r.shapes[] | ((.steps_per_sec_vs_probe - .steps_per_sec / $r.probe_steps_per_sec) | fabs) < 0.001] | all' \
  "each shape's ratio to the probe is its steps/s divided by the probe's"
jqt '[.shapes[] | (.throughput.steps_per_sec_timeline | length > 0) and (.light.step_overhead_ms_cdf | length == 101)] | all' \
  "every shape has its throughput timeline and its overhead's 101 percentiles (the charts' data)"
if grep -q 'ceiling probe: 80 steps' "$D/out.txt"; then ok "the table shows the probe"; else fail "the table shows the probe"; fi

# The charts: two SVGs next to the JSON, well-formed, one line per shape.
for c in throughput overhead; do
  svg=$D/out-$c.svg
  if [ -s "$svg" ] && xmllint --noout "$svg" 2>"$D/xmllint-$c.log"; then ok "$c chart: $svg is well-formed SVG"
  else fail "$c chart: $svg is well-formed SVG ($(head -c 300 "$D/xmllint-$c.log" 2>/dev/null))"; fi
  missing=""
  for n in "linear 4" diamond "1→50→1" decision "batch 1→100"; do grep -q "$n (" "$svg" 2>/dev/null || missing+=" $n"; done
  is "${missing:-none}" none "$c chart: a line for every shape"
done
grep -q 'sustained: diamond' "$D/out-throughput.svg" && ok "throughput chart: the sustained phase is drawn" || fail "throughput chart: the sustained phase is drawn"
out=$(GNUPLOT=/nonexistent/gnuplot bench/charts "$J" "$D/nognuplot" 2>&1); rc=$?
is "$rc/$(ls "$D"/nognuplot-* 2>/dev/null | wc -l)" "0/0" "bench/charts without gnuplot: exit 0, no chart"
case $out in *"warning: gnuplot not found"*) ok "bench/charts without gnuplot warns" ;; *) fail "bench/charts without gnuplot warns (got: $out)" ;; esac

# bench/compare: a result against itself is within the noise (exit 0); a copy with diamond's ratio to
# the probe halved and linear's light-load p50 tripled is flagged on exactly those two (exit 1).
out=$(bench/compare "$J" "$J"); rc=$?
is "$rc" 0 "bench/compare: a result against itself exits 0"
case $out in *"nothing worse than the noise"*) ok "bench/compare: a result against itself is within the noise" ;; *) fail "bench/compare: itself within the noise" ;; esac
jq '.shapes.diamond.steps_per_sec_vs_probe /= 2 | .shapes.linear.task_latency_ms_p50 *= 3 | .shapes.fanout.steps_per_sec_vs_probe *= 2' "$J" >"$D/worse.json"
out=$(bench/compare "$J" "$D/worse.json"); rc=$?
is "$rc" 1 "bench/compare: a worse result exits 1"
is "$(grep -c ' WORSE' <<<"$out")" 2 "bench/compare: exactly the two figures that got worse are flagged"
grep -Eq '^diamond\.steps_per_sec_vs_probe +[0-9.]+ +[0-9.]+ +0\.5 +WORSE' <<<"$out" && ok "bench/compare: diamond's ratio to the probe, halved, is WORSE with new÷old 0.5" \
  || fail "bench/compare: diamond's ratio flagged ($(grep steps_per_sec_vs_probe <<<"$out" | head -3))"
grep -Eq '^fanout\.steps_per_sec_vs_probe .* better' <<<"$out" && ok "bench/compare: a doubled ratio is better, not flagged" || fail "bench/compare: doubled ratio is better"
bench/compare "$J" /nonexistent.json >/dev/null 2>&1
is "$?" 2 "bench/compare: an unreadable result exits 2"
out=$(bench/compare --noise "$J" "$J" "$D/worse.json"); rc=$?
is "$rc" 0 "bench/compare --noise runs on three results"
grep -Eq '^  ratio: [0-9.]+ %' <<<"$out" && ok "bench/compare --noise gives the spread per class" || fail "bench/compare --noise gives the spread per class"

# The table: one line per figure, the JSON path at the end.
if grep -q 'steps/s' "$D/out.txt" && grep -q 'task latency p99 ms' "$D/out.txt" && grep -q "JSON: $J" "$D/out.txt"; then
  ok "the table was printed and saved next to the JSON"
else
  fail "the table was printed and saved next to the JSON"
fi
# The dynamic shapes ran as documented: each decision task has root, decide, the two default branches
# and the join (b3 never exists); each batch task has its plan, 100 one-item workers and a join that
# summed them all (0 + … + 99).
# The bench's server, which BENCH_KEEP=1 left up.
line=$(scripts/pg-sandbox url "$PGD") || { fail "bench/run's server is still up (BENCH_KEEP=1)"; finish; }
SERVER_URL=${line##*DATABASE_URL=}
bdb=$(db_url tasker_bench_smoke)
is "$(psql_at "$bdb" "SELECT (SELECT count(*) FROM pgmq.a_tasker_dispatch_bench) > 0 AND (SELECT count(*) FROM pgmq.a_tasker_completion_bench) > 0
      AND current_setting('tasker.consumed_messages') = 'archive'")" t \
   "the bench database archives consumed messages, as the JSON says (the setting is on the database)"
is "$(psql_at "$bdb" "SELECT count(*) FROM (SELECT t.task_uuid FROM tasker.tasks t JOIN tasker.task_templates n USING (task_template_uuid)
      JOIN tasker.workflow_steps s USING (task_uuid)
      WHERE n.name = 'bench_decision' AND t.state = 'complete' AND s.state = 'complete'
      GROUP BY t.task_uuid HAVING array_agg(s.name ORDER BY s.name) = '{b1,b2,decide,join,root}') x")" \
   "$(jq '.shapes.decision.throughput.tasks + .shapes.decision.light.tasks' "$J")" \
   "decision: every task ran root, decide, the two branches it chose (b1, b2) and the join"
is "$(psql_at "$bdb" "SELECT count(*) FROM tasker.tasks t JOIN tasker.task_templates n USING (task_template_uuid)
      JOIN tasker.workflow_steps s USING (task_uuid)
      WHERE n.name = 'bench_batch' AND s.name = 'join' AND s.state = 'complete'
        AND s.results @> '{\"batches\": 100, \"items_processed\": 100, \"sum\": 4950, \"failed_batches\": 0}'
        AND (SELECT count(*) FROM tasker.workflow_steps w WHERE w.task_uuid = t.task_uuid AND w.state = 'complete') = 102")" \
   "$(jq '.shapes.batch.throughput.tasks + .shapes.batch.light.tasks' "$J")" \
   "batch: every task ran its plan, 100 workers and a join that summed all 100 items"
# Its databases are there for inspection but its processes are gone (the EXIT trap stops the server).
left=$(psql_at "$(db_url postgres)" "SELECT count(*) FROM pg_stat_activity WHERE datname = 'tasker_bench_smoke' AND application_name LIKE 'tasker-%'")
is "$left" 0 "no daemon or worker of the bench is still connected"
finish
