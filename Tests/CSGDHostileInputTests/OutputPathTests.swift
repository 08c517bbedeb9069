// Outputs never destroy what the user already has, through the real binary: an output that is
// an input under another spelling, a FIFO or device node, a symlink to another file, a symlink
// planted at a run folder's lock. Every row ends with a non-zero exit, one `error:` line naming
// the path, and every file (and node) as it was.

import CSGDCore
import CSGDData
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

extension OutputPathTests {
    /// Every regular file below `dir`, relative path → bytes.
    func tree(_ dir: String) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let rel as String in FileManager.default.enumerator(atPath: dir) ?? .init() {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir),
                !isDir.boolValue
            {
                out[rel] = FileManager.default.contents(atPath: dir + "/" + rel)
            }
        }
        return out
    }

    /// A pid that is certainly gone: a child that has exited and been reaped.
    func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    /// `pack` writes a new pack beside its output and swaps it in only when complete: a pack
    /// that fails leaves the previous one byte for byte; the source, a folder inside it and a
    /// folder of other files are refused; a rerun after a kill removes the killed run's temp
    /// folder, and an export rerun removes a killed export's temp file.
    func testFailedPackKeepsThePreviousPackAndStaleTempsGo() throws {
        let images = root + "/images"
        try SyntheticImages.writeImageFolder(
            root: images + "/train", classes: 2, perClass: 3, width: 40, height: 40, seed: 1)
        let packed = root + "/packed"
        let dead = try deadPID()
        let killedTemp = root + "/.packed.1234abcd.tmp-\(dead)"
        try FileManager.default.createDirectory(
            atPath: killedTemp + "/train", withIntermediateDirectories: true)
        try CLIRunner.succeed(["pack", images, packed])
        XCTAssertFalse(FileManager.default.fileExists(atPath: killedTemp), "stale temp stays")
        let good = tree(packed)
        XCTAssertNotNil(good["train/index.tsv"])
        let otherFiles = root + "/notes"
        try FileManager.default.createDirectory(
            atPath: otherFiles, withIntermediateDirectories: true)
        try Data("mine\n".utf8).write(to: URL(fileURLWithPath: otherFiles + "/a.txt"))

        // A non-JPEG among the images: the repack fails and the good pack stays.
        try Data("not a jpeg".utf8).write(
            to: URL(fileURLWithPath: images + "/train/class_001/zz.jpg"))
        let cases: [(String, [String], [String])] = [
            ("repack with a bad image", ["pack", images, packed], ["zz.jpg", "not a JPEG"]),
            ("pack onto its source", ["pack", images, images + "/."], ["the source folder"]),
            (
                "pack inside its source", ["pack", images, images + "/train/p"],
                ["inside or around"]
            ),
            ("pack onto other files", ["pack", images, otherFiles], ["folder of other files"]),
        ]
        for (name, args, mentions) in cases {
            let source = tree(images)
            let r = try CLIRunner.run(args, timeout: 60)
            XCTAssertTrue(r.exitCode > 0 && r.exitCode < 128, "\(name): \(r.output)")
            let errors = r.lines.filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, "\(name): \(r.output)")
            for m in mentions {
                XCTAssertTrue(errors.first?.contains(m) == true, "\(name): \(r.output)")
            }
            XCTAssertEqual(tree(packed), good, "\(name) changed the previous pack")
            XCTAssertEqual(tree(images), source, "\(name) changed the source")
            XCTAssertEqual(tree(otherFiles).count, 1, name)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: root).filter {
            $0.contains(".tmp-") || $0.contains(".old-")
        }
        XCTAssertEqual(left, [], "temp folders left by failed packs")

        // An export killed mid-write left its temp file; the rerun's success removes it, and
        // a live writer's temp file (this test's own pid) stays.
        let run = root + "/run"
        try CLIRunner.succeed(HostileInputTests.tinyTrain(run))
        let onnx = root + "/m.onnx"
        let stale = root + "/.m.onnx.5eed.tmp-\(dead)"
        let live = root + "/.m.onnx.a11fe.tmp-\(getpid())"
        for f in [stale, live] { try Data("half".utf8).write(to: URL(fileURLWithPath: f)) }
        try CLIRunner.succeed(["export", "--onnx", onnx, "--input", run + "/model.safetensors"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live))
    }
}

extension HostileInputTests {
    /// A few-second training run into `dir`.
    static func tinyTrain(_ dir: String) -> [String] {
        ["train"] + tiny + ["--out-dir", dir]
    }
}
