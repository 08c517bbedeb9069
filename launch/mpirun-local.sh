#!/usr/bin/env bash
# Runs csgd-dist under mpirun on this machine: one rank per core, one BLAS thread per rank.
# NOTE: edit cluster-configs/local.env (ranks, transport) rather than this script.
#   launch/mpirun-local.sh train --config cluster-configs/fashion-mnist-resnet20-base.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
source "$here/cluster-configs/local.env"
exe="${CSGD_EXE:-$here/.build/release/csgd-dist}"
[ -x "$exe" ] || { echo "error: $exe not built; run launch/setup.sh first" >&2; exit 1; }
np="${NP:-$CSGD_RANKS}"
flags=(-n "$np" --mca btl "$CSGD_BTL" -x OPENBLAS_NUM_THREADS=1)
if [ "$np" -le "$(nproc)" ]; then flags+=(--bind-to core); else flags+=(--oversubscribe --bind-to none); fi
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
export OPENBLAS_NUM_THREADS=1
exec mpirun "${flags[@]}" "$exe" "$@"
