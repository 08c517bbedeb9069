import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

/// `keep_checkpoints`: the history folder keeps the newest k step checkpoints plus every C-SGD
/// round's end, `checkpoint.safetensors` is always the newest, and `--resume` falls back to
/// the previous checkpoint (with a warning) when the newest does not verify — continuing
/// bitwise as an uninterrupted run would.
final class CheckpointHistoryTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        dir = NSTemporaryDirectory() + "csgd-history-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 256 images in batches of 32: 8 steps per epoch.
    let tiny = [
        "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
        "--batch-size", "32", "--epochs", "1", "--log-every", "1000",
    ]

    func history(_ run: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")
            .filter { !$0.hasPrefix(".") }.sorted()
    }

    /// Flips one byte in the tensor data of a safetensors file (after its JSON header).
    func corrupt(_ path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        let at = 8 + headerLength + (bytes.count - 8 - headerLength) / 2
        bytes[at] ^= 0x40
        // In place, as a disk error would: every name linked to the file sees it.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(at))
        try handle.write(contentsOf: [bytes[at]])
        try handle.close()
    }

    func testKeepsTheNewestKAndResumeFallsBackFromADamagedNewest() throws {
        let args = ["train"] + tiny + ["--checkpoint-every-steps", "1", "--keep-checkpoints", "2"]
        let straight = dir + "/straight"
        let split = dir + "/split"
        let s = try CLIRunner.succeed(args + ["--out-dir", straight])
        XCTAssertFalse(s.output.contains("warning"), s.output)
        _ = try CLIRunner.succeed(args + ["--out-dir", split, "--max-steps", "6"])
        XCTAssertEqual(
            try history(split), ["step-000000005.safetensors", "step-000000006.safetensors"])
        let newest = split + "/checkpoints/step-000000006.safetensors"
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: split + "/checkpoint.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: newest)), "the stable name is the newest")

        try corrupt(newest)
        XCTAssertThrowsError(try SafeTensorsFile.read(path: newest))
        // A copy whose every checkpoint is damaged: resume fails with one error.
        let hopeless = dir + "/hopeless"
        try FileManager.default.copyItem(atPath: split, toPath: hopeless)
        try corrupt(hopeless + "/checkpoints/step-000000005.safetensors")

        let r = try CLIRunner.succeed(args + ["--out-dir", split, "--resume"])
        let warnings = r.lines(startingWith: "warning:")
        XCTAssertEqual(warnings.count, 1, r.output)
        XCTAssertTrue(
            warnings.first?.contains(split + "/checkpoint.safetensors does not verify") ?? false)
        XCTAssertTrue(
            warnings.first?.contains(
                "falling back to " + split
                    + "/checkpoints/step-000000005.safetensors") ?? false, r.output)
        XCTAssertTrue(
            r.output.contains(
                "resuming from " + split
                    + "/checkpoints/step-000000005.safetensors"), r.output)
        XCTAssertEqual(
            try history(split), ["step-000000007.safetensors", "step-000000008.safetensors"])
        let a = try SafeTensorsFile.read(path: straight + "/checkpoint.safetensors")
        let b = try SafeTensorsFile.read(path: split + "/checkpoint.safetensors")
        XCTAssertEqual(a.names, b.names)
        for n in a.names {
            XCTAssertEqual(try a.floats(n), try b.floats(n), "tensor \(n) differs after resume")
        }
        XCTAssertEqual(a.metadata["csgd.state"], b.metadata["csgd.state"])

        let bad = try CLIRunner.run(
            args + ["--out-dir", hopeless, "--resume"], env: ["OPENBLAS_NUM_THREADS": "1"])
        XCTAssertNotEqual(bad.exitCode, 0, bad.output)
        XCTAssertEqual(bad.lines(startingWith: "error:").count, 1, bad.output)
        XCTAssertTrue(bad.output.contains("verifies either"), bad.output)
    }

    func testRoundEndsAreKeptBesideTheNewestSteps() throws {
        let out = dir + "/csgd"
        _ = try CLIRunner.succeed(
            ["csgd"] + tiny + [
                "--rounds", "0.75,0.5", "--prune-tolerance", "1e9", "--checkpoint-every-steps",
                "3", "--keep-checkpoints", "1", "--out-dir", out,
            ])
        // Round 1: steps 3, 6, end at 8; round 2 starts at 8 (pruned), steps 9, 12, 15, end 16.
        XCTAssertEqual(
            try history(out),
            [
                "round1-end.safetensors", "round2-end.safetensors",
                "step-000000016-round2.safetensors",
            ])
        let latest = try SafeTensorsFile.read(path: out + "/checkpoint.safetensors")
        let end1 = try SafeTensorsFile.read(path: out + "/checkpoints/round1-end.safetensors")
        XCTAssertTrue(end1.metadata["csgd.state"]?.contains("\"round\":0") ?? false)
        XCTAssertTrue(end1.metadata["csgd.state"]?.contains("\"epoch\":1") ?? false)
        XCTAssertTrue(latest.metadata["csgd.state"]?.contains("\"round\":1") ?? false)
        // A kept round end is a C-SGD checkpoint `prune` can merge on its own.
        let p = try CLIRunner.succeed(
            [
                "prune", "--input", out + "/checkpoints/round1-end.safetensors", "--output",
                dir + "/r1.safetensors", "--prune-tolerance", "1e9",
            ] + tiny)
        XCTAssertTrue(p.output.contains("max |logit diff|"), p.output)
    }

    /// Every kill point of an epoch resumes to the uninterrupted run's weights: before, at and
    /// after each step checkpoint — including the one written after an epoch's last step and
    /// before its end-of-epoch checkpoint (a job killed during that epoch's evaluation), which
    /// `--resume` used to refuse as "step 8 of an epoch" — and at the end-of-epoch checkpoint.
    func testEveryKillPointOfAnEpochResumesToTheSameWeights() throws {
        // 3 epochs of 8 steps, a step checkpoint every 4; with checkpoint_every 3 the ends of
        // epochs 1 and 2 write none, so the history keeps the step-8 and step-16 checkpoints
        // as a kill before the epoch's end left them.
        let args = [
            "train", "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
            "--batch-size", "32", "--epochs", "3", "--log-every", "1000",
            "--checkpoint-every-steps", "4", "--keep-checkpoints", "100",
        ]
        let straight = dir + "/straight"
        _ = try CLIRunner.succeed(args + ["--checkpoint-every", "3", "--out-dir", straight])
        // The same run checkpointing every epoch: its step-8 file is the end-of-epoch one.
        let everyEpoch = dir + "/every-epoch"
        _ = try CLIRunner.succeed(args + ["--checkpoint-every", "1", "--out-dir", everyEpoch])
        let stepState = try SafeTensorsFile.read(
            path: straight + "/checkpoints/step-000000008.safetensors"
        ).metadata["csgd.state"]
        let epochState = try SafeTensorsFile.read(
            path: everyEpoch + "/checkpoints/step-000000008.safetensors"
        ).metadata["csgd.state"]
        XCTAssertTrue(stepState?.contains("\"step\":8") ?? false, stepState ?? "no state")
        XCTAssertTrue(epochState?.contains("\"step\":0") ?? false, epochState ?? "no state")

        func assertSameWeights(_ run: String, _ label: String) throws {
            try assertSameTensors(
                straight + "/model.safetensors", run + "/model.safetensors", label + ":")
        }
        try assertSameWeights(everyEpoch, "checkpointing every epoch")
        var kills: [(String, String)] = try history(straight).map {
            (straight + "/checkpoints/" + $0, $0)
        }
        kills.append((everyEpoch + "/checkpoints/step-000000008.safetensors", "epoch-1 end"))
        XCTAssertEqual(kills.count, 7, "\(kills.map(\.1))")
        for (k, (checkpoint, label)) in kills.enumerated() {
            let run = dir + "/resume-\(k)"
            try FileManager.default.createDirectory(
                atPath: run, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                atPath: checkpoint, toPath: run + "/checkpoint.safetensors")
            let r = try CLIRunner.run(
                args + ["--checkpoint-every", "3", "--out-dir", run, "--resume"])
            XCTAssertEqual(r.exitCode, 0, "\(label): \(r.output)")
            XCTAssertTrue(r.output.contains("resuming from"), "\(label): \(r.output)")
            try assertSameWeights(run, label)
        }
    }
}
