#!/usr/bin/env bash
# Installs the Debian bookworm packages CARE-MLA builds, tests and runs with.
# Idempotent: packages already present are skipped; apt runs only when needed.
# Usage: scripts/install-deps.sh [--runtime-only]
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  clang clang-format clang-tidy libclang-rt-14-dev
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libeigen3-dev libsqlite3-dev sqlite3 prometheus-cpp-dev
  nlohmann-json3-dev libcurl4-openssl-dev libsentencepiece-dev libutf8proc-dev
  libyaml-cpp-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-yaml python3-numpy prometheus
  chromium fonts-dejavu-core  # tests: the HTML report in a real browser
)

missing=()
for p in "${build_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#build_pkgs[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
