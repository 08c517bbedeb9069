// torchvision's own ConvNeXt pieces (CNBlock, LayerNorm2d) in a small CNN, exported by both of
// torch 2.13's exporters, imported and evaluated: the imported net computes PyTorch's logits.
// The zoo check (launch/zoo-check.sh) runs the whole ConvNeXt-Tiny; this keeps both exporters'
// channels-last forms (Transpose → LayerNormalization → MatMul + Add → Gelu → MatMul + Add →
// Transpose → Mul by the layer scale, and the dynamo exporter's as_strided Gather after the
// pool) from rotting in CI.

import CSGDImport
import CSGDModels
import CSGDTestSupport
import Foundation
import XCTest

final class TorchvisionConvNeXtImportTests: XCTestCase {
    static let exportScript = """
        import os, sys, warnings
        sys.path.insert(0, sys.argv[2])
        import tv_cpu  # noqa: F401  (torchvision on the CPU torch wheel)
        import torch, torch.nn as nn
        from torchvision.models.convnext import CNBlock, LayerNorm2d
        warnings.filterwarnings("ignore")
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16, eps=1e-6),
            CNBlock(16, layer_scale=0.5, stochastic_depth_prob=0.0),
            LayerNorm2d(16, eps=1e-6), nn.Conv2d(16, 24, 2, stride=2),
            CNBlock(24, layer_scale=0.5, stochastic_depth_prob=0.0),
            nn.AdaptiveAvgPool2d(1), LayerNorm2d(24, eps=1e-6), nn.Flatten(1), nn.Linear(24, 5))
        with torch.no_grad():  # affine and layer scales away from their 1 / 0 / 0.5 defaults
            for m in net.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                if isinstance(m, CNBlock):
                    m.layer_scale.uniform_(0.2, 1.0)
        net.eval()
        x = torch.randn(4, 3, 16, 16)
        out = sys.argv[1]
        with torch.no_grad():
            torch.onnx.export(net, (x[:1],), os.path.join(out, "cn.dynamo.onnx"))
            torch.onnx.export(net, (x,), os.path.join(out, "cn.legacy.onnx"), dynamo=False,
                              do_constant_folding=False, input_names=["input"],
                              dynamic_axes={"input": {0: "N"}})
            y = net(x)
        x.numpy().tofile(os.path.join(out, "images.f32"))
        y.numpy().tofile(os.path.join(out, "logits.f32"))
        """

    func testBothExportersOfTorchvisionsConvNeXtBlocksImportAndComputePyTorchsLogits() throws {
        let fx = try PyTorchExportFixture(
            script: Self.exportScript, modules: ["tv_cpu", "torch", "torchvision", "onnxscript"],
            tag: "convnext")
        defer { try? FileManager.default.removeItem(atPath: fx.dir) }
        let (dir, images, torch) = (fx.dir, fx.images, fx.logits)
        XCTAssertEqual(images.count, 4 * 3 * 16 * 16)
        XCTAssertEqual(torch.count, 4 * 5)
        for exporter in ["dynamo", "legacy"] {
            let imported = try ONNXImport.read(path: dir + "/cn.\(exporter).onnx")
            let net = try imported.network()
            let nodes = try net.architecture.resolvedSpec().nodes
            // Stem, downsample and head LayerNorm2d, and one LayerNorm in each block.
            XCTAssertEqual(nodes.filter { $0.op == .channelNorm }.count, 5, exporter)
            XCTAssertEqual(
                nodes.filter { $0.op == .channelNorm }.map(\.eps),
                [Float](
                    repeating: 1e-6, count: 5), exporter)
            // Each block's two Linears are 1×1 convs; the layer scales are 1×1 depthwise.
            XCTAssertEqual(
                nodes.filter { $0.op == .conv && $0.kernel == 1 }.map(\.outChannels),
                [64, 16, 96, 24], exporter)
            XCTAssertEqual(
                nodes.filter { $0.op == .depthwiseConv && $0.kernel == 1 }.count, 2, exporter)
            fx.assertComputesPyTorchsLogits(net, batch: 4, label: exporter)
        }
    }
}
