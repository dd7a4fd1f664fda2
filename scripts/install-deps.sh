#!/usr/bin/env bash
# Installs, with apt-get, every Debian 12 package that building and testing Kronop needs.
# Idempotent: a package already installed is not touched, and apt-get is not run at all
# when nothing is missing. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang clang-format libclang-rt-14-dev
  libuv1-dev libprotobuf-dev protobuf-compiler libboost-dev libcli11-dev
  libsqlite3-dev libzstd-dev libgtest-dev libgmock-dev libbenchmark-dev
  libsimdjson-dev libssl-dev libhttp-parser-dev libsystemd-dev libhiredis-dev
  # A real Redis for the cluster's tests (they start their own, on free ports).
  redis-server
  curl
  # The Debian package (cpack: dpkg-shlibdeps, file) and the man page and install tests.
  dpkg-dev file mandoc python3
)
# Node.js and npm for the real-client tests (tests/clients); a node already on PATH (e.g. a
# newer one installed another way) is kept.
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
