// Unit tests of the gradient buckets in one process: the plan tiles the block from its end,
// buckets start in order as soon as their last gradient is reported, every element is reduced
// exactly once, and the result is scaled by 1/size.

import CSGDCore
import XCTest

@testable import CSGDDistributed

final class GradientBucketsTests: XCTestCase {
    /// Contiguous ranges of the given sizes, in block order.
    func ranges(_ sizes: [Int]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var offset = 0
        for s in sizes {
            out.append(offset..<(offset + s))
            offset += s
        }
        return out
    }

    /// The plan's invariants: reverse order, exact cover, cuts at parameter boundaries, and no
    /// bucket above the cap unless it is one parameter.
    func checkPlan(
        _ sizes: [Int], cap: Int, file: StaticString = #filePath, line: UInt = #line
    ) throws -> [Range<Int>] {
        let params = ranges(sizes)
        let total = sizes.reduce(0, +)
        let plan = try GradientBuckets.plan(
            parameterRanges: params.shuffled(), count: total, bucketElements: cap)
        var upper = total
        for b in plan {
            XCTAssertEqual(b.upperBound, upper, "buckets must run from the end, back to back")
            XCTAssertFalse(b.isEmpty, file: file, line: line)
            upper = b.lowerBound
            let inside = params.filter { b.contains($0.lowerBound) }
            XCTAssertTrue(
                params.contains { $0.lowerBound == b.lowerBound }, "cut inside a parameter",
                file: file, line: line)
            XCTAssertEqual(
                inside.reduce(0) { $0 + $1.count }, b.count, "bucket \(b) splits a parameter",
                file: file, line: line)
            if b.count > cap {
                XCTAssertEqual(
                    inside.count, 1, "bucket \(b) exceeds \(cap)", file: file, line: line)
            }
        }
        XCTAssertEqual(upper, 0, "buckets must cover the block down to 0", file: file, line: line)
        return plan
    }

    func testPlanTilesTheBlockFromTheEnd() throws {
        let plan = try checkPlan([3, 4, 5, 2, 2, 2, 7, 1], cap: 8)
        // From the end: 1+7 = 8 closes; 2+2+2 = 6, +5 would be 11 > 8, closes; 5 then +4 = 9 > 8
        // closes at 5; 4+3 = 7.
        XCTAssertEqual(plan, [18..<26, 12..<18, 7..<12, 0..<7])
    }

    func testAHugeParameterGetsItsOwnBucket() throws {
        let plan = try checkPlan([2, 3, 100, 4, 1], cap: 10)
        XCTAssertEqual(plan, [105..<110, 5..<105, 0..<5])
        XCTAssertEqual(try checkPlan([50], cap: 10), [0..<50])
    }

    func testOneBucketWhenTheCapExceedsTheBlock() throws {
        XCTAssertEqual(try checkPlan([3, 4, 5], cap: 1000), [0..<12])
        XCTAssertEqual(try checkPlan([1, 1, 1], cap: 1), [2..<3, 1..<2, 0..<1])
    }

    func testPlanOfRandomLayoutsKeepsItsInvariants() throws {
        var rng = Rng(seed: 3)
        for _ in 0..<200 {
            let sizes = (0..<(1 + rng.nextInt(below: 30))).map { _ in 1 + rng.nextInt(below: 50) }
            _ = try checkPlan(sizes, cap: 1 + rng.nextInt(below: 120))
        }
    }

    func testPlanRejectsGapsOverlapsAndBadSizes() {
        XCTAssertThrowsError(
            try GradientBuckets.plan(parameterRanges: [0..<3, 4..<6], count: 6, bucketElements: 4))
        XCTAssertThrowsError(
            try GradientBuckets.plan(parameterRanges: [0..<4, 3..<6], count: 6, bucketElements: 4))
        XCTAssertThrowsError(
            try GradientBuckets.plan(parameterRanges: [0..<3, 3..<6], count: 7, bucketElements: 4))
        XCTAssertThrowsError(
            try GradientBuckets.plan(parameterRanges: [0..<3, 3..<6], count: 6, bucketElements: 0))
    }

    func testLocalCommunicatorLeavesGradientsUnchanged() throws {
        let sizes = [3, 4, 5, 2, 2, 2, 7, 1]
        let original: [Float] = (0..<26).map { Float($0) * 0.75 - 4 }
        let block = FloatBuffer(original)
        let buckets = try GradientBuckets(
            comm: LocalCommunicator(), block: block.pointer, count: block.count,
            parameterRanges: ranges(sizes), bucketElements: 8)
        for step in 0..<2 {  // the second step checks the reset
            for r in ranges(sizes).reversed() { buckets.gradientsReady(r) }
            buckets.finish()
            XCTAssertEqual(block.array, original, "step \(step)")
        }
    }

