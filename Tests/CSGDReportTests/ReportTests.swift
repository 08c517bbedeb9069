import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDRunFiles
import CSGDTestSupport
import CSGDTraining
import Foundation
import XCTest

@testable import CSGDReport

/// The report's parsing of a run directory, the geometry of its charts, and its being
/// self-contained.
final class ReportTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "csgd-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
    }

    /// Two train epochs, three C-SGD epochs (the last with deviation exactly 0), two prunes.
    func writeRun() throws {
        var lines: [String] = []
        for e in 1...2 {
            lines.append(
                "{\"phase\":\"train\",\"round\":0,\"epoch\":\(e),\"train_loss\":\(2.0 / Double(e)),"
                    + "\"test_loss\":\(2.5 / Double(e)),\"train_top1\":0.\(5 + e),\"test_top1\":0.\(4 + e),"
                    + "\"seconds\":60}")
        }
        for (e, dev) in [1e-2, 1e-4, 0].enumerated() {
            lines.append(
                "{\"phase\":\"csgd\",\"round\":1,\"epoch\":\(e + 1),\"train_loss\":0.5,"
                    + "\"test_loss\":0.6,\"train_top1\":0.8,\"test_top1\":0.75,"
                    + "\"deviation_kernels\":\(dev),\"deviation_vectors\":\(dev),\"seconds\":30}")
        }
        let layers = { (a: [Int], b: [Int]) in
            zip(a, b).enumerated().map {
                "{\"name\":\"conv\($0)\",\"before\":\($1.0),\"after\":\($1.1)}"
            }
            .joined(separator: ",")
        }
        lines.append(
            "{\"phase\":\"prune\",\"round\":1,\"max_logit_diff\":2e-6,\"test_top1_before\":0.75,"
                + "\"test_top1_after\":0.75,\"params_before\":1000,\"params_after\":400,"
                + "\"flops_before\":5000000,\"flops_after\":2000000,\"layers\":[\(layers([16, 32, 10], [12, 24, 10]))]}"
        )
        lines.append(
            "{\"phase\":\"prune\",\"round\":2,\"max_logit_diff\":3e-6,\"test_top1_before\":0.75,"
                + "\"test_top1_after\":0.75,\"params_before\":400,\"params_after\":300,"
                + "\"flops_before\":2000000,\"flops_after\":1000000,\"layers\":[\(layers([12, 24, 10], [10, 20, 10]))]}"
        )
        try write("metrics.jsonl", lines.joined(separator: "\n") + "\n")
        try write("config.yaml", "model: resnet20\nnote: \"<b>&\"\n")
        try write("command.txt", "csgd-dist csgd --epochs 3\n")
    }

    func testParsesEpochsPrunesAndWidthsAcrossRounds() throws {
        try writeRun()
        let r = try RunRecords(directory: dir)
        XCTAssertEqual(r.epochs.count, 5)
        XCTAssertEqual(r.epochs.map(\.phase), [.train, .train, .csgd, .csgd, .csgd])
        XCTAssertEqual(r.epochs[4].deviationKernels, 0)
        XCTAssertEqual(r.prunes.count, 2)
        XCTAssertEqual(r.prunes[1].maxLogitDiff, 3e-6)
        // Before = the first round's input, after = the last round's output.
        XCTAssertEqual(r.layers.map(\.before), [16, 32, 10])
        XCTAssertEqual(r.layers.map(\.after), [10, 20, 10])
        XCTAssertEqual(r.command, "csgd-dist csgd --epochs 3")
    }

    func testRenderedPageHasEveryChartAndNothingExternal() throws {
        try writeRun()
        let html = HTMLReport.render(try RunRecords(directory: dir))
        // Loss (2) + accuracy (2) + deviation (2) curves.
        XCTAssertEqual(count("<polyline class=\"series\"", in: html), 6)
        // Per-layer bars (3 layers × before/after) + params/FLOPs bars (2 × 2).
        XCTAssertEqual(count("<rect class=\"bar\"", in: html), 10)
        XCTAssertTrue(html.contains("3e-06"), "max |logit diff| of round 2 is shown")
        // Size over both rounds: params 1000 → 300 (70 % cut), FLOPs 5 M → 1 M (80 % cut).
        XCTAssertTrue(html.contains("<td>70.00 %</td>"))
        XCTAssertTrue(html.contains("<td>80.00 %</td>"))
        // Self-contained: no scripts, no fetched resources; the config is escaped.
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("https://"))
        XCTAssertFalse(html.contains("src="))
        XCTAssertEqual(count("http://", in: html), count("<svg ", in: html), "only SVG xmlns")
        XCTAssertTrue(html.contains("note: &quot;&lt;b&gt;&amp;&quot;"))
        XCTAssertFalse(html.contains("<b>&"))
    }

    func testLogScaleDeviationPlacesDecadesEvenlyAndZerosOnTheFloor() throws {
        try writeRun()
        let html = HTMLReport.render(try RunRecords(directory: dir))
        let ys = try polylineYs(named: "kernels", in: html)
        XCTAssertEqual(ys.count, 3)
        // 1e-2 → 1e-4 is two decades; 1e-4 → floor (1e-5, one decade under the smallest
        // positive value) is one: pixel distances 2 : 1.
        XCTAssertEqual((ys[1] - ys[0]) / (ys[2] - ys[1]), 2, accuracy: 0.02)
        XCTAssertTrue(html.contains("exactly 0"))
    }

    func testAccuracyCurveIsInPercentAndRisesUpward() throws {
        try writeRun()
        let html = HTMLReport.render(try RunRecords(directory: dir))
        let ys = try polylineYs(named: "test top-1", in: html)
        XCTAssertEqual(ys.count, 5)
        // 50 % → 60 % → 75 %: higher accuracy is drawn higher (smaller y).
        XCTAssertGreaterThan(ys[0], ys[1])
        XCTAssertGreaterThan(ys[1], ys[2])
        XCTAssertEqual(ys[2], ys[3])
    }

    func testReportsBadInputAndTrainOnlyRuns() throws {
        // Missing directory, missing metrics, a broken line, no records: one line each.
        assertCSGDError(["/no/such/run", "no such run directory"]) {
            _ = try RunRecords(directory: "/no/such/run")
        }
        assertCSGDError(["metrics.jsonl", "cannot read"]) {
            _ = try RunRecords(directory: dir)
        }
        try write("metrics.jsonl", "{\"phase\":\"train\",\"epoch\":1}\nnot json\n")
        assertCSGDError(["metrics.jsonl:2", "not a JSON object"]) {
            _ = try RunRecords(directory: dir)
        }
        try write("metrics.jsonl", "\n")
        assertCSGDError(["no epoch or prune records"]) { _ = try RunRecords(directory: dir) }
        // A train-only run: curves, no prune section, no layer bars.
        try write("metrics.jsonl", "{\"phase\":\"train\",\"epoch\":1,\"test_top1\":0.5}\n")
        let html = HTMLReport.render(try RunRecords(directory: dir))
        XCTAssertTrue(html.contains("no prune record"))
        XCTAssertEqual(count("<rect class=\"bar\"", in: html), 0)
    }

    /// The report reads what the run log writes, with the same types: equal records back,
    /// a NaN loss included.
    func testReadsWhatTheRunLogWrites() throws {
        let log = RunLog(comm: LocalCommunicator(), metricsPath: dir + "/metrics.jsonl")
        let epochs = [
            EpochRecord(
                phase: .train, round: 1, epoch: 1, trainLoss: 1.5, trainTop1: 0.4, testLoss: 1.2,
                testTop1: 0.5, testTop5: 0.9, lr: 0.1, seconds: 10, imgPerS: 100, worldSize: 1,
                dataWaitSeconds: 0.5),
            EpochRecord(
                phase: .csgd, round: 1, epoch: 1, trainLoss: 1.0, trainTop1: 0.6, lr: 0.05,
                seconds: 12, deviationKernels: 1e-3, deviationVectors: 1e-4),
        ]
        let prune = PruneRecord(
            round: 1, method: .csgd, maxLogitDiff: 1e-6, testTop1Before: 0.6,
            testTop1After: 0.6, flopsBefore: 4000, flopsAfter: 1000, paramsBefore: 200,
            paramsAfter: 50, layers: [PruneRecord.Layer(name: "conv1", before: 8, after: 4)])
        for (i, e) in epochs.enumerated() { try log.record(.epoch(e), step: 8 * (i + 1)) }
        try log.record(.prune(prune), step: 16)
        try log.record(
            .epoch(EpochRecord(phase: .finetune, round: 1, epoch: 1, trainLoss: .nan)), step: 24)
        let r = try RunRecords(directory: dir)
        XCTAssertEqual(Array(r.epochs.prefix(2)), epochs)
        XCTAssertEqual(r.prunes, [prune])
        XCTAssertEqual(r.layers, prune.layers)
        XCTAssertEqual(r.epochs.count, 3)
        XCTAssertEqual(r.epochs[2].phase, .finetune)
        XCTAssertTrue(r.epochs[2].trainLoss?.isNaN == true)
        // The NaN loss is a gap in the curve, not a broken point.
        let html = HTMLReport.render(r)
        XCTAssertTrue(html.contains("finetune"))
        XCTAssertEqual(try polylineYs(named: "train loss", in: html).count, 2)
        XCTAssertFalse(html.lowercased().contains("nan,"))
    }

    func testNiceTicksCoverTheRangeInRoundSteps() {
        let t = SVGChart.niceTicks(0.23, 0.91)
        XCTAssertLessThanOrEqual(t.first!, 0.23)
        XCTAssertGreaterThanOrEqual(t.last!, 0.91)
        let step = t[1] - t[0]
        XCTAssertEqual(step, 0.2, accuracy: 1e-12)
        XCTAssertEqual(SVGChart.niceTicks(1, 8, integers: true), [0, 2, 4, 6, 8])
        XCTAssertEqual(SVGChart.niceTicks(1, 3, integers: true), [1, 2, 3])
    }

    // MARK: - helpers

    func count(_ needle: String, in s: String) -> Int {
        s.components(separatedBy: needle).count - 1
    }

    func polylineYs(named name: String, in html: String) throws -> [Double] {
        struct MissingSeries: Error { let name: String }
        guard let r = html.range(of: "data-name=\"\(name)\"") else {
            throw MissingSeries(name: name)
        }
        let rest = html[r.upperBound...]
        let start = rest.range(of: "points=\"")!.upperBound
        let end = rest[start...].firstIndex(of: "\"")!
        return rest[start..<end].split(separator: " ").map {
            Double($0.split(separator: ",")[1])!
        }
    }

}
