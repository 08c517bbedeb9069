import CSGDCore
import CSGDImport
import CSGDONNX
import CSGDTestSupport
import Foundation
import SwiftProtobuf
import XCTest

/// torch 2.13's default export keeps the weights in `model.onnx.data` beside the model: read
/// from the model's own folder only, and every bad location or range refused by name.
extension ONNXImportTests {
    /// The base model with every initializer moved to `data` in one folder; returns its path.
    func externalModel(
        in dir: String, location: String = "m.onnx.data",
        edit: (inout ONNXModelProto) -> Void = { _ in }
    ) throws -> String {
        var m = baseModel()
        var blob = Data()
        for k in m.graph.initializer.indices {
            let raw = m.graph.initializer[k].rawData
            let entries = [
                ("location", location), ("offset", "\(blob.count)"), ("length", "\(raw.count)"),
            ]
            m.graph.initializer[k].externalData = entries.map { key, value in
                ONNXStringStringEntryProto.with {
                    $0.key = key
                    $0.value = value
                }
            }
            m.graph.initializer[k].dataLocation = .external
            m.graph.initializer[k].rawData = Data()
            blob += raw
        }
        edit(&m)
        try blob.write(to: URL(fileURLWithPath: dir + "/m.onnx.data"))
        let path = dir + "/m.onnx"
        try m.serializedData().write(to: URL(fileURLWithPath: path))
        return path
    }

    func testExternalDataBesideTheModelIsRead() throws {
        let dir = NSTemporaryDirectory() + "ext-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inline = try translate(baseModel())
        let external = try ONNXImport.read(path: try externalModel(in: dir))
        XCTAssertEqual(external.tensors, inline.tensors)
        XCTAssertFalse(inline.tensors.isEmpty)
    }

    func testExternalDataOutsideTheFolderOrRangeIsRefusedByName() throws {
        let root = NSTemporaryDirectory() + "ext-\(UUID().uuidString)"
        let dir = root + "/model"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Data(count: 4096).write(to: URL(fileURLWithPath: root + "/secret.bin"))
        try FileManager.default.createSymbolicLink(
            atPath: dir + "/link.data", withDestinationPath: root + "/secret.bin")
        let cases: [(String, String)] = [
            ("../secret.bin", "not a plain relative path"),
            (root + "/secret.bin", "not a plain relative path"),
            ("./m.onnx.data", "not a plain relative path"),
            ("link.data", "resolves outside"),
            ("missing.data", "missing beside the model"),
        ]
        for (location, needle) in cases {
            let path = try externalModel(in: dir, location: location)
            assertCSGDError([path, "initializer 'conv.weight'", needle]) {
                _ = try ONNXImport.read(path: path)
            }
        }
        // A range past the end of the data file.
        let path = try externalModel(in: dir) { m in
            m.graph.initializer[0].externalData[1].value = "1000000"
        }
        assertCSGDError(["initializer 'conv.weight'", "outside 'm.onnx.data'"]) {
            _ = try ONNXImport.read(path: path)
        }
        // A parsed model with no file has no folder to read from.
        let m = try ONNXModelProto(
            serializedBytes: try Data(contentsOf: URL(fileURLWithPath: path)))
        assertCSGDError(["no folder"]) { _ = try self.translate(m) }
    }
}
