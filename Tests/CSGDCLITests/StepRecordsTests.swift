// steps.jsonl through the real binary: one record every `log_every` steps with the global step
// (continuing across rounds), a timestamp, the phase, finite training metrics and, in C-SGD,
// the deviation; and progress lines carrying the time and the global step.

import CSGDTestSupport
import Foundation
import XCTest

final class StepRecordsTests: XCTestCase {
    func testStepRecordsEveryLogEveryStepsAcrossRounds() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed (launch/setup.sh installs it)")
        }
        let out = NSTemporaryDirectory() + "csgd-steps-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        // 256 images / batch 32 = 8 steps per epoch, 1 epoch per round, two rounds. Eight
        // steps do not collapse the clusters, hence the loose prune tolerance: this test is
        // about the records, not the merge.
        let r = try CLIRunner.succeed([
            "csgd", "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
            "--batch-size", "32", "--epochs", "1", "--rounds", "3/4,1/2", "--log-every", "3",
            "--centripetal-strength", "3", "--prune-tolerance", "100", "--out-dir", out,
        ])
        let text = try String(contentsOfFile: out + "/steps.jsonl", encoding: .utf8)
        let records = try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        // Global steps 1–8 are round 1, 9–16 round 2; every third step is recorded.
        XCTAssertEqual(records.map { $0["step"] as? Int }, [3, 6, 9, 12, 15], text)
        XCTAssertEqual(records.map { $0["round"] as? Int }, [1, 1, 2, 2, 2], text)
        for rec in records {
            XCTAssertEqual(rec["phase"] as? String, "csgd")
            for key in ["loss", "top1", "lr", "img_per_s", "elapsed_seconds"] {
                let v = rec[key] as? Double
                XCTAssertTrue(v.map { $0.isFinite && $0 >= 0 } ?? false, "\(key): \(rec)")
            }
            for key in ["data_wait_fraction", "comm_fraction", "top1"] {
                let v = rec[key] as? Double ?? -1
                XCTAssertTrue(v >= 0 && v <= 1, "\(key): \(rec)")
            }
            XCTAssertNotNil(rec["deviation_kernels"] as? Double, "\(rec)")
            let time = rec["time"] as? String ?? ""
            XCTAssertNotNil(ISO8601DateFormatter().date(from: time), time)
        }
        // Progress lines: "HH:MM:SS [step N] csgd round R epoch …", with the whole-run ETA.
        let progress = r.lines.filter { $0.contains("[step ") }
        XCTAssertFalse(progress.isEmpty, r.output)
        let pattern = #"^\d\d:\d\d:\d\d \[step \d+\] csgd round \d epoch .* ETA "#
        for line in progress {
            XCTAssertNotNil(line.range(of: pattern, options: .regularExpression), line)
        }
    }
}
