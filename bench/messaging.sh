#!/usr/bin/env bash
# End-to-end messaging benchmark: Herald (one node, three nodes), NATS JetStream (file storage,
# one node R1 and three nodes R3) and Mosquitto (QoS 1, persistence on) driven by the same
# workload from the same load generator (build/herald_loadgen, bench/loadgen/), one system at a
# time, each started fresh for every run. The workload: P sender/recipient pairs on loopback, each
# sender keeping W sends in flight, each recipient acknowledging every message it receives,
# B-byte bodies; a warm-up, then a measured window (bench/loadgen/workload.h). Group mode
# (GROUP_SIZE > 0): one group whose GROUP_SENDERS members send to every other member.
#
# Usage: bench/messaging.sh            (from the repository root or anywhere)
# Environment:
#   SYSTEMS        which systems to run, in order, from herald-1 herald-3 nats-1 nats-3 mosquitto
#                  (default: all five)
#   PAIRS          sender/recipient pairs (default 32)
#   WINDOW         sends in flight per sender (default 16)
#   BODY_BYTES     bytes of each message body (default 64)
#   DURATION       measured window per run, seconds (default 10)
#   WARMUP         warm-up before the window, seconds (default 3)
#   RUNS           runs per system; the table shows their medians (default 3)
#   GROUP_SIZE     0 for direct conversations (default), else the members of the one group
#   GROUP_SENDERS  group mode: members that send (default 1)
#   ELECTION_TICKS passed to `herald serve --election-ticks` when set (default: Herald's own)
#   HERALD_BIN, LOADGEN_BIN   binaries (default build/herald, build/herald_loadgen)
#   HERALD_RAFT_LOG  Herald's [storage] raft_log: rocksdb or segments (default: Herald's own)
#   BENCH_TMP      parent of the scratch directory (default $TMPDIR or /tmp)
#   KEEP_LOGS      directory to copy the server and load generator logs to (default: none)
#   PERF_STAT      1: count the server processes' user and kernel instructions over the measured
#                  window (`perf stat -e instructions:u,instructions:k`) and add them per message
#                  to the run's line (instr_u_per_msg, instr_k_per_msg) and the table (default 0)
#   PERF_RECORD    a directory: record a call-graph profile of the server processes over the
#                  measured window (`perf record -g`) to <dir>/<system>-<run>.data (default: none)
#   KEEP_METRICS   a directory: after each Herald run, save every node's GET /metrics (the whole
#                  run, warm-up included) to <dir>/<system>-<run>-node<id>.prom (default: none)
#
# Output: each run's LOADGEN_RESULT line, then a table of medians per system: acknowledged
# sends/s and messages/s (received by recipients in the window; in group mode each recipient's
# copy counts), send-to-receipt p50/p99/p999, server CPU per message
# (/proc/<pid>/stat utime + stime of the server processes over the window, divided by the
# messages), server resident memory at the end of the window, errors and lost messages, and the
# system's durability. A run whose errors plus losses exceed MAX_ERROR_PERCENT of its
# acknowledged sends is marked INVALID and the script exits 1 after the table.
# Bounds: only 127.0.0.1; each load generator run is under `timeout`; every wait has a deadline.
# Writes nothing outside its scratch directory, which it removes.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=messaging
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

SYSTEMS="${SYSTEMS:-herald-1 herald-3 nats-1 nats-3 mosquitto}"
PAIRS="${PAIRS:-32}"
WINDOW="${WINDOW:-16}"
BODY_BYTES="${BODY_BYTES:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
RUNS="${RUNS:-3}"
GROUP_SIZE="${GROUP_SIZE:-0}"
GROUP_SENDERS="${GROUP_SENDERS:-1}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
LOADGEN_BIN="${LOADGEN_BIN:-$REPO_DIR/build/herald_loadgen}"
KEEP_LOGS="${KEEP_LOGS:-}"

