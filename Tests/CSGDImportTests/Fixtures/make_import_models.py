"""Writes the ONNX fixtures of the import tests (Tests/CSGDImportTests/Fixtures/*.onnx).

Three small CNNs defined in PyTorch -- a VGG with BatchNorm, a MobileNetV2-style net
(depthwise convs, ReLU6, inverted residuals with Add) and a DenseNet-style net (multi-input
concat, pre-activation BN, average-pool transitions) -- each trained briefly on Fashion-MNIST
(zero-padded to 32x32 and normalised as csgd-dist loads it), then exported with the legacy
TorchScript exporter (`torch.onnx.export(..., dynamo=False)`) in both forms real users produce:

  <name>.onnx     the default, do_constant_folding=True: eval-mode BatchNorm folded into the
                  conv weights and a conv bias; Clip's bounds fed through Constant nodes
  <name>-bn.onnx  do_constant_folding=False: BatchNormalization nodes kept

Run from the repository root with the test Python (torch 2.13.0 CPU):
  .build/pyenv/bin/python3 Tests/CSGDImportTests/Fixtures/make_import_models.py
It is deterministic up to PyTorch's CPU kernels; the tests compare against onnxruntime on the
committed files, so regenerating only changes the numbers, not what is checked.
"""

import gzip
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist/"
MEAN, STD = 0.2860, 0.3530
OUT = os.path.dirname(os.path.abspath(__file__))


def load(split):
    raw = np.frombuffer(gzip.open(DATA + split + "-images-idx3-ubyte.gz").read(), np.uint8,
                        offset=16).reshape(-1, 1, 28, 28).astype(np.float32)
    labels = np.frombuffer(gzip.open(DATA + split + "-labels-idx1-ubyte.gz").read(), np.uint8,
                           offset=8).astype(np.int64)
    # csgd-dist's Fashion-MNIST input: pixel/255 normalised, zero pixels padded 28 -> 32.
    x = np.pad((raw / 255 - np.float32(MEAN)) / np.float32(STD), ((0, 0), (0, 0), (2, 2), (2, 2)),
               constant_values=(0 - np.float32(MEAN)) / np.float32(STD))
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels)


def conv_bn_relu(cin, cout, k=3, stride=1, groups=1, relu6=False):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU6() if relu6 else nn.ReLU()]


class VGG(nn.Module):
    """VGG-style: conv-BN-ReLU stacks, max pools, a two-layer classifier with dropout; the
    flatten is a Reshape to [-1, C*H*W]."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 16), *conv_bn_relu(16, 16), nn.MaxPool2d(2),
            *conv_bn_relu(16, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2),
            *conv_bn_relu(32, 48), nn.MaxPool2d(3, 2, 1))
        self.classifier = nn.Sequential(
            nn.Linear(48 * 4 * 4, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x).reshape(-1, 48 * 4 * 4))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            *conv_bn_relu(cin, mid, 1, relu6=True),
            *conv_bn_relu(mid, mid, 3, stride, groups=mid, relu6=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNet(nn.Module):
    """MobileNetV2-style: ReLU6, depthwise 3x3, inverted residuals (Add), a 2-group 1x1 conv,
    global average pool, `view(N, -1)` flatten (Shape/Gather/Concat/Reshape in the file)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(1, 16, relu6=True),
            InvertedResidual(16, 16, 1, 2), InvertedResidual(16, 24, 2, 3),
            InvertedResidual(24, 24, 1, 3), InvertedResidual(24, 32, 2, 3),
            InvertedResidual(32, 32, 1, 3),
            *conv_bn_relu(32, 96, 1, groups=2, relu6=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, 10))

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, features):
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseNet(nn.Module):
    """DenseNet-BC-style (torchvision's layout): every layer reads the concat of all earlier
    feature maps through a pre-activation BN; transitions BN-ReLU-conv1x1-AvgPool; an
    AvgPool with count_include_pad=False at the end."""

    def __init__(self, growth=8):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.block1 = nn.ModuleList([DenseLayer(16 + i * growth, growth) for i in range(3)])
        c = 16 + 3 * growth
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                                   nn.AvgPool2d(2))
        c //= 2
        self.block2 = nn.ModuleList([DenseLayer(c + i * growth, growth) for i in range(3)])
        c += 3 * growth
        self.norm5 = nn.BatchNorm2d(c)
        self.pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
        self.fc = nn.Linear(c * 8 * 8, 10)

    def forward(self, x):
        feats = [self.conv0(x)]
        for layer in self.block1:
            feats.append(layer(feats))
        feats = [self.trans(torch.cat(feats, 1))]
        for layer in self.block2:
            feats.append(layer(feats))
        x = self.pool(torch.relu(self.norm5(torch.cat(feats, 1))))
        return self.fc(torch.flatten(x, 1))


def train(model, x, y, steps, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    x, y = load("train")
    tx, ty = load("t10k")
    # (name, net, training steps, opset of the folded export, opset of the BN-kept export)
    nets = [("vgg", VGG, 300, 11, 17), ("mobilenet", MobileNet, 400, 13, 21),
            ("densenet", DenseNet, 300, 15, 20)]
    for i, (name, cls, steps, opset_folded, opset_bn) in enumerate(nets):
        torch.manual_seed(100 + i)
        model = cls()
        train(model, x, y, steps, seed=200 + i)
        with torch.no_grad():
            acc = (model(tx[:2000]).argmax(1) == ty[:2000]).float().mean().item()
        for suffix, fold, opset in [("", True, opset_folded), ("-bn", False, opset_bn)]:
            path = os.path.join(OUT, name + suffix + ".onnx")
            torch.onnx.export(model, x[:2], path, dynamo=False, opset_version=opset,
                              do_constant_folding=fold, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N"}})
            print(f"{path}: {steps} steps, test accuracy {acc:.3f} (first 2000), opset {opset}, "
                  f"{os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
