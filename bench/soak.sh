#!/usr/bin/env bash
# Soak: millions of messages through one node with every retention window set short (send dedup,
# change streams, message history, delivery lifetime, closed workflows), to show that what it
# keeps levels off. The load is bench/messaging.sh's (herald_loadgen: sender and recipient pairs, a window of sends in
# flight, every message acknowledged), run in SEGMENTS segments of SEGMENT_S seconds on the same
# node. After each segment the node is SIGKILLed and started again, and the script prints, per
# segment:
#   messages so far, messages/s in the segment, the data directory's size on disk, the live
#   state and log bytes the node reports (GET /v1/cluster "storage": about what a snapshot
#   streams), its resident memory, and the restart time (SIGKILL until /v1/health answers 200).
# Usage: bash bench/soak.sh
#   SEGMENTS=8 SEGMENT_S=120 PAIRS=32 WINDOW=16 BODY_BYTES=64 RETENTION_MS=60000 KEEP_LOGS=DIR
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=soak
source "$SCRIPT_DIR/lib.sh"

SEGMENTS="${SEGMENTS:-8}"
SEGMENT_S="${SEGMENT_S:-120}"
PAIRS="${PAIRS:-32}"
WINDOW="${WINDOW:-16}"
BODY_BYTES="${BODY_BYTES:-64}"
RETENTION_MS="${RETENTION_MS:-60000}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
LOADGEN_BIN="${LOADGEN_BIN:-$REPO_DIR/build/herald_loadgen}"

readonly HOST=127.0.0.1
readonly CLIENT_PORT=26991
readonly PEER_PORT=26992
readonly MAX_SEGMENTS=100
readonly MAX_SEGMENT_S=3600
readonly MIN_RETENTION_MS=1000
readonly STARTUP_TIMEOUT_S=120  # a restart until /v1/health answers 200
readonly LOADGEN_GRACE_S=120    # setup and drain beyond the segment
readonly HEALTH_POLL_S=0.01

HERALD_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export HERALD_ADMIN_TOKEN

WORK_DIR=""
NODE_PID=""
LOADGEN_PID=""

