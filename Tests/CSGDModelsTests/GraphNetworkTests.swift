import CSGDCore
import CSGDKernels
import CSGDModels
import XCTest

/// The executor on a graph using every op the ResNets do not: depthwise convs (stride 1 and 2,
/// with a bias), grouped convs (1×1 and 3×3, with and without a bias), ReLU6, concats (a tensor
/// listed twice in one concat, and concat outputs read by several layers as in DenseNet),
/// average pools (both count modes) and a linear layer over a flattened C×H×W input.
extension NetworkGradientTests {
    /// t0 image [2, 8, 8] → … → logits [5]; tensor numbers in the comments.
    static func everyOpSpec() -> GraphSpec {
        GraphSpec(
            nodes: [
                NodeSpec(
                    op: .conv, name: "stem", inputs: [0], outChannels: 6, kernel: 3, stride: 1,
                    pad: 1),  // t1 [6, 8, 8]
                NodeSpec(op: .batchNorm, name: "bn0", inputs: [1], relu: true),  // t2
                NodeSpec(
                    op: .depthwiseConv, name: "dw", inputs: [2], kernel: 3, stride: 1, pad: 1,
                    bias: true),  // t3 [6, 8, 8]
                NodeSpec(op: .batchNorm, name: "bn1", inputs: [3]),  // t4
                NodeSpec(op: .relu6, inputs: [4]),  // t5
                NodeSpec(
                    op: .conv, name: "pw", inputs: [5], outChannels: 9, kernel: 1, stride: 1,
                    pad: 0, groups: 3, bias: true),  // t6 [9, 8, 8]
                NodeSpec(op: .concat, inputs: [2, 6, 2]),  // t7 [21, 8, 8]: t2 listed twice
                NodeSpec(op: .batchNorm, name: "bn2", inputs: [7], relu: true),  // t8
                NodeSpec(
                    op: .conv, name: "gconv", inputs: [8], outChannels: 6, kernel: 3, stride: 1,
                    pad: 1, groups: 3),  // t9 [6, 8, 8]
                NodeSpec(op: .batchNorm, name: "bn3", inputs: [9]),  // t10
                NodeSpec(op: .concat, inputs: [7, 10]),  // t11 [27, 8, 8]: t7 read twice
                NodeSpec(
                    op: .avgPool, inputs: [11], kernel: 3, stride: 2, pad: 1,
                    countIncludePad: false),  // t12 [27, 4, 4]
                NodeSpec(op: .batchNorm, name: "bn4", inputs: [12]),  // t13
                NodeSpec(op: .relu, inputs: [13]),  // t14
                NodeSpec(
                    op: .depthwiseConv, name: "dw2", inputs: [14], kernel: 3, stride: 2, pad: 1),
                // t15 [27, 2, 2]
                NodeSpec(op: .batchNorm, name: "bn5", inputs: [15]),  // t16
                NodeSpec(op: .relu6, inputs: [16]),  // t17
                NodeSpec(
                    op: .avgPool, inputs: [17], kernel: 2, stride: 1, pad: 1,
                    countIncludePad: true),  // t18 [27, 3, 3]
                NodeSpec(op: .linear, name: "fc", inputs: [18], outChannels: 5),  // t19
            ], output: 19)
    }

    static func everyOpArchitecture() throws -> Architecture {
        try Architecture.from(
            spec: everyOpSpec(), model: "every-op", inputChannels: 2, imageSize: 8)
    }

    func testEveryOpGraphBackwardMatchesFiniteDifferences() throws {
        let a = try Self.everyOpArchitecture()
        let g = try a.graph()
        // The spec exercises what it claims to.
        var kinds = Set<String>()
        for layer in g.layers {
            switch layer {
            case .conv(let c) where c.groups > 1: kinds.insert("grouped")
            case .depthwiseConv: kinds.insert("depthwise")
            case .activation(let l): kinds.insert(l.kind == .relu ? "relu" : "relu6")
            case .concat: kinds.insert("concat")
            case .avgPool(let p): kinds.insert("avgpool \(p.countIncludePad)")
            case .linear(let l) where l.inFeatures == 27 * 9: kinds.insert("flattened linear")
            default: break
            }
        }
        XCTAssertEqual(
            kinds,
            [
                "grouped", "depthwise", "relu", "relu6", "concat", "avgpool true",
                "avgpool false", "flattened linear",
            ])
        try checkNetwork(a, batch: 3, awayFromKinks: true)
    }

    /// Eval-mode BN fusion onto dense, grouped and depthwise convs gives bitwise the unfused
    /// logits.
    func testEveryOpGraphFusedEvalEqualsUnfused() throws {
        let net = try Network(architecture: try Self.everyOpArchitecture())
        net.initialize(seed: 4)
        var rng = Rng(seed: 9)
        // Non-trivial running statistics so the fused affine is not the identity.
        for (i, spec) in net.store.bufferSpecs.enumerated() {
            let b = net.store.buffer(BufferID(i))
            for j in 0..<spec.count {
                b[j] = spec.role == .bnRunningVar ? 0.5 + rng.nextFloat() : rng.nextGaussian()
            }
        }
        let batch = 3
        let x = FloatBuffer(count: batch * net.imageCount)
        for i in 0..<x.count { x[i] = rng.nextGaussian() }
        func logits(fused: Bool) -> [UInt32] {
            net.fusesBatchNormInEval = fused
            let y = net.forward(images: x.pointer, batch: batch, training: false)
            return (0..<batch * 5).map { y[$0].bitPattern }
        }
        let unfused = logits(fused: false)
        XCTAssertTrue(unfused.allSatisfy { Float(bitPattern: $0).isFinite })
        XCTAssertEqual(logits(fused: true), unfused)
    }
}
