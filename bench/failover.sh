#!/usr/bin/env bash
# Leader-failover benchmark: a 3-node Herald cluster on loopback under a steady write load; the
# leader is SIGKILLed KILLS times and the unavailability window of each kill is measured (from the
# kill until the first write issued after it is acknowledged). The killed node is restarted on its
# data directory and must catch up before the next kill. At the end every acknowledged write is
# read back with a linearizable GET; a lost or different value fails the run (exit 1).
# The work is done by bench/failover.py (standard-library Python); this script checks the
# environment, picks ports, owns the scratch directory and cleans up.
#
# Usage: bench/failover.sh            (from the repository root or anywhere)
# Environment:
#   KILLS              leader kills (default 20, at most 200)
#   INTERVAL           seconds of load before each kill (default 2)
#   WRITERS            writer threads (default 8)
#   CLIENT_TIMEOUT_MS  per-request client timeout; a timed-out write is retried on another node
#                      (default 1000)
#   ELECTION_TICKS, HEARTBEAT_TICKS, TICK_MS   passed to `herald serve` when set; unset by
#                      default, so the nodes run with their own defaults (tick 10 ms, heartbeat
#                      2 ticks, election timeout randomized in [6, 12) ticks = 60-120 ms)
#   HERALD_BIN         Herald binary (default build/herald)
#   BENCH_TMP          parent of the scratch directory (default $TMPDIR or /tmp)
#   KEEP_LOGS          directory to copy the node logs to before cleanup (default: none)
#
# Output: one line per kill, a summary, and a final machine-parsable line
#   FAILOVER_RESULT kills=.. unavail_p50_ms=.. unavail_p99_ms=.. unavail_max_ms=.. ... ok=0|1
# Bounds: only 127.0.0.1; the helper runs under `timeout`; every wait in it has a deadline.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=failover
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

KILLS="${KILLS:-20}"
INTERVAL="${INTERVAL:-2}"
WRITERS="${WRITERS:-8}"
CLIENT_TIMEOUT_MS="${CLIENT_TIMEOUT_MS:-1000}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
KEEP_LOGS="${KEEP_LOGS:-}"

readonly HOST=127.0.0.1
readonly CLIENT_PORTS=(25791 25792 25793)
readonly PEER_PORTS=(25801 25802 25803)
readonly PER_KILL_BUDGET_S=90   # worst case per kill: leader search, window, catch-up
readonly FIXED_BUDGET_S=300     # start-up and the final read-back

WORK_DIR=""
HELPER_PID=""


validate_params() {
  { [[ "$KILLS" =~ ^[1-9][0-9]*$ ]] && ((KILLS <= 200)); } || die "KILLS must be 1..200"
  [[ "$INTERVAL" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "INTERVAL must be a number of seconds"
  { [[ "$WRITERS" =~ ^[1-9][0-9]*$ ]] && ((WRITERS <= 64)); } || die "WRITERS must be 1..64"
  [[ "$CLIENT_TIMEOUT_MS" =~ ^[1-9][0-9]*$ ]] || die "CLIENT_TIMEOUT_MS must be a positive integer"
  local v
  for v in ELECTION_TICKS HEARTBEAT_TICKS TICK_MS; do
    if [[ -n "${!v:-}" && ! "${!v}" =~ ^[1-9][0-9]*$ ]]; then
      die "$v must be a positive integer"
    fi
  done
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  require_commands python3 timeout
}


# Stops the helper, then any node it started (a pid file whose process names our data dir).
cleanup() {
  local rc=$?
  stop_helper
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    kill_run_processes "$WORK_DIR" "$WORK_DIR"/n*.pid
    keep_or_show_logs "$rc" "$WORK_DIR"/n*.log
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}

main() {
  validate_params
  require_free_ports "${CLIENT_PORTS[@]}" "${PEER_PORTS[@]}"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-failover.XXXXXX")"

  local serve_args=()
  [[ -n "${ELECTION_TICKS:-}" ]] && serve_args+=(--serve-arg=--election-ticks --serve-arg="$ELECTION_TICKS")
  [[ -n "${HEARTBEAT_TICKS:-}" ]] && serve_args+=(--serve-arg=--heartbeat-ticks --serve-arg="$HEARTBEAT_TICKS")
  [[ -n "${TICK_MS:-}" ]] && serve_args+=(--serve-arg=--tick-ms --serve-arg="$TICK_MS")

  log "$KILLS kills, ${INTERVAL}s apart, $WRITERS writers, client timeout ${CLIENT_TIMEOUT_MS} ms," \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  local budget=$((FIXED_BUDGET_S + KILLS * PER_KILL_BUDGET_S))
  local ports_c ports_p
  ports_c="$(IFS=,; echo "${CLIENT_PORTS[*]}")"
  ports_p="$(IFS=,; echo "${PEER_PORTS[*]}")"
  local rc=0
  timeout --kill-after=10 "$budget" python3 -u "$SCRIPT_DIR/failover.py" \
    --binary "$HERALD_BIN" --work-dir "$WORK_DIR" \
    --client-ports "$ports_c" --peer-ports "$ports_p" \
    --kills "$KILLS" --interval "$INTERVAL" --writers "$WRITERS" \
    --client-timeout-ms "$CLIENT_TIMEOUT_MS" "${serve_args[@]}" &
  HELPER_PID=$!
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  ((rc == 0)) || die "failover run failed (exit $rc)"
}

main "$@"