readonly HOST=127.0.0.1
readonly HERALD_CLIENT_PORTS=(26791 26792 26793)
readonly HERALD_PEER_PORTS=(26801 26802 26803)
readonly NATS_CLIENT_PORTS=(26421 26422 26423)
readonly NATS_CLUSTER_PORTS=(26431 26432 26433)
readonly MOSQUITTO_PORT=26883
readonly MAX_RUNS=20
readonly MAX_DURATION_S=3600
readonly MAX_ERROR_PERCENT=1
readonly STARTUP_TIMEOUT_S=60      # server start until it serves (a leader, a listening port)
readonly STOP_TIMEOUT_S=15         # SIGTERM until SIGKILL
readonly LOADGEN_GRACE_S=120       # setup and drain beyond warm-up + window
# Mosquitto's queue per subscriber: far above what a run leaves queued, so nothing is dropped
# silently (its default, 1000, would drop under load; a drop shows as `lost`).
readonly MOSQUITTO_MAX_QUEUED=1000000

# The operator credential the Herald nodes read and the load generator sends.
HERALD_ADMIN_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export HERALD_ADMIN_TOKEN

WORK_DIR=""
PIDS=()           # server processes of the running system
LOADGEN_PID=""
RUN_TAG=""        # "<system>-<run>": the prefix of the running system's log files
INVALID=0

# --- Parameters ----------------------------------------------------------------------------------

positive() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

validate_params() {
  positive "$PAIRS" || die "PAIRS must be a positive integer"
  positive "$WINDOW" || die "WINDOW must be a positive integer"
  positive "$BODY_BYTES" || die "BODY_BYTES must be a positive integer"
  { positive "$DURATION" && ((DURATION <= MAX_DURATION_S)); } || die "DURATION must be 1..$MAX_DURATION_S"
  [[ "$WARMUP" =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds"
  { positive "$RUNS" && ((RUNS <= MAX_RUNS)); } || die "RUNS must be 1..$MAX_RUNS"
  [[ "$GROUP_SIZE" =~ ^[0-9]+$ ]] || die "GROUP_SIZE must be 0 or a positive integer"
  positive "$GROUP_SENDERS" || die "GROUP_SENDERS must be a positive integer"
  if [[ -n "${ELECTION_TICKS:-}" ]]; then positive "$ELECTION_TICKS" || die "ELECTION_TICKS must be a positive integer"; fi
  local s
  for s in $SYSTEMS; do
    case "$s" in
      herald-1 | herald-3) [[ -x "$HERALD_BIN" ]] || die "$HERALD_BIN missing: build the herald target" ;;
      nats-1 | nats-3) require_commands nats-server ;;
      mosquitto) require_commands mosquitto ;;
      *) die "SYSTEMS may hold herald-1 herald-3 nats-1 nats-3 mosquitto (got '$s')" ;;
    esac
  done
  [[ -x "$LOADGEN_BIN" ]] || die "$LOADGEN_BIN missing: build the herald_loadgen target"
  require_commands curl python3 timeout
  [[ "${PERF_STAT:-0}" =~ ^[01]$ ]] || die "PERF_STAT must be 0 or 1"
  if [[ "${PERF_STAT:-0}" == 1 || -n "${PERF_RECORD:-}" ]]; then require_commands perf; fi
  if [[ -n "${PERF_RECORD:-}" ]]; then
    [[ "${PERF_STAT:-0}" == 0 ]] || die "PERF_STAT and PERF_RECORD are one at a time"
    mkdir -p "$PERF_RECORD" || die "cannot create $PERF_RECORD"
  fi
}

# --- Process management --------------------------------------------------------------------------

