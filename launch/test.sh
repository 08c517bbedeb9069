#!/usr/bin/env bash
# README command 2 (and exactly what .ci/run calls): set up, check formatting, run every test.
# Tests run in release mode (-enable-testing keeps @testable imports working): the training and
# MPI tests launch the real binary, which is far too slow unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh --no-build
echo "test: swift format lint"
swift format lint --strict --recursive Sources Tests
# mpirun refuses root unless told; tests pass --allow-run-as-root, these cover the rest.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
echo "test: swift test -c release"
swift test -c release -Xswiftc -enable-testing "$@"
