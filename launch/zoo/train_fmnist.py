"""Train a torchvision classifier briefly on Fashion-MNIST (an RGB image folder written by
`zoo.py fmnist-folder`) and export it with torch 2.13's default ONNX exporter, as a user would
before bringing the model to csgd-dist (docs/RESULTS.md, "Imported modern CNNs").

    python launch/zoo/train_fmnist.py --model mobilenet_v3_small --data runs/zoo-results/data \
        --epochs 3 --out runs/zoo-results/mobilenet_v3_small.onnx
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tv_cpu  # noqa: E402  (must precede torchvision)

tv_cpu.install()

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision import transforms  # noqa: E402

MEAN = [0.485, 0.456, 0.406]  # csgd-dist's imagefolder normalisation
STD = [0.229, 0.224, 0.225]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="folder with train/ and val/")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--exporter", choices=["dynamo", "legacy"], default="dynamo",
        help="dynamo: torch's default call (BatchNorm folded into the convs); legacy: "
        "dynamo=False, do_constant_folding=False (BatchNorm kept, what C-SGD trains best)")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    # csgd-dist's imagefolder transform without augmentation (eval, and train with
    # `--augment false`): shorter side to round(S·256/224), center crop S.
    tf = transforms.Compose([
        transforms.Resize(round(a.size * 256 / 224)), transforms.CenterCrop(a.size),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train = torchvision.datasets.ImageFolder(os.path.join(a.data, "train"), tf)
    val = torchvision.datasets.ImageFolder(os.path.join(a.data, "val"), tf)
    loader = torch.utils.data.DataLoader(train, batch_size=a.batch, shuffle=True)
    model = getattr(torchvision.models, a.model)(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=4e-5)
    steps = a.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps)
    start = time.time()
    for epoch in range(a.epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in torch.utils.data.DataLoader(val, batch_size=256):
                correct += (model(x).argmax(1) == y).sum().item()
        print(f"{a.model} epoch {epoch + 1}/{a.epochs}: loss {loss.item():.4f}, "
              f"val top-1 {100 * correct / len(val):.2f}% ({time.time() - start:.0f}s)", flush=True)
    model.eval()
    x = torch.zeros(1, 3, a.size, a.size)
    if a.exporter == "dynamo":
        torch.onnx.export(model, (x,), a.out)  # torch 2.13's default exporter
    else:
        torch.onnx.export(model, (x,), a.out, dynamo=False, do_constant_folding=False,
                          input_names=["input"], dynamic_axes={"input": {0: "N"}})
    print(f"exported {a.out} ({a.exporter})")


if __name__ == "__main__":
    main()
