#!/usr/bin/env bash
# Shared pieces of Herald's benchmark scripts. Source it after setting BENCH_TAG:
#   BENCH_TAG=restart; source "$(dirname "$0")/lib.sh"
# Every script keeps WORK_DIR (its scratch directory), HELPER_PID (its Python helper) and
# KEEP_LOGS (copy logs there instead of deleting them) in these names.

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# True when something listens on HOST:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Dies unless each named command exists; the benchmark peers come from install-deps --bench.
require_commands() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || die "$c missing: bash scripts/install-deps.sh --bench"
  done
}

# Dies when something listens on HOST at any of the given ports.
require_free_ports() {
  local p
  for p in "$@"; do
    if port_in_use "$p"; then die "port $p on $HOST is already in use"; fi
  done
}

# Runs "$@" until it succeeds or `timeout_s` passes. Returns 1 on timeout.
retry_until() {
  local timeout_s="$1"
  shift
  local deadline=$((SECONDS + timeout_s))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# Like retry_until, but prints the output of the first successful run.
retry_until_output() {
  local timeout_s="$1" out
  shift
  local deadline=$((SECONDS + timeout_s))
  until out="$("$@")"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  echo "$out"
}

# Stops the Python helper, politely first.
stop_helper() {
  if [[ -n "${HELPER_PID:-}" ]] && kill -0 "$HELPER_PID" 2>/dev/null; then
    kill -TERM "$HELPER_PID" 2>/dev/null || true
    sleep 1
    kill -KILL "$HELPER_PID" 2>/dev/null || true
  fi
}

# kill_run_processes PATTERN PIDFILE...: SIGKILLs each pid whose command line still matches the
# extended regex PATTERN (so a recycled pid of another program is left alone).
kill_run_processes() {
  local pattern="$1" f pid
  shift
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE "$pattern"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

# keep_or_show_logs RC FILE...: copies the files to KEEP_LOGS when set, otherwise shows the last
# lines of each when the run failed (RC != 0).
keep_or_show_logs() {
  local rc="$1" f
  shift
  if [[ -n "${KEEP_LOGS:-}" ]]; then
    mkdir -p "$KEEP_LOGS"
    for f in "$@"; do
      [[ -f "$f" ]] && cp "$f" "$KEEP_LOGS"/
    done
    log "logs copied to $KEEP_LOGS"
  elif ((rc != 0)); then
    for f in "$@"; do
      [[ -s "$f" ]] || continue
      log "last lines of $(basename "$f"):"
      tail -n 8 "$f" >&2
    done
  fi
}
