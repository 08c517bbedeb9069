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
    /// `--round-end-bn-batches`: at the round's end every BN's running statistics are
    /// recomputed from the final weights, so they keep nothing of the statistics the round
    /// started with. Two rounds from the same weights with different running statistics train
    /// the same weights (training-mode BN uses batch statistics); recalibrated, they end with
    /// bit-identical statistics, and without it 0.9^40 of the difference remains.
    func testRoundEndRecalibrationForgetsTheStartingStatistics() throws {
        let base = dir + "/base"
        _ = try CLIRunner.succeed(["train"] + tiny + ["--epochs", "1", "--out-dir", base])
        let model = base + "/model.safetensors"
        let original = try SafeTensorsFile.read(path: model)
        var shiftedFile = SafeTensorsFile(metadata: original.metadata)
        var shiftedCount = 0
        for n in original.names {
            var v = try original.floats(n)
            if n.hasSuffix(".running_var") || n.hasSuffix(".running_mean") {
                v = v.map { $0 * 3 + 0.5 }
                shiftedCount += 1
            }
            shiftedFile.add(n, shape: original.shape(n)!, floats: v)
        }
        XCTAssertGreaterThan(shiftedCount, 20, "ResNet-20 has 19 BNs, two buffers each")
        let shifted = dir + "/shifted.safetensors"
        try shiftedFile.write(path: shifted)
        func round(_ from: String, _ tag: String, recalibrate: Bool) throws -> SafeTensorsFile {
            let out = dir + "/" + tag
            let r = try CLIRunner.succeed(
                ["csgd"] + tiny + [
                    "--from", from, "--epochs", "2", "--prune-tolerance", "1e30", "--out-dir", out,
                ]
                    + (recalibrate ? ["--round-end-bn-batches", "3"] : []))
            XCTAssertEqual(
                r.output.contains(
                    "BN statistics recomputed over 3 batches (72 training images)"),
                recalibrate, r.output)
            return try SafeTensorsFile.read(path: out + "/checkpoint.safetensors")
        }
        func largestDifference(_ a: SafeTensorsFile, _ b: SafeTensorsFile, statistics: Bool)
            throws -> Float
        {
            var m: Float = 0
            for n in a.names where !n.hasPrefix("optim.") {
                guard n.contains(".running_") == statistics else { continue }
                for (x, y) in zip(try a.floats(n), try b.floats(n)) { m = max(m, abs(x - y)) }
            }
            return m
        }
        let a = try round(model, "a", recalibrate: true)
        let b = try round(shifted, "b", recalibrate: true)
        XCTAssertEqual(try largestDifference(a, b, statistics: false), 0)
        XCTAssertEqual(try largestDifference(a, b, statistics: true), 0)
        let c = try round(model, "c", recalibrate: false)
        let d = try round(shifted, "d", recalibrate: false)
        XCTAssertEqual(try largestDifference(c, d, statistics: false), 0)
        XCTAssertGreaterThan(try largestDifference(c, d, statistics: true), 1e-3)
        // The recalibration changed the net's statistics, not its weights.
        XCTAssertEqual(try largestDifference(a, c, statistics: false), 0)
        XCTAssertGreaterThan(try largestDifference(a, c, statistics: true), 1e-4)
    }
}
