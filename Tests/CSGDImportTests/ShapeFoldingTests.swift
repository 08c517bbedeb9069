import CSGDCore
import CSGDImport
import CSGDONNX
import CSGDTestSupport
import XCTest

/// The known-value folding of traced shape arithmetic: torch's lowering of TF-"same" padding
/// evaluates to the pads the conv needs, and hostile constants (huge shapes, extreme steps)
/// are refused or clamped, never trapped on.
extension ONNXImportTests {
    /// `conv` input padded by a chain like torch's `F.pad` lowering: pads [0, 0, 0, 0] for N
    /// and C, then H and W begin 0, end 1, built from Shape / Gather / Sub / Concat /
    /// ConstantOfShape / Reshape / reversed Slice / Transpose / Cast.
    func testTracedPadArithmeticFoldsToAZeroPadNode() throws {
        var m = baseModel()
        m.graph.initializer += [
            ints("two", [2]), ints("four", [4]), ints("zero", [0]), ints("pairs", [-1, 2]),
            ints("minus1", [-1]), ints("rev_end", [Int64.min + 1]), ints("flat", [-1]),
            ints("hw", [0, 1, 0, 1]),  // (H begin, H end, W begin, W end) as torch writes pairs
        ]
        m.graph.node.insert(
            contentsOf: [
                node("Shape", "s", ["hw"], ["hw_shape"]),
                node("Gather", "g", ["hw_shape", "zero"], ["hw_len"], int: ["axis": 0]),
                node("Mul", "m", ["four", "two"], ["eight"]),
                node("Sub", "d", ["eight", "hw_len"], ["rest"]),
                node("ConstantOfShape", "z", ["rest"], ["zeros"]),
                node("Concat", "c", ["hw", "zeros"], ["all"], int: ["axis": 0]),
                node("Reshape", "r", ["all", "pairs"], ["paired"]),
                node("Slice", "rv", ["paired", "minus1", "rev_end", "zero", "minus1"], ["rev"]),
                node("Transpose", "t", ["rev"], ["tr"], ints: ["perm": [1, 0]]),
                node("Reshape", "r2", ["tr", "flat"], ["pads"]),
                node("Cast", "k", ["pads"], ["pads64"], int: ["to": 7]),
                node("Pad", "p", ["input", "pads64"], ["padded"]),
            ], at: 0)
        m.graph.node[12].input[0] = "padded"  // the conv reads the padded image
        // 9×9 after the pad: the 3×3 conv with pad 1 keeps 9, the 2×2 pool gives 4×4 = 64
        // features per… 4 channels × 16 = 64: the classifier still fits.
        let imported = try translate(m)
        let ops = imported.architecture.spec!.nodes.map(\.op)
        XCTAssertEqual(ops.first, .pad)
        XCTAssertEqual(imported.architecture.spec!.nodes[0].pads, [0, 0, 1, 1])
        _ = try imported.network()
    }

    func testHostileShapeConstantsAreRefusedNotTrappedOn() throws {
        func refused(_ extra: [ONNXNodeProto], inits: [ONNXTensorProto], _ needle: String) {
            var m = baseModel()
            m.graph.initializer += inits
            m.graph.node.insert(contentsOf: extra, at: 0)
            assertCSGDError([needle]) { _ = try self.translate(m) }
        }
        // A shape of 20 dims of 64: would overflow a product, refused by name.
        refused(
            [node("ConstantOfShape", "z", ["big"], ["zeros"])],
            inits: [ints("big", Array(repeating: 64, count: 20))], "(ConstantOfShape)")
        refused(
            [node("Reshape", "r", ["v", "dims"], ["o"])],
            inits: [ints("v", [1, 2, 3]), ints("dims", Array(repeating: 1, count: 40))],
            "(Reshape)")
        // Extreme slice steps are clamped: the fold succeeds and the model still imports.
        var m = baseModel()
        m.graph.initializer += [
            ints("v", [1, 2, 3]), ints("lo", [Int64.max]), ints("hi", [Int64.min]),
            ints("ax", [0]), ints("st", [Int64.min]),
        ]
        m.graph.node.insert(node("Slice", "s", ["v", "lo", "hi", "ax", "st"], ["o"]), at: 0)
        XCTAssertNoThrow(try translate(m))
    }
}
