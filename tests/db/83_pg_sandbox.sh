#!/usr/bin/env bash
# 83_pg_sandbox.sh — scripts/pg-sandbox as the README's tour uses it: `eval "$(… start DIR)"` sets
# DATABASE_URL in the calling shell, and a port that looks free but cannot be bound (a socket bound
# without listening, as the local end of another process's connection is) is skipped for the next
# one instead of failing the start; a PG_BINDIR without psql; a cluster of another major refused.
# Runs its own cluster under var/, apart from the harness's.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

dir=$(own_pg_dir 83)
holder=
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  own_pg_forget "$dir"
}
trap cleanup EXIT

# A port nobody listens on, from a range the other sandboxes (54320 up) do not use.
port=$((56000 + RANDOM % 2000))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
# Hold it: bound, not listening (a connect is refused, so it looks free), no SO_REUSEADDR.
perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
  bind(S, pack_sockaddr_in($ARGV[0], inet_aton("127.0.0.1"))) or die "bind: $!";
  $| = 1; print "bound\n"; sleep 600' "$port" >"$dir/holder.out" 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q bound "$dir/holder.out" 2>/dev/null && break; sleep 0.1; done
grep -q bound "$dir/holder.out" && ok "port $port held by a bound socket that does not listen" ||
  { fail "hold port $port: $(cat "$dir/holder.out")"; finish; exit 1; }
# The cluster's remembered port (a restart reuses it): the held one.
echo "$port" >"$dir/port"

out=$(scripts/pg-sandbox start "$dir" 2>"$dir/start.err")
rc=$?
is "$rc" 0 "pg-sandbox start succeeds although its remembered port $port cannot be bound"
grep -q "port $port is taken; trying the next one" "$dir/start.err" && ok "… and says it moved on" ||
  fail "… and says it moved on (stderr: $(tail -n 5 "$dir/start.err"))"
[[ "$out" =~ ^export\ DATABASE_URL=postgresql://[^@]+@127\.0\.0\.1:([0-9]+)/tasker$ ]] &&
  ok "it prints an export line: $out" || fail "it prints an export line (got '$out')"
got_port=${BASH_REMATCH[1]:-}
[ -n "$got_port" ] && [ "$got_port" != "$port" ] && ok "on another port ($got_port)" || fail "on another port (got '$got_port')"
is "$(cat "$dir/port")" "$got_port" "DIR/port remembers the port it got"

# The tour's line: eval in a shell that has no DATABASE_URL, then a command that needs it.
res=$(env -u DATABASE_URL bash -c 'eval "$1" && psql "$DATABASE_URL" -X -qAtc "SELECT current_database()"' _ "$out" 2>&1)
is "$res" tasker "eval \"\$(pg-sandbox start DIR)\" sets DATABASE_URL for the next command"
line=$(scripts/pg-sandbox url "$dir")
[ -n "$out" ] && [ "$line" = "$out" ] && ok "pg-sandbox url prints the same line" || fail "pg-sandbox url prints the same line (got '$line')"
# A script's way of taking the URL (tests/run-db-tests, scripts/demo, bench/run).
is "$(psql "${out##*DATABASE_URL=}" -X -qAtc "SELECT 1")" 1 "\${line##*DATABASE_URL=} is a URL psql connects to"

# PG_BINDIR holding only the server (as the npm builds of make check-matrix do): the psql on PATH
# serves. The same server's programs, linked into a directory without psql.
server_bin=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
mkdir -p "$dir/bin" && for p in initdb pg_ctl postgres; do ln -s "$server_bin/$p" "$dir/bin/$p"; done
scripts/pg-sandbox stop "$dir"
out2=$(PG_BINDIR=$dir/bin scripts/pg-sandbox start "$dir" 2>&1)
is "$?/$out2" "0/$out" "pg-sandbox starts a PG_BINDIR without psql (and keeps the URL)"
is "$(psql "${out2##*DATABASE_URL=}" -X -qAtc "SELECT current_database()")" tasker "… and it answers"

# A cluster made by another major is refused with a message saying so, before pg_ctl tries it.
other=$dir/other; mkdir -p "$other/data" && echo 14 >"$other/data/PG_VERSION" && echo "$other/data" >"$other/datadir"
err=$(scripts/pg-sandbox start "$other" 2>&1); rc=$?
is "$rc" 1 "pg-sandbox refuses a PostgreSQL 14 cluster"
[[ "$err" == *"holds a PostgreSQL 14 cluster but"*"use another DIR"* ]] && ok "… saying which versions differ" ||
  fail "… saying which versions differ (got '$err')"

finish
