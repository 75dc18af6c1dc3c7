#!/usr/bin/env bash
# 80_systemd_units.sh — the shipped service artefacts (systemd/ and docker/), checked where they can
# be without systemd as PID 1 and without a container engine:
#   1. the units: every directive commented and alphabetical within its section; the lifecycle
#      and sandbox directives present; TimeoutStopSec above every shutdown_timeout_secs of etc/;
#      ExecStartPre/ExecStart accepted by the binaries with the example environment files;
#      `systemd-analyze verify` clean on copies whose Exec paths point at the built binaries (and
#      whose man pages come from man/); `systemd-analyze security` exposure low.
#   2. the units' seccomp policy — SystemCallFilter=, SystemCallArchitectures=native,
#      SystemCallErrorNumber=EPERM, RestrictAddressFamilies=, MemoryDenyWriteExecute=, read from
#      the unit files — compiled into a seccomp filter and applied to a real daemon, tasker-worker
#      (with exec handlers) and the Node.js example worker doing real work, under strace: the work
#      completes, nothing outside the policy is called but glibc's netlink probe (which the
#      policy refuses and glibc survives), the daemon writes no file and reads no /proc file but
#      its own; and node dies under MemoryDenyWriteExecute=yes, which is why the worker unit
#      leaves it off.
#   3. docker/: every file the Dockerfile copies exists; docker/runtime-libs.sh copies every
#      library the binaries link; `make -o deps install DESTDIR=…` yields the paths it copies; the
#      entry point migrates an empty database and execs the daemon (same pid, SIGTERM → exit 0)
#      in the image's layout with the installed binaries, retries an unreachable database and
#      gives up; two concurrent `migrate`s are safe; the health check script passes on a live
#      daemon and fails on a dead port; compose.yml's references exist.
# Needs systemd-analyze (package systemd), strace and a C compiler (scripts/install-deps).
# make-check: long 140
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

ROOT=$PWD
BINABS=$(cd "$BIN" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tasker-80.XXXXXX")
declare -A PID=()
cleanup() {
  local n
  for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null; done
  for n in "${!PID[@]}"; do
    for _ in $(seq 50); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$n]}" 2>/dev/null
    wait "${PID[$n]}" 2>/dev/null
  done
  if [ "$TESTS_FAILED" -gt 0 ]; then
    for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "# ---- $f"; tail -n 15 "$f" | sed 's/^/#   /'; }; done
    echo "# files kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
unset TASKER_ENV TASKER_CONFIG_PATH TASKER_WEB_BIND_ADDRESS NOTIFY_SOCKET WATCHDOG_USEC JOURNAL_STREAM

now_ms() { date +%s%3N; }
wait_for() { # SECS CMD…
  local deadline=$(( $(now_ms) + $1 * 1000 )); shift
  until "$@"; do [ "$(now_ms)" -lt "$deadline" ] || return 1; sleep 0.1; done
}
wait_exit() { # NAME SECS → RC
  local pid=${PID[$1]} deadline=$(( $(now_ms) + $2 * 1000 ))
  while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then RC=timeout; return; fi
  wait "$pid" 2>/dev/null; RC=$?
  unset "PID[$1]"
}
free_port() {
  local p=$(( 20000 + RANDOM % 20000 ))
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

DAEMON_UNIT=systemd/tasker-orchestratord.service
WORKER_UNIT=systemd/tasker-worker@.service

# ==== 1. the unit files ============================================================================

# unit_value FILE KEY: the value(s) of KEY, one per line, in file order.
unit_value() { sed -n "s/^$2=//p" "$1"; }
# seconds VALUE: a systemd time span of the forms N, Ns, Nmin, Nmin Ns → seconds.
seconds() {
  local v=$1 total=0 part
  for part in $v; do
    case $part in
      *min) total=$(( total + ${part%min} * 60 )) ;;
      *s) total=$(( total + ${part%s} )) ;;
      *) total=$(( total + part )) ;;
    esac
  done
  echo "$total"
}

