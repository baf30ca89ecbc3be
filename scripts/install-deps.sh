#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking Herald needs.
# Idempotent: packages already present are skipped, and apt is only consulted when one is missing.
# Usage: scripts/install-deps.sh [--bench] [--fuzz] [--browser]
# --browser: Debian's chromium, node and npm when missing, then the npm packages of the node-run
# tests, each folder's as its package-lock.json pins them: tests/browser/ (playwright-core, for the
# dashboard and web chat tests) and clients/js/ (ws and typescript, for the JavaScript client's).
# A folder whose node_modules already holds the pinned versions is left alone.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config ccache
  librocksdb-dev
  libboost1.81-dev libboost-json1.81-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libcli11-dev libtomlplusplus-dev
  libssl-dev libcurl4-openssl-dev libnghttp2-dev
  libjemalloc-dev  # the server's allocator (HERALD_JEMALLOC)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy
  curl python3
  python3-websockets  # the chaos test's device clients (tests/chaos_test.py)
  file dpkg-dev
)
bench_packages=(wrk etcd-server etcd-client postgresql nats-server libnats-dev mosquitto libmosquitto-dev gnuplot-nox)
# libFuzzer and the sanitizer runtimes (scripts/fuzz.sh).
fuzz_packages=(clang-14 libclang-rt-14-dev)

# The dashboard's browser test (tests/browser/): Chromium, driven by playwright-core from npm.
browser_packages=(chromium)

wanted=("${build_packages[@]}")
browser=0
for option in "$@"; do
  case "$option" in
    --bench) wanted+=("${bench_packages[@]}") ;;
    --fuzz) wanted+=("${fuzz_packages[@]}") ;;
    --browser)
      browser=1
      wanted+=("${browser_packages[@]}")
      # node and npm may come from another package source; ask Debian only when they are absent.
      command -v node >/dev/null || wanted+=(nodejs)
      command -v npm >/dev/null || wanted+=(npm)
      ;;
    *) echo "install-deps: unknown option $option" >&2; exit 2 ;;
  esac
done

# Whether $1/node_modules holds every package at the version $1/package-lock.json pins (an
# optional one may be absent).
npm_modules_current() {
  node -e '
    const fs = require("fs");
    const path = require("path");
    const dir = process.argv[1];
    const lock = JSON.parse(fs.readFileSync(path.join(dir, "package-lock.json"), "utf8"));
    for (const [where, entry] of Object.entries(lock.packages)) {
      if (where === "") continue;
      let version = null;
      try {
        version = JSON.parse(fs.readFileSync(path.join(dir, where, "package.json"), "utf8")).version;
      } catch {}
      if (version !== entry.version && !(entry.optional && version === null)) process.exit(1);
    }' "$1"
}

# The npm packages of the node-run tests, as each folder's package-lock.json pins them.
install_node_modules() {
  local root dir
  root="$(cd "$(dirname "$0")/.." && pwd)"
  for dir in tests/browser clients/js; do
    if ! npm_modules_current "$root/$dir"; then
      echo "install-deps: npm ci in $dir"
      (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
}

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  if ((browser)); then install_node_modules; fi
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
if ((browser)); then install_node_modules; fi
