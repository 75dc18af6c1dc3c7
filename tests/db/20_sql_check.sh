#!/usr/bin/env bash
# 20_sql_check.sh — every statement the daemon prepares at connect prepares against a freshly
# migrated database (`make sql-check`; our counterpart of SQLx's compile-time query checks).
set -uo pipefail
. tests/lib.sh

url=$(fresh_db tasker_sqlcheck) || exit 1
out=$(DATABASE_URL="$url" "$BIN/tasker-orchestratord" sql-check 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
is "$rc" 0 "every daemon statement prepares against the migrated schema"
is "$(echo "$out" | grep -c '^FAIL')" 0 "no statement fails"

# And the check really checks: against a database without our schema it fails, naming the statement.
bare=$(empty_db tasker_sqlcheck_bare)
out=$(DATABASE_URL="$bare" "$BIN/tasker-orchestratord" sql-check 2>&1)
rc=$?
[ "$rc" -ne 0 ] && ok "sql-check fails on an unmigrated database" || fail "sql-check passed on an empty database"
grep -q '^FAIL process_completions' <<<"$out" && ok "the failing statement is named" \
  || fail "no FAIL line for process_completions: $out"
finish
