# shellcheck shell=bash
# daemon_lib.sh — helpers of the end-to-end daemon tests (tests/db/6*_daemon_*.sh): real
# tasker-orchestratord and tasker-worker processes against the sandbox, their configs and logs in a
# temporary directory, templates of mixed shapes, and the invariants every run must keep.
# Sourced after tests/lib.sh.

# The sandbox the harness started. Its port can change if it is restarted and another process took
# the old one meanwhile: always take the URL from the sandbox. (A test that stops its server runs
# one of its own: own_pg_dir in tests/lib.sh.)
DT_SANDBOX=${TASKER_TEST_PGDIR:-var/test-pg}
if dt_line=$(scripts/pg-sandbox url "$DT_SANDBOX" 2>/dev/null); then
  SERVER_URL=${dt_line##*DATABASE_URL=}
fi
export SERVER_URL
# Nothing from the caller's environment may change the daemons' configuration or logging.
unset TASKER_ENV TASKER_CONFIG_PATH TASKER_WEB_BIND_ADDRESS JOURNAL_STREAM NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID

DT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tasker-$(basename "$0" .sh).XXXXXX")
declare -gA DT_PID=()     # name → pid of every process we started (daemons, workers, helpers)
declare -gA DT_JOB=()     # name → pid of the subshell that waits for it (dt_spawn), for its status
declare -gA DT_LOG=()     # name → its log file
declare -gA DT_LOG_FROM=()  # name → first line of its log written by the latest start
# shellcheck disable=SC2034  # (read by the test scripts)
DT_RC=                    # exit status of the last process dt_stop/dt_wait_exit waited for

# Lines that mean a sanitizer or the C library found a memory error.
DT_SAN_PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|double free|free\(\): invalid|malloc\(\): corrupted|stack smashing'

now_ms() { date +%s%3N; }
# secs_between A B: seconds (3 decimals) from epoch ms A to epoch ms B.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1000 }'; }

# dt_cleanup: stop everything we started (TERM, then KILL after 5 s); on failure print the logs'
# tails and keep the directory. Installed as the EXIT trap.
dt_cleanup() {
  local name pid n
  for name in "${!DT_PID[@]}"; do
    pid=${DT_PID[$name]}
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  for name in "${!DT_PID[@]}"; do
    pid=${DT_PID[$name]}
    for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "# $name (pid $pid) ignored SIGTERM for 5 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    { wait "${DT_JOB[$name]:-$pid}"; } 2>/dev/null
  done
  DT_PID=()
  DT_JOB=()
  if [ "${TESTS_FAILED:-0}" -gt 0 ] || [ -n "${DT_KEEP:-}" ]; then
    for name in "${!DT_LOG[@]}"; do
      echo "# ---- last lines of $name (${DT_LOG[$name]})"
      tail -n 25 "${DT_LOG[$name]}" 2>/dev/null | sed 's/^/#   /'
    done
    echo "# logs kept in $DT_DIR"
  else
    rm -rf "$DT_DIR"
  fi
}
trap dt_cleanup EXIT
trap 'exit 130' INT TERM

# dt_conf NAME URL: write $DT_DIR/NAME.conf, a complete daemon configuration with small pools and
# short intervals; prints its path. Overrides (shell variables): DT_LOG_LEVEL, DT_MAX_CONN,
# DT_MIN_CONN, DT_SWEEP_SECS, DT_SHUTDOWN_SECS, DT_COMPLETIONS_MS, DT_COMPLETIONS_IDLE_MS, DT_POLL_MS,
# DT_POLL_IDLE_MS, DT_STATEMENT_TIMEOUT_MS, DT_ACQUIRE_SECS, DT_BREAKER_FAILURES, DT_WEB (true: the
# HTTP API on 127.0.0.1, any free port; dt_http_port reads it from the log).
dt_conf() {
  local f="$DT_DIR/$1.conf"
  cat >"$f" <<CONF
# $1: written by $(basename "$0")
environment = "test"
database {
    url = "$2"
    pool {
        max_connections = ${DT_MAX_CONN:-6}
        min_connections = ${DT_MIN_CONN:-2}
        acquire_timeout_secs = ${DT_ACQUIRE_SECS:-2}
        reconnect_initial_ms = 50
        reconnect_max_ms = 500
        breaker_failure_threshold = ${DT_BREAKER_FAILURES:-5}
        breaker_open_secs = 1
        statement_timeout_ms = ${DT_STATEMENT_TIMEOUT_MS:-0}
    }
}
orchestration {
    processor_id = "$1"
    namespace_refresh_secs = 1
    shutdown_timeout_secs = ${DT_SHUTDOWN_SECS:-5}
    completions {
        interval_ms = ${DT_COMPLETIONS_MS:-200}
        idle_interval_ms = ${DT_COMPLETIONS_IDLE_MS:-1000}
        batch_size = 100
        visibility_timeout_secs = 5
    }
    poller {
        interval_ms = ${DT_POLL_MS:-100}
        idle_interval_ms = ${DT_POLL_IDLE_MS:-500}
        batch_size = 100
    }
    sweeper {
        interval_secs = ${DT_SWEEP_SECS:-1}
        resend_grace_secs = ${DT_RESEND_GRACE_SECS:-2}
        reevaluate_after_secs = 2
    }
}
web {
    enabled = ${DT_WEB:-false}
    bind_address = "127.0.0.1:0"
}
log {
    level = "${DT_LOG_LEVEL:-info}"
}
CONF
  echo "$f"
}

# dt_log_mark NAME: a new run of NAME starts: mark its log, and have dt_log/dt_wait_log look only
# at what follows.
dt_log_mark() {
  DT_LOG[$1]="$DT_DIR/$1.log"
  echo "=== $(date '+%T.%3N') start" >>"${DT_LOG[$1]}"
  DT_LOG_FROM[$1]=$(( $(wc -l <"${DT_LOG[$1]}") + 1 ))
}

# dt_log_skip NAME: from now on dt_log/dt_wait_log look only at lines NAME writes after this.
dt_log_skip() { DT_LOG_FROM[$1]=$(( $(wc -l <"${DT_LOG[$1]}") + 1 )); }

# dt_log NAME: the log of NAME's latest run (or since dt_log_skip).
dt_log() { tail -n +"${DT_LOG_FROM[$1]:-1}" "${DT_LOG[$1]}" 2>/dev/null; }

# dt_spawn NAME LOG CMD…: run CMD in the background, its output appended to LOG; DT_PID[NAME] is
# its pid. A subshell waits for it and keeps its exit status for dt_wait_exit, so the test's shell
# never reports "Killed" lines of its own when a test kills it.
dt_spawn() {
  local name=$1 log=$2 n
  shift 2
  rm -f "$DT_DIR/$name.pid" "$DT_DIR/$name.rc"
  ( "$@" >>"$log" 2>&1 &
    echo $! >"$DT_DIR/$name.pid.tmp" && mv "$DT_DIR/$name.pid.tmp" "$DT_DIR/$name.pid"
    wait $!
    echo $? >"$DT_DIR/$name.rc" ) 2>/dev/null &   # (the subshell's own stderr: its "Killed" notices)
  DT_JOB[$name]=$!
  for n in $(seq 500); do [ -s "$DT_DIR/$name.pid" ] && break; sleep 0.01; done
  DT_PID[$name]=$(cat "$DT_DIR/$name.pid")
}

# dt_start_daemon NAME URL [BINDIR]: run a daemon with dt_conf's configuration (written unless
# $DT_DIR/NAME.conf exists) in the background; its output goes to $DT_DIR/NAME.log (appended, so a
# restart keeps the first run's lines). Extra environment: DT_DAEMON_ENV (words "K=V …"), and
# DT_DAEMON_WRAP (a command line to run it under, e.g. valgrind …).
dt_start_daemon() {
  local name=$1 url=$2 bin=${3:-$BIN} conf="$DT_DIR/$1.conf"
  [ -f "$conf" ] || dt_conf "$name" "$url" >/dev/null
  dt_log_mark "$name"
  # shellcheck disable=SC2086
  dt_spawn "$name" "${DT_LOG[$name]}" \
    env DATABASE_URL="$url" ${DT_DAEMON_ENV:-} ${DT_DAEMON_WRAP:-} "$bin/tasker-orchestratord" -c "$conf"
}

# dt_start_worker NAME URL NS [worker options…]: a tasker-worker for namespace NS with worker id NAME.
dt_start_worker() {
  local name=$1 url=$2 ns=$3
  shift 3
  dt_log_mark "$name"
  dt_spawn "$name" "${DT_LOG[$name]}" \
    env DATABASE_URL="$url" "${DT_WORKER_BIN:-$BIN}/tasker-worker" --namespace "$ns" --worker-id "$name" "$@"
}

dt_alive() { [ -n "${DT_PID[$1]:-}" ] && kill -0 "${DT_PID[$1]}" 2>/dev/null; }

# dt_wait_log NAME REGEX SECS: wait until the log of NAME's latest run matches REGEX (grep -E);
# false on timeout.
dt_wait_log() {
  local deadline=$(( $(now_ms) + $3 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    dt_log "$1" | grep -E "$2" >/dev/null && return 0   # (not -q: tail would get SIGPIPE)
    sleep 0.05
  done
  return 1
}

# dt_log_time NAME REGEX: epoch ms of the first line of NAME's log (latest run, or since
# dt_log_skip) matching REGEX, from the line's own timestamp; empty if none.
dt_log_time() {
  local stamp
  stamp=$(dt_log "$1" | grep -E "$2" | head -n 1 | awk '{ print $1 }')
  [ -n "$stamp" ] && date -d "$stamp" +%s%3N
}

# dt_http_port NAME: the port NAME's HTTP API listens on (from its log), empty if none.
dt_http_port() { dt_log "$1" | sed -n 's/.*HTTP API listening on .* (port \([0-9]*\)).*/\1/p' | head -n 1; }

# dt_cpu_ms NAME: CPU time (user + system, ms) NAME has used so far (from /proc; empty if gone).
dt_cpu_ms() {
  local hz; hz=$(getconf CLK_TCK)
  awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%d", ($12 + $13) * 1000 / hz }' "/proc/${DT_PID[$1]}/stat" 2>/dev/null
}

# dt_wait_ready NAME [SECS]: the daemon logged that it is ready (pool and LISTEN up).
dt_wait_ready() { dt_wait_log "$1" 'ready: pool and LISTEN connections are up' "${2:-20}"; }

# dt_wait_exit NAME SECS: wait for NAME to exit; DT_RC = its exit status (128+N for signal N), or
# "timeout" (it still runs).
dt_wait_exit() {
  local pid=${DT_PID[$1]:-} deadline=$(( $(now_ms) + $2 * 1000 ))
  if [ -z "$pid" ]; then DT_RC=gone; return 0; fi   # already reaped (or never started)
  while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then DT_RC=timeout; return 1; fi
  if [ -n "${DT_JOB[$1]:-}" ]; then
    { wait "${DT_JOB[$1]}"; } 2>/dev/null
    DT_RC=$(cat "$DT_DIR/$1.rc" 2>/dev/null || echo unknown)
    unset "DT_JOB[$1]"
  else
    # shellcheck disable=SC2034
    { wait "$pid"; DT_RC=$?; } 2>/dev/null
  fi
  unset "DT_PID[$1]"
  return 0
}

# dt_stop NAME [SIGNAL] [SECS]: signal NAME (default TERM) and wait for it (default 15 s).
dt_stop() {
  local sig=${2:-TERM}
  [ -n "${DT_PID[$1]:-}" ] && kill -"$sig" "${DT_PID[$1]}" 2>/dev/null
  dt_wait_exit "$1" "${3:-15}"
}

# dt_kill9 NAME: SIGKILL and reap.
dt_kill9() { [ -n "${DT_PID[$1]:-}" ] && kill -KILL "${DT_PID[$1]}" 2>/dev/null; dt_wait_exit "$1" 10; }

# ---- templates and tasks ------------------------------------------------------------------------

# dt_register URL NS [HANDLER] [RETRY]: register three templates in NS: e2e_linear (a → b → c → d),
# e2e_diamond (a → {b, c} → d) and e2e_fanout (root → m01…m50 → join). Every step runs HANDLER
# (default noop) except the last step of each (d, join), which runs echo: its result carries the
# results of all its ancestors, so a check can see it ran after every one of them. RETRY is the
# steps' retry object (JSON, default: 3 attempts, backoff from 100 ms).
dt_register() {
  local url=$1 ns=$2 handler=${3:-noop} retry=${4:-'{"retryable": true, "max_attempts": 3, "backoff": "exponential", "backoff_base_ms": 100, "max_backoff_ms": 1000}'}
  psql "$url" -X -q -v ON_ERROR_STOP=1 -v ns="$ns" -v handler="$handler" -v retry="$retry" >/dev/null <<'SQL'
CREATE TEMP VIEW s AS SELECT :'handler'::text AS h, :'retry'::jsonb AS r, :'ns'::text AS ns;
SELECT tasker.register_task_template(jsonb_build_object(
  'name', 'e2e_linear', 'namespace_name', ns, 'version', '1.0.0', 'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', jsonb_build_object('callable', h), 'retry', r),
    jsonb_build_object('name', 'b', 'handler', jsonb_build_object('callable', h), 'retry', r, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'c', 'handler', jsonb_build_object('callable', h), 'retry', r, 'dependencies', jsonb_build_array('b')),
    jsonb_build_object('name', 'd', 'handler', jsonb_build_object('callable', 'echo'), 'retry', r, 'dependencies', jsonb_build_array('c')))))
FROM s;
SELECT tasker.register_task_template(jsonb_build_object(
  'name', 'e2e_diamond', 'namespace_name', ns, 'version', '1.0.0', 'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', jsonb_build_object('callable', h), 'retry', r),
    jsonb_build_object('name', 'b', 'handler', jsonb_build_object('callable', h), 'retry', r, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'c', 'handler', jsonb_build_object('callable', h), 'retry', r, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'd', 'handler', jsonb_build_object('callable', 'echo'), 'retry', r, 'dependencies', jsonb_build_array('b', 'c')))))
