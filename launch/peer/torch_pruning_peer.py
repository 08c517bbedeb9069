#!/usr/bin/env python3
"""The Torch-Pruning peer of the C-SGD comparison (issue 29): prune one of our base models with
Torch-Pruning 1.6.1 to a FLOPs target counted by OUR counter, finetune it, and write it back as a
csgd-dist model file that `csgd-dist eval --input FILE` scores.

  --method groupnorm   tp.pruner.GroupNormPruner, its paper's recipe: sparse learning with its
                       group regulariser (--epochs-sparse, weight decay off as in its training
                       script), prune globally to the target, finetune (--epochs-finetune).
  --method magnitude   tp.pruner.MagnitudePruner with L1 importance: prune, then finetune.

The base is a CIFAR-style ResNet file (e.g. ResNet-20 trained on Fashion-MNIST), rebuilt in
PyTorch with docs/load_in_pytorch.py's CifarResNet. Data and optimisation are our trainer's for
Fashion-MNIST: the first --train-limit training images, 28x28 padded to 32x32 with zeros, random
crop with 4 px of zero padding plus horizontal flip, (pixel/255 - 0.2860)/0.3530, shuffled every
epoch, last partial batch dropped; Nesterov SGD (momentum 0.9), weight decay on conv/FC weights
only, biases and BN shifts at 2x the learning rate, cosine schedule per step within each phase.

The pruning ratio is found by bisection: each candidate prunes a copy of the net one-shot, its
FLOPs are tp.utils.count_ops_and_params's conv and linear multiply-adds without bias terms (our
counter's convention: csgd-dist's Graph.flopsPerImage), and the closest count to the target is
kept. It must lie within --flops-tolerance; the written file is then checked with our own binary
(`csgd-dist eval`), whose FLOPs, parameters and top-1 are printed beside PyTorch's.

Prints one JSON line on stdout (progress goes to stderr); an error is one line on stderr and a
non-zero exit. The output is written to a temporary file beside it and renamed once verified; an
existing output is refused unless --overwrite.

  python launch/peer/torch_pruning_peer.py --input runs/fmnist-r20-base/model.safetensors \\
      --output runs/peer/groupnorm-s1.safetensors --method groupnorm --target-flops 15.86M
"""
import argparse
import copy
import gzip
import importlib.metadata
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = "torch_pruning_peer"
MEAN, STD = 0.2860, 0.3530  # FashionMNIST.mean / .std (Sources/CSGDData/FashionMNIST.swift)


class PeerError(Exception):
    """A user-facing failure: one line, naming the flag or file."""


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise PeerError(message)


def parse_count(text, flag):
    """16M, 1.2G, 250k, 250000 -> an absolute count; 0.4 or 40% -> ('fraction', 0.4)."""
    t = text.strip()
    units = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "%": 0.01}
    try:
        if t and t[-1] in units:
            v = float(t[:-1]) * units[t[-1]]
            frac = t[-1] == "%"
        else:
            v = float(t)
            frac = v <= 1
    except ValueError:
        v, frac = float("nan"), False
    if not math.isfinite(v) or v <= 0 or (frac and v > 1):
        raise PeerError(f"{flag} '{text}' is neither a fraction kept (0.4, 40%) nor a count "
                        "with a unit (15.86M, 250k)")
    return ("fraction", v) if frac else ("absolute", v)


