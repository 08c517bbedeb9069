#!/usr/bin/env bash
# docs/RESULTS.md, "Imported models": the three PyTorch fixtures (a VGG-BN, a MobileNetV2-style
# and a DenseNet-style net, briefly trained on Fashion-MNIST and exported with
# torch.onnx.export(..., do_constant_folding=False); Tests/CSGDImportTests/Fixtures) are
# imported, evaluated on the 10,000 test images, trained with C-SGD on 20,000 training images
# and pruned with no finetune; every step is a plain csgd-dist command. Outputs go to
# runs/import-<model>/; a finished step is skipped when run again.
#   bash launch/reproduce-import.sh            # all three (~15 min on 2 cores, 1 rank)
set -euo pipefail
cd "$(dirname "$0")/.."
exe=${CSGD_EXE:-.build/release/csgd-dist}
fixtures=Tests/CSGDImportTests/Fixtures
# fixture, C-SGD round target
for spec in "vgg-bn 1/2" "mobilenet-bn internal:0.5" "densenet-bn 1/2"; do
    read -r name target <<< "$spec"
    out=runs/import-$name
    mkdir -p "$out"
    model=$out/imported.safetensors
    if [ ! -f "$model" ]; then
        "$exe" import "$fixtures/$name.onnx" --output "$model" --mean 0.2860 --std 0.3530 \
            | tee "$out/import.log"
    fi
    if [ ! -f "$out/eval.log" ]; then
        "$exe" eval --input "$model" --test-limit 0 | tee "$out/eval.log.tmp"
        mv "$out/eval.log.tmp" "$out/eval.log"
    fi
    if [ ! -f "$out/csgd/pruned.safetensors" ]; then
        "$exe" csgd --from "$model" --train-limit 20000 --test-limit 0 --batch-size 64 \
            --epochs 4 --lr 0.02 --lr-schedule cosine --momentum 0.9 --rounds "$target" \
            --centripetal-strength 3 --vector-strength-factor 1 --log-every 1000 \
            --out-dir "$out/csgd" --overwrite | tee "$out/csgd.log"
    fi
done
grep -H "top-1" runs/import-*/eval.log
grep -H "pruned:" runs/import-*/csgd.log
