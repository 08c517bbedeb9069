#!/usr/bin/env bash
# Installs what csgd-dist needs from Debian (only the missing packages; apt-get update first)
# and builds the release binary. Idempotent. `--no-build` installs packages only.
#   OpenMPI (mpirun + headers), OpenBLAS (cblas_sgemm), zlib (reads the .gz datasets),
#   libjpeg-turbo (decodes ImageFolder / packed JPEGs), dataset-fashion-mnist (the bundled real
#   data, MIT licence), binutils (objdump: a test reads the binary's instructions).
# The binary is built for this machine's CPU (AVX2/AVX-512, FMA where present). For one binary
# that runs on every node of a mixed cluster, name the oldest node's CPU (an LLVM CPU name):
#   CSGD_TARGET_CPU=haswell bash launch/setup.sh      (or skylake-avx512, znver3, …)
#   CSGD_TARGET_CPU=generic bash launch/setup.sh      (baseline x86-64, runs anywhere, slower)
# Package.swift reads the variable; `swift build` and `swift test` honour it the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config zlib1g-dev libturbojpeg0-dev
    dataset-fashion-mnist binutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" != "--no-build" ]; then
    echo "setup: swift build -c release (target CPU: ${CSGD_TARGET_CPU:-native})"
    swift build -c release 2>&1 | grep -E "error|warning: |Compiling csgd|Build complete" || true
    [ -x .build/release/csgd-dist ] || { echo "setup: build failed" >&2; exit 1; }
fi
