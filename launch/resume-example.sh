#!/usr/bin/env bash
# NOTE: edit cluster-configs/cluster.env for your system (this local demo reads local.env)
# Shows how to resume an interrupted run: the same command plus --resume, on the same number of
# ranks. Runs locally through launch/mpirun-local.sh on the small Fashion-MNIST C-SGD config.
#
#   launch/resume-example.sh                  # the bundled config (6 epochs), a few minutes
#   launch/resume-example.sh --train-limit 640 --epochs 3 --test-limit 500 --prune-tolerance 10
#                                             # a quick check: 30 steps, 20 + 10 after resuming
#                                             # (too short for the clusters to collapse, hence
#                                             # the loose prune tolerance)
# Extra arguments go to both commands (they must be identical apart from --resume).
#
# What <out_dir>/checkpoint.safetensors holds (written atomically, with a checksum, by rank 0
# every `checkpoint_every` epochs / `checkpoint_every_steps` steps and when max_steps stops a run):
# the weights and BN running statistics, the SGD momentum (optim.momentum.*), the loop position
# (C-SGD round, epoch, step in the epoch, step in the round), the round's cluster plan, the world
# size it was written with, and the resolved config. The data order and augmentation are
# functions of (seed, epoch, step), so nothing else is needed: on the same number of ranks the
# resumed run is bit-identical to one that was never interrupted (another rank count works but
# prints a note, and only approximately reproduces the run). --resume reads the config from the
# command line as usual, so repeat the original flags; `--from` is not needed.
#
# On a cluster the interruption is a time limit or a failed node; resubmit the same sbatch script
# with --resume (e.g. `sbatch launch/slurm-csgd-resnet56-cifar10.sbatch --resume`). Here
# --max-steps stands in for the interruption: the run stops after STOP_AFTER steps and writes a
# checkpoint, as a killed job would have left its last one.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT_DIR:-runs/resume-example}"
stop_after="${STOP_AFTER:-20}"
rm -rf "$out_dir"

echo "== 1. start, interrupted after $stop_after steps" >&2
launch/mpirun-local.sh \
    csgd \
    --config cluster-configs/fashion-mnist-resnet20.yaml \
    --out-dir "$out_dir" \
    --max-steps "$stop_after" \
    "$@"

echo "== 2. the same command plus --resume (and without the --max-steps that simulated the stop)" >&2
launch/mpirun-local.sh \
    csgd \
    --config cluster-configs/fashion-mnist-resnet20.yaml \
    --out-dir "$out_dir" \
    --resume \
    "$@"

echo "== done: $out_dir/pruned.safetensors (metrics in $out_dir/metrics.jsonl)" >&2
