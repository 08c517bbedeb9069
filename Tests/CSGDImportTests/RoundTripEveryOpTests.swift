import CSGDCore
import CSGDExport
import CSGDImport
import CSGDModels
import CSGDTestGraphs
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

    func testEveryOpExportsAndImportsToTheSameFunction() throws {
        var seen = Set<NodeSpec.Op>()
        for (name, spec) in ModernOpGraphs.all {
            // Opset 13 writes SiLU/GELU/HardSwish composed; 20 writes their own ops.
            for opset in [13, 20] {
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