for unit in "$DAEMON_UNIT" "$WORKER_UNIT"; do
  [ -f "$unit" ] || { fail "$unit exists"; continue; }
  # Every directive: preceded by a comment line, alphabetical (case-insensitive) within its section.
  problems=$(awk '
    /^\[/ { section = $0; prev = ""; last = ""; next }
    /^[A-Za-z]+=/ {
      key = $0; sub(/=.*/, "", key)
      if (section == "") print FILENAME ": " key " outside a section"
      if (prev !~ /^#/) print FILENAME ": " key " has no comment above it"
      if (last != "" && tolower(key) < tolower(last)) print FILENAME ": " key " after " last " (not alphabetical in " section ")"
      last = key
    }
    { if ($0 != "") prev = $0 }' "$unit")
  [ -z "$problems" ] && ok "$unit: every directive has a comment and each section is alphabetical" ||
    fail "$unit: directives commented and alphabetical: $problems"
done

# require FILE KEY=VALUE…: each line is present exactly.
require() {
  local f=$1 missing=() line; shift
  for line in "$@"; do grep -qxF -- "$line" "$f" || missing+=("$line"); done
  [ ${#missing[@]} -eq 0 ] && ok "$f has $# required directives" || fail "$f lacks: ${missing[*]}"
}
HARDENING=(
  "CapabilityBoundingSet=" "DynamicUser=yes" "LockPersonality=yes" "NoNewPrivileges=yes" "PrivateDevices=yes"
  "PrivateTmp=yes" "ProtectControlGroups=yes" "ProtectHome=yes" "ProtectKernelLogs=yes" "ProtectKernelModules=yes"
  "ProtectKernelTunables=yes" "ProtectSystem=strict" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"
  "RestrictNamespaces=yes" "RestrictRealtime=yes" "RestrictSUIDSGID=yes" "SystemCallArchitectures=native"
  "SystemCallErrorNumber=EPERM" "SystemCallFilter=@system-service" "UMask=0077" "Restart=on-failure"
)
require "$DAEMON_UNIT" "${HARDENING[@]}" "Type=notify" "ExecReload=/bin/kill -HUP \$MAINPID" \
  "EnvironmentFile=-/etc/tasker/tasker-orchestratord.env" "MemoryDenyWriteExecute=yes" \
  "ExecStart=/usr/local/sbin/tasker-orchestratord -c /etc/tasker/tasker-orchestratord.conf" \
  "ExecStartPre=/usr/local/sbin/tasker-orchestratord --check-config -c /etc/tasker/tasker-orchestratord.conf"
require "$WORKER_UNIT" "${HARDENING[@]}" "Type=exec" "KillMode=mixed" "MemoryDenyWriteExecute=no" \
  "ExecStart=/usr/local/bin/tasker-worker --namespace %i \$TASKER_WORKER_OPTS" \
  "EnvironmentFile=-/etc/tasker/tasker-worker.env" "EnvironmentFile=-/etc/tasker/tasker-worker-%i.env"
for key in WatchdogSec TimeoutStartSec TimeoutStopSec; do
  [ -n "$(unit_value "$DAEMON_UNIT" "$key")" ] && ok "$DAEMON_UNIT sets $key=$(unit_value "$DAEMON_UNIT" "$key")" ||
    fail "$DAEMON_UNIT sets $key"
done

# TimeoutStopSec must outlast the drain of every environment the etc/ files define.
stop_secs=$(seconds "$(unit_value "$DAEMON_UNIT" TimeoutStopSec)")
drain_max=$(cat etc/tasker-orchestratord.conf etc/environments/*.conf |
  sed -n 's/^[[:space:]]*shutdown_timeout_secs[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' | sort -n | tail -n 1)
[ -n "$drain_max" ] && [ "$stop_secs" -gt "$drain_max" ] &&
  ok "TimeoutStopSec ($stop_secs s) exceeds the largest orchestration.shutdown_timeout_secs in etc/ ($drain_max s)" ||
  fail "TimeoutStopSec ($stop_secs s) exceeds every shutdown_timeout_secs in etc/ (largest: ${drain_max:-none})"
wstop=$(seconds "$(unit_value "$WORKER_UNIT" TimeoutStopSec)")
wdrain=$("$BIN/tasker-worker" --help | sed -n 's/^[[:space:]]*limit (default \([0-9]*\).*/\1/p')
[ -n "$wdrain" ] && [ "$wstop" -ge $(( wdrain + 15 )) ] &&
  ok "worker TimeoutStopSec ($wstop s) ≥ the worker's drain limit ($wdrain s) + 15 s for the last hand-back" ||
  fail "worker TimeoutStopSec ($wstop s) ≥ drain limit (${wdrain:-?} s) + 15 s"

# The command lines, run as systemd would (paths mapped to the build), with the example env files.
# expand_exec LINE: the unit's command with the install paths mapped to this tree.
expand_exec() {
  sed -e "s|/usr/local/sbin/|$BINABS/|g" -e "s|/usr/local/bin/|$BINABS/|g" -e "s|/etc/tasker/|$ROOT/etc/|g" <<<"$1"
}
env_of() { grep -E '^[A-Z_]+=' "$1"; } # the VAR=value lines of an env file
pre=$(expand_exec "$(unit_value "$DAEMON_UNIT" ExecStartPre)")
# shellcheck disable=SC2046,SC2086 # word splitting is what systemd does with these lines
out=$(env -i PATH="$PATH" $(env_of systemd/tasker-orchestratord.env.example) $pre 2>&1); rc=$?
[ "$rc" -eq 0 ] && [[ "$out" == "configuration OK"*"environment production"* ]] &&
  ok "ExecStartPre with tasker-orchestratord.env.example: $out" || fail "ExecStartPre: exit $rc: $out"
bad="$TMP/bad.conf"; printf 'database {\n  pool {\n    max_connections = 0\n  }\n}\n' >"$bad"
# shellcheck disable=SC2086
out=$(${pre% -c *} -c "$bad" 2>&1); rc=$?
[ "$rc" -ne 0 ] && [[ "$out" == "$bad:3: "* ]] && ok "ExecStartPre refuses a bad file with file:line: ($out)" ||
  fail "ExecStartPre refuses a bad file with file:line: (exit $rc: $out)"
"$BIN/tasker-worker" --help | grep -q -- '--namespace' && ok "tasker-worker takes --namespace (the unit's %i)" ||
  fail "tasker-worker takes --namespace"

# systemd-analyze verify: on copies whose Exec paths exist (verify insists), man pages from man/.
if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze is installed (Debian package systemd; scripts/install-deps installs it)"
else
  mkdir -p "$TMP/units"
  for unit in "$DAEMON_UNIT" "$WORKER_UNIT"; do
    sed -e "s|/usr/local/sbin/|$BINABS/|g" -e "s|/usr/local/bin/|$BINABS/|g" "$unit" >"$TMP/units/$(basename "$unit")"
  done
  for u in tasker-orchestratord.service tasker-worker@.service tasker-worker@billing.service; do
    out=$(cd "$TMP/units" && MANPATH="$ROOT/man" systemd-analyze verify "./$u" 2>&1); rc=$?
    [ "$rc" -eq 0 ] && [ -z "$out" ] && ok "systemd-analyze verify $u: clean (man pages found in man/)" ||
      fail "systemd-analyze verify $u: exit $rc: $out"
  done
  for u in tasker-orchestratord.service:2.0 tasker-worker@billing.service:2.5; do
    score=$(cd "$TMP/units" && systemd-analyze security --offline=true "./${u%%:*}" 2>&1 |
      sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] && awk -v s="$score" -v m="${u##*:}" 'BEGIN { exit !(s <= m) }' &&
      ok "systemd-analyze security ${u%%:*}: exposure $score (≤ ${u##*:})" ||
      fail "systemd-analyze security ${u%%:*}: exposure ${score:-?} ≤ ${u##*:}"
  done
fi

# ==== 2. the seccomp part of the sandbox, enforced on real work =====================================

# filter_of UNIT: the system calls SystemCallFilter= allows (allow-lists unioned, ~lists removed).
declare -A SEEN=()
expand_groups() {
  local g
  for g in "$@"; do
    if [[ $g == @* ]]; then
      [ -n "${SEEN[$g]:-}" ] && continue
      SEEN[$g]=1
      # shellcheck disable=SC2046
      expand_groups $(systemd-analyze syscall-filter "$g" | tail -n +2 | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$')
    else
      echo "$g"
    fi
  done
}
filter_of() {
  local v allow="$TMP/allow.$$" deny="$TMP/deny.$$"
  : >"$allow"; : >"$deny"
  while read -r v; do
    SEEN=()
    # shellcheck disable=SC2086
    if [[ $v == "~"* ]]; then expand_groups ${v#\~} >>"$deny"; else expand_groups $v >>"$allow"; fi
  done < <(unit_value "$1" SystemCallFilter)
  sort -u "$allow" | comm -23 - <(sort -u "$deny")
  rm -f "$allow" "$deny"
}

# build_sandbox UNIT OUT: a launcher that applies UNIT's seccomp policy and execs its arguments.
build_sandbox() {
  local unit=$1 out=$2 mdwe=0 fam
  [ "$(unit_value "$unit" MemoryDenyWriteExecute)" = yes ] && mdwe=1
  filter_of "$unit" >"$out.syscalls"
  {
    cat <<'C'
/* sandbox-exec: exec argv[1…] under the seccomp part of a systemd unit's sandbox (generated by
 * tests/db/80_systemd_units.sh): SystemCallArchitectures=native, MemoryDenyWriteExecute=,
 * RestrictAddressFamilies=, SystemCallFilter= with SystemCallErrorNumber=EPERM, NoNewPrivileges=. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "unsupported architecture"
#endif
static const unsigned allowed[] = {
C
    while read -r s; do printf '#ifdef __NR_%s\n    __NR_%s,\n#endif\n' "$s" "$s"; done <"$out.syscalls"
    echo "};"
    echo "static const int families[] = {"
    for fam in $(unit_value "$unit" RestrictAddressFamilies); do echo "    $fam,"; done
    echo "};"
    echo "#define MDWE $mdwe"
    cat <<'C'
static struct sock_filter prog[4096];
static unsigned short n;
static void put(struct sock_filter f) { prog[n++] = f; }
#define LD(off) put((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off)))
#define JEQ(k, t, f) put((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f)))
#define RET(k) put((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (k)))
#define NR offsetof(struct seccomp_data, nr)
#define ARG(i) offsetof(struct seccomp_data, args[i])
#define NFAM (sizeof families / sizeof families[0])

static void deny_wx(unsigned nr) /* a mapping both writable and executable fails with EPERM */
{
    JEQ(nr, 0, 4);
    LD(ARG(2));
    put((struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC));
    JEQ(PROT_WRITE | PROT_EXEC, 0, 1);
    RET(SECCOMP_RET_ERRNO | EPERM);
    LD(NR);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sandbox-exec COMMAND [ARGS]\n");
        return 2;
    }
    LD(offsetof(struct seccomp_data, arch));
    JEQ(ARCH, 1, 0);
    RET(SECCOMP_RET_KILL_PROCESS);
    LD(NR);
#if defined(__x86_64__)
    put((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1)); /* x32 */
    RET(SECCOMP_RET_ERRNO | EPERM);
#endif
    if (MDWE) {
        deny_wx(__NR_mmap);
        deny_wx(__NR_mprotect);
#ifdef __NR_pkey_mprotect
        deny_wx(__NR_pkey_mprotect);
#endif
    }
    JEQ(__NR_socket, 0, (unsigned char)(NFAM + 3)); /* not socket(2): skip to the allow-list */
    LD(ARG(0));
    for (size_t i = 0; i < NFAM; i++)
        JEQ((unsigned)families[i], (unsigned char)(NFAM - i), 0);
    RET(SECCOMP_RET_ERRNO | EAFNOSUPPORT);
    RET(SECCOMP_RET_ALLOW);
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        JEQ(allowed[i], 0, 1);
        RET(SECCOMP_RET_ALLOW);
    }
    RET(SECCOMP_RET_ERRNO | EPERM);
    struct sock_fprog fp = {.len = n, .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) != 0) {
        perror("sandbox-exec: seccomp");
        return 1;
    }
    execvp(argv[1], argv + 1);
    perror("sandbox-exec: exec");
    return 127;
}
C
  } >"$out.c"
  cc -std=c11 -O1 -Wall -Werror -o "$out" "$out.c" 2>"$out.cc.log"
}

# syscalls TRACE: the system call names a strace -f log shows, one per line.
syscalls() { grep -oE '^[0-9]+ +[a-z_0-9]+\(' "$1" | awk '{ print $2 }' | tr -d '(' | sort -u; }

sandbox_ok=true
command -v strace >/dev/null || { fail "strace is installed (scripts/install-deps)"; sandbox_ok=false; }
command -v systemd-analyze >/dev/null || sandbox_ok=false
command -v cc >/dev/null || { fail "a C compiler is installed"; sandbox_ok=false; }
if $sandbox_ok; then
  if build_sandbox "$DAEMON_UNIT" "$TMP/sx-daemon" && build_sandbox "$WORKER_UNIT" "$TMP/sx-worker"; then
    ok "seccomp launchers built from the units ($(wc -l <"$TMP/sx-daemon.syscalls") system calls for the daemon, $(wc -l <"$TMP/sx-worker.syscalls") for workers)"
  else
    fail "seccomp launchers built: $(cat "$TMP"/sx-*.cc.log)"
    sandbox_ok=false
  fi
fi

if $sandbox_ok; then
  # Node.js under each policy: the reason the worker unit sets MemoryDenyWriteExecute=no.
  command -v node >/dev/null || fail "node is installed (scripts/install-deps installs nodejs): no Node.js checks"
  if command -v node >/dev/null; then
    "$TMP/sx-daemon" node -e 'let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s)' >/dev/null 2>&1; rc=$?
    [ "$rc" -ne 0 ] && ok "node dies under the daemon's policy (MemoryDenyWriteExecute=yes; exit $rc)" ||
      fail "node dies under MemoryDenyWriteExecute=yes (it exited 0: then the worker unit could turn it on)"
    out=$("$TMP/sx-worker" node -e 'let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s)' 2>&1); rc=$?
    [ "$rc" -eq 0 ] && ok "node runs under the worker's policy" || fail "node runs under the worker's policy (exit $rc: $out)"
  fi

  url=$(fresh_db tasker_units) || { fail "fresh database tasker_units"; finish; exit 1; }
  for t in etc/templates/demo_*.json; do
    psql_at "$url" "SELECT status FROM tasker.register_task_template(\$tpl\$$(cat "$t")\$tpl\$::jsonb)" >/dev/null ||
      fail "register $t"
  done
  port=$(free_port)
  cat >"$TMP/daemon.conf" <<CONF
environment = "test"
database {
    url = "$url"
    pool { max_connections = 6  min_connections = 2 }
}
orchestration {
    namespace_refresh_secs = 1
    shutdown_timeout_secs = 5
    completions { interval_ms = 200 }
    poller { interval_ms = 100 }
    sweeper { interval_secs = 1 }
}
web { bind_address = "127.0.0.1:$port" }
CONF
  # LeakSanitizer cannot work under ptrace: with SANITIZE=1 binaries, leaks are 67_*'s business.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
  strace -f -qq -o "$TMP/daemon.trace" "$TMP/sx-daemon" "$BINABS/tasker-orchestratord" -c "$TMP/daemon.conf" \
    >"$TMP/daemon.log" 2>&1 &
  PID[daemon]=$!
  if wait_for 30 grep -q 'ready: pool and LISTEN connections are up' "$TMP/daemon.log"; then
    ok "the daemon under its unit's seccomp policy (and strace) is ready"
  else
    fail "the daemon under its unit's seccomp policy is ready"
  fi
  daemon_pid=$(pgrep -P "${PID[daemon]}" | head -n 1)

  # The C worker as its unit runs it (options from the example env file), and the Node.js worker.
  wopts=$(sed -n 's/^TASKER_WORKER_OPTS=//p' systemd/tasker-worker.env.example)
  # shellcheck disable=SC2086 # TASKER_WORKER_OPTS is split into words, as systemd does with $VAR
  DATABASE_URL="$url" strace -f -qq -o "$TMP/worker.trace" "$TMP/sx-worker" "$BINABS/tasker-worker" \
    --namespace demo $wopts --worker-id c-worker --poll-ms 100 >"$TMP/worker.log" 2>&1 &
  PID[worker]=$!
  if command -v node >/dev/null && { [ -d examples/node-worker/node_modules ] ||
       (cd examples/node-worker && npm ci --no-audit --no-fund) >"$TMP/npm.log" 2>&1; }; then
    DATABASE_URL="$url" "$TMP/sx-worker" node examples/node-worker/worker.mjs --namespace demo --worker-id node-worker \
      >"$TMP/node-worker.log" 2>&1 &
    PID[node]=$!
  elif command -v node >/dev/null; then
    fail "npm ci in examples/node-worker: $(tail -n 3 "$TMP/npm.log")"
  fi

  psql_at "$url" "SELECT count(*) FROM generate_series(1, 5) i CROSS JOIN unnest(ARRAY['diamond', 'fan_out_fan_in',
      'flaky_payment', 'linear_pipeline']) AS t(name),
      LATERAL tasker.create_task(jsonb_build_object('name', t.name, 'namespace', 'demo', 'context', jsonb_build_object('i', i))) c" \
    >/dev/null
  for path in /health/live /health/ready /health /metrics; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")
    [ "$code" = 200 ] && ok "sandboxed daemon answers GET $path: 200" || fail "sandboxed daemon answers GET $path (got $code)"
  done
  done_all() { [ "$(psql_at "$url" "SELECT count(*) FROM tasker.tasks WHERE state <> 'complete'")" = 0 ]; }
  wait_for 30 done_all && ok "20 tasks (exec handlers included) complete under the sandbox" ||
    fail "20 tasks complete under the sandbox ($(psql_at "$url" "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n FROM tasker.tasks GROUP BY 1) x"))"
  if [ -n "${PID[node]:-}" ]; then
    n=$(psql_at "$url" "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE worker_id = 'node-worker'")
    echo "# node-worker handed back $n results, c-worker $(psql_at "$url" "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE worker_id = 'c-worker'")"
  fi
  kill -HUP "$daemon_pid"
  wait_for 5 grep -q 'configuration reloaded' "$TMP/daemon.log" && ok "SIGHUP reloads under the sandbox" ||
    fail "SIGHUP reloads under the sandbox"
  for w in node worker daemon; do
    [ -n "${PID[$w]:-}" ] || continue
    case $w in
      daemon) kill -TERM "$daemon_pid" ;;
      worker) kill -TERM "$(pgrep -P "${PID[$w]}" | head -n 1)" ;; # strace's child
      node) kill -TERM "${PID[$w]}" ;;                               # sx-worker exec'd node
    esac
    wait_exit "$w" 20
    is "$RC" 0 "SIGTERM: the sandboxed $w drains and exits 0"
  done

  # What the traces say about the policy.
  extra=$(syscalls "$TMP/daemon.trace" | comm -23 - "$TMP/sx-daemon.syscalls" | tr '\n' ' ')
  [ -z "$extra" ] && ok "the daemon made $(syscalls "$TMP/daemon.trace" | wc -l) distinct system calls, all inside SystemCallFilter=" ||
    fail "system calls outside the daemon's SystemCallFilter= (they got EPERM): $extra"
  extra=$(syscalls "$TMP/worker.trace" | comm -23 - "$TMP/sx-worker.syscalls" | tr '\n' ' ')
  [ -z "$extra" ] && ok "tasker-worker and its exec children ($(grep -c 'execve(' "$TMP/worker.trace") execs) stayed inside the worker's SystemCallFilter=" ||
    fail "system calls outside the worker's SystemCallFilter=: $extra"
  fams=$(grep -ohE 'socket\(AF_[A-Z0-9]+' "$TMP/daemon.trace" "$TMP/worker.trace" | sed 's/socket(//' | sort -u | tr '\n' ' ')
  allowed_fams=" $(unit_value "$DAEMON_UNIT" RestrictAddressFamilies) "
  others=""
  for f in $fams; do [[ $allowed_fams == *" $f "* ]] || others+="$f "; done
  echo "# socket families asked for: $fams"
  # glibc's getaddrinfo(AI_ADDRCONFIG) probes the interfaces over NETLINK_ROUTE; refused, it assumes
  # IPv4 and IPv6 are both configured. Anything else refused would be a real failure.
  probes=$(grep -cE 'socket\(AF_NETLINK, SOCK_RAW\|SOCK_CLOEXEC, NETLINK_ROUTE\) = -1 EAFNOSUPPORT' "$TMP/daemon.trace" "$TMP/worker.trace" | awk -F: '{ s += $2 } END { print s + 0 }')
  if [ -z "$others" ]; then
    ok "only AF_UNIX/AF_INET/AF_INET6 sockets asked for"
  elif [ "$others" = "AF_NETLINK " ] && ! grep -E 'socket\(AF_NETLINK' "$TMP/daemon.trace" "$TMP/worker.trace" | grep -qv 'NETLINK_ROUTE) = -1 EAFNOSUPPORT'; then
    ok "only AF_UNIX/AF_INET/AF_INET6 sockets, plus $probes refused NETLINK_ROUTE probe(s) of glibc's getaddrinfo, which it survives"
  else
    fail "sockets outside RestrictAddressFamilies=: $others"
  fi
  wx=$(grep -cE 'PROT_(WRITE\|PROT_EXEC|EXEC\|PROT_WRITE)' "$TMP/daemon.trace")
  is "$wx" 0 "the daemon never asked for writable+executable memory (MemoryDenyWriteExecute=yes)"
  writes=$(grep -E '^[0-9]+ +(openat|open|creat)\(' "$TMP/daemon.trace" | grep -E 'O_WRONLY|O_RDWR|O_CREAT' |
    grep -oE '"[^"]*"' | sort -u | tr '\n' ' ')
  [ -z "$writes" ] && ok "the daemon opened no file for writing (ProtectSystem=strict)" ||
    fail "the daemon opened files for writing: $writes"
  procs=$(grep -E '^[0-9]+ +(openat|open)\(' "$TMP/daemon.trace" | grep -oE '"/proc/[^"]*"' |
    grep -vE '"/proc/(self|thread-self|[0-9]+)(/|")' | sort -u | tr '\n' ' ')
  [ -z "$procs" ] && ok "the daemon read no /proc file outside its own process (ProcSubset=pid)" ||
    fail "the daemon read /proc files other than its own: $procs"
  denied=$(grep -hE 'Operation not permitted|Permission denied|Address family not supported' "$TMP"/daemon.log "$TMP"/worker.log "$TMP"/node-worker.log 2>/dev/null | head -n 3)
  [ -z "$denied" ] && ok "no permission error in the logs of the daemon and the workers" ||
    fail "permission errors in the logs: $denied"
