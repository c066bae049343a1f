#!/usr/bin/env bash
# setup.sh: install every build and run dependency of dispatcher from Debian's
# packages. Idempotent: installs only what is missing, and does nothing (not even
# `apt-get update`) when everything is already there.
#
#   scripts/setup.sh            install what is missing
#   scripts/setup.sh --bench    also what scripts/bench.sh compares against
#                               (redis-server, redis-tools)
#   scripts/setup.sh --check    list what is missing, exit 1 if anything is
set -euo pipefail

# Build: compiler, cmake, pkg-config and the -dev packages we link against.
# Run: the ZooKeeper server and the Java runtime it needs (the server package
# pulls in a JRE), plus the ZooKeeper command-line tools (zkCli) for users.
# libzookeeper-st-dev conflicts with libzookeeper-mt-dev: we use the
# single-threaded client, driven from our libuv loop.
PACKAGES=(
  build-essential cmake pkg-config
  libuv1-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
  libzookeeper-st-dev
  zookeeper zookeeperd- default-jre-headless
  netcat-openbsd procps
  clang libclang-rt-dev
)
# clang and its runtime (libFuzzer, sanitizers) build the fuzz targets that
# scripts/test.sh runs.

mode=${1:-}
if [[ $mode == --bench ]]; then PACKAGES+=(redis-server redis-tools); fi

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$p" == *- ]] && continue            # "pkg-" means: must not be installed
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [[ $mode == --check ]]; then
  if ((${#missing[@]})); then printf 'missing: %s\n' "${missing[*]}"; exit 1; fi
  echo "all dependencies installed"; exit 0
fi

if ((${#missing[@]} == 0)); then exit 0; fi

echo "setup.sh: installing ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# zookeeperd would start a system-wide server on 2181; we run our own, so it is
# never installed (the trailing "-" tells apt not to).
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" zookeeperd- >/dev/null
echo "setup.sh: done" >&2
