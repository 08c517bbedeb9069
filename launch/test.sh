#!/usr/bin/env bash
# README command 2 (and exactly what .ci/run calls): set up, check formatting, run every test.
# Tests run in release mode (-enable-testing keeps @testable imports working): the training and
# MPI tests launch the real binary, which is far too slow unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh --no-build
# Python for the interoperability tests (onnxruntime, safetensors); best effort, they skip
# without it.
bash launch/setup-python.sh
if [ -x .build/pyenv/bin/python3 ]; then
    export CSGD_PYTHON=$PWD/.build/pyenv/bin/python3
fi
echo "test: swift format lint"
swift format lint --strict --recursive Sources Tests
# mpirun refuses root unless told; tests pass --allow-run-as-root, these cover the rest.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
echo "test: swift test -c release"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test -c release -Xswiftc -enable-testing "$@" 2>&1 | tee "$log" || status=$?
# One plain closing line from XCTest's overall summary (Swift Testing's own summary line
# counts only its tests, and this suite is written with XCTest).
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -n 1 || true)
total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<< "$summary")
failed=$(sed -E 's/.* ([0-9]+) failures? .*/\1/' <<< "$summary")
skipped=$(grep -oE "[0-9]+ tests? skipped" <<< "$summary" | grep -oE "^[0-9]+" || echo 0)
if [ -n "$summary" ]; then
    echo "$((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
# Fuzz targets, a short fixed-seed run of each plus the saved regression inputs (~4 min with
# its instrumented build; launch/fuzz/run.sh SECONDS for a budget run).
echo "test: fuzz smoke"
launch/fuzz/run.sh --smoke || status=1
exit "$status"