fi

# ==== 3. docker/ ===================================================================================

DF=docker/Dockerfile
# Every COPY from the build context names something that exists.
absent=""
while read -r src; do
  [ -e "$src" ] || absent+="$src "
done < <(grep -E '^COPY ' "$DF" | grep -v -- '--from=' | awk '{ for (i = 2; i < NF; i++) print $i }')
[ -z "$absent" ] && ok "$DF: every COPY source exists" || fail "$DF: COPY sources missing: $absent"
[ -x docker/entrypoint.sh ] && [ -x docker/healthcheck.sh ] && ok "entrypoint.sh and healthcheck.sh are executable" ||
  fail "entrypoint.sh and healthcheck.sh are executable"
grep -q '^ENTRYPOINT \["/usr/local/bin/tasker-entrypoint"\]' "$DF" && grep -q 'docker/entrypoint.sh /usr/local/bin/tasker-entrypoint' "$DF" &&
  grep -q 'CMD \["/usr/local/bin/tasker-healthcheck"\]' "$DF" && grep -q 'docker/healthcheck.sh /usr/local/bin/tasker-healthcheck' "$DF" &&
  ok "ENTRYPOINT and HEALTHCHECK name the scripts the Dockerfile copies" || fail "ENTRYPOINT/HEALTHCHECK paths match the COPYs"

