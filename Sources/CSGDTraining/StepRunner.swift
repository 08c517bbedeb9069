// One optimizer step, per the design (shared by the trainer and the benchmarks):
//   every rank: forward/backward per micro-batch; micro-batch gradients are summed in order
//   allreduce-sum of the gradient block (and the BN running statistics), scaled by 1/size;
//     with allreduce `.overlap` the gradient block is reduced in buckets started DURING
//     backward (GradientBuckets), only when there is one micro-batch: with accumulation the
//     gradients are final only after the last micro-batch is summed and scaled, so those steps
//     use the blocking allreduce (same arithmetic either way)
//   update `.rank0`:      rank 0 applies the C-SGD transform + SGD, then broadcasts the weights
//   update `.replicated`: every rank applies the identical update (the official C-SGD code)
// With BatchNorm groups (`bn_group_size` g > 1) every training-mode BN also sums its
// per-channel statistics over the g ranks of its group, once in forward and once in backward;
// that time counts as communication.
// Compute, communication and update times are accumulated for the benchmarks.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDKernels
import CSGDModels

/// Buffers and timing for the steps of one network on one rank.
public final class StepRunner {
    let net: Network
    let comm: Communicator
    let microBatch: Int
    let microBatches: Int
    let update: UpdateMode
    let images: FloatBuffer
    let labels: UnsafeMutablePointer<Int32>
    let dLogits: FloatBuffer
    let accumulator: GradientAccumulator?
    /// The overlapped gradient allreduce, or nil for the blocking one.
    let buckets: GradientBuckets?
    /// Seconds spent in BatchNorm group sums (inside forward and backward).
    let groupTimer = GroupSumTimer()
    /// Seconds spent in forward/backward (incl. filling batches), allreduce/broadcast, update.
    /// Communicator calls made during backward (overlapped allreduce) count as communication:
    /// `communication` is the time not hidden behind compute.
    public private(set) var seconds = (compute: 0.0, communication: 0.0, update: 0.0)

    /// - Parameters:
    ///   - microBatch: images per forward/backward.
    ///   - microBatches: forward/backward passes per step (gradient accumulation).
    ///   - update: who applies the update.
    ///   - allreduce: `.overlap` (buckets reduced during backward; used with more than one rank
    ///     and one micro-batch, else blocking) or `.blocking` (one allreduce after backward).
    ///   - bucketMiB: target bucket size of the overlapped allreduce, in MiB (> 0).
    ///   - bnGroup: BatchNorm groups: with a group of more than one rank, `net`'s training-mode
    ///     BatchNorm pools its statistics over the group (sets `net.batchNormGroupReducer`;
    ///     otherwise clears it).
    public init(
        net: Network, comm: Communicator, microBatch: Int, microBatches: Int, update: UpdateMode,
        allreduce: AllreduceMode = RunConfig().allreduce, bucketMiB: Double = RunConfig().bucketMb,
        bnGroup: RankGroup? = nil
    ) {
        self.net = net
        self.comm = comm
        self.microBatch = microBatch
        self.microBatches = microBatches
        self.update = update
        images = FloatBuffer(count: microBatch * net.imageCount)
        labels = .allocate(capacity: microBatch)
        dLogits = FloatBuffer(count: microBatch * net.numClasses)
        accumulator = microBatches > 1 ? GradientAccumulator(count: net.store.grads.count) : nil
        let store = net.store
        if allreduce == .overlap && comm.size > 1 && microBatches == 1 {
            let elements = Int(min(max(bucketMiB * 262_144, 1), 1e15).rounded())  // 4 B floats
            // The specs tile the block by construction, so planning cannot fail.
            buckets = try! GradientBuckets(
                comm: comm, block: store.grads.pointer, count: store.grads.count,
                parameterRanges: store.specs.map { $0.offset..<($0.offset + $0.count) },
                bucketElements: elements)
        } else {
            buckets = nil
        }
        if let bnGroup, bnGroup.size > 1 {
            net.batchNormGroupReducer = { [groupTimer] sums, count in
                let t = monotonicSeconds()
                bnGroup.allreduceSum(sums, count: count)
                groupTimer.seconds += monotonicSeconds() - t
            }
        } else {
            net.batchNormGroupReducer = nil
        }
    }

    /// Buckets of the overlapped gradient allreduce; 0 when it blocks (see `init`).
    public var allreduceBucketCount: Int { buckets?.buckets.count ?? 0 }

