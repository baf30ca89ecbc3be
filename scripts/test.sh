#!/usr/bin/env bash
# Builds Herald and runs every check: clang-format, the unit and scenario tests, the
# deterministic simulator (raft and workflow scenarios), the process-level SIGKILL tests (ctest),
# then clang-tidy over every source. Exits non-zero on any failure.
# HERALD_SKIP_TIDY=1 skips the clang-tidy pass (it takes several minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/lint.sh
(cd build && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900)
if [[ "${HERALD_SKIP_TIDY:-0}" != "1" ]]; then
  bash scripts/tidy.sh
fi
