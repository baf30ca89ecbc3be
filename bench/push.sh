#!/usr/bin/env bash
# Pushes per second through Herald's APNs client against the APNs test double, over one HTTP/2
# connection on 127.0.0.1 (self-signed TLS, every provider token verified by the double).
# Builds build/herald_pushbench (bench/push/main.cc) unless PUSHBENCH_BIN is given, then runs it
# RUNS times; each run starts the double as a child process (its CPU is measured apart from the
# client's), warms the connection up, and keeps IN_FLIGHT pushes outstanding until PUSHES have
# been sent or DURATION_S has passed.
#
# Usage: bench/push.sh
# Environment:
#   RUNS         runs; the summary shows their medians (default 3)
#   PUSHES       pushes per run after the warm-up (default 200000)
#   IN_FLIGHT    pushes outstanding at once (default 500)
#   DURATION_S   a run stops sending after this many seconds (default 60)
#   MAX_STREAMS  SETTINGS_MAX_CONCURRENT_STREAMS of the double and the client's bound (default 1000)
#   JOBS         build parallelism (default 2)
#   PUSHBENCH_BIN  a prebuilt driver (default: build it into build/)
#
# Output: each run's PUSHBENCH_RESULT line, then one PUSHBENCH_MEDIAN line: pushes/s (200
# answers only), send-to-result p50/p99/p999 in microseconds, and CPU per push of the client
# process and of the double, in microseconds. Exits non-zero when a run failed a push, or used
# more than one connection or one provider token.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=push
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

RUNS="${RUNS:-3}"
PUSHES="${PUSHES:-200000}"
IN_FLIGHT="${IN_FLIGHT:-500}"
DURATION_S="${DURATION_S:-60}"
MAX_STREAMS="${MAX_STREAMS:-1000}"
JOBS="${JOBS:-2}"
# A run's bound: the duration plus the warm-up, the double's start and the drain.
readonly RUN_TIMEOUT_S=$((DURATION_S + 120))

if [[ -z "${PUSHBENCH_BIN:-}" ]]; then
  log "building herald_pushbench (-j$JOBS)"
  (
    cd "$REPO_DIR"
    # shellcheck source=scripts/ccache.sh
    source scripts/ccache.sh
    [[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja \
      -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "${ccache_flags[@]}" >/dev/null
    cmake --build build -j "$JOBS" --target herald_pushbench
  ) >&2
  PUSHBENCH_BIN="$REPO_DIR/build/herald_pushbench"
fi
[[ -x "$PUSHBENCH_BIN" ]] || die "$PUSHBENCH_BIN missing"
require_commands timeout python3

results="$(mktemp "${TMPDIR:-/tmp}/herald-push.XXXXXX")"
trap 'rm -f "$results"' EXIT
failed=0
for ((run = 1; run <= RUNS; run++)); do
  log "run $run of $RUNS: $PUSHES pushes, $IN_FLIGHT in flight, at most ${DURATION_S}s"
  if ! timeout --kill-after=10 "$RUN_TIMEOUT_S" "$PUSHBENCH_BIN" --pushes "$PUSHES" \
    --in-flight "$IN_FLIGHT" --duration-s "$DURATION_S" --max-streams "$MAX_STREAMS" \
    --runs 1 | sed "s/run=1/run=$run/" | tee -a "$results"; then
    failed=1
  fi
done

python3 - "$results" <<'PY'
import statistics, sys
runs = [dict(f.split("=", 1) for f in line.split()[1:])
        for line in open(sys.argv[1]) if line.startswith("PUSHBENCH_RESULT")]
if not runs:
    sys.exit("no run finished")
def med(key):
    return statistics.median(float(r[key]) for r in runs)
print(f"PUSHBENCH_MEDIAN runs={len(runs)} in_flight={runs[0]['in_flight']} "
      f"pushes_per_s={med('pushes_per_s'):.0f} p50_us={med('p50_us'):.0f} "
      f"p99_us={med('p99_us'):.0f} p999_us={med('p999_us'):.0f} "
      f"client_cpu_us_per_push={med('client_cpu_us_per_push'):.2f} "
      f"server_cpu_us_per_push={med('server_cpu_us_per_push'):.2f} "
      f"errors={sum(int(r['errors']) for r in runs)}")
PY
exit "$failed"
