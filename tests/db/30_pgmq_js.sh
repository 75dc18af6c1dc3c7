#!/usr/bin/env bash
# 30_pgmq_js.sh — PGMQ compatibility across sessions and with a client we did not write:
#   1. the npm client pgmq-js 1.3.1 (tests/node/pgmq_js.test.mjs) against a freshly migrated DB;
#   2. the NOTICE / WARNING texts of create (repeat), drop_queue (missing, deprecated 2-arg form);
#   3. two sessions: a read holds its rows locked until its transaction ends, a second reader
#      skips them without blocking, an uncommitted send is invisible, and ROLLBACK restores
#      read_ct and vt;
#   4. several concurrent readers drain a queue with every message delivered exactly once.
# Works against our compat schema and against the real pgmq extension alike.
# Run by tests/run-db-tests (SERVER_URL and BIN set); `ONLY=pgmq make check-db` runs just this.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

url=$(fresh_db tasker_pgmqjs) || { fail "fresh_db tasker_pgmqjs"; finish; }
ok "fresh database migrated"

impl=$(psql_at "$url" "SELECT coalesce((SELECT 'pgmq extension ' || extversion FROM pg_extension WHERE extname = 'pgmq'), 'compat schema')")
echo "# PGMQ implementation: $impl"

# ------------------------------------------------------------------------------------------
# 1. pgmq-js
# ------------------------------------------------------------------------------------------
if [ ! -d tests/node/node_modules ]; then
  echo "# installing tests/node dependencies (npm ci)"
  if ! (cd tests/node && npm ci --no-audit --no-fund) >/tmp/tasker-npm-ci.$$ 2>&1; then
    sed 's/^/#   /' /tmp/tasker-npm-ci.$$
    fail "npm ci in tests/node"
  fi
  rm -f /tmp/tasker-npm-ci.$$
fi
node_out=$(DATABASE_URL="$url" node tests/node/pgmq_js.test.mjs 2>&1)
node_rc=$?
echo "$node_out" | sed 's/^/    /'
node_n=$(echo "$node_out" | grep -c '^ok ')
if [ "$node_rc" -eq 0 ] && [ "$node_n" -gt 0 ]; then
  ok "pgmq-js 1.3.1 works unchanged ($node_n checks)"
else
  fail "pgmq-js 1.3.1 client test (exit $node_rc)"
fi

# ------------------------------------------------------------------------------------------
# 2. NOTICE / WARNING texts (pgTAP cannot see them)
# ------------------------------------------------------------------------------------------
msgs() { psql "$url" -X -q -v ON_ERROR_STOP=1 -c "$1" 2>&1 >/dev/null; }

psql_at "$url" "SELECT pgmq.create('notice_q')" >/dev/null
out=$(msgs "SELECT pgmq.create('notice_q')"); rc=$?
is "$rc" 0 "create of an existing queue is not an error"
case "$out" in
  *'NOTICE:  relation "q_notice_q" already exists, skipping'*) ok "create of an existing queue: NOTICE 'already exists, skipping'" ;;
  *) fail "create of an existing queue: NOTICE missing (got: $out)" ;;
esac
out=$(msgs "SELECT pgmq.drop_queue('no_such_queue')")
case "$out" in
  *'NOTICE:  pgmq queue `no_such_queue` does not exist'*) ok "drop_queue of a missing queue: NOTICE" ;;
  *) fail "drop_queue of a missing queue: NOTICE missing (got: $out)" ;;
esac
out=$(msgs "SELECT pgmq.drop_queue('notice_q', false)")
case "$out" in
  *'WARNING:  drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead'*)
    ok "deprecated drop_queue(queue_name, partitioned): WARNING" ;;
  *) fail "deprecated drop_queue: WARNING missing (got: $out)" ;;
esac
is "$(psql_at "$url" "SELECT to_regclass('pgmq.q_notice_q') IS NULL")" t "deprecated drop_queue dropped the queue"

# ------------------------------------------------------------------------------------------
# 3. Two sessions: locks, skip-locked, transactional send, rollback
# ------------------------------------------------------------------------------------------
psql_at "$url" "SELECT pgmq.create('skiplock')" >/dev/null
psql_at "$url" "SELECT * FROM pgmq.send_batch('skiplock', ARRAY['{\"s\": 1}', '{\"s\": 2}', '{\"s\": 3}']::jsonb[])" >/dev/null

# Session A: a psql coprocess we feed statement by statement. a_run SQL prints its output.
coproc SESS_A { psql "$url" -X -qAt -v ON_ERROR_STOP=0 2>&1; }
a_in=${SESS_A[1]}; a_out=${SESS_A[0]}; a_pid=$SESS_A_PID
a_run() {
  local line res=""
  printf '%s\n\\echo __a_done__\n' "$1" >&"$a_in"
  while IFS= read -r -t 20 line <&"$a_out"; do
    [ "$line" = "__a_done__" ] && { printf '%s' "$res"; return 0; }
    res+="${res:+ }$line"
  done
  printf 'TIMEOUT %s' "$res"; return 1
}