FROM s;
SELECT tasker.register_task_template(jsonb_build_object(
  'name', 'e2e_fanout', 'namespace_name', ns, 'version', '1.0.0', 'steps',
  jsonb_build_array(jsonb_build_object('name', 'root', 'handler', jsonb_build_object('callable', h), 'retry', r))
  || (SELECT jsonb_agg(jsonb_build_object('name', format('m%s', lpad(i::text, 2, '0')),
                       'handler', jsonb_build_object('callable', h), 'retry', r,
                       'dependencies', jsonb_build_array('root')) ORDER BY i)
      FROM generate_series(1, 50) i)
  || jsonb_build_array(jsonb_build_object('name', 'join', 'handler', jsonb_build_object('callable', 'echo'), 'retry', r,
       'dependencies', (SELECT jsonb_agg(format('m%s', lpad(i::text, 2, '0')) ORDER BY i) FROM generate_series(1, 50) i)))))
FROM s;
SQL
}

# dt_create URL NS COUNT TAG [FANOUT_EVERY]: create COUNT tasks in one transaction, cycling
# linear, diamond, linear, diamond, … with every FANOUT_EVERY-th (default 10th) a fan-out. TAG
# makes contexts (so identities) unique across calls. Prints the number created.
dt_create() {
  psql_at "$1" "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $3) i,
    LATERAL tasker.create_task(jsonb_build_object(
      'name', CASE WHEN i % ${5:-10} = 0 THEN 'e2e_fanout' WHEN i % 2 = 0 THEN 'e2e_diamond' ELSE 'e2e_linear' END,
      'namespace', '$2', 'initiator', 'e2e', 'context', jsonb_build_object('tag', '$4', 'i', i))) c"
}

