import Foundation
import XCTest

/// `csgd-dist bench` as a suite: every part runs and reports the rows and ratios the docs
/// quote, in parseable JSON lines. Nothing here asserts on speed.
final class BenchCLITests: XCTestCase {
    func testSuiteReportsEveryPartAsJSONLines() throws {
        let r = try CLIRunner.run(
            [
                "bench", "--model", "resnet20", "--batch", "8", "--steps", "1", "--no-scaling",
                "--json",
            ], env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 300)
        XCTAssertEqual(r.exitCode, 0, r.output)
        var rows: [String: [String: Any]] = [:]
        for line in r.output.split(separator: "\n") {
            let obj = try XCTUnwrap(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                "not a JSON object: \(line)")
            let name = try XCTUnwrap(obj["name"] as? String)
            XCTAssertNotNil(obj["unit"] as? String, name)
            XCTAssertNotNil(obj["value"], name)
            rows[name] = obj
        }
        func row(_ prefix: String) throws -> [String: Any] {
            try XCTUnwrap(rows.first { $0.key.hasPrefix(prefix) }?.value, "no \(prefix)* row")
        }
        XCTAssertNotNil(try row("sgemm_1024")["value"] as? Double)
        XCTAssertNotNil(try row("conv_fwd_bwd_resnet56_mix")["ratio_to_sgemm"] as? Double)
        XCTAssertNotNil(try row("1x1_train_step_resnet20_b8")["ratio_to_sgemm"] as? Double)
        XCTAssertNotNil(try row("1x1_csgd_step_resnet20_b8")["ratio_to_sgd_step"] as? Double)
        XCTAssertNotNil(try row("1x1_inference_resnet20_pruned58")["speedup"] as? Double)
        XCTAssertNotNil(try row("1x1_peak_rss")["value"] as? Double)
        XCTAssertNotNil(try row("1x2_train_step_resnet20_b8")["ratio_to_1thread"] as? Double)
        XCTAssertNotNil(try row("scaling_skipped"))
    }

    func testSuiteRejectsBadFlagsInOneLine() throws {
        let r = try CLIRunner.run(["bench", "--steps", "0"])
        XCTAssertNotEqual(r.exitCode, 0)
        XCTAssertTrue(r.output.contains("--batch and --steps must be at least 1"), r.output)
    }
}
