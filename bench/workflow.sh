#!/usr/bin/env bash
# Durable workflow transitions per second and their latency: Herald on one node and on three,
# against the same workflow done by hand in PostgreSQL (one transaction per transition, fsync
# on). See docs/benchmarks.md, "Durable workflow transitions", for what is measured.
# The work is done by bench/workflow.py (standard-library Python, wrk, pgbench); this script
# checks the environment, owns the scratch directory and cleans up.
#
# Usage: bench/workflow.sh            (from the repository root or anywhere)
# Environment:
#   DURATION    seconds per measured run (default 15, at most 600)
#   CONNS       client connections, the same for every system (default 64)
#   THREADS     wrk threads and pgbench threads (default 2)
#   K           long-lived workflows the signals go to (default 1000)
#   SYSTEMS     runs, in order (default "herald1 herald3 pg")
#   MODES       Herald loads (default "signal start"; the PostgreSQL run is the signal load)
#   HERALD_BIN  Herald binary (default build/herald)
#   BENCH_TMP   parent of the scratch directory (default $TMPDIR or /tmp)
#   KEEP_LOGS   directory to copy node logs and wrk/pgbench output to before cleanup
#
# Output: one line per run, a table and a final machine-parsable line
#   WORKFLOW_RESULT conns=.. k=.. duration_s=.. <run>_tps=.. <run>_p50_ms=.. <run>_p99_ms=..
#   <run>_x_pg=.. ok=0|1
# Bounds: only 127.0.0.1; the helper runs under `timeout`; every wait in it has a deadline.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=workflow
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION="${DURATION:-15}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
K="${K:-1000}"
SYSTEMS="${SYSTEMS:-herald1 herald3 pg}"
MODES="${MODES:-signal start}"
HERALD_BIN="${HERALD_BIN:-$REPO_DIR/build/herald}"
KEEP_LOGS="${KEEP_LOGS:-}"

readonly HOST=127.0.0.1
readonly BASE_PORT=27791   # Herald client ports 27791.., peer ports 27801..
readonly PG_PORT=27432
readonly FIXED_BUDGET_S=600

WORK_DIR=""
HELPER_PID=""


validate_params() {
  { [[ "$DURATION" =~ ^[1-9][0-9]*$ ]] && ((DURATION <= 600)); } || die "DURATION must be 1..600 seconds"
  { [[ "$CONNS" =~ ^[1-9][0-9]*$ ]] && ((CONNS <= 1000)); } || die "CONNS must be 1..1000"
  { [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] && ((THREADS <= CONNS)); } || die "THREADS must be 1..CONNS"
  { [[ "$K" =~ ^[1-9][0-9]*$ ]] && ((K <= 1000000)); } || die "K must be 1..1000000"
  local s m
  for s in $SYSTEMS; do
    [[ "$s" == herald1 || "$s" == herald3 || "$s" == pg ]] || die "SYSTEMS may hold herald1 herald3 pg"
  done
  for m in $MODES; do
    [[ "$m" == signal || "$m" == start ]] || die "MODES may hold signal start"
  done
  [[ -x "$HERALD_BIN" ]] || die "Herald binary $HERALD_BIN missing: build it first"
  require_commands python3 timeout wrk
  if [[ " $SYSTEMS " == *" pg "* ]]; then
    command -v pgbench >/dev/null || die "pgbench missing: bash scripts/install-deps.sh --bench"
    if ((EUID == 0)); then
      id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (PostgreSQL refuses root)"
    fi
  fi
}


pg_ctl_bin() {
  if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
    echo /usr/lib/postgresql/15/bin/pg_ctl
  else
    command -v pg_ctl
  fi
}

# Stops the helper, the nodes it started (pid files naming our data dir) and the private
# PostgreSQL cluster.
cleanup() {
  local rc=$?
  stop_helper
  if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
    kill_run_processes "$WORK_DIR" "$WORK_DIR"/*.pid
    if [[ -f "$WORK_DIR/pg.started" ]]; then
      local ctl
      ctl="$(pg_ctl_bin)"
      if ((EUID == 0)); then
        timeout 60 runuser -u postgres -- "$ctl" -D "$WORK_DIR/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
      else
        timeout 60 "$ctl" -D "$WORK_DIR/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
      fi
    fi
    keep_or_show_logs "$rc" "$WORK_DIR"/*.log "$WORK_DIR"/*.out "$WORK_DIR/pg/pg.log"
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}

main() {
  validate_params
  local p
  for p in "$BASE_PORT" $((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 10)) \
    $((BASE_PORT + 11)) $((BASE_PORT + 12)) "$PG_PORT"; do
    if port_in_use "$p"; then
      die "port $p on $HOST is already in use"
    fi
  done
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/herald-workflow.XXXXXX")"
  chmod 755 "$WORK_DIR"
  log "systems: $SYSTEMS; modes: $MODES; $CONNS connections, ${DURATION}s per run, K=$K;" \
    "scratch on $(df -T "$WORK_DIR" | awk 'NR == 2 { print $2 }'); load average before:" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
  local n_systems n_modes
  n_systems="$(wc -w <<<"$SYSTEMS")"
  n_modes="$(wc -w <<<"$MODES")"
  local budget=$((FIXED_BUDGET_S + n_systems * (n_modes + 1) * (DURATION + 120)))
  local rc=0
  timeout --kill-after=10 "$budget" python3 -u "$SCRIPT_DIR/workflow.py" \
    --binary "$HERALD_BIN" --work-dir "$WORK_DIR" --systems "$SYSTEMS" --modes "$MODES" \
    --duration "$DURATION" --conns "$CONNS" --threads "$THREADS" --k "$K" \
    --base-port "$BASE_PORT" --pg-port "$PG_PORT" &
  HELPER_PID=$!
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  ((rc == 0)) || die "workflow benchmark failed (exit $rc)"
}

main "$@"
