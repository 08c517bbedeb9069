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

    func checkNetwork(_ a: Architecture, batch: Int, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let net = try Network(architecture: a)
        net.initialize(seed: 11)
        var rng = Rng(seed: 5)
        let x = FloatBuffer(count: batch * net.imageCount)
        for i in 0..<x.count { x[i] = rng.nextGaussian() }
        let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: a.numClasses)) }
        net.store.zeroGrad()
        _ = lossAndGrad(net, x, labels, batch: batch, grad: true)
        // Float32 forward through ~20 layers: h = 1e-2 keeps the rounding noise of the loss
        // (~1e-7 relative) well below the O(h²) truncation error, which stays under 1e-3 of
        // typical gradients; kinks of ReLU are the remaining risk, so a few of 300 samples may
        // disagree and the check demands 98% agreement within 2%.
        let h: Float = 1e-3
        var bad: [String] = []
        var checked = 0
        for (pi, spec) in net.store.specs.enumerated() {
            let samples = min(spec.count, 12)
            for _ in 0..<samples {
                let j = rng.nextInt(below: spec.count)
                let p = net.store.value(ParameterID(pi)) + j
                let analytic = Double(net.store.grad(ParameterID(pi))[j])
                let saved = p.pointee
                p.pointee = saved + h
                let lp = lossAndGrad(net, x, labels, batch: batch, grad: false)
                p.pointee = saved - h
                let lm = lossAndGrad(net, x, labels, batch: batch, grad: false)
                p.pointee = saved
                let numeric = (lp - lm) / Double(2 * h)
                let err = abs(analytic - numeric) / max(1e-3, abs(analytic) + abs(numeric))
                checked += 1
                if err > 2e-2 { bad.append("\(spec.name)[\(j)] analytic \(analytic) numeric \(numeric)") }
            }
        }
        XCTAssertLessThanOrEqual(
            bad.count, checked / 50, "mismatches:\n" + bad.joined(separator: "\n"), file: file,
            line: line)
    }

    func testCifarResNetBackwardMatchesFiniteDifferences() throws {
        var a = try Architecture.standard(
            model: "resnet8", inputChannels: 1, imageSize: 8, numClasses: 5)
        a.widths = a.widths.map { $0 / 4 + 1 }  // 5/9/17: odd widths, tied convs equal
        try checkNetwork(a, batch: 3)
    }

    func testBottleneckResNetBackwardMatchesFiniteDifferences() throws {
        var a = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 64, numClasses: 4)
        a.widths = a.widths.map { max(2, $0 / 32) }
        try checkNetwork(a, batch: 4)
    }
}
