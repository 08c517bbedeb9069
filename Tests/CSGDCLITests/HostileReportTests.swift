// `csgd-dist report` on crafted run directories, through the real binary: each either exits
// non-zero with one error line, or exits 0 having written the report; never a hang.

import CSGDTestSupport
import Foundation
import XCTest

final class HostileReportTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "csgd-hostile-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// What a crafted directory should produce.
    enum Outcome {
        /// Exit 1, one `error:` line containing every string.
        case error([String])
        /// Exit 0, report.html written.
        case report
    }

    func testCraftedRunDirectoriesErrOrReportWithoutHanging() throws {
        let epoch = "{\"phase\":\"train\",\"epoch\":1,\"train_loss\":1}\n"
        let cases: [(name: String, make: (String) throws -> Void, outcome: Outcome)] = [
            (
                "flops_before 0",
                { d in
                    try
                        (epoch
                        + "{\"phase\":\"prune\",\"flops_before\":0,\"flops_after\":0,"
                        + "\"params_before\":10,\"params_after\":5}\n")
                        .write(toFile: d + "/metrics.jsonl", atomically: true, encoding: .utf8)
                }, .error(["metrics.jsonl:2", "flops_before"])
            ),
            (
                "±1e308 losses",
                { d in
                    try
                        ("{\"phase\":\"train\",\"epoch\":1,\"train_loss\":1e308,\"test_loss\":-1e308}\n"
                        + "{\"phase\":\"train\",\"epoch\":2,\"train_loss\":-1e308,\"test_loss\":1}\n")
                        .write(toFile: d + "/metrics.jsonl", atomically: true, encoding: .utf8)
                }, .report
            ),
            (
                "a 1 GiB line",
                { d in
                    let p = d + "/metrics.jsonl"
                    try "{\"phase\":\"".write(toFile: p, atomically: true, encoding: .utf8)
                    XCTAssertEqual(truncate(p, 1 << 30), 0)  // sparse: no disk used
                }, .error(["metrics.jsonl", "bytes"])
            ),
            (
                "a FIFO",
                { d in XCTAssertEqual(mkfifo(d + "/metrics.jsonl", 0o600), 0) },
                .error(["metrics.jsonl", "not a regular file"])
            ),
        ]
        for (name, make, outcome) in cases {
            let run = dir + "/" + name.filter { $0.isLetter || $0.isNumber }
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            try make(run)
            let r = try CLIRunner.run(["report", run], timeout: 60)
            XCTAssertFalse(r.timedOut, "\(name): report hung")
            switch outcome {
            case .error(let needles):
                XCTAssertEqual(r.exitCode, 1, "\(name): \(r.output)")
                let errors = r.lines(startingWith: "error:")
                XCTAssertEqual(errors.count, 1, "\(name): \(r.output)")
                for n in needles {
                    XCTAssertTrue(errors.first?.contains(n) == true, "\(name): \(r.output)")
                }
            case .report:
                XCTAssertEqual(r.exitCode, 0, "\(name): \(r.output)")
                XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/report.html"), name)
            }
        }
    }
}
