#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking Herald needs.
# Idempotent: packages already present are skipped, and apt is only consulted when one is missing.
# Usage: scripts/install-deps.sh [--bench | --fuzz]
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
  file dpkg-dev
)
bench_packages=(wrk etcd-server etcd-client postgresql nats-server libnats-dev mosquitto libmosquitto-dev)
# libFuzzer and the sanitizer runtimes (scripts/fuzz.sh).
fuzz_packages=(clang-14 libclang-rt-14-dev)

wanted=("${build_packages[@]}")
case "${1:-}" in
  --bench) wanted+=("${bench_packages[@]}") ;;
  --fuzz) wanted+=("${fuzz_packages[@]}") ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
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
