#!/bin/bash
# healthcheck.sh — the image's HEALTHCHECK: GET /health/live of the daemon, exit 0 on HTTP 200.
#
# Plain bash (/dev/tcp), so the runtime image needs no curl or wget. /health/live answers from the
# event loop without touching the database: "unhealthy" here means the process is wedged or gone,
# which is what a container restart fixes. (Readiness — database and LISTEN up — is
# /health/ready; use that for load balancers, not for restarts.)
#
# The port comes from TASKER_HEALTH_PORT, else from TASKER_WEB_BIND_ADDRESS (host:port or
# [v6]:port), else 8080; the host from TASKER_HEALTH_HOST (default 127.0.0.1).
# Tests run this script outside any container against a real daemon (tests/db/80_*.sh).
set -u

bind=${TASKER_WEB_BIND_ADDRESS:-}
port=${TASKER_HEALTH_PORT:-${bind##*:}}
port=${port:-8080}
host=${TASKER_HEALTH_HOST:-127.0.0.1}
timeout=${TASKER_HEALTH_TIMEOUT_SECS:-3}

case $port in
  '' | *[!0-9]*) echo "healthcheck: bad port '$port'" >&2; exit 1 ;;
esac

# The request and the answer's status line, within the timeout ($1/$2 are the inner shell's).
# shellcheck disable=SC2016
status=$(
  timeout "$timeout" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET /health/live HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$1" >&3
    IFS= read -r line <&3 && printf "%s" "$line"
  ' healthcheck "$host" "$port" 2>/dev/null
) || { echo "healthcheck: no answer from $host:$port" >&2; exit 1; }

case $status in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) echo "healthcheck: /health/live answered '${status%$'\r'}'" >&2; exit 1 ;;
esac
