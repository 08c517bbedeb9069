// timm's own ECA gate (timm.layers.EcaModule) in a small CNN, exported by both of torch
// 2.13's exporters, imported and evaluated: the imported net computes PyTorch's logits. The
// zoo check (launch/zoo-check.sh) runs the whole ECA-ResNet-26t; this keeps the import of
// both exporters' ECA forms (ReduceMean → Reshape [N, 1, C] → Conv1d → Sigmoid → Reshape →
// Expand → Mul) from rotting in CI.

import CSGDImport
import CSGDModels
import CSGDTestSupport
import Foundation
import XCTest

final class TimmECAImportTests: XCTestCase {
    static let exportScript = """
        import os, sys, warnings
        sys.path.insert(0, sys.argv[2])
        import tv_cpu  # noqa: F401  (torchvision on the CPU torch wheel)
        import torch, torch.nn as nn
        from timm.layers import EcaModule
        warnings.filterwarnings("ignore")
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            EcaModule(kernel_size=5),  # no channels given: the kernel is as asked
            nn.Conv2d(12, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            EcaModule(16),  # kernel from the channel count (3)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        net.eval()
        x = torch.randn(4, 3, 16, 16)
        out = sys.argv[1]
        with torch.no_grad():
            torch.onnx.export(net, (x[:1],), os.path.join(out, "eca.dynamo.onnx"))
            torch.onnx.export(net, (x,), os.path.join(out, "eca.legacy.onnx"), dynamo=False,
                              do_constant_folding=False, input_names=["input"],
                              dynamic_axes={"input": {0: "N"}})
            y = net(x)
        x.numpy().tofile(os.path.join(out, "images.f32"))
        y.numpy().tofile(os.path.join(out, "logits.f32"))
        """

    func testBothExportersOfTimmsECAGateImportAndComputePyTorchsLogits() throws {
        let fx = try PyTorchExportFixture(
            script: Self.exportScript, modules: ["tv_cpu", "torch", "timm", "onnxscript"],
            tag: "eca")
        defer { try? FileManager.default.removeItem(atPath: fx.dir) }
        let (dir, images, torch) = (fx.dir, fx.images, fx.logits)
        XCTAssertEqual(images.count, 4 * 3 * 16 * 16)
        XCTAssertEqual(torch.count, 4 * 5)
        for exporter in ["dynamo", "legacy"] {
            let imported = try ONNXImport.read(path: dir + "/eca.\(exporter).onnx")
            let net = try imported.network()
            let ops = try net.architecture.resolvedSpec().nodes.filter { $0.op == .channelConv }
            XCTAssertEqual(ops.map(\.kernel), [5, 3], exporter)
            XCTAssertEqual(ops.map { $0.bias ?? false }, [false, false], exporter)
            fx.assertComputesPyTorchsLogits(net, batch: 4, label: exporter)
        }
    }
}
