#!/usr/bin/env bash
# Installs what csgd-dist needs from Debian (only the missing packages; apt-get update first)
# and builds the release binary. Idempotent. `--no-build` installs packages only.
#   OpenMPI (mpirun + headers), OpenBLAS (cblas_sgemm), zlib (reads the .gz datasets),
#   libjpeg-turbo (decodes ImageFolder / packed JPEGs), dataset-fashion-mnist (the bundled real
#   data, MIT licence).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config zlib1g-dev libturbojpeg0-dev
    dataset-fashion-mnist)
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
    echo "setup: swift build -c release"
    swift build -c release 2>&1 | grep -E "error|warning: |Compiling csgd|Build complete" || true
    [ -x .build/release/csgd-dist ] || { echo "setup: build failed" >&2; exit 1; }
fi
