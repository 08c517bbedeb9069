// Hostile and careless inputs through the real binary, one table row each: a model that does
// not fit the data, architecture metadata that lies (the checksum stays valid: it covers only
// the tensor bytes), a resumed position the config cannot continue, runs that diverge to NaN, and
// inputs that could block or exhaust the process. Every row must end with a non-zero exit, one
// `error:` line naming the cause, no death by signal, and no protected file changed.
// (Locked and reused run folders: RunDirectoryTests; a stuck rank: StuckRankTests; crafted
// metrics and JPEGs: HostileReportTests, ImageFolderTests.)

import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

final class HostileInputTests: XCTestCase {
    /// A row: the command, the words its one error line must hold, and folders that must be
    /// left exactly as they were.
    struct Case {
        let name: String
        let args: [String]
        let mentions: [String]
        var untouched: [String] = []
        var timeout: Double = 60
    }

    /// Tiny Fashion-MNIST settings shared by every job (a few seconds each).
    static let tiny = [
        "--width-multiplier", "0.25", "--train-limit", "256", "--test-limit", "64",
        "--batch-size", "32", "--epochs", "1", "--log-every", "1000",
    ]

    var root = ""

    override func setUpWithError() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed (launch/setup.sh installs it)")
        }
        root = NSTemporaryDirectory() + "csgd-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    // MARK: - the table

    func testEveryHostileInputEndsWithOneLineAndNoDamage() throws {
        // Real artefacts to start from: a trained model, a plain run stopped mid-epoch, and a
        // C-SGD run stopped mid-round (its checkpoint holds a cluster plan).
        let base = root + "/base"
        try CLIRunner.succeed(["train"] + Self.tiny + ["--out-dir", base])
        let model = base + "/model.safetensors"
        let stopped = root + "/stopped"
        try CLIRunner.succeed(["train"] + Self.tiny + ["--max-steps", "3", "--out-dir", stopped])
        let csgd = root + "/csgd"
        try CLIRunner.succeed(
            ["csgd"] + Self.tiny + ["--rounds", "3/4,1/2", "--max-steps", "3", "--out-dir", csgd])

        // Crafted model files.
        let m = root + "/models"
        try FileManager.default.createDirectory(atPath: m, withIntermediateDirectories: true)
        func arch(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
            let out = "\(m)/\(name).safetensors"
            try rewrite(model, to: out) { file in
                try editJSON(&file, "csgd.architecture", change)
            }
            return out
        }
        // Fashion-MNIST is loaded as 1-channel 32×32 (padded from 28×28), 10 classes.
        let size64 = try arch("size64") { $0["imageSize"] = 64 }
        let rgb = "\(m)/rgb.safetensors"
        try rewrite(model, to: rgb) { file in
            try editJSON(&file, "csgd.architecture") { $0["inputChannels"] = 3 }
            try reshape(&file, "conv1.weight") { s in [s[0], 3, s[2], s[3]] }
        }
        let negClasses = try arch("neg-classes") { $0["numClasses"] = -5 }
        let hugeClasses = try arch("huge-classes") { $0["numClasses"] = 1_000_000_000 }
        let hugeSize = try arch("huge-size") { $0["imageSize"] = 65536 }
        let hugeWidth = try arch("huge-width") { a in
            var w = a["widths"] as! [Int]
            w[3] = 100_000
            a["widths"] = w
        }
        // A file from before graphs were stored: the name alone says what to build.
        let deepModel = try arch("deep") {
            $0["model"] = "resnet99999999992"
            $0.removeValue(forKey: "spec")
        }
        let classes12 = "\(m)/classes12.safetensors"
        try rewrite(model, to: classes12) { file in
            try editJSON(&file, "csgd.architecture") { $0["numClasses"] = 12 }
            try reshape(&file, "fc.weight") { shape in [12, shape[1]] }
            try reshape(&file, "fc.bias") { _ in [12] }
        }
        let nanModel = "\(m)/nan.safetensors"
        try rewrite(model, to: nanModel) { file in
            var w = try file.floats("fc.bias")
            w[0] = .nan
            try replace(&file, "fc.bias", w)
        }

        // Run folders whose checkpoint was tampered with (a copy of a real one each).
        func folder(_ name: String, from: String, _ change: (inout SafeTensorsFile) throws -> Void)
            throws -> String
        {
            let dir = "\(root)/\(name)"
            try FileManager.default.copyItem(atPath: from, toPath: dir)
            let ck = dir + "/checkpoint.safetensors"
            try rewrite(ck, to: ck, change)
            return dir
        }
        let resumeSize = try folder("resume-size", from: stopped) { f in
            try editJSON(&f, "csgd.architecture") { $0["imageSize"] = 64 }
        }
        let lateRound = try folder("late-round", from: csgd) { f in
            try editJSON(&f, "csgd.state") { $0["round"] = 5 }
        }
        let badPlan = try folder("bad-plan", from: csgd) { f in
            try editJSON(&f, "csgd.state") { s in
                var plan = s["plan"] as! [String: Any]
                var groups = plan["groups"] as! [[[Int]]]
                groups[0][0][0] = 9999
                plan["groups"] = groups
                s["plan"] = plan
            }
        }
        let negStep = try folder("neg-step", from: stopped) { f in
            try editJSON(&f, "csgd.state") { $0["step"] = -2 }
        }

        // Inputs that could block or exhaust the process.
        let fifo = root + "/fifo.safetensors"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let deepYAML = root + "/deep.yaml"
        try
            ("epochs: " + String(repeating: "[", count: 10_000)
            + String(repeating: "]", count: 10_000))
            .write(toFile: deepYAML, atomically: true, encoding: .utf8)
        let blockYAML = root + "/block.yaml"
        try (0..<400).map { String(repeating: " ", count: $0 * 2) + "k\($0):" }
            .joined(separator: "\n").write(toFile: blockYAML, atomically: true, encoding: .utf8)
        // An image folder whose "JPEG" is a FIFO, and one whose JPEG is a sparse 6 GiB file.
        let fifoImages = root + "/fifo-images"
        try SyntheticImages.writeImageFolder(
            root: fifoImages, classes: 2, perClass: 2, width: 40, height: 40, seed: 1)
        let fifoJPEG = fifoImages + "/class_000/x.jpg"
        XCTAssertEqual(mkfifo(fifoJPEG, 0o644), 0)
        let hugeImages = root + "/huge-images"
        try SyntheticImages.writeImageFolder(
            root: hugeImages, classes: 2, perClass: 2, width: 40, height: 40, seed: 1)
        let hugeJPEG = hugeImages + "/class_001/y.jpg"
        XCTAssertTrue(FileManager.default.createFile(atPath: hugeJPEG, contents: nil))
        XCTAssertEqual(truncate(hugeJPEG, 6 << 30), 0)
        let fixtureONNX =
            URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().path + "/CSGDImportTests/Fixtures/vgg.onnx"

        // Sparse files: sizes that would be allocated whole if trusted.
        let sparseModel = root + "/sparse.safetensors"
        XCTAssertTrue(FileManager.default.createFile(atPath: sparseModel, contents: nil))
        XCTAssertEqual(truncate(sparseModel, 7 << 30), 0)
        let claimed = root + "/claims-8g.safetensors"
        let header = Array(
            #"{"a":{"dtype":"F32","shape":[2000000000],"data_offsets":[0,8000000000]}}"#.utf8)
        var claim = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        claim += header
        try Data(claim).write(to: URL(fileURLWithPath: claimed))
        XCTAssertEqual(truncate(claimed, off_t(claim.count) + 8_000_000_000 - 1), 0)

        // Text that must not reach the terminal raw or whole: an escape sequence and a carriage
        // return in a model name, a 900 kB config value.
        let escModel = try arch("esc") {
            $0["model"] = "resnet\u{1B}[31m9\r9"
            $0.removeValue(forKey: "spec")
        }
        let longYAML = root + "/long.yaml"
        try ("model: " + String(repeating: "a", count: 900_000) + "\n").write(
            toFile: longYAML, atomically: true, encoding: .utf8)

        let out = root + "/out"
        let all = [base, stopped, csgd, m]
        let maxInt = String(Int.max)
        let cases: [Case] = [
            // 1. Model and data disagree.
            Case(
                name: "train --from, wrong image size",
                args: ["train", "--from", size64, "--out-dir", out + "1"] + Self.tiny,
                mentions: [size64, "64×64", "32×32"], untouched: all),
            Case(
                name: "csgd --from, wrong channels",
                args: ["csgd", "--from", rgb, "--out-dir", out + "2"] + Self.tiny,
                mentions: [rgb, "3-channel", "1-channel"], untouched: all),
            Case(
                name: "train --from, wrong class count",
                args: ["train", "--from", classes12, "--out-dir", out + "3"] + Self.tiny,
                mentions: [classes12, "12 classes", "10 classes"], untouched: all),
            Case(
                name: "eval, wrong image size", args: ["eval", "--input", size64] + Self.tiny,
                mentions: ["64×64"], untouched: all),
            Case(
                name: "prune, wrong class count",
                args: [
                    "prune", "--input", classes12, "--method", "magnitude", "--target", "1/2",
                    "--output", out + "4/p.safetensors",
                ] + Self.tiny, mentions: ["12 classes"], untouched: all),
            Case(
                name: "train --resume, tampered image size",
                args: ["train", "--resume", "--out-dir", resumeSize] + Self.tiny,
                mentions: ["64×64"], untouched: all + [resumeSize]),
            // 2. Architecture metadata that lies.
            Case(
                name: "negative class count", args: ["eval", "--input", negClasses] + Self.tiny,
                mentions: [negClasses, "numClasses is -5"], untouched: all),
            Case(
                name: "1e9 classes", args: ["eval", "--input", hugeClasses] + Self.tiny,
                mentions: ["numClasses is 1000000000"], untouched: all),
            Case(
                name: "65536-pixel images",
                args: ["export", "--onnx", out + "5.onnx", "--input", hugeSize],
                mentions: ["imageSize is 65536"], untouched: all),
            Case(
                name: "width 1e5",
                args: [
                    "prune", "--input", hugeWidth, "--method", "magnitude", "--target", "1/2",
                    "--output", out + "6/p.safetensors",
                ] + Self.tiny, mentions: ["widths[3] is 100000"], untouched: all),
            Case(
                name: "absurd depth", args: ["eval", "--input", deepModel] + Self.tiny,
                mentions: ["resnet99999999992"], untouched: all),
            Case(
                name: "width multiplier 1e6",
                args: ["train", "--width-multiplier", "1e6", "--out-dir", out + "7"],
                mentions: ["width_multiplier"]),
            // 3. A resumed position the config cannot continue.
            Case(
                name: "resume mid-epoch with another batch size",
                args: ["train", "--resume", "--out-dir", stopped] + Self.tiny + [
                    "--batch-size", "64",
                ],
                mentions: ["'batch_size'", "mid-epoch"], untouched: all),
            Case(
                name: "resume mid-epoch with another train_limit",
                args: ["train", "--resume", "--out-dir", stopped] + Self.tiny + [
                    "--train-limit", "128",
                ], mentions: ["'train_limit'"], untouched: all),
            Case(
                name: "resume past the configured rounds",
                args: ["csgd", "--resume", "--out-dir", lateRound] + Self.tiny + [
                    "--rounds", "3/4,1/2",
                ],
                mentions: ["'rounds'", "round 6"], untouched: all + [lateRound]),
            Case(
                name: "resume a plan with an out-of-range filter",
                args: ["csgd", "--resume", "--out-dir", badPlan] + Self.tiny + [
                    "--rounds", "3/4,1/2",
                ],
                mentions: ["cluster plan", "9999"], untouched: all + [badPlan]),
            Case(
                name: "resume a negative step",
                args: ["train", "--resume", "--out-dir", negStep] + Self.tiny,
                mentions: ["negative"], untouched: all + [negStep]),
            Case(
                name: "resume and --from",
                args: ["train", "--resume", "--from", model, "--out-dir", stopped] + Self.tiny,
                mentions: ["--resume", "--from"], untouched: all),
            Case(
                name: "resume with another model",
                args: ["train", "--resume", "--out-dir", stopped, "--model", "resnet32"]
                    + Self.tiny,
                mentions: ["'model'", "resnet32", "resnet20"], untouched: all),
            Case(
                name: "csgd with no rounds",
                args: ["csgd", "--rounds=", "--out-dir", out + "8"] + Self.tiny,
                mentions: ["'rounds'", "empty"]),
            // 4. NaN is never a result or a file.
            Case(
                name: "train diverges",
                args: ["train", "--lr", "1e6", "--out-dir", out + "9"] + Self.tiny,
                mentions: ["non-finite"]),
            Case(
                name: "csgd diverges",
                args: ["csgd", "--lr", "1e6", "--out-dir", out + "10"] + Self.tiny,
                mentions: ["non-finite"]),
            Case(
                name: "model file holding NaN", args: ["eval", "--input", nanModel] + Self.tiny,
                mentions: [nanModel, "fc.bias", "NaN"], untouched: all),
            // 7. Inputs that would block or exhaust.
            Case(
                name: "a FIFO as the model", args: ["eval", "--input", fifo] + Self.tiny,
                mentions: [fifo, "not a regular file"], timeout: 20),
            Case(
                name: "a FIFO as the ONNX model to import",
                args: ["import", fifo, "--output", out + "11.safetensors"],
                mentions: [fifo, "not a regular file"], timeout: 20),
            Case(
                name: "a model file imported as ONNX",
                args: ["import", model, "--output", out + "12.safetensors"],
                mentions: [model], untouched: all, timeout: 20),
            Case(
                name: "10,000-deep YAML flow", args: ["train", "--config", deepYAML],
                mentions: [deepYAML, "nested too deeply"], timeout: 20),
            Case(
                name: "400-deep YAML block", args: ["train", "--config", blockYAML],
                mentions: [blockYAML, "nested too deeply"], timeout: 20),
            // 8. Numbers that would overflow the step arithmetic: bounded at parse time.
            Case(
                name: "epochs Int.max",
                args: ["train", "--epochs", maxInt, "--out-dir", out + "13"],
                mentions: ["'epochs'", "1...100000", maxInt]),
            Case(
                name: "warmup 1e300",
                args: ["train", "--warmup-epochs", "1e300", "--out-dir", out + "14"] + Self.tiny,
                mentions: ["'warmup_epochs'"]),
            Case(
                name: "milestones near Int.max",
                args: [
                    "train", "--lr-schedule", "multistep", "--milestones",
                    "\(Int.max - 1),\(Int.max)", "--out-dir", out + "15",
                ] + Self.tiny, mentions: ["'milestones'", "1...100000"]),
            Case(
                name: "max_steps Int.max",
                args: ["csgd", "--max-steps", maxInt, "--out-dir", out + "16"] + Self.tiny,
                mentions: ["'max_steps'"]),
            Case(
                name: "checkpoint_every_steps Int.max",
                args: ["train", "--checkpoint-every-steps", maxInt, "--out-dir", out + "17"]
                    + Self.tiny, mentions: ["'checkpoint_every_steps'"]),
            Case(
                name: "65 C-SGD rounds",
                args: [
                    "csgd", "--rounds", Array(repeating: "1", count: 65).joined(separator: ","),
                    "--out-dir", out + "18",
                ] + Self.tiny, mentions: ["'rounds'", "at most 64"]),
            Case(
                name: "pack shard size Int.max",
                args: ["pack", root, out + "19", "--shard-size-mb", maxInt],
                mentions: ["--shard-size-mb", "1...1048576"]),
            // 11. Accepted but wrong: controls that leave nothing to prune.
            Case(
                name: "exclude every conv",
                args: ["csgd", "--exclude", "*", "--out-dir", out + "20"] + Self.tiny,
                mentions: ["exclude", "nothing to prune", "12 prunable groups"]),
            Case(
                name: "min_width above every width",
                args: [
                    "prune", "--input", model, "--method", "magnitude", "--target", "1/2",
                    "--min-width", "1000", "--output", out + "21/p.safetensors",
                ] + Self.tiny, mentions: ["min_width 1000", "nothing to prune"], untouched: all),
            // 10. Messages: control characters escaped, long input quoted by a prefix.
            Case(
                name: "ESC and CR in a model name",
                args: ["eval", "--input", escModel] + Self.tiny,
                mentions: [escModel, "resnet\\e[31m9\\r9"], untouched: all),
            Case(
                name: "a 900 kB config value", args: ["train", "--config", longYAML],
                mentions: ["'model'", "more characters)"]),
            Case(
                name: "import --std 0 (a division by zero)",
                args: [
                    "import", fixtureONNX, "--mean", "0.5,0.5,0.5", "--std", "0.2,0,0.2",
                    "--output", out + "22.safetensors",
                ], mentions: ["--std", "(0, 1e6]"]),
            // 9. Sizes checked against the file before anything is allocated.
            Case(
                name: "pack a folder holding a FIFO named x.jpg",
                args: ["pack", fifoImages, out + "23"], mentions: [fifoJPEG, "not a regular file"],
                timeout: 20),
            Case(
                name: "pack a folder holding a sparse 6 GiB JPEG",
                args: ["pack", hugeImages, out + "24"], mentions: [hugeJPEG, "bytes is more than"],
                timeout: 20),
            Case(
                name: "a sparse 7 GiB model file", args: ["eval", "--input", sparseModel],
                mentions: [sparseModel], timeout: 20),
            Case(
                name: "a header claiming 8 GB of tensors the file lacks",
                args: ["eval", "--input", claimed],
                mentions: [claimed], timeout: 20),
        ]
        for c in cases {
            let before = try c.untouched.map(snapshot)
            let r = try CLIRunner.run(
                c.args, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: c.timeout)
            XCTAssertFalse(r.timedOut, "\(c.name): hung\n\(r.output)")
            XCTAssertTrue(
                r.exitCode > 0 && r.exitCode < 128, "\(c.name): exit \(r.exitCode)\n\(r.output)")
            let errors = r.lines.filter { $0.hasPrefix("error:") || $0.hasPrefix("Error:") }
            XCTAssertEqual(errors.count, 1, "\(c.name): \(r.output)")
            for word in c.mentions {
                XCTAssertTrue(
                    errors.first?.contains(word) == true,
                    "\(c.name): '\(word)' not in the error line\n\(r.output)")
            }
            XCTAssertFalse(r.output.contains("Fatal error"), "\(c.name): \(r.output)")
            // Every error line is printable and bounded, whatever the input held.
            let line = errors.first ?? ""
            XCTAssertLessThan(line.unicodeScalars.count, CSGDError.maxCharacters + 100, c.name)
            XCTAssertFalse(
                line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, c.name)
            XCTAssertEqual(try c.untouched.map(snapshot), before, "\(c.name) changed a file")
        }
        // A diverged run wrote no model: the last checkpoint it may have written is finite.
        for dir in [out + "9", out + "10"] {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            XCTAssertFalse(files.contains("model.safetensors"), "\(dir): \(files)")
            XCTAssertFalse(files.contains("pruned.safetensors"), "\(dir): \(files)")
        }
    }

    // MARK: - helpers

    /// Every regular file below `dir` (relative path → bytes); `.lock` and command.txt are
    /// left out (a refused job may take the lock and log its command).
    func snapshot(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: dir) else { return out }
        for case let rel as String in walker {
            if rel.hasSuffix(".lock") || rel.hasSuffix("command.txt") { continue }
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue {
                out[rel] = fm.contents(atPath: dir + "/" + rel)
            }
        }
        return out
    }
}

