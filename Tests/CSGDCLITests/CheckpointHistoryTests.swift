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
}
