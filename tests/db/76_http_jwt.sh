#!/usr/bin/env bash
# 76_http_jwt.sh — JWT bearer tokens on a real daemon: RS256, ES256 and HS256 tokens made with
# scripts/jwt-token are accepted and the audit names their subject; expired, not-yet-valid,
# misaddressed, forged (alg none, HS256 keyed with the RSA public key), tampered, unknown-key and
# malformed tokens get 401 with their reason; a missing permission 403; API keys keep working; a
# rotated key file takes effect on SIGHUP (the old token refused, the new one accepted), and so does
# a switch to a JWKS file. The token never reaches the log.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=tests/lib.sh
. tests/lib.sh

command -v curl >/dev/null && command -v jq >/dev/null && command -v openssl >/dev/null ||
  { echo "curl, jq and openssl are needed (scripts/install-deps)" >&2; exit 1; }

url=$(fresh_db tasker_jwt) || { fail "fresh database tasker_jwt"; finish; exit 1; }
tmp=$(mktemp -d)
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill -KILL "$DAEMON_PID" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
q() { psql_at "$url" "$1"; }
JWT=scripts/jwt-token
LOG=$tmp/daemon.log

# ---- keys and tokens -----------------------------------------------------------------------------
$JWT keygen rsa "$tmp/rsa.key" "$tmp/rsa.pub" && $JWT keygen rsa "$tmp/rsa2.key" "$tmp/rsa2.pub" &&
  $JWT keygen ec "$tmp/ec.key" "$tmp/ec.pub" || { fail "scripts/jwt-token keygen"; finish; exit 1; }
cp "$tmp/rsa.pub" "$tmp/active.pub"  # the file rotated below
openssl rand -hex 24 | tr -d '\n' >"$tmp/hs.secret"
ADMIN=adm-0123456789abcdef0123
NOW=$(date +%s)
# claims SUB PERMISSIONS [EXTRA]: a payload the daemon's policy accepts, EXTRA overriding members.
claims() {
  local extra=${3:-'{}'}
  jq -cn --arg sub "$1" --argjson perms "$2" --argjson now "$NOW" --argjson extra "$extra" \
    '{iss: "https://id.test", aud: ["other", "tasker"], sub: $sub, iat: $now, exp: ($now + 600),
      permissions: $perms} + $extra'
}
ALL='["*"]'

cat >"$tmp/d.conf" <<EOF
environment = "test"
database {
    url = "$url"
    pool { max_connections = 4  min_connections = 2  acquire_timeout_secs = 5 }
}
orchestration { shutdown_timeout_secs = 5  sweeper { interval_secs = 3600 } }
web {
    auth {
        enabled = true
        api_keys = "admin@$ADMIN:*"
        jwt {
            enabled = true
            public_keys = "r1=$tmp/active.pub e1=$tmp/ec.pub"
            issuer = "https://id.test"
            audience = "tasker"
            leeway_secs = 5
        }
    }
}
log { level = "debug" }
EOF

# ---- the configuration check ---------------------------------------------------------------------
out=$(TASKER_JWT_HS256_SECRET=$(cat "$tmp/hs.secret") "$BIN/tasker-orchestratord" -c "$tmp/d.conf" --check-config -v 2>&1)
if [ $? -eq 0 ] && grep -q 'hs256_secret = "\*\*\*"' <<<"$out" && ! grep -qF "$(cat "$tmp/hs.secret")" <<<"$out"; then
  ok "--check-config -v accepts the JWT keys and masks the HS256 secret"
else fail "--check-config -v: $out"; fi
sed "s|e1=$tmp/ec.pub|e1=$tmp/missing.pub|" "$tmp/d.conf" >"$tmp/bad.conf"
out=$("$BIN/tasker-orchestratord" -c "$tmp/bad.conf" --check-config 2>&1)
[ $? -ne 0 ] && grep -q "bad.conf:.*$tmp/missing.pub: cannot open" <<<"$out" &&
  ok "an unreadable key file is a configuration error naming it" || fail "missing key file: $out"

# ---- the daemon ----------------------------------------------------------------------------------
DATABASE_URL="$url" TASKER_WEB_BIND_ADDRESS=127.0.0.1:0 TASKER_ENV= TASKER_JWT_HS256_SECRET=$(cat "$tmp/hs.secret") \
  "$BIN/tasker-orchestratord" -c "$tmp/d.conf" >"$LOG" 2>&1 &
DAEMON_PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*HTTP API listening on .* (port \([0-9]*\)).*/\1/p' "$LOG" | head -n 1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
BASE=http://127.0.0.1:$PORT
st=
for _ in $(seq 1 100); do
  st=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health/ready"); [ "$st" = 200 ] && break; sleep 0.1
