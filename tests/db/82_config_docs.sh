#!/usr/bin/env bash
# 82_config_docs.sh — the configuration documentation says what the binary does, and the other
# operator documents hold up:
#   1. scripts/check-config-coverage: every key of src/common/conf.c is in etc/ and docs/configuration.md;
#   2. for every key, docs/configuration.md, tasker-orchestratord.conf(5) and the comments of
#      etc/tasker-orchestratord.conf give the default, range and reload/restart of src/common/conf.c's
#      table, and etc/ sets the default;
#   3. the binary agrees: `--check-config -v` on an empty file prints those defaults, and every
#      integer key accepts its documented min and max and refuses min-1 and max+1 (file:line);
#   4. the environment variables do what the page says; the overlay table matches etc/environments;
#   5. the man pages render without groff warnings, and the units' Documentation= pages exist;
#   6. every SQL snippet of docs/operations.md runs against a migrated database with a task in it;
#      the Node.js example's options are the ones docs/worker-protocol.md lists.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tasker-82.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
unset DATABASE_URL TASKER_ENV TASKER_CONFIG_PATH TASKER_WEB_BIND_ADDRESS TASKER_JWT_HS256_SECRET JOURNAL_STREAM
D=tasker-orchestratord
DOC=docs/configuration.md
MAN=man/man5/tasker-orchestratord.conf.5
ETC=etc/tasker-orchestratord.conf

# ---- 1. coverage ---------------------------------------------------------------------------------
out=$(scripts/check-config-coverage 2>&1) && ok "$out" || fail "check-config-coverage: $out"

# ---- 2. the key table and the three documents ------------------------------------------------------
# "kind path default min max apply" per key, from the three-line KEY(...) entries of src/common/conf.c.
awk '/KEY\((INT|BOOL|STR|ENV), *"/ {
       kind = $0; sub(/.*KEY\(/, "", kind); sub(/,.*/, "", kind)
       match($0, /"[a-z0-9_.]+"/); path = substr($0, RSTART + 1, RLENGTH - 2)
       getline l2
       gsub(/^[ \t]+|[ \t]*\\$/, "", l2)
       n = split(l2, f, /, */)           # name, field, default, min, max, check, apply,
       print kind, path, f[3], f[4], f[5], tolower(f[7])
     }' src/common/conf.c >"$TMP/keys"
nkeys=$(wc -l <"$TMP/keys")
[ "$nkeys" -ge 30 ] && ok "src/common/conf.c's key table: $nkeys keys" || fail "src/common/conf.c's key table parsed ($nkeys keys)"

