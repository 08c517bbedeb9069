import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// `csgd-dist` without a subcommand runs the csgd job, as the design's launch line
/// `mpirun -n 8 csgd-dist --config X.yaml` expects; help and usage errors are printed once
/// (rank 0), and a usage error fails the job.
final class BareLaunchTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try CLIRunner.requireMPIRun()
        dir = NSTemporaryDirectory() + "csgd-bare-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let tiny = [
        "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
        "--batch-size", "32", "--epochs", "1", "--log-every", "1000",
    ]

    func testBareMPIRunTrainsTheCSGDJob() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let out = dir + "/bare"
        let r = try CLIRunner.mpirun(
            ranks: 2, args: ["--max-steps", "3", "--out-dir", out] + tiny, timeout: 300)
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertFalse(r.output.contains("USAGE:"), r.output)
        XCTAssertEqual(r.lines.filter { $0.hasPrefix("C-SGD round 1/") }.count, 1, r.output)
        XCTAssertTrue(r.output.contains("stopped after max_steps = 3"), r.output)
        let ck = try SafeTensorsFile.read(path: out + "/checkpoint.safetensors")
        let state = try XCTUnwrap(ck.metadata["csgd.state"])
        XCTAssertTrue(state.contains("\"phase\":\"csgd\""), state)
        XCTAssertTrue(state.contains("\"phaseStep\":3"), state)
        XCTAssertTrue(state.contains("\"worldSize\":2"), state)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/config.yaml"))
        let command = try String(contentsOfFile: out + "/command.txt", encoding: .utf8)
        XCTAssertTrue(command.contains("(2 MPI ranks)"), command)
    }

    func testUnknownFlagIsOneErrorOnceAndFails() throws {
        let r = try CLIRunner.mpirun(ranks: 2, args: ["--bogus"], timeout: 60)
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        XCTAssertFalse(r.timedOut)
        let errors = r.lines(startingWith: "error:")
        XCTAssertEqual(errors.count, 1, r.output)
        XCTAssertTrue(errors.first?.contains("bogus") ?? false, r.output)
        XCTAssertFalse(r.output.contains("USAGE:"), r.output)
    }

    func testBadValueOfASubcommandOptionIsOneErrorOnce() throws {
        let r = try CLIRunner.mpirun(
            ranks: 2, args: ["eval", "--input", "x", "--dump-logits"], timeout: 60)
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        XCTAssertEqual(r.lines(startingWith: "Error:").count, 1, r.output)
    }

    func testHelpIsPrintedOnceAndSucceeds() throws {
        let r = try CLIRunner.mpirun(ranks: 2, args: ["--help"], timeout: 60)
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertEqual(r.lines(startingWith: "USAGE:").count, 1, r.output)
        XCTAssertTrue(r.output.contains("Without a subcommand"), r.output)
        for args in [["--help"], ["help"], ["help", "csgd"]] {
            let one = try CLIRunner.run(args)
            XCTAssertEqual(one.exitCode, 0, "\(args): " + one.output)
            XCTAssertTrue(one.output.contains("USAGE:"), one.output)
        }
        let top = try CLIRunner.run(["help"])
        XCTAssertTrue(top.output.contains("SUBCOMMANDS:"), top.output)
        XCTAssertTrue(top.output.contains("csgd (default)"), top.output)
    }
}