    deinit { labels.deallocate() }

    /// Clears the timers.
    public func resetTimers() { seconds = (0, 0, 0) }

    /// Runs one step. `fill(m, images, labels)` writes micro-batch m.
    /// - Returns: summed loss and top-1 hits over this rank's samples.
    @discardableResult
    public func step(
        sgd: SGD, centripetal: CentripetalUpdate?, lr: Double,
        fill: (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>) -> Void
    ) -> (lossSum: Double, correct: Int) {
        let t0 = monotonicSeconds()
        let commBefore = (buckets?.communicationSeconds ?? 0) + groupTimer.seconds
        let onReady = buckets.map { b in { (r: Range<Int>) in b.gradientsReady(r) } }
        var lossSum = 0.0
        var correct = 0
        for m in 0..<microBatches {
            net.store.zeroGrad()
            fill(m, images.pointer, labels)
            let logits = net.forward(images: images.pointer, batch: microBatch, training: true)
            let r = softmaxCrossEntropy(
                dLogits: dLogits.pointer, logits: logits, labels: labels, n: microBatch,
                classes: net.numClasses)
            net.backward(dLogits: dLogits.pointer, onGradientsReady: onReady)
            accumulator?.accumulate(net.store.grads, index: m)
            lossSum += r.loss * Double(microBatch)
            correct += r.top1
        }
        accumulator?.finish(into: net.store.grads, count: microBatches)
        let t1 = monotonicSeconds()
        // Communicator calls made from inside backward are communication, not compute.
        let commInBackward =
            (buckets?.communicationSeconds ?? 0) + groupTimer.seconds - commBefore
        let store = net.store
        if let buckets {
            buckets.finish()
            averageAcrossRanks(store.buffers)
        } else if comm.size > 1 {
            averageAcrossRanks(store.grads)
            averageAcrossRanks(store.buffers)
        }
        let t2 = monotonicSeconds()
        var tUpdate = 0.0
        // Who updates: every rank (replicated) or rank 0, which then broadcasts.
        let updatesHere: Bool
        let broadcasts: Bool
        switch update {
        case .replicated: (updatesHere, broadcasts) = (true, false)
        case .rank0: (updatesHere, broadcasts) = (comm.isRoot, comm.size > 1)
        }
        if updatesHere || comm.size == 1 {
            centripetal?.transformGradients(store)
            sgd.step(store, lr: lr)
            tUpdate = monotonicSeconds() - t2
        }
        if broadcasts {
            comm.broadcast(store.values.pointer, count: store.values.count, root: 0)
        }
        let t3 = monotonicSeconds()
        seconds.compute += t1 - t0 - commInBackward
        seconds.update += tUpdate
        seconds.communication += (t3 - t1) - tUpdate + commInBackward
        return (lossSum, correct)
    }

    /// Replaces `block` by its mean over ranks (allreduce-sum, then × 1/size).
    func averageAcrossRanks(_ block: FloatBuffer) {
        comm.allreduceSum(block.pointer, count: block.count)
        comm.divideBySize(block.pointer, count: block.count)
    }
}

/// Sums micro-batch gradients in micro-batch order, then scales by 1/count — the same
/// arithmetic as an allreduce-sum over ranks followed by 1/size, so for 2 ranks (where
/// a + b = b + a) one rank with 2 micro-batches reproduces a 2-rank step bit for bit.
final class GradientAccumulator {
    let sum: FloatBuffer

    init(count: Int) { sum = FloatBuffer(count: count) }

    /// Adds micro-batch `index`'s gradient (the first one is copied).
    func accumulate(_ grads: FloatBuffer, index: Int) {
        if index == 0 {
            sum.pointer.update(from: grads.pointer, count: grads.count)
        } else {
            let s = sum.pointer
            let g = grads.pointer
            for i in 0..<grads.count { s[i] += g[i] }
        }
    }

    /// Writes sum × (1/count) into `grads`.
    func finish(into grads: FloatBuffer, count: Int) {
        let inv = 1 / Float(count)
        let s = sum.pointer
        let g = grads.pointer
        for i in 0..<grads.count { g[i] = s[i] * inv }
    }
}

/// Seconds spent in BatchNorm group sums (a box the network's reducer closure can add to
/// without holding the step runner).
final class GroupSumTimer {
    var seconds = 0.0
}