def parse_args(argv):
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="base model file (csgd-dist safetensors)")
    p.add_argument("--output", required=True, help="pruned + finetuned model file to write")
    p.add_argument("--method", required=True, choices=["groupnorm", "magnitude"])
    p.add_argument("--target-flops", default="15.86M",
                   help="FLOPs (multiply-adds per image, our counter) of the result: 15.86M, "
                        "or a fraction of the base kept (0.4); default 15.86M (C-SGD 5/8)")
    p.add_argument("--flops-tolerance", type=float, default=0.01,
                   help="largest relative distance of the result's FLOPs from the target")
    p.add_argument("--epochs-sparse", type=int, default=None,
                   help="groupnorm: sparse-learning epochs before pruning (default 10)")
    p.add_argument("--epochs-finetune", type=int, default=None,
                   help="epochs after pruning (default 10 for groupnorm, 20 for magnitude)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.03,
                   help="peak learning rate of each phase's cosine schedule")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--bias-lr-factor", type=float, default=2.0)
    p.add_argument("--reg", type=float, default=5e-4,
                   help="groupnorm: regulariser strength (Torch-Pruning's CIFAR ResNet-56 value)")
    p.add_argument("--local-pruning", action="store_true",
                   help="rank channels within each layer group instead of globally")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=0, help="first N training images (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="first N test images (0 = all)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    default_exe = os.environ.get("CSGD_EXE") or os.path.join(ROOT, ".build/release/csgd-dist")
    p.add_argument("--csgd-exe", default=default_exe,
                   help="our binary, which verifies the written file (default $CSGD_EXE, else "
                        ".build/release/csgd-dist of this checkout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    a = p.parse_args(argv)
    if a.method == "magnitude":
        if a.epochs_sparse:
            raise PeerError("--epochs-sparse applies to --method groupnorm only")
        a.epochs_sparse = 0
        a.epochs_finetune = 20 if a.epochs_finetune is None else a.epochs_finetune
    else:
        a.epochs_sparse = 10 if a.epochs_sparse is None else a.epochs_sparse
        a.epochs_finetune = 10 if a.epochs_finetune is None else a.epochs_finetune
    for flag in ("epochs_sparse", "epochs_finetune", "train_limit", "test_limit"):
        if getattr(a, flag) < 0:
            raise PeerError(f"--{flag.replace('_', '-')} must be >= 0")
    for flag in ("batch_size", "threads"):
        if getattr(a, flag) < 1:
            raise PeerError(f"--{flag.replace('_', '-')} must be >= 1")
    if not (a.lr > 0 and 0 <= a.momentum < 1 and a.weight_decay >= 0 and a.reg >= 0):
        raise PeerError("--lr must be > 0, --momentum in [0, 1), --weight-decay and --reg >= 0")
    if not 0 < a.flops_tolerance < 1:
        raise PeerError("--flops-tolerance must be in (0, 1)")
    a.target = parse_count(a.target_flops, "--target-flops")
    if not os.path.isfile(a.input):
        raise PeerError(f"--input {a.input}: no such file")
    if os.path.exists(a.output) and not a.overwrite:
        raise PeerError(f"--output {a.output} exists (pass --overwrite to replace it)")
    out_dir = os.path.dirname(os.path.abspath(a.output))
    if not os.path.isdir(out_dir):
        raise PeerError(f"--output {a.output}: folder {out_dir} does not exist")
    # By identity (device + inode, through symlinks), not by spelling; and only a regular
    # file is ever replaced (a rename over /dev/null as root would delete the device).
    if os.path.exists(a.output) and os.path.samefile(a.output, a.input):
        raise PeerError(f"--output {a.output} is the --input file")
    if os.path.lexists(a.output) and not (
            os.path.isfile(a.output) and not os.path.islink(a.output)):
        raise PeerError(f"--output {a.output} exists and is not a regular file")
    if not (os.path.isfile(a.csgd_exe) and os.access(a.csgd_exe, os.X_OK)):
        raise PeerError(f"--csgd-exe {a.csgd_exe}: not an executable (build csgd-dist first)")
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not os.path.isfile(os.path.join(a.data_dir, f)):
            raise PeerError(f"--data-dir {a.data_dir}: missing {f} "
                            "(Debian package dataset-fashion-mnist)")
    return a


# ---------------------------------------------------------------- model files

def load_base(path):
    """The base file as (CifarResNet, architecture dict)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    from load_in_pytorch import CifarResNet

    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except Exception as e:  # a truncated or foreign file
        raise PeerError(f"--input {path}: not a readable safetensors file ({e})")
    if "csgd.architecture" not in meta:
        raise PeerError(f"--input {path}: not a csgd-dist model (no csgd.architecture metadata)")
    arch = json.loads(meta["csgd.architecture"])
    m = re.fullmatch(r"resnet(\d+)", str(arch.get("model", "")))
    depth = int(m.group(1)) if m else 0
    if depth < 8 or (depth - 2) % 6 or depth in (18, 34, 50):
        raise PeerError(f"--input {path}: model {arch.get('model')} is not a CIFAR-style "
                        "ResNet-(6n+2)")
    if (arch.get("inputChannels"), arch.get("imageSize"), arch.get("numClasses")) != (1, 32, 10):
        raise PeerError(f"--input {path}: not a Fashion-MNIST model (1 channel, 32x32, "
                        "10 classes)")
    model = CifarResNet(arch)
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    expected = {k: v.shape for k, v in model.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    bad = [k for k in expected if k not in state or state[k].shape != expected[k]]
    if bad:
        raise PeerError(f"--input {path}: tensor {bad[0]} is missing or has the wrong shape")
    model.load_state_dict(state, strict=False)
    return model, arch


def conv_widths(model):
    """Output width of every conv in module order: csgd-dist's width order."""
    import torch.nn as nn
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def model_file_bytes(model, arch):
    """A csgd-dist model file of `model`: every parameter and BN buffer under its name, the
    architecture with the pruned widths, and the FNV-1a checksum of the data section that
    csgd-dist verifies on read."""
    from safetensors.torch import save
    tensors = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    meta = {"csgd.format": "csgd-dist/1",
            "csgd.architecture": json.dumps(arch, sort_keys=True, separators=(",", ":"))}

    def data_section(b):
        n = struct.unpack("<Q", b[:8])[0]
        return b[8 + n:]

    data = data_section(save(tensors, metadata=meta))
    meta["csgd.checksum"] = fnv1a(data)
    out = save(tensors, metadata=meta)
    if data_section(out) != data:
        raise PeerError("internal: the tensor data changed with the metadata")
    return out


# ---------------------------------------------------------------- data

def read_idx(path, offset):
    import numpy as np
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def fashion_mnist(data_dir, train, limit):
    """uint8 images [N, 1, 32, 32] (28x28 zero-padded by 2) and int64 labels."""
    import numpy as np
    import torch
    split = "train" if train else "t10k"
    raw = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), 16)
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), 8)
    n = len(labels) if limit == 0 else min(limit, len(labels))
    images = np.zeros((n, 1, 32, 32), np.uint8)
    images[:, 0, 2:30, 2:30] = raw[: n * 784].reshape(n, 28, 28)
    return torch.from_numpy(images), torch.from_numpy(labels[:n].astype(np.int64))


