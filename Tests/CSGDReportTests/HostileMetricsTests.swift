import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

@testable import CSGDReport

/// Crafted run directories: every one either fails with one line naming metrics.jsonl:line and
/// the field, or renders a page with finite geometry, quickly.
final class HostileMetricsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "csgd-hostile-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
    }

    static let epoch = "{\"phase\":\"train\",\"round\":1,\"epoch\":1,\"train_loss\":1.0}"

    /// A prune line: sizes 1000 → 400 params, 5000 → 2000 FLOPs, with `fields` (JSON text of
    /// `"key":value` pairs) replacing or adding keys.
    static func prune(_ fields: [String: String]) -> String {
        var all = [
            "phase": "\"prune\"", "round": "1", "params_before": "1000", "params_after": "400",
            "flops_before": "5000", "flops_after": "2000",
        ]
        all.merge(fields) { _, new in new }
        return "{"
            + all.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }
            .joined(separator: ",") + "}"
    }

    /// Lines whose values are out of range: one-line error naming the line and the field.
    func testOutOfRangeValuesAreOneLineErrorsNamingFileLineAndField() throws {
        let cases: [(line: String, field: String)] = [
            (Self.prune(["flops_before": "0"]), "flops_before"),
            (Self.prune(["params_before": "-3"]), "params_before"),
            (Self.prune(["flops_after": "-1"]), "flops_after"),
            (Self.prune(["params_after": "-9223372036854775808"]), "params_after"),
            (Self.prune(["test_top1_before": "1e308"]), "test_top1_before"),
            (Self.prune(["layers": "[{\"name\":\"c\",\"before\":-4,\"after\":2}]"]), "layers.0"),
            (
                Self.prune([
                    "layers": "["
                        + Array(repeating: "{\"name\":\"c\",\"before\":4,\"after\":2}", count: 4097)
                        .joined(separator: ",") + "]"
                ]), "4097 layers"
            ),
            ("{\"phase\":\"train\",\"epoch\":1,\"test_top1\":1.5}", "test_top1"),
            ("{\"phase\":\"train\",\"epoch\":1,\"train_top1\":-1e308}", "train_top1"),
            ("{\"phase\":\"train\",\"epoch\":1,\"test_top5\":2}", "test_top5"),
            ("{\"phase\":\"train\",\"epoch\":1,\"seconds\":1e308}", "seconds"),
            ("{\"phase\":\"train\",\"epoch\":1,\"seconds\":\"Infinity\"}", "seconds"),
            ("{\"phase\":\"train\",\"epoch\":1,\"seconds\":-1}", "seconds"),
            ("{\"phase\":\"csgd\",\"epoch\":1,\"deviation_kernels\":-1e-3}", "deviation_kernels"),
        ]
        for (line, field) in cases {
            try write("metrics.jsonl", Self.epoch + "\n\n" + line + "\n")
            let t0 = Date()
            assertCaseError(["metrics.jsonl:3", field], context: field) {
                _ = try RunRecords(directory: dir)
            }
            XCTAssertLessThan(Date().timeIntervalSince(t0), 5, field)
        }
    }

    /// Values the charts cannot place: the page is written, every coordinate is finite, and a
    /// note names what was left out.
    func testHugeAndTinyValuesRenderWithFiniteGeometryAndANote() throws {
        let cases: [(name: String, lines: [String], note: String?)] = [
            (
                "±1e308 losses",
                [
                    "{\"phase\":\"train\",\"epoch\":1,\"train_loss\":1e308,\"test_loss\":-1e308}",
                    "{\"phase\":\"train\",\"epoch\":2,\"train_loss\":0.5,\"test_loss\":1e16}",
                    "{\"phase\":\"train\",\"epoch\":3,\"train_loss\":\"-Infinity\"}",
                ], "train loss at epochs 1, 3; test loss at epochs 1, 2"
            ),
            (
                "equal losses at a large magnitude",
                (1...3).map { "{\"phase\":\"train\",\"epoch\":\($0),\"train_loss\":1e15}" }, nil
            ),
            (
                "a range too narrow for its magnitude",
                [
                    "{\"phase\":\"train\",\"epoch\":1,\"train_loss\":999999999999999.9}",
                    "{\"phase\":\"train\",\"epoch\":2,\"train_loss\":1e15}",
                ], nil
            ),
            (
                "subnormal and huge deviations",
                [
                    "{\"phase\":\"csgd\",\"epoch\":1,\"deviation_kernels\":5e-324,"
                        + "\"deviation_vectors\":1e-310}",
                    "{\"phase\":\"csgd\",\"epoch\":2,\"deviation_kernels\":1e308,"
                        + "\"deviation_vectors\":0}",
                    "{\"phase\":\"csgd\",\"epoch\":3,\"deviation_kernels\":1e-3,"
                        + "\"deviation_vectors\":\"NaN\"}",
                ], "kernel deviation at epoch 2; vector deviation at epoch 3"
            ),
            (
                "huge counts and widths",
                [
                    Self.epoch,
                    "{\"phase\":\"prune\",\"params_before\":1,\"params_after\":9223372036854775807,"
                        + "\"flops_before\":1,\"flops_after\":9223372036854775807,\"layers\":"
                        + "[{\"name\":\"c\",\"before\":9223372036854775807,\"after\":0}]}",
                ], nil
            ),
        ]
        for (name, lines, note) in cases {
            try write("metrics.jsonl", lines.joined(separator: "\n") + "\n")
            let t0 = Date()
            let html = HTMLReport.render(try RunRecords(directory: dir))
            XCTAssertLessThan(Date().timeIntervalSince(t0), 5, name)
            XCTAssertLessThan(html.utf8.count, 1 << 20, name)
            assertFiniteGeometry(html, name)
            if let note {
                XCTAssertTrue(html.contains(note), "\(name): no note '\(note)'")
            } else {
                XCTAssertFalse(html.contains("Not drawn"), name)
            }
        }
    }

    /// Size limits: checked before reading or decoding, one line each.
    func testOverLargeFileLineRecordCountAndFIFOAreRefused() throws {
        let path = dir + "/metrics.jsonl"
        // A 1 GiB line in a sparse file: refused by the file's size, nothing read.
        try write("metrics.jsonl", "{")
        XCTAssertEqual(truncate(path, 1 << 30), 0)
        assertCSGDError(["metrics.jsonl", "\(RunRecords.maxMetricsBytes)"]) {
            _ = try RunRecords(directory: dir)
        }
        // A 2 MiB line under the file limit: refused before decoding.
        try write(
            "metrics.jsonl",
            Self.epoch + "\n{\"phase\":\"train\",\"epoch\":2,\"x\":\""
                + String(repeating: "a", count: 2 << 20) + "\"}\n")
        assertCSGDError(["metrics.jsonl:2", "\(RunRecords.maxLineBytes)"]) {
            _ = try RunRecords(directory: dir)
        }
        // One record more than the report draws.
        let line = "{\"phase\":\"train\",\"epoch\":1}\n"
        try write("metrics.jsonl", String(repeating: line, count: RunRecords.maxRecords + 1))
        assertCSGDError(["metrics.jsonl:\(RunRecords.maxRecords + 1)", "records"]) {
            _ = try RunRecords(directory: dir)
        }
        // A FIFO as metrics.jsonl or config.yaml would block a plain read forever.
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        assertCSGDError(["metrics.jsonl", "not a regular file"]) {
            _ = try RunRecords(directory: dir)
        }
        try FileManager.default.removeItem(atPath: path)
        try write("metrics.jsonl", Self.epoch + "\n")
        XCTAssertEqual(mkfifo(dir + "/config.yaml", 0o600), 0)
        assertCSGDError(["config.yaml", "not a regular file"]) {
            _ = try RunRecords(directory: dir)
        }
    }

    /// Whatever the input, tick lists stay short.
    func testNiceTicksAreBoundedForAnyRange() {
        let ranges: [(Double, Double)] = [
            (-1e308, 1e308), (-.greatestFiniteMagnitude, .greatestFiniteMagnitude), (1e300, 1e300),
            (0, .leastNonzeroMagnitude), (.leastNonzeroMagnitude, .leastNonzeroMagnitude),
            (.nan, 1), (0, .infinity), (-.infinity, .infinity),
            (1e15, 1e15 + 0.125), (1e20, 1e20 + 1e5), (3, 1),
        ]
        for (lo, hi) in ranges {
            for integers in [false, true] {
                let t = SVGChart.niceTicks(lo, hi, integers: integers)
                XCTAssertFalse(t.isEmpty, "\(lo)…\(hi)")
                XCTAssertLessThanOrEqual(t.count, SVGChart.maxTicks + 1, "\(lo)…\(hi)")
            }
        }
    }

    // MARK: - helpers

    /// `assertCSGDError` with a case name in its failure messages.
    func assertCaseError(
        _ needles: [String], context: String, file: StaticString = #filePath,
        line: UInt = #line, _ body: () throws -> Void
    ) {
        do {
            try body()
            XCTFail("\(context): expected an error", file: file, line: line)
        } catch let e as CSGDError {
            for n in needles where !e.message.contains(n) {
                XCTFail("\(context): \"\(e.message)\" lacks \"\(n)\"", file: file, line: line)
            }
            XCTAssertFalse(e.message.contains("\n"), context, file: file, line: line)
        } catch {
            XCTFail("\(context): not a CSGDError: \(error)", file: file, line: line)
        }
    }

    /// Every number in an SVG coordinate or size attribute, and in polyline points, is finite.
    func assertFiniteGeometry(_ html: String, _ name: String) {
        let attr = try! NSRegularExpression(
            pattern: " (?:x|y|x1|y1|x2|y2|cx|cy|width|height|points)=\"([^\"%]*)\"")
        let ns = html as NSString
        var checked = 0
        for m in attr.matches(in: html, range: NSRange(location: 0, length: ns.length)) {
            let value = ns.substring(with: m.range(at: 1))
            for n in value.split(whereSeparator: { $0 == " " || $0 == "," }) {
                checked += 1
                guard let v = Double(n), v.isFinite else {
                    XCTFail("\(name): non-finite coordinate '\(n)'")
                    return
                }
            }
        }
        XCTAssertGreaterThan(checked, 0, name)
    }
}
