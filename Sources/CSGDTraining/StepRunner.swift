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
// Micro-batches are virtual ranks: each starts from the step's BN running statistics, and the
// step keeps their mean (what N ranks' buffer allreduce gives), so the micro-batches of a step
// are independent. With `threads` T > 1 and M > 1 micro-batches they run T at a time on T
// network replicas (replica 0 is the net; the others get its weights each step), each
// single-threaded, and are summed in micro-batch order: the same arithmetic as one thread, so
// weights and statistics are bitwise independent of T. (One process's kernels split over
// threads scale poorly on 2–16 cores — docs/scaling.md — while independent images scale as
// ranks do.)
// Compute, communication and update times are accumulated for the benchmarks.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDKernels
import CSGDModels
import Dispatch

/// Buffers and timing for the steps of one network on one rank.
public final class StepRunner {
    let net: Network
    let comm: Communicator
    let microBatch: Int
    let microBatches: Int
    let update: UpdateMode
    let accumulator: GradientAccumulator?
    /// Networks running micro-batches concurrently (`replicas[0] === net`), with their own
    /// input, label and logit-gradient buffers; one entry when micro-batches run in sequence.
    let replicas: [Replica]
    /// The step's starting BN running statistics, and the mean of each micro-batch's result
    /// (micro-batches > 1 only).
    let bufferStart: FloatBuffer?
    let bufferMean: GradientAccumulator?
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
    ///   - threads: with more than one thread and more than one micro-batch, micro-batches run
    ///     `min(threads, microBatches)` at a time on network replicas (not with BN groups,
    ///     whose collectives must be issued in one order per rank).
    public init(
        net: Network, comm: Communicator, microBatch: Int, microBatches: Int, update: UpdateMode,
        allreduce: AllreduceMode = RunConfig().allreduce, bucketMiB: Double = RunConfig().bucketMb,
        bnGroup: RankGroup? = nil, threads: Int = 1
    ) throws {
        self.net = net
        self.comm = comm
        self.microBatch = microBatch
        self.microBatches = microBatches
        self.update = update
        let parallel =
            microBatches > 1 && (bnGroup?.size ?? 1) == 1 ? min(max(threads, 1), microBatches) : 1
        var replicas = [Replica(net, microBatch: microBatch)]
        for _ in 1..<max(parallel, 1) {
            let copy = try Network(architecture: net.architecture)
            replicas.append(Replica(copy, microBatch: microBatch))
        }
        self.replicas = replicas
        accumulator = microBatches > 1 ? GradientAccumulator(count: net.store.grads.count) : nil
        bufferStart = microBatches > 1 ? FloatBuffer(count: net.store.buffers.count) : nil
        bufferMean = microBatches > 1 ? GradientAccumulator(count: net.store.buffers.count) : nil
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

    /// Micro-batches run at once (1 = in sequence).
    public var parallelMicroBatches: Int { replicas.count }

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
        if let bufferStart {
            bufferStart.pointer.update(from: net.store.buffers.pointer, count: bufferStart.count)
        }
        for r in replicas.dropFirst() {
            r.net.batchNorm = net.batchNorm
            r.net.store.values.pointer.update(
                from: net.store.values.pointer, count: net.store.values.count)
        }
        let mb = microBatch
        for wave in stride(from: 0, to: microBatches, by: replicas.count) {
            let count = min(replicas.count, microBatches - wave)
            for t in 0..<count { fill(wave + t, replicas[t].images.pointer, replicas[t].labels) }
            let run = { (t: Int) in
                let r = self.replicas[t]
                r.net.store.zeroGrad()
                if let start = self.bufferStart {
                    r.net.store.buffers.pointer.update(from: start.pointer, count: start.count)
                }
                let logits = r.net.forward(images: r.images.pointer, batch: mb, training: true)
                let ce = softmaxCrossEntropy(
                    dLogits: r.dLogits.pointer, logits: logits, labels: r.labels, n: mb,
                    classes: r.net.numClasses)
                r.result = (ce.loss, ce.top1)
                r.net.backward(dLogits: r.dLogits.pointer, onGradientsReady: onReady)
            }
            if count == 1 {
                run(0)
            } else {
                // Each replica's kernels single-threaded: the replicas are the parallelism.
                let (blas, kernels) = (BLASThreads.current, KernelThreads.count)
                BLASThreads.set(1)
                KernelThreads.set(1)
                DispatchQueue.concurrentPerform(iterations: count, execute: run)
                BLASThreads.set(blas)
                KernelThreads.set(kernels)
            }
            for t in 0..<count {
                let r = replicas[t]
                accumulator?.accumulate(r.net.store.grads, index: wave + t)
                bufferMean?.accumulate(r.net.store.buffers, index: wave + t)
                lossSum += r.result.loss * Double(mb)
                correct += r.result.top1
            }
        }
        accumulator?.finish(into: net.store.grads, count: microBatches)
        bufferMean?.finish(into: net.store.buffers, count: microBatches)
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
/// a + b = b + a) one rank with 2 micro-batches reproduces a 2-rank step bit for bit. Also
/// takes the micro-batches' BN running statistics to their mean (the buffer allreduce's twin).
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

/// One network that runs micro-batches, with its own batch buffers.
final class Replica {
    let net: Network
    let images: FloatBuffer
    let labels: UnsafeMutablePointer<Int32>
    let dLogits: FloatBuffer
    /// The last micro-batch's loss and hits.
    var result = (loss: 0.0, top1: 0)

    init(_ net: Network, microBatch: Int) {
        self.net = net
        images = FloatBuffer(count: microBatch * net.imageCount)
        labels = .allocate(capacity: microBatch)
        dLogits = FloatBuffer(count: microBatch * net.numClasses)
    }

    deinit { labels.deallocate() }
}

/// Seconds spent in BatchNorm group sums (a box the network's reducer closure can add to
/// without holding the step runner).
final class GroupSumTimer {
    var seconds = 0.0
}
