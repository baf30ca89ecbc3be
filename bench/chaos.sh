#!/usr/bin/env bash
# Chaos on real processes, the long form of ctest's process.chaos (docs/reliability.md, "Chaos on
# real processes"): three `herald serve` nodes in network namespaces of their own, devices of four
# users sending, acknowledging and reading over WebSockets, and a seeded nemesis that cuts links
# (both ways and one way), takes interfaces down, SIGKILLs, SIGTERMs and restarts nodes and pauses
# them (SIGSTOP) for a bounded time. Afterwards the invariants are checked from the clients'
# records and every node's state, and again after every node was SIGTERMed and restarted and
# after every node was SIGKILLed and restarted. The work is done by tests/chaos_test.py.
#
# Usage: bench/chaos.sh            (as root: it creates network namespaces)
# Environment:
#   DURATION   seconds of faults per run (default 600)
#   SEED       seed of the first run (default: a random one, printed)
#   RUNS       runs, with seeds SEED, SEED+1, ... (default 1, at most 100)
#   HERALD_BIN Herald binary (default build/herald)
#   KEEP_LOGS  directory to copy a failed run's node logs to (default: they stay in /tmp, printed)
#
# Output: each run's fault log and checks, then one machine-parsable line per run
#   CHAOS_RESULT seed=.. duration_s=.. ok=0|1
# Bounds: every wait in the driver has a deadline; each run is under `timeout` as well.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=chaos
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION="${DURATION:-600}"
SEED="${SEED:-$((RANDOM * 32768 + RANDOM + 1))}"
RUNS="${RUNS:-1}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
KEEP_LOGS="${KEEP_LOGS:-}"
# Setup, settling and the checks after the faults take well under this (three full restarts).
readonly FIXED_BUDGET_S=300
# Debian's interpreter: python3-websockets is a Debian package.
readonly PYTHON=/usr/bin/python3

validate_params() {
  [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
  [[ "$SEED" =~ ^[1-9][0-9]*$ ]] || die "SEED must be a positive integer"
  { [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] && ((RUNS <= 100)); } || die "RUNS must be 1..100"
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  (($(id -u) == 0)) || die "needs root for network namespaces"
  [[ -x "$PYTHON" ]] || die "$PYTHON missing: bash scripts/install-deps.sh"
  "$PYTHON" -c 'import websockets' 2>/dev/null ||
    die "python3-websockets missing: bash scripts/install-deps.sh"
  require_commands ip timeout
}

main() {
  validate_params
  local failed=0 run seed rc keep
  for ((run = 0; run < RUNS; run++)); do
    seed=$((SEED + run))
    log "run $((run + 1)) of $RUNS: seed $seed, $DURATION s of faults;" \
      "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    keep=()
    if [[ -n "$KEEP_LOGS" ]]; then keep=(--keep "$KEEP_LOGS/seed-$seed"); fi
    rc=0
    (cd "$REPO_DIR/tests" && timeout --kill-after=10 $((DURATION + FIXED_BUDGET_S)) \
      "$PYTHON" -u chaos_test.py "$HERALD_BIN" --duration "$DURATION" --seed "$seed" \
      "${keep[@]}") || rc=$?
    echo "CHAOS_RESULT seed=$seed duration_s=$DURATION ok=$((rc == 0 ? 1 : 0))"
    ((rc == 0)) || failed=$((failed + 1))
  done
  ((failed == 0)) || die "$failed of $RUNS runs failed"
}

main "$@"
