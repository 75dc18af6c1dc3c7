#!/usr/bin/env bash
# 84_rabbitmq_sandbox.sh — scripts/rabbitmq-sandbox as tests and the demo use it: `start` brings up a
# private broker on 127.0.0.1 as a non-root user, with its files under DIR, and prints AMQP_URL; a
# durable queue's persistent message survives `stop` and `start` (the same node, with its data);
# `stop` leaves no broker and no epmd behind. Skipped with a clear line only where rabbitmq-server
# is not installed.
# make-check: long 130
# make-check: broker
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 || ! command -v amqp-publish >/dev/null; then
  skip "rabbitmq-server or amqp-tools not installed (scripts/install-deps installs both)"
  finish; exit 0
fi

dir=$(mktemp -d "$PWD/var/test-rabbitmq-84.XXXXXX")
cleanup() {
  scripts/rabbitmq-sandbox stop "$dir" >/dev/null 2>&1
  [ -f "$dir/nodedir" ] && case $(cat "$dir/nodedir") in /var/tmp/tasker-rabbitmq.*/node) rm -rf "$(dirname "$(cat "$dir/nodedir")")" ;; esac
  rm -rf "$dir"
}
trap cleanup EXIT

line=$(scripts/rabbitmq-sandbox start "$dir" 2>"$dir/start.err"); rc=$?
is "$rc" 0 "rabbitmq-sandbox start succeeds"
url=${line##*AMQP_URL=}
case "$url" in amqp://*@127.0.0.1:*/%2F) ok "it prints AMQP_URL on 127.0.0.1 ($url)" ;; *) fail "AMQP_URL line: '$line' $(cat "$dir/start.err")" ;; esac
pid=$(cat "$dir/rabbitmq.pid" 2>/dev/null)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ok "DIR/rabbitmq.pid names the running broker ($pid)" || fail "DIR/rabbitmq.pid: '$pid'"
user=$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ')
[ -n "$user" ] && [ "$user" != root ] && ok "the broker runs as $user, not root" || fail "the broker's user: '$user'"
nodedir=$(cat "$dir/nodedir")
ls "$nodedir"/mnesia/*@localhost >/dev/null 2>&1 && ok "its data is under DIR's node directory ($nodedir)" || fail "no Mnesia data under $nodedir"
# Nothing but 127.0.0.1: the AMQP, distribution and epmd ports.
read -r amqp dist epmd <"$dir/ports"
wide=$(ss -Hltn 2>/dev/null | awk -v a=":$amqp" -v d=":$dist" -v e=":$epmd" '($4 ~ a"$" || $4 ~ d"$" || $4 ~ e"$") && $4 !~ /^(127\.0\.0\.1|\[::1\]):/ {print $4}' | xargs)
is "$wide" "" "AMQP ($amqp), distribution ($dist) and epmd ($epmd) listen on loopback only"

amqp-declare-queue --url="$url" -d -q sandbox_probe >/dev/null 2>&1 && ok "a durable queue can be declared" || fail "amqp-declare-queue"
amqp-publish --url="$url" -r sandbox_probe -p -b "kept across a restart" 2>/dev/null && ok "a persistent message is published" || fail "amqp-publish"

again=$(scripts/rabbitmq-sandbox start "$dir" 2>/dev/null)
is "$again" "$line" "start on a running node prints the same URL and starts nothing"

scripts/rabbitmq-sandbox stop "$dir" >/dev/null 2>&1
! kill -0 "$pid" 2>/dev/null && ok "stop ends the broker" || fail "the broker $pid still runs after stop"
left=$(ss -Hltn 2>/dev/null | awk -v a=":$amqp" -v d=":$dist" -v e=":$epmd" '$4 ~ a"$" || $4 ~ d"$" || $4 ~ e"$" {print $4}' | xargs)
is "$left" "" "stop leaves nothing listening: no broker, no epmd"

line2=$(scripts/rabbitmq-sandbox start "$dir" 2>"$dir/start2.err")
is "$line2" "$line" "start on the stopped DIR brings back the same node and URL"
got=$(amqp-get --url="$url" -q sandbox_probe 2>/dev/null)
is "$got" "kept across a restart" "the persistent message survived the restart (its data was kept)"

# The restart asked about a stopped node first: that must not leave an epmd behind for good.
scripts/rabbitmq-sandbox stop "$dir" >/dev/null 2>&1
left=$(for p in $(pgrep -x epmd); do tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "HOME=$nodedir" && echo "$p"; done | xargs)
is "$left" "" "after a restart and a second stop, no epmd of this node is left"

finish
