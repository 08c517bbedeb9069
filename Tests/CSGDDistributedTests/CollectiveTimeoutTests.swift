// Unit tests of the collective timeout in one process: its defaults, that the MPI singleton's
// collectives still complete under a tiny timeout (completion is tested before the deadline),
// and the one line a timed-out rank prints. The stuck-rank abort itself runs through the real
// binary under mpirun (CSGDCLITests/StuckRankTests.swift).

import CSGDCore
import XCTest

@testable import CSGDDistributed

final class CollectiveTimeoutTests: XCTestCase {
    func testDefaultsAndSettableOnEveryCommunicator() throws {
        XCTAssertEqual(defaultCollectiveTimeout, 300)
        let local = LocalCommunicator()
        XCTAssertEqual(local.collectiveTimeout, 300)
        XCTAssertNil(local.currentStep)
        local.collectiveTimeout = 2
        local.currentStep = 5
        XCTAssertEqual(local.collectiveTimeout, 2)
        XCTAssertEqual(local.currentStep, 5)

        let mpi = try MPICommunicator.initialize()
        let saved = (mpi.collectiveTimeout, mpi.currentStep)
        defer { (mpi.collectiveTimeout, mpi.currentStep) = saved }
        let comm: Communicator = mpi
        comm.collectiveTimeout = 7.5
        comm.currentStep = 12
        XCTAssertEqual(mpi.collectiveTimeout, 7.5)
        XCTAssertEqual(mpi.currentStep, 12)
    }

    func testSingletonCollectivesCompleteUnderATinyTimeout() throws {
        let comm = try MPICommunicator.initialize()
        let saved = (comm.collectiveTimeout, comm.maxChunkElements)
        defer { (comm.collectiveTimeout, comm.maxChunkElements) = saved }
        comm.collectiveTimeout = 1e-9
        comm.maxChunkElements = 3
        let original: [Float] = (0..<10).map { Float($0) - 4.5 }
        let buffer = FloatBuffer(original)
        comm.allreduceSum(buffer)
        comm.broadcast(buffer, root: 0)
        XCTAssertEqual(buffer.array, original)
        var doubles = [1.0, 2.0]
        comm.allreduceSum(&doubles)
        XCTAssertEqual(doubles, [1.0, 2.0])
        XCTAssertEqual(comm.allreduceMax(-1.5), -1.5)
        var bytes = Array("abc".utf8)
        comm.broadcast(bytes: &bytes, root: 0)
        XCTAssertEqual(bytes, Array("abc".utf8))
        XCTAssertEqual(comm.allgather(42), [42])
        comm.barrier()
        _ = comm.startAllreduceSum(buffer.pointer, count: buffer.count)
        comm.waitAll()
        XCTAssertTrue(comm.testAll())
        XCTAssertEqual(buffer.array, original)
    }

    func testTimeoutMessageNamesCollectiveStepAndPeer() {
        let twoRanks = MPICommunicator.timeoutMessage(
            collective: "allreduce (sum of 392 floats)", seconds: 5, step: 12, rank: 0, size: 2)
        XCTAssertEqual(
            twoRanks,
            "error: collective allreduce (sum of 392 floats) did not complete within 5 s at "
                + "step 12 (rank 1 may be stuck or dead); aborting the job")
        let early = MPICommunicator.timeoutMessage(
            collective: "barrier", seconds: 0.5, step: nil, rank: 3, size: 8)
        XCTAssertEqual(
            early,
            "error: collective barrier did not complete within 0.5 s before the first training "
                + "step (another rank may be stuck or dead); aborting the job")
        XCTAssertFalse(early.contains("\n"))
    }
}
