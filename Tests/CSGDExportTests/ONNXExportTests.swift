// The ONNX exporter without any Python: export a pruned ResNet-20, parse the bytes back with
// SwiftProtobuf (our onnx.proto subset has the spec's field numbers) and check the graph —
// node list, wiring, attributes, initializer names/shapes/values, input/output types.
// The numerical check against onnxruntime is in CSGDCLITests/ONNXRuntimeTests.swift.

import CSGDCore
import CSGDModels
import CSGDONNX
import Foundation
import SwiftProtobuf
import XCTest

@testable import CSGDExport

final class ONNXExportTests: XCTestCase {
    /// ResNet-20 for 1×32×32 images with C-SGD-like pruned widths: every residual stream at
    /// 5/8 (10/20/40) and each block's internal conv at its own width.
    func prunedResNet20() throws -> Network {
        var arch = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 32, numClasses: 10)
        let g = try arch.graph()
        for (i, li) in g.convLayerIndices.enumerated() {
            guard case .conv(let l) = g.layers[li] else { continue }
            arch.widths[i] =
                l.name.hasPrefix("layer") && l.name.hasSuffix(".conv1")
                ? 3 + i % 5 : arch.widths[i] * 5 / 8
        }
        let net = try Network(architecture: arch)
        net.initialize(seed: 7)
        // Non-trivial running statistics, so a swapped mean/var would show.
        for (i, spec) in net.store.bufferSpecs.enumerated() {
            let b = net.store.buffer(BufferID(i))
            for j in 0..<spec.count { b[j] = 0.5 + Float(j % 7) * 0.1 + Float(i) * 1e-3 }
        }
        return net
    }

    func testPrunedResNet20GraphParsesBackWithTheRightNodesAndShapes() throws {
        let net = try prunedResNet20()
        let bytes = try ONNXExport.serialize(net, opset: 13, docString: "test")
        let m = try ONNXModelProto(serializedBytes: bytes)

        XCTAssertEqual(m.irVersion, 7)
        XCTAssertEqual(m.producerName, "csgd-dist")
        XCTAssertEqual(m.opsetImport.map(\.domain), [""])
        XCTAssertEqual(m.opsetImport.map(\.version), [13])
        let archJSON = try XCTUnwrap(m.metadataProps.first { $0.key == "csgd.architecture" })
        XCTAssertEqual(
            try JSONDecoder().decode(Architecture.self, from: Data(archJSON.value.utf8)),
            net.architecture)

        let g = m.graph
        // Input [N, 1, 32, 32] with a symbolic batch, output logits [N, 10], both float.
        XCTAssertEqual(g.input.map(\.name), ["input"])
        XCTAssertEqual(g.output.map(\.name), ["logits"])
        XCTAssertEqual(describe(g.input[0]), "1:N,1,32,32")
        XCTAssertEqual(describe(g.output[0]), "1:N,10")

        // One ONNX node per operation; the ReLUs fused into BN/add are separate nodes.
        var counts: [String: Int] = [:]
        for n in g.node { counts[n.opType, default: 0] += 1 }
        XCTAssertEqual(
            counts,
            [
                "Conv": 21, "BatchNormalization": 21, "Relu": 19, "Add": 9,
                "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1,
            ])
        XCTAssertEqual(
            g.node.prefix(3).map(\.opType), ["Conv", "BatchNormalization", "Relu"])
        XCTAssertEqual(g.node.suffix(3).map(\.opType), ["GlobalAveragePool", "Flatten", "Gemm"])
        XCTAssertEqual(g.node.last?.output, ["logits"])
        XCTAssertEqual(Set(g.node.map(\.name)).count, g.node.count, "node names must be unique")

        // Topological order: every input is the graph input, an initializer or an earlier output.
        var known = Set(g.initializer.map(\.name) + ["input"])
        for n in g.node {
            for i in n.input { XCTAssertTrue(known.contains(i), "\(n.name) reads unknown \(i)") }
            for o in n.output { XCTAssertTrue(known.insert(o).inserted, "\(o) written twice") }
        }

        // The first block's residual add reads bn2 and the stem's ReLU output (identity).
        let add = try XCTUnwrap(g.node.first { $0.opType == "Add" })
        XCTAssertEqual(add.name, "layer1.0.add")
        XCTAssertEqual(add.input, ["layer1.0.bn2", "bn1.relu"])

        // Conv attributes: a strided 1×1 projection and a 3×3 conv.
        let ds = try XCTUnwrap(g.node.first { $0.name == "layer2.0.downsample.0" })
        XCTAssertEqual(ints(ds, "kernel_shape"), [1, 1])
        XCTAssertEqual(ints(ds, "strides"), [2, 2])
        XCTAssertEqual(ints(ds, "pads"), [0, 0, 0, 0])
        let c = try XCTUnwrap(g.node.first { $0.name == "layer2.0.conv1" })
        XCTAssertEqual(ints(c, "kernel_shape"), [3, 3])
        XCTAssertEqual(ints(c, "strides"), [2, 2])
        XCTAssertEqual(ints(c, "pads"), [1, 1, 1, 1])
        XCTAssertEqual(c.input, ["layer1.2.add.relu", "layer2.0.conv1.weight"])
        let bn = try XCTUnwrap(g.node.first { $0.name == "layer3.2.bn1" })
        XCTAssertEqual(
            bn.input,
            ["layer3.2.conv1", "layer3.2.bn1.weight", "layer3.2.bn1.bias"]
                + ["layer3.2.bn1.running_mean", "layer3.2.bn1.running_var"])
        XCTAssertEqual(bn.attribute.first { $0.name == "epsilon" }?.f, 1e-5)
        let gemm = g.node.last!
        XCTAssertEqual(gemm.input, ["fc.flatten", "fc.weight", "fc.bias"])
        XCTAssertEqual(gemm.attribute.first { $0.name == "transB" }?.i, 1)

        // Initializers: every checkpoint tensor, pruned shapes, bit-identical values.
        let store = net.store
        XCTAssertEqual(g.initializer.count, store.specs.count + store.bufferSpecs.count)
        XCTAssertEqual(g.initializer.count, 21 + 21 * 4 + 2)
        let byName = Dictionary(uniqueKeysWithValues: g.initializer.map { ($0.name, $0) })
        let w = net.architecture.widths
        XCTAssertEqual(byName["conv1.weight"]?.dims, [10, 1, 3, 3])
        XCTAssertEqual(byName["layer1.0.conv1.weight"]?.dims, [Int64(w[1]), 10, 3, 3])
        XCTAssertEqual(byName["layer1.0.conv2.weight"]?.dims, [10, Int64(w[1]), 3, 3])
        XCTAssertEqual(byName["layer3.0.downsample.0.weight"]?.dims, [40, 20, 1, 1])
        XCTAssertEqual(byName["layer3.2.bn1.running_var"]?.dims, [Int64(w[19])])
        XCTAssertEqual(byName["fc.weight"]?.dims, [10, 40])
        for (i, spec) in store.specs.enumerated() {
            let t = try XCTUnwrap(byName[spec.name])
            XCTAssertEqual(t.dims, spec.shape.map(Int64.init), spec.name)
            XCTAssertEqual(t.dataType, 1, spec.name)  // FLOAT
            XCTAssertEqual(
                t.rawData,
                Data(
                    buffer: UnsafeBufferPointer(
                        start: store.value(ParameterID(i)), count: spec.count)),
                spec.name)
        }
        for (i, spec) in store.bufferSpecs.enumerated() {
            let t = try XCTUnwrap(byName[spec.name])
            XCTAssertEqual(t.dims, spec.shape.map(Int64.init), spec.name)
            XCTAssertEqual(
                t.rawData,
                Data(
                    buffer: UnsafeBufferPointer(start: store.buffer(BufferID(i)), count: spec.count)
                ),
                spec.name)
        }
    }

    func testOutputIsDeterministicAndOpsetSetsTheIRVersion() throws {
        let net = try prunedResNet20()
        XCTAssertEqual(try ONNXExport.serialize(net), try ONNXExport.serialize(net))
        for (opset, ir) in [(11, 6), (13, 7), (15, 8), (19, 9), (21, 10)] {
            let m = try ONNXModelProto(serializedBytes: try ONNXExport.serialize(net, opset: opset))
            XCTAssertEqual(m.irVersion, Int64(ir), "opset \(opset)")
            XCTAssertEqual(m.opsetImport.first?.version, Int64(opset))
        }
        for bad in [10, 22] {
            XCTAssertThrowsError(try ONNXExport.serialize(net, opset: bad)) { e in
                XCTAssertTrue((e as? CSGDError)?.message.contains("--opset \(bad)") ?? false)
            }
        }
    }

    /// The ImageNet layout adds a max pool after the stem.
    func testImageNetResNet18HasAMaxPool() throws {
        let arch = try Architecture.standard(
            model: "resnet18", inputChannels: 3, imageSize: 32, numClasses: 10)
        let net = try Network(architecture: arch)
        let m = try ONNXModelProto(serializedBytes: try ONNXExport.serialize(net))
        let ops = m.graph.node.map(\.opType)
        XCTAssertEqual(ops.prefix(4), ["Conv", "BatchNormalization", "Relu", "MaxPool"])
        let pool = m.graph.node[3]
        XCTAssertEqual(ints(pool, "kernel_shape"), [3, 3])
        XCTAssertEqual(ints(pool, "strides"), [2, 2])
        XCTAssertEqual(ints(pool, "pads"), [1, 1, 1, 1])
        let stem = m.graph.node[0]
        XCTAssertEqual(ints(stem, "kernel_shape"), [7, 7])
        XCTAssertEqual(ints(stem, "pads"), [3, 3, 3, 3])
        XCTAssertEqual(ops.filter { $0 == "Conv" }.count, 20)
        XCTAssertEqual(describe(m.graph.input[0]), "1:N,3,32,32")
    }

    // MARK: - helpers

    /// `elemType:dims` of a tensor value, symbolic dims by name.
    private func describe(_ v: ONNXValueInfoProto) -> String {
        let t = v.type.tensorType
        let dims = t.shape.dim.map { d -> String in
            switch d.value {
            case .dimValue(let x): return String(x)
            case .dimParam(let p): return p
            case nil: return "?"
            }
        }
        return "\(t.elemType):" + dims.joined(separator: ",")
    }

    private func ints(_ node: ONNXNodeProto, _ name: String) -> [Int64]? {
        node.attribute.first { $0.name == name }.map(\.ints)
    }
}