# apt_list STAGE: the packages the apt-get install of the Dockerfile's stage number STAGE (1, 2) names.
apt_list() {
  awk -v want="$1" '/^FROM /{ stage++ } stage == want' "$DF" | tr -d '\\' | tr -s ' \t\n' '\n' |
    awk '/^install$/{ on = 1; next } /^&&$/{ on = 0 } on && !/^-/' | sort -u
}
# The runtime stage installs no package: docker/runtime-libs.sh copies the libraries the binaries
# load from the build stage. Given a base of libc6 alone, it must copy a file for every NEEDED
# library but libc's, at its /usr path, with its package's dpkg status (make check-container runs
# the image itself).
printf 'libc6\n' >"$TMP/base-packages"
rl_out=$(docker/runtime-libs.sh "$TMP/base-packages" "$TMP/rtlibs" "$BIN/tasker-orchestratord" "$BIN/tasker-worker" 2>&1); rc=$?
missing=""
for lib in $(readelf -d "$BIN/tasker-orchestratord" "$BIN/tasker-worker" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u); do
  case $lib in libc.so.*|libm.so.*|ld-linux*|libasan*|libubsan*) continue ;; esac
  found=$(find "$TMP/rtlibs/usr/lib" -name "$lib" -type f 2>/dev/null)
  pkg=$(dpkg -S "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" 2>/dev/null | sed -n '1s/:.*//p')
  [ -n "$found" ] && [ -s "$TMP/rtlibs/var/lib/dpkg/status.d/$pkg" ] || missing+="$lib "
