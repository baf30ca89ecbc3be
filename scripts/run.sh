#!/usr/bin/env bash
# Builds Herald and runs a single node on embedded storage (RocksDB in ./herald-data), serving
# HTTP and the device WebSocket on 127.0.0.1:7400, with demo traffic: users alice, bob and carol
# chat, and the log tells each delivery, push, escalation email and read receipt
# (docs/operations.md, "Demo traffic"). Extra arguments go to `herald serve`. Ctrl-C stops it
# cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec build/herald serve --demo "$@"
