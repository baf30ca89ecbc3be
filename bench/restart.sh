#!/usr/bin/env bash
# Restart-time benchmark: a single-node Herald cluster on loopback is loaded with WRITES writes
# (64-byte values, distinct keys r-<n>, sent by wrk), then SIGKILLed and restarted on its data
# directory RESTARTS times. Each restart is timed from just before the exec to the first
# successful linearizable GET of a known key (polled every 1 ms). The node's startup line
# "replica 1 open: applied A term T, log [F, L]" shows that the raft log was compacted (F close
# to A), which is what keeps restart time independent of the history.
# The work is done by bench/restart.py (standard-library Python); this script checks the
# environment, owns the scratch directory and cleans up.
#
# Usage: bench/restart.sh            (from the repository root or anywhere)
# Environment:
#   WRITES        writes to load before the restarts (default 1000000; the compaction check
#                 needs it well above the 20,000-entry compaction threshold)
#   RESTARTS      kill-and-restart cycles (default 5, at most 50)
#   WRK_THREADS   wrk threads (default 2)
#   WRK_CONNS     wrk connections (default 64)
#   LOAD_TIMEOUT  seconds the load may take at most (default 1800)
#   HERALD_BIN    Herald binary (default build/herald)
#   BENCH_TMP     parent of the scratch directory (default $TMPDIR or /tmp)
#   KEEP_LOGS     directory to copy the node log to before cleanup (default: none)
#
# Output: one line per restart and a final machine-parsable line
#   RESTART_RESULT writes=.. load_s=.. restarts=.. median_ms=.. max_ms=.. open_median_ms=..
#   leader_median_ms=.. applied=.. log_first=.. log_last=.. ok=0|1
# Bounds: only 127.0.0.1; the helper runs under `timeout`; every wait in it has a deadline.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=restart
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

WRITES="${WRITES:-1000000}"
RESTARTS="${RESTARTS:-5}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-64}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-1800}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
KEEP_LOGS="${KEEP_LOGS:-}"

readonly HOST=127.0.0.1
readonly CLIENT_PORT=26791
readonly PEER_PORT=26801
readonly PER_RESTART_BUDGET_S=150
readonly FIXED_BUDGET_S=180

WORK_DIR=""
HELPER_PID=""


validate_params() {
  [[ "$WRITES" =~ ^[1-9][0-9]*$ ]] || die "WRITES must be a positive integer"
  { [[ "$RESTARTS" =~ ^[1-9][0-9]*$ ]] && ((RESTARTS <= 50)); } || die "RESTARTS must be 1..50"
  [[ "$WRK_THREADS" =~ ^[1-9][0-9]*$ ]] || die "WRK_THREADS must be a positive integer"
  { [[ "$WRK_CONNS" =~ ^[1-9][0-9]*$ ]] && ((WRK_CONNS >= WRK_THREADS)); } ||
    die "WRK_CONNS must be an integer >= WRK_THREADS"
  { [[ "$LOAD_TIMEOUT" =~ ^[1-9][0-9]*$ ]] && ((LOAD_TIMEOUT <= 7200)); } ||
    die "LOAD_TIMEOUT must be 1..7200 seconds"
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  require_commands python3 timeout wrk
}


# Stops the helper, then the node and wrk it started (a node names our data dir, wrk our port).
cleanup() {
  local rc=$?
  stop_helper
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    kill_run_processes "$WORK_DIR|$HOST:$CLIENT_PORT" "$WORK_DIR"/*.pid
    keep_or_show_logs "$rc" "$WORK_DIR/n1.log" "$WORK_DIR/wrk.out"
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}

main() {
  validate_params
  local p
  for p in "$CLIENT_PORT" "$PEER_PORT"; do
    if port_in_use "$p"; then
      die "port $p on $HOST is already in use"
    fi
  done
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-restart.XXXXXX")"
  log "$WRITES writes, $RESTARTS restarts; scratch on $(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }');" \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  local budget=$((FIXED_BUDGET_S + LOAD_TIMEOUT + RESTARTS * PER_RESTART_BUDGET_S))
  local rc=0
  timeout --kill-after=10 "$budget" python3 -u "$SCRIPT_DIR/restart.py" \
    --binary "$HERALD_BIN" --work-dir "$WORK_DIR" \
    --client-port "$CLIENT_PORT" --peer-port "$PEER_PORT" \
    --wrk-script "$SCRIPT_DIR/wrk/herald-seq-put.lua" \
    --writes "$WRITES" --restarts "$RESTARTS" --wrk-threads "$WRK_THREADS" \
    --wrk-conns "$WRK_CONNS" --load-timeout "$LOAD_TIMEOUT" &
  HELPER_PID=$!
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  ((rc == 0)) || die "restart run failed (exit $rc)"
}

main "$@"
