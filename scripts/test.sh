#!/usr/bin/env bash
# Builds Herald and runs every check: clang-format, the unit and scenario tests, the
# deterministic simulator (raft and workflow scenarios), the process-level SIGKILL tests and the
# browser tests of the dashboard and the web chat in headless Chromium and the JavaScript
# client's tests under node (ctest),
# the Debian package installed into a scratch root and run from there (scripts/package_test.sh),
# then each libFuzzer target for a bounded time (scripts/fuzz.sh), then clang-tidy over every
# source. Exits non-zero on any failure.
# HERALD_SKIP_TIDY=1 skips the clang-tidy pass (it takes several minutes on two cores).
# HERALD_FUZZ_SECONDS sets the time per fuzz target (default 10); HERALD_SKIP_FUZZ=1 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests need Chromium and playwright-core, the JavaScript client's tests node and the
# ws and typescript packages: installed first, since configuring registers those tests only when it
# finds node (and, with HERALD_REQUIRE_NODE, fails when it does not).
bash scripts/install-deps.sh --browser
bash scripts/build.sh -DHERALD_REQUIRE_NODE=ON
bash scripts/lint.sh
(cd build && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900)
bash scripts/package_test.sh build
if [[ "${HERALD_SKIP_FUZZ:-0}" != "1" ]]; then
  bash scripts/fuzz.sh "${HERALD_FUZZ_SECONDS:-10}"
fi
if [[ "${HERALD_SKIP_TIDY:-0}" != "1" ]]; then
  bash scripts/tidy.sh
fi
