#!/usr/bin/env bash
# Connected devices on one node: the server memory each idle device costs, and a reconnect storm.
# Starts a fresh single node, then runs build/herald_connbench (bench/conns/main.cc) against it:
#  1. provisions DEVICES devices (DEVICES_PER_USER per user) and group conversations of
#     GROUP_USERS users through the admin API;
#  2. connects every device (auth without `since`) at CONNECT_RATE per second from SOURCES
#     loopback addresses (127.0.0.2 and up, each with its own ephemeral port range), waits until
#     the node is quiet, and reports (resident memory with every device idle - before) / devices;
#  3. drops every connection at once, posts one message into every group while the devices are
#     away, reconnects every device within STORM_S seconds with `since` = the last change it
#     processed, and reports when every device had resumed and received the message it missed,
#     with errors and missing changes.
# The node runs with the per-address limits lifted (all devices share a few addresses) and
# max_connections above DEVICES; the script raises the open-file limits of both processes.
#
# Usage: bench/connections.sh
# Environment: DEVICES (default 50000), DEVICES_PER_USER (2), GROUP_USERS (8), SOURCES (4),
#   CONNECT_RATE (5000), STORM_S (10), RUNS (1), HERALD_BIN, CONNBENCH_BIN, KEEP_LOGS, BENCH_TMP.
# Output: each run's CONNBENCH_RESULT line. Exits non-zero when a run had errors or missed changes.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=connections
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

DEVICES="${DEVICES:-50000}"
DEVICES_PER_USER="${DEVICES_PER_USER:-2}"
GROUP_USERS="${GROUP_USERS:-8}"
SOURCES="${SOURCES:-4}"
CONNECT_RATE="${CONNECT_RATE:-5000}"
STORM_S="${STORM_S:-10}"
RUNS="${RUNS:-1}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
CONNBENCH_BIN="${CONNBENCH_BIN:-$REPO_DIR/build/herald_connbench}"

readonly HOST=127.0.0.1
readonly CLIENT_PORT=26891
readonly PEER_PORT=26892
readonly STARTUP_TIMEOUT_S=60
readonly STOP_TIMEOUT_S=15
readonly MAX_DEVICES=500000
# Descriptors of the client beyond one per device (the node sizes its own, app/serve.cc).
readonly SPARE_DESCRIPTORS=1024

HERALD_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export HERALD_ADMIN_TOKEN
WORK_DIR=""
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$SERVER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    keep_or_show_logs "$rc" "$WORK_DIR"/*.log
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

[[ -x "$HERALD_BIN" ]] || die "$HERALD_BIN missing: build the herald target"
[[ -x "$CONNBENCH_BIN" ]] || die "$CONNBENCH_BIN missing: build the herald_connbench target"
((DEVICES >= 1 && DEVICES <= MAX_DEVICES)) || die "DEVICES must be within 1..$MAX_DEVICES"
require_commands curl timeout
require_free_ports "$CLIENT_PORT" "$PEER_PORT"

# Both processes inherit this shell's limit; raising the hard limit needs root (or a hard limit
# that is high enough already).
want=$((DEVICES + SPARE_DESCRIPTORS))
if (($(ulimit -Hn) < want)); then
  ulimit -Hn "$want" 2>/dev/null ||
    die "cannot raise the open-file limit from $(ulimit -Hn) to $want (needs CAP_SYS_RESOURCE)"
fi
ulimit -Sn "$want"

WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-connections.XXXXXX")"
failed=0
for ((run = 1; run <= RUNS; run++)); do
  dir="$WORK_DIR/run-$run"
  mkdir -p "$dir/data"
  printf '%s\n' "max_connections = $((DEVICES + 1024))" '[devices]' 'requests_per_s = 0' \
    'auths_per_s_per_address = 0' 'max_connections_per_address = 0' >"$dir/herald.toml"
  "$HERALD_BIN" serve --id 1 --data "$dir/data" --config "$dir/herald.toml" \
    --client "$HOST:$CLIENT_PORT" --peer "$HOST:$PEER_PORT" \
    >"$WORK_DIR/herald-$run.log" 2>&1 &
  SERVER_PID=$!
  retry_until "$STARTUP_TIMEOUT_S" curl -fs --max-time 2 \
    -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" "http://$HOST:$CLIENT_PORT/v1/cluster" \
    -o /dev/null || die "the node did not serve within ${STARTUP_TIMEOUT_S}s"
  log "run $run: $DEVICES devices, $DEVICES_PER_USER per user, groups of $GROUP_USERS users"
  if ! timeout --kill-after=10 $((600 + DEVICES / 50)) "$CONNBENCH_BIN" --host "$HOST" \
    --port "$CLIENT_PORT" --admin-port "$CLIENT_PORT" --devices "$DEVICES" \
    --devices-per-user "$DEVICES_PER_USER" --group-users "$GROUP_USERS" \
    --source-addresses "$SOURCES" --connect-rate "$CONNECT_RATE" --storm-s "$STORM_S" \
    --server-pid "$SERVER_PID" --prefix "r$run" 2>&1 | tee "$WORK_DIR/connbench-$run.log"; then
    failed=1
  fi
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done
exit "$failed"