def normalise(x):
    return (x.float() / 255 - MEAN) / STD


def augment(images, gen):
    """Random 32x32 crop of the image zero-padded by 4 (in pixel space), then a random flip."""
    import torch
    n = images.shape[0]
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    top = torch.randint(0, 9, (n,), generator=gen)
    left = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    ar = torch.arange(32)
    rows = (top[:, None] + ar)[:, :, None]                      # [n, 32, 1]
    cols = left[:, None] + torch.where(flip[:, None], 31 - ar, ar)  # [n, 32]
    out = padded[torch.arange(n)[:, None, None], 0, rows, cols[:, None, :]]
    return out[:, None]


# ---------------------------------------------------------------- training

def param_groups(model, lr, weight_decay, bias_lr_factor, decay):
    """Our optimizer's groups: conv/FC weights decayed; BN scales undecayed; biases and BN
    shifts at bias_lr_factor x lr, undecayed (Sources/CSGDTraining/Optimizer.swift)."""
    import torch.nn as nn
    weights, scales, biases = [], [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weights.append(m.weight)
            if m.bias is not None:
                biases.append(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            scales.append(m.weight)
            biases.append(m.bias)
    return [
        {"params": weights, "scale": 1.0, "weight_decay": weight_decay if decay else 0.0},
        {"params": scales, "scale": 1.0, "weight_decay": 0.0},
        {"params": biases, "scale": bias_lr_factor, "weight_decay": 0.0},
    ]


def train_phase(model, name, epochs, a, data, gen, pruner=None):
    """`epochs` epochs of Nesterov SGD with a per-step cosine schedule from a.lr; with a
    pruner, its regulariser is added to the gradients before each step (and weight decay off,
    as Torch-Pruning's own sparse-learning loop does)."""
    import torch
    import torch.nn.functional as F
    images, labels = data
    steps = images.shape[0] // a.batch_size
    if epochs == 0:
        return
    groups = param_groups(model, a.lr, a.weight_decay, a.bias_lr_factor, decay=pruner is None)
    opt = torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum, nesterov=a.momentum > 0)
    total = epochs * steps
    it = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(images.shape[0], generator=gen)
        loss_sum, start = 0.0, time.time()
        for s in range(steps):
            lr = a.lr * 0.5 * (1 + math.cos(math.pi * it / total))
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            idx = order[s * a.batch_size:(s + 1) * a.batch_size]
            x = normalise(augment(images[idx], gen))
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=False)
            loss.backward()
            if pruner is not None:
                pruner.regularize(model)
            opt.step()
            loss_sum += loss.item()
            it += 1
        log(f"{name} epoch {epoch + 1}/{epochs}: train loss {loss_sum / steps:.4f} "
            f"({time.time() - start:.0f} s)")


