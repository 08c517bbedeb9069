#!/usr/bin/env bash
# README command 1: set up, then run the bundled default job — C-SGD on ResNet-20 from scratch
# on 10,000 Fashion-MNIST images (6 epochs), prune every layer to 5/8 width with no finetune,
# and print test accuracy before/after pruning, the per-layer widths and the FLOPs cut; then
# write the run's HTML report. Extra arguments are passed on, e.g. `launch/quickstart.sh
# --epochs 2` (with a different --out-dir, the report goes there). Running it again starts the
# job over (--overwrite: the previous run's records move to <out_dir>/overwritten-<time>/);
# `launch/quickstart.sh --resume` continues an interrupted run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
overwrite=(--overwrite)
if [[ " $* " == *" --resume "* ]]; then overwrite=(); fi
.build/release/csgd-dist csgd ${overwrite[@]+"${overwrite[@]}"} "$@"
config_args=()
for a in "$@"; do [[ "$a" == --resume || "$a" == --overwrite ]] || config_args+=("$a"); done
out=$(.build/release/csgd-dist config ${config_args[@]+"${config_args[@]}"} |
    sed -n 's/^out_dir: *//p' | tr -d '"')
.build/release/csgd-dist report "${out:-runs/quickstart}"
