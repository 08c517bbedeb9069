#!/usr/bin/env bash
# Interleaves csgd-dist's training-step benchmarks with the PyTorch CPU peer
# (../shared/bench/pytorch-peer) on the same machine, ROUNDS times, for ResNet-56 at 32×32
# (batch 64) and ResNet-50 at 224×224 (batch 16), and ends with one table of medians and their
# ratios, so every ratio compares figures taken side by side. Needs a torch venv:
# TORCH_PY=/path/to/venv/bin/python (python3 -m venv v && v/bin/pip install torch==2.13.0).
# Run on a quiet machine. R50_STEPS (default 3) sets the timed ResNet-50 steps per run: a step
# is several seconds on one core. MODELS="resnet56 resnet50" (default) picks the models.
# VARIANTS="im2col auto" (default) runs csgd-dist's 1-thread and 2-rank rows once per 3×3
# algorithm (--conv3x3; rows tagged +auto, +winograd), all against the same PyTorch runs.
# SETTINGS="1thread 2threads 2ranks" (default) picks the rows (on a busy machine, fewer).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER="${PEER:-../shared/bench/pytorch-peer}"
TORCH_PY="${TORCH_PY:?set TORCH_PY to a python with torch 2.13 installed}"
ROUNDS="${ROUNDS:-3}"
R50_STEPS="${R50_STEPS:-3}"
MODELS="${MODELS:-resnet56 resnet50}"
VARIANTS="${VARIANTS:-im2col auto}"
SETTINGS="${SETTINGS:-1thread 2threads 2ranks}"
has() { [[ " $SETTINGS " == *" $1 "* ]]; }
exe="${CSGD_EXE:-.build/release/csgd-dist}"  # CSGD_EXE: another build, e.g. an A/B copy
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" -n 2 --bind-to core -x OPENBLAS_NUM_THREADS=1 --mca btl self,vader)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# ours TAG CMD...: runs a `bench train --json` command, prints its train_step row, logs img/s.
ours() {
    local tag=$1
    shift
    local row
    row=$("$@" | grep '"train_step_')
    echo "$row"
    # Also img/s from the step's CPU time (less inflated by other load; 1-thread rows only).
    "$TORCH_PY" -c '
import json, sys
r = json.loads(sys.argv[2])
print(sys.argv[1], r["value"])
if r.get("ranks") == 1 and r.get("cpu_step_ms"):
    print("cpu:" + sys.argv[1].split(":", 1)[1], r["value"] * r["step_ms"] / r["cpu_step_ms"])
' "ours:$tag" "$row" >>"$log"
}
# peer TAG CMD...: runs a peer script, prints its line, logs its img/s.
peer() {
    local tag=$1
    shift
    local line
    line=$("$@" | grep -E 'img_per_s=')
    echo "$line"
    echo "torch:$tag $(echo "$line" | sed -E 's/.*(train|global)_img_per_s=([0-9.]+).*/\2/')" >>"$log"
}

# Tag suffix of a 3×3 variant: none for im2col (the rows the docs have always quoted).
suffix() { [ "$1" = im2col ] || echo "+$1"; }
# twin TAG: logs the latest PyTorch figure of TAG again for each non-im2col variant.
twin() {
    local line
    line=$(grep "^torch:$1 " "$log" | tail -n 1)
    for v in $VARIANTS; do
        [ "$v" = im2col ] || echo "torch:$1+$v ${line#* }" >>"$log"
    done
}

