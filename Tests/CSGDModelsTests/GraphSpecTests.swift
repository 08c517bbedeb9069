// The serialisable graph: old model files (no stored graph) still build the same network,
// specs survive JSON, and a hostile spec is refused with one line naming the node.

import CSGDCore
import CSGDModels
import Foundation
import XCTest

final class GraphSpecTests: XCTestCase {
    /// Asserts a one-line CSGDError containing `needle`.
    func assertRefused(_ needle: String, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an error mentioning '\(needle)'", line: line)
        } catch let e as CSGDError {
            XCTAssertTrue(e.message.contains(needle), "\(e.message)", line: line)
            XCTAssertFalse(e.message.contains("\n"), line: line)
        } catch {
            XCTFail("expected CSGDError, got \(error)", line: line)
        }
    }

    func testOldArchitectureJSONWithoutAGraphBuildsTheSameNetwork() throws {
        // What files written before graphs were stored hold (csgd.architecture metadata).
        let fresh = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 28, numClasses: 10)
        var widths = fresh.widths
        widths[1] = 10
        widths[3] = 9
        let old = """
            {"model":"resnet20","inputChannels":1,"imageSize":28,"numClasses":10,\
            "widths":[\(widths.map(String.init).joined(separator: ","))]}
            """
        let decoded = try JSONDecoder().decode(Architecture.self, from: Data(old.utf8))
        XCTAssertNil(decoded.spec)
        var current = fresh
        current.widths = widths
        let a = try decoded.graph()
        let b = try current.graph()
        XCTAssertEqual(a.specs.map(\.name), b.specs.map(\.name))
        XCTAssertEqual(a.specs.map(\.shape), b.specs.map(\.shape))
        XCTAssertEqual(a.bufferSpecs.map(\.name), b.bufferSpecs.map(\.name))
        XCTAssertEqual(a.flopsPerImage, b.flopsPerImage)
        XCTAssertEqual(a.tensors, b.tensors)
    }

    func testSpecRoundTripsThroughJSONAndNewFilesStoreIt() throws {
        let arch = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: 64, numClasses: 7)
        XCTAssertNotNil(arch.spec)
        let data = try JSONEncoder().encode(arch)
        let back = try JSONDecoder().decode(Architecture.self, from: data)
        XCTAssertEqual(back, arch)
        XCTAssertEqual(try back.graph().parameterCount, try arch.graph().parameterCount)
    }

    /// A small spec with every op: conv → BN+ReLU → depthwise → ReLU6 → grouped 1×1 → concat
    /// (with the BN output) → avg pool → max pool → add → global pool → linear.
    func smallSpec() -> GraphSpec {
        GraphSpec(
            nodes: [
                NodeSpec(
                    op: .conv, name: "c1", inputs: [0], outChannels: 8, kernel: 3, stride: 1,
                    pad: 1),
                NodeSpec(op: .batchNorm, name: "bn1", inputs: [1], relu: true),
                NodeSpec(op: .depthwiseConv, name: "dw", inputs: [2], kernel: 3, stride: 1, pad: 1),
                NodeSpec(op: .relu6, inputs: [3]),
                NodeSpec(
                    op: .conv, name: "g", inputs: [4], outChannels: 8, kernel: 1, stride: 1, pad: 0,
                    groups: 2, bias: true),
                NodeSpec(op: .concat, inputs: [5, 2]),
                NodeSpec(
                    op: .avgPool, inputs: [6], kernel: 2, stride: 2, pad: 0, countIncludePad: true),
                NodeSpec(op: .maxPool, inputs: [6], kernel: 2, stride: 2, pad: 0),
                NodeSpec(op: .add, inputs: [7, 8]),
                NodeSpec(op: .globalAvgPool, inputs: [9]),
                NodeSpec(op: .linear, name: "fc", inputs: [10], outChannels: 5),
            ], output: 11)
    }

    func testEveryOpBuildsWithShapesParametersAndFlops() throws {
        let g = try smallSpec().build(inputChannels: 3, imageSize: 8)
        XCTAssertEqual(g.tensors[g.logits.index], ActivationShape(c: 5, h: 1, w: 1))
        XCTAssertEqual(g.tensors[6], ActivationShape(c: 16, h: 8, w: 8))  // concat
        XCTAssertEqual(g.tensors[7], ActivationShape(c: 16, h: 4, w: 4))  // avg pool
        let shapes = Dictionary(uniqueKeysWithValues: g.specs.map { ($0.name, $0.shape) })
        XCTAssertEqual(shapes["c1.weight"], [8, 3, 3, 3])
        XCTAssertEqual(shapes["dw.weight"], [8, 1, 3, 3])
        XCTAssertEqual(shapes["g.weight"], [8, 4, 1, 1])
        XCTAssertEqual(shapes["g.bias"], [8])
        XCTAssertEqual(shapes["fc.weight"], [5, 16])
        // Multiply-adds: c1 8·27·64, depthwise 8·9·64, grouped 8·4·64, fc 16·5.
        XCTAssertEqual(g.flopsPerImage, 8 * 27 * 64 + 8 * 9 * 64 + 8 * 4 * 64 + 16 * 5)
        // Widths: the two `.conv` nodes, not the depthwise one.
        XCTAssertEqual(smallSpec().nominalWidths, [8, 8])
        let arch = try Architecture.from(
            spec: smallSpec(), model: "small", inputChannels: 3, imageSize: 8)
        XCTAssertEqual(arch.numClasses, 5)
        XCTAssertEqual(arch.widths, [8, 8])
    }

    func testNumClassesSetsTheClassifierWidthAndTheLabelIsChecked() throws {
        var arch = try Architecture.from(
            spec: smallSpec(), model: "small", inputChannels: 3, imageSize: 8)
        arch.numClasses = 12  // a classifier re-initialised for a 12-class dataset
        let g = try arch.graph()
        XCTAssertEqual(g.tensors[g.logits.index].c, 12)
        XCTAssertEqual(g.specs.first { $0.name == "fc.weight" }?.shape, [12, 16])
        arch.model = "two\nlines"
        assertRefused("model must be 1...128 printable") { _ = try arch.graph() }
    }

    func testHostileSpecsAreRefusedNamingTheNode() throws {
        func build(_ edit: (inout GraphSpec) -> Void) throws {
            var s = smallSpec()
            edit(&s)
            _ = try s.build(inputChannels: 3, imageSize: 8)
        }
        assertRefused("input tensor 9 is not produced before") {
            try build { $0.nodes[3].inputs = [9] }  // a forward reference: would be a cycle
        }
        assertRefused("input tensor -1") { try build { $0.nodes[0].inputs = [-1] } }
        assertRefused("missing kernel") { try build { $0.nodes[0].kernel = nil } }
        assertRefused("stride 0 is out of") { try build { $0.nodes[0].stride = 0 } }
        assertRefused("takes 2...2 inputs") { try build { $0.nodes[8].inputs = [7] } }
        assertRefused("'bn1' is used twice") { try build { $0.nodes[2].name = "bn1" } }
        assertRefused("module name must be") { try build { $0.nodes[0].name = "a b" } }
        assertRefused("groups do not divide") { try build { $0.nodes[4].groups = 3 } }
        assertRefused("output tensor 12") { try build { $0.output = 12 } }
        assertRefused("expected classes×1×1") { try build { $0.output = 9 } }
        assertRefused("node 8 (add)") {
            try build { $0.nodes[8].inputs = [7, 6] }  // 16×4×4 + 16×8×8
        }
        assertRefused("widths array has 1 entries") {
            _ = try smallSpec().build(inputChannels: 3, imageSize: 8, widths: [4])
        }
        assertRefused("larger than the padded input") {
            _ = try smallSpec().build(inputChannels: 3, imageSize: 1)
        }
    }
}
