#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read untrusted files (docs/fuzzing.md).
#
#   launch/fuzz/run.sh [SECONDS] [--smoke] [TARGET...]
#
# Builds the library modules with libFuzzer's coverage and AddressSanitizer
# (`swift build --target ... -Xswiftc -sanitize=fuzzer,address` into .build/fuzz: the package
# exposes only its executable, so a separate package cannot depend on them), links one fuzzer
# per file in launch/fuzz/targets/ against their objects, makes seed corpora, replays
# launch/fuzz/regressions/<target>/, and fuzzes each target in turn for SECONDS (default 180)
# with -max_total_time, or, with --smoke, for a fixed -seed=1 -runs=N from the seeds alone
# (deterministic, a few seconds a target). Prints executions, new coverage features and
# crashes per target; exits 1 if any target crashed, hung, ran out of memory or a regression
# input fails. Corpora and artefacts live under .build/fuzz-work (never committed).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
fuzzdir=$root/launch/fuzz
work=$root/.build/fuzz-work
build=$root/.build/fuzz

seconds=180
smoke=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        [0-9]*) seconds=$arg ;;
        *) targets+=("$arg") ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors onnx config jpeg report)
fi
smoke_runs=${CSGD_FUZZ_SMOKE_RUNS:-2000}

# A crash in Swift code must reach libFuzzer's handler (which writes the input), not the Swift
# runtime's backtracer (which waits on its own and can hold the terminal).
export SWIFT_BACKTRACE=enable=no
# Swift's lazily built metadata and caches look like leaks to the per-input leak check.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export OPENBLAS_NUM_THREADS=1
# Swift seeds its hashing per process; fixed, a smoke run's coverage and a replay repeat.
export SWIFT_DETERMINISTIC_HASHING=1

# --- build -----------------------------------------------------------------------------------
echo "fuzz: building the library modules (sanitize=fuzzer,address) in .build/fuzz"
for t in CSGDReport CSGDImport; do
    swift build -c release --build-path "$build" --target "$t" \
        -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -E "error|warning: unre|Compiling|Build" |
        tail -n 3
done
rel=$(swift build -c release --build-path "$build" --show-bin-path)
modules=(CSGDCore CSGDKernels CSGDModels CSGDData CSGDCentripetal CSGDDistributed CSGDConfig
    CSGDTensorBoard CSGDRunFiles CSGDReport CSGDONNX CSGDImport Yams CYaml SwiftProtobuf)
