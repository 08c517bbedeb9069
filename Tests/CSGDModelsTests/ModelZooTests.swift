import CSGDCore
import CSGDKernels
import CSGDModels
import CSGDTestSupport
import Foundation
import XCTest

/// The built-in VGG, MobileNetV2 and DenseNet families against independent PyTorch definitions
/// (written below from the papers, torchvision's layout and the official C-SGD code): parameter
/// count, multiply-adds, logits width, and for MobileNetV2 torchvision's state_dict names.
final class ModelZooTests: XCTestCase {
    /// One PyTorch model per line of argv: `family channels size classes`; prints one JSON object
    /// per model with params, macs (convs + linears, per image), classes and state_dict names.
    static let reference = #"""
        import json, sys, torch, torch.nn as nn
        F = nn.functional

        def vgg16(inch, size, classes):
            # The official C-SGD CIFAR VGG: 13 conv-BN-ReLU, 2x2 max pool after each stage
            # (skipped at 1x1), flatten, linear 512, ReLU, linear classes.
            layers, c, side = [], inch, size
            for v in [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
                      512, 512, 512, 'M']:
                if v == 'M':
                    if side >= 2:
                        layers.append(nn.MaxPool2d(2)); side //= 2
                else:
                    layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                               nn.ReLU()]
                    c = v
            return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * side * side, 512),
                                 nn.ReLU(), nn.Linear(512, classes))

        class ConvBNReLU6(nn.Sequential):
            def __init__(self, i, o, k, stride, groups=1):
                super().__init__(nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups,
                                           bias=False), nn.BatchNorm2d(o), nn.ReLU6())

        class InvertedResidual(nn.Module):
            def __init__(self, i, o, stride, t):
                super().__init__()
                h = i * t
                layers = [ConvBNReLU6(i, h, 1, 1)] if t != 1 else []
                layers += [ConvBNReLU6(h, h, 3, stride, groups=h), nn.Conv2d(h, o, 1, bias=False),
                           nn.BatchNorm2d(o)]
                self.conv = nn.Sequential(*layers)
                self.res = stride == 1 and i == o
            def forward(self, x):
                return x + self.conv(x) if self.res else self.conv(x)

        class MobileNetV2(nn.Module):
            def __init__(self, inch, size, classes):
                super().__init__()
                cifar = size <= 64
                settings = [(1, 16, 1, 1), (6, 24, 2, 1 if cifar else 2), (6, 32, 3, 2),
                            (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
                f, c = [ConvBNReLU6(inch, 32, 3, 1 if cifar else 2)], 32
                for t, o, n, s in settings:
                    for i in range(n):
                        f.append(InvertedResidual(c, o, s if i == 0 else 1, t)); c = o
                f.append(ConvBNReLU6(c, 1280, 1, 1))
                self.features = nn.Sequential(*f)
                self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))
            def forward(self, x):
                x = F.adaptive_avg_pool2d(self.features(x), 1)
                return self.classifier(torch.flatten(x, 1))

        class DenseNet(nn.Module):
            def __init__(self, inch, size, classes, depth, k):
                super().__init__()
                n = (depth - 4) // 3
                self.conv0 = nn.Conv2d(inch, 16, 3, padding=1, bias=False)
                c = 16
                self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
                for b in range(3):
                    block = nn.ModuleList()
                    for _ in range(n):
                        block.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(),
                                                   nn.Conv2d(c, k, 3, padding=1, bias=False)))
                        c += k
                    self.blocks.append(block)
                    if b < 2:
                        self.transitions.append(nn.Sequential(
                            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1, bias=False),
                            nn.AvgPool2d(2)))
                self.final = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
                self.fc = nn.Linear(c, classes)
            def forward(self, x):
                x = self.conv0(x)
                for b in range(3):
                    for layer in self.blocks[b]:
                        x = torch.cat([x, layer(x)], 1)
                    if b < 2:
                        x = self.transitions[b](x)
                x = F.adaptive_avg_pool2d(self.final(x), 1)
                return self.fc(torch.flatten(x, 1))

        out = []
        for spec in sys.argv[1:]:
            family, inch, size, classes = spec.split()
            inch, size, classes = int(inch), int(size), int(classes)
            if family == 'vgg16':
                m = vgg16(inch, size, classes)
            elif family == 'mobilenetv2':
                m = MobileNetV2(inch, size, classes)
            else:
                depth, _, k = family[len('densenet'):].partition('-k')
                m = DenseNet(inch, size, classes, int(depth), int(k or 12))
            macs = [0]
            def hook(mod, inp, outp):
                if isinstance(mod, nn.Conv2d):
                    macs[0] += outp.numel() * mod.in_channels // mod.groups * \
                        mod.kernel_size[0] * mod.kernel_size[1]
                else:
                    macs[0] += mod.in_features * mod.out_features
            for mod in m.modules():
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    mod.register_forward_hook(hook)
            m.eval()
            with torch.no_grad():
                y = m(torch.zeros(1, inch, size, size))
            names = sorted(k for k in m.state_dict() if not k.endswith('num_batches_tracked'))
            out.append({'params': sum(p.numel() for p in m.parameters()), 'macs': macs[0],
                        'classes': y.shape[1], 'names': names})
        print(json.dumps(out))
        """#

    struct Reference: Decodable {
        let params: Int
        let macs: Int
        let classes: Int
        let names: [String]
    }

    func testFamiliesMatchPyTorchDefinitions() throws {
        if Python.run(["-c", "import torch"]) == nil {
            XCTFail("\(Python.executable) has no torch (run launch/setup-python.sh)")
            return
        }
        let cases: [(model: String, channels: Int, size: Int, classes: Int)] = [
            ("vgg16", 3, 32, 10), ("vgg16", 1, 28, 10), ("mobilenetv2", 3, 32, 10),
            ("mobilenetv2", 1, 28, 10), ("mobilenetv2", 3, 224, 1000), ("densenet40", 3, 32, 10),
            ("densenet40", 1, 28, 10), ("densenet40-k24", 3, 32, 100),
        ]
        guard
            let r = Python.launch(
                ["-c", Self.reference] + cases.map { "\($0.0) \($0.1) \($0.2) \($0.3)" })
        else { return XCTFail("cannot start \(Python.executable)") }
        XCTAssertEqual(r.status, 0, r.stderr)
        let refs = try JSONDecoder().decode([Reference].self, from: Data(r.stdout.utf8))
        XCTAssertEqual(refs.count, cases.count)
        for (c, ref) in zip(cases, refs) {
            let what = "\(c.model) \(c.channels)×\(c.size)² \(c.classes) classes"
            let a = try Architecture.standard(
                model: c.model, inputChannels: c.channels, imageSize: c.size,
                numClasses: c.classes)
            let g = try a.graph()
            XCTAssertEqual(g.parameterCount, ref.params, "\(what): parameters")
            XCTAssertEqual(g.flopsPerImage, ref.macs, "\(what): multiply-adds")
            XCTAssertEqual(g.tensors[g.logits.index].c, ref.classes, what)
            if c.model == "mobilenetv2" {
                // torchvision's module names, so its state_dict loads by name.
                let ours = (g.specs.map(\.name) + g.bufferSpecs.map(\.name)).sorted()
                XCTAssertEqual(ours, ref.names, "\(what): names")
            }
        }
        // Two figures known independently of both definitions: torchvision's
        // mobilenet_v2() has 3,504,872 parameters; the CIFAR VGG-16-BN, counted by hand
        // (13 conv weights 14,710,464 + BN 8,448 + 512·512+512 + 512·10+10), 14,986,698.
        XCTAssertEqual(refs[4].params, 3_504_872)
        XCTAssertEqual(refs[0].params, 14_986_698)
    }

    func testNamesParseAndListTheFamilies() throws {
        for name in ["vgg16", "mobilenetv2", "densenet40", "densenet40-k24"] {
            XCTAssertTrue(ModelZoo.names.contains(name), name)
            XCTAssertTrue(ModelZoo.isBuiltIn(name), name)
        }
        XCTAssertEqual(try ModelZoo.canonicalName("DenseNet40-K12"), "densenet40")
        XCTAssertEqual(try ModelZoo.canonicalName("densenet100-k24"), "densenet100-k24")
        XCTAssertEqual(try ModelZoo.canonicalName("MobileNetV2"), "mobilenetv2")
        for bad in [
            "densenet41", "densenet40-k0", "densenet40-24", "densenet", "vgg19", "mobilenet",
        ] {
            XCTAssertFalse(ModelZoo.isBuiltIn(bad), bad)
            XCTAssertThrowsError(try ModelZoo.canonicalName(bad), bad)
        }
        // The growth rate reaches the graph: each dense layer adds k channels.
        let k24 = try Architecture.standard(
            model: "densenet40-k24", inputChannels: 3, imageSize: 32, numClasses: 10)
        let g = try k24.graph()
        guard case .linear(let fc) = g.layers.last! else { return XCTFail("no classifier") }
        XCTAssertEqual(fc.inFeatures, 16 + 3 * 12 * 24)
    }

    /// Every family runs a training forward and backward at a thin width with a finite loss and
    /// finite, non-zero gradients (the executor on the real layouts; its gradients are checked
    /// by finite differences on the every-op graph in GraphNetworkTests).
    func testFamiliesRunForwardAndBackwardThin() throws {
        for (model, size) in [("vgg16", 8), ("mobilenetv2", 8), ("densenet40", 8)] {
            var a = try Architecture.standard(
                model: model, inputChannels: 1, imageSize: size, numClasses: 3)
            a.widths = a.widths.map { max(2, $0 / 16) }
            let net = try Network(architecture: a)
            net.initialize(seed: 2)
            let batch = 2
            var rng = Rng(seed: 3)
            let x = FloatBuffer(count: batch * net.imageCount)
            for i in 0..<x.count { x[i] = rng.nextGaussian() }
            let logits = net.forward(images: x.pointer, batch: batch, training: true)
            let d = FloatBuffer(count: batch * 3)
            let labels: [Int32] = [0, 2]
            let loss = labels.withUnsafeBufferPointer {
                softmaxCrossEntropy(
                    dLogits: d.pointer, logits: logits, labels: $0.baseAddress!, n: batch,
                    classes: 3
                ).loss
            }
            XCTAssertTrue(loss.isFinite, model)
            net.store.zeroGrad()
            net.backward(dLogits: d.pointer)
            XCTAssertTrue(net.store.grads.array.allSatisfy(\.isFinite), model)
            XCTAssertTrue(net.store.grads.array.contains { $0 != 0 }, model)
        }
    }
}
