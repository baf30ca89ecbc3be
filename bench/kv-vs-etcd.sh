#!/usr/bin/env bash
# Compares replicated write throughput and latency of a 3-node Herald cluster and a 3-member etcd
# cluster on this machine. Each system is started fresh (default durability: fsync on), its
# leader is found, and wrk sends single-key 64-byte writes straight to the leader at each
# connection count; the systems run one after the other, never at the same time.
#
# Usage: bench/kv-vs-etcd.sh            (from the repository root or anywhere)
# Environment:
#   DURATION  wrk duration per run, e.g. 20s or 1m (default 20s, at most 10m)
#   CONNS     space-separated connection counts (default "64 256")
#   THREADS   wrk threads (default 2)
#   SYSTEMS   which systems to run, in order (default "etcd herald")
#   HERALD_BIN  Herald binary (default build/herald)
#   HERALD_RAFT_LOG  Herald's [storage] raft_log: rocksdb or segments (default: Herald's own)
#   BENCH_TMP   parent of the scratch directory holding data and logs (default $TMPDIR or /tmp)
#
# Output: a table of system, connections, writes/s, p50 ms, p99 ms, the CPU per request of the
# servers and of the client (wrk), and Herald/etcd ratios. Both wrk scripts build every request
# before the run (bench/wrk/common.lua), so the client does the same work per request for both.
# A run where more than MAX_ERROR_PERCENT of the requests failed (non-2xx or socket error) is
# invalid: it is marked so in the table and the script exits non-zero.
# Bounds: only loopback addresses; every wait has a deadline; wrk runs under `timeout`.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR

DURATION="${DURATION:-20s}"
CONNS="${CONNS:-64 256}"
THREADS="${THREADS:-2}"
SYSTEMS="${SYSTEMS:-etcd herald}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"

readonly HOST=127.0.0.1
readonly ETCD_CLIENT_PORTS=(23791 23792 23793)
readonly ETCD_PEER_PORTS=(23801 23802 23803)
readonly HERALD_CLIENT_PORTS=(24791 24792 24793)
readonly HERALD_PEER_PORTS=(24801 24802 24803)
readonly MAX_ERROR_PERCENT=1
readonly MAX_DURATION_S=600        # longest accepted DURATION
readonly MAX_CONNS=4096            # largest accepted connection count
readonly STARTUP_TIMEOUT_S=60      # cluster start until a leader is known
readonly STOP_TIMEOUT_S=15         # SIGTERM until SIGKILL
readonly WRK_GRACE_S=30            # wrk may run this much longer than DURATION
readonly WRK_REQUEST_TIMEOUT=10s   # a request slower than this counts as a socket error

export ETCDCTL_API=3
# The operator credential the Herald nodes inherit and wrk (bench/wrk/common.lua) and curl send.
HERALD_ADMIN_TOKEN="${HERALD_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
export HERALD_ADMIN_TOKEN

WORK_DIR=""
PIDS=()              # processes of the running cluster, started by this script
declare -A RPS P50 P99 STATUS REQUESTS SERVER_CPU_MS CLIENT_CPU_MS
CLOCK_TICKS="$(getconf CLK_TCK)"
INVALID=0

BENCH_TAG=kv-vs-etcd
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

# --- Parameters ----------------------------------------------------------------------------------

# Prints DURATION in seconds; accepts N, Ns, Nm.
duration_seconds() {
  local d="$1"
  case "$d" in
    *[0-9]s) echo "${d%s}" ;;
    *[0-9]m) echo $((${d%m} * 60)) ;;
    *[0-9]) echo "$d" ;;
    *) die "DURATION must look like 20s, 2m or 20 (got '$d')" ;;
  esac
}

