import CSGDTestSupport
import Foundation
import XCTest

/// Bad input gets one error line naming the flag or file, and a non-zero exit — never a crash.
final class BadInputTests: XCTestCase {
    func expectError(
        _ args: [String], mentions needle: String, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let r = try CLIRunner.run(args, timeout: 60)
        XCTAssertNotEqual(r.exitCode, 0, r.output, file: file, line: line)
        let errors = r.lines.filter { $0.lowercased().hasPrefix("error") }
        XCTAssertEqual(errors.count, 1, r.output, file: file, line: line)
        XCTAssertTrue(
            r.output.contains(needle), "expected '\(needle)' in: \(r.output)", file: file,
            line: line)
        XCTAssertFalse(r.output.contains("Fatal error"), r.output, file: file, line: line)
    }

    func testUnknownFlagAndBadValues() throws {
        try expectError(["train", "--bogus-key", "3"], mentions: "bogus")
        try expectError(["train", "--epochs", "zero"], mentions: "epochs")
        try expectError(["train", "--batch-size", "-4"], mentions: "batch_size")
        try expectError(["csgd", "--rounds", "9/8"], mentions: "rounds")
        try expectError(["train", "--model", "resnet21"], mentions: "model")
        try expectError(["train", "--threads", "300"], mentions: "threads")
    }

    /// Each mode key, given a value outside its enum, stops every job before it starts: exit
    /// code 2 and one line naming the key and every allowed value.
    func testUnknownModeValueExitsTwoListingAllowedValues() throws {
        let modes = [
            ("dataset", "fashion-mnist, cifar10, cifar100, imagefolder"),
            ("bad-images", "fail, skip"),
            ("lr-schedule", "cosine, multistep, constant"),
            ("cluster-method", "kmeans, even, balanced"),
            ("merge", "exact, mean"),
            ("update", "rank0, replicated"),
            ("allreduce", "overlap, blocking"),
            ("sensitivity-context", "alone, recalibrated, uniform"),
        ]
        for (flag, allowed) in modes {
            for job in ["train", "csgd", "config"] {
                let r = try CLIRunner.run([job, "--\(flag)", "nope"], timeout: 60)
                XCTAssertEqual(r.exitCode, 2, "\(job) --\(flag): \(r.output)")
                let key = flag.replacingOccurrences(of: "-", with: "_")
                XCTAssertEqual(
                    r.lines,
                    [
                        "error: config key '\(key)' expects one of \(allowed), got 'nope' "
                            + "(from command line)"
                    ], r.output)
            }
        }
        try expectError(
            ["prune", "--input", "x", "--output", "y", "--method", "l2"], mentions: "csgd")
    }

    func testMissingAndCorruptFiles() throws {
        let tmp = NSTemporaryDirectory() + "csgd-bad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try expectError(["train", "--config", tmp + "/nope.yaml"], mentions: "nope.yaml")
        try expectError(
            ["train", "--data-dir", tmp, "--epochs", "1"], mentions: tmp)
        let junk = tmp + "/junk.safetensors"
        try Data("not a model at all".utf8).write(to: URL(fileURLWithPath: junk))
        try expectError(["eval", "--input", junk], mentions: "junk.safetensors")
        let cfg = tmp + "/bad.yaml"
        try "epochs: 2\nlearning_rate: 0.1\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        try expectError(["train", "--config", cfg], mentions: "learning_rate")
    }

    func testExportBadInput() throws {
        let tmp = NSTemporaryDirectory() + "csgd-bad-export-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let out = tmp + "/out.onnx"
        try expectError(
            ["export", "--onnx", out, "--input", tmp + "/nope.safetensors"],
            mentions: "nope.safetensors")
        let junk = tmp + "/junk.safetensors"
        try Data("not a model at all".utf8).write(to: URL(fileURLWithPath: junk))
        try expectError(["export", "--onnx", out, "--input", junk], mentions: "junk.safetensors")
        try expectError(["export", "--input", junk], mentions: "--onnx")
        try expectError(["export", "--onnx", out, "--input", junk, "--bogus"], mentions: "--bogus")
        try expectError(
            ["export", "--onnx", out, "--input", junk, "--opset", "7"], mentions: "--opset")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing may be written")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: tmp), ["junk.safetensors"])

        // A valid model to an unwritable place (the parent is a file): one line, no output.
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") { return }
        let train = try CLIRunner.run(
            [
                "train", "--width-multiplier", "0.25", "--train-limit", "64", "--test-limit",
                "32", "--batch-size", "32", "--epochs", "1", "--out-dir", tmp + "/m",
            ], env: ["OPENBLAS_NUM_THREADS": "1"])
        XCTAssertEqual(train.exitCode, 0, train.output)
        let model = tmp + "/m/model.safetensors"
        try expectError(
            ["export", "--onnx", junk + "/out.onnx", "--input", model], mentions: junk + "/out.onnx"
        )
        let ok = try CLIRunner.run(["export", "--onnx", out, "--input", model])
        XCTAssertEqual(ok.exitCode, 0, ok.output)
        XCTAssertEqual(
            Set(try FileManager.default.contentsOfDirectory(atPath: tmp)),
            ["junk.safetensors", "m", "out.onnx"], "no temp files left behind")
    }
}
