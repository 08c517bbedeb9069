// Unit tests of the communicators in one process: LocalCommunicator, the MPI singleton
// (rank 0 of 1; MPI is initialised once and never finalised here, as it cannot be restarted),
// and CommCheck's ability to catch a communicator that corrupts data.

import CSGDCore
import XCTest

@testable import CSGDDistributed

final class CommunicatorTests: XCTestCase {
    /// The process-wide MPI singleton; initialised on first use, never finalised.
    private func mpi() throws -> MPICommunicator { try MPICommunicator.initialize() }

    /// Checks the size-1 semantics every communicator must have outside mpirun.
    private func assertRankZeroOfOneIdentity(_ comm: Communicator) {
        XCTAssertEqual(comm.rank, 0)
        XCTAssertEqual(comm.size, 1)
        XCTAssertTrue(comm.isRoot)
        XCTAssertFalse(comm.processorName.isEmpty)

        let original: [Float] = (0..<1000).map { Float($0) * 0.37 - 11 }
        let buffer = FloatBuffer(original)
        comm.allreduceSum(buffer)
        XCTAssertEqual(buffer.array, original)
        comm.allreduceSum(buffer.pointer, count: 0)
        comm.broadcast(buffer, root: 0)
        XCTAssertEqual(buffer.array, original)

        var doubles = [1.5, -2.25, 1e300]
        comm.allreduceSum(&doubles)
        XCTAssertEqual(doubles, [1.5, -2.25, 1e300])
        var none: [Double] = []
        comm.allreduceSum(&none)
        XCTAssertEqual(none, [])
        XCTAssertEqual(comm.allreduceMax(-3.5), -3.5)

        var bytes: [UInt8] = Array("payload".utf8)
        comm.broadcast(bytes: &bytes, root: 0)
        XCTAssertEqual(bytes, Array("payload".utf8))
        var empty: [UInt8] = []
        comm.broadcast(bytes: &empty, root: 0)
        XCTAssertEqual(empty, [])

        XCTAssertEqual(comm.allgather(0xDEAD_BEEF_0123_4567), [0xDEAD_BEEF_0123_4567])
        comm.barrier()
    }

    func testLocalCommunicatorIsIdentity() {
        assertRankZeroOfOneIdentity(LocalCommunicator())
    }

    /// Rank groups on one rank: a group of 1 is the identity (no communicator made); any other
    /// size does not divide the single rank and is refused with one line.
    func testRankGroupsOnOneRank() throws {
        for comm in [LocalCommunicator() as Communicator, try mpi()] {
            let group = try comm.makeRankGroup(groupSize: 1)
            XCTAssertEqual(group.size, 1)
            XCTAssertEqual(group.index, 0)
            var values = [1.5, -2.25, 1e300]
            values.withUnsafeMutableBufferPointer { group.allreduceSum($0.baseAddress!, count: 3) }
            XCTAssertEqual(values, [1.5, -2.25, 1e300])
            for bad in [2, 0, -1] {
                assertThrowsCSGDError(mentioning: "group size of \(bad) does not divide the 1 rank")
                {
                    _ = try comm.makeRankGroup(groupSize: bad)
                }
            }
        }
    }

    func testMPISingletonIsRankZeroOfOneAndInitialisesOnce() throws {
        let comm = try mpi()
        XCTAssertTrue(comm === (try mpi()), "a second initialize() must return the same object")
        XCTAssertFalse(comm.isFinalized)
        XCTAssertGreaterThanOrEqual(comm.threadLevel, 1)  // MPI_THREAD_FUNNELED
        assertRankZeroOfOneIdentity(comm)
        let made = try makeCommunicator()
        XCTAssertTrue(made === comm)
    }

    func testMPIChunkedRoundTripLeavesDataIntact() throws {
        let comm = try mpi()
        let saved = comm.maxChunkElements
        defer { comm.maxChunkElements = saved }
        comm.maxChunkElements = 7  // 100 elements → 14 pieces plus a ragged last one
        let original: [Float] = (0..<100).map { Float($0 * $0) }
        let buffer = FloatBuffer(original)
        comm.allreduceSum(buffer)
        comm.broadcast(buffer, root: 0)
        XCTAssertEqual(buffer.array, original)
        var doubles = (0..<50).map { Double($0) / 4 }
        comm.allreduceSum(&doubles)
        XCTAssertEqual(doubles, (0..<50).map { Double($0) / 4 })
        var bytes = (0..<40).map { UInt8($0) }
        comm.broadcast(bytes: &bytes, root: 0)
        XCTAssertEqual(bytes, (0..<40).map { UInt8($0) })
    }

