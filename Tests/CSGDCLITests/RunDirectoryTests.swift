import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// Ownership of a run folder through the real binary: the lock refuses a second job naming
/// the holder, a used folder is reused only with --resume or --overwrite, a prune does not
/// take over another run's folder, command.txt keeps every job, stale temp files are cleaned,
/// and a bad out_dir is one plain line.
final class RunDirectoryTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        dir = NSTemporaryDirectory() + "csgd-rundir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A 1-epoch ResNet-20 ×0.25 job on 96 images: a few seconds.
    let tiny = [
        "--width-multiplier", "0.25", "--train-limit", "96", "--test-limit", "32",
        "--batch-size", "32", "--log-every", "1000",
    ]

    /// Every file under `path` (recursively) with its bytes.
    func snapshot(_ path: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let fm = FileManager.default
        for name in try fm.subpathsOfDirectory(atPath: path) {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: path + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                files[name] = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
            }
        }
        return files
    }

    func lines(_ file: String) throws -> [String] {
        try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func errorLines(_ r: CLIResult) -> [String] { r.lines(startingWith: "error:") }

    func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        _ = gethostname(&name, name.count - 1)
        return String(
            decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func testSecondJobOnALockedFolderIsRefusedNamingTheHolder() throws {
        let out = dir + "/run"
        // The first job trains "forever" (until killed).
        let first = Process()
        first.executableURL = URL(fileURLWithPath: try CLIRunner.executablePath())
        first.arguments = ["train"] + tiny + ["--epochs", "100000", "--out-dir", out]
        var env = ProcessInfo.processInfo.environment.filter {
            !CLIRunner.isInheritedMPIVariable($0.key)
        }
        env["OPENBLAS_NUM_THREADS"] = "1"
        first.environment = env
        first.standardInput = FileHandle.nullDevice
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer {
            if first.isRunning {
                kill(first.processIdentifier, SIGKILL)
                first.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: out + "/config.yaml") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertTrue(first.isRunning, "the first job must still be running")
        let config = try Data(contentsOf: URL(fileURLWithPath: out + "/config.yaml"))
        let command = try Data(contentsOf: URL(fileURLWithPath: out + "/command.txt"))

        // Even --overwrite does not break a live lock.
        for extra in [[], ["--overwrite"], ["--resume"]] {
            let second = try CLIRunner.run(
                ["train"] + tiny + ["--epochs", "1", "--lr", "0.5", "--out-dir", out] + extra,
                env: ["OPENBLAS_NUM_THREADS": "1"])
            XCTAssertNotEqual(second.exitCode, 0, second.output)
            XCTAssertEqual(second.lines.count, 1, second.output)
            XCTAssertEqual(errorLines(second).count, 1, second.output)
            XCTAssertTrue(
                second.output.contains(
                    "\(out) is in use by another job (pid \(first.processIdentifier) on host "
                        + "\(hostName()), started "),
                second.output)
        }
        XCTAssertTrue(first.isRunning)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/config.yaml")), config)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/command.txt")), command)
        XCTAssertFalse(
            String(decoding: config, as: UTF8.self).contains("lr: 0.5"), "first job's config")

        // A killed holder leaves no stale lock: the kernel dropped it with the process.
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let after = try CLIRunner.succeed(
            ["train"] + tiny + ["--epochs", "1", "--out-dir", out, "--overwrite"])
        XCTAssertFalse(after.output.contains("in use"), after.output)
    }

    func testReusedFolderNeedsResumeOrOverwriteAndCommandTxtKeepsHistory() throws {
        let out = dir + "/run"
        let args = ["train"] + tiny + ["--epochs", "1", "--out-dir", out]
        try CLIRunner.succeed(args)
        let before = try snapshot(out)
        XCTAssertEqual(try lines(out + "/metrics.jsonl").count, 1)

        // A fresh job into a folder that holds a run: refused with a hint, nothing changed.
        let again = try CLIRunner.run(args, env: ["OPENBLAS_NUM_THREADS": "1"])
        XCTAssertNotEqual(again.exitCode, 0, again.output)
        XCTAssertEqual(errorLines(again).count, 1, again.output)
        XCTAssertTrue(again.output.contains("\(out) already holds a run"), again.output)
        let hint = again.lines(startingWith: "HINT:")
        XCTAssertEqual(hint.count, 1, again.output)
        XCTAssertTrue(hint.first?.contains("--resume") == true, again.output)
        XCTAssertTrue(hint.first?.contains("--overwrite") == true, again.output)
        XCTAssertEqual(try snapshot(out), before, "a refused job changes nothing")

        // The same under mpirun: every rank stops, no hang, nothing changed.
        if CLIRunner.mpirunAvailable {
            let many = try CLIRunner.mpirun(ranks: 2, args: args, timeout: 60)
            XCTAssertFalse(many.timedOut, many.output)
            XCTAssertNotEqual(many.exitCode, 0, many.output)
            XCTAssertTrue(many.output.contains("\(out) already holds a run"), many.output)
            XCTAssertEqual(try snapshot(out), before, "a refused job changes nothing")
        }

        // --resume with --overwrite: one line, nothing changed.
        let both = try CLIRunner.run(args + ["--resume", "--overwrite"])
        XCTAssertNotEqual(both.exitCode, 0, both.output)
        XCTAssertEqual(both.lines, ["error: --resume and --overwrite exclude each other"])
        XCTAssertEqual(try snapshot(out), before)

        // --overwrite: the old records are moved aside, metrics.jsonl starts fresh.
        let over = try CLIRunner.succeed(args + ["--overwrite"])
        XCTAssertTrue(over.output.contains("--overwrite: the previous run's"), over.output)
        XCTAssertEqual(try lines(out + "/metrics.jsonl").count, 1, "metrics start fresh")
        let aside = try FileManager.default.contentsOfDirectory(atPath: out)
            .filter { $0.hasPrefix("overwritten-") }
        XCTAssertEqual(aside.count, 1)
        let moved = try snapshot(out + "/" + aside[0])
        // The TensorBoard copy of the records goes with them, so old curves do not mix in.
        let events = before.keys.filter { $0.hasPrefix("tb/events.out.tfevents.") }
        XCTAssertEqual(events.count, 1, "\(before.keys)")
        XCTAssertEqual(
            Set(moved.keys),
            Set([
                "checkpoint.safetensors", "metrics.jsonl", "config.yaml", "model.safetensors",
                "checkpoints/step-000000003.safetensors",
            ]).union(events))
        for (name, bytes) in moved { XCTAssertEqual(bytes, before[name], name) }

        // command.txt: one timestamped line per job that ran (the refused ones add none).
        let history = try lines(out + "/command.txt")
        XCTAssertEqual(history.count, 2, history.joined(separator: "\n"))
        let stamp = try NSRegularExpression(
            pattern: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ .*csgd-dist train "#)
        for line in history {
            XCTAssertEqual(
                stamp.numberOfMatches(in: line, range: NSRange(line.startIndex..., in: line)), 1,
                line)
        }
        XCTAssertFalse(history[0].contains("--overwrite"))
        XCTAssertTrue(history[1].hasSuffix("--overwrite"), history[1])

        // --resume is allowed into a folder with a checkpoint, and appends to the history.
        let resumed = try CLIRunner.succeed(args + ["--resume"])
        XCTAssertTrue(resumed.output.contains("resuming from"), resumed.output)
        XCTAssertEqual(try lines(out + "/command.txt").count, 3)

        // --resume into a folder without a checkpoint: refused before anything is written.
        let none = try CLIRunner.run(["train"] + tiny + ["--out-dir", dir + "/new", "--resume"])
        XCTAssertNotEqual(none.exitCode, 0, none.output)
        XCTAssertTrue(
            none.output.contains("cannot resume: \(dir)/new/checkpoint.safetensors does not exist"),
            none.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/new/command.txt"))
    }

    func testPruneDoesNotTakeOverAnotherRunsFolder() throws {
        let run = dir + "/run"
        try CLIRunner.succeed(["train"] + tiny + ["--epochs", "1", "--out-dir", run])
        let before = try snapshot(run)
        let prune = [
            "prune", "--input", run + "/model.safetensors", "--method", "magnitude", "--target",
            "0.5", "--output", run + "/thin.safetensors",
        ]
        let p = try CLIRunner.run(prune + tiny, env: ["OPENBLAS_NUM_THREADS": "1"])
        XCTAssertNotEqual(p.exitCode, 0, p.output)
        XCTAssertEqual(errorLines(p).count, 1, p.output)
        XCTAssertTrue(p.output.contains("\(run) already holds a run"), p.output)
        XCTAssertTrue(p.output.contains("--out-dir"), p.output)
        XCTAssertEqual(try snapshot(run), before, "config.yaml, command.txt, metrics untouched")

        // With its own --out-dir the same prune runs and leaves the train run alone.
        try CLIRunner.succeed(prune + tiny + ["--out-dir", dir + "/prune"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/thin.safetensors"))
        var changed = try snapshot(run)
        changed["thin.safetensors"] = nil
        XCTAssertEqual(changed, before)
        XCTAssertEqual(try lines(dir + "/prune/command.txt").count, 1)
    }

    func testStaleTempFilesAreRemovedAndLiveOnesKept() throws {
        let out = dir + "/run"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        let stale = ".checkpoint.safetensors.tmp-\(gone.processIdentifier)"
        let live = ".metrics.jsonl.tmp-\(getpid())"  // this test process: alive
        for name in [stale, live] {
            XCTAssertTrue(
                FileManager.default.createFile(atPath: out + "/" + name, contents: Data("x".utf8)))
        }
        let r = try CLIRunner.succeed(["train"] + tiny + ["--epochs", "1", "--out-dir", out])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/" + stale), r.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + live), r.output)
        XCTAssertTrue(r.output.contains("removed 1 temp file(s)"), r.output)
        XCTAssertTrue(r.output.contains("left 1 temp file(s)"), r.output)
    }

    func testBadOutDirsAreOnePlainLine() throws {
        let file = dir + "/file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let train = ["train"] + tiny + ["--epochs", "1", "--out-dir"]
        let r = try CLIRunner.run(train + [file + "/run"])
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        XCTAssertEqual(
            r.lines, ["error: cannot create out_dir \(file)/run: \(file) is a file, not a folder"])
        let f = try CLIRunner.run(train + [file])
        XCTAssertEqual(f.lines, ["error: out_dir \(file) is a file, not a folder"])

        // `a/../b` is refused (it would create `a` and leave it), naming the folder it means.
        let d = try CLIRunner.run(train + [dir + "/a/../b"])
        XCTAssertNotEqual(d.exitCode, 0, d.output)
        XCTAssertEqual(
            d.lines,
            [
                "error: out_dir \(dir)/a/../b: '..' after a folder name is not accepted",
                "HINT: write the folder it means directly: \(dir)/b",
            ])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["file"])
    }
}
