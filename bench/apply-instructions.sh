#!/usr/bin/env bash
# Instructions the production apply path executes per delivered message, counted by Valgrind's
# callgrind on build/herald_write_profile (sim/write_profile.h): deterministic, so a change's cost
# or saving shows without a quiet machine. Two runs differ only in their number of messages; the
# difference of their instruction totals, divided by the difference of their messages, is the
# cost per message without the start-up and set-up. It includes the driver's own work (building
# and proposing the commands, counting the writes) and the in-memory engine standing in for
# RocksDB, so it is compared across commits, not with a server's CPU time.
#
# Usage: bench/apply-instructions.sh
# Environment:
#   ROUND_MESSAGES  messages whose sends (then acknowledgements) share a round (default 16)
#   FEW, MANY       messages of the two runs (default 64 and 576); MANY > FEW, both multiples of
#                   ROUND_MESSAGES
#   PROFILE_BIN     the profile binary (default build/herald_write_profile)
#   EXTRA_ARGS      more arguments for it (e.g. --push-path)
#   KEEP_PROFILE    a file to copy the larger run's callgrind profile to (callgrind_annotate reads
#                   it; default: none)
# Output: one line, "instructions per message: N (ROUND_MESSAGES per round, args ...)".
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_DIR
BENCH_TAG=apply-instructions
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

ROUND_MESSAGES="${ROUND_MESSAGES:-16}"
FEW="${FEW:-64}"
MANY="${MANY:-576}"
PROFILE_BIN="${PROFILE_BIN:-$REPO_DIR/build/herald_write_profile}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
KEEP_PROFILE="${KEEP_PROFILE:-}"

[[ -x "$PROFILE_BIN" ]] || die "$PROFILE_BIN missing: build the herald_write_profile target"
require_commands valgrind
for n in "$ROUND_MESSAGES" "$FEW" "$MANY"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "ROUND_MESSAGES, FEW and MANY must be positive integers"
done
((MANY > FEW && FEW % ROUND_MESSAGES == 0 && MANY % ROUND_MESSAGES == 0)) ||
  die "MANY must exceed FEW, both multiples of ROUND_MESSAGES"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/herald-apply-instructions.XXXXXX")"
trap 'rm -rf "$WORK_DIR"' EXIT

# total_instructions MESSAGES: the instruction total of one profile run of MESSAGES messages.
total_instructions() {
  local out="$WORK_DIR/callgrind-$1.out"
  # shellcheck disable=SC2086 # EXTRA_ARGS is a list of arguments
  valgrind --tool=callgrind --callgrind-out-file="$out" "$PROFILE_BIN" --messages "$1" \
    --round-messages "$ROUND_MESSAGES" $EXTRA_ARGS >/dev/null 2>"$WORK_DIR/valgrind-$1.log" ||
    die "the profile run of $1 messages failed (see valgrind's log)"
  awk '/^totals:/ { print $2 }' "$out"
}

few="$(total_instructions "$FEW")"
many="$(total_instructions "$MANY")"
if [[ -n "$KEEP_PROFILE" ]]; then cp "$WORK_DIR/callgrind-$MANY.out" "$KEEP_PROFILE"; fi
echo "instructions per message: $(((many - few) / (MANY - FEW))) ($ROUND_MESSAGES per round," \
  "args: ${EXTRA_ARGS:-none})"