# dt_expected_steps COUNT [FANOUT_EVERY]: how many steps dt_create COUNT makes.
dt_expected_steps() {
  local n=$1 every=${2:-10} fan lin dia i
  fan=0; lin=0; dia=0
  for ((i = 1; i <= n; i++)); do
    if ((i % every == 0)); then fan=$((fan + 1)); elif ((i % 2 == 0)); then dia=$((dia + 1)); else lin=$((lin + 1)); fi
  done
  echo $((lin * 4 + dia * 4 + fan * 52))
}

# dt_unfinished URL: tasks not yet terminal.
dt_unfinished() {
  psql_at "$1" "SELECT count(*) FROM tasker.tasks WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')"
}

# dt_wait_done URL SECS: wait until every task is terminal; false on timeout.
dt_wait_done() {
  local deadline=$(( $(now_ms) + $2 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(dt_unfinished "$1")" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# dt_states URL: "state count, …" of tasks and of steps, for failure messages.
dt_states() {
  psql_at "$1" "SELECT 'tasks: ' || coalesce((SELECT string_agg(state || ' ' || n, ', ') FROM
                  (SELECT state, count(*) n FROM tasker.tasks GROUP BY 1 ORDER BY 1) x), 'none')
                || '; steps: ' || coalesce((SELECT string_agg(state || ' ' || n, ', ') FROM
                  (SELECT state, count(*) n FROM tasker.workflow_steps GROUP BY 1 ORDER BY 1) y), 'none')"
}

# dt_check_invariants URL NS TASKS STEPS [RETRIES_ALLOWED]: what every run must leave behind —
# all tasks complete, each step complete; no (step, attempt) dispatched twice (transitions into
# enqueued, and dispatch messages in the archive); every join step (d, join) enqueued and run
# exactly once and after all its ancestors; no message left in the namespace's queues. With
# RETRIES_ALLOWED=no (default) every step ran exactly once (attempt_no = 1).
dt_check_invariants() {
  local url=$1 ns=$2 tasks=$3 steps=$4 retries=${5:-no}
  local q="psql_at $url"
  is "$($q "SELECT count(*) || '/' || count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks")" "$tasks/$tasks" \
    "all $tasks tasks complete"
  is "$($q "SELECT count(*) || '/' || count(*) FILTER (WHERE state = 'complete') FROM tasker.workflow_steps")" "$steps/$steps" \
    "all $steps steps complete"
  is "$($q "SELECT count(*) FROM tasker.task_transitions WHERE to_state = 'complete'")" "$tasks" \
    "each task moved to complete exactly once"
  if [ "$retries" = no ]; then
    is "$($q "SELECT count(*) FROM tasker.workflow_steps WHERE attempt_no <> 1")" 0 "every step ran exactly once (attempt_no = 1)"
  fi
  # Steps count their runs in attempt_no (never reset; the fencing token named by messages,
  # transitions and audit rows). Transitions into enqueued carry it before the claim: attempt k is
  # enqueued with attempt = k - 1.
  is "$($q "SELECT count(*) FROM (SELECT workflow_step_uuid, attempt FROM tasker.workflow_step_transitions
            WHERE to_state = 'enqueued' GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 \
    "no (step, attempt) enqueued twice (workflow_step_transitions)"
  is "$($q "SELECT count(*) FROM tasker.workflow_steps s WHERE
            (SELECT count(*) FROM tasker.workflow_step_transitions t
             WHERE t.workflow_step_uuid = s.workflow_step_uuid AND t.to_state = 'in_progress') <> s.attempt_no")" 0 \
    "one claim (enqueued → in_progress) per attempt of every step"
  is "$($q "SELECT count(*) FROM tasker.workflow_steps s WHERE
            (SELECT count(*) FROM tasker.workflow_step_result_audit a WHERE a.workflow_step_uuid = s.workflow_step_uuid)
            > s.attempt_no")" 0 "no more results handed back than attempts"
  is "$($q "SELECT count(*) FROM (SELECT message->>'step_uuid', message->>'attempt' FROM pgmq.a_tasker_dispatch_$ns
            GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 \
    "no (step, attempt) has two dispatch messages in the archive"
  is "$($q "SELECT count(*) FROM tasker.workflow_steps s
            LEFT JOIN (SELECT (message->>'step_uuid')::uuid AS step, count(*) AS n FROM pgmq.a_tasker_dispatch_$ns GROUP BY 1) a
              ON a.step = s.workflow_step_uuid
            WHERE coalesce(a.n, 0) <> s.attempt_no")" 0 \
    "dispatch messages in the archive per step = its attempts"
  local joins="SELECT s.workflow_step_uuid, s.results, s.attempt_no, tt.name AS tpl FROM tasker.workflow_steps s
               JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
               JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
               WHERE (tt.name IN ('e2e_linear', 'e2e_diamond') AND s.name = 'd') OR (tt.name = 'e2e_fanout' AND s.name = 'join')"
  is "$($q "SELECT count(*) FROM ($joins) j")" "$tasks" "one join step per task"
  is "$($q "SELECT count(*) FROM ($joins) j WHERE
            (SELECT count(*) FROM tasker.workflow_step_transitions t
             WHERE t.workflow_step_uuid = j.workflow_step_uuid AND t.to_state = 'enqueued') <> j.attempt_no
         OR (SELECT count(*) FROM tasker.workflow_step_result_audit a
             WHERE a.workflow_step_uuid = j.workflow_step_uuid AND a.success) <> 1")" 0 \
    "every join step enqueued exactly once per attempt and run to success exactly once"
  is "$($q "SELECT count(*) FROM ($joins) j WHERE
            (SELECT count(*) FROM jsonb_object_keys(j.results->'dependencies'))
            <> CASE j.tpl WHEN 'e2e_fanout' THEN 51 ELSE 3 END")" 0 \
    "every join step saw the results of all its ancestors (3, or 51 for the fan-out)"
  is "$($q "SELECT (SELECT count(*) FROM pgmq.q_tasker_dispatch_$ns) + (SELECT count(*) FROM pgmq.q_tasker_completion_$ns)")" 0 \
    "no message left in the dispatch and completion queues"
  is "$($q "SELECT count(*) FROM tasker.workflow_step_transitions t WHERE NOT EXISTS
            (SELECT 1 FROM tasker.step_state_edges e WHERE e.from_state IS NOT DISTINCT FROM t.from_state AND e.to_state = t.to_state)")" 0 \
    "step transitions only along tasker.step_state_edges"
}

# dt_no_sanitizer_reports NAME…: none of the logs holds a sanitizer or allocator report.
dt_no_sanitizer_reports() {
  local name hits
  for name in "$@"; do
    hits=$(grep -Ec "$DT_SAN_PATTERN" "${DT_LOG[$name]}")
    is "$hits" 0 "no sanitizer/allocator report in the log of $name"
    [ "$hits" = 0 ] || grep -E -m 5 -A 5 "$DT_SAN_PATTERN" "${DT_LOG[$name]}" | sed 's/^/#   /'
  done
}

# dt_finish: one last check — no sanitizer or allocator report in the log of any process this test
# started (under `make SANITIZE=1 check` every daemon and worker is an ASan/UBSan build) — then
# finish (tests/lib.sh).
dt_finish() {
  local name bad=""
  for name in "${!DT_LOG[@]}"; do
    grep -Eq "$DT_SAN_PATTERN" "${DT_LOG[$name]}" 2>/dev/null && bad="$bad $name"
  done
  if [ -z "$bad" ]; then
    ok "no sanitizer or allocator report in the logs of the ${#DT_LOG[@]} processes started"
  else
    fail "sanitizer or allocator reports in the logs of:$bad"
    for name in $bad; do grep -E -m 3 -A 8 "$DT_SAN_PATTERN" "${DT_LOG[$name]}" | sed "s/^/#   $name: /"; done
  fi
  finish
}

# dt_first_transition_after URL EPOCH_MS TO_STATE: ms epoch of the first step transition into
# TO_STATE at or after EPOCH_MS (empty if none).
dt_first_transition_after() {
  psql_at "$1" "SELECT (extract(epoch FROM min(created_at)) * 1000)::bigint FROM tasker.workflow_step_transitions
                WHERE to_state = '$3' AND created_at >= to_timestamp($2 / 1000.0)"
}
# dt_last_task_completion URL: ms epoch of the last task's move to complete.
dt_last_task_completion() {
  psql_at "$1" "SELECT (extract(epoch FROM max(created_at)) * 1000)::bigint FROM tasker.task_transitions WHERE to_state = 'complete'"
}
