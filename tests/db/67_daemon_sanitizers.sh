#!/usr/bin/env bash
# 67_daemon_sanitizers.sh — the daemon's code paths under memory checkers. (1) An end-to-end run
# (200 mixed tasks, plus retries, a permanently failing task, malformed completion messages, a
# SIGHUP reload, HTTP API traffic with bad requests and a cancel, and every daemon connection
# killed mid-run) with the ASan/UBSan build of the
# daemon and the worker (`make SANITIZE=1`, built here if needed): no ASan/UBSan report in any log,
# and LeakSanitizer finds no leak at the daemon's exit (exit status 0). (2) The release daemon under
# valgrind --leak-check=full for a short run with the same disturbances: no invalid access, no
# definite leak. (scripts/install-deps installs valgrind; without it this half fails.)
# make-check: long 60
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

# ---- the sanitizer build ------------------------------------------------------------------------
case "$BIN" in
  */asan) ASAN_BIN=$BIN ;;
  *)
    ASAN_BIN=bin/asan
    if make SANITIZE=1 all >"$DT_DIR/make-asan.log" 2>&1; then
      ok "make SANITIZE=1 builds $ASAN_BIN"
    else
      fail "make SANITIZE=1 (see below)"; tail -n 20 "$DT_DIR/make-asan.log" | sed 's/^/#   /'; finish; exit 1
    fi
    ;;
esac
# Sanitizer reports go to the process's stderr, i.e. its log. halt_on_error: a report ends the run.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=report_objects=0

# disturb URL NS NAME: the extra paths of a run — failures with retries, a permanent failure,
# malformed completion messages, SIGHUP, and the daemon's connections terminated (it reconnects).
register_failing() {
  psql "$1" -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT tasker.register_task_template('{"name": "san_flaky", "namespace_name": "$2", "version": "1.0.0",
  "steps": [{"name": "try", "handler": {"callable": "fail", "initialization": {"succeed_on_attempt": 2}},
             "retry": {"retryable": true, "max_attempts": 3, "backoff_base_ms": 100, "max_backoff_ms": 1000}},
            {"name": "then", "handler": {"callable": "echo"}, "dependencies": ["try"]}]}');
SELECT tasker.register_task_template('{"name": "san_broken", "namespace_name": "$2", "version": "1.0.0",
  "steps": [{"name": "never", "handler": {"callable": "fail", "initialization": {"retryable": false, "message": "broken on purpose"}}},
            {"name": "unreached", "handler": {"callable": "noop"}, "dependencies": ["never"]}]}');
SQL
}
disturb() {
  local url=$1 ns=$2 name=$3
  psql_at "$url" "SELECT count(*) FROM generate_series(1, 5) i,
                  LATERAL tasker.create_task(jsonb_build_object('name', 'san_flaky', 'namespace', '$ns', 'context', jsonb_build_object('i', i))) c" >/dev/null
  psql_at "$url" "SELECT task_uuid FROM tasker.create_task('{\"name\": \"san_broken\", \"namespace\": \"$ns\"}')" >/dev/null
  psql_at "$url" "SELECT pgmq.send('tasker_completion_$ns', '{\"garbage\": true}'), pgmq.send('tasker_completion_$ns', '[1]'),
                         pgmq.send('tasker_completion_$ns', jsonb_build_object('step_uuid', gen_random_uuid(), 'attempt', 1))" >/dev/null
  kill -HUP "${DT_PID[$name]}"
  sleep 0.5
  psql_at "$url" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE application_name LIKE 'tasker-orchestratord%' AND pid <> pg_backend_pid()
                    AND datname = current_database()"
}
# http_traffic NAME NS: drive the HTTP API of daemon NAME (curl is required): health, metrics,
# tasks created, read, listed and cancelled, and bad requests. Prints one summary line.
http_traffic() {
  local port base codes="" uuid code i
  command -v curl >/dev/null || { fail "curl is installed (scripts/install-deps installs it): no HTTP traffic"; return 1; }
  port=$(dt_http_port "$1")
  [ -n "$port" ] || { fail "$1: HTTP API port in the log"; return 1; }
  base="http://127.0.0.1:$port"
  hit() { code=$(curl -s -o "$DT_DIR/http.body" -w '%{http_code}' "$@"); codes="$codes $code"; }
  hit "$base/health"; hit "$base/health/live"; hit "$base/health/ready"; hit "$base/metrics"
  for i in 1 2 3 4 5; do
    hit -X POST -H 'Content-Type: application/json' \
      -d '{"name": "e2e_diamond", "namespace": "'"$2"'", "context": {"via": "http", "i": '"$i"'}}' "$base/v1/tasks"
  done
  uuid=$(sed -n 's/.*"task_uuid" *: *"\([0-9a-f-]*\)".*/\1/p' "$DT_DIR/http.body" | head -n 1)
  hit "$base/v1/tasks/$uuid"; hit "$base/v1/tasks/$uuid/workflow_steps"; hit "$base/v1/tasks?per_page=5"
  hit "$base/v1/templates"; hit "$base/v1/dlq"
  hit -X POST -d '{"name":' "$base/v1/tasks"                                   # malformed JSON
  hit -X POST -d '{"name": "nope", "namespace": "'"$2"'"}' "$base/v1/tasks"     # unknown template
  hit -X POST -d '[1, 2]' "$base/v1/tasks"                                     # not an object
  hit "$base/v1/nowhere"; hit -X PUT "$base/v1/tasks"
  hit -X POST -d '{"name": "e2e_linear", "namespace": "'"$2"'", "context": {"via": "http", "cancel": true}}' "$base/v1/tasks"
  uuid=$(sed -n 's/.*"task_uuid" *: *"\([0-9a-f-]*\)".*/\1/p' "$DT_DIR/http.body" | head -n 1)
  hit -X DELETE "$base/v1/tasks/$uuid"
  echo "# $1: HTTP status codes:$codes"
  [[ "$codes" == " 200 200 200 200 201 201 201 201 201 200 200 200 200 200 400 404 400 404 405 201 "* ]] &&
    ok "$1: HTTP API answered every request as expected" || fail "$1: HTTP API answers (got$codes)"
}

