#!/usr/bin/env bash
# Configures and builds Herald into ./build (Ninja, RelWithDebInfo). Installs build dependencies
# first. Parallelism defaults to the number of cores; override with JOBS. Compiles go through
# ccache with paths relative to the checkout, so another clone on the same machine reuses them.
# Arguments go to the configuring cmake (e.g. -DHERALD_REQUIRE_NODE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/ccache.sh
jobs="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  "${ccache_flags[@]}" "$@" >/dev/null
cmake --build build -j "$jobs"
