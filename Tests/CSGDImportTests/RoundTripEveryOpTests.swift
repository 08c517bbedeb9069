import CSGDCore
import CSGDExport
import CSGDImport
import CSGDModels
import CSGDTestGraphs
import CSGDTestSupport
import Foundation
import XCTest

/// Every op of the table through our ONNX export and back through the import: the imported
/// network computes the exported one's logits, so no op lacks an export or an import.
final class RoundTripEveryOpTests: XCTestCase {
    func roundTrip(_ spec: GraphSpec, opset: Int) throws -> (spec: GraphSpec, diff: Float) {
        let arch = try Architecture.from(spec: spec, model: "rt", inputChannels: 3, imageSize: 8)
        let net = try Network(architecture: arch)
        net.initialize(seed: 7)
        var rng = Rng(seed: 8)
        for (i, s) in net.store.bufferSpecs.enumerated() {
            let b = net.store.buffer(BufferID(i))
            for j in 0..<s.count {
                b[j] = s.role == .bnRunningVar ? 0.5 + rng.nextFloat() : 0.3 * rng.nextGaussian()
            }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "rt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.onnx").path
        try ONNXExport.serialize(net, opset: opset).write(to: URL(fileURLWithPath: path))
        let imported = try ONNXImport.read(path: path).network()
        let x = (0..<(4 * net.imageCount)).map { _ in rng.nextGaussian() }
        let a = Array(
            UnsafeBufferPointer(
                start: net.forward(images: x, batch: 4, training: false),
                count: 4 * net.numClasses))
        let b = Array(
            UnsafeBufferPointer(
                start: imported.forward(images: x, batch: 4, training: false),
                count: 4 * imported.numClasses))
        XCTAssertEqual(a.count, b.count)
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertGreaterThan(a.map(abs).max() ?? 0, 0.01, "degenerate logits")
        return (try imported.architecture.resolvedSpec(), diff)
    }

    /// Our export of every op, run by onnxruntime on the same images, gives our logits: the
    /// ONNX forms in the op table mean in ONNX what our kernels compute.
    func testOnnxruntimeRunsEveryOpsExportAsWeDo() throws {
        try Requirements.pythonModules(["numpy", "onnxruntime"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ort-ops-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var seen = Set<NodeSpec.Op>()
        for (name, spec) in ModernOpGraphs.all {
            let arch = try Architecture.from(
                spec: spec, model: "ort", inputChannels: 3, imageSize: 8)
            let net = try Network(architecture: arch)
            net.initialize(seed: 7)
            var rng = Rng(seed: 9)
            let x = (0..<(4 * net.imageCount)).map { _ in rng.nextGaussian() }
            let ours = Array(
                UnsafeBufferPointer(
                    start: net.forward(images: x, batch: 4, training: false),
                    count: 4 * net.numClasses))
            let dump = dir.appendingPathComponent("\(name).safetensors").path
            var file = SafeTensorsFile()
            file.add("images", shape: [4, 3, 8, 8], floats: x)
            file.add("logits", shape: [4, net.numClasses], floats: ours)
            try file.write(path: dump)
            for opset in Self.opsets(spec) {
                let onnx = dir.appendingPathComponent("\(name)-\(opset).onnx").path
                try ONNXExport.serialize(net, opset: opset).write(to: URL(fileURLWithPath: onnx))
                guard let r = Python.launch(["-c", Self.ortScript, onnx, dump]) else {
                    return XCTFail("cannot start \(Python.executable)")
                }
                XCTAssertEqual(r.status, 0, "\(name) opset \(opset): \(r.stderr.suffix(2000))")
                let f = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
                XCTAssertEqual(f.count, 2, r.stdout)
                guard f.count == 2 else { continue }
                XCTAssertGreaterThan(f[1], 0.01, "\(name): degenerate logits")
                XCTAssertLessThanOrEqual(
                    f[0], 1e-5 * max(1, f[1]), "\(name) opset \(opset): onnxruntime differs")
            }
            seen.formUnion(spec.nodes.map(\.op))
        }
        let older: Set<NodeSpec.Op> = [.add, .concat, .linear, .avgPool, .relu6, .batchNorm]
        XCTAssertEqual(
            NodeSpec.Op.allCases.filter { !seen.contains($0) && !older.contains($0) }, [])
    }

    /// Opsets 13 and 20, raised to the lowest that writes every op of `spec` (LayerNorm: 17).
    static func opsets(_ spec: GraphSpec) -> [Int] {
        let least = spec.nodes.map(\.op.traits.minimumOpset).max() ?? 1
        return Array(Set([13, 20].map { max($0, least) })).sorted()
    }

    /// An op ONNX cannot write at the asked opset is refused by name; `export`'s default is
    /// the lowest opset that writes the model.
    func testAnOpsetTooLowForAnOpIsRefusedAndTheDefaultRaisesIt() throws {
        let arch = try Architecture.from(
            spec: ModernOpGraphs.convNeXt(), model: "cn", inputChannels: 3, imageSize: 8)
        let net = try Network(architecture: arch)
        XCTAssertEqual(ONNXExport.defaultOpset(for: net), 17)
        assertCSGDError(["--opset 16: the model's LayerNorm over channels needs opset 17"]) {
            _ = try ONNXExport.serialize(net, opset: 16)
        }
        let plain = try Network(
            architecture: Architecture.from(
                spec: ModernOpGraphs.shuffle(), model: "s", inputChannels: 3, imageSize: 8))
        XCTAssertEqual(ONNXExport.defaultOpset(for: plain), ONNXExport.defaultOpset)
    }

    /// Prints max |onnxruntime − ours| and max |ours| for an ONNX file and a dump.
    static let ortScript =
        Python.interopPrelude + """
            import onnxruntime as ort

            t = read_safetensors(sys.argv[2])
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
            out = sess.run(None, {sess.get_inputs()[0].name: t["images"]})[0]
            out = out.reshape(t["logits"].shape)
            print(float(np.abs(out - t["logits"]).max()), float(np.abs(t["logits"]).max()))
            """

    func testEveryOpExportsAndImportsToTheSameFunction() throws {
        var seen = Set<NodeSpec.Op>()
        for (name, spec) in ModernOpGraphs.all {
            // Opset 13 writes SiLU/GELU/HardSwish composed; 20 writes their own ops.
            for opset in Self.opsets(spec) {
                let (back, diff) = try roundTrip(spec, opset: opset)
                XCTAssertLessThanOrEqual(diff, 1e-5, "\(name) opset \(opset)")
                XCTAssertEqual(
                    back.nodes.map(\.op), spec.nodes.map(\.op),
                    "\(name) opset \(opset): the import rebuilt other ops")
                seen.formUnion(back.nodes.map(\.op))
            }
        }
        // The ResNet/VGG/DenseNet ops round-trip in ONNXExportTests/ImportFixtureTests; the
        // new ones must all be here.
        let older: Set<NodeSpec.Op> = [.add, .concat, .linear, .avgPool, .relu6, .batchNorm]
        XCTAssertEqual(
            NodeSpec.Op.allCases.filter { !seen.contains($0) && !older.contains($0) }, [])
    }
}
