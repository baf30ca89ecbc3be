#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with AddressSanitizer and UndefinedBehaviorSanitizer)
# into ./build-fuzz and runs each one for a bounded time from its seed corpus (fuzz/corpus/<name>).
# The seed corpus is read, never written: what a run adds goes to a scratch directory. Exits
# non-zero when a target finds a crash, a leak, a timeout or a failed assertion; the input that
# did it is kept under build-fuzz/artifacts/<name>/ and replays with `build-fuzz/fuzz/fuzz_<name>
# FILE`.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 10 seconds, every target)
# HERALD_FUZZ_KEEP=DIR keeps each target's grown corpus under DIR/<name> (for long runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --fuzz

# Bounds of one run; a single input that runs longer than kInputTimeoutS or grows the process past
# kRssLimitMb is a finding.
readonly seconds="${1:-10}"
readonly input_timeout_s=10
readonly rss_limit_mb=2048
readonly max_input_bytes=65536
shift || true

source scripts/ccache.sh
jobs="${JOBS:-$(nproc)}"
# -O1 with line tables only: a cold build costs a fraction of an optimized one, and the
# sanitizers find the same faults.
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_C_FLAGS_RELEASE=-O1 \
  -DHERALD_FUZZ=ON -DHERALD_WERROR=OFF "${ccache_flags[@]}" >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzz_all

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(find fuzz -maxdepth 1 -name '*_fuzz.cc' -printf '%f\n' | sed 's/_fuzz\.cc$//' | sort)
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for name in "${targets[@]}"; do
  corpus="$scratch/$name"
  if [[ -n "${HERALD_FUZZ_KEEP:-}" ]]; then
    corpus="$HERALD_FUZZ_KEEP/$name"
  fi
  artifacts="build-fuzz/artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  log="$scratch/$name.log"
  if build-fuzz/fuzz/"fuzz_$name" -max_total_time="$seconds" -timeout="$input_timeout_s" \
    -rss_limit_mb="$rss_limit_mb" -max_len="$max_input_bytes" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "fuzz/corpus/$name" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    echo "fuzz: $name ok: ${runs:-?} runs in ${seconds} s, ${cov:-no coverage line}"
  else
    echo "fuzz: $name FAILED; the input is under $artifacts/" >&2
    grep -E 'ERROR|SUMMARY|assert|Assertion|runtime error' "$log" | head -20 >&2 || tail -20 "$log" >&2
    failed+=("$name")
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each with no finding"