    func testNonBlockingAllreduceInPiecesCompletesIntact() throws {
        for comm in [LocalCommunicator() as Communicator, try mpi()] {
            let mpi = comm as? MPICommunicator
            let saved = mpi?.maxChunkElements
            defer { if let saved { mpi?.maxChunkElements = saved } }
            mpi?.maxChunkElements = 7  // 3 requests of 5 / 40 / 55 elements → 1 + 6 + 8 pieces
            let original: [Float] = (0..<100).map { Float($0) * 1.5 - 7 }
            let buffer = FloatBuffer(original)
            let a = comm.startAllreduceSum(buffer.pointer + 60, count: 40)
            let b = comm.startAllreduceSum(buffer.pointer + 5, count: 55)
            let c = comm.startAllreduceSum(buffer.pointer, count: 5)
            let empty = comm.startAllreduceSum(buffer.pointer, count: 0)
            XCTAssertEqual(Set([a, b, c, empty]).count, 4, "handles must be distinct")
            var spins = 0
            while !comm.test(b) && spins < 1_000_000 { spins += 1 }
            XCTAssertTrue(comm.test(b), "a 1-rank reduction must complete under test")
            comm.waitAll()
            for r in [a, b, c, empty] { XCTAssertTrue(comm.test(r)) }
            XCTAssertTrue(comm.testAll())
            XCTAssertEqual(buffer.array, original)
        }
    }

    func testCommCheckPassesOnBothSingleRankCommunicators() throws {
        for comm in [LocalCommunicator() as Communicator, try mpi()] {
            let report = CommCheck.run(comm: comm, count: 1001, seed: 3)
            XCTAssertTrue(report.ok, report.line)
            XCTAssertTrue(report.allRanksOK)
            XCTAssertEqual(report.failedRanks, [])
            XCTAssertTrue(report.line.hasPrefix("rank 0/1 on \(comm.processorName): "))
            XCTAssertTrue(report.line.contains("allreduce ok (1001 floats)"), report.line)
            XCTAssertTrue(report.line.contains("iallreduce ok (3 requests)"), report.line)
            XCTAssertTrue(report.line.hasSuffix(": OK"), report.line)
        }
    }

    func testCommCheckCatchesCorruptedCollectives() {
        let report = CommCheck.run(comm: CorruptingCommunicator(), count: 500, seed: 9)
        XCTAssertFalse(report.ok)
        XCTAssertEqual(report.failedRanks, [0])
        XCTAssertTrue(report.line.hasSuffix(": FAILED"), report.line)
        let failed = report.failures.joined(separator: "\n")
        XCTAssertTrue(failed.contains("allreduce FAILED (1 of 500 wrong; first at 5"), failed)
        XCTAssertTrue(failed.contains("bytes FAILED"), failed)
        XCTAssertTrue(failed.contains("iallreduce FAILED (3 of 500 wrong"), failed)
        XCTAssertTrue(failed.contains("allgather FAILED"), failed)
        XCTAssertFalse(failed.contains("broadcast FAILED"), failed)
    }

    func testAllreduceInputsAreSmallExactIntegers() {
        let p = FloatBuffer(count: 10_000)
        CommCheck.fillAllreduceInput(p.pointer, count: p.count, seed: 1, rank: 4)
        for v in p.array {
            XCTAssertEqual(v, v.rounded())
            XCTAssertTrue((5...1028).contains(v))
        }
    }

    func testLaunchEnvironmentReadsOpenMPIVariables() {
        let under = LaunchEnvironment(
            environment: ["OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "2"])
        XCTAssertEqual(under.worldSize, 3)
        XCTAssertEqual(under.worldRank, 2)
        XCTAssertTrue(under.underMPIRun)
        let plain = LaunchEnvironment(environment: [:])
        XCTAssertFalse(plain.underMPIRun)
        XCTAssertNil(plain.worldRank)
    }
}

/// A 1-rank communicator that damages data: one wrong allreduce element, a truncated byte
/// broadcast, and wrong gathered checksums (small values, the failure flags, pass intact).
private final class CorruptingCommunicator: Communicator {
    let rank = 0
    let size = 1
    let processorName = "test"

    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        if count > 5 { buffer[5] += 1 }
    }
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> CommRequest {
        allreduceSum(buffer, count: count)
        return CommRequest(serial: 0)
    }
    func test(_ request: CommRequest) -> Bool { true }
    func testAll() -> Bool { true }
    func waitAll() {}
    func allreduceSum(_ values: inout [Double]) {}
    func allreduceMax(_ value: Double) -> Double { value }
    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {}
    func broadcast(bytes: inout [UInt8], root: Int) { bytes.removeLast() }
    func allgather(_ value: UInt64) -> [UInt64] { [value > 1 ? value ^ 1 : value] }  // checksums
    func barrier() {}
    func abort(code: Int32, message: String) -> Never { fatalError(message) }
}

/// Fails unless `body` throws a `CSGDError` whose message contains `needle`.
private func assertThrowsCSGDError(
    mentioning needle: String, file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> Void
) {
    do {
        try body()
        XCTFail("expected a CSGDError mentioning \(needle)", file: file, line: line)
    } catch let error as CSGDError {
        XCTAssertTrue(error.message.contains(needle), error.message, file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}
