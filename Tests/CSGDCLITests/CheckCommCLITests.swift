// End-to-end tests of `csgd-dist check-comm`: the plain binary (rank 0 of 1) and real
// multi-rank jobs under mpirun over shared memory and TCP, plus flag errors and MPI failures.

import CSGDTestSupport
import Foundation
import XCTest

final class CheckCommCLITests: XCTestCase {
    /// Asserts a clean exit and one `[rank r] rank r/N on HOST: …: OK` line per rank.
    private func assertAllRanksOK(
        _ result: CLIResult, ranks: Int, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertFalse(result.timedOut, "timed out:\n\(result.output)", file: file, line: line)
        XCTAssertEqual(result.exitCode, 0, result.output, file: file, line: line)
        for r in 0..<ranks {
            let mine = result.lines(startingWith: "[rank \(r)] rank \(r)/\(ranks) on ")
            XCTAssertEqual(mine.count, 1, "rank \(r):\n\(result.output)", file: file, line: line)
            let ok = mine.first.map { $0.contains("allreduce ok") && $0.hasSuffix(": OK") }
            XCTAssertEqual(ok, true, "rank \(r):\n\(result.output)", file: file, line: line)
        }
        XCTAssertTrue(
            result.lines.contains("check-comm: \(ranks) rank\(ranks == 1 ? "" : "s") ok"),
            result.output, file: file, line: line)
        XCTAssertFalse(result.output.contains("FAILED"), result.output, file: file, line: line)
    }

    func testDirectRunIsRankZeroOfOne() throws {
        let result = try CLIRunner.run(["check-comm", "--count", "100003"])
        assertAllRanksOK(result, ranks: 1)
        XCTAssertTrue(result.output.contains("MPI singleton"), result.output)
    }

    func testTwoRanksSharedMemory() throws {
        try CLIRunner.requireMPIRun()
        assertAllRanksOK(try CLIRunner.mpirun(ranks: 2, args: ["check-comm"]), ranks: 2)
    }

    /// Every job asks libnbc for Rabenseifner's allreduce (its in-place default sends every
    /// byte through rank 0 twice), read back from Open MPI through MPI_T; a value the user
    /// gives mpirun is kept, and the collectives stay correct under each (3 ranks: not a power
    /// of two, Rabenseifner's awkward case).
    func testIallreduceAlgorithmIsBandwidthOptimalUnlessTheUserChoseOne() throws {
        try CLIRunner.requireMPIRun()
        let ours = try CLIRunner.mpirun(ranks: 3, args: ["check-comm", "--count", "100003"])
        assertAllRanksOK(ours, ranks: 3)
        XCTAssertTrue(
            ours.lines.contains("check-comm: iallreduce algorithm 3 (rabenseifner)"), ours.output)
        let theirs = try CLIRunner.mpirun(
            ranks: 3, args: ["check-comm", "--count", "100003"],
            mpirunOptions: ["--mca", "coll_libnbc_iallreduce_algorithm", "1"])
        assertAllRanksOK(theirs, ranks: 3)
        XCTAssertTrue(
            theirs.lines.contains("check-comm: iallreduce algorithm 1 (ring)"), theirs.output)
    }

    func testThreeRanksOversubscribed() throws {
        try CLIRunner.requireMPIRun()
        assertAllRanksOK(try CLIRunner.mpirun(ranks: 3, args: ["check-comm"]), ranks: 3)
    }

    func testTwoRanksOverTCP() throws {
        try CLIRunner.requireMPIRun()
        let result = try CLIRunner.mpirun(ranks: 2, args: ["check-comm"], btl: "self,tcp")
        assertAllRanksOK(result, ranks: 2)
    }

    func testChunkedCollectivesAcrossRanks() throws {
        try CLIRunner.requireMPIRun()
        // 1_000_003 floats in pieces of 99_991: ten full pieces plus a ragged last one.
        let args = ["check-comm", "--chunk-elements", "99991", "--seed", "7"]
        assertAllRanksOK(try CLIRunner.mpirun(ranks: 2, args: args), ranks: 2)
    }

    func testBadFlagsGiveOneLineErrorAndNonZeroExit() throws {
        let cases: [([String], String)] = [
            (["check-comm", "--count", "-5"], "--count must be in 1...268435456 (got -5)"),
            (["check-comm", "--count", "0"], "--count must be in 1...268435456 (got 0)"),
            (["check-comm", "--count", "100000000000"], "(got 100000000000)"),
            (["check-comm", "--count", "many"], "many"),
            (["check-comm", "--bogus"], "--bogus"),
        ]
        for (args, expected) in cases {
            let result = try CLIRunner.run(args, timeout: 30)
            XCTAssertNotEqual(result.exitCode, 0, "\(args): \(result.output)")
            let errors = result.lines(startingWith: "Error:")
            XCTAssertEqual(errors.count, 1, "\(args): \(result.output)")
            XCTAssertTrue(errors.first?.contains(expected) == true, "\(args): \(result.output)")
            XCTAssertFalse(result.output.contains("[rank"), "\(args): ran anyway")
        }
    }

    func testFailedMPICallOnOneRankAbortsTheWholeJob() throws {
        try CLIRunner.requireMPIRun()
        // Rank 1 broadcasts from a root that does not exist while rank 0 waits in a collective:
        // the error must come back as a code, be reported with the rank, and end both ranks.
        let result = try CLIRunner.mpirun(
            ranks: 2, args: ["check-comm", "--debug-fail-rank", "1"], timeout: 60)
        XCTAssertFalse(result.timedOut, "job hung:\n\(result.output)")
        XCTAssertNotEqual(result.exitCode, 0, result.output)
        XCTAssertTrue(
            result.output.contains("rank 1: MPI_Ibcast failed: MPI_ERR_ROOT"), result.output)
        XCTAssertFalse(result.output.contains("ranks ok"), result.output)
    }
}
