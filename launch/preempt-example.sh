#!/usr/bin/env bash
# NOTE: edit cluster-configs/cluster.env for your system (this local demo reads local.env)
# Preemption and requeue, locally: what the sbatch scripts do when Slurm sends USR1 before the
# time limit (#SBATCH --signal=B:USR1@120). Runs through launch/mpirun-local.sh.
#
#   launch/preempt-example.sh                     # Fashion-MNIST ResNet-20 training, 2 epochs
#   SIGNAL_AFTER=5 launch/preempt-example.sh      # seconds before the USR1 (default 8)
#
# 1. The job starts with --resume auto on an empty out_dir: a fresh start.
# 2. After SIGNAL_AFTER seconds this shell gets USR1 (as the Slurm batch shell would) and
#    forwards it to mpirun, which forwards SIGUSR1 to every rank. At the next step the ranks
#    agree (a one-double allreduce), rank 0 writes a checkpoint, and the job exits 3
#    ("preempted, checkpoint written, resume to continue").
# 3. Exit status 3 is where the sbatch script calls `scontrol requeue`; here the same command
#    simply runs again. --resume auto finds the checkpoint and continues from that step,
#    bit-identically to a run that was never stopped (same number of ranks).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${OUT_DIR:-runs/preempt-example}"
signal_after="${SIGNAL_AFTER:-8}"
rm -rf "$out_dir"
args=(train --config cluster-configs/fashion-mnist-resnet20-base.yaml --out-dir "$out_dir"
    --epochs 2 --train-limit 6000 --test-limit 1000 --resume auto "$@")

run() {
    launch/mpirun-local.sh "${args[@]}" &
    pid=$!
    # `wait` returns early when a trapped signal arrives: wait until mpirun is gone, then once
    # more for its exit status (bash keeps it).
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
    status=0
    wait "$pid" || status=$?
}

trap 'echo "== USR1 received: forwarding it to mpirun" >&2; kill -USR1 "$pid" 2>/dev/null || true' USR1
echo "== 1. start (--resume auto, empty out_dir); USR1 to this shell in $signal_after s" >&2
(sleep "$signal_after" && kill -USR1 $$) &
run
echo "== job exited with status $status" >&2
if [ "$status" -ne 3 ]; then
    echo "error: expected status 3 (preempted); the job finished or failed first" >&2
    echo "hint: lower SIGNAL_AFTER" >&2
    exit 1
fi
trap - USR1

echo "== 2. 'requeued': the same command, --resume auto continues from the checkpoint" >&2
run
echo "== job exited with status $status" >&2
[ "$status" -eq 0 ] || exit "$status"
echo "== done: $out_dir/model.safetensors (metrics in $out_dir/metrics.jsonl)" >&2