for r in $(seq "$ROUNDS"); do
    echo "== round $r"
    if [[ " $MODELS " == *" resnet56 "* ]]; then
        if has 1thread; then
            for v in $VARIANTS; do
                ours "r56_1thread$(suffix "$v")" env OPENBLAS_NUM_THREADS=1 "$exe" bench train \
                    --steps 10 --step-only --conv3x3 "$v" --json
            done
            peer r56_1thread "$TORCH_PY" "$PEER/bench_single.py" 1 64 15
            twin r56_1thread
        fi
        if has 2threads; then
            ours r56_2threads env OPENBLAS_NUM_THREADS=2 \
                "$exe" bench train --steps 10 --step-only --threads 2 --json
            # The batch as 2 micro-batches of 32 on 2 single-threaded replicas (BN statistics
            # per 32 images, as 2 ranks have), against the same PyTorch 2-thread run.
            ours r56_2threads_mb2 env OPENBLAS_NUM_THREADS=1 \
                "$exe" bench train --steps 10 --step-only --threads 2 --micro-batches 2 --json
            peer r56_2threads "$TORCH_PY" "$PEER/bench_single.py" 2 64 15
            line=$(grep "^torch:r56_2threads " "$log" | tail -n 1)
            echo "torch:r56_2threads_mb2 ${line#* }" >>"$log"
        fi
        if has 2ranks; then
            for v in $VARIANTS; do
                ours "r56_2ranks$(suffix "$v")" "${mpi[@]}" "$exe" bench train --steps 10 \
                    --step-only --batch 32 --conv3x3 "$v" --json
            done
            # DDP overlaps its allreduce with backward; so can we (allreduce: overlap).
            ours r56_2ranks_overlap "${mpi[@]}" "$exe" bench train --steps 10 --step-only \
                --batch 32 --allreduce overlap --json
            peer r56_2ranks "$TORCH_PY" "$PEER/bench_ddp.py" 32 15 1
            # The same PyTorch figure again under the tags of the other csgd-dist rows, so the
            # summary pairs each of them with the runs of this sitting.
            twin r56_2ranks
            line=$(grep "^torch:r56_2ranks " "$log" | tail -n 1)
            echo "torch:r56_2ranks_overlap ${line#* }" >>"$log"
        fi
    fi
    if [[ " $MODELS " == *" resnet50 "* ]]; then
        if has 1thread; then
            for v in $VARIANTS; do
                ours "r50_224_1thread$(suffix "$v")" env OPENBLAS_NUM_THREADS=1 "$exe" bench \
                    train --model resnet50 --image-size 224 --batch 16 --steps "$R50_STEPS" \
                    --warmup 1 --step-only --conv3x3 "$v" --json
            done
            peer r50_224_1thread "$TORCH_PY" "$PEER/bench_resnet50.py" 1 16 "$R50_STEPS"
            twin r50_224_1thread
        fi
        if has 2threads; then
            ours r50_224_2threads env OPENBLAS_NUM_THREADS=2 "$exe" bench train \
                --model resnet50 --image-size 224 --batch 16 --steps "$R50_STEPS" --warmup 1 \
                --step-only --threads 2 --json
            ours r50_224_2threads_mb2 env OPENBLAS_NUM_THREADS=1 "$exe" bench train \
                --model resnet50 --image-size 224 --batch 16 --steps "$R50_STEPS" --warmup 1 \
                --step-only --threads 2 --micro-batches 2 --json
            peer r50_224_2threads "$TORCH_PY" "$PEER/bench_resnet50.py" 2 16 "$R50_STEPS"
            line=$(grep "^torch:r50_224_2threads " "$log" | tail -n 1)
            echo "torch:r50_224_2threads_mb2 ${line#* }" >>"$log"
        fi
        if has 2ranks; then
            for v in $VARIANTS; do
                ours "r50_224_2ranks$(suffix "$v")" "${mpi[@]}" "$exe" bench train \
                    --model resnet50 --image-size 224 --batch 8 --steps "$R50_STEPS" --warmup 1 \
                    --step-only --conv3x3 "$v" --json
            done
            # Our DDP peer (launch/peer/): 2 processes × 1 thread × 8, global batch 16.
            peer r50_224_2ranks "$TORCH_PY" launch/peer/bench_resnet50_ddp.py 8 "$R50_STEPS" "$PEER"
            twin r50_224_2ranks
        fi
    fi
done
if [[ " $MODELS " == *" resnet56 "* ]] && has 1thread; then
    echo "== peak RSS, ResNet-56 training at batch 128 (1 thread)"
    OPENBLAS_NUM_THREADS=1 "$exe" bench train --steps 3 --step-only --batch 128 --json |
        grep peak_rss
    /usr/bin/time -f "pytorch max_rss_kb=%M" "$TORCH_PY" "$PEER/bench_single.py" 1 128 3 2>&1 |
        grep -E "max_rss|img_per_s"
fi
echo "== medians over $ROUNDS round(s), img/s (csgd-dist ÷ PyTorch)"
"$TORCH_PY" - "$log" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    key, value = line.split()
    runs.setdefault(key, []).append(float(value))
tags = dict.fromkeys(k.split(":", 1)[1] for k in runs)
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"{'setting':<20} {'csgd-dist':>10} {'PyTorch':>10} {'ratio':>7} {'by CPU':>8}"
      "  rounds (csgd-dist | PyTorch)")
for t in tags:
    o, p, c = runs.get("ours:" + t, []), runs.get("torch:" + t, []), runs.get("cpu:" + t, [])
    ratio = f"{med(o) / med(p):7.2f}" if o and p else "      -"
    # csgd-dist's img/s from its CPU seconds per step (PyTorch's stays wall time).
    by_cpu = f"{med(c):8.4g}" if c else "       -"
    fmt = lambda xs: " ".join(f"{x:.4g}" for x in xs) or "-"
    print(f"{t:<20} {med(o):10.4g} {med(p):10.4g} {ratio} {by_cpu}  {fmt(o)} | {fmt(p)}")
EOF