validate_params() {
  [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
  DURATION_S="$(duration_seconds "$DURATION")"
  [[ "$DURATION_S" =~ ^[0-9]+$ ]] || die "DURATION must look like 20s, 2m or 20"
  ((DURATION_S >= 1 && DURATION_S <= MAX_DURATION_S)) || die "DURATION must be 1s..${MAX_DURATION_S}s"
  local c
  for c in $CONNS; do
    [[ "$c" =~ ^[1-9][0-9]*$ ]] || die "CONNS entries must be positive integers (got '$c')"
    ((c <= MAX_CONNS)) || die "at most $MAX_CONNS connections"
    ((c >= THREADS)) || die "each CONNS entry must be >= THREADS ($THREADS)"
  done
  local s
  for s in $SYSTEMS; do
    [[ "$s" == etcd || "$s" == herald ]] || die "SYSTEMS may hold etcd and herald (got '$s')"
  done
  require_commands wrk python3
}

# --- Process management --------------------------------------------------------------------------

# Stops every process of the running cluster: SIGTERM, then SIGKILL after STOP_TIMEOUT_S.
stop_cluster() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT_S))
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  local rc=$?
  stop_cluster
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    if ((rc != 0)); then
      local f
      for f in "$WORK_DIR"/*.log; do
        [[ -s "$f" ]] || continue
        log "last lines of $(basename "$f"):"
        tail -n 5 "$f" >&2
      done
    fi
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}

# --- etcd ----------------------------------------------------------------------------------------

etcd_endpoints() {
  local p list=""
  for p in "${ETCD_CLIENT_PORTS[@]}"; do
    list+="${list:+,}http://$HOST:$p"
  done
  echo "$list"
}

start_etcd_cluster() {
  command -v etcd >/dev/null || die "etcd missing: bash scripts/install-deps.sh --bench"
  require_free_ports "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
  local i initial_cluster=""
  for i in 0 1 2; do
    initial_cluster+="${initial_cluster:+,}m$((i + 1))=http://$HOST:${ETCD_PEER_PORTS[i]}"
  done
  for i in 0 1 2; do
    local name="m$((i + 1))" cport="${ETCD_CLIENT_PORTS[i]}" pport="${ETCD_PEER_PORTS[i]}"
    etcd --name "$name" --data-dir "$WORK_DIR/etcd-$name" \
      --listen-client-urls "http://$HOST:$cport" --advertise-client-urls "http://$HOST:$cport" \
      --listen-peer-urls "http://$HOST:$pport" --initial-advertise-peer-urls "http://$HOST:$pport" \
      --initial-cluster "$initial_cluster" --initial-cluster-state new \
      --initial-cluster-token herald-bench --logger=zap --log-level=error \
      >"$WORK_DIR/etcd-$name.log" 2>&1 &
    PIDS+=("$!")
  done
  retry_until "$STARTUP_TIMEOUT_S" etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=2s \
    endpoint health >/dev/null 2>&1 || die "etcd cluster not healthy after ${STARTUP_TIMEOUT_S}s"
}

# Prints the client URL of the etcd leader, or fails.
find_etcd_leader() {
  local status
  status="$(etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=2s endpoint status -w json)" ||
    return 1
  python3 -c '
import json, sys
for member in json.loads(sys.argv[1]):
    s = member["Status"]
    if s["leader"] != 0 and s["header"]["member_id"] == s["leader"]:
        print(member["Endpoint"])
        sys.exit(0)
sys.exit(1)
' "$status"
}

# Checks that the benchmark's writes landed: keys bench-<n> holding 64-byte values. A range read
# with limit 1 still reports in "count" how many keys the whole range holds.
verify_etcd_writes() {
  local leader="$1" summary
  summary="$(etcdctl --endpoints="$leader" --command-timeout=10s get bench- --prefix --limit 1 \
    -w json | python3 -c '
import base64, json, re, sys
r = json.load(sys.stdin)
kvs = r.get("kvs") or []
if not kvs:
    sys.exit("etcd holds no bench- keys after the run")
key = base64.b64decode(kvs[0]["key"]).decode()
value = base64.b64decode(kvs[0].get("value", ""))
if not re.fullmatch(r"bench-[0-9]+", key) or len(value) != 64:
    sys.exit(f"etcd key {key!r} with a {len(value)}-byte value is not what the benchmark writes")
count = r.get("count", 0)
print(f"{count} distinct bench- keys, e.g. {key} with a {len(value)}-byte value")
')" || die "etcd data check failed"
  log "etcd holds $summary"
}

# --- Herald --------------------------------------------------------------------------------------

herald_peers() {
  local i list=""
  for i in 0 1 2; do
    list+="${list:+,}$((i + 1))=$HOST:${HERALD_PEER_PORTS[i]}"
  done
  echo "$list"
}

start_herald_cluster() {
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  require_free_ports "${HERALD_CLIENT_PORTS[@]}" "${HERALD_PEER_PORTS[@]}"
  local i peers secret="$WORK_DIR/cluster-secret"
  peers="$(herald_peers)"
  (umask 077 && head -c 32 /dev/urandom | base64 >"$secret")
  local config_args=()
  if [[ -n "${HERALD_RAFT_LOG:-}" ]]; then
    printf '[storage]\nraft_log = "%s"\n' "$HERALD_RAFT_LOG" >"$WORK_DIR/herald.toml"
    config_args=(--config "$WORK_DIR/herald.toml")
  fi
  for i in 0 1 2; do
    local id=$((i + 1))
    mkdir -p "$WORK_DIR/herald-$id"
    "$HERALD_BIN" serve --id "$id" --data "$WORK_DIR/herald-$id" "${config_args[@]}" \
      --client "$HOST:${HERALD_CLIENT_PORTS[i]}" --peer "$HOST:${HERALD_PEER_PORTS[i]}" \
      --peers "$peers" --cluster-secret-file "$secret" >"$WORK_DIR/herald-$id.log" 2>&1 &
    PIDS+=("$!")
  done
}

# Prints the client URL of the Herald leader, or fails. A node answers GET /v1/cluster with JSON
# holding its own "id" and the "leader" id it knows of; the leader is the node where they match.
find_herald_leader() {
  local i
  for i in 0 1 2; do
    local url="http://$HOST:${HERALD_CLIENT_PORTS[i]}" body
    body="$(curl -fsS --max-time 2 -H "Authorization: Bearer $HERALD_ADMIN_TOKEN" "$url/v1/cluster" 2>/dev/null)" || continue
    if python3 -c '
import json, sys
c = json.loads(sys.argv[1])
sys.exit(0 if c.get("leader") not in (None, 0) and c.get("id") == c.get("leader") else 1)
' "$body" 2>/dev/null; then
      echo "$url"
      return 0
    fi
  done
  return 1
}

# --- Load ----------------------------------------------------------------------------------------

# run_wrk SYSTEM TARGET_URL CONNECTIONS: one wrk run; records its figures under SYSTEM:CONNECTIONS.
run_wrk() {
  local system="$1" target="$2" conns="$3"
  local out="$WORK_DIR/wrk-$system-$conns.out"
  log "$system: $conns connections, $THREADS threads, $DURATION against $target"
  local server_before client_before
  server_before="$(cluster_cpu_ms)"
  children_cpu_ms client_before
  if ! timeout --kill-after=5 "$((DURATION_S + WRK_GRACE_S))" \
    wrk -t "$THREADS" -c "$conns" -d "${DURATION_S}s" --timeout "$WRK_REQUEST_TIMEOUT" \
    -s "$SCRIPT_DIR/wrk/$system-put.lua" "$target" >"$out" 2>&1; then
    cat "$out" >&2
    die "wrk failed for $system at $conns connections"
  fi
  local line
  line="$(grep '^WRK_RESULT ' "$out")" || {
    cat "$out" >&2
    die "wrk printed no WRK_RESULT line"
  }
  SERVER_CPU_MS["$system:$conns"]=$(($(cluster_cpu_ms) - server_before))
  local client_after
  children_cpu_ms client_after
  CLIENT_CPU_MS["$system:$conns"]=$((client_after - client_before))
  record_result "$system" "$conns" "$line"
}

# Prints the CPU time (user + system, ms) the running cluster's processes have used so far.
cluster_cpu_ms() {
  local pid total_ticks=0 fields
  for pid in "${PIDS[@]}"; do
    # Fields 14 and 15 of /proc/PID/stat (utime, stime) in clock ticks; the command name (field 2)
    # may hold spaces, so count from the closing parenthesis.
    fields="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
    total_ticks=$((total_ticks + $(awk '{ print $12 + $13 }' <<<"$fields")))
  done
  echo $((total_ticks * 1000 / CLOCK_TICKS))
}

# children_cpu_ms VAR: sets VAR to the CPU time (user + system, ms) of this shell's finished
# children (wrk among them). `times` runs in this shell, not in a command substitution, whose
# subshell has children of its own.
children_cpu_ms() {
  times >"$WORK_DIR/times"
  printf -v "$1" '%s' "$(awk 'NR == 2 {
    split($1, u, /[ms]/); split($2, s, /[ms]/)
    printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' "$WORK_DIR/times")"
}

# Parses a WRK_RESULT line into the result tables and checks its error rate.
record_result() {
  local system="$1" conns="$2" line="$3" field
  local requests=0 rps=0 p50_ms=0 p99_ms=0 non2xx=0 socket_errors=0
  for field in ${line#WRK_RESULT }; do
    case "${field%%=*}" in
      requests) requests="${field#*=}" ;;
      rps) rps="${field#*=}" ;;
      p50_ms) p50_ms="${field#*=}" ;;
      p99_ms) p99_ms="${field#*=}" ;;
      non2xx) non2xx="${field#*=}" ;;
      socket_errors) socket_errors="${field#*=}" ;;
    esac
  done
  local key="$system:$conns" errors=$((non2xx + socket_errors))
  REQUESTS[$key]="$requests"
  RPS[$key]="$rps" P50[$key]="$p50_ms" P99[$key]="$p99_ms" STATUS[$key]="ok"
  log "$system @ $conns: $rps writes/s, p50 $p50_ms ms, p99 $p99_ms ms," \
    "$non2xx non-2xx, $socket_errors socket errors of $requests requests"
  if ((requests == 0 || errors * 100 > requests * MAX_ERROR_PERCENT)); then
    STATUS[$key]="INVALID ($errors errors / $requests requests)"
    INVALID=1
  fi
}

# bench_system SYSTEM: starts the cluster, finds its leader, runs every connection count, checks
# the data where a verify_SYSTEM_writes function exists, and stops the cluster.
bench_system() {
  local system="$1" leader conns
  log "starting $system cluster"
  "start_${system}_cluster"
  leader="$(retry_until_output "$STARTUP_TIMEOUT_S" "find_${system}_leader")" ||
    die "$system elected no leader within ${STARTUP_TIMEOUT_S}s"
  log "$system leader: $leader"
  for conns in $CONNS; do
    run_wrk "$system" "$leader" "$conns"
  done
  if declare -F "verify_${system}_writes" >/dev/null; then
    "verify_${system}_writes" "$leader"
  fi
  stop_cluster
}

# --- Report --------------------------------------------------------------------------------------

# per_request CPU_MS REQUESTS: microseconds of CPU per request, one decimal.
per_request() {
  awk -v ms="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", ms * 1000 / n; else print "n/a" }'
}

print_table() {
  local system conns key
  # Server and client CPU per request: the cluster's processes and wrk, over the whole wrk run
  # (its connection set-up included), divided by the requests answered.
  printf '\n%-8s %6s %12s %10s %10s %14s %14s  %s\n' system conns writes/s "p50 ms" "p99 ms" \
    "server us/req" "client us/req" status
  for system in $SYSTEMS; do
    for conns in $CONNS; do
      key="$system:$conns"
      [[ -n "${RPS[$key]:-}" ]] || continue
      printf '%-8s %6s %12s %10s %10s %14s %14s  %s\n' "$system" "$conns" "${RPS[$key]}" \
        "${P50[$key]}" "${P99[$key]}" "$(per_request "${SERVER_CPU_MS[$key]}" "${REQUESTS[$key]}")" \
        "$(per_request "${CLIENT_CPU_MS[$key]}" "${REQUESTS[$key]}")" "${STATUS[$key]}"
    done
  done
  for conns in $CONNS; do
    [[ -n "${RPS[herald:$conns]:-}" && -n "${RPS[etcd:$conns]:-}" ]] || continue
    awk -v c="$conns" -v hr="${RPS[herald:$conns]}" -v er="${RPS[etcd:$conns]}" \
      -v h50="${P50[herald:$conns]}" -v e50="${P50[etcd:$conns]}" \
      -v h99="${P99[herald:$conns]}" -v e99="${P99[etcd:$conns]}" \
      'function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "n/a" }
       BEGIN { printf "herald/etcd @ %s conns: writes/s x%s, p50 x%s, p99 x%s\n",
               c, ratio(hr, er), ratio(h50, e50), ratio(h99, e99) }'
  done
}

main() {
  validate_params
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/kv-vs-etcd.XXXXXX")"
  log "scratch directory $WORK_DIR ($(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }'))"
  local system
  for system in $SYSTEMS; do
    bench_system "$system"
  done
  print_table
  if ((INVALID)); then
    die "more than ${MAX_ERROR_PERCENT}% of the requests failed in some run: results invalid"
  fi
}

main "$@"