# doc_row KEY: "default|range|applies" from the key's row in docs/configuration.md.
doc_row() {
  sed -n '/^## Keys/,$p' "$DOC" | awk -F'|' -v k="\`$1\`" '{ c = $2; gsub(/^ +| +$/, "", c) } c == k {
    d = $3; r = $4; a = $5; gsub(/^ +| +$/, "", d); gsub(/^ +| +$/, "", r); gsub(/^ +| +$/, "", a)
    print d "|" r "|" a; exit }'
}
# man_line KEY: the "Default: …" line after ".B KEY" in the man page, with roff escapes undone.
man_line() {
  awk -v k=".B $1" 'found { print; exit } $0 == k && prev == ".TP" { found = 1 } { prev = $0 }' "$MAN" |
    sed -e 's/\\-/-/g' -e 's/\\&//g'
}
# etc_comment KEY: the comment lines right above the key's line in etc/, for a dotted KEY.
etc_comment() {
  awk -v want="$1" '
    { line = $0 }
    /^[ \t]*#/ { block = block line "\n"; next }
    /^[ \t]*[a-z0-9_]+[ \t]*\{/ { n = $1; sub(/\{.*/, "", n); stack[++depth] = n; block = ""; next }
    /^[ \t]*\}/ { depth--; block = ""; next }
    /^[ \t]*[a-z0-9_]+[ \t]*=/ {
      k = $1; sub(/=.*/, "", k); p = ""
      for (i = 1; i <= depth; i++) p = p stack[i] "."
      if (p k == want) { v = line; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*#.*$/, "", v); printf "%s", block; print "VALUE " v; exit }
      block = ""; next
    }
    { block = "" }' "$ETC"
}

bad_doc=(); bad_man=(); bad_etc=()
while read -r kind path def min max apply; do
  range=""
  [ "$kind" = INT ] && range="$min..$max"
  # docs/configuration.md
  IFS='|' read -r d r a <<<"$(doc_row "$path")"
  [ "$d" = "$def" ] || bad_doc+=("$path: default '$d' (table: $def)")
  [ -z "$range" ] || [ "$r" = "$range" ] || bad_doc+=("$path: range '$r' (table: $range)")
  [[ "$a" == "$apply"* ]] || bad_doc+=("$path: applies '$a' (table: $apply)")
  # the man page
  m=$(man_line "$path")
  [[ "$m" == "Default: $def;"* ]] || bad_man+=("$path: '$m' (default $def)")
  [ -z "$range" ] || [[ "$m" == *"range: $range;"* ]] || bad_man+=("$path: '$m' (range $range)")
  [[ "$m" == *"; $apply." ]] || bad_man+=("$path: '$m' ($apply)")
  # etc/: the value set and the comment above it
  c=$(etc_comment "$path")
  v=$(sed -n 's/^VALUE //p' <<<"$c")
  [ "$v" = "$def" ] || bad_etc+=("$path = $v (default $def)")
  [ -z "$range" ] || grep -q -- "$range" <<<"$c" || bad_etc+=("$path: comment lacks $range")
  grep -q "($apply)" <<<"$c" || bad_etc+=("$path: comment lacks ($apply)")
done <"$TMP/keys"
[ ${#bad_doc[@]} -eq 0 ] && ok "$DOC: default, range and reload/restart of all $nkeys keys match src/common/conf.c" ||
  fail "$DOC disagrees with src/common/conf.c: ${bad_doc[*]}"
[ ${#bad_man[@]} -eq 0 ] && ok "$MAN: default, range and reload/restart of all $nkeys keys match src/common/conf.c" ||
  fail "$MAN disagrees with src/common/conf.c: ${bad_man[*]}"
[ ${#bad_etc[@]} -eq 0 ] && ok "$ETC: every key at its default, its comment giving range and reload/restart" ||
  fail "$ETC disagrees with src/common/conf.c: ${bad_etc[*]}"

# ---- 3. the binary -----------------------------------------------------------------------------------
: >"$TMP/empty.conf"
"$BIN/$D" --check-config -v -c "$TMP/empty.conf" >"$TMP/dump" 2>&1 || fail "--check-config -v on an empty file: $(cat "$TMP/dump")"
# The dump as "path value" lines.
awk '/^#/ || /^configuration OK/ { next }
     /^[ \t]*[a-z0-9_]+ \{/ { n = $1; stack[++depth] = n; next }
     /^[ \t]*\}/ { depth--; next }
     /=/ { k = $1; v = $0; sub(/^[^=]*= /, "", v); sub(/  # default.*$/, "", v); p = ""
           for (i = 1; i <= depth; i++) p = p stack[i] "."
           print p k, v }' "$TMP/dump" | sort >"$TMP/dumped"
wrong=()
while read -r kind path def rest; do
  got=$(awk -v k="$path" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$TMP/dumped")
  [ "$got" = "$def" ] || wrong+=("$path: binary $got, table $def")
done <"$TMP/keys"
[ ${#wrong[@]} -eq 0 ] && ok "--check-config -v on an empty file prints the documented default of all $nkeys keys" ||
  fail "the binary's defaults differ: ${wrong[*]}"

# nest PATH VALUE [PATH VALUE…]: a configuration file setting dotted PATHs.
nest() {
  while [ $# -ge 2 ]; do
    local path=$1 val=$2 depth=0 part
    IFS=. read -r -a parts <<<"$path"
    for part in "${parts[@]:0:${#parts[@]}-1}"; do printf '%s { ' "$part"; depth=$((depth + 1)); done
    printf '%s = %s' "${parts[-1]}" "$val"
    for ((; depth > 0; depth--)); do printf ' }'; done
    printf '\n'
    shift 2
  done
}
# Keys whose extreme values break a cross-field rule unless their partner moves too.
companion() {
  case "$1:$2" in
    database.pool.min_connections:max) echo "database.pool.max_connections 1000" ;;
    database.pool.max_connections:min) echo "database.pool.min_connections 0" ;;
    database.pool.reconnect_initial_ms:max) echo "database.pool.reconnect_max_ms 600000" ;;
    database.pool.reconnect_max_ms:min) echo "database.pool.reconnect_initial_ms 1" ;;
  esac
}
range_bad=()
checked=0
while read -r kind path def min max apply; do
  [ "$kind" = INT ] || continue
  for which in min max; do
    val=${!which}
    # shellcheck disable=SC2046
    nest "$path" "$val" $(companion "$path" "$which") >"$TMP/r.conf"
    "$BIN/$D" --check-config -c "$TMP/r.conf" >/dev/null 2>&1 || range_bad+=("$path = $val refused")
    out_val=$([ "$which" = min ] && echo $((val - 1)) || echo $((val + 1)))
    # shellcheck disable=SC2046
    nest "$path" "$out_val" $(companion "$path" "$which") >"$TMP/r.conf"
    out=$("$BIN/$D" --check-config -c "$TMP/r.conf" 2>&1) && range_bad+=("$path = $out_val accepted")
    [[ "$out" == "$TMP/r.conf:1: "* ]] || range_bad+=("$path = $out_val: '$out' is not file:line: message")
    checked=$((checked + 1))
  done
done <"$TMP/keys"
[ ${#range_bad[@]} -eq 0 ] && ok "every integer key accepts its documented min and max and refuses one beyond ($checked bounds)" ||
  fail "ranges: ${range_bad[*]}"

# ---- 4. environment variables and overlays ------------------------------------------------------------
out=$(DATABASE_URL="mysql://nope" "$BIN/$D" --check-config -c "$TMP/empty.conf" 2>&1)
[[ "$out" == "DATABASE_URL: "* ]] && ok "a bad \$DATABASE_URL is refused and named ($out)" || fail "bad \$DATABASE_URL: $out"
out=$(TASKER_WEB_BIND_ADDRESS="nonsense" "$BIN/$D" --check-config -c "$TMP/empty.conf" 2>&1)
[[ "$out" == "TASKER_WEB_BIND_ADDRESS: "* ]] && ok "a bad \$TASKER_WEB_BIND_ADDRESS is refused and named" ||
  fail "bad \$TASKER_WEB_BIND_ADDRESS: $out"
v=$(TASKER_WEB_BIND_ADDRESS="127.0.0.1:9" DATABASE_URL="postgresql://u:secret@h/db" "$BIN/$D" --check-config -v -c "$TMP/empty.conf" 2>&1)
grep -q 'bind_address = "127.0.0.1:9"' <<<"$v" && grep -q 'url = "postgresql://u:\*\*\*@h/db"' <<<"$v" &&
  ok "\$TASKER_WEB_BIND_ADDRESS and \$DATABASE_URL replace their keys; the password is masked in -v" ||
  fail "env overrides in --check-config -v"
out=$(TASKER_CONFIG_PATH="$PWD/$ETC" "$BIN/$D" --check-config 2>&1)
[[ "$out" == "configuration OK: $PWD/$ETC + $PWD/etc/environments/development.conf, environment development" ]] &&
  ok "\$TASKER_CONFIG_PATH names the file when -c is absent; the default environment is development" ||
  fail "\$TASKER_CONFIG_PATH: $out"
out=$(TASKER_ENV=production "$BIN/$D" --check-config -c "$ETC" 2>&1)
[[ "$out" == *"environments/production.conf, environment production" ]] && ok "\$TASKER_ENV picks the overlay" ||
  fail "\$TASKER_ENV: $out"
out=$(TASKER_ENV=production "$BIN/$D" --check-config -c "$ETC" -e test 2>&1)
[[ "$out" == *"environments/test.conf, environment test" ]] && ok "-e beats \$TASKER_ENV" || fail "-e vs \$TASKER_ENV: $out"

# The README's tour: -e without a file to find the overlay next to is refused, not ignored.
out=$("$BIN/$D" --check-config -e development 2>&1); rc=$?
[ "$rc" -ne 0 ] && [[ "$out" == "-e: environment \"development\" is read from environments/development.conf"*"pass -c FILE"* ]] &&
  ok "-e without -c is refused: $out" || fail "-e without -c (exit $rc): $out"
out=$("$BIN/$D" --check-config -v -c "$TMP/empty.conf" 2>&1)
grep -q 'bind_address = "127.0.0.1:8080"' <<<"$out" && ok "the API listens on loopback unless told otherwise" ||
  fail "default bind address: $(grep bind_address <<<"$out")"

# The overlay table of docs/configuration.md against etc/environments/*.conf.
overlay_bad=()
col=3
for env in test development production; do
  # the overlay's settings as "path value"
  awk '{ sub(/[ \t]*#.*$/, "") }
       /^[ \t]*[a-z0-9_]+[ \t]*\{/ { n = $1; sub(/\{.*/, "", n); stack[++depth] = n; next }
       /^[ \t]*\}/ { depth--; next }
       /^[ \t]*[a-z0-9_]+[ \t]*=/ { k = $1; sub(/=.*/, "", k); v = $0; sub(/^[^=]*=[ \t]*/, "", v); gsub(/"/, "", v); p = ""
         for (i = 1; i <= depth; i++) p = p stack[i] "."
         print p k, v }' "etc/environments/$env.conf" | grep -v '^environment ' | sort >"$TMP/ov.$env"
  # the table's column for env, as "path value" (— = not set)
  awk -F'|' -v c="$col" '/^\| `[a-z]/ && NF >= 6 { k = $2; gsub(/[ `]/, "", k); v = $c; gsub(/^ +| +$/, "", v)
       if (v != "—") print k, v }' <(sed -n '/^### The shipped overlays/,/^(— means/p' "$DOC") | sort >"$TMP/doc.$env"
  diff -q "$TMP/ov.$env" "$TMP/doc.$env" >/dev/null || overlay_bad+=("$env: $(diff "$TMP/doc.$env" "$TMP/ov.$env" | grep '^[<>]' | tr '\n' ' ')")
  col=$((col + 1))
done
[ ${#overlay_bad[@]} -eq 0 ] && ok "the overlay table lists exactly what etc/environments/*.conf set" ||
  fail "overlay table vs etc/environments (< doc, > file): ${overlay_bad[*]}"

# Both binaries say their version (the same one) and exit 0 without touching anything.
dv=$("$BIN/$D" --version 2>&1); wv=$("$BIN/tasker-worker" --version 2>&1); wrc=$?
[ "$wrc" -eq 0 ] && [ "$wv" = "tasker-worker ${dv#"$D "}" ] && ok "tasker-worker --version: $wv (the daemon: $dv)" ||
  fail "tasker-worker --version: '$wv' (exit $wrc; the daemon: '$dv')"

# ---- 5. man pages ---------------------------------------------------------------------------------------
for page in man/man8/tasker-orchestratord.8 man/man1/tasker-worker.1 man/man5/tasker-orchestratord.conf.5; do
  [ -f "$page" ] || { fail "$page exists"; continue; }
  # A missing tool is a failure, not a silent pass: scripts/install-deps installs both.
  if command -v groff >/dev/null; then
    warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
    [ -z "$warn" ] && ok "$page: groff -man -ww: no warnings" || fail "$page: groff warnings: $warn"
  else
    fail "groff is installed (groff-base, scripts/install-deps): $page not checked"
  fi
  if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q '^NAME' && ok "$page: man -l renders it" || fail "$page: man -l renders it"
  else
    fail "man is installed (man-db, scripts/install-deps): $page not rendered"
  fi
done
for ref in $(sed -n 's/^Documentation=//p' systemd/*.service | tr ' ' '\n' | grep '^man:'); do
  name=${ref#man:}; sect=${name##*(}; sect=${sect%)}; name=${name%(*}
  [ -f "man/man$sect/$name.$sect" ] && ok "unit Documentation=$ref: man/man$sect/$name.$sect" || fail "unit Documentation=$ref has no page"
done
for k in $(awk '{ print $2 }' "$TMP/keys"); do grep -qx ".B $k" "$MAN" || { fail "$MAN lists $k"; }; done

# ---- 6. the operator documents' SQL, the Node.js example's options ------------------------------------
url=$(fresh_db tasker_docs) || { fail "fresh database tasker_docs"; finish; exit 1; }
psql_at "$url" "SELECT status FROM tasker.register_task_template(\$tpl\$$(cat etc/templates/demo_diamond.json)\$tpl\$::jsonb)" >/dev/null
task=$(psql_at "$url" "SELECT task_uuid FROM tasker.create_task('{\"name\": \"diamond\", \"namespace\": \"demo\", \"context\": {\"docs\": 1}}')")
awk '/^```sql$/ { on = 1; n++; next } /^```$/ { on = 0 } on { print > (dir "/snippet." n ".sql") }' dir="$TMP" docs/operations.md
n=0
for f in "$TMP"/snippet.*.sql; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  if out=$(psql "$url" -X -q -v ON_ERROR_STOP=1 -v task_uuid="$task" -f "$f" 2>&1 >/dev/null); then :; else
    fail "docs/operations.md SQL snippet $(basename "$f") fails: $out"
  fi
done
[ "$n" -gt 0 ] && ok "docs/operations.md: all $n SQL snippets run (psql -v task_uuid=…)" || fail "docs/operations.md has SQL snippets"
opts=$(sed -n '/^## The Node.js example/,$p' docs/worker-protocol.md | grep -oE '^\| `--[a-z-]+' | tr -d '|` ' | sort -u)
missing=""
for o in $opts; do grep -q "'${o#--}'\|  ${o#--}: {\| ${o#--}: { type" examples/node-worker/worker.mjs || missing+="$o "; done
[ -n "$opts" ] && [ -z "$missing" ] && ok "worker-protocol.md lists $(wc -w <<<"$opts") options of worker.mjs, all real" ||
  fail "worker-protocol.md's options missing from worker.mjs: ${missing:-none listed}"
finish