# expect_failing_outcome URL: the flaky tasks completed on attempt 2; the broken one is blocked.
expect_failing_outcome() {
  is "$(psql_at "$1" "SELECT count(*) FILTER (WHERE t.state = 'complete' AND s.attempts = 2) || '/' || count(*)
                      FROM tasker.tasks t JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid AND s.name = 'try'")" "5/5" \
    "$2: 5 flaky tasks complete, each on its second attempt"
  is "$(psql_at "$1" "SELECT t.state || ' ' || s.state FROM tasker.tasks t JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid AND s.name = 'never'")" \
    "blocked_by_failures error" "$2: the broken task is blocked_by_failures"
  is "$(psql_at "$1" "SELECT count(*) FROM tasker.rejected_messages")" 3 "$2: 3 malformed messages rejected"
}
# all_settled URL: every task complete except the broken one, blocked (and one maybe cancelled over HTTP).
all_settled() {
  [ "$(psql_at "$1" "SELECT count(*) FROM tasker.tasks WHERE state NOT IN ('complete', 'blocked_by_failures', 'cancelled')")" = 0 ]
}
wait_settled() {
  local deadline=$(( $(now_ms) + $2 * 1000 ))
  until all_settled "$1"; do [ "$(now_ms)" -lt "$deadline" ] || return 1; sleep 0.1; done
}

