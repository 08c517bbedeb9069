import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

/// BatchNorm groups (`bn_group_size`) through the real binary: 2 ranks × batch B pooled in one
/// group train like 1 rank × batch 2B, for plain SGD and C-SGD; a group size that does not
/// divide the ranks is one error line and a failed job.
final class BatchNormGroupCLITests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try CLIRunner.requireMPIRun()
        dir = NSTemporaryDirectory() + "csgd-bngroup-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Generated JPEGs (smooth patterns): unlike Fashion-MNIST, no large regions of exactly
    /// equal pixels. There, whole background regions share one value per channel, so a ReLU
    /// input that sits on 0 up to rounding flips its mask for thousands of pixels at once
    /// when the summation order changes, and the gradients of two equivalent runs differ by
    /// ~1e-3 (measured: one channel of one BN, after one step).
    func makeData() throws -> String {
        let data = dir + "/data"
        try SyntheticImages.writeImageFolder(
            root: data + "/train", classes: 4, perClass: 12, width: 48, height: 40, seed: 1)
        try SyntheticImages.writeImageFolder(
            root: data + "/val", classes: 4, perClass: 2, width: 40, height: 48, seed: 2)
        return data
    }

    /// Every float tensor of a checkpoint: weights, momentum and BN running statistics.
    func tensors(_ path: String) throws -> [String: [Float]] {
        let f = try SafeTensorsFile.read(path: path)
        var out: [String: [Float]] = [:]
        for n in f.names { out[n] = try f.floats(n) }
        return out
    }

    /// Largest |a − b| over all tensors, relative to the tensor's largest |b| (at least 1e-3).
    func maxRelativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> (Float, String) {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        var worst: (Float, String) = (0, "")
        for (k, x) in a {
            let y = b[k] ?? []
            XCTAssertEqual(x.count, y.count, k)
            let scale = max(y.map { abs($0) }.max() ?? 0, 1e-3)
            for (u, v) in zip(x, y) where abs(u - v) / scale > worst.0 {
                worst = (abs(u - v) / scale, k)
            }
        }
        return worst
    }

    /// 2 ranks × 8 images with `--bn-group-size 2` against 1 rank × 16 (same samples, same
    /// augmentation: both derive from the sample index), after one step from the same start:
    /// running statistics (the forward's pooled mean and variance), momentum (the step's
    /// gradients, dγ and dβ included) and weights agree to ≤ 1e-5 of each tensor's largest
    /// entry (measured ≤ 3e-6). Not bitwise: the pooled BN sums each rank's rows and then adds
    /// the ranks (the fused one sums all rows in one pass), and each conv gradient is two
    /// half-batch GEMMs added by the allreduce instead of one; each differs by a rounding.
    /// One step, not several: a ReLU net's gradient is discontinuous, and once those roundings
    /// move the weights, a single ReLU input within ~1e-7 of 0 flips its mask (seen at step 2
    /// for C-SGD here, and at step 1 with seed 1 and no augmentation: one element of one BN,
    /// |pre-activation| < 1e-5, moved that channel's dβ by 20 % and left dγ equal); seed 4 has
    /// no such element in step 1. Non-vacuity: with per-rank statistics (`--bn-group-size 1`)
    /// the same 2-rank step differs from the 1-rank one by > 1e-2.
    func checkGroupOfTwoEqualsOneRank(command: String, update: String) throws {
        let data = try makeData()
        let args = [
            command, "--dataset", "imagefolder", "--data-dir", data, "--model", "resnet20",
            "--width-multiplier", "0.25", "--image-size", "32", "--train-limit", "0",
            "--test-limit", "0", "--batch-size", "16", "--log-every", "1000",
            "--verify-every", "1", "--max-steps", "1", "--seed", "4", "--update", update,
            "--centripetal-strength", "0.05",
        ]
        let tag = "\(command)-\(update)"
        let one = dir + "/one-" + tag
        let pooled = dir + "/pooled-" + tag
        let perRank = dir + "/per-rank-" + tag
        let r1 = try CLIRunner.run(args + ["--out-dir", one], env: ["OPENBLAS_NUM_THREADS": "1"])
        XCTAssertEqual(r1.exitCode, 0, r1.output)
        XCTAssertFalse(r1.output.contains("BatchNorm statistics pooled"), r1.output)
        let r2 = try CLIRunner.mpirun(
            ranks: 2, args: args + ["--bn-group-size", "2", "--out-dir", pooled], timeout: 300)
        XCTAssertEqual(r2.exitCode, 0, r2.output)
        XCTAssertTrue(
            r2.output.contains("BatchNorm statistics pooled over groups of 2 ranks (16 images"),
            r2.output)
        let r3 = try CLIRunner.mpirun(ranks: 2, args: args + ["--out-dir", perRank], timeout: 300)
        XCTAssertEqual(r3.exitCode, 0, r3.output)

        let reference = try tensors(one + "/checkpoint.safetensors")
        let (d, name) = maxRelativeDifference(
            try tensors(pooled + "/checkpoint.safetensors"), reference)
        XCTAssertLessThanOrEqual(d, 1e-5, "\(tag): BN group of 2 vs 1 rank, worst in \(name)")
        let (dPerRank, _) = maxRelativeDifference(
            try tensors(perRank + "/checkpoint.safetensors"), reference)
        XCTAssertGreaterThan(dPerRank, 1e-2, "\(tag): per-rank statistics must differ")
        print("\(tag): pooled vs 1 rank \(d) (\(name)); per rank vs 1 rank \(dPerRank)")
    }

    func testGroupOfTwoEqualsOneRankWithTheDoubleBatchForSGD() throws {
        try checkGroupOfTwoEqualsOneRank(command: "train", update: "rank0")
    }

    func testGroupOfTwoEqualsOneRankWithTheDoubleBatchForCSGD() throws {
        try checkGroupOfTwoEqualsOneRank(command: "csgd", update: "replicated")
    }

    /// g = 3 on 2 ranks: every rank stops at validation with the same one-line error naming
    /// the key (a rank's line is `rank R: error: …`, as every error of an mpirun job); g = 2
    /// on one rank likewise.
    func testGroupSizeNotDividingTheRanksIsAnError() throws {
        let args = ["train", "--max-steps", "1", "--out-dir", dir + "/bad"]
        let r = try CLIRunner.mpirun(ranks: 2, args: args + ["--bn-group-size", "3"], timeout: 60)
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        XCTAssertFalse(r.timedOut)
        let message = "error: config key 'bn_group_size' (3) must divide the number of ranks (2)"
        let lines = r.lines.filter { $0.contains("bn_group_size") }
        XCTAssertFalse(lines.isEmpty, r.output)
        for line in lines { XCTAssertTrue(line.hasSuffix(message), line) }
        let single = try CLIRunner.run(args + ["--bn-group-size", "2"])
        XCTAssertNotEqual(single.exitCode, 0, single.output)
        XCTAssertEqual(
            single.lines(startingWith: "error:"),
            ["error: config key 'bn_group_size' (2) must divide the number of ranks (1)"],
            single.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad/checkpoint.safetensors"))
    }
}
