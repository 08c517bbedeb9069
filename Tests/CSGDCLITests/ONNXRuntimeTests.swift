// ONNX export checked numerically against onnxruntime, through the real binary: train a small
// ResNet-20 on Fashion-MNIST, prune it to 5/8 (magnitude, 1 finetune epoch), export both nets,
// and compare onnxruntime's logits on real test images with `csgd-dist eval --dump-logits`.
// Needs a Python with numpy and onnxruntime (launch/setup-python.sh; CSGD_PYTHON); skips
// otherwise.

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

final class ONNXRuntimeTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try Requirements.fashionMNISTInstalled()
        try Requirements.pythonModules(["numpy", "onnxruntime"])
        dir = NSTemporaryDirectory() + "csgd-onnx-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let small = [
        "--train-limit", "1000", "--test-limit", "500", "--batch-size", "32", "--log-every",
        "1000",
    ]

    func testOnnxruntimeMatchesCSGDDistOnFashionMNISTForBaseAndPrunedResNet20() throws {
        let base = dir + "/base/model.safetensors"
        let pruned = dir + "/pruned.safetensors"
        _ = try CLIRunner.succeed(
            ["train"] + small + ["--epochs", "2", "--out-dir", dir + "/base"])
        _ = try CLIRunner.succeed(
            [
                "prune", "--input", base, "--method", "magnitude", "--target", "5/8",
                "--finetune-epochs", "1", "--output", pruned, "--out-dir", dir + "/ft",
            ] + small)
        for (label, model) in [("base", base), ("pruned 5/8", pruned)] {
            let onnx = dir + "/\(label.prefix(4)).onnx"
            let dump = dir + "/\(label.prefix(4)).logits.safetensors"
            let e = try CLIRunner.succeed(["export", "--onnx", onnx, "--input", model])
            XCTAssertTrue(e.output.contains("opset 13"), e.output)
            _ = try CLIRunner.succeed([
                "eval", "--input", model, "--test-limit", "500", "--dump-logits", dump,
            ])
            guard let r = Python.launch(["-c", Self.checkScript, onnx, dump]) else {
                return XCTFail("cannot start \(Python.executable)")
            }
            guard r.status == 0 else {
                return XCTFail("\(label): the onnxruntime check failed on \(onnx): \(r.stderr)")
            }
            let out = r.stdout
            let f = out.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
            XCTAssertEqual(f.count, 6, out)
            guard f.count == 6 else { return }
            print(
                "\(label): onnxruntime vs csgd-dist on \(Int(f[0])) test images: "
                    + "max |logit diff| \(f[3]) (max |logit| \(f[5])), argmax agreement \(f[4])")
            XCTAssertEqual(f[0], 500, "\(label): image count")
            // csgd-dist's inputs are the documented preprocessing of the raw files.
            XCTAssertLessThanOrEqual(f[1], 1e-6, "\(label): preprocessing differs")
            XCTAssertEqual(f[2], 1, "\(label): labels differ")
            XCTAssertLessThanOrEqual(f[3], 1e-4, "\(label): logits differ")
            XCTAssertEqual(f[4], 1, "\(label): predicted classes differ")
        }
        let widths = try SafeTensorsFile.read(path: pruned).metadata["csgd.architecture"] ?? ""
        XCTAssertTrue(widths.contains("10,"), "not pruned: \(widths)")
    }

    /// argv: model.onnx, the `--dump-logits` file. Prints: images, max |image − reference
    /// preprocessing|, labels equal (1/0), max |logit diff|, argmax agreement, max |logit|.
    static let checkScript =
        Python.interopPrelude + """
            import onnxruntime as ort

            onnx_path, dump_path = sys.argv[1], sys.argv[2]
            t = read_safetensors(dump_path)
            x, labels, ours = t["images"], t["labels"], t["logits"]
            n = len(labels)
            # The same test images prepared from the raw files as the README documents.
            ref, ref_labels = fmnist_test(n)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            assert [i.name for i in sess.get_inputs()] == ["input"], sess.get_inputs()
            assert [o.name for o in sess.get_outputs()] == ["logits"], sess.get_outputs()
            # Uneven batches (128, 128, 128, 116): the batch dimension is symbolic.
            theirs = np.concatenate([sess.run(["logits"], {"input": x[i:i + 128]})[0]
                                     for i in range(0, n, 128)])
            print(n, float(np.abs(x - ref).max()), int((labels == ref_labels).all()),
                  float(np.abs(theirs - ours).max()),
                  float((theirs.argmax(1) == ours.argmax(1)).mean()), float(np.abs(ours).max()))
            """
}