# ---- 1. ASan/UBSan end to end ---------------------------------------------------------------------
NS=san
TASKS=200
url=$(fresh_db tasker_san) || { fail "fresh database tasker_san"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
register_failing "$url" "$NS" || fail "register the failing templates"

DT_WEB=true dt_conf asan_d1 "$url" >/dev/null
dt_start_daemon asan_d1 "$url" "$ASAN_BIN"
dt_wait_ready asan_d1 30 && ok "ASan daemon ready" || fail "ASan daemon ready within 30 s"
DT_WORKER_BIN=$ASAN_BIN dt_start_worker asan_w1 "$url" "$NS" --concurrency 20 --poll-ms 100
DT_WORKER_BIN=$ASAN_BIN dt_start_worker asan_w2 "$url" "$NS" --concurrency 20 --poll-ms 100
t0=$(now_ms)
dt_create "$url" "$NS" $((TASKS / 2)) san-1 >/dev/null
http_traffic asan_d1 "$NS"
killed=$(disturb "$url" "$NS" asan_d1)
echo "# terminated $killed daemon connections mid-run"
dt_create "$url" "$NS" $((TASKS / 2)) san-2 >/dev/null
if wait_settled "$url" 90; then ok "ASan run: every task settled within 90 s"; else fail "ASan run: every task settled within 90 s ($(dt_states "$url"))"; fi
echo "# ASan run: $((TASKS + 12)) tasks in $(secs_between "$t0" "$(now_ms)") s"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks t JOIN tasker.task_templates tt USING (task_template_uuid)
                      WHERE tt.name LIKE 'e2e_%' AND t.state = 'complete' AND t.context->>'via' IS NULL")" "$TASKS" \
  "ASan run: all $TASKS e2e tasks complete"
expect_failing_outcome "$url" "ASan run"
dt_wait_log asan_d1 'configuration reloaded' 5 && ok "ASan run: SIGHUP reload happened" || fail "ASan run: SIGHUP reload happened"
dt_log asan_d1 | grep -Eq 'connection lost|database unreachable' && ok "ASan run: the daemon saw its connections die (and recovered)" ||
  fail "ASan run: the daemon saw its connections die"
dt_stop asan_d1 TERM 30
is "$DT_RC" 0 "ASan daemon: SIGTERM → exit 0 (LeakSanitizer found no leak at exit)"
for w in asan_w1 asan_w2; do
  dt_stop "$w" TERM 30
  is "$DT_RC" 0 "ASan worker $w: SIGTERM → exit 0 (no leak at exit)"
done
dt_no_sanitizer_reports asan_d1 asan_w1 asan_w2

# ---- 2. valgrind ------------------------------------------------------------------------------
if ! command -v valgrind >/dev/null 2>&1; then
  fail "valgrind is not installed (scripts/install-deps installs it)"
  dt_finish
  exit 1
fi
unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
# valgrind needs the release build (it cannot run ASan binaries); build it when this run is of bin/asan.
VG_BIN=bin
if [ "$ASAN_BIN" = "$BIN" ]; then
  make all >"$DT_DIR/make-release.log" 2>&1 || { fail "make (release build for valgrind)"; finish; exit 1; }
fi
NS=vg
url=$(fresh_db tasker_vg) || { fail "fresh database tasker_vg"; finish; exit 1; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
register_failing "$url" "$NS" || fail "register the failing templates"
VG_RC=99
DT_WEB=true dt_conf vg_d1 "$url" >/dev/null
DT_DAEMON_WRAP="valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --error-exitcode=$VG_RC --num-callers=30" \
  dt_start_daemon vg_d1 "$url" "$VG_BIN"
dt_wait_ready vg_d1 60 && ok "daemon under valgrind ready" || fail "daemon under valgrind ready within 60 s"
DT_WORKER_BIN=$VG_BIN dt_start_worker vg_w1 "$url" "$NS" --concurrency 20 --poll-ms 100
t0=$(now_ms)
dt_create "$url" "$NS" 30 vg-1 >/dev/null
http_traffic vg_d1 "$NS"
disturb "$url" "$NS" vg_d1 >/dev/null
dt_create "$url" "$NS" 30 vg-2 >/dev/null
if wait_settled "$url" 90; then ok "valgrind run: every task settled within 90 s"; else fail "valgrind run: every task settled within 90 s ($(dt_states "$url"))"; fi
echo "# valgrind run: 72 tasks in $(secs_between "$t0" "$(now_ms)") s"
expect_failing_outcome "$url" "valgrind run"
dt_stop vg_d1 TERM 60
is "$DT_RC" 0 "daemon under valgrind: exit 0 (valgrind exits $VG_RC on an error or a definite leak)"
summary=$(dt_log vg_d1 | grep -E 'ERROR SUMMARY:' | tail -n 1)
echo "# valgrind: $summary"
[[ "$summary" == *"ERROR SUMMARY: 0 errors"* ]] && ok "valgrind: 0 errors" || fail "valgrind: 0 errors"
dt_log vg_d1 | grep -E 'definitely lost|indirectly lost|possibly lost|still reachable' | sed 's/^/#   /'
dt_stop vg_w1 TERM 15
dt_finish
