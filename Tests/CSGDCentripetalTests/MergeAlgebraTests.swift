import CSGDCentripetal
import CSGDCore
import CSGDData
import CSGDModels
import XCTest

/// The central invariant, isolated from the optimizer: when the filters, BN values and running
/// statistics of every cluster are made identical by hand, the pruned network is the same
/// function as the original (eval mode), to float rounding.
final class MergeAlgebraTests: XCTestCase {
    /// Real Fashion-MNIST test images when the Debian package is installed, random otherwise.
    func inputs(count: Int, channels: Int, size: Int) -> FloatBuffer {
        let x = FloatBuffer(count: count * channels * size * size)
        if channels == 1, size == 32,
            let ds = try? FashionMNIST.load(
                directory: FashionMNIST.defaultDirectory, train: false, limit: count)
        {
            let labels = UnsafeMutablePointer<Int32>.allocate(capacity: count)
            defer { labels.deallocate() }
            makeBatch(
                dataset: ds, indices: Array(0..<count), augmentation: .none, seed: 0, epoch: 0,
                images: x.pointer, labels: labels)
            return x
        }
        var rng = Rng(seed: 99)
        for i in 0..<x.count { x[i] = rng.nextGaussian() }
        return x
    }

    func checkEquivalence(
        _ arch: Architecture, target: PruneTarget, method: ClusterMethod, batch: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let net = try Network(architecture: arch)
        net.initialize(seed: 4)
        randomizePerChannelTensors(net, seed: 8)
        let topology = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: topology, target: target, method: method, seed: 3)
        collapse(net, topology, plan)
        let thin = try Pruner.prune(net, topology: topology, plan: plan)
        XCTAssertEqual(
            thin.architecture.widths, plan.prunedWidths(topology), file: file, line: line)
        XCTAssertLessThan(thin.graph.flopsPerImage, net.graph.flopsPerImage, file: file, line: line)
        let x = inputs(count: batch, channels: arch.inputChannels, size: arch.imageSize)
        let n = batch * arch.numClasses
        let a = Array(
            UnsafeBufferPointer(
                start: net.forward(images: x.pointer, batch: batch, training: false), count: n))
        let b = Array(
            UnsafeBufferPointer(
                start: thin.forward(images: x.pointer, batch: batch, training: false), count: n))
        let maxDiff = zip(a, b).map { abs($0 - $1) }.max()!
        let scale = a.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 0.1, "logits are degenerate", file: file, line: line)
        XCTAssertLessThanOrEqual(
            maxDiff, 1e-5 * max(1, scale), "max |logit diff| \(maxDiff)", file: file, line: line)
    }

    func testResNet20PrunedToFiveEighthsIsTheSameFunction() throws {
        let arch = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 32, numClasses: 10)
        try checkEquivalence(arch, target: .ratio(5.0 / 8), method: .kmeans, batch: 16)
        try checkEquivalence(arch, target: .ratio(0.5), method: .even, batch: 4)
    }

    func testBottleneckResNetPrunedIsTheSameFunction() throws {
        var arch = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 32, numClasses: 10)
        arch.widths = arch.widths.map { max(4, $0 / 16) }
        try checkEquivalence(arch, target: .ratio(0.5), method: .kmeans, batch: 2)
        try checkEquivalence(arch, target: .internalRatio(0.7), method: .even, batch: 2)
    }

    func testPruningWithoutCollapseIsNotEquivalent() throws {
        // Guards the test above against vacuity: un-collapsed clusters must change the output.
        let arch = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 32, numClasses: 10)
        let net = try Network(architecture: arch)
        net.initialize(seed: 4)
        let topology = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: topology, target: .ratio(0.5), method: .even, seed: 1)
        let thin = try Pruner.prune(net, topology: topology, plan: plan)
        let x = inputs(count: 2, channels: 1, size: 32)
        let a = Array(
            UnsafeBufferPointer(
                start: net.forward(images: x.pointer, batch: 2, training: false), count: 20))
        let b = Array(
            UnsafeBufferPointer(
                start: thin.forward(images: x.pointer, batch: 2, training: false), count: 20))
        XCTAssertGreaterThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-3)
    }
}
