#!/usr/bin/env bash
# 64_daemon_pgbouncer.sh — end to end through PgBouncer 1.18 in transaction-pooling mode
# (scripts/pgbouncer-sandbox): the daemon's pool and three workers' working connections go through
# it, the LISTEN connections go direct (database.listen_url, --listen-url / $TASKER_LISTEN_URL).
#   1. a daemon configured for a direct connection is refused by PgBouncer, and its log says why
#      ("unsupported startup parameter: options");
#   2. with database.transaction_pooling and database.prepared_statements = false (workers: the flags,
#      or the environment variables), 300 mixed tasks and 30 dynamic (decision) tasks complete, with
#      the usual invariants;
#   3. the session settings travelled with each transaction: the daemon's processor id is recorded as
#      the actor of its transitions, and nothing leaked into PgBouncer's server sessions;
#   4. the clients really went through PgBouncer, the LISTEN connections really did not.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

NS=pgb
DYN=pgbdyn
TASKS=300
DYN_TASKS=30
STEPS=$(dt_expected_steps "$TASKS")

command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] ||
  { fail "pgbouncer is not installed (scripts/install-deps)"; finish; exit 1; }
url=$(fresh_db tasker_pgbouncer) || { fail "fresh database tasker_pgbouncer"; finish; exit 1; }
q() { psql_at "$url" "$1"; }
dt_register "$url" "$NS" || { fail "register the templates"; finish; exit 1; }
psql "$url" -X -q -v ON_ERROR_STOP=1 -v ns="$DYN" >/dev/null <<'SQL' || fail "register the decision template"
SELECT tasker.register_task_template(jsonb_build_object('name', 'approval', 'namespace_name', :'ns', 'version', '1.0.0',
  'steps', '[
    {"name": "validate", "handler": {"callable": "noop"}},
    {"name": "route", "type": "decision", "dependencies": ["validate"],
     "handler": {"callable": "decision", "initialization": {
       "rules": [{"path": "amount", "lt": 1000, "choose": ["auto_approve"]}],
       "default": ["manager_approval", "finance_review"]}}},
    {"name": "auto_approve", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "manager_approval", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "finance_review", "dependencies": ["route"], "handler": {"callable": "noop"}},
    {"name": "finalize", "type": "deferred", "dependencies": ["auto_approve", "manager_approval", "finance_review"],
     "handler": {"callable": "echo"}}]'::jsonb));
SQL

PGB_DIR="$DT_DIR/pgbouncer"
stop_bouncer() { scripts/pgbouncer-sandbox stop "$PGB_DIR" >/dev/null 2>&1; }
trap 'stop_bouncer; dt_cleanup' EXIT
line=$(scripts/pgbouncer-sandbox start "$PGB_DIR" "$url") || { fail "pgbouncer-sandbox start"; finish; exit 1; }
bouncer=${line##*PGBOUNCER_URL=}
[[ "$bouncer" =~ ^postgresql://[^@]+@127\.0\.0\.1:([0-9]+)/tasker_pgbouncer$ ]] &&
  ok "pgbouncer-sandbox prints the URL to use: $bouncer" || fail "pgbouncer-sandbox prints a URL (got '$line')"
bport=${BASH_REMATCH[1]:-0}
admin="postgresql://${bouncer#postgresql://}"; admin="${admin%/*}/pgbouncer"
is "$(psql "$admin" -X -qAtc 'SHOW CONFIG' | awk -F'|' '$1 == "pool_mode" { print $2 }')" transaction \
  "PgBouncer runs in transaction-pooling mode"

# ---- 1. the daemon's default (session settings at connect) is refused, loudly -----------------------
dt_conf d0 "$bouncer" >/dev/null
dt_start_daemon d0 "$bouncer"
dt_wait_log d0 'unsupported startup parameter: options' 20 &&
  ok "a daemon without database.transaction_pooling is refused by PgBouncer: 'unsupported startup parameter: options'" ||
  fail "a daemon without database.transaction_pooling is refused by PgBouncer (log: $(dt_log d0 | tail -n 2))"
dt_stop d0 TERM 15

# ---- 2. through PgBouncer ------------------------------------------------------------------------
conf=$(dt_conf d1 "$bouncer")
sed -i "s|^    url = .*|&\n    listen_url = \"$url\"\n    transaction_pooling = true\n    prepared_statements = false|" "$conf"
dt_start_daemon d1 "$bouncer"
dt_wait_ready d1 20 && ok "daemon ready through PgBouncer (pool) and directly (LISTEN)" || fail "daemon ready within 20 s"
dt_start_worker w1 "$bouncer" "$NS" --transaction-pooling --no-prepared-statements --listen-url "$url" \
  --concurrency 20 --batch 10 --poll-ms 200
TASKER_TRANSACTION_POOLING=1 TASKER_PREPARED_STATEMENTS=0 TASKER_LISTEN_URL="$url" \
  dt_start_worker w2 "$bouncer" "$NS" --concurrency 20 --batch 10 --poll-ms 200
dt_start_worker w3 "$bouncer" "$DYN" --transaction-pooling --no-prepared-statements --listen-url "$url" \
  --concurrency 10 --poll-ms 200

t0=$(now_ms)
created=0
for chunk in 1 2 3; do
  got=$(dt_create "$url" "$NS" 100 "run-$chunk")
  created=$(( created + ${got:-0} ))
done
is "$created" "$TASKS" "created $TASKS tasks (linear, diamond, 1 → 50 → 1) while the daemon and workers ran"
is "$(q "SELECT count(*) FILTER (WHERE c.created) FROM generate_series(1, $DYN_TASKS) i,
         LATERAL tasker.create_task(jsonb_build_object('name', 'approval', 'namespace', '$DYN',
           'context', jsonb_build_object('amount', CASE WHEN i % 2 = 0 THEN 10 ELSE 5000 END, 'i', i))) c")" "$DYN_TASKS" \
  "created $DYN_TASKS decision tasks"
if dt_wait_done "$url" 90; then ok "every task terminal within 90 s"; else fail "every task terminal within 90 s ($(dt_states "$url"))"; fi
t1=$(now_ms)

for n in d1 w1 w2 w3; do dt_alive "$n" || fail "$n is still running"; done
dyn_task="SELECT t.task_uuid FROM tasker.tasks t JOIN tasker.task_templates tt USING (task_template_uuid) WHERE tt.name = 'approval'"
is "$(q "SELECT count(*) FILTER (WHERE state = 'complete') FROM tasker.tasks WHERE task_uuid IN ($dyn_task)")" "$DYN_TASKS" \
  "all $DYN_TASKS decision tasks complete"
# Each decision created exactly its branches: 1 (auto_approve) for small amounts, 2 otherwise; 3 + branches steps.
is "$(q "SELECT count(*) FROM (SELECT s.task_uuid, count(*) AS n, max((t.context->>'amount')::int) AS amount
         FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid) WHERE t.task_uuid IN ($dyn_task)
         GROUP BY 1) x WHERE n <> CASE WHEN amount < 1000 THEN 4 ELSE 5 END")" 0 \
  "each decision created exactly the branches its rule chose"
is "$(q "SELECT count(*) FROM tasker.tasks t JOIN tasker.task_templates tt USING (task_template_uuid)
         WHERE tt.name <> 'approval' AND t.state = 'complete'")" "$TASKS" "all $TASKS mixed tasks complete"
is "$(q "SELECT count(*) || '/' || count(*) FILTER (WHERE s.state = 'complete') FROM tasker.workflow_steps s
         WHERE s.task_uuid NOT IN ($dyn_task)")" "$STEPS/$STEPS" "all $STEPS steps of the mixed tasks complete"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE attempt_no <> 1")" 0 "every step ran exactly once (attempt_no = 1)"
is "$(q "SELECT count(*) FROM (SELECT workflow_step_uuid, attempt FROM tasker.workflow_step_transitions
         WHERE to_state = 'enqueued' GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 "no (step, attempt) enqueued twice"
is "$(q "SELECT (SELECT count(*) FROM pgmq.q_tasker_dispatch_$NS) + (SELECT count(*) FROM pgmq.q_tasker_completion_$NS)
          + (SELECT count(*) FROM pgmq.q_tasker_dispatch_$DYN) + (SELECT count(*) FROM pgmq.q_tasker_completion_$DYN)")" 0 \
  "no message left in the queues"
is "$(q "SELECT count(*) FROM tasker.rejected_messages")" 0 "no rejected messages"

# ---- 3. settings per transaction ---------------------------------------------------------------------
is "$(q "SELECT count(*) FROM tasker.task_transitions WHERE to_state = 'complete' AND processor = 'd1'")" \
  "$((TASKS + DYN_TASKS))" "every task's move to complete carries the daemon's id (tasker.actor, set per transaction)"
is "$(q "SELECT count(DISTINCT processor) FROM tasker.workflow_step_transitions WHERE to_state = 'in_progress'
         AND processor IN ('w1', 'w2', 'w3')")" 3 "each worker's claims carry its id"
# What a later client of the same server sessions sees: none of our settings (they were local to
# each transaction; a SET would have stayed on the server connection for the next client).
is "$(psql "$bouncer" -X -qAtc "SELECT coalesce(current_setting('tasker.actor', true), '') || '|' ||
         current_setting('statement_timeout') || '|' || current_setting('jit')")" "|0|on" \
  "nothing leaked into PgBouncer's server sessions (tasker.actor unset, statement_timeout 0, jit on)"

# ---- 4. who went where -------------------------------------------------------------------------------
clients=$(psql "$admin" -X -qAtc 'SHOW CLIENTS' | awk -F'|' '$3 == "tasker_pgbouncer"' | wc -l)
[ "$clients" -ge 5 ] && ok "the daemon's pool and the workers are PgBouncer's clients ($clients connections)" ||
  fail "the daemon's pool and the workers are PgBouncer's clients (got $clients)"
is "$(q "SELECT string_agg(application_name || ' ' || n, ', ' ORDER BY application_name) FROM
         (SELECT application_name, count(*) n FROM pg_stat_activity WHERE datname = current_database()
          AND application_name LIKE 'tasker-%listen' GROUP BY 1) x")" "tasker-orchestratord-listen 1, tasker-worker-listen 3" \
  "the LISTEN connections are direct (one per daemon and worker)"

dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
for n in w1 w2 w3; do dt_stop "$n" TERM 15; is "$DT_RC" 0 "worker $n: SIGTERM → exit 0"; done
is "$(grep -Ec '^[0-9TZ:.-]+ (error|warn) ' "${DT_LOG[d1]}")" 0 "no warning or error lines in the daemon's log"
stop_bouncer
(exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null && fail "pgbouncer-sandbox stop: still listening on $bport" ||
  ok "pgbouncer-sandbox stop: PgBouncer is gone"
echo "# pgbouncer: $TASKS mixed + $DYN_TASKS decision tasks in $(secs_between "$t0" "$t1") s through PgBouncer $(pgbouncer --version 2>/dev/null | head -n 1 | awk '{ print $2 }') (transaction pooling)"
dt_finish