def evaluate(model, data):
    """Correct top-1 predictions on the (un-augmented) test images."""
    import torch
    images, labels = data
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], 500):
            out = model(normalise(images[i:i + 500]))
            correct += int((out.argmax(1) == labels[i:i + 500]).sum())
    return correct


# ---------------------------------------------------------------- FLOPs and pruning

def our_flops(model):
    """Multiply-adds per 32x32 image of convs and linears, no bias terms: csgd-dist's
    convention (Graph.flopsPerImage), from tp.utils.count_ops_and_params's per-layer count."""
    import torch
    import torch.nn as nn
    import torch_pruning as tp
    _, _, layer_flops, _ = tp.utils.count_ops_and_params(
        model, example_inputs=torch.zeros(1, 1, 32, 32), layer_wise=True)
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m.bias is not None:
                raise PeerError("internal: a conv with a bias (our ResNets have none)")
            total += layer_flops[m]
        elif isinstance(m, nn.Linear):
            total += layer_flops[m] - (m.out_features if m.bias is not None else 0)
    return int(total)


def make_pruner(model, a, ratio):
    import torch
    import torch_pruning as tp
    common = dict(example_inputs=torch.zeros(1, 1, 32, 32), pruning_ratio=ratio,
                  global_pruning=not a.local_pruning, ignored_layers=[model.fc],
                  iterative_steps=1)
    if a.method == "groupnorm":
        # As Torch-Pruning's CIFAR "group_sl" recipe: group L2 norm, normalised by its max.
        imp = tp.importance.GroupMagnitudeImportance(p=2, normalizer="max")
        return tp.pruner.GroupNormPruner(model, importance=imp, reg=a.reg, **common)
    imp = tp.importance.MagnitudeImportance(p=1)
    return tp.pruner.MagnitudePruner(model, importance=imp, **common)


def prune_to(model, a, target, base_flops):
    """Bisection on the pruning ratio; returns (pruned copy, ratio, FLOPs) closest to target."""
    def trial(ratio):
        m = copy.deepcopy(model)
        if ratio > 0:
            make_pruner(m, a, ratio).step()
        return m, our_flops(m)

    best = (model, 0.0, base_flops)
    lo, hi = 0.0, 0.99
    while hi - lo > 1e-4:  # ~14 trials; a channel of ResNet-20 is 1/688 of the ratio
        mid = (lo + hi) / 2
        m, f = trial(mid)
        if abs(f - target) < abs(best[2] - target):
            best = (m, mid, f)
        if f == target:
            break
        if f > target:
            lo = mid
        else:
            hi = mid
    return best


# ---------------------------------------------------------------- verification

def csgd_eval(exe, path, test_limit, threads):
    """Our binary's FLOPs, params, top-1 and image count for `path`."""
    cmd = [exe, "eval", "--input", path, "--test-limit", str(test_limit), "--threads",
           str(threads)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"(\d+) params, ([\d.]+) MFLOPs/image; test loss [\d.naif]+ top-1 ([\d.]+)% "
                  r"top-5 [\d.]+% on (\d+) images", r.stdout)
    if r.returncode != 0 or not m:
        last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise PeerError(f"--csgd-exe {exe}: eval of the written file failed: {last[0]}")
    return int(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4))


