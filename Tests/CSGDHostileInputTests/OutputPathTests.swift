// Outputs never destroy what the user already has, through the real binary: an output that is
// an input under another spelling, a FIFO or device node, a symlink to another file, a symlink
// planted at a run folder's lock. Every row ends with a non-zero exit, one `error:` line naming
// the path, and every file (and node) as it was.

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

final class OutputPathTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        try Requirements.fashionMNISTInstalled()
        root = NSTemporaryDirectory() + "csgd-outputs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// (exists, type bits, bytes) of a path, links not followed.
    func state(_ path: String) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return "absent" }
        let kind = st.st_mode & S_IFMT
        let bytes =
            kind == S_IFREG ? (FileManager.default.contents(atPath: path) ?? Data()) : Data()
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? ""
        return "\(kind) \(bytes.count) \(bytes.hashValue) \(target)"
    }

    func testOutputsThatAreInputsDevicesOrLinksAreRefusedAndNothingChanges() throws {
        let run = root + "/run"
        try CLIRunner.succeed(HostileInputTests.tinyTrain(run))
        let model = run + "/model.safetensors"
        let onnx = root + "/m.onnx"
        try CLIRunner.succeed(["export", "--onnx", onnx, "--input", model])
        let respelled = run + "/../run/./model.safetensors"
        let fifo = root + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let elsewhere = root + "/precious.txt"
        try Data("keep me\n".utf8).write(to: URL(fileURLWithPath: elsewhere))
        let link = root + "/link.safetensors"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: elsewhere)
        var device: String?
        if getuid() == 0 {  // a null device node of our own, in the test folder
            let node = root + "/null"
            if mknod(node, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 { device = node }
        }
        let lockRun = root + "/locked"
        try FileManager.default.createDirectory(atPath: lockRun, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: lockRun + "/.lock", withDestinationPath: elsewhere)

        var cases: [(name: String, args: [String], mentions: [String])] = [
            (
                "import onto its ONNX file", ["import", onnx, "--output", root + "/./m.onnx"],
                ["same file as the input"]
            ),
            (
                "prune onto its input",
                [
                    "prune", "--input", model, "--output", respelled, "--method", "magnitude",
                    "--target", "1/2",
                ], ["same file as the input", "--output"]
            ),
            (
                "export onto its input", ["export", "--input", model, "--onnx", respelled],
                ["same file as the input", "--onnx"]
            ),
            (
                "eval dump onto its input",
                ["eval", "--input", model, "--dump-logits", respelled, "--test-limit", "16"],
                ["same file as the input", "--dump-logits"]
            ),
            (
                "report onto its run's metrics",
                ["report", run, "--output", run + "/metrics.jsonl"], ["same file as the input"]
            ),
            (
                "report onto its run's model", ["report", run, "--output", respelled],
                ["same file as the input"]
            ),
            ("import onto a FIFO", ["import", onnx, "--output", fifo], [fifo, "not a regular"]),
            (
                "export onto a FIFO", ["export", "--input", model, "--onnx", fifo],
                [fifo, "not a regular"]
            ),
            (
                "import onto a symlink", ["import", onnx, "--output", link],
                [link, "symbolic link"]
            ),
            ("report onto a symlink", ["report", run, "--output", link], [link, "symbolic link"]),
            (
                "train with a symlink planted at the lock",
                HostileInputTests.tinyTrain(lockRun), [".lock"]
            ),
        ]
        if let device {
            cases.append(
                (
                    "import onto a device", ["import", onnx, "--output", device],
                    [device, "not a regular"]
                ))
        }
        let watched =
            [model, onnx, fifo, elsewhere, link, run + "/metrics.jsonl"]
            + [device]
            .compactMap { $0 }
        for c in cases {
            let before = watched.map(state)
            let r = try CLIRunner.run(c.args, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 60)
            XCTAssertFalse(r.timedOut, "\(c.name): hung\n\(r.output)")
            XCTAssertTrue(
                r.exitCode > 0 && r.exitCode < 128, "\(c.name): exit \(r.exitCode)\n\(r.output)")
            let errors = r.lines.filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, "\(c.name): \(r.output)")
            for word in c.mentions {
                XCTAssertTrue(
                    errors.first?.contains(word) == true,
                    "\(c.name): '\(word)' missing\n\(r.output)")
            }
            XCTAssertEqual(watched.map(state), before, "\(c.name) changed a file")
        }
        // No temp file is left beside any refused output.
        let left = try FileManager.default.contentsOfDirectory(atPath: root).filter {
            $0.contains(".tmp-")
        }
        XCTAssertEqual(left, [])
    }
}

extension HostileInputTests {
    /// A few-second training run into `dir`.
    static func tinyTrain(_ dir: String) -> [String] {
        ["train"] + tiny + ["--out-dir", dir]
    }
}
