#!/usr/bin/env bash
# 10_migrate.sh — `tasker-orchestratord migrate`: idempotence, --status, the advisory lock, refusal of
# edited migrations, only-if directives, error reports, bad URLs. Runs against the real embedded files
# (whatever migrations/ and sql/ hold, possibly nothing) and against fixture binaries linked here from
# the daemon objects plus fixture SQL in a temp dir, so every behaviour is exercised whatever lands.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd)
# shellcheck source=tests/lib.sh
. tests/lib.sh

ORCHD="$BIN/tasker-orchestratord"
LOCK_KEY=$(printf '%d' 0x5441534B4D494752) # MIGRATE_LOCK_KEY in include/migrate.h
tmp=$(mktemp -d)
holder=
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# schema URL: the schema-only dump, without the random \restrict keys newer pg_dump writes. pg_dump
# refuses a server of a newer major (Debian's 15 against the version matrix's 16-18, which ship no
# pg_dump): then the catalogue's own description of every object of ours (catalog_schema). Fails
# when neither can be had, so an empty dump never compares equal to another.
schema() {
  local server dump
  server=$(psql_at "$1" "SELECT current_setting('server_version_num')::int / 10000") || return 1
  dump=$(pg_dump --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
  if [ "$dump" -ge "$server" ]; then
    pg_dump -s "$1" | grep -v '^\\\(un\)\?restrict '
    [ "${PIPESTATUS[0]}" -eq 0 ]
  else
    catalog_schema "$1"
  fi
}
# catalog_schema URL: one line per schema, relation, column, constraint, index, function (its full
# definition), trigger, view, type, sequence, extension and comment outside the system schemas.
catalog_schema() {
  psql "$1" -X -v ON_ERROR_STOP=1 -qAt <<'SQL'
WITH ns AS (SELECT oid, nspname FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%')
SELECT line FROM (
  SELECT format('schema %s %s', ns.nspname, n.nspacl) AS line FROM pg_namespace n JOIN ns USING (oid)
  UNION ALL
  SELECT format('rel %s.%s %s %s %s', ns.nspname, c.relname, c.relkind, c.relpersistence, c.relacl)
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('col %s.%s.%s %s %s %s', ns.nspname, c.relname, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('con %s.%s %s', ns.nspname, co.conname, pg_get_constraintdef(co.oid))
    FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
  UNION ALL
  SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('fn %s %s %s', p.oid::regprocedure, p.proacl,
                CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END)
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
  UNION ALL
  SELECT 'trg ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
   WHERE NOT t.tgisinternal
  UNION ALL
  SELECT format('view %s.%s %s', ns.nspname, c.relname, pg_get_viewdef(c.oid))
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT format('type %s %s %s', t.oid::regtype, t.typtype,
                (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
    FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype IN ('e', 'd', 'c')
  UNION ALL
  SELECT format('seq %s %s %s %s %s', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqcycle)
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('ext %s %s %s', e.extname, e.extversion, e.extnamespace::regnamespace) FROM pg_extension e
  UNION ALL
  SELECT format('comment %s.%s %s %s', ns.nspname, c.relname, d.objsubid, d.description)
    FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
    JOIN ns ON ns.oid = c.relnamespace
  UNION ALL
  SELECT format('comment %s %s', p.oid::regprocedure, d.description)
    FROM pg_description d JOIN pg_proc p ON p.oid = d.objoid AND d.classoid = 'pg_proc'::regclass
    JOIN ns ON ns.oid = p.pronamespace
) x ORDER BY line
SQL
}
# rows URL: schema_migrations as text, to compare before and after.
rows() { psql_at "$1" "SELECT name, kind, checksum, applied_at, skipped, execution_ms FROM tasker.schema_migrations ORDER BY name"; }
# summary FILE: "A S U" from the "migrate: A applied, S skipped, U up to date" line of FILE.
summary() { sed -n 's/^migrate: \([0-9]*\) applied, \([0-9]*\) skipped, \([0-9]*\) up to date$/\1 \2 \3/p' "$1"; }
# has FILE TEXT DESCRIPTION: FILE contains TEXT (fixed string).
has() { if grep -qF -- "$2" "$1"; then ok "$3"; else fail "$3 (no '$2' in: $(head -c 600 "$1"))"; fi; }

# ---- command line ------------------------------------------------------------------------------

is "$("$ORCHD" --version)" "tasker-orchestratord 0.1.0" "--version"
"$ORCHD" --help >"$tmp/out" 2>&1
is "$?" 0 "--help exits 0"
has "$tmp/out" "migrate" "--help lists migrate"
has "$tmp/out" "--check-config" "--help lists --check-config"
"$ORCHD" unknown-command >"$tmp/out" 2>&1
is "$?" 2 "an unknown subcommand: exit 2"
has "$tmp/out" "unknown command" "an unknown subcommand is named as such"
"$ORCHD" --no-such-option >/dev/null 2>&1
is "$?" 2 "unknown option: exit 2"
env -u DATABASE_URL "$ORCHD" migrate >"$tmp/out" 2>&1
is "$?" 2 "migrate without a database URL: exit 2"
has "$tmp/out" "DATABASE_URL" "migrate without a database URL: says how to give one"

# ---- bad database URLs ---------------------------------------------------------------------------

DATABASE_URL="postgresql://nobody@127.0.0.1:1/nodb" "$ORCHD" migrate >"$tmp/out" 2>&1
is "$?" 1 "unreachable server: exit 1"
has "$tmp/out" "cannot connect to the database" "unreachable server: clear error"
"$ORCHD" migrate --database-url "postgresql://[broken" >"$tmp/out" 2>&1
is "$?" 1 "malformed URL: exit 1"
has "$tmp/out" "cannot connect to the database" "malformed URL: clear error"
"$ORCHD" migrate --database-url "$(db_url tasker_no_such_db)" >"$tmp/out" 2>&1
is "$?" 1 "missing database: exit 1"
has "$tmp/out" "tasker_no_such_db" "missing database: named in the error"

# ---- the real embedded files ------------------------------------------------------------------------

url=$(empty_db tasker_migrate_a)
"$ORCHD" migrate --status --database-url "$url" >"$tmp/status0" 2>&1
is "$?" 0 "--status on an empty database: exit 0"
nfiles=$(grep -c '^pending ' "$tmp/status0")
is "$(grep -c -e '^applied ' -e '^changed!' "$tmp/status0")" 0 "--status on an empty database: nothing applied or changed"
is "$(psql_at "$url" "SELECT count(*) FROM pg_namespace WHERE nspname = 'tasker'")" 0 "--status creates nothing"
echo "# $nfiles embedded files"

DATABASE_URL="$url" "$ORCHD" migrate >"$tmp/run1" 2>&1
is "$?" 0 "migrate from empty succeeds"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.schema_migrations")" "$nfiles" "every embedded file is recorded"
read -r a s u <<<"$(summary "$tmp/run1")"
is "$((a + s))/$u" "$nfiles/0" "first run applies or skips every file"
is "$(grep -c -e '^applied ' -e '^skipped ' "$tmp/run1")" "$nfiles" "one line per applied or skipped file"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.schema_migrations WHERE execution_ms IS NULL OR checksum !~ '^[0-9a-f]{64}\$'")" 0 \
  "records carry a sha256 checksum and an execution time"
# The checksum is sha256 of the file's bytes: check one against sha256sum, when there is one.
first=$(psql_at "$url" "SELECT kind || ' ' || name || ' ' || checksum FROM tasker.schema_migrations ORDER BY name LIMIT 1")
if [ -n "$first" ]; then
  read -r kind name sum <<<"$first"
  dir=migrations; [ "$kind" = functions ] && dir=sql
  if [ -f "$dir/$name" ]; then
    is "$sum" "$(sha256sum "$dir/$name" | cut -d' ' -f1)" "checksum of $dir/$name equals sha256sum"
  fi
fi

before=$(rows "$url")
schema "$url" >"$tmp/schema1" && [ -s "$tmp/schema1" ] || fail "describe the migrated schema"
DATABASE_URL="$url" "$ORCHD" migrate >"$tmp/run2" 2>&1
is "$?" 0 "second run succeeds"
is "$(summary "$tmp/run2")" "0 0 $nfiles" "second run: 0 applied, everything up to date"
has "$tmp/run2" "migrate: 0 applied" "second run prints 0 applied"
is "$(rows "$url")" "$before" "second run leaves schema_migrations unchanged"
schema "$url" >"$tmp/schema2" && [ -s "$tmp/schema2" ] || fail "describe the schema after the second run"
if cmp -s "$tmp/schema1" "$tmp/schema2"; then ok "second run leaves the schema unchanged"; else fail "second run changed the schema"; fi

"$ORCHD" migrate --status --database-url "$url" >"$tmp/status1" 2>&1
is "$?" 0 "--status after migrate: exit 0"
is "$(grep -c -e '^applied ' -e '^skipped ' "$tmp/status1")" "$nfiles" "--status: every file applied (or skipped by its only-if)"
has "$tmp/status1" "0 pending, 0 changed" "--status: nothing pending or changed"

# Four runs at once on one empty database: the lock serializes them, each file is recorded once.
url=$(empty_db tasker_migrate_b)
pids=()
for i in 1 2 3 4; do
  DATABASE_URL="$url" "$ORCHD" migrate >"$tmp/conc$i" 2>&1 &
  pids+=($!)
done
rcs=""
for p in "${pids[@]}"; do wait "$p"; rcs="$rcs$?"; done
is "$rcs" "0000" "four concurrent runs all exit 0"
is "$(psql_at "$url" "SELECT count(*) || '/' || count(DISTINCT name) FROM tasker.schema_migrations")" "$nfiles/$nfiles" \
  "concurrent runs: every file recorded exactly once"
total=0
for i in 1 2 3 4; do read -r a s u <<<"$(summary "$tmp/conc$i")"; total=$((total + ${a:-0} + ${s:-0})); done
is "$total" "$nfiles" "concurrent runs: each file applied by exactly one run"

# An edited landed migration is refused (simulated by changing its recorded checksum).
mig=$(psql_at "$url" "SELECT name FROM tasker.schema_migrations WHERE kind = 'migration' ORDER BY name LIMIT 1")
if [ -n "$mig" ]; then
  psql_at "$url" "UPDATE tasker.schema_migrations SET checksum = repeat('0', 64) WHERE name = '$mig'"
  before=$(rows "$url")
  DATABASE_URL="$url" "$ORCHD" migrate >"$tmp/out" 2>&1
  is "$?" 1 "edited landed migration: exit 1"
  has "$tmp/out" "migrations/$mig was changed after it was applied" "edited landed migration: named in the error"
  has "$tmp/out" "never edited" "edited landed migration: says to add a new migration instead"
  is "$(rows "$url")" "$before" "edited landed migration: nothing changed"
  "$ORCHD" migrate --status --database-url "$url" >"$tmp/out" 2>&1
  is "$?" 1 "--status with an edited landed migration: exit 1"
  has "$tmp/out" "changed!  migrations/$mig" "--status marks it changed!"
else
  skip "no real migrations embedded yet (the fixture below covers refusal)"
fi

# ---- fixture binaries ------------------------------------------------------------------------------
# Linked from the objects `make` built for this BIN's variant plus an embedded table of our own.

san=0
case "$BIN" in *asan*) san=1 ;; esac
makevar() {
  # shellcheck disable=SC2016 # $($*) is make's, not the shell's
  env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory SANITIZE=$san \
    --eval 'tasker-print-%: ; @echo $($*)' "tasker-print-$1"
}
FX_CC=$(makevar CC)
read -ra FX_CFLAGS <<<"$(makevar CFLAGS) $(makevar PKG_CFLAGS)"
read -ra FX_LDFLAGS <<<"$(makevar LDFLAGS)"
read -ra FX_LIBS <<<"$(makevar PKG_LIBS) -lm"
read -ra FX_OBJS <<<"$(makevar DAEMON_OBJ | tr ' ' '\n' | grep -v '/embedded_sql\.o$' | tr '\n' ' ')"
read -ra FX_LIB_OBJS <<<"$(makevar LIB_OBJ | tr ' ' '\n' | grep -v '/embedded_sql\.o$' | tr '\n' ' ')"

# check-current URL: what the daemon will ask at startup (migrate_check_current), printed.
cat >"$tmp/check_current.c" <<'C'
/* check_current.c — test driver: prints migrate_check_current()'s verdict for the database argv[1]. */
#include <stdio.h>
#include "migrate.h"
int main(int argc, char **argv)
{
    char err[512];
    PGconn *conn = PQconnectdb(argc > 1 ? argv[1] : "");
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        return 3;
    }
    bool ok = migrate_check_current(conn, err, sizeof err);
    puts(ok ? "current" : err);
    PQfinish(conn);
    return ok ? 0 : 1;
}
C

# fixture DIR: build DIR/tasker-orchestratord and DIR/check-current embedding DIR/migrations/*.sql
# and DIR/sql/*.sql.
fixture() {
  local dir=$1 files=()
  mapfile -t files < <(cd "$dir" && for k in migrations sql; do printf '%s\n' "$k"/*.sql; done | grep -v '\*' | LC_ALL=C sort)
  (cd "$dir" && "$root/scripts/embed-sql" "${files[@]}") >"$dir/embedded_sql.c" &&
    "$FX_CC" "${FX_CFLAGS[@]}" -c -o "$dir/embedded_sql.o" "$dir/embedded_sql.c" &&
    "$FX_CC" "${FX_LDFLAGS[@]}" -o "$dir/tasker-orchestratord" "${FX_OBJS[@]}" "$dir/embedded_sql.o" "${FX_LIBS[@]}" &&
    "$FX_CC" "${FX_CFLAGS[@]}" -c -o "$dir/check_current.o" "$tmp/check_current.c" &&
    "$FX_CC" "${FX_LDFLAGS[@]}" -o "$dir/check-current" "$dir/check_current.o" "${FX_LIB_OBJS[@]}" "$dir/embedded_sql.o" "${FX_LIBS[@]}"
}

# Set A: a migration, a migration whose only-if is false, a function, a function whose only-if is false.
A=$tmp/a
mkdir -p "$A/migrations" "$A/sql"
cat >"$A/migrations/0001_fx_base.sql" <<'SQL'
-- 0001_fx_base.sql — fixture: one table.
CREATE TABLE public.fx_base (id int PRIMARY KEY);
SQL
cat >"$A/migrations/0002_fx_never.sql" <<'SQL'
-- 0002_fx_never.sql — fixture: never applies.
-- tasker:only-if EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'tasker_no_such_extension')
CREATE TABLE public.fx_never (id int);
SQL
cat >"$A/sql/0100_fx_fn.sql" <<'SQL'
-- 0100_fx_fn.sql — fixture: a function that B redefines.
SET search_path = pg_catalog; -- session-level on purpose: must not leak into the next file
CREATE OR REPLACE FUNCTION public.fx_version() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
SQL
cat >"$A/sql/0200_fx_cond.sql" <<'SQL'
-- tasker:only-if to_regclass('public.fx_later') IS NOT NULL
-- Unqualified on purpose: lands in public only if 0100's SET search_path did not leak.
CREATE OR REPLACE FUNCTION fx_cond() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
SQL
# Set B: A plus a migration that makes 0200's only-if true, and changed sql/ files.
B=$tmp/b
mkdir -p "$B"
cp -r "$A/migrations" "$A/sql" "$B/"
cat >"$B/migrations/0003_fx_later.sql" <<'SQL'
CREATE TABLE public.fx_later (id int);
SQL
sed -i 's/SELECT 1 \$\$/SELECT 2 $$/' "$B/sql/0100_fx_fn.sql"
echo "-- v2" >>"$B/sql/0200_fx_cond.sql"
# Set E: a good migration, then one that fails on line 6 after multi-byte characters.
E=$tmp/e
mkdir -p "$E/migrations"
cat >"$E/migrations/0001_fx_ok.sql" <<'SQL'
CREATE TABLE public.fx_ok (id int);
SQL
cat >"$E/migrations/0002_fx_bad.sql" <<'SQL'
-- 0002_fx_bad.sql — fixture: fails on line 6; characters above are multi-byte (é — ü).
-- ü ü ü — é — ü ü ü
CREATE TABLE public.fx_partial (id int);

-- the next statement calls a function that does not exist
SELECT no_such_function(1);
CREATE TABLE public.fx_after (id int);
SQL

if fixture "$A" && fixture "$B" && fixture "$E"; then
  ok "fixture binaries built"
else
  fail "fixture binaries built"; finish; exit 1
fi

url=$(empty_db tasker_migrate_fx)
"$A/check-current" "$url" >"$tmp/out" 2>&1
is "$?" 1 "check_current on an empty database: false"
has "$tmp/out" "never migrated" "check_current on an empty database: says it was never migrated"
"$A/tasker-orchestratord" migrate --database-url "$url" >"$tmp/runA" 2>&1
is "$?" 0 "fixture A: migrate succeeds"
is "$("$A/check-current" "$url")" "current" "check_current after migrate: true (skipped files count as done)"
"$B/check-current" "$url" >"$tmp/out" 2>&1
is "$?" 1 "check_current of a newer binary: false"
has "$tmp/out" "3 files to apply, first migrations/0003_fx_later.sql" "check_current says what is pending"
is "$(summary "$tmp/runA")" "2 2 0" "fixture A: 2 applied, 2 skipped"
has "$tmp/runA" "skipped  migrations/0002_fx_never.sql" "fixture A: a false only-if skips the migration"
is "$(psql_at "$url" "SELECT string_agg(name || ':' || skipped, ',' ORDER BY name) FROM tasker.schema_migrations")" \
  "0001_fx_base.sql:false,0002_fx_never.sql:true,0100_fx_fn.sql:false,0200_fx_cond.sql:true" \
  "fixture A: skipped files are recorded as skipped"
is "$(psql_at "$url" "SELECT to_regclass('public.fx_never') IS NULL AND to_regprocedure('public.fx_cond()') IS NULL")" t \
  "fixture A: skipped files applied nothing"
is "$(psql_at "$url" "SELECT checksum FROM tasker.schema_migrations WHERE name = '0002_fx_never.sql'")" \
  "$(sha256sum "$A/migrations/0002_fx_never.sql" | cut -d' ' -f1)" "fixture A: skipped files are checksummed"
is "$(psql_at "$url" "SELECT public.fx_version()")" 1 "fixture A: function applied"

# Edited landed migration: nothing at all happens, although B has work pending.
psql_at "$url" "UPDATE tasker.schema_migrations SET checksum = 'deadbeef' WHERE name = '0001_fx_base.sql'"
before=$(rows "$url")
"$B/tasker-orchestratord" migrate --database-url "$url" >"$tmp/out" 2>&1
is "$?" 1 "fixture B over an edited migration: exit 1"
has "$tmp/out" "migrations/0001_fx_base.sql was changed after it was applied" "refusal names the file"
has "$tmp/out" "recorded checksum deadbeef" "refusal shows the recorded checksum"
has "$tmp/out" "$(sha256sum "$B/migrations/0001_fx_base.sql" | cut -d' ' -f1)" "refusal shows the file's checksum"
has "$tmp/out" "add a new migration" "refusal says to add a new migration instead"
is "$(rows "$url")" "$before" "refusal: schema_migrations unchanged"
is "$(psql_at "$url" "SELECT (to_regclass('public.fx_later') IS NULL) || ' ' || public.fx_version()")" "true 1" \
  "refusal: pending migration and changed function not applied"
"$B/tasker-orchestratord" migrate --status --database-url "$url" >"$tmp/out" 2>&1
is "$?" 1 "--status with an edited migration: exit 1"
is "$("$A/check-current" "$url")" "migrations/0001_fx_base.sql changed after it was applied; see \`tasker-orchestratord migrate --status\`" \
  "check_current with an edited migration: false, names it"
has "$tmp/out" "changed!  migrations/0001_fx_base.sql" "--status marks the edited migration changed!"

psql_at "$url" "UPDATE tasker.schema_migrations SET checksum = '$(sha256sum "$A/migrations/0001_fx_base.sql" | cut -d' ' -f1)' WHERE name = '0001_fx_base.sql'"
"$B/tasker-orchestratord" migrate --status --database-url "$url" >"$tmp/out" 2>&1
is "$?" 0 "--status with pending work: exit 0"
has "$tmp/out" "pending   migrations/0003_fx_later.sql" "--status: new migration pending"
has "$tmp/out" "pending   sql/0100_fx_fn.sql (changed" "--status: changed function file pending"
has "$tmp/out" "skipped   migrations/0002_fx_never.sql" "--status: skipped migration shown as skipped"

"$B/tasker-orchestratord" migrate --database-url "$url" >"$tmp/out" 2>&1
is "$?" 0 "fixture B: migrate succeeds"
is "$(summary "$tmp/out")" "3 0 2" "fixture B: new migration and both changed sql/ files applied"
is "$(psql_at "$url" "SELECT public.fx_version()")" 2 "fixture B: changed function re-applied"
is "$(psql_at "$url" "SELECT skipped FROM tasker.schema_migrations WHERE name = '0200_fx_cond.sql'")" f \
  "fixture B: a skipped sql/ file is re-evaluated when it changes"
is "$(psql_at "$url" "SELECT to_regprocedure('public.fx_cond()') IS NOT NULL")" t \
  "fixture B: ...and applied now that its only-if holds; a file's SET search_path does not leak into the next"
before=$(rows "$url")
"$B/tasker-orchestratord" migrate --database-url "$url" >"$tmp/out" 2>&1
is "$(summary "$tmp/out")" "0 0 5" "fixture B again: 0 applied"
is "$("$B/check-current" "$url")" "current" "check_current after fixture B: true"
is "$(rows "$url")" "$before" "fixture B again: schema_migrations unchanged"
"$A/tasker-orchestratord" migrate --status --database-url "$url" >"$tmp/out" 2>&1
has "$tmp/out" "unknown   migrations/0003_fx_later.sql" "--status of an older binary lists files it does not know"

# A failing file: reported with file, line, hint; its transaction rolled back; earlier files kept.
url=$(empty_db tasker_migrate_fx_err)
"$E/tasker-orchestratord" migrate --database-url "$url" >"$tmp/out" 2>&1
is "$?" 1 "failing migration: exit 1"
has "$tmp/out" "migrations/0002_fx_bad.sql: ERROR:  function no_such_function(integer) does not exist" \
  "failing migration: file and message"
has "$tmp/out" "migrations/0002_fx_bad.sql: line 6: SELECT no_such_function(1);" \
  "failing migration: line number counted in characters, with the line"
has "$tmp/out" "migrations/0002_fx_bad.sql: HINT:  " "failing migration: hint"
is "$(psql_at "$url" "SELECT string_agg(name, ',') FROM tasker.schema_migrations")" "0001_fx_ok.sql" \
  "failing migration: not recorded, the one before it kept"
is "$(psql_at "$url" "SELECT (to_regclass('public.fx_ok') IS NOT NULL) || ' ' || (to_regclass('public.fx_partial') IS NULL)")" \
  "true true" "failing migration: its earlier statements rolled back"

# The lock: three runs wait while another session holds it, then one applies and two find nothing.
url=$(empty_db tasker_migrate_fx_lock)
PGAPPNAME=fx-holder psql "$url" -Xqc "SELECT pg_advisory_lock($LOCK_KEY)" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
holder=$!
for _ in $(seq 100); do
  [ "$(psql_at "$url" "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fx-holder' AND state = 'active' AND query LIKE '%pg_sleep%'")" = 1 ] && break
  sleep 0.1
done
pids=()
for i in 1 2 3; do
  "$A/tasker-orchestratord" migrate --database-url "$url" >"$tmp/lock$i" 2>&1 &
  pids+=($!)
done
waiting=0
for _ in $(seq 100); do
  waiting=$(psql_at "$url" "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasker-migrate' AND wait_event = 'advisory'")
  [ "$waiting" = 3 ] && break
  sleep 0.1
done
is "$waiting" 3 "three runs (application_name tasker-migrate) wait on the advisory lock"
psql_at "$(db_url postgres)" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fx-holder'" >/dev/null
wait "$holder" 2>/dev/null
holder=
rcs=""
for p in "${pids[@]}"; do wait "$p"; rcs="$rcs$?"; done
is "$rcs" "000" "after the lock is released all three runs exit 0"
is "$(cat "$tmp"/lock? | summary /dev/stdin | sort | tr '\n' ' ')" "0 0 4 0 0 4 2 2 0 " "one run applied everything, two found nothing to do"
has "$tmp/lock1" "waiting for it" "a waiting run says it waits for the lock"
is "$(psql_at "$url" "SELECT count(*) FROM tasker.schema_migrations")" 4 "every fixture file recorded once"


# A database migrated by a newer build (a migration this binary lacks) is refused, untouched.
url=$(fresh_db tasker_migrate_newer)
psql_at "$url" "INSERT INTO tasker.schema_migrations (name, kind, checksum) VALUES ('9999_from_the_future.sql', 'migration', 'x')" >/dev/null
before=$(psql_at "$url" "SELECT md5(string_agg(name || checksum || applied_at, ',' ORDER BY name)) FROM tasker.schema_migrations")
out=$("$BIN/tasker-orchestratord" migrate --database-url "$url" 2>&1)
rc=$?
is "$rc" 1 "migrate refuses a database migrated by a newer build"
case "$out" in *9999_from_the_future.sql*newer*) ok "the message names the unknown migration and says why" ;;
               *) fail "unexpected message: $out" ;; esac
is "$(psql_at "$url" "SELECT md5(string_agg(name || checksum || applied_at, ',' ORDER BY name)) FROM tasker.schema_migrations")" \
   "$before" "nothing was re-applied"

# A plain-SQL PGMQ install (schema pgmq with its catalogue pgmq.meta, no extension) is refused,
# and the hint is a step that can work: CREATE EXTENSION pgmq cannot (it fails on pgmq.meta).
url=$(empty_db tasker_migrate_plain_pgmq)
psql_at "$url" "CREATE SCHEMA pgmq; CREATE TABLE pgmq.meta (queue_name varchar NOT NULL UNIQUE, is_partitioned boolean NOT NULL, is_unlogged boolean NOT NULL, created_at timestamptz NOT NULL DEFAULT now())" >/dev/null
out=$("$BIN/tasker-orchestratord" migrate --database-url "$url" 2>&1)
rc=$?
is "$rc" 1 "migrate refuses a database whose schema pgmq is a plain-SQL PGMQ install"
case "$out" in *"Install the pgmq extension over it"*) fail "the hint suggests CREATE EXTENSION over pgmq.meta, which fails: $out" ;;
               *HINT:*docs/operations.md*) ok "the hint points at the move described in docs/operations.md" ;;
               *) fail "the refusal's hint: $out" ;; esac
is "$(psql_at "$url" "SELECT count(*) FROM pg_namespace WHERE nspname = 'tasker'")/$(psql_at "$url" "SELECT to_regclass('pgmq.meta') IS NOT NULL")" \
   "1/t" "the plain install is left as it was"

finish
