// The harness of the tests that export a small PyTorch net with both of torch's exporters and
// check our import against PyTorch's own logits (TimmECAImportTests,
// TorchvisionConvNeXtImportTests): run the script in a scratch folder, read back the images
// and logits it saved, and compare an imported network's logits with them.

import CSGDModels
import CSGDTestSupport
import Foundation
import XCTest

/// A folder holding `<name>.dynamo.onnx`, `<name>.legacy.onnx`, and the images and PyTorch
/// logits the export script wrote (`images.f32`, `logits.f32`).
struct PyTorchExportFixture {
    let dir: String
    let images: [Float]
    let logits: [Float]

    /// Runs `script` with `argv[1]` = a fresh folder and `argv[2]` = launch/zoo (for tv_cpu),
    /// after checking that `modules` import; the caller removes `dir` when done.
    init(script: String, modules: [String], tag: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        try Requirements.pythonModules(modules, path: root + "/launch/zoo")
        dir = NSTemporaryDirectory() + "\(tag)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let r = Python.launch(["-c", script, dir, root + "/launch/zoo"]) else {
            throw CLIRunnerError("cannot start \(Python.executable)")
        }
        XCTAssertEqual(r.status, 0, String(r.stderr.suffix(3000)))
        images = try Self.floats(dir + "/images.f32")
        logits = try Self.floats(dir + "/logits.f32")
    }

    /// A raw float32 file (numpy's `tofile`).
    static func floats(_ path: String) throws -> [Float] {
        let d = try Data(contentsOf: URL(fileURLWithPath: path))
        return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Asserts that `net` on the saved images gives PyTorch's logits within 1e-5 relative.
    func assertComputesPyTorchsLogits(
        _ net: Network, batch: Int, label: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let ours = Array(
            UnsafeBufferPointer(
                start: net.forward(images: images, batch: batch, training: false),
                count: logits.count))
        let scale = logits.map(abs).max() ?? 0
        XCTAssertGreaterThan(scale, 0.01, "degenerate logits", file: file, line: line)
        let diff = zip(ours, logits).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(
            diff, 1e-5 * max(1, scale), "\(label): \(ours) vs \(logits)", file: file, line: line)
    }
}