def main(argv):
    a = parse_args(argv)
    import torch
    import torch_pruning as tp  # noqa: F401 (fail early, before any training)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    start = time.time()

    model, arch = load_base(a.input)
    train = fashion_mnist(a.data_dir, True, a.train_limit)
    test = fashion_mnist(a.data_dir, False, a.test_limit)
    if a.batch_size > train[0].shape[0]:
        raise PeerError(f"--batch-size {a.batch_size} is larger than the {train[0].shape[0]} "
                        "training images")
    base_flops = our_flops(model)
    target = a.target[1] * (base_flops if a.target[0] == "fraction" else 1)
    if target >= base_flops:
        raise PeerError(f"--target-flops {a.target_flops} is not below the base's "
                        f"{base_flops / 1e6:.2f}M")
    base_correct = evaluate(model, test)
    n_test = test[0].shape[0]
    log(f"base {arch['model']} widths {sorted(set(arch['widths']))}: {base_flops / 1e6:.2f} "
        f"MFLOPs, top-1 {100 * base_correct / n_test:.2f}% on {n_test} images; "
        f"target {target / 1e6:.4f} MFLOPs")

    if a.method == "groupnorm" and a.epochs_sparse > 0:
        sparse = make_pruner(model, a, 0.5)  # the ratio is unused: only regularize() is
        train_phase(model, "sparse", a.epochs_sparse, a, train, gen, pruner=sparse)
        del sparse
    model, ratio, flops = prune_to(model, a, target, base_flops)
    off = abs(flops - target) / target
    if off > a.flops_tolerance:
        raise PeerError(f"--target-flops {a.target_flops}: the closest pruning ratio "
                        f"({ratio:.4f}) gives {flops / 1e6:.4f} MFLOPs, {100 * off:.2f}% away "
                        f"(over --flops-tolerance {a.flops_tolerance})")
    pruned_correct = evaluate(model, test)
    log(f"pruned at ratio {ratio:.4f}: {flops / 1e6:.4f} MFLOPs, widths {conv_widths(model)}, "
        f"top-1 {100 * pruned_correct / n_test:.2f}% before finetuning")
    train_phase(model, "finetune", a.epochs_finetune, a, train, gen)
    correct = evaluate(model, test)
    wall = time.time() - start

    out_arch = dict(arch, widths=conv_widths(model))
    # The file must rebuild this very net: CifarResNet from the new widths, strict names.
    from load_in_pytorch import CifarResNet
    check = CifarResNet(out_arch)
    check.load_state_dict(model.state_dict())
    blob = model_file_bytes(model, out_arch)
    # An unpredictable name created with O_EXCL, so a planted symlink is never written through.
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(a.output)), prefix=os.path.basename(a.output) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        params, mflops, top1_ours, n_ours = csgd_eval(a.csgd_exe, tmp, a.test_limit, a.threads)
        if abs(mflops * 1e6 - flops) > 5e3 or n_ours != n_test:
            raise PeerError(f"--csgd-exe {a.csgd_exe}: eval counts {mflops:.2f} MFLOPs on "
                            f"{n_ours} images, PyTorch {flops / 1e6:.4f} on {n_test}")
        torch_params = sum(p.numel() for p in model.parameters())
        if params != torch_params:
            raise PeerError(f"--csgd-exe {a.csgd_exe}: eval counts {params} params, PyTorch "
                            f"{torch_params}")
        if os.path.exists(a.output) and not a.overwrite:
            raise PeerError(f"--output {a.output} appeared while running (pass --overwrite)")
        os.replace(tmp, a.output)
        if round(top1_ours * n_test / 100) != correct:
            log(f"warning: csgd-dist eval scores {top1_ours:.2f}%, PyTorch "
                f"{100 * correct / n_test:.2f}%")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

    print(json.dumps({
        "method": a.method, "seed": a.seed, "input": a.input, "output": a.output,
        "epochs_sparse": a.epochs_sparse, "epochs_finetune": a.epochs_finetune,
        "epochs": a.epochs_sparse + a.epochs_finetune, "wall_s": round(wall, 1),
        "global_pruning": not a.local_pruning, "pruning_ratio": round(ratio, 6),
        "flops": flops, "flops_target": int(round(target)), "mflops_csgd_eval": mflops,
        "flops_base": base_flops, "params": params, "widths": out_arch["widths"],
        "test_images": n_test, "correct": correct,
        "top1_pytorch": round(100 * correct / n_test, 2), "top1_csgd_eval": top1_ours,
        "top1_base_pytorch": round(100 * base_correct / n_test, 2),
        "top1_pruned_before_finetune": round(100 * pruned_correct / n_test, 2),
        "train_images": train[0].shape[0], "batch_size": a.batch_size, "lr": a.lr,
        "torch": torch.__version__, "torch_pruning": importlib.metadata.version("torch-pruning"),
    }), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except PeerError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(2)
