import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// Budgets, `sensitivity` and the cluster-mean prune through the real binary, one rank, tiny
/// ResNet-20s on Fashion-MNIST.
final class BudgetCLITests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        dir = NSTemporaryDirectory() + "csgd-budget-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let tiny = [
        "--width-multiplier", "0.5", "--train-limit", "48", "--test-limit", "200",
        "--batch-size", "24", "--epochs", "1", "--log-every", "1000", "--lr-schedule", "constant",
        "--sensitivity-images", "24", "--sensitivity-steps", "4",
    ]

    func testCSGDWithAFlopsBudgetPrunesToTheAllocatedWidths() throws {
        let out = dir + "/budget"
        let r = try CLIRunner.succeed(
            ["csgd"] + tiny + [
                "--target-flops", "0.45", "--exclude", "layer3.2.conv1", "--prune-tolerance", "1e9",
                "--out-dir", out,
            ])
        XCTAssertTrue(r.output.contains("budget flops"), r.output)
        let json = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/allocation.json")))
        let alloc = try XCTUnwrap((json as? [String: Any])?["allocation"] as? [String: Any])
        let target = try XCTUnwrap(alloc["target"] as? Double)
        let achieved = try XCTUnwrap(alloc["achieved"] as? Double)
        let full = try XCTUnwrap(alloc["full"] as? Double)
        XCTAssertEqual(target, 0.45 * full, accuracy: 1e-6 * full)
        XCTAssertLessThanOrEqual(abs(achieved / target - 1), 0.01)
        let groups = try XCTUnwrap(alloc["groups"] as? [[String: Any]])
        let excluded = try XCTUnwrap(groups.first { $0["name"] as? String == "layer3.2.conv1" })
        XCTAssertEqual(excluded["allocated"] as? Int, excluded["width"] as? Int)
        // The pruned file has the allocated widths.
        let widths = try modelWidths(out + "/pruned.safetensors")
        XCTAssertEqual(widths[widths.count - 2], 32, "layer3.2.conv1 keeps its width")
        let ev = try CLIRunner.succeed(
            ["eval", "--input", out + "/pruned.safetensors", "--test-limit", "50"])
        let mflops = String(format: "%.2f MFLOPs", achieved / 1e6)
        XCTAssertTrue(ev.output.contains(mflops), "\(mflops) in \(ev.output)")
        // The report draws one sensitivity curve per measured group (11: the stem's stream,
        // 9 block-internal groups less the excluded one, 2 more streams) and lists every group.
        try CLIRunner.succeed(["report", out])
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<h2>Budget allocation</h2>"))
        let curves = html.components(separatedBy: "<polyline class=\"series\" data-name=\"")
            .dropFirst().filter { $0.hasPrefix("conv1") || $0.hasPrefix("layer") }
        XCTAssertEqual(curves.count, 11, html)
        XCTAssertTrue(html.contains("<td>layer3.2.conv1</td><td>32</td><td>32</td><td>fixed</td>"))
        // A damaged allocation.json is one error line naming it.
        try Data("{\"allocation\": 3}".utf8).write(
            to: URL(fileURLWithPath: out + "/allocation.json"))
        let bad = try CLIRunner.run(["report", out])
        XCTAssertNotEqual(bad.exitCode, 0)
        XCTAssertEqual(bad.lines(startingWith: "error:").count, 1, bad.output)
        XCTAssertTrue(bad.output.contains("allocation.json: not an allocation record"), bad.output)
    }

    func testUnknownLayerNameIsOneErrorLine() throws {
        let r = try CLIRunner.run(
            ["csgd"] + tiny + ["--exclude", "layer7.*", "--out-dir", dir + "/x"])
        XCTAssertNotEqual(r.exitCode, 0)
        XCTAssertEqual(r.lines(startingWith: "error:").count, 1, r.output)
        XCTAssertTrue(
            r.output.contains("config key 'exclude': 'layer7.*' matches no conv"), r.output)
    }

    func testSensitivityTableAsTextAndJSON() throws {
        let base = dir + "/base"
        try CLIRunner.succeed(["train"] + tiny + ["--out-dir", base])
        let model = base + "/model.safetensors"
        let text = try CLIRunner.succeed(["sensitivity", model] + tiny)
        XCTAssertTrue(text.output.contains("Δloss"), text.output)
        XCTAssertTrue(text.output.contains("layer2.0.conv1"), text.output)
        let js = try CLIRunner.succeed(
            ["sensitivity", model, "--json", "--exclude", "conv1"] + tiny)
        let start = try XCTUnwrap(js.output.firstIndex(of: "{"))
        let obj = try JSONSerialization.jsonObject(with: Data(js.output[start...].utf8))
        let groups = try XCTUnwrap((obj as? [String: Any])?["groups"] as? [[String: Any]])
        // ResNet-20: 9 block-internal groups + 3 residual streams, the stem's excluded.
        XCTAssertEqual(groups.count, 11)
        for g in groups {
            let rows = try XCTUnwrap(g["rows"] as? [[String: Any]])
            XCTAssertEqual(rows.last?["width"] as? Int, g["width"] as? Int)
            XCTAssertEqual(rows.last?["deltaLoss"] as? Double, 0)
            XCTAssertGreaterThanOrEqual(rows.count, 2)
        }
        // A context: `uniform` without a budget is one error line naming the key; with a
        // budget the JSON carries the context widths and the allocation the table leads to.
        let bad = try CLIRunner.run(
            ["sensitivity", model, "--sensitivity-context", "uniform"] + tiny)
        XCTAssertNotEqual(bad.exitCode, 0, bad.output)
        XCTAssertEqual(bad.lines.filter { $0.hasPrefix("error") }.count, 1, bad.output)
        XCTAssertTrue(bad.output.contains("sensitivity_context"), bad.output)
        let ctx = try CLIRunner.succeed(
            [
                "sensitivity", model, "--json", "--sensitivity-context", "recalibrated",
                "--target-flops", "0.5",
            ] + tiny)
        let ci = try XCTUnwrap(ctx.output.firstIndex(of: "{"))
        let both = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(ctx.output[ci...].utf8)) as? [String: Any])
        let table = try XCTUnwrap(both["sensitivity"] as? [String: Any])
        XCTAssertEqual((table["context"] as? [Int])?.count, 12)
        let budget = try XCTUnwrap(both["allocation"] as? [String: Any])
        let got = try XCTUnwrap(budget["achieved"] as? Double)
        let whole = try XCTUnwrap(budget["full"] as? Double)
        XCTAssertLessThanOrEqual(abs(got / (0.5 * whole) - 1), 0.01)
        // The magnitude baseline takes the same budget: parameters within ±1 %, written down.
        let pd = dir + "/mag"
        try CLIRunner.succeed(
            [
                "prune", "--method", "magnitude", "--input", model, "--target-params", "0.5",
                "--output", pd + "/m.safetensors",
            ] + tiny)
        let json = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: pd + "/allocation.json")))
        let alloc = try XCTUnwrap((json as? [String: Any])?["allocation"] as? [String: Any])
        let achieved = try XCTUnwrap(alloc["achieved"] as? Double)
        let full = try XCTUnwrap(alloc["full"] as? Double)
        XCTAssertEqual(alloc["metric"] as? String, "params")
        XCTAssertLessThanOrEqual(abs(achieved / (0.5 * full) - 1), 0.01)
        // min_width above some groups' widths: they keep it, and the log says so in one line.
        let narrow = try CLIRunner.succeed(
            [
                "prune", "--method", "magnitude", "--input", model, "--target", "1/2",
                "--min-width", "9", "--output", dir + "/narrow.safetensors",
            ] + tiny)
        XCTAssertEqual(
            narrow.output.components(separatedBy: "\n").filter {
                $0.contains("min_width 9: 4 group(s) at most that wide keep their width (conv1 8")
            }.count, 1, narrow.output)
        let kept = try SafeTensorsFile.read(path: dir + "/narrow.safetensors")
        XCTAssertEqual(kept.shape("conv1.weight")?.first, 8, "an 8-wide group stays 8 wide")
        XCTAssertEqual(kept.shape("layer2.0.conv1.weight")?.first, 9, "16 → 9, not 8")
    }

    /// The (group, width) cells are split over ranks and summed: two ranks print the very
    /// table one rank prints.
    func testSensitivityTableDoesNotDependOnTheRankCount() throws {
        try CLIRunner.requireMPIRun()
        let base = dir + "/base2"
        try CLIRunner.succeed(["train"] + tiny + ["--out-dir", base])
        let args = ["sensitivity", base + "/model.safetensors", "--json"] + tiny
        let one = try CLIRunner.succeed(args)
        let two = try CLIRunner.mpirun(ranks: 2, args: args)
        XCTAssertEqual(two.exitCode, 0, two.output)
        func table(_ out: String) -> String {
            guard let i = out.firstIndex(of: "{"), let j = out.lastIndex(of: "}") else { return "" }
            return String(out[i...j])
        }
        XCTAssertFalse(table(one.output).isEmpty)
        XCTAssertEqual(table(two.output), table(one.output))
    }

    func testUnconvergedRoundPrunesWithMeanMergeAndRecalibration() throws {
        // Two steps with a weak pull: the clusters are far from collapsed.
        let out = dir + "/short"
        let weak = tiny + ["--centripetal-strength", "0.01", "--rounds", "0.5"]
        let failed = try CLIRunner.run(["csgd"] + weak + ["--out-dir", out])
        XCTAssertNotEqual(failed.exitCode, 0)
        XCTAssertTrue(failed.output.contains("--merge mean"), failed.output)
        XCTAssertTrue(failed.output.contains("relative within-cluster deviation"), failed.output)
        let ck = out + "/checkpoints/round1-end.safetensors"
        let exact = try CLIRunner.run(
            ["prune", "--input", ck, "--output", dir + "/p1/exact.safetensors"] + weak)
        XCTAssertNotEqual(exact.exitCode, 0, exact.output)
        let pruned = dir + "/p2/mean.safetensors"
        let mean = try CLIRunner.succeed(
            [
                "prune", "--input", ck, "--output", pruned, "--merge", "mean",
                "--recalibrate-batches", "2",
            ] + weak)
        XCTAssertTrue(mean.output.contains("recomputed over 2 batches"), mean.output)
        XCTAssertTrue(mean.output.contains("(Δ "), mean.output)
        XCTAssertEqual(Set(try modelWidths(pruned)), [4, 8, 16])
        try CLIRunner.succeed(["eval", "--input", pruned] + weak)
        let budgeted = try CLIRunner.run(
            [
                "prune", "--input", ck, "--output", dir + "/p3/b.safetensors", "--target-flops",
                "0.5",
            ]
                + weak)
        XCTAssertEqual(budgeted.lines(startingWith: "error:").count, 1, budgeted.output)
        XCTAssertTrue(budgeted.output.contains("apply to --method magnitude"), budgeted.output)
        // The csgd job itself with the config key.
        let r = try CLIRunner.succeed(
            ["csgd"] + weak + [
                "--merge", "mean", "--recalibrate-batches", "2", "--out-dir", dir + "/m",
            ])
        XCTAssertTrue(r.output.contains("C-SGD done"), r.output)
    }
}
