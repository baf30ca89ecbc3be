#!/usr/bin/env bash
# Runs clang-tidy (config: .clang-tidy) over every C++ source, using build/compile_commands.json.
# Slower than the format check, so it is a separate command: bash scripts/tidy.sh [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f build/compile_commands.json ]]; then
  bash scripts/build.sh
fi
if (($# > 0)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.cc')
fi
jobs="${JOBS:-$(nproc)}"
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -n 4 clang-tidy -p build --quiet
echo "tidy: clang-tidy clean (${#files[@]} files)"