cleanup() {
  local rc=$?
  [[ -n "$LOADGEN_PID" ]] && kill -KILL "$LOADGEN_PID" 2>/dev/null || true
  if [[ -n "$NODE_PID" ]]; then
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORK_DIR" ]]; then
    keep_or_show_logs "$rc" "$WORK_DIR"/logs/*
    rm -rf "$WORK_DIR"
  fi
}

validate_params() {
  local name value
  for name in SEGMENTS SEGMENT_S PAIRS WINDOW BODY_BYTES RETENTION_MS; do
    value="${!name}"
    [[ "$value" =~ ^[0-9]+$ ]] && ((value > 0)) || die "$name must be a positive integer"
  done
  ((SEGMENTS <= MAX_SEGMENTS)) || die "SEGMENTS is at most $MAX_SEGMENTS"
  ((SEGMENT_S <= MAX_SEGMENT_S)) || die "SEGMENT_S is at most $MAX_SEGMENT_S"
  ((RETENTION_MS >= MIN_RETENTION_MS)) || die "RETENTION_MS is at least $MIN_RETENTION_MS"
  [[ -x "$HERALD_BIN" ]] || die "$HERALD_BIN missing: cmake --build build --target herald"
  [[ -x "$LOADGEN_BIN" ]] || die "$LOADGEN_BIN missing: cmake --build build --target herald_loadgen"
  require_commands curl python3
}

start_node() {
  "$HERALD_BIN" serve --id 1 --data "$WORK_DIR/data" --config "$WORK_DIR/herald.toml" \
    --client "$HOST:$CLIENT_PORT" --peer "$HOST:$PEER_PORT" >>"$WORK_DIR/logs/herald.log" 2>&1 &
  NODE_PID=$!
}

healthy() {
  curl -fsS --max-time 1 "http://$HOST:$CLIENT_PORT/v1/health" >/dev/null 2>&1
}

# Waits for /v1/health polling every HEALTH_POLL_S; prints the milliseconds it took.
wait_healthy_ms() {
  local start_ns deadline=$((SECONDS + STARTUP_TIMEOUT_S))
  start_ns="$(date +%s%N)"
  until healthy; do
    ((SECONDS < deadline)) || die "the node did not answer /v1/health within ${STARTUP_TIMEOUT_S}s"
    sleep "$HEALTH_POLL_S"
  done
  echo $((($(date +%s%N) - start_ns) / 1000000))
}

admin() {
  curl -fsS --max-time 10 -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" "$@"
}

set_short_retention() {
  local window body=""
  for window in dedup_window_ms change_retention_ms message_retention_ms delivery_lifetime_ms closed_workflow_ms workflow_summary_ms; do
    body+="${body:+, }\"$window\": $RETENTION_MS"
  done
  admin -X PUT -H 'Content-Type: application/json' -d "{$body}" \
    "http://$HOST:$CLIENT_PORT/v1/admin/retention" >/dev/null
}

# Prints "state_bytes log_bytes resident_bytes" from GET /v1/cluster.
node_figures() {
  admin "http://$HOST:$CLIENT_PORT/v1/cluster" | python3 -c '
import json, sys
c = json.load(sys.stdin)
print(c["storage"]["state_bytes"], c["storage"]["log_bytes"], c["memory"]["resident_bytes"])'
}

# run_segment N: prints the messages the recipients received in the segment.
run_segment() {
  local n="$1" out="$WORK_DIR/logs/loadgen-$n.log" rc=0
  timeout --kill-after=5 "$((SEGMENT_S + LOADGEN_GRACE_S))" "$LOADGEN_BIN" --system herald \
    --endpoint "$HOST:$CLIENT_PORT" --admin "$HOST:$CLIENT_PORT" --pairs "$PAIRS" \
    --window "$WINDOW" --body-bytes "$BODY_BYTES" --duration-s "$SEGMENT_S" --warmup-s 1 \
    --server-pid "$NODE_PID" --label "soak-$n" --name-prefix "s$n" >"$out" 2>&1 &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || rc=$?
  LOADGEN_PID=""
  ((rc == 0)) || die "the load generator failed in segment $n (exit $rc)"
  grep '^LOADGEN_RESULT ' "$out" | python3 -c '
import sys
fields = dict(f.split("=", 1) for f in sys.stdin.read().split()[1:])
if int(fields["errors"]) or int(fields["lost"]):
    sys.exit("errors=%s lost=%s" % (fields["errors"], fields["lost"]))
print(fields["msgs_per_s"])' || die "segment $n had errors or lost messages"
}

main() {
  validate_params
  require_free_ports "$CLIENT_PORT" "$PEER_PORT"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-soak.XXXXXX")"
  mkdir -p "$WORK_DIR/logs" "$WORK_DIR/data"
  printf '[devices]\nrequests_per_s = 0\nauths_per_s_per_address = 0\nmax_connections_per_address = 0\n' \
    >"$WORK_DIR/herald.toml"
  log "scratch $WORK_DIR ($(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }')); $(nproc) cores;" \
    "$SEGMENTS segments of ${SEGMENT_S}s, $PAIRS pairs, window $WINDOW, body $BODY_BYTES B," \
    "every retention window ${RETENTION_MS} ms"
  start_node
  wait_healthy_ms >/dev/null
  set_short_retention
  echo "| segment | messages so far (measured windows) | messages/s | data dir MiB | state MiB | log MiB | RSS MiB | restart ms |"
  echo "|---|---|---|---|---|---|---|---|"
  local n total=0 rate figures dir_bytes restart_ms
  for ((n = 1; n <= SEGMENTS; n++)); do
    rate="$(run_segment "$n")"
    total=$((total + ${rate%.*} * SEGMENT_S))
    figures="$(node_figures)"
    dir_bytes="$(du -sb "$WORK_DIR/data" | cut -f1)"
    kill -KILL "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true  # reaped here, so bash reports no "Killed"
    start_node
    restart_ms="$(wait_healthy_ms)"
    read -r state log_bytes rss <<<"$figures"
    awk -v n="$n" -v total="$total" -v rate="$rate" -v dir="$dir_bytes" -v state="$state" \
      -v log_bytes="$log_bytes" -v rss="$rss" -v restart="$restart_ms" 'BEGIN {
        mib = 1048576
        printf "| %d | %d | %.0f | %.1f | %.1f | %.1f | %.0f | %d |\n", n, total, rate,
          dir / mib, state / mib, log_bytes / mib, rss / mib, restart
      }'
  done
}

main "$@"
