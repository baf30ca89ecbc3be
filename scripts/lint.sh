#!/usr/bin/env bash
# Checks that every C++ file is clang-format clean. (clang-tidy: scripts/tidy.sh, slower.)
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc')
if ((${#files[@]} == 0)); then
  exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "lint: clang-format found unformatted files; run: clang-format -i \$(git ls-files '*.h' '*.cc')" >&2
  exit 1
fi
echo "lint: clang-format clean (${#files[@]} files)"
