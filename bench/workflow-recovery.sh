#!/usr/bin/env bash
# Workflow crash recovery: a single-node Herald cluster on loopback holds WORKFLOWS in-flight
# "demo.sleep" workflows whose durable timers are all due at one instant; the node is SIGKILLed
# before that instant and restarted after it, and the script measures from just before the exec
# to the first overdue timer fired and to all of them fired. See docs/benchmarks.md, "Workflow
# crash recovery".
# The work is done by bench/workflow_recovery.py (standard-library Python and wrk); this script
# checks the environment, owns the scratch directory and cleans up.
#
# Usage: bench/workflow-recovery.sh            (from the repository root or anywhere)
# Environment:
#   WORKFLOWS    in-flight workflows (default 100000; a multiple of WRK_THREADS)
#   LEAD_S       seconds from the start of the load to the timers' due time (default 60); the
#                load must end 2 s before it
#   OVERDUE_MS   how long after the due time the node is restarted (default 1000)
#   WRK_THREADS  wrk threads (default 2)
#   WRK_CONNS    wrk connections (default 64)
#   HERALD_BIN   Herald binary (default build/herald)
#   HERALD_RAFT_LOG  the node's [storage] raft_log: rocksdb or segments (default: Herald's own)
#   BENCH_TMP    parent of the scratch directory (default $TMPDIR or /tmp)
#   KEEP_LOGS    directory to copy the node log and wrk output to before cleanup
#   KEEP_DATA    a new directory to copy the killed node's data directory to (for profiling a
#                restart: `herald serve --data KEEP_DATA ...` replays the same recovery)
#
# Output: progress lines and a final machine-parsable line
#   WORKFLOW_RECOVERY_RESULT workflows=.. load_s=.. open_ms=.. leader_ms=.. first_fired_ms=..
#   all_fired_ms=.. first_stamped_ms=.. last_stamped_ms=.. polls_unanswered=.. ok=0|1
# Bounds: only 127.0.0.1; the helper runs under `timeout`; every wait in it has a deadline.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=workflow-recovery
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

WORKFLOWS="${WORKFLOWS:-100000}"
LEAD_S="${LEAD_S:-60}"
OVERDUE_MS="${OVERDUE_MS:-1000}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-64}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
KEEP_LOGS="${KEEP_LOGS:-}"
KEEP_DATA="${KEEP_DATA:-}"

readonly HOST=127.0.0.1
readonly CLIENT_PORT=28791
readonly PEER_PORT=28801
readonly FIXED_BUDGET_S=300   # start, counts, restart and the fire timeout (120 s)

WORK_DIR=""
HELPER_PID=""


validate_params() {
  [[ "$WRK_THREADS" =~ ^[1-9][0-9]*$ ]] || die "WRK_THREADS must be a positive integer"
  { [[ "$WORKFLOWS" =~ ^[1-9][0-9]*$ ]] && ((WORKFLOWS <= 2000000 && WORKFLOWS % WRK_THREADS == 0)); } ||
    die "WORKFLOWS must be 1..2000000 and a multiple of WRK_THREADS"
  { [[ "$LEAD_S" =~ ^[1-9][0-9]*$ ]] && ((LEAD_S >= 5 && LEAD_S <= 1800)); } || die "LEAD_S must be 5..1800"
  { [[ "$OVERDUE_MS" =~ ^[0-9]+$ ]] && ((OVERDUE_MS <= 60000)); } || die "OVERDUE_MS must be 0..60000"
  { [[ "$WRK_CONNS" =~ ^[1-9][0-9]*$ ]] && ((WRK_CONNS >= WRK_THREADS)); } ||
    die "WRK_CONNS must be an integer >= WRK_THREADS"
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  require_commands python3 timeout wrk
}


# Stops the helper, then the node it started (its pid file, only if it names our data dir).
cleanup() {
  local rc=$?
  stop_helper
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    kill_run_processes "$WORK_DIR" "$WORK_DIR"/*.pid
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
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-wf-recovery.XXXXXX")"
  log "$WORKFLOWS workflows, due ${LEAD_S}s after the load starts, restart ${OVERDUE_MS} ms after;" \
    "scratch on $(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }'); load average before:" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
  local rc=0
  timeout --kill-after=10 "$((FIXED_BUDGET_S + LEAD_S))" python3 -u "$SCRIPT_DIR/workflow_recovery.py" \
    --binary "$HERALD_BIN" --work-dir "$WORK_DIR" \
    --client-port "$CLIENT_PORT" --peer-port "$PEER_PORT" \
    --workflows "$WORKFLOWS" --lead-s "$LEAD_S" --overdue-ms "$OVERDUE_MS" \
    --wrk-threads "$WRK_THREADS" --wrk-conns "$WRK_CONNS" \
    ${HERALD_RAFT_LOG:+--raft-log "$HERALD_RAFT_LOG"} ${KEEP_DATA:+--keep-data "$KEEP_DATA"} &
  HELPER_PID=$!
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  ((rc == 0)) || die "workflow recovery run failed (exit $rc)"
}

main "$@"
