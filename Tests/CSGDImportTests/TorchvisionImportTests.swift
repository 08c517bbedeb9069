// torchvision import against PyTorch: a ResNet-50 written in this file in torchvision's module
// layout (no torchvision package offline), random weights and non-trivial BN statistics,
// saved with safetensors.torch.save_file; `csgd-dist import --torchvision resnet50` of it must
// give PyTorch's logits at 224×224. Needs torch and safetensors (CSGD_PYTHON).

import CSGDCore
import CSGDData
import CSGDModels
import CSGDRunFiles
import CSGDTestSupport
import Foundation
import XCTest

final class TorchvisionImportTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if Python.run(["-c", "import torch, safetensors"]) == nil {
            throw XCTSkip(
                "\(Python.executable) cannot import torch and safetensors "
                    + "(run launch/setup-python.sh, or set CSGD_PYTHON)")
        }
        dir = NSTemporaryDirectory() + "csgd-tv-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func python(_ args: [String]) throws {
        guard let r = Python.launch(["-c", Self.script] + args) else {
            throw CLIRunnerError("cannot start \(Python.executable)")
        }
        if r.status != 0 { throw CLIRunnerError("the PyTorch script failed: \(r.stderr)") }
    }

    func testResNet50LogitsEqualPyTorchs() throws {
        let sd = dir + "/sd.safetensors"
        let io = dir + "/io.safetensors"
        try python(["resnet50", sd, io])
        let model = dir + "/resnet50.safetensors"
        let r = try CLIRunner.succeed([
            "import", "--torchvision", "resnet50", "--weights", sd, "--output", model,
        ])
        XCTAssertTrue(r.output.contains("prunable"), r.output)
        print(r.output)
        let net = try Checkpoint.load(path: model).network
        XCTAssertEqual(net.architecture.preprocessing, .imageNet)
        XCTAssertEqual(net.architecture.imageSize, 224)
        let file = try SafeTensorsFile.read(path: io)
        let x = try file.floats("images")
        let theirs = try file.floats("logits")
        let exact = try file.floats("exact")
        XCTAssertEqual(x.count, 2 * 3 * 224 * 224)
        let ours = Array(
            UnsafeBufferPointer(
                start: net.forward(images: x, batch: 2, training: false), count: 2 * 1000))
        let diff = zip(ours, theirs).map { abs($0 - $1) }.max() ?? .infinity
        let diffExact = zip(ours, exact).map { abs($0 - $1) }.max() ?? .infinity
        let torchError = zip(theirs, exact).map { abs($0 - $1) }.max() ?? .infinity
        let scale = theirs.map(abs).max() ?? 0
        print(
            "resnet50 (torchvision layout), batch 2 at 224: max |logit diff| vs PyTorch float32 "
                + "\(diff), vs float64 \(diffExact) (PyTorch float32 vs float64: \(torchError); "
                + "max |logit| \(scale))")
        XCTAssertLessThanOrEqual(diff, 1e-4)
        XCTAssertLessThanOrEqual(diffExact, 1e-4)
        XCTAssertGreaterThan(scale, 0.5, "logits are degenerate")
        for i in 0..<2 {
            let a = ours[(i * 1000)..<(i * 1000 + 1000)]
            let b = theirs[(i * 1000)..<(i * 1000 + 1000)]
            XCTAssertEqual(a.firstIndex(of: a.max()!), b.firstIndex(of: b.max()!))
        }
    }

    /// A trained-like ResNet-50 (random weights, per-channel running statistics that differ
    /// inside every cluster) imported with a new 4-class head at 64×64, then one short C-SGD
    /// round on the block-internal convs under `mpirun -n 2`. lr·ε = 1 with momentum 0 puts
    /// every clustered tensor on its cluster mean at each step, so only the running
    /// statistics stand between the round and an exact prune: the round's end merges them
    /// (docs/pruning-rules.md), and the run's own check must hold to 1e-4 after 16 steps.
    func testImportedResNet50CSGDUnderMPIRunPrunesExactly() throws {
        try CLIRunner.requireMPIRun()
        let sd = dir + "/sd50.safetensors"
        try python(["resnet50", sd, ""])
        let model = dir + "/r50-4.safetensors"
        _ = try CLIRunner.succeed([
            "import", "--torchvision", "resnet50", "--weights", sd, "--num-classes", "4",
            "--image-size", "64", "--output", model,
        ])
        let data = dir + "/data"
        _ = try SyntheticImages.writeImageFolder(
            root: data + "/train", classes: 4, perClass: 8, width: 80, height: 72, seed: 1)
        _ = try SyntheticImages.writeImageFolder(
            root: data + "/val", classes: 4, perClass: 2, width: 80, height: 72, seed: 2)
        let packed = dir + "/packed"
        _ = try CLIRunner.succeed(["pack", data, packed, "--shard-size-mb", "1"])
        let out = dir + "/csgd"
        let r = try CLIRunner.mpirun(
            ranks: 2,
            args: [
                "csgd", "--from", model, "--dataset", "imagefolder", "--data-dir", packed,
                "--image-size", "64", "--train-limit", "0", "--test-limit", "0", "--rounds",
                "internal:0.5", "--epochs", "4", "--batch-size", "8", "--lr", "0.01",
                "--momentum", "0", "--no-nesterov", "--centripetal-strength", "100",
                "--vector-strength-factor", "1", "--bias-lr-factor", "1", "--cluster-method",
                "even", "--prune-tolerance", "1e-4", "--eval-every", "100", "--log-every", "1000",
                "--out-dir", out,
            ], timeout: 300)
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertTrue(r.output.contains("running statistics: merged"), r.output)
        let done = r.output.split(separator: "\n").last { $0.contains("C-SGD done") } ?? ""
        XCTAssertTrue(done.contains("% cut"), r.output)
        print("imported resnet50, 2 ranks: \(done)")
        let w = try Checkpoint.load(path: out + "/pruned.safetensors").network.architecture.widths
        XCTAssertEqual(w[1], 32, "layer1.0.conv1 is block-internal: 64 → 32")
        XCTAssertEqual(w[0], 64, "the stem keeps its width")
    }

    /// resnet18: `--num-classes` re-initialises fc (deterministically); missing, extra and
    /// mis-shaped tensors are one line naming them.
    func testNumClassesAndBadStateDicts() throws {
        let sd = dir + "/sd18.safetensors"
        try python(["resnet18", sd, "", "variants"])
        let a = dir + "/a.safetensors"
        let b = dir + "/b.safetensors"
        for out in [a, b] {
            _ = try CLIRunner.succeed([
                "import", "--torchvision", "resnet18", "--weights", sd, "--num-classes", "10",
                "--output", out, "--seed", "5",
            ])
        }
        let fa = try SafeTensorsFile.read(path: a)
        XCTAssertEqual(fa.shape("fc.weight"), [10, 512])
        XCTAssertEqual(
            try fa.floats("fc.weight"), try SafeTensorsFile.read(path: b).floats("fc.weight"))
        XCTAssertEqual(
            try fa.floats("layer1.0.conv1.weight"),
            try SafeTensorsFile.read(path: sd).floats("layer1.0.conv1.weight"))
        for (variant, needles) in [
            ("missing", ["missing layer1.0.bn1.running_var"]),
            ("extra", ["not in torchvision resnet18: layer5.weight"]),
            ("shape", ["conv1.weight has shape [64, 3, 5, 5]", "[64, 3, 7, 7]"]),
            ("half", ["conv1.weight", "F16"]),
            ("negvar", ["layer2.0.bn2.running_var[3] is -0.5", "cannot be negative"]),
        ] {
            let bad = dir + "/sd18-\(variant).safetensors"
            let r = try CLIRunner.run([
                "import", "--torchvision", "resnet18", "--weights", bad, "--output",
                dir + "/bad.safetensors",
            ])
            XCTAssertNotEqual(r.exitCode, 0, r.output)
            let errors = r.lines(startingWith: "error:")
            XCTAssertEqual(errors.count, 1, r.output)
            for n in needles + [bad] {
                XCTAssertTrue(errors.first?.contains(n) ?? false, "\(variant): \(r.output)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.safetensors"))
    }

    /// argv: resnet18|resnet50, state_dict path, images+logits path ("" = none), ["variants"].
    static let script = """
        import sys
        import torch, torch.nn as nn
        from safetensors.torch import save_file

        class BasicBlock(nn.Module):
            expansion = 1
            def __init__(self, inplanes, planes, stride=1, downsample=None):
                super().__init__()
                self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
                self.downsample = downsample
            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                idt = x if self.downsample is None else self.downsample(x)
                return self.relu(out + idt)

        class Bottleneck(nn.Module):
            expansion = 4
            def __init__(self, inplanes, planes, stride=1, downsample=None):
                super().__init__()
                self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
                self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
                self.bn3 = nn.BatchNorm2d(planes * 4)
                self.relu = nn.ReLU(inplace=True)
                self.downsample = downsample
            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.relu(self.bn2(self.conv2(out)))
                out = self.bn3(self.conv3(out))
                idt = x if self.downsample is None else self.downsample(x)
                return self.relu(out + idt)

        class ResNet(nn.Module):  # torchvision.models.resnet.ResNet's layout and init
            def __init__(self, block, layers, num_classes=1000):
                super().__init__()
                self.inplanes = 64
                self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
                self.bn1 = nn.BatchNorm2d(64)
                self.relu = nn.ReLU(inplace=True)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
                self.layer1 = self._make_layer(block, 64, layers[0])
                self.layer2 = self._make_layer(block, 128, layers[1], 2)
                self.layer3 = self._make_layer(block, 256, layers[2], 2)
                self.layer4 = self._make_layer(block, 512, layers[3], 2)
                self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
                self.fc = nn.Linear(512 * block.expansion, num_classes)
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            def _make_layer(self, block, planes, blocks, stride=1):
                downsample = None
                if stride != 1 or self.inplanes != planes * block.expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * block.expansion))
                layers = [block(self.inplanes, planes, stride, downsample)]
                self.inplanes = planes * block.expansion
                layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
                return nn.Sequential(*layers)
            def forward(self, x):
                x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
                x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
                return self.fc(torch.flatten(self.avgpool(x), 1))

        name, sd_path, io_path = sys.argv[1], sys.argv[2], sys.argv[3]
        torch.manual_seed(0)
        torch.set_num_threads(1)
        model = (ResNet(Bottleneck, [3, 4, 6, 3]) if name == "resnet50"
                 else ResNet(BasicBlock, [2, 2, 2, 2]))
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # trained-looking BN: scales, shifts and running statistics
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.uniform_(-0.2, 0.2, generator=g)
                    m.momentum = None  # running stats = the average over the batches below
            model.train()
            for _ in range(2):  # running stats from batches, so eval activations stay O(1)
                model(torch.randn(2, 3, 224, 224, generator=g))
        model.eval()
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, sd_path)
        if io_path:
            x = torch.randn(2, 3, 224, 224, generator=g)
            with torch.no_grad():
                logits = model(x)
                # The exact function (float64), to tell float32 rounding from a wrong mapping.
                exact = model.double()(x.double()).float()
            save_file({"images": x, "logits": logits, "exact": exact}, io_path)
        if len(sys.argv) > 4:
            base = sd_path[:-len(".safetensors")]
            save_file({k: v for k, v in sd.items() if k != "layer1.0.bn1.running_var"},
                      base + "-missing.safetensors")
            save_file(dict(sd, **{"layer5.weight": torch.zeros(3)}), base + "-extra.safetensors")
            save_file(dict(sd, **{"conv1.weight": torch.zeros(64, 3, 5, 5)}),
                      base + "-shape.safetensors")
            save_file(dict(sd, **{"conv1.weight": sd["conv1.weight"].half()}),
                      base + "-half.safetensors")
            var = sd["layer2.0.bn2.running_var"].clone()
            var[3] = -0.5
            save_file(dict(sd, **{"layer2.0.bn2.running_var": var}),
                      base + "-negvar.safetensors")
        """
}
