import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

/// The ImageNet path through the real binary: `pack`, then ResNet-50 with the ImageNet stem
/// trained with C-SGD on its internal bottleneck layers under `mpirun -n 2` from the packed
/// folder, pruned and evaluated; and bad data folders → one error line naming the path.
/// Generated JPEGs, 64×64 crops, a few steps.
final class ImageFolderCLITests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "csgd-imagefolder-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// `dir/data/{train,val}` with 4 classes of generated JPEGs (varied sizes and aspects).
    func makeData(trainPerClass: Int = 8, valPerClass: Int = 2) throws -> String {
        let data = dir + "/data"
        try SyntheticImages.writeImageFolder(
            root: data + "/train", classes: 4, perClass: trainPerClass, width: 120, height: 90,
            seed: 1)
        try SyntheticImages.writeImageFolder(
            root: data + "/val", classes: 4, perClass: valPerClass, width: 80, height: 100,
            seed: 2)
        return data
    }

    func testResNet50CSGDOnPackedImageFolderUnderMPIRunThenPruneAndEval() throws {
        try CLIRunner.requireMPIRun()
        let data = try makeData(trainPerClass: 16)
        let packed = dir + "/packed"
        let pack = try CLIRunner.run(["pack", data, packed, "--shard-size-mb", "1"])
        XCTAssertEqual(pack.exitCode, 0, pack.output)
        XCTAssertTrue(pack.output.contains("packed 64 images of 4 classes"), pack.output)
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: packed + "/val/" + ImageFolderDataset.indexName))
        // lr·ε = 1 with momentum 0 puts every clustered filter on its cluster mean at each step
        // (bias-like tensors too: vector factor 1, bias LR factor 1). The BN running statistics
        // of a cluster's channels then agree up to 0.9^steps of their first-step difference, so
        // 96 steps (12 epochs of 8) make the prune exact. Even clustering: k-means on ResNet-50
        // is slow and not what is tested.
        let out = dir + "/r50"
        let common = [
            "--dataset", "imagefolder", "--data-dir", packed, "--model", "resnet50",
            "--image-size", "64", "--train-limit", "0", "--test-limit", "0",
        ]
        let r = try CLIRunner.mpirun(
            ranks: 2,
            args: ["csgd"] + common + [
                "--rounds", "internal:0.7", "--epochs", "12", "--batch-size", "8", "--lr", "0.01",
                "--momentum", "0", "--no-nesterov", "--centripetal-strength", "100",
                "--vector-strength-factor", "1", "--bias-lr-factor", "1", "--cluster-method",
                "even", "--loader-workers", "2", "--eval-every", "100", "--checkpoint-every", "100",
                "--log-every", "1000", "--out-dir", out,
            ], timeout: 240)
        XCTAssertEqual(r.exitCode, 0, r.output)
        XCTAssertFalse(r.timedOut)
        XCTAssertTrue(r.output.contains("resnet50 on imagefolder-train"), r.output)
        XCTAssertTrue(r.output.contains("64 train / 8 test images"), r.output)
        XCTAssertTrue(r.output.contains("C-SGD done"), r.output)
        XCTAssertTrue(r.output.contains("FLOPs cut"), r.output)
        let pruned = out + "/pruned.safetensors"
        // Block-internal convs at ⌈0.7·w⌉ (64 → 45, 128 → 90, 256 → 180, 512 → 359); the
        // stem (64) and the residual streams (256 … 2048) keep their widths.
        let w = try modelWidths(pruned)
        XCTAssertEqual(w.count, 53)
        XCTAssertEqual(w[0], 64, "the stem is not pruned")
        XCTAssertEqual(Set(w), [45, 90, 180, 359, 64, 256, 512, 1024, 2048])
        let eval = try CLIRunner.run(["eval", "--input", pruned] + common, timeout: 120)
        XCTAssertEqual(eval.exitCode, 0, eval.output)
        XCTAssertTrue(eval.output.contains("top-1"), eval.output)
        XCTAssertTrue(eval.output.contains("on 8 images"), eval.output)
    }

    /// A run interrupted by max_steps and resumed, decoding with 3 threads, ends bit for bit
    /// where an uninterrupted 1-thread run ends: the loader's output depends only on (seed,
    /// epoch, sample), and the resumed epoch restarts its stream at the checkpointed step.
    func testResumeWithAnotherWorkerCountIsBitwise() throws {
        let data = try makeData(trainPerClass: 6)
        let args = [
            "train", "--dataset", "imagefolder", "--data-dir", data, "--model", "resnet18",
            "--width-multiplier", "0.25", "--image-size", "32", "--train-limit", "0",
            "--batch-size", "8", "--epochs", "2", "--log-every", "1000",
        ]
        let straight = dir + "/straight"
        let split = dir + "/split"
        let env = ["OPENBLAS_NUM_THREADS": "1"]
        let a = try CLIRunner.run(
            args + ["--loader-workers", "1", "--out-dir", straight], env: env)
        XCTAssertEqual(a.exitCode, 0, a.output)
        let b = try CLIRunner.run(
            args + ["--loader-workers", "3", "--out-dir", split, "--max-steps", "4"], env: env)
        XCTAssertEqual(b.exitCode, 0, b.output)
        let c = try CLIRunner.run(
            args + ["--loader-workers", "3", "--out-dir", split, "--resume"], env: env)
        XCTAssertEqual(c.exitCode, 0, c.output)
        XCTAssertTrue(c.output.contains("resuming from"), c.output)
        let x = try SafeTensorsFile.read(path: straight + "/checkpoint.safetensors")
        let y = try SafeTensorsFile.read(path: split + "/checkpoint.safetensors")
        XCTAssertEqual(x.names, y.names)
        for n in x.names {
            XCTAssertEqual(try x.floats(n), try y.floats(n), "tensor \(n) differs after resume")
        }
    }

    func expectError(_ args: [String], mentions needle: String, line: UInt = #line) throws {
        let r = try CLIRunner.run(args, timeout: 60)
        XCTAssertNotEqual(r.exitCode, 0, r.output, line: line)
        XCTAssertEqual(
            r.lines.filter { $0.lowercased().hasPrefix("error") }.count, 1, r.output, line: line)
        XCTAssertTrue(r.output.contains(needle), "expected '\(needle)' in: \(r.output)", line: line)
        XCTAssertFalse(r.output.contains("Fatal error"), r.output, line: line)
    }

    func testBadDataFoldersGiveOneErrorLineNamingThePath() throws {
        let train = ["train", "--dataset", "imagefolder", "--epochs", "1", "--out-dir", dir + "/o"]
        try expectError(train, mentions: "--data-dir")
        try expectError(train + ["--data-dir", dir + "/missing"], mentions: dir + "/missing/train")
        let data = try makeData(trainPerClass: 1, valPerClass: 1)
        let empty = data + "/train/class_099"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try expectError(train + ["--data-dir", data], mentions: empty)
        try expectError(["pack", data, dir + "/packed"], mentions: empty)
        try expectError(["pack", dir + "/nowhere", dir + "/packed"], mentions: dir + "/nowhere")
    }

    /// A JPEG whose header claims 65500×65500 stops training with one line naming it (no
    /// allocation of 12 GiB first), or is skipped and counted under `bad_images: skip`; a
    /// packed index naming a shard outside its folder is refused with one line.
    func testHostileImagesAndPackedIndexThroughTheBinary() throws {
        let data = try makeData(trainPerClass: 2, valPerClass: 1)
        let victim = data + "/train/class_000/img_00000.jpg"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: victim)))
        let bomb = try XCTUnwrap(jpegClaimingSize(bytes, width: 65500, height: 65500))
        try Data(bomb).write(to: URL(fileURLWithPath: victim))
        let train = [
            "train", "--dataset", "imagefolder", "--data-dir", data, "--model", "resnet18",
            "--image-size", "32", "--train-limit", "0", "--test-limit", "0", "--batch-size", "4",
            "--epochs", "1", "--loader-workers", "1",
        ]
        try expectError(train + ["--out-dir", dir + "/fail"], mentions: victim)
        try expectError(train + ["--out-dir", dir + "/fail2"], mentions: "65500×65500")
        let skip = try CLIRunner.run(
            train + ["--bad-images", "skip", "--out-dir", dir + "/skip"],
            env: ["OPENBLAS_NUM_THREADS": "1"], timeout: 120)
        XCTAssertEqual(skip.exitCode, 0, skip.output)
        XCTAssertTrue(skip.output.contains("skipped 1 unreadable image"), skip.output)

        // A packed index naming ../ as a shard.
        try Data(bytes).write(to: URL(fileURLWithPath: victim))
        let packed = dir + "/packed"
        XCTAssertEqual(try CLIRunner.run(["pack", data, packed]).exitCode, 0)
        let index = packed + "/train/" + ImageFolderDataset.indexName
        let text = try String(contentsOfFile: index, encoding: .utf8)
        let shard = try XCTUnwrap(
            text.split(separator: "\n").first { $0.hasPrefix("shard\t") }?.split(separator: "\t")[1]
        )
        try text.replacingOccurrences(of: "\t\(shard)\t", with: "\t../../\(shard)\t")
            .write(toFile: index, atomically: true, encoding: .utf8)
        var packedTrain = train
        packedTrain[4] = packed
        try expectError(packedTrain + ["--out-dir", dir + "/escape"], mentions: "index.tsv")
    }
}
