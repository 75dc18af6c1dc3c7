#!/bin/sh
# entrypoint.sh — container entry point of the tasker-orchestratord image (docker/Dockerfile).
#
#   entrypoint.sh [DAEMON OPTIONS]        migrate the database, then exec the daemon with them
#   entrypoint.sh tasker-orchestratord …  the same, spelled out
#   entrypoint.sh migrate [OPTIONS]       only migrate (a one-off job), then exit
#   entrypoint.sh --version | --help | --check-config … | sql-check
#                                         exec'd at once: only the daemon itself migrates first
#   entrypoint.sh COMMAND [ARGS]          anything else (tasker-worker, sh, …) is exec'd as is
#
# The daemon refuses to start on a database that is not migrated to its build, so the migration
# runs first. `migrate` is idempotent and takes an advisory lock, so several replicas starting at
# once are safe: one migrates, the others wait and find nothing to do. While the database is not
# reachable yet (a container started together with PostgreSQL), the migration is retried for
# TASKER_MIGRATE_WAIT_SECS seconds. The daemon is exec'd: it becomes the container's main process,
# so the SIGTERM of `docker stop` reaches it directly and it drains (give the container a stop
# timeout above orchestration.shutdown_timeout_secs; compose.yml does).
#
# Environment:
#   DATABASE_URL              the database (required for migrate)
#   TASKER_BIN                directory of the binaries (default: the ones on PATH)
#   TASKER_SKIP_MIGRATE=1     start the daemon without migrating (migrations run elsewhere)
#   TASKER_MIGRATE_WAIT_SECS  how long to retry an unreachable database (default 60)
# Tests run this script outside any container against the sandbox database (tests/db/80_*.sh).
set -eu

bin=${TASKER_BIN:+$TASKER_BIN/}
daemon=${bin}tasker-orchestratord

log() { printf 'entrypoint: %s\n' "$*" >&2; }

# migrate_with_retry: run `migrate`, retrying while PostgreSQL does not accept connections yet.
# A failure that is not about reaching the server (a migration error) is not retried.
migrate_with_retry() {
  wait_secs=${TASKER_MIGRATE_WAIT_SECS:-60}
  # Milliseconds (GNU date): with whole seconds the wait could end up to 1 s early.
  start_ms=$(date +%s%3N)
  while :; do
    if out=$("$daemon" migrate "$@" 2>&1); then
      printf '%s\n' "$out" >&2
      return 0
    fi
    case $out in
      *"could not connect"* | *"Connection refused"* | *"the database system is starting up"* | \
      *"could not translate host name"* | *"No such file or directory"* | *"timeout expired"*)
        if [ $(( $(date +%s%3N) - start_ms )) -ge $(( wait_secs * 1000 )) ]; then
          printf '%s\n' "$out" >&2
          log "the database is still unreachable after ${wait_secs}s; giving up"
          return 1
        fi
        log "database not reachable yet; retrying in 2s"
        sleep 2
        ;;
      *)
        printf '%s\n' "$out" >&2
        log "migrate failed"
        return 1
        ;;
    esac
  done
}

# starts_daemon ARGS: the daemon's command line ARGS runs the daemon, not --version, --help,
# --check-config or a subcommand (the daemon's getopt stops at the first non-option, as here).
starts_daemon() {
  while [ $# -gt 0 ]; do
    case $1 in
      -V | --version | -h | --help | --check-config) return 1 ;;
      -c | -e | --config | --env) [ $# -gt 1 ] && shift ;;   # and its value
      --) return 0 ;;
      -*) ;;
      *) return 1 ;;   # a subcommand
    esac
    shift
  done
  return 0
}

[ "${1:-}" = tasker-orchestratord ] && shift
case ${1:-} in
  migrate)
    shift
    migrate_with_retry "$@"
    exit 0
    ;;
  '' | -* | sql-check)
    ;;
  tasker-worker)
    shift
    exec "${bin}tasker-worker" "$@"
    ;;
  *)
    # Any other command (a shell, a one-off psql): run it as asked.
    exec "$@"
    ;;
esac

if [ "${TASKER_SKIP_MIGRATE:-0}" != 1 ] && starts_daemon "$@"; then
  migrate_with_retry
fi
exec "$daemon" "$@"
