import CSGDCore
import CSGDKernels
import CSGDModels
import XCTest

/// End-to-end check of the graph's backward wiring (fused BN+ReLU, residual adds, projections,
/// pooling, FC): finite differences of the whole network's training-mode loss.
final class NetworkGradientTests: XCTestCase {
    func lossAndGrad(_ net: Network, _ x: FloatBuffer, _ labels: [Int32], batch: Int, grad: Bool)
        -> Double
    {
        let logits = net.forward(images: x.pointer, batch: batch, training: true)
        let d = FloatBuffer(count: batch * net.numClasses)
        let r = labels.withUnsafeBufferPointer {
            softmaxCrossEntropy(
                dLogits: d.pointer, logits: logits, labels: $0.baseAddress!, n: batch,
                classes: net.numClasses)
        }
        if grad { net.backward(dLogits: d.pointer) }
        return r.loss
    }

    /// - Parameter awayFromKinks: shift every BN's β to +3 so no ReLU input and no max-pool
    ///   window sits near a switching point; finite differences then see a smooth function.
    ///   With β = 0 about half of all ReLU inputs sit near 0 and a direction over a whole tensor
    ///   straddles hundreds of kinks, so the quotient measures the kinks, not the backward
    ///   (it converges to the analytic value as h → 0, below Float's noise floor). ReLU's
    ///   masking rule itself is checked element-wise in the kernel tests.
    func checkNetwork(
        _ a: Architecture, batch: Int, awayFromKinks: Bool = false, rtol: Double = 1e-2,
        atol: Double = 2e-4, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let net = try Network(architecture: a)
        net.initialize(seed: 11)
        if awayFromKinks {
            for (i, spec) in net.store.specs.enumerated() where spec.role == .bnShift {
                net.store.value(ParameterID(i)).update(repeating: 3, count: spec.count)
            }
        }
        var rng = Rng(seed: 5)
        let x = FloatBuffer(count: batch * net.imageCount)
        for i in 0..<x.count { x[i] = rng.nextGaussian() }
        let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: a.numClasses)) }
        net.store.zeroGrad()
        _ = lossAndGrad(net, x, labels, batch: batch, grad: true)
        // Per-tensor directional derivative: for a random unit direction v over one tensor,
        // (L(θ+hv) − L(θ−hv))/2h must equal ⟨∇L, v⟩. Summing over the whole tensor makes the
        // check insensitive to the odd ReLU kink a single-element probe can straddle, while a
        // missing or wrong backward term still shifts the dot product by O(1). With h = 1e-2 and
        // ‖v‖ = 1 each element moves by ~1e-2/√n. The Float32 loss of a ~60-layer net carries
        // ~1e-6 of rounding noise, i.e. up to ~1e-4 on the quotient: hence the absolute floor
        // of 2e-4 (tensors whose true gradient is ~0, like a β in front of another BN). The
        // ImageNet-layout nets (18 and 50 layers, 4–16 channels, BN over as few as 16 values)
        // are measured to sit at ~4e-4 noise and a few % curvature at this h, so they use 5% and
        // 1e-3; a dropped backward term moves the dot product by O(100%).
        let h: Float = 1e-2
        var bad: [String] = []
        for (pi, spec) in net.store.specs.enumerated() {
            let p = net.store.value(ParameterID(pi))
            let g = net.store.grad(ParameterID(pi))
            var v = (0..<spec.count).map { _ in rng.nextGaussian() }
            let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            v = v.map { $0 / norm }
            var analytic = 0.0
            for j in 0..<spec.count { analytic += Double(g[j]) * Double(v[j]) }
            let saved = Array(UnsafeBufferPointer(start: p, count: spec.count))
            for j in 0..<spec.count { p[j] = saved[j] + h * v[j] }
            let lp = lossAndGrad(net, x, labels, batch: batch, grad: false)
            for j in 0..<spec.count { p[j] = saved[j] - h * v[j] }
            let lm = lossAndGrad(net, x, labels, batch: batch, grad: false)
            p.update(from: saved, count: spec.count)
            let numeric = (lp - lm) / Double(2 * h)
            if abs(analytic - numeric) > rtol * max(abs(analytic), abs(numeric)) + atol {
                bad.append("\(spec.name): analytic \(analytic) numeric \(numeric)")
            }
        }
        XCTAssertTrue(
            bad.isEmpty, "mismatches:\n" + bad.joined(separator: "\n"), file: file, line: line)
    }

    func testCifarResNetBackwardMatchesFiniteDifferences() throws {
        var a = try Architecture.standard(
            model: "resnet8", inputChannels: 1, imageSize: 8, numClasses: 5)
        a.widths = a.widths.map { $0 / 4 + 1 }  // 5/9/17: odd widths, tied convs equal
        try checkNetwork(a, batch: 4, awayFromKinks: true)
    }

    func testBottleneckResNetBackwardMatchesFiniteDifferences() throws {
        var a = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 64, numClasses: 4)
        a.widths = a.widths.map { max(4, $0 / 16) }
        try checkNetwork(a, batch: 4, awayFromKinks: true, rtol: 5e-2, atol: 1e-3)
    }

    func testBasicImageNetResNetBackwardMatchesFiniteDifferences() throws {
        var a = try Architecture.standard(
            model: "resnet18", inputChannels: 3, imageSize: 64, numClasses: 4)
        a.widths = a.widths.map { max(4, $0 / 8) }
        try checkNetwork(a, batch: 4, awayFromKinks: true, rtol: 5e-2, atol: 1e-3)
    }

    /// The hook behind the overlapped allreduce: the reported ranges tile the gradient block
    /// exactly once, each is final when reported (nothing later in backward changes it), and
    /// reporting changes no gradient — for ResNets and for the graph using every op.
    func testBackwardReportsEachFinalGradientRangeOnce() throws {
        var cifar = try Architecture.standard(
            model: "resnet8", inputChannels: 1, imageSize: 8, numClasses: 5)
        cifar.widths = cifar.widths.map { $0 / 4 + 1 }
        var bottleneck = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 32, numClasses: 4)
        bottleneck.widths = bottleneck.widths.map { max(4, $0 / 16) }
        for a in [cifar, bottleneck, try Self.everyOpArchitecture()] {
            let net = try Network(architecture: a)
            net.initialize(seed: 3)
            var rng = Rng(seed: 8)
            let batch = 3
            let x = FloatBuffer(count: batch * net.imageCount)
            for i in 0..<x.count { x[i] = rng.nextGaussian() }
            let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: a.numClasses)) }
            let logits = net.forward(images: x.pointer, batch: batch, training: true)
            let d = FloatBuffer(count: batch * net.numClasses)
            _ = labels.withUnsafeBufferPointer {
                softmaxCrossEntropy(
                    dLogits: d.pointer, logits: logits, labels: $0.baseAddress!, n: batch,
                    classes: net.numClasses)
            }
            let grads = net.store.grads
            net.store.zeroGrad()
            net.backward(dLogits: d.pointer)
            let plain = grads.array
            net.store.zeroGrad()
            var reported: [(Range<Int>, [Float])] = []
            net.backward(dLogits: d.pointer) { r in
                reported.append(
                    (
                        r,
                        Array(
                            UnsafeBufferPointer(start: grads.pointer + r.lowerBound, count: r.count)
                        )
                    ))
            }
            XCTAssertEqual(grads.array, plain, "\(a.model): the hook changed the gradients")
            var covered = [Int](repeating: 0, count: grads.count)
            for (r, snapshot) in reported {
                for i in r { covered[i] += 1 }
                XCTAssertEqual(
                    snapshot, Array(plain[r]), "\(a.model): gradients \(r) changed after report")
            }
            XCTAssertTrue(
                covered.allSatisfy { $0 == 1 }, "\(a.model): ranges do not tile the block")
            XCTAssertGreaterThan(reported.count, 10)
            // Reported from the end of the block towards its start (layer order is parameter
            // order), which is what lets the buckets start early.
            XCTAssertEqual(reported.first?.0.upperBound, grads.count)
            XCTAssertTrue(plain.contains { $0 != 0 })
        }
    }

    func testBackwardReusesItsGradientBuffersAcrossSteps() throws {
        let a = try Architecture.standard(
            model: "resnet8", inputChannels: 1, imageSize: 8, numClasses: 3)
        let net = try Network(architecture: a)
        net.initialize(seed: 1)
        let x = FloatBuffer(count: 2 * net.imageCount)
        let labels: [Int32] = [0, 2]
        _ = lossAndGrad(net, x, labels, batch: 2, grad: true)
        let first = net.gradientBufferCount
        XCTAssertGreaterThan(first, 0)
        XCTAssertLessThanOrEqual(first, 4, "a ResNet needs only a few live gradients")
        for _ in 0..<5 { _ = lossAndGrad(net, x, labels, batch: 2, grad: true) }
        XCTAssertEqual(net.gradientBufferCount, first, "backward leaks gradient buffers")
        // Concat and a tensor read twice take and return buffers differently: same guarantee.
        let graphNet = try Network(architecture: Self.everyOpArchitecture())
        graphNet.initialize(seed: 3)
        let gx = FloatBuffer(count: 2 * graphNet.imageCount)
        var rng = Rng(seed: 8)
        for i in 0..<gx.count { gx[i] = rng.nextGaussian() }
        _ = lossAndGrad(graphNet, gx, [1, 4], batch: 2, grad: true)
        let graphFirst = graphNet.gradientBufferCount
        for _ in 0..<3 { _ = lossAndGrad(graphNet, gx, [1, 4], batch: 2, grad: true) }
        XCTAssertEqual(graphNet.gradientBufferCount, graphFirst, "backward leaks gradient buffers")
    }
}