done
[ "$st" = 200 ] && ok "daemon up with JWT auth ($(grep -o 'JWT auth: .*' "$LOG" | head -n 1))" ||
  { fail "daemon not ready (port '$PORT', status '$st')"; tail -n 20 "$LOG" | sed 's/^/# /'; finish; exit 1; }

HEADERS=$tmp/headers
# req METHOD PATH TOKEN [BODY]: sets STATUS and BODY.
req() {
  local data=()
  [ -n "${4:-}" ] && data=(--data-binary "$4")
  STATUS=$(curl -sS -o "$tmp/body" -D "$HEADERS" -w '%{http_code}' -X "$1" "${data[@]}" \
    -H "Authorization: Bearer $3" "$BASE$2")
  BODY=$(cat "$tmp/body")
}
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }
# refused TOKEN REASON DESCRIPTION: GET /v1/tasks with TOKEN → 401 unauthorized, this reason.
refused() {
  req GET /v1/tasks "$1"
  if [ "$STATUS" = 401 ] && [ "$(j .error.code)" = unauthorized ] && [ "$(j .error.reason)" = "$2" ] &&
     [ -n "$(j .error.message)" ]; then
    ok "$3 → 401 $2 ($(j .error.message))"
  else
    fail "$3: want 401 unauthorized/$2, got $STATUS $(head -c 300 <<<"$BODY")"
  fi
}

# ---- valid tokens: RS256, ES256, HS256 -----------------------------------------------------------
RS=$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL")" r1)
ES=$($JWT sign ES256 "$tmp/ec.key" "$(claims bob '["tasks:create","tasks:read"]')" e1)
HS=$($JWT sign HS256 "$tmp/hs.secret" "$(claims carol '["tasks:*"]')")
TEMPLATE='{"name":"jwtflow","namespace_name":"jwtns","version":"1.0.0",
  "steps":[{"name":"a","handler":{"callable":"noop"}}]}'
req POST /v1/templates "$RS" "$TEMPLATE"
[ "$STATUS" = 201 ] && ok "RS256 (kid r1, permissions *): POST /v1/templates → 201" || fail "RS256: $STATUS $BODY"
req POST /v1/tasks "$ES" '{"name":"jwtflow","namespace":"jwtns","version":"1.0.0","context":{}}'
T=$(j .task_uuid)
[ "$STATUS" = 201 ] && [ -n "$T" ] && ok "ES256 (kid e1, tasks:create): POST /v1/tasks → 201" || fail "ES256: $STATUS $BODY"
req GET "/v1/tasks/$T" "$ES"
[ "$STATUS" = 200 ] && ok "ES256: GET /v1/tasks/{uuid} → 200" || fail "ES256 GET: $STATUS $BODY"
req DELETE "/v1/tasks/$T?cancelled_by=ops-dan" "$HS"
[ "$STATUS" = 200 ] && ok "HS256 (no kid, tasks:*): DELETE /v1/tasks/{uuid} → 200" || fail "HS256: $STATUS $BODY"
is "$(q "SELECT processor || ' ' || (metadata->>'claimed_operator') FROM tasker.task_transitions
         WHERE task_uuid = '$T' AND to_state = 'cancelled'")" "jwt:carol ops-dan" \
  "the audit row names the token's subject (jwt:carol) next to the operator it claims"
grep -q 'DELETE .* -> 200 .* jwt carol' "$LOG" && ok "the request's log line names the subject" ||
  fail "no log line naming jwt carol"

# ---- refusals: 401 with the reason ---------------------------------------------------------------
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL" "{\"exp\":$((NOW - 60))}")" r1)" expired "expired"
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL" "{\"nbf\":$((NOW + 120))}")" r1)" not_yet_valid \
  "not yet valid"
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL" '{"iss":"https://evil.test"}')" r1)" issuer \
  "wrong issuer"
refused "$($JWT sign ES256 "$tmp/ec.key" "$(claims alice "$ALL" '{"aud":"billing"}')" e1)" audience "wrong audience"
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL" '{"exp":null}')" r1)" no_expiry "no exp"
b64() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
NONE="$(printf '{"alg":"none","typ":"JWT"}' | b64).$(claims alice "$ALL" | tr -d '\n' | b64)."
refused "$NONE" algorithm "alg none"
refused "$($JWT sign HS256 "$tmp/rsa.pub" "$(claims mallory "$ALL")" r1)" signature \
  "HS256 signed with the RSA public key as the secret"
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL")" r9)" unknown_key "unknown kid"
refused "$($JWT sign RS256 "$tmp/rsa.key" "$(claims alice "$ALL")" e1)" algorithm "RS256 token naming the ES256 key"
refused "$($JWT sign RS256 "$tmp/rsa2.key" "$(claims alice "$ALL")" r1)" signature "bad signature (another key)"
GREEDY=$(claims mallory "$ALL" | tr -d '\n' | b64)
RS_READER=$($JWT sign RS256 "$tmp/rsa.key" "$(claims reader '["tasks:read"]')" r1)
refused "${RS_READER%%.*}.$GREEDY.${RS_READER##*.}" signature "tampered payload"
refused "not-a-key.garbage" malformed "garbage with a dot"
refused "$(printf '%s' "${RS%.*}")" malformed "two parts"
refused "$RS.$RS" malformed "six parts"
HUGE="${RS%%.*}.$(head -c 9000 /dev/zero | tr '\0' 'A').${RS##*.}"
refused "$HUGE" too_long "a token of over 9000 bytes"
req GET /v1/tasks "garbage"
[ "$STATUS" = 401 ] && [ "$(j .error.code)" = unauthorized ] && ok "garbage without a dot → 401 ($(j .error.message))" ||
  fail "garbage: $STATUS $BODY"
