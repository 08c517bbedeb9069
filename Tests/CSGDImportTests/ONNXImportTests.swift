// The ONNX translator on hand-built models, no Python: what each op becomes, and every refused
// op or malformed file ending in one line that names the node, the op and where it sits.

import CSGDCore
import CSGDExport
import CSGDModels
import CSGDONNX
import CSGDTestSupport
import Foundation
import SwiftProtobuf
import XCTest

@testable import CSGDImport

final class ONNXImportTests: XCTestCase {
    // MARK: - building models

    func tensor(_ name: String, _ dims: [Int], _ values: [Float]) -> ONNXTensorProto {
        var t = ONNXTensorProto()
        t.name = name
        t.dims = dims.map(Int64.init)
        t.dataType = 1
        var bytes = Data()
        for v in values {
            withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        t.rawData = bytes
        return t
    }

    func ints(_ name: String, _ values: [Int64]) -> ONNXTensorProto {
        var t = ONNXTensorProto()
        t.name = name
        t.dims = [Int64(values.count)]
        t.dataType = 7
        t.int64Data = values
        return t
    }

    func node(
        _ op: String, _ name: String, _ inputs: [String], _ outputs: [String],
        ints: [String: [Int64]] = [:], int: [String: Int64] = [:], float: [String: Float] = [:]
    ) -> ONNXNodeProto {
        var n = ONNXNodeProto()
        n.opType = op
        n.name = name
        n.input = inputs
        n.output = outputs
        for (k, v) in ints.sorted(by: { $0.key < $1.key }) {
            var a = ONNXAttributeProto()
            a.name = k
            a.type = .ints
            a.ints = v
            n.attribute.append(a)
        }
        for (k, v) in int.sorted(by: { $0.key < $1.key }) {
            var a = ONNXAttributeProto()
            a.name = k
            a.type = .int
            a.i = v
            n.attribute.append(a)
        }
        for (k, v) in float.sorted(by: { $0.key < $1.key }) {
            var a = ONNXAttributeProto()
            a.name = k
            a.type = .float
            a.f = v
            n.attribute.append(a)
        }
        return n
    }

    func values(_ n: Int, seed: Int) -> [Float] {
        (0..<n).map { Float(sin(Double($0 * 7 + seed))) * 0.5 }
    }

    /// input [N, 2, 8, 8] → Conv 3×3 (4, pads 1) → BN → Relu → MaxPool 2 → Flatten → Gemm 10.
    func baseModel(opset: Int64 = 13) -> ONNXModelProto {
        var m = ONNXModelProto()
        m.irVersion = 7
        var o = ONNXOperatorSetIdProto()
        o.version = opset
        m.opsetImport = [o]
        var g = ONNXGraphProto()
        var input = ONNXValueInfoProto()
        input.name = "input"
        var tt = ONNXTypeProto.Tensor()
        tt.elemType = 1
        for d in [-1, 2, 8, 8] {
            var dim = ONNXTensorShapeProto.Dimension()
            dim.value = d < 0 ? .dimParam("N") : .dimValue(Int64(d))
            tt.shape.dim.append(dim)
        }
        input.type.value = .tensorType(tt)
        g.input = [input]
        var output = ONNXValueInfoProto()
        output.name = "logits"
        g.output = [output]
        g.initializer = [
            tensor("conv.weight", [4, 2, 3, 3], values(72, seed: 1)),
            tensor("conv.bias", [4], values(4, seed: 2)),
            tensor("bn.weight", [4], [1, 0.5, 2, 1.5]),
            tensor("bn.bias", [4], values(4, seed: 3)),
            tensor("bn.running_mean", [4], values(4, seed: 4)),
            tensor("bn.running_var", [4], [1, 2, 0.5, 0.25]),
            tensor("fc.weight", [10, 64], values(640, seed: 5)),
            tensor("fc.bias", [10], values(10, seed: 6)),
        ]
        g.node = [
            node(
                "Conv", "/conv/Conv", ["input", "conv.weight", "conv.bias"], ["c"],
                ints: ["kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1]],
                int: ["group": 1]),
            node(
                "BatchNormalization", "/bn/BatchNormalization",
                ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], ["b"],
                float: ["epsilon": 1e-5]),
            node("Relu", "/relu/Relu", ["b"], ["r"]),
            node(
                "MaxPool", "/pool/MaxPool", ["r"], ["p"],
                ints: ["kernel_shape": [2, 2], "strides": [2, 2]]),
            node("Flatten", "/Flatten", ["p"], ["f"], int: ["axis": 1]),
            node(
                "Gemm", "/fc/Gemm", ["f", "fc.weight", "fc.bias"], ["logits"],
                int: ["transB": 1], float: ["alpha": 1, "beta": 1]),
        ]
        m.graph = g
        return m
    }

    func translate(_ m: ONNXModelProto, _ options: ImportOptions = .init()) throws
        -> ImportedModel
    {
        try ONNXImport.translate(m, source: "m.onnx", options: options)
    }

    // MARK: - what ops become

    func testBaseModelTranslatesToFusedSpecAndRuns() throws {
        let imp = try translate(baseModel())
        let spec = try XCTUnwrap(imp.architecture.spec)
        XCTAssertEqual(
            spec.nodes.map(\.op), [.conv, .batchNorm, .maxPool, .linear], "\(spec.nodes)")
        XCTAssertEqual(spec.nodes[1].relu, true, "Relu fused into the BN")
        XCTAssertEqual(spec.nodes.map(\.name), ["conv", "bn", "", "fc"])
        XCTAssertEqual(imp.architecture.inputChannels, 2)
        XCTAssertEqual(imp.architecture.imageSize, 8)
        XCTAssertEqual(imp.architecture.numClasses, 10)
        XCTAssertEqual(imp.tensors["conv.weight"], values(72, seed: 1))
        // The network evaluates what the ONNX graph computes (written out by hand here).
        let net = try imp.network()
        let x = values(128, seed: 9)
        let logits = Array(
            UnsafeBufferPointer(start: net.forward(images: x, batch: 1, training: false), count: 10)
        )
        let w = values(72, seed: 1)
        let cb = values(4, seed: 2)
        let (g, beta) = ([Float(1), 0.5, 2, 1.5], values(4, seed: 3))
        let (mean, vars) = (values(4, seed: 4), [Float(1), 2, 0.5, 0.25])
        var act = [Float](repeating: 0, count: 4 * 64)
        for k in 0..<4 {
            for y in 0..<8 {
                for xx in 0..<8 {
                    var s = cb[k]
                    for c in 0..<2 {
                        for dy in 0..<3 {
                            for dx in 0..<3 {
                                let iy = y + dy - 1
                                let ix = xx + dx - 1
                                if iy < 0 || iy >= 8 || ix < 0 || ix >= 8 { continue }
                                s += w[((k * 2 + c) * 3 + dy) * 3 + dx] * x[(c * 8 + iy) * 8 + ix]
                            }
                        }
                    }
                    let bn = (s - mean[k]) / (vars[k] + 1e-5).squareRoot() * g[k] + beta[k]
                    act[(k * 8 + y) * 8 + xx] = max(bn, 0)
                }
            }
        }
        var pooled = [Float](repeating: 0, count: 64)
        for k in 0..<4 {
            for y in 0..<4 {
                for xx in 0..<4 {
                    pooled[(k * 4 + y) * 4 + xx] = [0, 1].flatMap { dy in
                        [0, 1].map { dx in act[(k * 8 + 2 * y + dy) * 8 + 2 * xx + dx] }
                    }.max()!
                }
            }
        }
        let fw = values(640, seed: 5)
        let fb = values(10, seed: 6)
        for o in 0..<10 {
            var s = fb[o]
            for j in 0..<64 { s += fw[o * 64 + j] * pooled[j] }
            XCTAssertEqual(logits[o], s, accuracy: 1e-4, "logit \(o)")
        }
    }

    func testMatMulPlusAddBecomesOneLinearWithBias() throws {
        var m = baseModel()
        m.graph.initializer.removeAll { $0.name.hasPrefix("fc.") }
        let w = values(640, seed: 5)
        var wt = [Float](repeating: 0, count: 640)
        for o in 0..<10 { for j in 0..<64 { wt[j * 10 + o] = w[o * 64 + j] } }
        m.graph.initializer += [
            tensor("mm", [64, 10], wt), tensor("bias", [10], values(10, seed: 6)),
        ]
        m.graph.node.removeLast()
        m.graph.node += [
            node("MatMul", "/fc/MatMul", ["f", "mm"], ["mmo"]),
            node("Add", "/fc/Add", ["mmo", "bias"], ["logits"]),
        ]
        let imp = try translate(m)
        XCTAssertEqual(imp.architecture.spec?.nodes.last?.op, .linear)
        XCTAssertEqual(imp.architecture.spec?.nodes.last?.bias, true)
        XCTAssertEqual(imp.tensors["fc.weight"], w, "stored [out, in] like nn.Linear")
        XCTAssertEqual(imp.tensors["fc.bias"], values(10, seed: 6))
    }

    func testClipBoundsAsAttributesInputsAndConstantNodes() throws {
        // opset 10: attributes.
        var m = baseModel(opset: 10)
        m.graph.node[2] = node("Clip", "/act/Clip", ["b"], ["r"], float: ["min": 0, "max": 6])
        XCTAssertEqual(try translate(m).architecture.spec?.nodes[2].op, .relu6)
        // opset 13: inputs from Constant nodes, through an Identity.
        m = baseModel()
        var lo = node("Constant", "c0", [], ["lo"])
        var a = ONNXAttributeProto()
        a.name = "value"
        a.type = .tensor
        a.t = tensor("", [], [0])
        lo.attribute = [a]
        var hi = node("Constant", "c1", [], ["hi"])
        a.t = tensor("", [], [6])
        hi.attribute = [a]
        m.graph.node[2] = node("Clip", "/act/Clip", ["b", "lo2", "hi"], ["r"])
        m.graph.node.insert(contentsOf: [lo, hi, node("Identity", "id", ["lo"], ["lo2"])], at: 0)
        XCTAssertEqual(try translate(m).architecture.spec?.nodes[2].op, .relu6)
    }

    func testFlattenByShapeArithmeticAndReshapeConstant() throws {
        // x.view(x.size(0), -1) as the legacy exporter writes it.
        var m = baseModel()
        m.graph.initializer += [ints("minus1", [-1])]
        var idx = ints("zero", [0])
        idx.dims = []
        m.graph.initializer.append(idx)
        m.graph.node[4] = node("Shape", "/Shape", ["p"], ["s"])
        m.graph.node.insert(
            contentsOf: [
                node("Gather", "/Gather", ["s", "zero"], ["n"], int: ["axis": 0]),
                node("Unsqueeze", "/Unsqueeze", ["n", "axes"], ["n1"]),
                node("Concat", "/Concat", ["n1", "minus1"], ["shape"], int: ["axis": 0]),
                node("Reshape", "/Reshape", ["p", "shape"], ["f"]),
            ], at: 5)
        m.graph.initializer.append(ints("axes", [0]))
        XCTAssertEqual(try translate(m).architecture.spec?.nodes.last?.op, .linear)
        // Reshape to a constant [-1, 64].
        m = baseModel()
        m.graph.initializer.append(ints("shape", [-1, 64]))
        m.graph.node[4] = node("Reshape", "/Reshape", ["p", "shape"], ["f"])
        XCTAssertEqual(try translate(m).architecture.spec?.nodes.count, 4)
    }

    /// The legacy exporter may feed a weight through a Constant node, or an Identity of an
    /// initializer (deduplicated equal tensors): both are constants.
    func testWeightsFromConstantNodesAndIdentities() throws {
        var m = baseModel()
        let w = m.graph.initializer.removeFirst()
        var c = node("Constant", "/conv/Constant", [], ["cw"])
        var a = ONNXAttributeProto()
        a.name = "value"
        a.type = .tensor
        a.t = w
        c.attribute = [a]
        m.graph.node[0].input[1] = "cw"
        // bn.running_mean read through an Identity of bn.bias's twin.
        m.graph.initializer[3].name = "shared"
        m.graph.node[1].input[3] = "bn.running_mean"
        m.graph.node.insert(
            contentsOf: [c, node("Identity", "id", ["shared"], ["bn.running_mean"])], at: 0)
        let imp = try translate(m)
        XCTAssertEqual(imp.tensors["conv.weight"], values(72, seed: 1))
        XCTAssertEqual(imp.tensors["bn.running_mean"], values(4, seed: 4))
    }

    func testNodesOutOfOrderAreSorted() throws {
        var m = baseModel()
        m.graph.node.reverse()
        XCTAssertEqual(try translate(m).architecture.spec?.nodes.count, 4)
    }

    /// A BatchNorm epsilon other than PyTorch's (TF-ported weights use 1e-3) stays the node's:
    /// eval computes what folding it into running_var would, training normalises by the batch
    /// variance + 1e-3 (folding would train with 1e-5), and the export writes it back.
    func testBatchNormEpsilonOtherThanOursIsKeptForTrainingEvalAndExport() throws {
        var m = baseModel()
        m.graph.node[1].attribute[0].f = 1e-3
        let imp = try translate(m)
        XCTAssertEqual(imp.architecture.spec?.nodes.first { $0.op == .batchNorm }?.eps, 1e-3)
        XCTAssertEqual(imp.tensors["bn.running_var"], [1, 2, 0.5, 0.25])
        let kept = try imp.network()
        // The same file with 1e-5 and the difference folded into running_var.
        var folded = baseModel()
        folded.graph.initializer[5] = tensor(
            "bn.running_var", [4], [1, 2, 0.5, 0.25].map { $0 + 1e-3 - 1e-5 })
        let foldedNet = try translate(folded).network()
        var rng = Rng(seed: 21)
        // Small images: the conv's batch variance is near 1e-3, where the two epsilons differ.
        let x = (0..<(4 * kept.imageCount)).map { _ in 0.01 * rng.nextGaussian() }
        func logits(_ net: Network, training: Bool) -> [Float] {
            Array(
                UnsafeBufferPointer(
                    start: net.forward(images: x, batch: 4, training: training),
                    count: 4 * net.numClasses))
        }
        let evalDiff = zip(logits(kept, training: false), logits(foldedNet, training: false))
            .map { abs($0 - $1) }.max()!
        XCTAssertLessThan(evalDiff, 1e-5)
        let trainKept = logits(kept, training: true)
        let trainFolded = logits(foldedNet, training: true)
        let scale = trainKept.map(abs).max()!
        let trainDiff = zip(trainKept, trainFolded).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(trainDiff, 0.01 * scale, "training ignores the node's epsilon")
        let back = try ONNXModelProto(serializedBytes: ONNXExport.serialize(kept))
        let bn = back.graph.node.first { $0.opType == "BatchNormalization" }
        XCTAssertEqual(bn?.attribute.first { $0.name == "epsilon" }?.f, 1e-3)
    }

    /// Graph size: every pass is linear in the node count, so long chains import (or are
    /// refused by the documented limits) at once instead of hanging. The base model with
    /// `n` extra nodes of `op` inserted after its Relu.
    func chain(_ n: Int, _ op: String) -> ONNXModelProto {
        var m = baseModel()
        var nodes = Array(m.graph.node[0..<3])
        for i in 0..<n {
            nodes.append(node(op, "\(op)_\(i)", ["r\(i == 0 ? "" : "\(i)")"], ["r\(i + 1)"]))
        }
        var pool = m.graph.node[3]
        pool.input = ["r\(n)"]
        nodes += [pool] + m.graph.node[4...]
        m.graph.node = nodes
        return m
    }

    func testLongChainsImportOrAreRefusedByTheLimits() throws {
        // 99,000 Identity nodes fold away: the net is the base model's.
        let folded = try translate(chain(99_000, "Identity"))
        XCTAssertEqual(
            folded.architecture.spec?.nodes.count,
            try translate(baseModel()).architecture.spec?.nodes.count)
        // 19,990 Relu nodes (under the graph limit) each stay a node.
        let relus = try translate(chain(19_990, "Relu"))
        XCTAssertGreaterThan(relus.architecture.spec?.nodes.count ?? 0, 19_990)
        // 30,000 (the issue's hang) exceed the graph's limit; 100,001 the ONNX file's.
        assertCSGDError(["nodes, must be in ", "1...\(GraphSpec.Limits.nodes)"]) {
            _ = try translate(chain(30_000, "Relu"))
        }
        assertCSGDError(["m.onnx", "100006 nodes exceed the limit of 100000"]) {
            _ = try translate(chain(100_000, "Identity"))
        }
    }

    // MARK: - refused, one line each

    func testRefusedOpsNameTheNodeTheOpAndWhereItSits() throws {
        var m = baseModel()
        m.graph.node[2] = node("Softplus", "Softplus_12", ["b"], ["r"])
        assertCSGDError(
            [
                "m.onnx", "node 'Softplus_12' (Softplus) after '/bn/BatchNormalization'",
                "unsupported op", "Conv",
            ]) { _ = try translate(m) }

        m = baseModel()
        m.graph.node[2].domain = "com.microsoft"
        assertCSGDError(["(Relu)", "domain 'com.microsoft'"]) { _ = try translate(m) }

        func refused(_ edit: (inout ONNXModelProto) -> Void, _ needles: [String]) {
            var m = baseModel()
            edit(&m)
            assertCSGDError(needles) { _ = try translate(m) }
        }
        refused({ $0.graph.node[0].attribute[0].ints = [3, 1] }, ["(Conv)", "kernel"])
        refused(
            {
                $0.graph.node[0].attribute.append(
                    node("", "", [], [], ints: ["dilations": [2, 2]]).attribute[0])
            }, ["(Conv)", "dilation"])
        refused({ $0.graph.node[0].attribute[1].ints = [1, 0, 0, 0] }, ["(Conv)", "pads"])
        refused({ $0.graph.node[0].attribute[2].ints = [1, 2] }, ["(Conv)", "strides"])
        refused({ $0.graph.node[0].attribute[3].i = 3 }, ["(Conv)", "group 3 does not divide"])
        refused(
            { $0.graph.node[0].attribute.append($0.graph.node[0].attribute[3]) },
            ["(Conv)", "attribute 'group' twice"])
        refused(
            { $0.graph.node[2] = node("Clip", "/act/Clip", ["b"], ["r"]) },
            ["(Clip)", "Clip(-inf, inf)"])
        refused(
            {
                $0.graph.node[1].attribute.append(
                    node("", "", [], [], int: ["training_mode": 1]).attribute[0])
            },
            ["(BatchNormalization)", "training_mode"])
        refused({ $0.graph.node[5].attribute[2].f = 2 }, ["(Gemm)", "alpha"])
        refused({ $0.graph.node[4].attribute[0].i = 2 }, ["(Flatten)", "axis"])
        refused(
            { $0.graph.node[2] = self.node("Mul", "/mul", ["b", "bn.bias"], ["r"]) },
            ["(Mul)", "constant"])
        refused(
            { $0.graph.node[2] = self.node("Transpose", "/t", ["b"], ["r"]) },
            ["(Transpose)", "channel shuffle"])
        refused({ $0.graph.node[3].output.append("indices") }, ["(MaxPool)", "Indices"])
        refused(
            {
                $0.graph.initializer.append(self.ints("shape", [-1, 4, 16]))
                $0.graph.node[4] = self.node("Reshape", "/Reshape", ["p", "shape"], ["f"])
            }, ["(Reshape)", "target shape"])
        refused(
            { $0.graph.node[2] = self.node("Add", "/add", ["b", "bn.bias"], ["r"]) },
            ["(Add)", "constant"])
    }

    /// The base model with its ReLU replaced by a channels-last LayerNorm (permute → LayerNorm
    /// → MatMul by a [4, 4] constant → permute back), then `edit`.
    func channelsLastModel(_ edit: (inout ONNXModelProto) -> Void = { _ in }) -> ONNXModelProto {
        var m = baseModel(opset: 17)
        m.graph.initializer += [
            tensor("ln.weight", [4], [1, 0.5, 2, 1.5]), tensor("ln.bias", [4], values(4, seed: 7)),
            tensor("lin.weight", [4, 4], values(16, seed: 8)),
        ]
        m.graph.node.replaceSubrange(
            2...2,
            with: [
                node("Transpose", "/t1", ["b"], ["bl"], ints: ["perm": [0, 2, 3, 1]]),
                node(
                    "LayerNormalization", "/ln", ["bl", "ln.weight", "ln.bias"], ["ln"],
                    int: ["axis": -1], float: ["epsilon": 1e-6]),
                node("MatMul", "/lin", ["ln", "lin.weight"], ["lm"]),
                node("Transpose", "/t2", ["lm"], ["r"], ints: ["perm": [0, 3, 1, 2]]),
            ])
        edit(&m)
        return m
    }

    func testChannelsLastLayerNormImportsAndItsMisusesAreRefusedByNode() throws {
        let spec = try translate(channelsLastModel()).architecture.resolvedSpec()
        // The same bias added on the channels-last view is the 1×1 conv's bias.
        let biased = try translate(
            channelsLastModel {
                $0.graph.node[4].output = ["lm0"]
                $0.graph.node.insert(
                    self.node("Add", "/bias", ["lm0", "ln.bias"], ["lm"]), at: 5)
            }
        ).architecture.resolvedSpec()
        XCTAssertEqual(biased.nodes.map(\.op), spec.nodes.map(\.op))
        XCTAssertEqual(biased.nodes[3].bias, true)
        XCTAssertEqual(
            spec.nodes.map(\.op), [.conv, .batchNorm, .channelNorm, .conv, .maxPool, .linear])
        XCTAssertEqual(spec.nodes[2].eps, 1e-6)
        func refused(_ edit: (inout ONNXModelProto) -> Void, _ needles: [String]) {
            assertCSGDError(needles) { _ = try translate(channelsLastModel(edit)) }
        }
        refused({ $0.graph.node[3].attribute[0].i = 1 }, ["node '/ln'", "axis 1", "axis -1"])
        refused({ $0.graph.node[3].attribute[1].f = 0 }, ["node '/ln'", "epsilon 0"])
        refused(
            {
                $0.graph.node[3].output.append("mean")
                $0.graph.node[6].input.append("mean")
            }, ["node '/ln'", "output 1 is used"])
        refused(
            { $0.graph.node[5].attribute[0].ints = [0, 1, 2, 3] },
            ["node '/t2'", "channels-last", "[0, 3, 1, 2]"])
        refused(
            { $0.graph.initializer[$0.graph.initializer.count - 1].dims = [2, 8] },
            ["node '/lin'", "[N, H, W, 4] by a constant [4, K]"])
        refused(
            {
                $0.graph.node[5] = self.node(
                    "MaxPool", "/mp", ["lm"], ["r"], ints: ["kernel_shape": [1, 1]])
            },
            ["node '/mp'", "channels-last [N, H, W, C] view"])
        refused(
            { $0.graph.node[4] = self.node("Add", "/add", ["ln", "ln"], ["lm"]) },
            ["node '/add'", "adds two channels-last views"])
        refused(
            { $0.graph.node[4] = self.node("Mul", "/mul", ["ln", "lin.weight"], ["lm"]) },
            ["node '/mul'", "per-channel scale [4]"])
        // The MatMul's bias added after the permute back would broadcast along W, not C.
        refused(
            {
                $0.graph.node[5].output = ["t2"]
                $0.graph.node.insert(
                    self.node("Add", "/late_bias", ["t2", "ln.bias"], ["r"]), at: 6)
            }, ["node '/late_bias'", "constant Add only as the bias of a MatMul"])
    }

    func testMalformedModelsAreOneLineErrors() throws {
        func refused(_ edit: (inout ONNXModelProto) -> Void, _ needles: [String]) {
            var m = baseModel()
            edit(&m)
            assertCSGDError(needles) { _ = try translate(m) }
        }
        // Missing initializer: the name is read but defined nowhere.
        refused(
            { $0.graph.initializer.removeAll { $0.name == "bn.running_var" } },
            ["node '/bn/BatchNormalization'", "'bn.running_var'", "no node, initializer"])
        // Shape mismatch: weight for 3 input channels on a 2-channel input.
        refused(
            {
                $0.graph.initializer[0] = self.tensor(
                    "conv.weight", [4, 3, 3, 3], self.values(108, seed: 1))
            },
            ["node '/conv/Conv'", "weight", "[4, 2, 3, 3]"])
        refused(
            { $0.graph.initializer[7] = self.tensor("fc.bias", [11], self.values(11, seed: 6)) },
            ["(Gemm)", "bias"])
        // Declared dims disagree with the data.
        refused(
            { $0.graph.initializer[2].dims = [5] },
            ["initializer 'bn.weight'", "bytes"])
        refused(
            { $0.graph.initializer[2].floatData = [1, 2, 3, 4] }, ["both raw_data and float_data"])
        refused({ $0.graph.initializer[2].dataType = 11 }, ["data type 11", "float32"])
        refused({ $0.graph.initializer[2].dataLocation = .external }, ["external"])
        refused({ $0.graph.initializer[2].dims = [1 << 40] }, ["dimension"])
        // A cycle: conv reads the Relu's output.
        refused(
            { $0.graph.node[0].input[0] = "r" }, ["cycle"])
        refused({ $0.graph.node[2].output = ["b"] }, ["already defined"])
        refused({ $0.opsetImport[0].version = 7 }, ["opset 7"])
        refused({ $0.graph.output[0].name = "nowhere" }, ["'nowhere'"])
        refused({ $0.graph.input[0].type = ONNXTypeProto() }, ["input 'input'", "tensor"])
        refused(
            {
                var tt = ONNXTypeProto.Tensor()
                tt.elemType = 1
                $0.graph.input[0].type.value = .tensorType(tt)
            }, ["input 'input'", "dimensions"])
        // The protobuf itself, truncated.
        let bytes: [UInt8] = try baseModel().serializedBytes()
        let path = NSTemporaryDirectory() + "csgd-cut-\(UUID().uuidString).onnx"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(bytes.prefix(bytes.count - 9)).write(to: URL(fileURLWithPath: path))
        assertCSGDError([path, "truncated or malformed"]) {
            _ = try ONNXImport.read(path: path)
        }
    }

    /// The same refusals through the real binary: `csgd-dist import` of a crafted file prints
    /// one error line naming the file, exits non-zero and leaves no output behind.
    func testMalformedFilesThroughTheBinaryAreOneLineAndLeaveNothing() throws {
        let dir = NSTemporaryDirectory() + "csgd-bad-onnx-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, (inout ONNXModelProto) -> Void, String)] = [
            (
                "unknown-op", { $0.graph.node[2] = self.node("Softplus", "S", ["b"], ["r"]) },
                "Softplus"
            ),
            (
                "missing-initializer",
                { $0.graph.initializer.removeAll { $0.name == "bn.running_var" } },
                "'bn.running_var'"
            ),
            (
                "shape-mismatch",
                {
                    $0.graph.initializer[0] = self.tensor(
                        "conv.weight", [4, 3, 3, 3], self.values(108, seed: 1))
                }, "[4, 2, 3, 3]"
            ),
            ("cycle", { $0.graph.node[0].input[0] = "r" }, "cycle"),
            (
                // External data that climbs out of the model's folder.
                "external-outside",
                {
                    $0.graph.initializer[0].rawData = Data()
                    $0.graph.initializer[0].dataLocation = .external
                    $0.graph.initializer[0].externalData = [
                        ONNXStringStringEntryProto.with {
                            $0.key = "location"
                            $0.value = "../weights.data"
                        }
                    ]
                }, "not a plain relative path"
            ),
            (
                "unsupported-gate-mul",
                { $0.graph.node[2] = self.node("Mul", "M", ["b", "c"], ["r"]) }, "(Mul)"
            ),
        ]
        // Rows on the channels-last variant (ConvNeXt's LayerNorm), and a BatchNorm epsilon.
        let built: [(String, ONNXModelProto, String)] = [
            (
                "layernorm-axis", channelsLastModel { $0.graph.node[3].attribute[0].i = 1 },
                "node '/ln' (LayerNormalization)"
            ),
            (
                "layernorm-eps", channelsLastModel { $0.graph.node[3].attribute[1].f = -1 },
                "epsilon -1.0 is not in (0, 1]"
            ),
            (
                "channels-last-pool",
                channelsLastModel {
                    $0.graph.node[5] = self.node(
                        "MaxPool", "/mp", ["lm"], ["r"], ints: ["kernel_shape": [1, 1]])
                }, "channels-last [N, H, W, C] view"
            ),
            (
                "batchnorm-eps",
                {
                    var m = self.baseModel()
                    m.graph.node[1].attribute[0].f = 2
                    return m
                }(), "(BatchNormalization)"
            ),
        ]
        let models =
            cases.map { c -> (String, ONNXModelProto, String) in
                var m = baseModel()
                c.1(&m)
                return (c.0, m, c.2)
            } + built
        for (name, m, needle) in models {
            let path = dir + "/\(name).onnx"
            try Data(try m.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: path))
            let out = dir + "/\(name).safetensors"
            let r = try CLIRunner.run(["import", path, "--output", out])
            XCTAssertNotEqual(r.exitCode, 0, "\(name): \(r.output)")
            let errors = r.lines(startingWith: "error:")
            XCTAssertEqual(errors.count, 1, "\(name): \(r.output)")
            for n in [path, needle] {
                XCTAssertTrue(errors.first?.contains(n) ?? false, "\(name): \(r.output)")
            }
            XCTAssertEqual(
                try FileManager.default.contentsOfDirectory(atPath: dir).filter {
                    !$0.hasSuffix(".onnx")
                }, [], "\(name): something was left behind")
        }
    }
}
