import CSGDCore
import CSGDKernels
import CSGDModels
import XCTest

final class ResNetTests: XCTestCase {
    func cifar(_ model: String, classes: Int = 10, channels: Int = 3) throws -> Architecture {
        try Architecture.standard(
            model: model, inputChannels: channels, imageSize: 32, numClasses: classes)
    }

    func testParameterCountsMatchPyTorch() throws {
        // CIFAR ResNet-56 with 1×1 projection shortcuts (shared/bench/pytorch-peer/resnet56.py).
        XCTAssertEqual(try cifar("resnet56").graph().parameterCount, 855_770)
        // torchvision resnet50() / resnet18(): 25,557,032 / 11,689,512.
        let r50 = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 224, numClasses: 1000)
        XCTAssertEqual(try r50.graph().parameterCount, 25_557_032)
        let r18 = try Architecture.standard(
            model: "resnet18", inputChannels: 3, imageSize: 224, numClasses: 1000)
        XCTAssertEqual(try r18.graph().parameterCount, 11_689_512)
    }

    func testFlopsMatchThePapersCounts() throws {
        // Multiply-adds: ResNet-56 ≈ 125.75 M per 32×32 image; ResNet-50 ≈ 4.09 G per 224×224.
        let f56 = try cifar("resnet56").graph().flopsPerImage
        XCTAssertEqual(Double(f56) / 1e6, 125.75, accuracy: 0.01)
        let r50 = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 224, numClasses: 1000)
        XCTAssertEqual(Double(try r50.graph().flopsPerImage) / 1e9, 4.09, accuracy: 0.005)
    }

    func testWidthArraysAndOutputShapes() throws {
        for (name, convs) in [
            ("resnet20", 21), ("resnet32", 33), ("resnet56", 57), ("resnet110", 111),
        ] {
            let a = try cifar(name)
            XCTAssertEqual(a.widths.count, convs, name)
            let g = try a.graph()
            XCTAssertEqual(g.tensors[g.logits.index], ActivationShape(c: 10, h: 1, w: 1))
        }
        let wide = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 32, numClasses: 10, widen: 2)
        XCTAssertEqual(wide.widths.first, 32)
        XCTAssertEqual(wide.widths.max(), 128)
        var bad = try cifar("resnet20")
        bad.widths.removeLast()
        XCTAssertThrowsError(try bad.graph())
        var mismatch = try cifar("resnet20")
        mismatch.widths[2] = 12  // layer1.0.conv2 is added to the 16-wide stem stream
        XCTAssertThrowsError(try mismatch.graph()) { e in
            XCTAssertTrue("\(e)".contains("residual add"), "\(e)")
        }
        XCTAssertThrowsError(try ResNetKind(name: "resnet21"))
    }

    func testForwardShapesAndDeterministicInit() throws {
        let a = try Architecture.standard(
            model: "resnet18", inputChannels: 3, imageSize: 64, numClasses: 7)
        let net = try Network(architecture: a)
        net.initialize(seed: 3)
        let x = FloatBuffer(count: 2 * net.imageCount)
        var rng = Rng(seed: 1)
        for i in 0..<x.count { x[i] = rng.nextGaussian() }
        let y = net.forward(images: x.pointer, batch: 2, training: false)
        let logits = Array(UnsafeBufferPointer(start: y, count: 14))
        XCTAssertTrue(logits.allSatisfy { $0.isFinite })
        let net2 = try Network(architecture: a)
        net2.initialize(seed: 3)
        XCTAssertEqual(net.store.checksum(), net2.store.checksum())
    }

    /// Eval mode runs each BatchNorm that follows a conv as the conv's epilogue; the logits
    /// must be bitwise those of the unfused network, for a basic-block CIFAR net (fused BN
    /// with and without ReLU, projection shortcuts) and a bottleneck net with max-pooling.
    func testFusedEvalBatchNormGivesBitwiseTheSameLogits() throws {
        for (model, size) in [("resnet20", 32), ("resnet50", 64)] {
            let a = try Architecture.standard(
                model: model, inputChannels: 3, imageSize: size, numClasses: 10)
            let net = try Network(architecture: a)
            net.initialize(seed: 5)
            // Non-trivial running statistics and BN affine parameters.
            var rng = Rng(seed: 9)
            for i in 0..<net.store.buffers.count {
                net.store.buffers[i] = 0.5 + rng.nextFloat()
            }
            for (i, spec) in net.store.specs.enumerated()
            where spec.role == .bnScale || spec.role == .bnShift {
                let p = net.store.value(ParameterID(i))
                for j in 0..<spec.count { p[j] = rng.nextGaussian() }
            }
            let batch = 3
            let x = FloatBuffer(count: batch * net.imageCount)
            for i in 0..<x.count { x[i] = rng.nextGaussian() }
            func logits(fused: Bool) -> [UInt32] {
                net.fusesBatchNormInEval = fused
                let y = net.forward(images: x.pointer, batch: batch, training: false)
                return (0..<batch * 10).map { y[$0].bitPattern }
            }
            let unfused = logits(fused: false)
            XCTAssertTrue(unfused.allSatisfy { Float(bitPattern: $0).isFinite }, model)
            XCTAssertEqual(logits(fused: true), unfused, model)
        }
    }
}
