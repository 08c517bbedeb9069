#!/usr/bin/env bash
# docs/RESULTS.md, "Imported modern CNNs": an SE net (torchvision MobileNetV3-Small) and a
# split/shuffle net (ShuffleNetV2 x0.5) trained briefly on Fashion-MNIST in PyTorch (64×64 RGB,
# 20,000 training images, 2 epochs), exported with BatchNorm kept (`dynamo=False,
# do_constant_folding=False`: the README's export for C-SGD; the default export folds BN into
# the convs and C-SGD would train a net without normalisation), imported, then one C-SGD round
# (3 epochs) and the exact prune, no finetune. Every csgd-dist step is a plain command;
# outputs go to runs/zoo-results/<model>/ (a finished step is skipped when run again).
#   bash launch/reproduce-zoo-results.sh          (~30 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${CSGD_EXE:-.build/release/csgd-dist}
py=.build/pyenv/bin/python3
root=runs/zoo-results
data=$root/data
mkdir -p "$root"
"$py" launch/zoo/zoo.py fmnist-folder --out "$data" --size 64 --train 20000 --test 10000
# No augmentation: the images PyTorch trained on (resize to 73, center crop 64) in both.
common=(--dataset imagefolder --data-dir "$data" --image-size 64 --train-limit 0 --test-limit 0
    --augment false)
for spec in "mobilenet_v3_small internal:0.5" "shufflenet_v2_x0_5 internal:0.5"; do
    read -r model target <<< "$spec"
    out=$root/$model
    mkdir -p "$out"
    [ -f "$out/model.onnx" ] || "$py" launch/zoo/train_fmnist.py --model "$model" --data "$data" \
        --epochs 2 --exporter legacy --out "$out/model.onnx" | tee "$out/train.log"
    [ -f "$out/imported.safetensors" ] || "$exe" import "$out/model.onnx" \
        --output "$out/imported.safetensors" --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \
        | tee "$out/import.log"
    [ -f "$out/eval.log" ] || "$exe" eval --input "$out/imported.safetensors" "${common[@]}" \
        | tee "$out/eval.log"
    [ -f "$out/csgd/pruned.safetensors" ] || "$exe" csgd --from "$out/imported.safetensors" \
        "${common[@]}" --batch-size 64 --epochs 3 --lr 0.003 --momentum 0.9 --rounds "$target" \
        --centripetal-strength 3 --vector-strength-factor 1 --log-every 1000 \
        --out-dir "$out/csgd" --overwrite | tee "$out/csgd.log"
done
grep -H "top-1" $root/*/train.log $root/*/eval.log | tail -n 20
grep -H "pruned:" $root/*/csgd.log
