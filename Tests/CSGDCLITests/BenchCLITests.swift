import CSGDTestSupport
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
        let lines = r.output.split(separator: "\n")
        // First the machine: build target, running CPU, OpenBLAS core (threads vary by part).
        let machine = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8))
                as? [String: Any], "no machine line first: \(r.output)")
        XCTAssertEqual(machine["name"] as? String, "machine")
        for key in ["target_cpu", "target_features", "cpu", "cpu_features", "openblas_core"] {
            XCTAssertNotNil(machine[key] as? String, key)
        }
        XCTAssertFalse((machine["openblas_core"] as? String ?? "").isEmpty)
        XCTAssertTrue(machine["openblas_threads"] is NSNull)
        for line in lines.dropFirst() {
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
        let replicas = try row("1x2mb_train_step_resnet20_b8x1_rank0_mb2_t2")
        XCTAssertNotNil(replicas["ratio_to_1thread"] as? Double)
        XCTAssertEqual(replicas["parallel_micro_batches"] as? Double, 2)
        XCTAssertNotNil(try row("scaling_skipped"))
    }

    /// The mpirun part: the existing rows plus overlapped vs blocking allreduce on 2 ranks.
    func testScalingReportsOverlappedAgainstBlockingAllreduce() throws {
        try CLIRunner.requireMPIRun()
        let r = try CLIRunner.run(
            ["bench", "scaling", "--model", "resnet20", "--batch", "8", "--steps", "1", "--json"],
            env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 300)
        XCTAssertEqual(r.exitCode, 0, r.output)
        var rows: [String: [String: Any]] = [:]
        for line in r.lines {
            let obj = try XCTUnwrap(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                "not a JSON object: \(line)")
            rows[try XCTUnwrap(obj["name"] as? String)] = obj
        }
        XCTAssertEqual(rows["machine"]?["openblas_threads"] as? Int, 1, "machine line")
        XCTAssertEqual(
            Set(rows.keys),
            [
                "machine", "train_resnet20_1rank", "train_resnet20_2ranks_rank0",
                "train_resnet20_2ranks_replicated", "train_resnet20_2ranks_overlap",
                "peak_rss_resnet20_b128",
            ])
        XCTAssertNotNil(rows["train_resnet20_2ranks_rank0"]?["ratio_to_1rank"] as? Double)
        XCTAssertNotNil(rows["train_resnet20_2ranks_replicated"]?["ratio_to_rank0_step"] as? Double)
        let overlap = try XCTUnwrap(rows["train_resnet20_2ranks_overlap"])
        for key in ["value", "comm_fraction", "blocking_img_s", "blocking_comm_fraction"] {
            let v = try XCTUnwrap(overlap[key] as? Double, key)
            XCTAssertTrue(v.isFinite && v > 0, "\(key) = \(v)")
        }
        // ResNet-20's 0.27 M parameters (1.1 MB) make 2 buckets of ~1 MiB.
        XCTAssertEqual(overlap["buckets"] as? Double, 2)
        let ratio = try XCTUnwrap(overlap["ratio_to_blocking"] as? Double)
        XCTAssertEqual(
            ratio, (overlap["value"] as! Double) / (overlap["blocking_img_s"] as! Double),
            accuracy: 1e-9)
    }

    /// Table mode: the machine line above the title.
    func testTrainTableStartsWithTheMachine() throws {
        let r = try CLIRunner.run(
            [
                "bench", "train", "--model", "resnet20", "--batch", "4", "--steps", "1",
                "--step-only", "--threads", "1",
            ], timeout: 300)
        XCTAssertEqual(r.exitCode, 0, r.output)
        let first = try XCTUnwrap(r.lines.first)
        XCTAssertTrue(first.hasPrefix("machine: built for "), first)
        XCTAssertTrue(first.contains("; runs on "), first)
        XCTAssertTrue(first.hasSuffix(", 1 thread(s)"), first)
        XCTAssertTrue(
            r.lines.dropFirst().first?.hasPrefix("bench train: resnet20") ?? false, r.output)
    }

    func testSuiteRejectsBadFlagsInOneLine() throws {
        let r = try CLIRunner.run(["bench", "--steps", "0"])
        XCTAssertNotEqual(r.exitCode, 0)
        XCTAssertTrue(r.output.contains("--batch and --steps must be at least 1"), r.output)
    }
}
