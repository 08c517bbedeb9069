#!/usr/bin/env bash
# Reproduces the Fashion-MNIST rows of docs/RESULTS.md on one 2-core node (2 MPI ranks):
# base ResNet-20, C-SGD to 5/8 from it (no finetune), magnitude pruning of the base to the same
# widths without and with finetuning; then train-2×-wider-then-squeeze against the same-width net
# trained normally on the same budget (one process each). Each step's log goes to
# $OUT/<name>.log; steps whose output already exists are skipped, so the script can be rerun
# after an interruption (an interrupted step starts over: --overwrite moves its partial records
# to <its folder>/overwritten-<time>/). Every run directory gets an HTML report (csgd-dist report).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
run="launch/mpirun-local.sh"
exe="${CSGD_EXE:-.build/release/csgd-dist}"
mkdir -p "$OUT"

step() {  # step NAME OUTPUT-FILE ARGS…: runs csgd-dist ARGS (2 ranks) unless OUTPUT-FILE exists
    local name=$1 done_file=$2
    shift 2
    launcher "$run" "$name" "$done_file" "$@"
}

step1() {  # like step, one process (no mpirun): leaves a core free on a 2-core machine
    local name=$1 done_file=$2
    shift 2
    OPENBLAS_NUM_THREADS=1 launcher "$exe" "$name" "$done_file" "$@"
}

launcher() {
    local run=$1 name=$2 done_file=$3
    shift 3
    if [ -f "$done_file" ]; then
        echo "== $name: done already ($done_file)"
        return
    fi
    echo "== $name: csgd-dist $*"
    local t0=$SECONDS
    "$run" "$@" --overwrite > "$OUT/$name.log" 2>&1
    echo "   wall time $((SECONDS - t0)) s; log $OUT/$name.log"
    tail -n 3 "$OUT/$name.log"
}

base="$OUT/fmnist-r20-base/model.safetensors"
step fmnist-r20-base "$base" \
    train --config cluster-configs/fashion-mnist-resnet20-base.yaml --out-dir "$OUT/fmnist-r20-base"
step fmnist-r20-csgd "$OUT/fmnist-r20-csgd/pruned.safetensors" \
    csgd --config cluster-configs/fashion-mnist-resnet20-csgd.yaml \
    --from "$base" --out-dir "$OUT/fmnist-r20-csgd"
step fmnist-r20-magnitude "$OUT/fmnist-r20-magnitude/pruned.safetensors" \
    prune --config cluster-configs/fashion-mnist-resnet20-csgd.yaml \
    --input "$base" --method magnitude --target 5/8 \
    --output "$OUT/fmnist-r20-magnitude/pruned.safetensors" --out-dir "$OUT/fmnist-r20-magnitude"
step fmnist-r20-magnitude-ft "$OUT/fmnist-r20-magnitude-ft/pruned.safetensors" \
    prune --config cluster-configs/fashion-mnist-resnet20-csgd.yaml \
    --input "$base" --method magnitude --target 5/8 --finetune-epochs 8 \
    --output "$OUT/fmnist-r20-magnitude-ft/pruned.safetensors" --out-dir "$OUT/fmnist-r20-magnitude-ft"
widen_cfg=cluster-configs/fashion-mnist-resnet20-widen.yaml
step1 fmnist-r20-narrow "$OUT/fmnist-r20-narrow/model.safetensors" \
    train --config "$widen_cfg" --widen 1 --out-dir "$OUT/fmnist-r20-narrow"
step1 fmnist-r20-widen "$OUT/fmnist-r20-widen/pruned.safetensors" \
    csgd --config "$widen_cfg" --out-dir "$OUT/fmnist-r20-widen"
# Issue 18: the gentle schedule, uniform 5/8 and a FLOPs budget equal to uniform 5/8's.
gentle_cfg=cluster-configs/fashion-mnist-resnet20-csgd-gentle.yaml
step1 fmnist-r20-csgd-gentle "$OUT/fmnist-r20-csgd-gentle/pruned.safetensors" \
    csgd --config "$gentle_cfg" --from "$base" --out-dir "$OUT/fmnist-r20-csgd-gentle"
step1 fmnist-r20-csgd-gentle-budget "$OUT/fmnist-r20-csgd-gentle-budget/pruned.safetensors" \
    csgd --config "$gentle_cfg" --from "$base" --target-flops 15.86M --sensitivity-images 2048 \
    --out-dir "$OUT/fmnist-r20-csgd-gentle-budget"
# Issue 18, second try: the long schedule (ε 0.01, 20 epochs), uniform 5/8 and a FLOPs budget
# equal to it with BN-recalibrated single-group sensitivity.
long_cfg=cluster-configs/fashion-mnist-resnet20-csgd-long.yaml
step1 fmnist-r20-csgd-long "$OUT/fmnist-r20-csgd-long/pruned.safetensors" \
    csgd --config "$long_cfg" --from "$base" --out-dir "$OUT/fmnist-r20-csgd-long"
step1 fmnist-r20-csgd-long-budget "$OUT/fmnist-r20-csgd-long-budget/pruned.safetensors" \
    csgd --config "$long_cfg" --from "$base" --target-flops 15.86M --sensitivity-images 1024 \
    --sensitivity-context recalibrated --out-dir "$OUT/fmnist-r20-csgd-long-budget"

for d in fmnist-r20-base fmnist-r20-csgd fmnist-r20-magnitude-ft fmnist-r20-narrow fmnist-r20-widen \
    fmnist-r20-csgd-gentle fmnist-r20-csgd-gentle-budget fmnist-r20-csgd-long \
    fmnist-r20-csgd-long-budget; do
    "$exe" report "$OUT/$d"
done