is "$(a_run "BEGIN;")" "" "session A: BEGIN"
# vt 0: message 1 stays *visible*, so only A's row lock can hide it from B.
is "$(a_run "SELECT msg_id || ':' || read_ct FROM pgmq.read('skiplock', 0, 1);")" "1:1" "session A reads message 1 (vt 0) and holds its lock"
is "$(a_run "SELECT * FROM pgmq.send('skiplock', '{\"s\": 4}');")" "4" "session A sends message 4, uncommitted"
b_res=$(psql "$url" -X -qAt -v ON_ERROR_STOP=1 -c "SET lock_timeout = '3s'" \
          -c "SELECT string_agg(msg_id::text, ',' ORDER BY msg_id) FROM pgmq.read('skiplock', 0, 10)" 2>&1)
is "$b_res" "2,3" "session B skips A's locked message 1 without blocking and cannot see uncommitted 4"
is "$(psql "$url" -X -qAt -v ON_ERROR_STOP=1 -c "SET lock_timeout = '3s'" -c "BEGIN" \
        -c "SELECT msg_id FROM pgmq.pop('skiplock')" -c "ROLLBACK" 2>&1)" \
   "2" "session B: pop skips A's locked message too (B's pop rolled back)"
is "$(psql "$url" -X -qAt -v ON_ERROR_STOP=1 -c "SET lock_timeout = '3s'" -c "BEGIN" \
        -c "SELECT coalesce(string_agg(msg_id::text, ','), 'none') FROM pgmq.read('skiplock', 30, 1, '{\"s\": 1}')" \
        -c "ROLLBACK" 2>&1)" \
   "none" "session B: a conditional read for message 1 alone gets nothing while A holds it"
is "$(a_run "ROLLBACK;")" "" "session A: ROLLBACK"
is "$(psql_at "$url" "SELECT string_agg(msg_id || ':' || read_ct, ',' ORDER BY msg_id) FROM pgmq.q_skiplock")" \
   "1:0,2:1,3:1" "after A's rollback: message 1 has read_ct 0 again, message 4 never existed"
is "$(psql_at "$url" "SELECT string_agg(msg_id::text, ',' ORDER BY msg_id) FROM pgmq.read('skiplock', 30, 10)")" \
   "1,2,3" "after A's rollback message 1 is readable again"
printf '\\q\n' >&"$a_in" 2>/dev/null
wait "$a_pid" 2>/dev/null

tmp=$(mktemp -d)

# read_with_poll sees a message committed by another session while it is polling.
psql_at "$url" "SELECT pgmq.create('pollq')" >/dev/null
t_start=$(date +%s%N)
psql "$url" -X -qAt -c "SELECT msg_id FROM pgmq.read_with_poll('pollq', 30, 1, 8, 50)" >"$tmp/poll.out" 2>&1 &
poll_pid=$!
polling=0
for _ in $(seq 1 100); do
  polling=$(psql_at "$url" "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%read_with_poll(''pollq''%'")
  [ "$polling" = 1 ] && break
  sleep 0.05
done
is "$polling" 1 "read_with_poll is polling an empty queue"
sleep 0.3
psql_at "$url" "SELECT * FROM pgmq.send('pollq', '{\"late\": true}')" >/dev/null
wait "$poll_pid"
t_ms=$(( ($(date +%s%N) - t_start) / 1000000 ))
is "$(cat "$tmp/poll.out")" 1 "read_with_poll returns the message sent while it polled"
if [ "$t_ms" -lt 5000 ]; then ok "read_with_poll returned early (${t_ms} ms of at most 8000)"; else fail "read_with_poll took ${t_ms} ms"; fi

# ------------------------------------------------------------------------------------------
# 4. Concurrent readers: each message delivered exactly once
# ------------------------------------------------------------------------------------------
psql_at "$url" "SELECT pgmq.create('conc')" >/dev/null
psql_at "$url" "SELECT count(*) FROM pgmq.send_batch('conc', (SELECT array_agg(jsonb_build_object('i', g)) FROM generate_series(1, 300) g))" >/dev/null
reader_sql=$tmp/reader.sql
for _ in $(seq 1 40); do echo "SELECT msg_id FROM pgmq.read('conc', 300, 4);"; done >"$reader_sql"
pids=()
for w in 1 2 3 4; do
  psql "$url" -X -qAt -v ON_ERROR_STOP=1 -f "$reader_sql" >"$tmp/w$w.out" 2>"$tmp/w$w.err" &
  pids+=($!)
done
readers_ok=1
for p in "${pids[@]}"; do wait "$p" || readers_ok=0; done
is "$readers_ok" 1 "4 concurrent readers ran without errors"
total=$(cat "$tmp"/w*.out | grep -c .)
uniq=$(cat "$tmp"/w*.out | grep . | sort -u | wc -l)
is "$total" 300 "concurrent readers got 300 deliveries in all"
is "$uniq" 300 "no message was delivered twice"
rm -rf "$tmp"

finish
