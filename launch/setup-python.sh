#!/usr/bin/env bash
# Best-effort Python for the interoperability tests: a venv at .build/pyenv with numpy,
# onnxruntime, onnx, safetensors, tensorboard (its event reader judges our event files) and
# PyTorch's CPU wheel, pinned (it exports the models the import tests read). Tests use it through CSGD_PYTHON (launch/test.sh sets it) and
# skip, saying why, when a package is missing. Never fails: without python3, venv support or
# PyPI it prints one line and exits 0, and the Python tests skip.
set -uo pipefail
cd "$(dirname "$0")/.."
env_dir=.build/pyenv
# torchvision, timm, onnxscript (torch's default ONNX exporter) and Pillow: the model zoo
# check (launch/zoo-check.sh), pinned to the versions it was measured with. torch-pruning: the
# peer the C-SGD comparison runs (launch/peer/torch_pruning_peer.py), pinned likewise.
pkgs=(numpy onnxruntime onnx safetensors tensorboard torch==2.13.0 torchvision==0.28.0
    timm==1.0.31 onnxscript==0.7.2 pillow torch-pruning==1.6.1)
py=$env_dir/bin/python3
if [ -x "$py" ] && "$py" -c "import numpy, onnxruntime, onnx, safetensors, tensorboard, torch, torchvision, timm, onnxscript, PIL, torch_pruning" 2>/dev/null; then
    exit 0  # already set up
fi
if ! command -v python3 >/dev/null; then
    echo "setup-python: no python3 on PATH; the Python interoperability tests will skip"
    exit 0
fi
mkdir -p .build
if ! python3 -m venv "$env_dir" >/dev/null 2>&1; then
    echo "setup-python: python3 -m venv failed (Debian: apt-get install python3-venv); Python tests will skip"
    exit 0
fi
start=$SECONDS
if ! "$py" -m pip install -q --disable-pip-version-check "${pkgs[@]}" >/dev/null 2>&1; then
    echo "setup-python: pip install ${pkgs[*]} failed (PyPI unreachable?); Python tests will skip"
    exit 0
fi
echo "setup-python: $env_dir with ${pkgs[*]} ($((SECONDS - start)) s)"
