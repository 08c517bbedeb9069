"""Load a csgd-dist model file (pruned or not) into PyTorch and evaluate it.

The safetensors file carries torchvision-style tensor names and its own widths
(metadata "csgd.architecture"), so the network is rebuilt from the file alone:

    python docs/load_in_pytorch.py runs/fmnist-r20-csgd/pruned.safetensors [N]

evaluates the first N (default 1000) Fashion-MNIST test images from the Debian package and
prints the top-1 accuracy, which should match `csgd-dist eval --input FILE --test-limit N`.
Needs torch, safetensors and numpy. CIFAR-style ResNets (basic blocks, 1x1 projection
shortcuts) only; training state tensors (optim.*) are ignored.
"""
import gzip, json, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class Block(nn.Module):
    def __init__(self, cin, mid, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1:  # the structure of the original net: projections where stages change
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) with per-conv widths in csgd-dist's conv order."""

    def __init__(self, arch):
        super().__init__()
        w = iter(arch["widths"])
        blocks = (int(arch["model"][6:]) - 2) // 6
        self.conv1 = nn.Conv2d(arch["inputChannels"], next(w), 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.conv1.out_channels)
        cin = self.conv1.out_channels
        for stage in range(3):
            layers = []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                mid, cout = next(w), next(w)
                if stride != 1:
                    next(w)  # the projection's width equals cout (they are added)
                layers.append(Block(cin, mid, cout, stride))
                cin = cout
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, arch["numClasses"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with safe_open(path, "pt") as f:
        arch = json.loads(f.metadata()["csgd.architecture"])
    model = CifarResNet(arch)
    state = {k: v for k, v in load_file(path).items() if not k.startswith("optim.")}
    model.load_state_dict(state, strict=False)  # strict=False: BN num_batches_tracked only
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    assert not missing, f"missing tensors: {missing}"
    d = "/usr/share/datasets/fashion-mnist/"
    images = np.frombuffer(gzip.open(d + "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(d + "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    x = torch.tensor(images[: n * 784].reshape(n, 1, 28, 28), dtype=torch.float32) / 255
    x = F.pad((x - 0.2860) / 0.3530, (2, 2, 2, 2), value=(0 - 0.2860) / 0.3530)
    model.eval()
    with torch.no_grad():
        top1 = (model(x).argmax(1).numpy() == labels[:n]).mean()
    print(f"{arch['model']} widths {sorted(set(arch['widths']))}: PyTorch top-1 {100 * top1:.2f}% on {n} images")


if __name__ == "__main__":
    main()
