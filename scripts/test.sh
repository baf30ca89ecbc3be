#!/usr/bin/env bash
# Builds Herald and runs every test: unit and scenario tests (ctest), the deterministic
# simulator, the process-level tests, and the format/lint checks. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/lint.sh
(cd build && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900)