# Stops every server process of the running system: SIGTERM, then SIGKILL after STOP_TIMEOUT_S.
stop_servers() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT_S))
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  local rc=$?
  if [[ -n "$LOADGEN_PID" ]]; then
    # LOADGEN_PID is `timeout`, which passes SIGTERM on to the load generator and, with
    # --kill-after, SIGKILLs it if it lingers; SIGKILL to `timeout` itself would orphan it.
    kill -TERM "$LOADGEN_PID" 2>/dev/null || true
    wait "$LOADGEN_PID" 2>/dev/null || true
  fi
  stop_servers
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    keep_or_show_logs "$rc" "$WORK_DIR"/logs/*.log
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}

# --- Herald --------------------------------------------------------------------------------------

# start_herald NODES RUN_DIR: NODES fresh nodes; device rate and connection limits off (the
# benchmark's devices are all on one address and send far above a person's rate).
start_herald() {
  local nodes="$1" dir="$2" i peers="" serve_args=()
  require_free_ports "${HERALD_CLIENT_PORTS[@]:0:nodes}" "${HERALD_PEER_PORTS[@]:0:nodes}"
  printf '[devices]\nrequests_per_s = 0\nauths_per_s_per_address = 0\nmax_connections_per_address = 0\n' \
    >"$dir/herald.toml"
  if [[ -n "${HERALD_RAFT_LOG:-}" ]]; then
    printf '[storage]\nraft_log = "%s"\n' "$HERALD_RAFT_LOG" >>"$dir/herald.toml"
  fi
  if ((nodes > 1)); then
    for ((i = 0; i < nodes; i++)); do
      peers+="${peers:+,}$((i + 1))=$HOST:${HERALD_PEER_PORTS[i]}"
    done
    (umask 077 && head -c 32 /dev/urandom | base64 >"$dir/cluster-secret")
    serve_args+=(--peers "$peers" --cluster-secret-file "$dir/cluster-secret")
  fi
  [[ -n "${ELECTION_TICKS:-}" ]] && serve_args+=(--election-ticks "$ELECTION_TICKS")
  for ((i = 0; i < nodes; i++)); do
    local id=$((i + 1))
    mkdir -p "$dir/herald-$id"
    "$HERALD_BIN" serve --id "$id" --data "$dir/herald-$id" --config "$dir/herald.toml" \
      --client "$HOST:${HERALD_CLIENT_PORTS[i]}" --peer "$HOST:${HERALD_PEER_PORTS[i]}" \
      "${serve_args[@]}" >"$WORK_DIR/logs/$RUN_TAG-herald-$id.log" 2>&1 &
    PIDS+=("$!")
  done
}

# find_herald_leader NODES: prints the leader's client address host:port, or fails. A node
# answers GET /v1/cluster with its own "id" and the "leader" it knows of.
find_herald_leader() {
  local nodes="$1" i
  for ((i = 0; i < nodes; i++)); do
    local addr="$HOST:${HERALD_CLIENT_PORTS[i]}" body
    body="$(curl -fsS --max-time 2 -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" \
      "http://$addr/v1/cluster" 2>/dev/null)" || continue
    if python3 -c '
import json, sys
c = json.loads(sys.argv[1])
sys.exit(0 if c.get("leader") not in (None, 0) and c.get("id") == c.get("leader") else 1)
' "$body" 2>/dev/null; then
      echo "$addr"
      return 0
    fi
  done
  return 1
}

# keep_metrics SYSTEM RUN: saves each Herald node's /metrics to KEEP_METRICS.
keep_metrics() {
  local system="$1" run="$2" nodes="${1#herald-}" i
  mkdir -p "$KEEP_METRICS"
  for ((i = 0; i < nodes; i++)); do
    curl -fsS --max-time 5 -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" \
      "http://$HOST:${HERALD_CLIENT_PORTS[i]}/metrics" \
      >"$KEEP_METRICS/$system-$run-node$((i + 1)).prom" || log "no metrics from node $((i + 1))"
  done
}

# herald_target NODES RUN_DIR: starts the nodes; sets TARGET_ARGS for the load generator.
herald_target() {
  local nodes="$1" dir="$2" leader i
  start_herald "$nodes" "$dir"
  leader="$(retry_until_output "$STARTUP_TIMEOUT_S" find_herald_leader "$nodes")" ||
    die "Herald elected no leader within ${STARTUP_TIMEOUT_S}s"
  TARGET_ARGS=(--system herald --admin "$leader")
  for ((i = 0; i < nodes; i++)); do TARGET_ARGS+=(--endpoint "$HOST:${HERALD_CLIENT_PORTS[i]}"); done
}

# --- NATS JetStream ------------------------------------------------------------------------------

# nats_target NODES RUN_DIR: NODES fresh JetStream servers (a cluster when NODES > 1) with file
# storage under RUN_DIR; the load generator creates its stream with NODES replicas.
nats_target() {
  local nodes="$1" dir="$2" i routes=""
  require_free_ports "${NATS_CLIENT_PORTS[@]:0:nodes}" "${NATS_CLUSTER_PORTS[@]:0:nodes}"
  for ((i = 0; i < nodes; i++)); do routes+="${routes:+, }nats-route://$HOST:${NATS_CLUSTER_PORTS[i]}"; done
  TARGET_ARGS=(--system nats --replicas "$nodes")
  for ((i = 0; i < nodes; i++)); do
    local name="n$((i + 1))" conf="$dir/nats-n$((i + 1)).conf"
    {
      echo "server_name: $name"
      echo "listen: $HOST:${NATS_CLIENT_PORTS[i]}"
      echo "jetstream { store_dir: \"$dir/nats-$name\" }"
      if ((nodes > 1)); then
        echo "cluster { name: bench, listen: $HOST:${NATS_CLUSTER_PORTS[i]}, routes: [$routes] }"
      fi
    } >"$conf"
    nats-server -c "$conf" >"$WORK_DIR/logs/$RUN_TAG-nats-$name.log" 2>&1 &
    PIDS+=("$!")
    TARGET_ARGS+=(--endpoint "$HOST:${NATS_CLIENT_PORTS[i]}")
  done
  for ((i = 0; i < nodes; i++)); do
    retry_until "$STARTUP_TIMEOUT_S" port_in_use "${NATS_CLIENT_PORTS[i]}" ||
      die "nats-server on port ${NATS_CLIENT_PORTS[i]} did not listen within ${STARTUP_TIMEOUT_S}s"
  done
}

# --- Mosquitto -----------------------------------------------------------------------------------

# mosquitto_target RUN_DIR: a fresh broker with persistence on (snapshot at its default
# autosave interval and at exit) and anonymous clients on loopback.
mosquitto_target() {
  local dir="$1"
  require_free_ports "$MOSQUITTO_PORT"
  mkdir -p "$dir/mosquitto"
  {
    echo "listener $MOSQUITTO_PORT $HOST"
    echo "allow_anonymous true"
    echo "persistence true"
    echo "persistence_location $dir/mosquitto/"
    echo "max_queued_messages $MOSQUITTO_MAX_QUEUED"
    # As root the broker would switch to the `mosquitto` user, which cannot write the scratch dir.
    echo "user $(id -un)"
  } >"$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" >"$WORK_DIR/logs/$RUN_TAG-mosquitto.log" 2>&1 &
  PIDS+=("$!")
  retry_until "$STARTUP_TIMEOUT_S" port_in_use "$MOSQUITTO_PORT" ||
    die "mosquitto did not listen within ${STARTUP_TIMEOUT_S}s"
  TARGET_ARGS=(--system mosquitto --endpoint "$HOST:$MOSQUITTO_PORT")
}

# --- Runs ----------------------------------------------------------------------------------------

durability() {
  case "$1" in
    herald-1) echo "acknowledged = in the node's fsynced log" ;;
    herald-3) echo "acknowledged = fsynced on a quorum (2 of 3)" ;;
    nats-1) echo "file storage, R1; acknowledged = written, not fsynced (periodic sync)" ;;
    nats-3) echo "file storage, R3; acknowledged = on a quorum, not fsynced (periodic sync)" ;;
    mosquitto) echo "QoS 1, persistence on; acknowledged = in memory (snapshot every 30 min)" ;;
  esac
}

# run_once SYSTEM RUN: starts SYSTEM fresh, runs the load generator, stops the system, and
# appends the LOADGEN_RESULT line to the results file.
run_once() {
  local system="$1" run="$2" dir pid
  dir="$WORK_DIR/run-$system-$run"
  RUN_TAG="$system-$run"
  mkdir -p "$dir"
  # Dirty pages left by earlier work (a build, the previous run) would be written back while the
  # systems under test fsync; flush them first so every run starts with the disk alike.
  sync
  TARGET_ARGS=()
  case "$system" in
    herald-1) herald_target 1 "$dir" ;;
    herald-3) herald_target 3 "$dir" ;;
    nats-1) nats_target 1 "$dir" ;;
    nats-3) nats_target 3 "$dir" ;;
    mosquitto) mosquitto_target "$dir" ;;
  esac
  local load_args=(--pairs "$PAIRS" --window "$WINDOW" --body-bytes "$BODY_BYTES"
    --duration-s "$DURATION" --warmup-s "$WARMUP" --label "$system" --name-prefix "b$run")
  if ((GROUP_SIZE > 0)); then load_args+=(--group-size "$GROUP_SIZE" --group-senders "$GROUP_SENDERS"); fi
  for pid in "${PIDS[@]}"; do load_args+=(--server-pid "$pid"); done
  log "$system run $run/$RUNS: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  local out="$WORK_DIR/logs/loadgen-$system-$run.log" rc=0
  timeout --kill-after=5 "$((WARMUP + DURATION + LOADGEN_GRACE_S))" \
    "$LOADGEN_BIN" "${TARGET_ARGS[@]}" "${load_args[@]}" >"$out" 2>&1 &
  LOADGEN_PID=$!
  if [[ "${PERF_STAT:-0}" == 1 || -n "${PERF_RECORD:-}" ]]; then profile_window "$system" "$run" "$out"; fi
  wait "$LOADGEN_PID" || rc=$?
  LOADGEN_PID=""
  if [[ -n "${KEEP_METRICS:-}" && "$system" == herald-* ]]; then keep_metrics "$system" "$run"; fi
  stop_servers
  rm -rf "$dir"
  grep -v '^LOADGEN_RESULT' "$out" >&2 || true
  ((rc == 0)) || die "the load generator failed on $system (exit $rc)"
  local line
  line="$(grep '^LOADGEN_RESULT ' "$out")" || die "the load generator printed no LOADGEN_RESULT"
  if [[ "${PERF_STAT:-0}" == 1 ]]; then line+=" $(instructions_per_msg "$line")"; fi
  echo "$line"
  echo "$line" >>"$WORK_DIR/results"
}

# profile_window SYSTEM RUN LOADGEN_OUT: once the load generator starts its measured window, runs
# perf on the server processes for DURATION seconds: `perf stat` (PERF_STAT=1) into
# $WORK_DIR/perf-stat, or `perf record -g` (PERF_RECORD) into $PERF_RECORD/SYSTEM-RUN.data.
profile_window() {
  local system="$1" run="$2" out="$3" deadline=$((SECONDS + WARMUP + LOADGEN_GRACE_S)) pids
  until grep -q '^LOADGEN_WINDOW_BEGIN' "$out" 2>/dev/null; do
    kill -0 "$LOADGEN_PID" 2>/dev/null || return 0  # it failed; run_once reports why
    ((SECONDS < deadline)) || die "the load generator never began its window"
    sleep 0.05
  done
  pids="$(IFS=,; echo "${PIDS[*]}")"
  if [[ "${PERF_STAT:-0}" == 1 ]]; then
    perf stat -x, -e instructions:u,instructions:k -p "$pids" -o "$WORK_DIR/perf-stat" \
      -- sleep "$DURATION" || die "perf stat failed"
  else
    perf record -q -g -p "$pids" -o "$PERF_RECORD/$system-$run.data" -- sleep "$DURATION" \
      >/dev/null 2>&1 || die "perf record failed"
  fi
}

# instructions_per_msg LOADGEN_RESULT_LINE: the server's user and kernel instructions of the window
# (from $WORK_DIR/perf-stat) divided by the messages received in it, as two key=value fields.
instructions_per_msg() {
  python3 - "$WORK_DIR/perf-stat" "$1" "$DURATION" <<'EOF'
import sys
path, line, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
fields = dict(f.split("=", 1) for f in line.split()[1:])
msgs = float(fields["msgs_per_s"]) * duration
counts = {}
for row in open(path):
    cols = row.strip().split(",")
    if len(cols) > 2 and cols[2] in ("instructions:u", "instructions:k") and cols[0].isdigit():
        counts[cols[2]] = int(cols[0])
if len(counts) < 2 or msgs <= 0:
    # A machine without hardware counters (many virtual machines) reports "<not supported>".
    print("perf stat: no instruction counts on this machine", file=sys.stderr)
    sys.exit(0)
per = lambda k: counts[k] / msgs
print(f"instr_u_per_msg={per('instructions:u'):.0f} instr_k_per_msg={per('instructions:k'):.0f}")
EOF
}

# Prints the table of medians per system, with each system's durability; sets INVALID when a
# run's errors plus losses exceed MAX_ERROR_PERCENT of its acknowledged sends.
print_table() {
  local durabilities="" s
  for s in $SYSTEMS; do durabilities+="$s=$(durability "$s")"$'\n'; done
  python3 - "$WORK_DIR/results" "$MAX_ERROR_PERCENT" "$DURATION" "$durabilities" <<'EOF' || INVALID=1
import statistics, sys
path, max_error_percent, duration, durabilities = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
durability = dict(l.split("=", 1) for l in durabilities.splitlines() if l)
runs = {}
for line in open(path):
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    runs.setdefault(fields["label"], []).append(fields)
def med(rs, key):
    return statistics.median(float(r[key]) for r in rs)
invalid = False
print()
print("| system | runs | sends/s | messages/s | p50 / p99 / p999 ms | server CPU µs/msg | server RSS MiB | errors | lost | durability |")
print("|---|---|---|---|---|---|---|---|---|---|")
for label, rs in runs.items():
    bad = [r for r in rs if (int(r["errors"]) + int(r["lost"])) * 100 >
           max_error_percent * max(1.0, float(r["sends_per_s"]) * duration)]
    invalid = invalid or bool(bad)
    status = f" (INVALID: {len(bad)} runs over {max_error_percent:g}% errors)" if bad else ""
    print(f"| {label}{status} | {len(rs)} | {med(rs, 'sends_per_s'):,.0f} | {med(rs, 'msgs_per_s'):,.0f} | "
          f"{med(rs, 'p50_ms'):.1f} / {med(rs, 'p99_ms'):.1f} / {med(rs, 'p999_ms'):.1f} | "
          f"{med(rs, 'server_cpu_us_per_msg'):.0f} | {med(rs, 'server_rss_mib'):.0f} | "
          f"{sum(int(r['errors']) for r in rs)} | {sum(int(r['lost']) for r in rs)} | "
          f"{durability.get(label, '')} |")
if any("instr_u_per_msg" in r for rs in runs.values() for r in rs):
    print()
    print("| system | runs | server instructions per message, user / kernel |")
    print("|---|---|---|")
    for label, rs in runs.items():
        rs = [r for r in rs if "instr_u_per_msg" in r]
        if rs:
            print(f"| {label} | {len(rs)} | {med(rs, 'instr_u_per_msg'):,.0f} / {med(rs, 'instr_k_per_msg'):,.0f} |")
sys.exit(1 if invalid else 0)
EOF
}

main() {
  validate_params
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-messaging.XXXXXX")"
  mkdir -p "$WORK_DIR/logs"
  : >"$WORK_DIR/results"
  log "scratch $WORK_DIR ($(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }')); $(nproc) cores;" \
    "$(uname -r); nats-server $(nats-server --version 2>/dev/null | awk '{print $2}' || echo absent);" \
    "mosquitto $({ mosquitto -h 2>/dev/null || true; } | awk 'NR == 1 {print $3}')"
  log "pairs $PAIRS, window $WINDOW, body $BODY_BYTES B, warm-up ${WARMUP}s, window ${DURATION}s," \
    "$RUNS runs, group size $GROUP_SIZE (senders $GROUP_SENDERS)"
  local system run
  for system in $SYSTEMS; do
    for ((run = 1; run <= RUNS; run++)); do
      run_once "$system" "$run"
    done
  done
  print_table
  ((INVALID == 0)) || die "errors or losses above ${MAX_ERROR_PERCENT}% in some run: results invalid"
}

main "$@"
