#!/usr/bin/env bash
# Runs clang-tidy (config: .clang-tidy) over every C++ source, using build/compile_commands.json;
# the fuzz targets (fuzz/) use build-fuzz/compile_commands.json and are checked when scripts/fuzz.sh
# has configured it. A file whose compile command and included text are unchanged since a clean
# run is skipped (scripts/tidy_cached.py; HERALD_TIDY_NO_CACHE=1 checks every file).
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
main_files=()
test_files=()
fuzz_files=()
for f in "${files[@]}"; do
  if [[ "$f" == fuzz/* ]]; then
    fuzz_files+=("$f")
  elif [[ "$f" == *_test.cc || "$f" == tests/* ]]; then
    test_files+=("$f")
  else
    main_files+=("$f")
  fi
done
if ((${#main_files[@]} > 0)); then
  python3 scripts/tidy_cached.py build -- "${main_files[@]}"
fi
# Tests get every check but the static analyzer (clang-analyzer-*), which costs most of the
# time and finds its defects in the code under test, checked above.
if ((${#test_files[@]} > 0)); then
  python3 scripts/tidy_cached.py build --checks='-clang-analyzer-*' -- "${test_files[@]}"
fi
if ((${#fuzz_files[@]} > 0)); then
  if [[ -f build-fuzz/compile_commands.json ]]; then
    python3 scripts/tidy_cached.py build-fuzz -- "${fuzz_files[@]}"
  else
    echo "tidy: fuzz/ skipped (run scripts/fuzz.sh first to configure build-fuzz)"
    fuzz_files=()
  fi
fi
echo "tidy: clang-tidy clean ($((${#main_files[@]} + ${#test_files[@]} + ${#fuzz_files[@]})) files)"
