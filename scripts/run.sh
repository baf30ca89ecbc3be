#!/usr/bin/env bash
# Builds Herald and runs a single node on embedded storage (RocksDB in ./herald-data), serving
# HTTP on 127.0.0.1:7400. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec build/herald serve "$@"
