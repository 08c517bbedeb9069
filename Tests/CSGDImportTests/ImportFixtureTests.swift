// ONNX import checked numerically against onnxruntime, through the real binary: the committed
// fixtures (Fixtures/make_import_models.py: a VGG-BN, a MobileNetV2-style and a DenseNet-style
// net trained on Fashion-MNIST, each exported folded and with BN kept) are imported, evaluated
// by `csgd-dist eval --dump-logits` on real test images, and compared with onnxruntime running
// the original .onnx on the same inputs. Needs numpy and onnxruntime (CSGD_PYTHON).

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

final class ImportFixtureTests: XCTestCase {
    var dir = ""

    static let fixtures: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures"
    }()

    static let fashion = ["--mean", "0.2860", "--std", "0.3530"]

    override func setUpWithError() throws {
        try Requirements.fashionMNISTInstalled()
        try Requirements.pythonModules(["numpy", "onnxruntime"])
        dir = NSTemporaryDirectory() + "csgd-import-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Imports `fixture`, evaluates it on 500 test images, and checks onnxruntime agrees.
    func checkAgainstOnnxruntime(_ fixture: String, extra: [String] = []) throws -> String {
        let onnx = Self.fixtures + "/\(fixture).onnx"
        let tag = fixture + extra.joined()
        let model = dir + "/\(tag).safetensors"
        let dump = dir + "/\(tag).logits.safetensors"
        let imp = try CLIRunner.succeed(
            ["import", onnx, "--output", model] + Self.fashion + extra)
        XCTAssertTrue(imp.output.contains("prunable"), imp.output)
        print(imp.output)
        _ = try CLIRunner.succeed([
            "eval", "--input", model, "--test-limit", "500", "--dump-logits", dump,
        ])
        guard let r = Python.launch(["-c", Self.checkScript, onnx, dump]) else {
            XCTFail("cannot start \(Python.executable)")
            return dump
        }
        guard r.status == 0 else {
            XCTFail("\(fixture): the onnxruntime check failed: \(r.stderr)")
            return dump
        }
        let f = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        XCTAssertEqual(f.count, 5, r.stdout)
        guard f.count == 5 else { return dump }
        print(
            "\(fixture): onnxruntime vs csgd-dist on \(Int(f[0])) test images: max |logit diff| "
                + "\(f[2]) (max |logit| \(f[4])), argmax agreement \(f[3])")
        XCTAssertEqual(f[0], 500, "\(fixture): image count")
        XCTAssertLessThanOrEqual(f[1], 1e-6, "\(fixture): preprocessing differs")
        XCTAssertLessThanOrEqual(f[2], 1e-4, "\(fixture): logits differ")
        XCTAssertEqual(f[3], 1, "\(fixture): predicted classes differ")
        XCTAssertGreaterThan(f[4], 1, "\(fixture): logits are degenerate")
        return dump
    }

    func testVGGFoldedAndWithBatchNormMatchOnnxruntime() throws {
        _ = try checkAgainstOnnxruntime("vgg")
        _ = try checkAgainstOnnxruntime("vgg-bn")
    }

    func testMobileNetFoldedAndWithBatchNormMatchOnnxruntime() throws {
        _ = try checkAgainstOnnxruntime("mobilenet")
        _ = try checkAgainstOnnxruntime("mobilenet-bn")
    }

    func testDenseNetFoldedAndWithBatchNormMatchOnnxruntime() throws {
        _ = try checkAgainstOnnxruntime("densenet")
        _ = try checkAgainstOnnxruntime("densenet-bn")
    }

    /// `--unfold-bn` inserts BN(γ 1, β bias, mean 0, var with var + eps == 1): the same
    /// function as the conv-with-bias import up to float rounding (the kernels add a conv bias
    /// and a BN shift at different points of the sum: measured 4.8e-6 on logits up to 21), and
    /// BatchNorm layers where the folded file has none.
    func testUnfoldBatchNormKeepsTheFunction() throws {
        let folded = try checkAgainstOnnxruntime("mobilenet")
        let unfolded = try checkAgainstOnnxruntime("mobilenet", extra: ["--unfold-bn"])
        let a = try SafeTensorsFile.read(path: folded).floats("logits")
        let b = try SafeTensorsFile.read(path: unfolded).floats("logits")
        XCTAssertEqual(a.count, b.count)
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        print("--unfold-bn vs folded import: max |logit diff| \(diff)")
        XCTAssertLessThanOrEqual(diff, 1e-4, "unfolded BN changes the logits")
        for i in stride(from: 0, to: a.count, by: 10) {
            let x = a[i..<(i + 10)]
            let y = b[i..<(i + 10)]
            XCTAssertEqual(
                x.firstIndex(of: x.max()!), y.firstIndex(of: y.max()!), "image \(i / 10)")
        }
        let file = try SafeTensorsFile.read(path: dir + "/mobilenet--unfold-bn.safetensors")
        let bns = file.names.filter { $0.hasSuffix(".bn.running_var") }
        XCTAssertEqual(bns.count, 17, "\(file.names)")
        XCTAssertFalse(
            file.names.contains {
                $0.hasSuffix(".bias") && !$0.contains(".bn.") && $0 != "classifier.1.bias"
            },
            "conv biases left: \(file.names)")
    }

    /// A model records its normalisation; data normalised differently is refused naming the
    /// model file.
    func testPreprocessingMismatchIsRefusedNamingTheModel() throws {
        let model = dir + "/vgg-other.safetensors"
        _ = try CLIRunner.succeed([
            "import", Self.fixtures + "/vgg-bn.onnx", "--output", model, "--mean", "0.5",
            "--std", "0.25",
        ])
        let r = try CLIRunner.run(["eval", "--input", model, "--test-limit", "64"])
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        let errors = r.lines(startingWith: "error:")
        XCTAssertEqual(errors.count, 1, r.output)
        XCTAssertTrue(errors.first?.contains(model) ?? false, r.output)
        XCTAssertTrue(errors.first?.contains("normalised") ?? false, r.output)
        // Three channels recorded for a one-channel model is refused at import.
        let r2 = try CLIRunner.run([
            "import", Self.fixtures + "/vgg-bn.onnx", "--output", model, "--mean", "0.5,0.5,0.5",
            "--std", "0.2,0.2,0.2",
        ])
        XCTAssertNotEqual(r2.exitCode, 0, r2.output)
        XCTAssertEqual(r2.lines(startingWith: "error:").count, 1, r2.output)
    }

    /// A truncated .onnx through the binary: one error line naming the file, non-zero exit.
    func testTruncatedFileIsOneLineAndNonZeroExit() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/vgg-bn.onnx"))
        let cut = dir + "/cut.onnx"
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: cut))
        let r = try CLIRunner.run(["import", cut, "--output", dir + "/x.safetensors"])
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        let errors = r.lines(startingWith: "error:")
        XCTAssertEqual(errors.count, 1, r.output)
        XCTAssertTrue(errors.first?.contains(cut) ?? false, r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.safetensors"))
    }

    /// argv: model.onnx, the `--dump-logits` file. Prints: images, max |image − reference
    /// preprocessing|, max |logit diff|, argmax agreement, max |logit|.
    static let checkScript =
        Python.interopPrelude + """
            import onnxruntime as ort

            onnx_path, dump_path = sys.argv[1], sys.argv[2]
            t = read_safetensors(dump_path)
            x, ours = t["images"], t["logits"]
            n = len(x)
            ref, _ = fmnist_test(n)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            theirs = np.concatenate([sess.run(None, {name: x[i:i + 100]})[0]
                                     for i in range(0, n, 100)])
            print(n, float(np.abs(x - ref).max()), float(np.abs(theirs - ours).max()),
                  float((theirs.argmax(1) == ours.argmax(1)).mean()), float(np.abs(ours).max()))
            """
}
