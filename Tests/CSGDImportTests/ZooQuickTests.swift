// The model zoo check in its reduced form (`launch/zoo-check.sh --quick`): torchvision's
// ResNet-18, MobileNetV3-Small (squeeze-excitation, HardSwish), ShuffleNetV2 (split, shuffle)
// and EfficientNet-B0 (SiLU, SE), each exported by both of torch 2.13's exporters, imported,
// evaluated against onnxruntime, C-SGD-trained briefly, pruned exactly and exported again. The
// script is the judge (it exits non-zero if any file fails a step); this test runs it with the
// binary under test so CI keeps it from rotting. Needs the zoo's Python packages.

import CSGDTestSupport
import Foundation
import XCTest

final class ZooQuickTests: XCTestCase {
    func testQuickZooImportsEvaluatesAndPrunesExactly() throws {
        try Requirements.fashionMNISTInstalled()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        // As the zoo script imports them (tv_cpu before torchvision on the CPU torch wheel).
        try Requirements.pythonModules(
            ["tv_cpu", "torch", "torchvision", "timm", "onnxscript", "PIL"],
            path: root + "/launch/zoo")
        let work = NSTemporaryDirectory() + "zoo-quick-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: work) }
        let doc = work + "/zoo.md"
        let r = try CLIRunner.runProcess(
            "/bin/bash", [root + "/launch/zoo-check.sh", "--quick", "--no-setup", "--doc", doc],
            env: ["CSGD_EXE": try CLIRunner.executablePath(), "ZOO_ROOT": work], timeout: 2400)
        XCTAssertFalse(r.timedOut, "the quick zoo check ran past 40 minutes")
        XCTAssertEqual(r.exitCode, 0, String(r.output.suffix(4000)))
        let table = (try? String(contentsOfFile: doc, encoding: .utf8)) ?? ""
        // Four models × two exporters, every row passing every step.
        let rows = table.split(separator: "\n").filter { $0.hasPrefix("| tv_") }
        XCTAssertEqual(rows.count, 8, table)
        XCTAssertEqual(rows.filter { $0.hasSuffix("| ok |") }.count, 8, table)
    }
}
