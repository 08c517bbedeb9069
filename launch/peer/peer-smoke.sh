#!/usr/bin/env bash
# The Torch-Pruning peer (launch/peer/torch_pruning_peer.py) end to end on a tiny setting, about a
# minute on one core: a ResNet-20 at a quarter of its widths trained by csgd-dist for two epochs
# on 480 images, then each peer method (groupnorm: 1 sparse + 1 finetune epoch; magnitude: 1
# finetune epoch) pruned to 40 % of its FLOPs and written back. For each written file, our own
# `csgd-dist eval` must count the same FLOPs and params as the script, score the same number of
# the 200 test images correct as PyTorch did, and give PyTorch's logits (the file rebuilt with
# docs/load_in_pytorch.py's CifarResNet) on the images it evaluated; an existing output must be
# refused. Exits non-zero on any mismatch; prints one `peer-smoke: ok <method> ...` line each.
# Tests/CSGDCLITests/TorchPruningPeerTests.swift runs it in CI.
#
#   bash launch/peer/peer-smoke.sh [WORK_DIR]     # default: a temporary folder, removed after
#
# Environment: CSGD_EXE (default .build/release/csgd-dist), CSGD_PYTHON (default
# .build/pyenv/bin/python3, made by launch/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=${CSGD_EXE:-.build/release/csgd-dist}
py=${CSGD_PYTHON:-.build/pyenv/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
if [ $# -gt 0 ]; then
    work=$1
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
fail() { echo "peer-smoke: FAIL: $*" >&2; exit 1; }
[ -x "$exe" ] || fail "no csgd-dist at $exe (build it, or set CSGD_EXE)"
"$py" -c "import numpy, safetensors, torch, torch_pruning" 2>/dev/null \
    || fail "$py cannot import numpy, safetensors, torch and torch_pruning (launch/setup-python.sh)"

test_n=200
"$exe" train --width-multiplier 0.25 --train-limit 480 --test-limit "$test_n" --batch-size 24 \
    --epochs 2 --log-every 1000 --out-dir "$work/base" > "$work/base.log" 2>&1 \
    || fail "csgd-dist train: $(tail -n 1 "$work/base.log")"
base=$work/base/model.safetensors

for method in groupnorm magnitude; do
    out=$work/$method.safetensors
    epochs=(--epochs-finetune 1)
    [ "$method" = groupnorm ] && epochs+=(--epochs-sparse 1)
    "$py" launch/peer/torch_pruning_peer.py --input "$base" --output "$out" --method "$method" \
        "${epochs[@]}" --target-flops 0.4 --flops-tolerance 0.05 --train-limit 480 \
        --test-limit "$test_n" --batch-size 24 --csgd-exe "$exe" \
        > "$work/$method.json" 2> "$work/$method.log" \
        || fail "$method: $(tail -n 1 "$work/$method.log")"
    [ -f "$out" ] || fail "$method: the script wrote no $out"
    "$exe" eval --input "$out" --test-limit "$test_n" --dump-logits "$work/$method.dump" \
        > "$work/$method.eval" 2>&1 \
        || fail "$method: csgd-dist eval: $(tail -n 1 "$work/$method.eval")"
    # Our eval's line vs the script's JSON; then PyTorch on the images our eval dumped.
    "$py" - "$work/$method.json" "$work/$method.eval" "$work/$method.dump" "$out" "$test_n" \
        <<'EOF' || fail "$method: see above"
import json, re, sys
import torch
from safetensors import safe_open
from safetensors.torch import load_file
sys.path.insert(0, "docs")
from load_in_pytorch import CifarResNet

peer = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
line = open(sys.argv[2]).read()
m = re.search(r"(\d+) params, ([\d.]+) MFLOPs/image; test loss \S+ top-1 ([\d.]+)% "
              r"top-5 [\d.]+% on (\d+) images", line)
assert m, f"no result line in csgd-dist eval's output: {line!r}"
params, mflops, top1, n = int(m[1]), float(m[2]), float(m[3]), int(m[4])
ours_correct = round(top1 * n / 100)
problems = []
if n != int(sys.argv[5]) or peer["test_images"] != n:
    problems.append(f"test images: eval {n}, script {peer['test_images']}")
if ours_correct != peer["correct"] or abs(top1 - peer["top1_pytorch"]) > 0.01:
    problems.append(f"top-1: csgd-dist eval {top1:.2f}% ({ours_correct}/{n}), PyTorch "
                    f"{peer['top1_pytorch']:.2f}% ({peer['correct']}/{n})")
if abs(mflops * 1e6 - peer["flops"]) > 5e3:
    problems.append(f"FLOPs: csgd-dist eval {mflops:.2f}M, script {peer['flops']}")
if abs(peer["flops"] - peer["flops_target"]) > 0.05 * peer["flops_target"]:
    problems.append(f"FLOPs {peer['flops']} not within 5% of the target {peer['flops_target']}")
if params != peer["params"]:
    problems.append(f"params: csgd-dist eval {params}, script {peer['params']}")
# PyTorch on exactly the images our eval evaluated, with the written file rebuilt.
dump = load_file(sys.argv[3])
with safe_open(sys.argv[4], "pt") as f:
    arch = json.loads(f.metadata()["csgd.architecture"])
net = CifarResNet(arch)
net.load_state_dict(load_file(sys.argv[4]), strict=False)
net.eval()
with torch.no_grad():
    logits = net(dump["images"])
scale = float(dump["logits"].abs().max())
diff = float((logits - dump["logits"]).abs().max())
if not diff <= 1e-4 * max(1.0, scale):
    problems.append(f"logits: max |PyTorch - csgd-dist| {diff:.3g} (largest {scale:.3g})")
torch_correct = int((logits.argmax(1) == dump["labels"].long()).sum())
if torch_correct != peer["correct"]:
    problems.append(f"PyTorch on our eval's images: {torch_correct} correct, the script "
                    f"{peer['correct']} on its own")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"peer-smoke: ok {peer['method']} FLOPs {peer['flops']} (target {peer['flops_target']}, "
      f"csgd-dist eval {mflops:.2f}M) params {params} widths {peer['widths']} top-1 PyTorch "
      f"{peer['top1_pytorch']:.2f}% = csgd-dist eval {top1:.2f}% ({ours_correct}/{n}) "
      f"max |dlogit| {diff:.2g} wall {peer['wall_s']} s")
EOF
    # An existing output is refused without --overwrite, in one line naming the flag.
    if "$py" launch/peer/torch_pruning_peer.py --input "$base" --output "$out" \
        --method "$method" --csgd-exe "$exe" > /dev/null 2> "$work/refused.log"; then
        fail "$method: an existing --output was overwritten without --overwrite"
    fi
    [ "$(wc -l < "$work/refused.log")" -eq 1 ] && grep -q -- "--output" "$work/refused.log" \
        || fail "$method: the refusal is not one line naming --output: $(cat "$work/refused.log")"
done
# Even with --overwrite: the input under another name (hard link, symlink) and a device are
# refused and left untouched.
ln -sfn "$base" "$work/alias.safetensors"
ln -f "$base" "$work/hard.safetensors"
before=$(sha256sum < "$base")
for out in "$work/hard.safetensors" "$work/alias.safetensors" /dev/null; do
    if "$py" launch/peer/torch_pruning_peer.py --input "$base" --output "$out" --overwrite \
        --method magnitude --target-flops 0.5 --epochs-finetune 0 --train-limit 48 --batch-size 16 \
        --test-limit 20 --csgd-exe "$exe" > /dev/null 2> "$work/refused.log"
    then
        fail "--output $out --overwrite was accepted"
    fi
    [ "$(wc -l < "$work/refused.log")" -eq 1 ] && grep -q -- "--output $out" "$work/refused.log" \
        || fail "--output $out: the refusal is not one line naming it: $(cat "$work/refused.log")"
done
[ "$(sha256sum < "$base")" = "$before" ] && [ -c /dev/null ] \
    || fail "the input or /dev/null changed"
