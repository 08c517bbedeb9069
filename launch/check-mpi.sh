#!/usr/bin/env bash
# Checks the MPI wiring before a long run: builds csgd-dist (release) if needed, then runs
# `csgd-dist check-comm` as NP ranks and exits with its status (0 = every rank verified every
# collective). Extra arguments go to check-comm, e.g. `NP=3 launch/check-mpi.sh --count 4096`.
#
# Environment:
#   NP            ranks (default 2); --bind-to core if NP <= cores, else --oversubscribe
#   BTL           Open MPI byte-transfer layers (default self,vader; self,tcp for TCP)
#   SCRATCH_PATH  SwiftPM build directory (default .build)
#   MPIRUN        launcher (default mpirun)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NP="${NP:-2}"
BTL="${BTL:-self,vader}"
SCRATCH_PATH="${SCRATCH_PATH:-.build}"
MPIRUN="${MPIRUN:-mpirun}"

if ! [[ "$NP" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NP must be a positive integer (got '$NP')" >&2
    exit 2
fi
if ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "error: $MPIRUN not found; install openmpi-bin and libopenmpi-dev" >&2
    exit 2
fi

# Incremental: a no-op when the release binary is up to date.
swift build -c release --product csgd-dist --scratch-path "$SCRATCH_PATH" >&2
BIN="$(swift build -c release --scratch-path "$SCRATCH_PATH" --show-bin-path)/csgd-dist"

CORES="$(nproc)"
ARGS=(-n "$NP" --mca btl "$BTL")
if ((NP <= CORES)); then
    ARGS+=(--bind-to core)
else
    ARGS+=(--oversubscribe --bind-to none)
fi
if [[ "$(id -u)" -eq 0 ]]; then
    ARGS+=(--allow-run-as-root)
fi

# One BLAS thread per rank: ranks, not threads, use the cores.
export OPENBLAS_NUM_THREADS=1
echo "+ $MPIRUN ${ARGS[*]} -x OPENBLAS_NUM_THREADS $BIN check-comm $*" >&2
exec "$MPIRUN" "${ARGS[@]}" -x OPENBLAS_NUM_THREADS "$BIN" check-comm "$@"
