import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// The C-SGD jobs through the real binary, one rank, tiny nets: train-wider-then-squeeze,
/// the standalone prune of a C-SGD checkpoint, and the magnitude baseline with finetuning.
final class PipelineCLITests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        dir = NSTemporaryDirectory() + "csgd-pipe-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let tiny = [
        "--width-multiplier", "0.25", "--train-limit", "480", "--test-limit", "200",
        "--batch-size", "24", "--log-every", "1000", "--lr-schedule", "constant",
        "--centripetal-strength", "0.5", "--vector-strength-factor", "1",
    ]

    func testWidenTwoThenSqueezeBackToTheOriginalWidths() throws {
        let out = dir + "/widen"
        let r = try CLIRunner.succeed(
            ["csgd"] + tiny + ["--widen", "2", "--epochs", "10", "--out-dir", out])
        XCTAssertTrue(r.output.contains("C-SGD done"), r.output)
        // ResNet-20 ×0.25 = 4/8/16; trained at 8/16/32 with clusters of two, squeezed back.
        let w = try modelWidths(out + "/pruned.safetensors")
        XCTAssertEqual(Set(w), [4, 8, 16])
        XCTAssertEqual(w.count, 21)
        try checkReport(of: out, epochs: 10, layers: 22, command: "--widen 2")
    }

    /// `report` on a finished run: every curve, one before/after bar pair per conv and the FC,
    /// the recorded command; and the same bars from the checkpoints when the metrics predate
    /// per-layer widths.
    func checkReport(of run: String, epochs: Int, layers: Int, command: String) throws {
        let r = try CLIRunner.succeed(["report", run])
        XCTAssertTrue(r.output.contains("\(epochs) epochs, 1 prunes"), r.output)
        let html = try String(contentsOfFile: run + "/report.html", encoding: .utf8)
        XCTAssertEqual(html.components(separatedBy: "<polyline class=\"series\"").count - 1, 6)
        let bars = html.components(separatedBy: "<rect class=\"bar\"").count - 1
        XCTAssertEqual(bars, 2 * layers + 4)
        XCTAssertTrue(html.contains(command), "command.txt is shown")
        let metrics = run + "/metrics.jsonl"
        let old = try String(contentsOfFile: metrics, encoding: .utf8)
            .replacingOccurrences(of: "\"layers\":", with: "\"old_layers\":")
        try old.write(toFile: metrics, atomically: true, encoding: .utf8)
        _ = try CLIRunner.succeed(["report", run, "--output", dir + "/old.html"])
        let oldHTML = try String(contentsOfFile: dir + "/old.html", encoding: .utf8)
        XCTAssertEqual(oldHTML.components(separatedBy: "<rect class=\"bar\"").count - 1, bars)
        let bad = try CLIRunner.run(["report", dir + "/nothing"])
        XCTAssertNotEqual(bad.exitCode, 0)
        XCTAssertTrue(bad.output.contains("nothing: no such run directory"), bad.output)
    }

    func testStandalonePruneOfACSGDCheckpointAndMagnitudeBaseline() throws {
        let out = dir + "/csgd"
        _ = try CLIRunner.succeed(
            ["csgd"] + tiny + ["--epochs", "10", "--rounds", "0.5", "--out-dir", out])
        // The rolling checkpoint still holds the unpruned net and its clusters.
        let pruned = dir + "/again.safetensors"
        let p = try CLIRunner.succeed(
            ["prune", "--input", out + "/checkpoint.safetensors", "--output", pruned] + tiny)
        XCTAssertTrue(p.output.contains("max |logit diff|"), p.output)
        XCTAssertEqual(try modelWidths(pruned), try modelWidths(out + "/pruned.safetensors"))
        // Magnitude pruning of the same unpruned net to the same widths, then 1 finetune epoch.
        let mag = dir + "/mag.safetensors"
        let m = try CLIRunner.succeed(
            [
                "prune", "--input", out + "/checkpoint.safetensors", "--method", "magnitude",
                "--target", "0.5", "--finetune-epochs", "1", "--output", mag, "--out-dir",
                dir + "/ft",
            ] + tiny)
        XCTAssertTrue(m.output.contains("after 1 finetune epochs"), m.output)
        XCTAssertEqual(try modelWidths(mag), try modelWidths(pruned))
        let bad = try CLIRunner.run(
            ["prune", "--input", mag, "--output", dir + "/x.safetensors"] + tiny)
        XCTAssertNotEqual(bad.exitCode, 0)
        XCTAssertTrue(bad.output.contains("no cluster plan"), bad.output)
    }
}
