// The whole path a user takes with their own network, through the real binary: a PyTorch model
// exported to ONNX (the committed fixtures, BatchNorm kept) → `csgd-dist import` → C-SGD
// (clusters pulled together on Fashion-MNIST) → exact prune, checked by the run itself →
// `export --onnx` of the pruned graph → onnxruntime computes csgd-dist's logits.

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

final class RoundTripTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try Requirements.fashionMNISTInstalled()
        try Requirements.pythonModules(["numpy", "onnxruntime"])
        dir = NSTemporaryDirectory() + "csgd-roundtrip-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Imports `fixture`, runs one C-SGD round at `target` and checks the pruned net is the
    /// same function (the run's own check, to 1e-4), thinner, and exported faithfully.
    func roundTrip(_ fixture: String, target: String) throws {
        let model = dir + "/\(fixture).safetensors"
        _ = try CLIRunner.succeed(
            ["import", ImportFixtureTests.fixtures + "/\(fixture).onnx", "--output", model]
                + ImportFixtureTests.fashion)
        // lr·ε = 0.15 per step pulls clusters together within the 96 steps; momentum is low
        // so they settle. The run refuses to write a pruned net whose logits differ by more
        // than prune_tolerance from the unpruned one on the test images.
        let out = dir + "/\(fixture)-csgd"
        let r = try CLIRunner.succeed([
            "csgd", "--from", model, "--train-limit", "1024", "--test-limit", "256",
            "--batch-size", "32", "--epochs", "3", "--lr", "0.05", "--momentum", "0.5",
            "--rounds", target, "--centripetal-strength", "3", "--vector-strength-factor", "1",
            "--prune-tolerance", "1e-4", "--log-every", "1000", "--out-dir", out,
        ])
        XCTAssertTrue(r.output.contains("C-SGD done"), r.output)
        let cut = r.output.split(separator: "\n").last { $0.contains("% cut") } ?? ""
        XCTAssertFalse(cut.isEmpty, r.output)
        let pruned = out + "/pruned.safetensors"
        let before = try SafeTensorsFile.read(path: model)
        let after = try SafeTensorsFile.read(path: pruned)
        let count = { (f: SafeTensorsFile) in
            f.names.filter { !$0.hasPrefix("optim.") }.reduce(0) {
                $0 + (f.shape($1)?.reduce(1, *) ?? 0)
            }
        }
        XCTAssertLessThan(count(after), count(before), "\(fixture): nothing was pruned")
        print("\(fixture) \(target): \(cut)")

        let onnx = dir + "/\(fixture)-pruned.onnx"
        let dump = dir + "/\(fixture)-pruned.logits.safetensors"
        _ = try CLIRunner.succeed(["export", "--onnx", onnx, "--input", pruned])
        _ = try CLIRunner.succeed([
            "eval", "--input", pruned, "--test-limit", "500", "--dump-logits", dump,
        ])
        guard let py = Python.launch(["-c", ImportFixtureTests.checkScript, onnx, dump]) else {
            return XCTFail("cannot start \(Python.executable)")
        }
        XCTAssertEqual(py.status, 0, py.stderr)
        let f = py.stdout.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        XCTAssertEqual(f.count, 5, py.stdout)
        guard f.count == 5 else { return }
        print("\(fixture) pruned, onnxruntime vs csgd-dist: max |logit diff| \(f[2])")
        XCTAssertEqual(f[0], 500)
        XCTAssertLessThanOrEqual(f[2], 1e-4, "\(fixture): exported pruned logits differ")
        XCTAssertEqual(f[3], 1, "\(fixture): predicted classes differ")
    }

    func testVGGImportCSGDPruneExport() throws { try roundTrip("vgg-bn", target: "1/2") }

    func testMobileNetImportCSGDPruneExport() throws {
        try roundTrip("mobilenet-bn", target: "internal:0.5")
    }

    func testDenseNetImportCSGDPruneExport() throws { try roundTrip("densenet-bn", target: "1/2") }
}
