import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// Preemption and requeue through the real binary: SIGUSR1 to one rank mid-epoch makes the
/// whole job checkpoint and exit 3; `--resume auto` then continues bitwise; `--resume auto`
/// starts fresh on an empty out_dir and refuses another experiment's checkpoint.
final class PreemptionTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        dir = NSTemporaryDirectory() + "csgd-preempt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 2 epochs of 64 steps (ResNet-20 ×0.25, 2,048 images, batch 32): a few seconds on 2 ranks.
    let tiny = [
        "train", "--width-multiplier", "0.25", "--train-limit", "2048", "--test-limit", "64",
        "--batch-size", "32", "--epochs", "2", "--log-every", "1",
    ]

    func testSignalToOneRankCheckpointsAndResumeAutoIsBitwise() throws {
        try CLIRunner.requireMPIRun()
        let straight = dir + "/straight"
        let split = dir + "/split"
        let s = try CLIRunner.mpirun(ranks: 2, args: tiny + ["--out-dir", straight])
        XCTAssertEqual(s.exitCode, 0, s.output)

        // SIGUSR1 to rank 1's process only, once epoch 1 has reached step 5 of 64.
        let p = try signalRank1(tiny + ["--out-dir", split], onceOutputHas: "epoch 1/2 step 5/")
        XCTAssertEqual(p.exitCode, 3, p.output)
        XCTAssertTrue(p.output.contains("preempted (signal received)"), p.output)
        XCTAssertFalse(p.output.contains("epoch 2/2"), "stopped mid-epoch 1: \(p.output)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: split + "/checkpoint.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: split + "/model.safetensors"))

        let r = try CLIRunner.mpirun(
            ranks: 2, args: tiny + ["--out-dir", split, "--resume", "auto"])
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertTrue(r.output.contains("resuming from"), r.output)
        try assertSameTensors(
            straight + "/model.safetensors", split + "/model.safetensors", "after resume:")
    }

    /// A signal while a FLOPs budget measures sensitivity (seconds to minutes before the
    /// round's first step) is honoured after one cell, not after the whole table: the job
    /// checkpoints the round's start, exits 3, and `--resume auto` measures again and ends
    /// with the uninterrupted run's weights.
    func testSignalDuringTheBudgetsSensitivityIsHonouredAndResumesBitwise() throws {
        try CLIRunner.requireMPIRun()
        let args = [
            "csgd", "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
            "--batch-size", "32", "--epochs", "1", "--log-every", "1000", "--target-flops", "0.5",
            "--sensitivity-images", "256", "--prune-tolerance", "1e9",
        ]
        let straight = dir + "/straight"
        let split = dir + "/split"
        let s = try CLIRunner.mpirun(ranks: 2, args: args + ["--out-dir", straight])
        XCTAssertEqual(s.exitCode, 0, s.output)
        let p = try signalRank1(
            args + ["--out-dir", split], onceOutputHas: "measuring the sensitivity")
        XCTAssertEqual(p.exitCode, 3, p.output)
        XCTAssertTrue(p.output.contains("preempted (signal received)"), p.output)
        XCTAssertFalse(p.output.contains("C-SGD round 1/1"), "stopped before training: \(p.output)")
        let r = try CLIRunner.mpirun(
            ranks: 2, args: args + ["--out-dir", split, "--resume", "auto"])
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertTrue(r.output.contains("resuming from"), r.output)
        try assertSameTensors(
            straight + "/pruned.safetensors", split + "/pruned.safetensors", "after resume:")
    }

    func testResumeAutoStartsFreshOnAnEmptyFolderAndBothSpellingsParse() throws {
        let args = [
            "train", "--width-multiplier", "0.25", "--train-limit", "64", "--test-limit", "32",
            "--batch-size", "32", "--max-steps", "1",
        ]
        let fresh = dir + "/fresh"
        let f = try CLIRunner.succeed(args + ["--out-dir", fresh, "--resume", "auto"])
        XCTAssertTrue(f.output.contains("no checkpoint in \(fresh), starting fresh"), f.output)
        // Now it holds a checkpoint: `--resume=auto` resumes, plain `--resume` still resumes.
        let again = try CLIRunner.succeed(args + ["--out-dir", fresh, "--resume=auto"])
        XCTAssertTrue(again.output.contains("resuming from"), again.output)
        let plain = try CLIRunner.succeed(args + ["--out-dir", fresh, "--resume"])
        XCTAssertTrue(plain.output.contains("resuming from"), plain.output)
        // With --resume auto, --from is where a fresh run starts and is skipped when resuming.
        let base = fresh + "/checkpoint.safetensors"
        let fromFresh = dir + "/from"
        let ff = try CLIRunner.succeed(
            args + ["--out-dir", fromFresh, "--resume", "auto", "--from", base])
        XCTAssertTrue(ff.output.contains("starting fresh"), ff.output)
        let fr = try CLIRunner.succeed(
            args + ["--out-dir", fromFresh, "--resume", "auto", "--from", base])
        XCTAssertTrue(fr.output.contains("resuming from"), fr.output)
        // Plain `--resume` on an empty folder is still refused.
        let empty = try CLIRunner.run(args + ["--out-dir", dir + "/empty", "--resume"])
        XCTAssertNotEqual(empty.exitCode, 0, empty.output)
        XCTAssertTrue(empty.output.contains("cannot resume"), empty.output)
    }

    func testResumeAutoRefusesAnotherExperimentsCheckpoint() throws {
        let base = [
            "--width-multiplier", "0.25", "--train-limit", "64", "--test-limit", "32",
            "--batch-size", "32", "--max-steps", "1",
        ]
        let other = dir + "/other"
        try CLIRunner.succeed(["train"] + base + ["--out-dir", other])
        let r = try CLIRunner.run(
            ["train"] + base + ["--out-dir", other, "--model", "resnet32", "--resume", "auto"])
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        let errors = r.lines(startingWith: "error:")
        XCTAssertEqual(errors.count, 1, r.output)
        XCTAssertTrue(errors.first?.contains("holds a resnet20") ?? false, r.output)
        // A csgd job on a train run's folder: another phase, refused too.
        let c = try CLIRunner.run(["csgd"] + base + ["--out-dir", other, "--resume", "auto"])
        XCTAssertNotEqual(c.exitCode, 0, c.output)
        XCTAssertEqual(c.lines(startingWith: "error:").count, 1, c.output)
        XCTAssertTrue(c.output.contains("cannot resume 'csgd'"), c.output)
    }
}

extension PreemptionTests {
    /// Runs `args` on 2 ranks and sends SIGUSR1 to rank 1's process only, once the output
    /// holds `marker`; asserts the signal was sent.
    func signalRank1(
        _ args: [String], onceOutputHas marker: String, line: UInt = #line
    ) throws -> CLIResult {
        let signalled = Signalled()
        let p = try CLIRunner.mpirun(ranks: 2, args: args) { pid, out in
            guard out.contains(marker), !signalled.isSet else { return }
            let ranks = CLIRunner.childPIDs(of: pid)
            if ranks.count == 2 {
                kill(ranks[1], SIGUSR1)
                signalled.set()
            }
        }
        XCTAssertTrue(signalled.isSet, p.output, line: line)
        return p
    }
}

/// A flag set once from the output-watching thread.
private final class Signalled: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
