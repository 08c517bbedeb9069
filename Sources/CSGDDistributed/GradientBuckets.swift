// Overlapping the gradient allreduce with backward, PyTorch-DDP style.
//
// The gradient block is cut, from its END, into contiguous buckets of about `bucketElements`
// floats at parameter boundaries: backward walks the layers in reverse, so the last parameters'
// gradients are final first. As backward reports final ranges, a bucket whose every element is
// final starts a non-blocking allreduce while the earlier layers are still being computed. Open
// MPI has no progress thread, so every report also calls `testAll` to move the started
// reductions along. `finish()` waits for all of them and scales by 1/size: the same arithmetic
// as a blocking allreduce-sum followed by × (1/size), element for element.
//
// Buckets start strictly in order (bucket k only after bucket k−1), so every rank issues the
// same sequence of collectives even if layers reported their ranges in a different order.

import CSGDCore
import Dispatch

/// Splits a gradient block into buckets and allreduces each one as soon as its gradients are
/// final (see the file comment). One instance per gradient block; reuse it every step.
public final class GradientBuckets {
    /// The buckets in start order: `buckets[0]` ends at the end of the block, and each next one
    /// ends where the previous one begins. Together they cover the block exactly once.
    public let buckets: [Range<Int>]
    /// Elements in the block.
    public let count: Int
    private let comm: Communicator
    private let block: UnsafeMutablePointer<Float>
    /// Final elements reported so far in each bucket, this step.
    private var ready: [Int]
    /// Buckets whose allreduce has started, this step (always a prefix of `buckets`).
    private var started = 0
    /// Seconds spent inside communicator calls this instance made (start, test, wait, scale).
    public private(set) var communicationSeconds = 0.0

    /// Cuts parameters into buckets from the end of the block, in the DDP manner: parameters
    /// are added in reverse order until a bucket holds at least `bucketElements`; a parameter
    /// that would push a non-empty bucket past `bucketElements` starts the next bucket, so a
    /// bucket exceeds `bucketElements` only when it holds one parameter larger than that.
    /// - Parameters:
    ///   - parameterRanges: each parameter's range in the block; together they must cover
    ///     `0..<count` without gaps or overlaps (in any order).
    ///   - bucketElements: target floats per bucket (at least 1).
    /// - Returns: the buckets in start order (last bucket of the block first).
    /// - Throws: `CSGDError` if the ranges do not tile `0..<count` or `bucketElements` < 1.
    public static func plan(parameterRanges: [Range<Int>], count: Int, bucketElements: Int)
        throws -> [Range<Int>]
    {
        if bucketElements < 1 {
            throw CSGDError("bucket size must be at least 1 element (got \(bucketElements))")
        }
        let sorted = parameterRanges.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        var expected = 0
        for r in sorted {
            if r.lowerBound != expected {
                throw CSGDError(
                    "parameter ranges do not tile the gradient block: \(expected) expected, "
                        + "range \(r) found")
            }
            expected = r.upperBound
        }
        if expected != count {
            throw CSGDError("parameter ranges end at \(expected), the block has \(count)")
        }
        var buckets: [Range<Int>] = []
        var upper = count  // end of the bucket being filled
        var lower = count
        for r in sorted.reversed() {
            if lower < upper && upper - r.lowerBound > bucketElements {
                buckets.append(lower..<upper)
                upper = lower
            }
            lower = r.lowerBound
            if upper - lower >= bucketElements {
                buckets.append(lower..<upper)
                upper = lower
            }
        }
        if lower < upper { buckets.append(lower..<upper) }
        return buckets
    }

    /// Buckets over `block[0..<count]`, reduced across the ranks of `comm`.
    /// - Parameters:
    ///   - block: the gradient block; must stay allocated as long as this object.
    ///   - parameterRanges, bucketElements: see `plan`.
    /// - Throws: `CSGDError` from `plan`.
    public init(
        comm: Communicator, block: UnsafeMutablePointer<Float>, count: Int,
        parameterRanges: [Range<Int>], bucketElements: Int
    ) throws {
        self.comm = comm
        self.block = block
        self.count = count
        buckets = try Self.plan(
            parameterRanges: parameterRanges, count: count, bucketElements: bucketElements)
        ready = [Int](repeating: 0, count: buckets.count)
    }

    /// Records that the gradients in `range` are final, starts the allreduce of every bucket
    /// (in order) that is now complete, and progresses the ones already started. Each element
    /// must be reported at most once per step.
    public func gradientsReady(_ range: Range<Int>) {
        let t0 = monotonicSeconds()
        let clamped = range.clamped(to: 0..<count)
        if clamped.count != range.count {
            comm.abort(code: 1, message: "gradient range \(range) is outside 0..<\(count)")
        }
        // Buckets are in descending order of position; find the first one touching the range.
        var b = bucketIndex(containing: range.upperBound - 1)
        while b < buckets.count && !range.isEmpty && buckets[b].upperBound > range.lowerBound {
            ready[b] += buckets[b].clamped(to: range).count
            if ready[b] > buckets[b].count {
                comm.abort(code: 1, message: "gradients of bucket \(buckets[b]) reported twice")
            }
            b += 1
        }
        startReadyBuckets()
        comm.testAll()
        communicationSeconds += monotonicSeconds() - t0
    }

    /// Starts every bucket not started yet (gradients nobody reported are final too once
    /// backward is over), waits for all of them, scales the block by 1/size, and resets for
    /// the next step. Call it once per step, after backward.
    public func finish() {
        let t0 = monotonicSeconds()
        while started < buckets.count {
            let r = buckets[started]
            _ = comm.startAllreduceSum(block + r.lowerBound, count: r.count)
            started += 1
        }
        comm.waitAll()
        if comm.size > 1 { comm.divideBySize(block, count: count) }
        ready = [Int](repeating: 0, count: buckets.count)
        started = 0
        communicationSeconds += monotonicSeconds() - t0
    }

    /// Clears `communicationSeconds`.
    public func resetTimer() { communicationSeconds = 0 }

    private func startReadyBuckets() {
        while started < buckets.count && ready[started] == buckets[started].count {
            let r = buckets[started]
            _ = comm.startAllreduceSum(block + r.lowerBound, count: r.count)
            started += 1
        }
    }

    /// Index of the bucket holding element `i` (buckets are sorted by descending position).
    private func bucketIndex(containing i: Int) -> Int {
        var lo = 0
        var hi = buckets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if buckets[mid].lowerBound > i { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
