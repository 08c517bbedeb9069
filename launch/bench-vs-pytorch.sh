#!/usr/bin/env bash
# Interleaves csgd-dist's ResNet-56 training-step benchmark with the PyTorch CPU peer
# (../shared/bench/pytorch-peer) on the same machine, ROUNDS times, so the medians compare
# figures taken side by side. Needs a torch venv: TORCH_PY=/path/to/venv/bin/python
# (python3 -m venv v && v/bin/pip install torch==2.13.0). Run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PEER="${PEER:-../shared/bench/pytorch-peer}"
TORCH_PY="${TORCH_PY:?set TORCH_PY to a python with torch 2.13 installed}"
ROUNDS="${ROUNDS:-3}"
exe=.build/release/csgd-dist
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" -n 2 --bind-to core -x OPENBLAS_NUM_THREADS=1 --mca btl self,vader)
for r in $(seq "$ROUNDS"); do
    echo "== round $r"
    OPENBLAS_NUM_THREADS=1 "$exe" bench train --steps 10 --step-only --json | grep train_step
    "$TORCH_PY" "$PEER/bench_single.py" 1 64 15
    OPENBLAS_NUM_THREADS=2 "$exe" bench train --steps 10 --step-only --threads 2 --json | grep train_step
    "$TORCH_PY" "$PEER/bench_single.py" 2 64 15
    "${mpi[@]}" "$exe" bench train --steps 10 --step-only --batch 32 --json | grep train_step
    # DDP overlaps its allreduce with backward; so can we (allreduce: overlap).
    "${mpi[@]}" "$exe" bench train --steps 10 --step-only --batch 32 --allreduce overlap --json |
        grep train_step
    "$TORCH_PY" "$PEER/bench_ddp.py" 32 15 1
done
echo "== peak RSS, ResNet-56 training at batch 128 (1 thread)"
OPENBLAS_NUM_THREADS=1 "$exe" bench train --steps 3 --step-only --batch 128 --json | grep peak_rss
/usr/bin/time -f "pytorch max_rss_kb=%M" "$TORCH_PY" "$PEER/bench_single.py" 1 128 3 2>&1 | grep -E "max_rss|img_per_s"