    /// A fake 2-rank job whose other rank holds the same data: each reduction doubles its
    /// elements. After `finish` (× 1/2) every element reduced exactly once is back to its
    /// original value; one reduced twice is doubled, one never reduced is halved.
    func testEveryElementIsReducedOnceAndScaled() throws {
        let sizes = [3, 4, 5, 2, 2, 2, 7, 1]
        let original: [Float] = (0..<26).map { Float($0) + 1 }
        let block = FloatBuffer(original)
        let comm = RecordingCommunicator(base: block.pointer)
        let buckets = try GradientBuckets(
            comm: comm, block: block.pointer, count: block.count, parameterRanges: ranges(sizes),
            bucketElements: 8)
        XCTAssertEqual(buckets.buckets, [18..<26, 12..<18, 7..<12, 0..<7])
        let params = ranges(sizes)
        // Report layer by layer from the end; a bucket starts exactly with its last parameter.
        var expectedStarts: [Range<Int>] = []
        for r in params.reversed() {
            buckets.gradientsReady(r)
            if let b = buckets.buckets.first(where: { $0.lowerBound == r.lowerBound }) {
                expectedStarts.append(b)
            }
            XCTAssertEqual(comm.started, expectedStarts, "after reporting \(r)")
            XCTAssertGreaterThan(comm.tests, 0, "started reductions must be progressed")
        }
        XCTAssertEqual(comm.waits, 0)
        buckets.finish()
        XCTAssertEqual(comm.waits, 1)
        XCTAssertEqual(comm.started, buckets.buckets)
        XCTAssertEqual(block.array, original)
    }

    func testBucketsStartInOrderWhateverTheReportOrder() throws {
        let sizes = [4, 4, 4, 4]
        let block = FloatBuffer(count: 16)
        let comm = RecordingCommunicator(base: block.pointer)
        let buckets = try GradientBuckets(
            comm: comm, block: block.pointer, count: 16, parameterRanges: ranges(sizes),
            bucketElements: 4)
        XCTAssertEqual(buckets.buckets, [12..<16, 8..<12, 4..<8, 0..<4])
        buckets.gradientsReady(4..<8)  // bucket 2 is complete, but bucket 0 has not started
        XCTAssertEqual(comm.started, [])
        buckets.gradientsReady(10..<16)  // a range over two buckets: 0 complete, 1 half
        XCTAssertEqual(comm.started, [12..<16])
        buckets.gradientsReady(8..<10)  // completes 1, and 2 was waiting behind it
        XCTAssertEqual(comm.started, [12..<16, 8..<12, 4..<8])
        buckets.finish()  // 0..<4 was never reported: finish starts it
        XCTAssertEqual(comm.started, [12..<16, 8..<12, 4..<8, 0..<4])
    }

    func testFinishWithoutReportsReducesEverything() throws {
        let original: [Float] = (0..<10).map { Float($0) }
        let block = FloatBuffer(original)
        let comm = RecordingCommunicator(base: block.pointer)
        let buckets = try GradientBuckets(
            comm: comm, block: block.pointer, count: 10, parameterRanges: ranges([6, 4]),
            bucketElements: 4)
        buckets.finish()
        XCTAssertEqual(comm.started, [6..<10, 0..<6])
        XCTAssertEqual(block.array, original)
    }
}

/// Two "ranks" holding the same data: an allreduce-sum doubles the elements. Records the
/// ranges of started non-blocking reductions, as offsets from `base`.
private final class RecordingCommunicator: Communicator {
    let rank = 0
    let size = 2
    let processorName = "test"
    let base: UnsafeMutablePointer<Float>
    var started: [Range<Int>] = []
    var tests = 0
    var waits = 0
    private var pending: [(UnsafeMutablePointer<Float>, Int)] = []

    init(base: UnsafeMutablePointer<Float>) { self.base = base }

    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> CommRequest {
        started.append((buffer - base)..<(buffer - base + count))
        pending.append((buffer, count))
        return CommRequest(serial: started.count - 1)
    }
    func test(_ request: CommRequest) -> Bool {
        tests += 1
        return false
    }
    func testAll() -> Bool {
        tests += 1
        return pending.isEmpty
    }
    func waitAll() {
        waits += 1
        for (p, n) in pending { allreduceSum(p, count: n) }
        pending.removeAll()
    }
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { buffer[i] *= 2 }
    }
    func allreduceSum(_ values: inout [Double]) {}
    func allreduceMax(_ value: Double) -> Double { value }
    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {}
    func broadcast(bytes: inout [UInt8], root: Int) {}
    func allgather(_ value: UInt64) -> [UInt64] { [value, value] }
    func barrier() {}
    func abort(code: Int32, message: String) -> Never { fatalError(message) }
}