done
[ "$rc" -eq 0 ] && [ -z "$missing" ] && [ ! -e "$TMP/rtlibs/lib" ] && ! grep -q 'libc6 ' <<<"$rl_out" &&
  ok "docker/runtime-libs.sh copies every library the binaries link, under /usr, with dpkg status, and none of the base's ($(wc -l <<<"$rl_out") packages)" ||
  fail "docker/runtime-libs.sh: exit $rc, missing: $missing: $rl_out"
build=$(apt_list 1)
lacking=""
# (libclang-rt-*: clang's sanitizer runtime for the fuzz targets, never part of an image build.)
for p in $(sed -n '/^PACKAGES=(/,/^)/p' scripts/install-deps | tr -s ' \t' '\n' | grep -E '^(lib.*-dev|build-essential|pkg-config)$' |
           grep -v '^libclang-rt-'); do
  grep -qx "$p" <<<"$build" || lacking+="$p "
done
[ -z "$lacking" ] && ok "the build stage installs every build package of scripts/install-deps" ||
  fail "the build stage lacks: $lacking"
make -n -o deps all 2>&1 | grep -q 'install-deps' && fail "make -o deps skips scripts/install-deps" ||
  ok "make -o deps (the Dockerfile's build) does not run scripts/install-deps"

# The image's file layout, from the Makefile's install target and the Dockerfile's COPYs.
IMG="$TMP/image"
img_bin=$BINABS
if [ -x bin/tasker-orchestratord ] && [ -x bin/tasker-worker ]; then
  if make -s -o deps -o all install DESTDIR="$IMG" PREFIX=/usr/local >"$TMP/install.log" 2>&1 &&
     [ -x "$IMG/usr/local/sbin/tasker-orchestratord" ] && [ -x "$IMG/usr/local/bin/tasker-worker" ]; then
    ok "make install DESTDIR=… PREFIX=/usr/local puts the binaries where the Dockerfile's PATH finds them"
    img_bin="$IMG/usr/local/sbin:$IMG/usr/local/bin"
  else
    fail "make install DESTDIR=… PREFIX=/usr/local: $(tail -n 3 "$TMP/install.log")"
  fi
