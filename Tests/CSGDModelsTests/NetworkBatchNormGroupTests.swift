import CSGDCore
import CSGDKernels
import CSGDModels
import Foundation
import XCTest

/// `Network.batchNormGroupReducer` end to end in one process: two networks on two threads,
/// each with half the batch and a reducer that sums over the pair (what an MPI group of 2 does),
/// against one network with the whole batch and no reducer.
final class NetworkBatchNormGroupTests: XCTestCase {
    /// Sums a buffer over two threads: both publish, meet, read the other's, meet again.
    final class PairSum: @unchecked Sendable {
        private let cond = NSCondition()
        private var slots: [[Double]] = [[], []]
        private var arrived = 0
        private var generation = 0
        private(set) var calls = 0

        private func meet() {
            cond.lock()
            let g = generation
            arrived += 1
            if arrived == 2 {
                arrived = 0
                generation += 1
                cond.broadcast()
            } else {
                while g == generation { cond.wait() }
            }
            cond.unlock()
        }

        func sum(_ k: Int, _ p: UnsafeMutablePointer<Double>, _ n: Int) {
            cond.lock()
            slots[k] = Array(UnsafeBufferPointer(start: p, count: n))
            if k == 0 { calls += 1 }
            cond.unlock()
            meet()
            cond.lock()
            let (a, b) = (slots[0], slots[1])
            cond.unlock()
            meet()
            for i in 0..<n { p[i] = a[i] + b[i] }
        }
    }

    /// The two threads' logits.
    final class Box: @unchecked Sendable {
        var logits: [[Float]] = [[], []]
    }

    func loss(_ net: Network, _ x: UnsafePointer<Float>, _ labels: [Int32], batch: Int)
        -> [Float]
    {
        let logits = net.forward(images: x, batch: batch, training: true)
        let out = Array(UnsafeBufferPointer(start: logits, count: batch * net.numClasses))
        let d = FloatBuffer(count: batch * net.numClasses)
        _ = labels.withUnsafeBufferPointer {
            softmaxCrossEntropy(
                dLogits: d.pointer, logits: logits, labels: $0.baseAddress!, n: batch,
                classes: net.numClasses)
        }
        net.backward(dLogits: d.pointer)
        return out
    }

    /// Logits, parameter gradients (the mean of the two halves' gradients, as the gradient
    /// allreduce forms it) and running statistics of the pair equal the whole batch's within
    /// Float rounding (the halves' sums are added in another order than one pass: ≤ 1e-5 of
    /// each tensor's largest entry, measured ≤ 2e-6), over two steps so the second starts from
    /// updated running statistics. Images are half zeros (a black background, as
    /// Fashion-MNIST) and half noise. Non-vacuity: without the reducer the halves' gradients
    /// differ from the whole batch's by more than 1e-2.
    func testTwoHalvesWithPairReducerEqualWholeBatch() throws {
        var arch = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 28, numClasses: 10)
        arch.widths = arch.widths.map { max(1, $0 / 4) }
        let batch = 24
        let half = batch / 2
        let whole = try Network(architecture: arch)
        let halves = [try Network(architecture: arch), try Network(architecture: arch)]
        for net in [whole] + halves { net.initialize(seed: 3) }
        let pair = PairSum()
        for (k, net) in halves.enumerated() {
            net.batchNormGroupReducer = { p, n in pair.sum(k, p, n) }
        }
        var rng = Rng(seed: 5)
        let images = FloatBuffer(
            (0..<(batch * whole.imageCount)).map { i in
                i % whole.imageCount < whole.imageCount / 2 ? 0 : rng.nextGaussian()
            })
        let labels = (0..<batch).map { Int32($0 % 10) }
        let bnLayers = whole.graph.layers.filter {
            if case .batchNorm = $0 { return true } else { return false }
        }.count

        func close(_ a: [Float], _ b: [Float], _ what: String) {
            let scale = max(b.map { abs($0) }.max() ?? 0, 1e-3)
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, what)
        }
        for step in 0..<2 {
            for net in [whole] + halves { net.store.zeroGrad() }
            let ref = loss(whole, images.pointer, labels, batch: batch)
            let got = Box()
            let done = DispatchGroup()
            for k in 0..<2 {
                done.enter()
                Thread {
                    got.logits[k] = self.loss(
                        halves[k], images.pointer + k * half * whole.imageCount,
                        Array(labels[(k * half)..<((k + 1) * half)]), batch: half)
                    done.leave()
                }.start()
            }
            done.wait()
            XCTAssertEqual(pair.calls, 2 * bnLayers * (step + 1), "2 sums per BN and step")
            close(got.logits[0] + got.logits[1], ref, "logits, step \(step)")
            let g0 = halves[0].store.grads.array
            let g1 = halves[1].store.grads.array
            let mean = zip(g0, g1).map { ($0 + $1) * 0.5 }
            for spec in whole.store.specs {
                let r = spec.offset..<(spec.offset + spec.count)
                close(
                    Array(mean[r]), Array(whole.store.grads.array[r]),
                    "gradient of \(spec.name), step \(step)")
            }
            for (i, spec) in whole.store.bufferSpecs.enumerated() {
                let ref = Array(
                    UnsafeBufferPointer(start: whole.store.buffer(BufferID(i)), count: spec.count))
                for net in halves {
                    let b = Array(
                        UnsafeBufferPointer(start: net.store.buffer(BufferID(i)), count: spec.count)
                    )
                    close(b, ref, "buffer \(spec.name), step \(step)")
                }
            }
            // Apply the same plain SGD step everywhere so step 1 starts from equal weights.
            let lr: Float = 0.1
            for net in [whole] + halves {
                let g = net === whole ? whole.store.grads.array : mean
                let w = net.store.values.pointer
                for i in 0..<g.count { w[i] -= lr * g[i] }
            }
        }
        // Non-vacuity: per-half statistics (no reducer) give clearly different gradients.
        for net in halves { net.batchNormGroupReducer = nil }
        for net in [whole] + halves { net.store.zeroGrad() }
        _ = loss(whole, images.pointer, labels, batch: batch)
        for k in 0..<2 {
            _ = loss(
                halves[k], images.pointer + k * half * whole.imageCount,
                Array(labels[(k * half)..<((k + 1) * half)]), batch: half)
        }
        let mean = zip(halves[0].store.grads.array, halves[1].store.grads.array).map {
            ($0 + $1) * 0.5
        }
        let diff = zip(mean, whole.store.grads.array).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(diff, 1e-2)
    }
}