case "$(tr -d '\r' <"$HEADERS" | sed -n 's/^WWW-Authenticate: //Ip')" in
  *Bearer*) ok "401 carries WWW-Authenticate: Bearer" ;; *) fail "no WWW-Authenticate on 401" ;;
esac

# ---- permissions: 403 ----------------------------------------------------------------------------
req GET /v1/tasks "$RS_READER"
[ "$STATUS" = 403 ] && [ "$(j .error.code)" = forbidden ] && grep -q 'reader' <<<"$(j .error.message)" &&
  ok "a valid token without tasks:list → 403 forbidden ($(j .error.message))" || fail "403: $STATUS $BODY"
req DELETE "/v1/tasks/$T" "$ES"
[ "$STATUS" = 403 ] && ok "ES256 token without tasks:cancel: DELETE → 403" || fail "ES256 cancel: $STATUS $BODY"

# ---- API keys keep working -----------------------------------------------------------------------
req GET /v1/tasks "$ADMIN"
[ "$STATUS" = 200 ] && ok "an API key still works next to JWTs" || fail "API key: $STATUS $BODY"

# ---- SIGHUP: a rotated key file, then a JWKS file --------------------------------------------------
loads() { grep -c 'JWT auth: .* key(s) loaded' "$LOG"; }
wait_loads() {
  for _ in $(seq 1 100); do [ "$(loads)" -ge "$1" ] && return 0; sleep 0.1; done
  return 1
}
RS_NEW=$($JWT sign RS256 "$tmp/rsa2.key" "$(claims alice "$ALL")" r1)
req GET /v1/tasks "$RS_NEW"; is "$STATUS" 401 "before the rotation, a token of the new key is refused"
n=$(loads)
cp "$tmp/rsa2.pub" "$tmp/active.pub"
kill -HUP "$DAEMON_PID"
wait_loads $((n + 1)) && ok "SIGHUP re-reads the key files" || fail "no key reload after SIGHUP"
refused "$RS" signature "after the rotation, the old key's token"
req GET /v1/tasks "$RS_NEW"; is "$STATUS" 200 "after the rotation, the new key's token is accepted"

$JWT jwks "r2=$tmp/rsa2.pub" "e1=$tmp/ec.pub" >"$tmp/jwks.json"
sed -i "s|public_keys = .*|jwks_file = \"$tmp/jwks.json\"|" "$tmp/d.conf"
n=$(loads)
kill -HUP "$DAEMON_PID"
wait_loads $((n + 1)) && ok "SIGHUP loads the JWKS file ($(grep -o 'JWT auth: .*' "$LOG" | tail -n 1))" ||
  fail "no JWKS load: $(tail -n 5 "$LOG")"
req GET /v1/tasks "$($JWT sign RS256 "$tmp/rsa2.key" "$(claims alice "$ALL")" r2)"
is "$STATUS" 200 "an RS256 token verified by the JWKS (scripts/jwt-token jwks)"
req GET /v1/tasks "$($JWT sign ES256 "$tmp/ec.key" "$(claims bob '["tasks:list"]')" e1)"
is "$STATUS" 200 "an ES256 token verified by the JWKS"
refused "$RS_NEW" unknown_key "kid r1 is gone with the PEM configuration"

# ---- the log -------------------------------------------------------------------------------------
leaked=0
for t in "$RS" "$ES" "$HS" "$RS_NEW" "${RS##*.}"; do grep -qF "$t" "$LOG" && leaked=1; done
grep -qF "$(cat "$tmp/hs.secret")" "$LOG" && leaked=1
[ $leaked -eq 0 ] && ok "no token, signature or secret in the daemon's log" || fail "a token or the secret is in the log"
grep -q 'JWT refused: expired' "$LOG" && ok "refusals are logged with their reason" || fail "no 'JWT refused' log line"

kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; rc=$?; DAEMON_PID=
is "$rc" 0 "SIGTERM: the daemon exits 0"
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$LOG"; then fail "sanitizer report in the log"; else
  ok "no sanitizer report in the daemon's log"; fi
finish