else
  echo "# bin/ holds no release build (BIN=$BIN): the image layout uses $BIN's binaries"
fi
mkdir -p "$IMG/etc/tasker" "$IMG/usr/local/bin"
cp etc/tasker-orchestratord.conf "$IMG/etc/tasker/"
cp -r etc/environments "$IMG/etc/tasker/"
cp docker/entrypoint.sh "$IMG/usr/local/bin/tasker-entrypoint"
cp docker/healthcheck.sh "$IMG/usr/local/bin/tasker-healthcheck"
IMGPATH="$img_bin:$IMG/usr/local/bin:$PATH"
IMGCONF="$IMG/etc/tasker/tasker-orchestratord.conf"
# image_env …: run a command in the image's environment (its ENV lines, paths under $IMG).
image_env() { env PATH="$IMGPATH" TASKER_CONFIG_PATH="$IMGCONF" "$@"; }
healthy() { env TASKER_WEB_BIND_ADDRESS="127.0.0.1:$1" "$IMG/usr/local/bin/tasker-healthcheck" 2>/dev/null; }

empty=$(empty_db tasker_image)
port=$(free_port)
# (Started with env, not image_env: $! must be the process that becomes the daemon.)
env PATH="$IMGPATH" TASKER_CONFIG_PATH="$IMGCONF" DATABASE_URL="$empty" TASKER_ENV=production \
  TASKER_WEB_BIND_ADDRESS="127.0.0.1:$port" tasker-entrypoint >"$TMP/entrypoint.log" 2>&1 &
