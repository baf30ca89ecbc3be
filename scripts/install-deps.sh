#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking Herald needs.
# Idempotent: packages already present are skipped, and apt is only consulted when one is missing.
# Usage: scripts/install-deps.sh [--bench] [--fuzz] [--browser]
# --browser: Debian's chromium, node and npm when missing, then the dashboard test's npm packages
# (tests/browser/package-lock.json: playwright-core) into tests/browser/node_modules.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config ccache
  librocksdb-dev
  libboost1.81-dev libboost-json1.81-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libcli11-dev libtomlplusplus-dev
  libssl-dev libcurl4-openssl-dev libnghttp2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy
  curl python3
  python3-websockets  # the chaos test's device clients (tests/chaos_test.py)
  file dpkg-dev
)
bench_packages=(wrk etcd-server etcd-client postgresql nats-server libnats-dev mosquitto libmosquitto-dev)
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

# The browser test's npm packages, pinned by tests/browser/package-lock.json.
install_browser_modules() {
  local dir
  dir="$(dirname "$0")/../tests/browser"
  if [[ ! -d "$dir/node_modules/playwright-core" ]]; then
    echo "install-deps: npm ci in tests/browser"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  if ((browser)); then install_browser_modules; fi
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
if ((browser)); then install_browser_modules; fi
