import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDKernels
import CSGDModels
import CSGDTraining
import XCTest

/// Micro-batches on threads (StepRunner): with T threads the micro-batches of a step run T at
/// a time on network replicas, and the step must end with the weights, momentum and BN running
/// statistics of one thread bit for bit — for micro-batch counts that fill whole waves and for
/// those that do not.
final class ParallelMicroBatchTests: XCTestCase {
    let batch = 12
    let steps = 3

    /// Weights, momentum and BN statistics after `steps` SGD steps of a small ResNet on
    /// synthetic images (the same images for every call).
    func train(threads: Int, microBatches: Int) throws -> (
        values: [Float], momentum: [Float], buffers: [Float], parallel: Int
    ) {
        var a = try Architecture.standard(
            model: "resnet8", inputChannels: 3, imageSize: 16, numClasses: 10)
        a.widths = a.widths.map { max(2, $0 / 4) }
        let net = try Network(architecture: a)
        net.initialize(seed: 3)
        let sgd = SGD(store: net.store, config: SGDConfig(RunConfig()))
        let micro = batch / microBatches
        let runner = try StepRunner(
            net: net, comm: LocalCommunicator(), microBatch: micro, microBatches: microBatches,
            update: .rank0, threads: threads)
        var rng = Rng(seed: 11)
        let images = (0..<(steps * batch * net.imageCount)).map { _ in rng.nextGaussian() }
        let labels = (0..<(steps * batch)).map { _ in Int32(rng.nextInt(below: 10)) }
        let blasBefore = BLASThreads.current
        let kernelsBefore = KernelThreads.count
        for s in 0..<steps {
            runner.step(sgd: sgd, centripetal: nil, lr: 0.05) { m, img, lab in
                let first = s * self.batch + m * micro
                images.withUnsafeBufferPointer {
                    img.update(
                        from: $0.baseAddress! + first * net.imageCount,
                        count: micro * net.imageCount)
                }
                for i in 0..<micro { lab[i] = labels[first + i] }
            }
        }
        // The replicas' single-threaded section restores the process's thread settings.
        XCTAssertEqual(BLASThreads.current, blasBefore)
        XCTAssertEqual(KernelThreads.count, kernelsBefore)
        return (
            Array(net.store.values.buffer), Array(net.store.momentum.buffer),
            Array(net.store.buffers.buffer), runner.parallelMicroBatches
        )
    }

    func testThreadsChangeSpeedNotNumbers() throws {
        let initial = try train(threads: 1, microBatches: 1)
        for m in [2, 3, 4] {
            let one = try train(threads: 1, microBatches: m)
            XCTAssertEqual(one.parallel, 1)
            for t in [2, 3] {
                let many = try train(threads: t, microBatches: m)
                XCTAssertEqual(many.parallel, min(t, m), "\(t) threads, \(m) micro-batches")
                XCTAssertEqual(many.values, one.values, "weights: \(t) threads, \(m) micro-batches")
                XCTAssertEqual(many.momentum, one.momentum, "momentum: \(t) threads, \(m) mb")
                XCTAssertEqual(many.buffers, one.buffers, "BN statistics: \(t) threads, \(m) mb")
            }
            // Not vacuous: per-micro-batch BN makes m micro-batches a different step from one
            // batch, so a runner that ignored the split would fail the comparison above.
            let d = zip(one.values, initial.values).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(d, 1e-5, "\(m) micro-batches vs one batch")
        }
    }

    /// Each micro-batch starts from the step's BN statistics and the step keeps their mean —
    /// what N ranks' buffer allreduce gives — so one micro-batch's statistics do not leak into
    /// the next one's start.
    func testMicroBatchStatisticsAreTheMeanOfIndependentUpdates() throws {
        var a = try Architecture.standard(
            model: "resnet8", inputChannels: 3, imageSize: 16, numClasses: 10)
        a.widths = a.widths.map { max(2, $0 / 4) }
        func net() throws -> Network {
            let n = try Network(architecture: a)
            n.initialize(seed: 5)
            return n
        }
        var rng = Rng(seed: 13)
        let imageCount = try net().imageCount
        let images = (0..<(8 * imageCount)).map { _ in rng.nextGaussian() * 2 + 1 }
        let labels = (0..<8).map { _ in Int32(rng.nextInt(below: 10)) }
        func fill(_ offset: Int) -> (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>)
            -> Void
        {
            { m, img, lab in
                let first = offset + m * 4
                images.withUnsafeBufferPointer {
                    img.update(from: $0.baseAddress! + first * imageCount, count: 4 * imageCount)
                }
                for i in 0..<4 { lab[i] = labels[first + i] }
            }
        }
        // Two micro-batches in one step (lr 0: the statistics are all that moves).
        let split = try net()
        let r = try StepRunner(
            net: split, comm: LocalCommunicator(), microBatch: 4, microBatches: 2, update: .rank0,
            threads: 2)
        r.step(
            sgd: SGD(store: split.store, config: SGDConfig(RunConfig())), centripetal: nil, lr: 0,
            fill: fill(0))
        // Each half alone from the same start.
        var halves: [[Float]] = []
        for offset in [0, 4] {
            let n = try net()
            let one = try StepRunner(
                net: n, comm: LocalCommunicator(), microBatch: 4, microBatches: 1, update: .rank0)
            one.step(
                sgd: SGD(store: n.store, config: SGDConfig(RunConfig())), centripetal: nil, lr: 0,
                fill: fill(offset))
            halves.append(Array(n.store.buffers.buffer))
        }
        let expected = zip(halves[0], halves[1]).map { ($0 + $1) * 0.5 }
        XCTAssertEqual(Array(split.store.buffers.buffer), expected)
        XCTAssertNotEqual(halves[0], halves[1], "the halves' statistics differ")
    }
}
