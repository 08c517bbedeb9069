// Sampler semantics for data parallelism: per-epoch permutations, rank slices that tile the
// global batch, argument checks, and eval sharding.

import CSGDCore
import CSGDData
import CSGDTestSupport
import XCTest

final class SamplerTests: XCTestCase {
    func testRejectsBadArguments() {
        assertCSGDError(["130", "4"]) {
            _ = try Sampler(
                datasetCount: 1000, globalBatch: 130, rank: 0, worldSize: 4, seed: 1, shuffle: true)
        }
        assertCSGDError(["128", "100"]) {
            _ = try Sampler(
                datasetCount: 100, globalBatch: 128, rank: 0, worldSize: 1, seed: 1, shuffle: true)
        }
        assertCSGDError(["rank 4"]) {
            _ = try Sampler(
                datasetCount: 100, globalBatch: 8, rank: 4, worldSize: 4, seed: 1, shuffle: true)
        }
        assertCSGDError(["world size"]) {
            _ = try Sampler(
                datasetCount: 100, globalBatch: 8, rank: 0, worldSize: 0, seed: 1, shuffle: true)
        }
    }

    func testEpochOrderIsASeededPermutation() throws {
        let s = try Sampler(
            datasetCount: 103, globalBatch: 10, rank: 0, worldSize: 2, seed: 42, shuffle: true)
        XCTAssertEqual(s.stepsPerEpoch, 10)
        XCTAssertEqual(s.localBatch, 5)
        let orders = (0..<4).map { s.globalOrder(epoch: $0) }
        for o in orders { XCTAssertEqual(o.sorted(), Array(0..<103)) }
        XCTAssertEqual(Set(orders).count, 4, "different epochs must differ")
        let again = try Sampler(
            datasetCount: 103, globalBatch: 10, rank: 1, worldSize: 2, seed: 42, shuffle: true)
        XCTAssertEqual(again.globalOrder(epoch: 2), orders[2], "same seed, same order on all ranks")
        let otherSeed = try Sampler(
            datasetCount: 103, globalBatch: 10, rank: 0, worldSize: 2, seed: 43, shuffle: true)
        XCTAssertNotEqual(otherSeed.globalOrder(epoch: 2), orders[2])
        var rng = Rng.derived(seed: 42, 0x5A, 3)
        XCTAssertEqual(orders[3], rng.permutation(103))
        let plain = try Sampler(
            datasetCount: 103, globalBatch: 10, rank: 0, worldSize: 2, seed: 42, shuffle: false)
        XCTAssertEqual(plain.globalOrder(epoch: 5), Array(0..<103))
    }

    func testRankSlicesTileTheOneRankGlobalBatch() throws {
        let count = 250
        let globalBatch = 24
        for world in [1, 2, 3, 4, 8] {
            let samplers = try (0..<world).map {
                try Sampler(
                    datasetCount: count, globalBatch: globalBatch, rank: $0, worldSize: world,
                    seed: 7, shuffle: true)
            }
            let single = try Sampler(
                datasetCount: count, globalBatch: globalBatch, rank: 0, worldSize: 1, seed: 7,
                shuffle: true)
            for epoch in 0..<2 {
                var seen = Set<Int>()
                for step in 0..<single.stepsPerEpoch {
                    let slices = samplers.map { $0.rankBatch(epoch: epoch, step: step) }
                    for s in slices { XCTAssertEqual(s.count, globalBatch / world) }
                    XCTAssertEqual(Set(slices.joined()).count, globalBatch, "slices overlap")
                    XCTAssertEqual(
                        Array(slices.joined()), single.rankBatch(epoch: epoch, step: step))
                    seen.formUnion(slices.joined())
                }
                // drop_last: every step's samples are distinct, the remainder is never used.
                XCTAssertEqual(seen.count, single.stepsPerEpoch * globalBatch)
                let order = single.globalOrder(epoch: epoch)
                XCTAssertEqual(seen, Set(order[0..<(single.stepsPerEpoch * globalBatch)]))
            }
        }
    }

    func testEvalShardCoversEverythingOnce() {
        for count in [0, 1, 5, 7, 10, 103, 10_000] {
            for world in 1...8 {
                let shards = (0..<world).map {
                    Sampler.evalShard(count: count, rank: $0, worldSize: world)
                }
                XCTAssertEqual(shards.flatMap { Array($0) }, Array(0..<count))
                let sizes = shards.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
        }
    }
}
