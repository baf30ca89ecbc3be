#!/usr/bin/env bash
# Configures and builds Herald into ./build (Ninja, RelWithDebInfo). Installs build dependencies
# first. Parallelism defaults to the number of cores; override with JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build build -j "$jobs"