PID[entry]=$!
if wait_for 30 healthy "$port"; then
  ok "entrypoint on an empty database: migrated, daemon up, the health check passes"
else
  fail "entrypoint on an empty database: daemon up and healthy"
fi
files=$(ls migrations/*.sql sql/*.sql | wc -l)
is "$(psql_at "$empty" "SELECT count(*) FROM tasker.schema_migrations")" "$files" \
  "… the entry point applied all $files migration and SQL files first"
is "$(tr -d '\0' </proc/"${PID[entry]}"/comm 2>/dev/null)" "tasker-orchestr" "… and exec'd the daemon: the entry point's pid is the daemon"
grep -m 1 '^{' "$TMP/entrypoint.log" | jq -e '.level and .component and .msg' >/dev/null 2>&1 &&
  ok "… which logs JSON lines (TASKER_ENV=production, as compose.yml sets)" || fail "… which logs JSON lines in production"
out=$(TASKER_WEB_BIND_ADDRESS="127.0.0.1:$(free_port)" TASKER_HEALTH_TIMEOUT_SECS=2 "$IMG/usr/local/bin/tasker-healthcheck" 2>&1); rc=$?
[ "$rc" -ne 0 ] && [[ "$out" == "healthcheck: no answer from"* ]] && ok "the health check fails on a port nobody listens on ($out)" ||
  fail "the health check fails on a dead port (exit $rc: $out)"
kill -TERM "${PID[entry]}"
wait_exit entry 20
is "$RC" 0 "SIGTERM to the container's main process: the daemon drains and exits 0"

out=$(image_env DATABASE_URL="$empty" tasker-entrypoint migrate 2>&1); rc=$?
[ "$rc" -eq 0 ] && [[ "$out" == *"0 applied"* ]] && ok "entrypoint migrate on a migrated database: nothing to do" ||
  fail "entrypoint migrate, second time: exit $rc: $out"
empty2=$(empty_db tasker_image2)
image_env DATABASE_URL="$empty2" tasker-entrypoint migrate >"$TMP/m1.log" 2>&1 &
m1=$!
image_env DATABASE_URL="$empty2" tasker-entrypoint migrate >"$TMP/m2.log" 2>&1 &
m2=$!
wait "$m1"; r1=$?; wait "$m2"; r2=$?
[ "$r1" -eq 0 ] && [ "$r2" -eq 0 ] && [ "$(psql_at "$empty2" "SELECT count(*) FROM tasker.schema_migrations")" = "$files" ] &&
  ok "two replicas migrating one empty database at once: both succeed, each file applied once" ||
  fail "two concurrent migrates: exits $r1/$r2"
dead="postgresql://nobody@127.0.0.1:$(free_port)/none"
t0=$(now_ms)
out=$(image_env DATABASE_URL="$dead" TASKER_MIGRATE_WAIT_SECS=3 tasker-entrypoint 2>&1); rc=$?
took=$(( $(now_ms) - t0 ))
[ "$rc" -ne 0 ] && [ "$took" -ge 3000 ] && [[ "$out" == *"giving up"* ]] &&
  ok "unreachable database: retried for TASKER_MIGRATE_WAIT_SECS=3, then gave up (exit $rc after $took ms)" ||
  fail "unreachable database: retry then give up (exit $rc after $took ms: $out)"
# Which command lines migrate first: a stand-in daemon (TASKER_BIN) records each call.
mkdir -p "$TMP/fakebin"
printf '#!/bin/sh\nprintf "%%s\\n" "$*" >>"%s"\n' "$TMP/calls" >"$TMP/fakebin/tasker-orchestratord"
chmod +x "$TMP/fakebin/tasker-orchestratord"
entry_calls() {
  : >"$TMP/calls"
  env TASKER_BIN="$TMP/fakebin" DATABASE_URL="$dead" TASKER_MIGRATE_WAIT_SECS=1 "$IMG/usr/local/bin/tasker-entrypoint" "$@" >/dev/null 2>&1
  paste -sd '|' "$TMP/calls"
}
bad=()
for args in "--version" "-V" "--help" "-h" "--check-config" "-c /x.conf --check-config -v" "-e production --version" \
            "tasker-orchestratord --version" "tasker-orchestratord --check-config" "tasker-orchestratord sql-check" "sql-check"; do
  want=${args#tasker-orchestratord }
  # shellcheck disable=SC2086
  got=$(entry_calls $args)
  [ "$got" = "$want" ] || bad+=("'$args' ran '$got'")
done
[ ${#bad[@]} -eq 0 ] && ok "entrypoint --version, --help, --check-config, sql-check: the daemon alone, no migrate first" ||
  fail "entrypoint commands that must not migrate: ${bad[*]}"
bad=()
for args in "" "-c /x.conf" "-e production" "tasker-orchestratord" "tasker-orchestratord -c /x.conf -e test"; do
  want=${args#tasker-orchestratord}; want=${want# }
  # shellcheck disable=SC2086
  got=$(entry_calls $args)
  [ "$got" = "migrate|$want" ] || bad+=("'$args' ran '$got'")
done
for args in "migrate --status" "tasker-orchestratord migrate"; do
  want=${args#tasker-orchestratord }
  # shellcheck disable=SC2086
  got=$(entry_calls $args)
  [ "$got" = "$want" ] || bad+=("'$args' ran '$got'")
done
[ ${#bad[@]} -eq 0 ] && ok "entrypoint: the daemon migrates first; migrate (also spelled tasker-orchestratord migrate) only migrates" ||
  fail "entrypoint daemon/migrate command lines: ${bad[*]}"

env PATH="$IMGPATH" DATABASE_URL="$empty" tasker-entrypoint tasker-worker --namespace demo --worker-id image-worker \
  >"$TMP/entry-worker.log" 2>&1 &
PID[entry_worker]=$!
sleep 1
is "$(tr -d '\0' </proc/"${PID[entry_worker]}"/comm 2>/dev/null)" "tasker-worker" "entrypoint tasker-worker …: exec'd the worker (compose.yml's worker command)"
kill -TERM "${PID[entry_worker]}"
wait_exit entry_worker 10
is "$RC" 0 "… which drains and exits 0 on SIGTERM"

# compose.yml: what it points at exists and what it runs is accepted.
CY=docker/compose.yml
ctx=$(sed -n 's/^[[:space:]]*context:[[:space:]]*//p' "$CY" | sort -u)
dfiles=$(sed -n 's/^[[:space:]]*dockerfile:[[:space:]]*//p' "$CY" | sort -u)
absent=""
for dfile in $dfiles; do [ -f "docker/$ctx/$dfile" ] || absent+="$dfile "; done
[ "$ctx" = ".." ] && [ -n "$dfiles" ] && [ -z "$absent" ] && ok "compose.yml builds $(echo $dfiles) from the repository root" ||
  fail "compose.yml's build context ($ctx) and dockerfiles ($(echo $dfiles); missing: $absent) exist"
wcmd=$(sed -n 's/^[[:space:]]*command:[[:space:]]*\[\(.*\)\]/\1/p' "$CY" | tr -d '",')
# shellcheck disable=SC2086
[[ $wcmd == tasker-worker\ * ]] && "$BIN/tasker-worker" ${wcmd#tasker-worker } --help >/dev/null 2>&1 &&
  ok "compose.yml's worker command ($wcmd) is one the worker accepts" || fail "compose.yml's worker command ($wcmd)"
env_name=$(sed -n 's/^[[:space:]]*TASKER_ENV:[[:space:]]*//p' "$CY")
out=$(TASKER_ENV=$env_name DATABASE_URL=postgresql://tasker:tasker@postgres:5432/tasker \
  "$BIN/tasker-orchestratord" --check-config -c "$IMG/etc/tasker/tasker-orchestratord.conf" 2>&1)
[[ "$out" == "configuration OK"*"environment $env_name" ]] && ok "compose.yml's environment passes --check-config: $out" ||
  fail "compose.yml's environment passes --check-config: $out"
grep -q 'disable: true' "$CY" && ok "compose.yml disables the HTTP health check for the worker container" ||
  fail "compose.yml disables the image's health check for the worker"
finish
