#!/usr/bin/env bash
# Draws the messaging plots of docs/benchmarks.md ("Plots") as PNG with gnuplot: acknowledged
# sends/s and p99 against connected devices (bench/messaging.sh, direct, for each PAIRS value),
# messages/s and p99 against group size (bench/messaging.sh, group mode), and Herald's resident
# memory against idle connected devices (bench/connections.sh). Every point is a run (or the
# median of RUNS runs) of those scripts, one system at a time; bench/plots.py does the sweeps.
#
# Usage: bench/plots.sh            (from the repository root or anywhere)
# Environment:
#   SYSTEMS      systems of the messaging sweeps (default "herald-1 nats-1 mosquitto")
#   PAIRS_LIST   pair counts of the devices sweep (default "4 16 64 256": 8 to 512 devices)
#   GROUP_SIZES  group sizes of the group sweep (default "10 100 512")
#   DEVICES_LIST device counts of the memory sweep (default "1000 4000 8000 15000")
#   SWEEPS       which sweeps (default "devices group memory")
#   RUNS         runs per point, median plotted (default 1)
#   DURATION     measured window of each messaging run, seconds (default 10)
#   OUT_DIR      where the .dat files and PNGs go (default docs/plots)
#   The messaging and connection scripts' own variables (HERALD_BIN, LOADGEN_BIN, ...) pass through.
# Output: one PLOTS_POINT line per point, OUT_DIR/{devices,group,memory}.dat and
# OUT_DIR/{throughput,p99}-vs-{devices,group}.png, OUT_DIR/memory-vs-connections.png.
# Needs gnuplot (bash scripts/install-deps.sh --bench) and the benchmarks' own dependencies.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"

command -v gnuplot >/dev/null || {
  echo "[plots] gnuplot missing: bash scripts/install-deps.sh --bench" >&2
  exit 1
}
# shellcheck disable=SC2086  # the lists are space-separated on purpose
exec python3 -u "$SCRIPT_DIR/plots.py" --out "${OUT_DIR:-$REPO_DIR/docs/plots}" \
  --sweeps ${SWEEPS:-devices group memory} \
  --systems ${SYSTEMS:-herald-1 nats-1 mosquitto} \
  --pairs ${PAIRS_LIST:-4 16 64 256} \
  --group-sizes ${GROUP_SIZES:-10 100 512} \
  --devices ${DEVICES_LIST:-1000 4000 8000 15000} \
  --runs "${RUNS:-1}" --duration "${DURATION:-10}"