objects=()
for m in "${modules[@]}"; do
    mapfile -t found < <(find "$rel/$m.build" -name '*.o' 2>/dev/null | sort)
    if [ ${#found[@]} -eq 0 ]; then
        echo "fuzz: no objects for $m in $rel/$m.build" >&2
        exit 2
    fi
    objects+=("${found[@]}")
done
cflags=(-I "$rel/Modules" -I "$root/.build/fuzz/checkouts/Yams/Sources/CYaml/include")
for c in CMPI CBLAS CZlib CTurboJPEG; do
    cflags+=(-Xcc "-fmodule-map-file=$root/Sources/$c/module.modulemap")
done
for flag in $(pkg-config --cflags ompi-c openblas libturbojpeg zlib); do
    cflags+=(-Xcc "$flag")
done
# shellcheck disable=SC2207
libs=($(pkg-config --libs ompi-c openblas libturbojpeg zlib))
mkdir -p "$work/bin"
for t in "${targets[@]}"; do
    src=$fuzzdir/targets/$t.swift
    exe=$work/bin/$t
    if [ ! -f "$src" ]; then
        echo "fuzz: no target $t ($src)" >&2
        exit 2
    fi
    newest=$(find "$src" "${objects[@]}" -newer "$exe" 2>/dev/null | head -n 1 || true)
    if [ ! -x "$exe" ] || [ -n "$newest" ]; then
        echo "fuzz: linking $t"
        swiftc -sanitize=fuzzer,address -parse-as-library -swift-version 5 -O \
            -module-name "Fuzz_$t" "${cflags[@]}" "$src" "${objects[@]}" "${libs[@]}" \
            -o "$exe" 2>&1 | grep -v "Cannot export local symbol '__asan" || true
        [ -x "$exe" ] || { echo "fuzz: linking $t failed" >&2; exit 2; }
    fi
done

# --- seeds -----------------------------------------------------------------------------------
seed_corpus() {  # $1 target, $2 directory to fill
    local t=$1 dir=$2
    mkdir -p "$dir"
    case "$t" in
        safetensors | jpeg) CSGD_FUZZ_SEEDS=$dir "$work/bin/$t" >/dev/null 2>&1 ;;
        onnx) cp Tests/CSGDImportTests/Fixtures/*.onnx "$dir/" ;;
        config) cp cluster-configs/*.yaml "$dir/" ;;
        report)
            local ep='"train_loss":1.5,"test_loss":1.7,"train_top1":0.4,"test_top1":0.35'
            local layers='[{"name":"conv1","before":16,"after":12},{"name":"fc","before":10,"after":10}]'
            printf '%s\n' \
                "{\"phase\":\"train\",\"round\":0,\"epoch\":1,$ep,\"seconds\":12.5}" \
                "{\"phase\":\"train\",\"round\":0,\"epoch\":2,$ep,\"seconds\":11}" \
                >"$dir/train.jsonl"
            printf '%s\n' \
                "{\"phase\":\"train\",\"round\":0,\"epoch\":1,$ep,\"seconds\":9}" \
                "{\"phase\":\"csgd\",\"round\":1,\"epoch\":1,$ep,\"deviation_kernels\":0.01,\"deviation_vectors\":0.002,\"seconds\":7}" \
                "{\"phase\":\"prune\",\"round\":1,\"max_logit_diff\":2e-6,\"test_top1_before\":0.5,\"test_top1_after\":0.5,\"params_before\":1000,\"params_after\":700,\"flops_before\":50000,\"flops_after\":30000,\"layers\":$layers}" \
                "{\"phase\":\"csgd\",\"round\":2,\"epoch\":1,$ep,\"deviation_kernels\":0,\"deviation_vectors\":0,\"seconds\":7}" \
                >"$dir/csgd.jsonl"
            printf '%s\n' "{\"phase\":\"train\",\"epoch\":1,\"test_top1\":0.5}" >"$dir/minimal.jsonl"
            ;;
    esac
    # Files of this kind anywhere in the tree (outside build folders) join the seeds.
    local pattern
    case "$t" in
        safetensors) pattern='*.safetensors' ;;
        jpeg) pattern='*.jpg' ;;
        report) pattern='metrics.jsonl' ;;
        *) pattern='' ;;
    esac
    if [ -n "$pattern" ]; then
        find . -path ./.build -prune -o -type f -name "$pattern" -size -1M -print 2>/dev/null |
            head -n 20 | while read -r f; do cp "$f" "$dir/seed-$(echo "$f" | md5sum | cut -c1-8)"; done
    fi
}

# --- run -------------------------------------------------------------------------------------
status=0
summary=()
for t in "${targets[@]}"; do
    exe=$work/bin/$t
    art=$work/artifacts/$t
    mkdir -p "$art"
    # Regression inputs of past findings run once each, in every mode.
    reg=$fuzzdir/regressions/$t
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg" 2>/dev/null)" ]; then
        if ! "$exe" -rss_limit_mb=2048 -timeout=10 "$reg"/* >"$work/$t-regressions.log" 2>&1; then
            echo "fuzz: $t: a regression input fails (see $work/$t-regressions.log)"
            status=1
        fi
    fi
    if [ "$smoke" = 1 ]; then
        corpus=$work/smoke/$t
        rm -rf "$corpus"
        seed_corpus "$t" "$corpus"
        budget=(-seed=1 -runs="$smoke_runs")
    else
        corpus=$work/corpus/$t
        if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then seed_corpus "$t" "$corpus"; fi
        budget=(-max_total_time="$seconds")
    fi
    log=$work/$t.log
    before=$(ls "$art" | wc -l)
    echo "fuzz: $t (${budget[*]}, corpus $(ls "$corpus" | wc -l) files)"
    rc=0
    "$exe" "${budget[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$art/" "$corpus" >"$log" 2>&1 || rc=$?
    after=$(ls "$art" | wc -l)
    execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || true)
    ft0=$(grep -m1 -E "INITED" "$log" | grep -oE "ft: [0-9]+" | grep -oE "[0-9]+" || echo 0)
    ft1=$(grep -E "^#[0-9]+" "$log" | tail -n 1 | grep -oE "ft: [0-9]+" | grep -oE "[0-9]+" || echo 0)
    cov=$(grep -E "^#[0-9]+" "$log" | tail -n 1 | grep -oE "cov: [0-9]+" | grep -oE "[0-9]+" || echo 0)
    crashes=$((after - before))
    line="$t: ${execs:-?} executions, cov $cov, ft $ft1 (+$((ft1 - ft0)) new features), $crashes crashes"
    if [ "$rc" != 0 ] || [ "$crashes" -gt 0 ]; then
        line="$line, exit $rc: FINDING, see $log and $art"
        status=1
    fi
    echo "fuzz: $line"
    summary+=("$line")
done
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
exit "$status"