/// Reads a safetensors file, lets `change` edit it, and writes it to `dst` (the checksum is
/// recomputed, as a careful forger would).
private func rewrite(
    _ src: String, to dst: String, _ change: (inout SafeTensorsFile) throws -> Void
) throws {
    var file = try SafeTensorsFile.read(path: src)
    try change(&file)
    try file.write(path: dst)
}

/// Edits one JSON object in the metadata.
private func editJSON(
    _ file: inout SafeTensorsFile, _ key: String, _ change: (inout [String: Any]) -> Void
) throws {
    var obj =
        try JSONSerialization.jsonObject(with: Data(file.metadata[key]!.utf8)) as! [String: Any]
    change(&obj)
    file.metadata[key] = String(
        decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self)
}

/// Replaces tensor `name` by a zero-filled one of a new shape (tensors keep their order).
private func reshape(_ file: inout SafeTensorsFile, _ name: String, _ shape: ([Int]) -> [Int])
    throws
{
    let s = shape(file.shape(name)!)
    try rebuild(&file) { n, old in
        n == name ? (s, [Float](repeating: 0, count: s.reduce(1, *))) : old
    }
}

/// Replaces the values of tensor `name` (same shape).
private func replace(_ file: inout SafeTensorsFile, _ name: String, _ values: [Float]) throws {
    try rebuild(&file) { n, old in n == name ? (old.0, values) : old }
}

/// Rebuilds the file tensor by tensor through `map(name, (shape, values))`.
private func rebuild(
    _ file: inout SafeTensorsFile, _ map: (String, ([Int], [Float])) -> ([Int], [Float])
) throws {
    var out = SafeTensorsFile(metadata: file.metadata)
    for name in file.names {
        let (shape, values) = map(name, (file.shape(name)!, try file.floats(name)))
        out.add(name, shape: shape, floats: values)
    }
    file = out
}
