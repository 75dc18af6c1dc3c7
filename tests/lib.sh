# tests/lib.sh — helpers shared by the database test scripts (sourced, not run).
# Provides: fresh_db NAME (creates + migrates a database, prints its URL), psql_at URL SQL
# (one value, unaligned), ok/fail/is (TAP-style lines; `fail` makes the script exit non-zero at end),
# skip (a check that could not run, counted: see below), hold_lock URL TABLE SECS (a lock held in the
# background), own_pg_dir/own_pg_forget (a PostgreSQL server of the script's own).
# Expects SERVER_URL (sandbox URL without database) and BIN (directory of the binaries).

TESTS_FAILED=0
TESTS_RUN=0
# Where skips are recorded, one line each ("script: reason"); tests/run-db-tests counts them for
# make check's closing line. A missing tool is never a skip: it is a failure (install-deps has it).
TESTS_SKIP_FILE=${TESTS_SKIP_FILE:-var/test-skips}

ok()   { TESTS_RUN=$((TESTS_RUN + 1)); echo "ok $TESTS_RUN - $*"; }
fail() { TESTS_RUN=$((TESTS_RUN + 1)); TESTS_FAILED=$((TESTS_FAILED + 1)); echo "not ok $TESTS_RUN - $*"; }
# skip REASON: a check that could not run for a reason outside the code under test (TAP "# SKIP");
# neither a pass nor a failure, but recorded so the run's summary says how many there were.
skip() {
  TESTS_RUN=$((TESTS_RUN + 1)); echo "ok $TESTS_RUN # SKIP $*"
  mkdir -p "$(dirname "$TESTS_SKIP_FILE")" && echo "$(basename "$0"): $*" >>"$TESTS_SKIP_FILE"
}
# is GOT WANT DESCRIPTION
is() {
  if [ "$1" = "$2" ]; then ok "$3"; else fail "$3 (got '$1', want '$2')"; fi
}
finish() {
  echo "1..$TESTS_RUN"
  [ "$TESTS_FAILED" -eq 0 ] || { echo "# $TESTS_FAILED of $TESTS_RUN failed" >&2; exit 1; }
}

# db_url NAME: the URL of database NAME on the sandbox server.
db_url() { echo "${SERVER_URL%/*}/$1"; }

psql_at() { psql "$1" -X -v ON_ERROR_STOP=1 -qAtc "$2"; }

# fresh_db NAME: drop and recreate NAME, then migrate it with our binary; prints the URL.
fresh_db() {
  local url; url=$(db_url "$1")
  # client_min_messages: no "database … does not exist, skipping" NOTICE in the test output.
  PGOPTIONS="-c client_min_messages=warning" psql "$(db_url postgres)" -X -qc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
  psql "$(db_url postgres)" -X -qc "CREATE DATABASE \"$1\"" >/dev/null
  DATABASE_URL="$url" "$BIN/tasker-orchestratord" migrate >/dev/null || { echo "migrate of $1 failed" >&2; return 1; }
  echo "$url"
}

# empty_db NAME: drop and recreate NAME without migrating it; prints the URL.
empty_db() {
  local url; url=$(db_url "$1")
  # client_min_messages: no "database … does not exist, skipping" NOTICE in the test output.
  PGOPTIONS="-c client_min_messages=warning" psql "$(db_url postgres)" -X -qc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
  psql "$(db_url postgres)" -X -qc "CREATE DATABASE \"$1\"" >/dev/null
  echo "$url"
}

# hold_lock URL TABLE SECS: a background session holds TABLE (schema-qualified) in ACCESS EXCLUSIVE
# mode for SECS; returns once the lock is granted (false if not within 10 s), the session's psql
# in HOLD_LOCK_PID. A fixed sleep before relying on the lock is too short on a loaded machine.
hold_lock() {
  psql "$1" -X -q -c "BEGIN" -c "LOCK TABLE $2 IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep($3)" >/dev/null 2>&1 &
  HOLD_LOCK_PID=$!
  local n
  for n in $(seq 200); do
    [ "$(psql_at "$1" "SELECT count(*) FROM pg_locks WHERE relation = to_regclass('$2')
                         AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && return 0
    sleep 0.05
  done
  return 1
}

# release_lock URL TABLE: end the session hold_lock started on TABLE (schema-qualified) before its
# SECS are up: its backend is terminated, since killing psql alone would leave it asleep, holding the
# lock. The caller reaps HOLD_LOCK_PID.
release_lock() {
  psql_at "$1" "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE relation = to_regclass('$2')
                AND mode = 'AccessExclusiveLock' AND granted" >/dev/null
}

# own_pg_dir NAME: a new directory for a PostgreSQL server of the script's own (scripts/pg-sandbox
# start DIR), for a test that stops its server or reads server-wide counters: the harness's server
# is shared by the scripts running beside it. Under var/, not /tmp: as root the server runs as
# `postgres`, which must reach it. Prints the directory; pair it with own_pg_forget in an EXIT trap.
own_pg_dir() {
  local d
  mkdir -p var && d=$(mktemp -d "$PWD/var/test-pg-$1.XXXXXX") || return 1
  # Its port, from a range away from 54320 up, where pg-sandbox looks for a free one: a sandbox
  # started while this server is down (63 stops it) does not take its port, so its URL holds.
  echo $((58000 + RANDOM % 2000)) >"$d/port"
  echo "$d"
}
# own_pg_forget DIR: stop DIR's server (if it runs) and remove DIR, and the /var/tmp data directory
# pg-sandbox may have used instead of DIR/data (DIR/datadir says where); after a failure the data
# stays for inspection.
own_pg_forget() {
  local data
  scripts/pg-sandbox stop "$1" >/dev/null 2>&1
  if [ "${TESTS_FAILED:-0}" -gt 0 ]; then echo "# server data kept in $1"; return; fi
  data=$(cat "$1/datadir" 2>/dev/null)
  case $data in /var/tmp/tasker-pg.*/data) rm -rf "$(dirname "$data")" ;; esac
  rm -rf "$1"
}
