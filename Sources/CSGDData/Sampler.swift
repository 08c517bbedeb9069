// Which samples each rank trains on at each step. One global order per epoch (same on every
// rank, seeded by (seed, epoch)); each global batch is split into contiguous per-rank slices.
// Because the order does not depend on the world size, N ranks and one rank accumulating N
// micro-batches see exactly the same samples, which is what makes their runs comparable.

import CSGDCore

/// Data-parallel sampling with `drop_last` semantics.
///
/// Step `s` of epoch `e` uses the global batch `globalOrder(epoch: e)[s·G ..< (s+1)·G]` with
/// `G = globalBatch`; rank `r` of `W` takes its contiguous slice `[r·B ..< (r+1)·B]`,
/// `B = G / W`. Neither the order nor the global batch depends on `rank` or `worldSize`, so a
/// 1-rank run that accumulates gradients over `N` micro-batches of `B` — micro-batch `k` being
/// the slice `[k·B ..< (k+1)·B]` of the global batch, i.e. what `rankBatch` returns for rank `k`
/// of `N` — processes exactly the samples that `N` ranks process, split the same way.
/// The last `datasetCount % globalBatch` samples of each epoch's order are dropped.
public struct Sampler: Sendable, Equatable {
    /// Number of samples in the dataset.
    public let datasetCount: Int
    /// Samples per optimizer step, summed over all ranks.
    public let globalBatch: Int
    /// This process's rank, `0..<worldSize`.
    public let rank: Int
    /// Number of data-parallel ranks.
    public let worldSize: Int
    /// Seed of the per-epoch shuffles.
    public let seed: UInt64
    /// Whether epochs are shuffled (otherwise the order is `0..<datasetCount`).
    public let shuffle: Bool

    /// Creates a sampler.
    /// - Throws: `CSGDError` if `worldSize < 1`, `rank` is not in `0..<worldSize`,
    ///   `globalBatch < 1`, `globalBatch` is not divisible by `worldSize`, or
    ///   `globalBatch > datasetCount`.
    public init(
        datasetCount: Int, globalBatch: Int, rank: Int, worldSize: Int, seed: UInt64,
        shuffle: Bool
    ) throws {
        if worldSize < 1 { throw CSGDError("world size must be ≥ 1, got \(worldSize)") }
        if rank < 0 || rank >= worldSize {
            throw CSGDError("rank \(rank) is outside 0..<\(worldSize)")
        }
        if globalBatch < 1 { throw CSGDError("global batch must be ≥ 1, got \(globalBatch)") }
        if globalBatch % worldSize != 0 {
            throw CSGDError(
                "global batch \(globalBatch) is not divisible by world size \(worldSize)",
                hint: "choose a global batch that is a multiple of the number of ranks")
        }
        if globalBatch > datasetCount {
            throw CSGDError(
                "global batch \(globalBatch) is larger than the dataset (\(datasetCount) samples)",
                hint: "lower the batch size or raise the dataset limit")
        }
        self.datasetCount = datasetCount
        self.globalBatch = globalBatch
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.shuffle = shuffle
    }

    /// Samples per rank per step: `globalBatch / worldSize`.
    public var localBatch: Int { globalBatch / worldSize }

    /// Optimizer steps per epoch (`drop_last`): `datasetCount / globalBatch`.
    public var stepsPerEpoch: Int { datasetCount / globalBatch }

    /// The epoch's order of all sample indices: a permutation of `0..<datasetCount` drawn from
    /// `Rng.derived(seed: seed, 0x5A, epoch)`, or the identity if `shuffle` is off.
    public func globalOrder(epoch: Int) -> [Int] {
        if !shuffle { return Array(0..<datasetCount) }
        var rng = Rng.derived(seed: seed, 0x5A, UInt64(truncatingIfNeeded: epoch))
        return rng.permutation(datasetCount)
    }

    /// This rank's sample indices for `step` (in `0..<stepsPerEpoch`) of `epoch`.
    ///
    /// Recomputes the epoch's order; in a loop, call `globalOrder(epoch:)` once and use
    /// `rankBatch(order:step:)`.
    public func rankBatch(epoch: Int, step: Int) -> [Int] {
        rankBatch(order: globalOrder(epoch: epoch), step: step)
    }

    /// This rank's sample indices for `step`, sliced from an order from `globalOrder(epoch:)`.
    public func rankBatch(order: [Int], step: Int) -> [Int] {
        if step < 0 || step >= stepsPerEpoch {
            fatalError("Sampler: step \(step) outside 0..<\(stepsPerEpoch)")
        }
        if order.count != datasetCount {
            fatalError("Sampler: order has \(order.count) entries, expected \(datasetCount)")
        }
        let start = step * globalBatch + rank * localBatch
        return Array(order[start..<(start + localBatch)])
    }

    /// The contiguous slice of `0..<count` that `rank` evaluates: slices of all ranks cover
    /// every index exactly once, in rank order, and their sizes differ by at most one (the
    /// first `count % worldSize` ranks get one extra).
    public static func evalShard(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        if worldSize < 1 || rank < 0 || rank >= worldSize || count < 0 {
            fatalError("Sampler.evalShard: bad rank \(rank) / world \(worldSize) / count \(count)")
        }
        let base = count / worldSize
        let extra = count % worldSize
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }
}
