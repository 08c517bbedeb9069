#!/usr/bin/env bash
# The hostile-input, ONNX-import, import-fixture and safetensors tests under AddressSanitizer
# (docs/fuzzing.md). Builds everything, the csgd-dist binary included, in .build/asan with
# `--sanitize=address` (Swift and C targets alike); CLIRunner finds the binary by walking up
# from the test bundle, so the hostile tests launch the ASan build, which this checks first.
#
#   launch/fuzz/asan.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# A trap must print Swift's backtrace, not wait on it; leaks are not what this looks for.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
# The onnxruntime/safetensors comparisons skip without a Python that has them (as in test.sh).
if [ -z "${CSGD_PYTHON:-}" ] && [ -x .build/pyenv/bin/python3 ]; then
    export CSGD_PYTHON=$PWD/.build/pyenv/bin/python3
fi
build=(-c debug --build-path .build/asan --sanitize=address)
echo "asan: building (debug, --sanitize=address) in .build/asan"
nice -n 10 swift build "${build[@]}" --build-tests 2>&1 | grep -E "error:|Compiling|Build" | tail -n 3
bin=$(swift build "${build[@]}" --show-bin-path)
if [ "$(nm "$bin/csgd-dist" | grep -c ' __asan_init$' || true)" = 0 ]; then
    echo "asan: $bin/csgd-dist is not built with AddressSanitizer" >&2
    exit 2
fi
echo "asan: $bin/csgd-dist is the ASan build; running the tests"
filter='HostileInputTests|ONNXImportTests|ImportFixtureTests|SafeTensorsTests'
nice -n 10 swift test "${build[@]}" --skip-build --filter "$filter" "$@"
