// The Winograd F(2×2, 3×3) and F(4×4, 3×3) paths against the direct convolution, in Double.
//
// Tolerance, argued rather than tuned. Every value the Float kernel computes is a sum of
// products built in a fixed number of rounding steps, so its error is bounded by
// (steps)·u·S, u = 2⁻²⁴, where S is the same computation run on absolute values with the
// absolute transform matrices |Bᵀ|, |G|, |Aᵀ| (the standard running-error bound for sums). S
// is NOT a constant times the direct Σ|w||x|: the transforms add up larger magnitudes (for
// equal magnitudes (8/3)² ≈ 7.1×, and unboundedly more where the direct terms cancel to 0),
// so the test computes S exactly with `WinoRef(abs: true)`. Steps: forward 2 (Bᵀ·Bᵀ) +
// 4 (G·G, halving exact) + C (the GEMM over channels) + 4 (Aᵀ·Aᵀ) + 2 ≤ C + 12; input
// gradient 4 (A·A) + K + 4 (B·B) + 2 (overlapping tiles) + 4 ≤ K + 16; weight gradient
// 4 + 2 + (tiles summed over the batch) + 4 + 4 ≤ T + 16. F(4×4, 3×3) has deeper 1-D
// transforms: Bᵀ and B up to 3 roundings per pass (a product by 5 and two additions, or three
// additions; products by 2, 4, 8 are exact), G 3 (two additions and a division by 6, 12 or
// 24), Gᵀ 4, Aᵀ 3, A 2. Forward 6 + 6 + C + 6 + 2 ≤ C + 20; input gradient 4 (A·A) + K +
// 6 (B·B) + 4 (up to four overlapping tiles) + 6 (G·G) + 2 ≤ K + 22; weight gradient 4 + 6 +
// T + 8 (Gᵀ·Gᵀ) + 4 ≤ T + 22. Any indexing or transform bug gives errors of the order of the
// values themselves, orders of magnitude above these.

import CSGDCore
import XCTest

@testable import CSGDKernels

/// Winograd F(m×m, 3×3), m = `tile` (2 or 4), tile by tile in Double; `abs` runs it on
/// absolute values with absolute transform matrices (the rounding-error magnitude S above).
private struct WinoRef {
    let abs: Bool
    var tile = 2
    var alpha: Int { tile + 2 }
    var bt: [[Double]] { tile == 2 ? Self.bt2 : Self.bt4 }
    var gm: [[Double]] { tile == 2 ? Self.g2 : Self.g4 }
    var at: [[Double]] { tile == 2 ? Self.at2 : Self.at4 }

    static let bt2: [[Double]] = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    static let g2: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
    static let at2: [[Double]] = [[1, 1, 1, 0], [0, 1, -1, -1]]
    static let bt4: [[Double]] = [
        [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1],
    ]
    static let sixth = 1.0 / 6
    static let g4: [[Double]] = [
        [0.25, 0, 0], [-sixth, -sixth, -sixth], [-sixth, sixth, -sixth],
        [1.0 / 24, 1.0 / 12, sixth], [1.0 / 24, -1.0 / 12, sixth], [0, 0, 1],
    ]
    static let at4: [[Double]] = [
        [1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1],
    ]

    func m(_ a: [[Double]]) -> [[Double]] { abs ? a.map { $0.map { Swift.abs($0) } } : a }
    func t(_ a: [[Double]]) -> [[Double]] {
        (0..<a[0].count).map { j in a.map { $0[j] } }
    }
    func v(_ x: Float) -> Double { abs ? Swift.abs(Double(x)) : Double(x) }
    /// a · x · aᵀ.
    func sandwich(_ a: [[Double]], _ x: [[Double]]) -> [[Double]] {
        let ax = a.map { row in
            (0..<x[0].count).map { j in zip(row, x).reduce(0) { $0 + $1.0 * $1.1[j] } }
        }
        return ax.map { row in a.map { arow in zip(row, arow).reduce(0) { $0 + $1.0 * $1.1 } } }
    }
    func filters(_ w: FloatBuffer, _ g: Conv2dShape) -> [[[[Double]]]] {
        (0..<g.k).map { k in
            (0..<g.c).map { c in
                sandwich(
                    m(gm),
                    (0..<3).map { r in (0..<3).map { s in v(w[((k * g.c + c) * 3 + r) * 3 + s]) } })
            }
        }
    }
    func tiles(_ g: Conv2dShape) -> (Int, Int) {
        ((g.p + tile - 1) / tile, (g.q + tile - 1) / tile)
    }
    func inputTile(_ x: FloatBuffer, _ g: Conv2dShape, _ n: Int, _ c: Int, _ i: Int, _ j: Int)
        -> [[Double]]
    {
        sandwich(
            m(bt),
            (0..<alpha).map { r in
                (0..<alpha).map { s in
                    let y = tile * i - g.pad + r, xx = tile * j - g.pad + s
                    return y < 0 || y >= g.h || xx < 0 || xx >= g.w
                        ? 0 : v(x[((n * g.c + c) * g.h + y) * g.w + xx])
                }
            })
    }

    func forward(_ x: FloatBuffer, _ w: FloatBuffer, _ g: Conv2dShape) -> [Double] {
        var out = [Double](repeating: 0, count: g.n * g.k * g.p * g.q)
        let u = filters(w, g)
        let (th, tw) = tiles(g)
        for n in 0..<g.n {
            for i in 0..<th {
                for j in 0..<tw {
                    let vs = (0..<g.c).map { inputTile(x, g, n, $0, i, j) }
                    for k in 0..<g.k {
                        var acc = [[Double]](
                            repeating: [Double](repeating: 0, count: alpha), count: alpha)
                        for c in 0..<g.c {
                            for a in 0..<alpha {
                                for b in 0..<alpha { acc[a][b] += u[k][c][a][b] * vs[c][a][b] }
                            }
                        }
                        let y = sandwich(m(at), acc)
                        for a in 0..<tile where tile * i + a < g.p {
                            for b in 0..<tile where tile * j + b < g.q {
                                out[((n * g.k + k) * g.p + tile * i + a) * g.q + tile * j + b] =
                                    y[a][b]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// The adjoint computation: (dInput, dWeight).
    func backward(_ x: FloatBuffer, _ w: FloatBuffer, _ dy: FloatBuffer, _ g: Conv2dShape)
        -> ([Double], [Double])
    {
        var dx = [Double](repeating: 0, count: g.n * g.c * g.h * g.w)
        let zero = [[Double]](repeating: [Double](repeating: 0, count: alpha), count: alpha)
        var du = [[[[Double]]]](
            repeating: [[[Double]]](repeating: zero, count: g.c), count: g.k)
        let u = filters(w, g)
        let (th, tw) = tiles(g)
        let a = t(m(at)), b = t(m(bt))
        for n in 0..<g.n {
            for i in 0..<th {
                for j in 0..<tw {
                    let vs = (0..<g.c).map { inputTile(x, g, n, $0, i, j) }
                    let ys = (0..<g.k).map { k in
                        sandwich(
                            a,
                            (0..<tile).map { r in
                                (0..<tile).map { s in
                                    let (yy, xx) = (tile * i + r, tile * j + s)
                                    return yy < g.p && xx < g.q
                                        ? v(dy[((n * g.k + k) * g.p + yy) * g.q + xx]) : 0
                                }
                            })
                    }
                    for c in 0..<g.c {
                        var dv = zero
                        for k in 0..<g.k {
                            for p in 0..<alpha {
                                for q in 0..<alpha {
                                    du[k][c][p][q] += ys[k][p][q] * vs[c][p][q]
                                    dv[p][q] += u[k][c][p][q] * ys[k][p][q]
                                }
                            }
                        }
                        let dd = sandwich(b, dv)
                        for r in 0..<alpha {
                            for s in 0..<alpha {
                                let yy = tile * i - g.pad + r, xx = tile * j - g.pad + s
                                if yy < 0 || yy >= g.h || xx < 0 || xx >= g.w { continue }
                                dx[((n * g.c + c) * g.h + yy) * g.w + xx] += dd[r][s]
                            }
                        }
                    }
                }
            }
        }
        let gt = t(m(gm))
        var dw = [Double](repeating: 0, count: g.k * g.c * 9)
        for k in 0..<g.k {
            for c in 0..<g.c {
                let d = sandwich(gt, du[k][c])
                for r in 0..<3 { for s in 0..<3 { dw[((k * g.c + c) * 3 + r) * 3 + s] = d[r][s] } }
            }
        }
        return (dx, dw)
    }
}

/// Direct convolution and its gradients in Double.
private func direct(_ x: FloatBuffer, _ w: FloatBuffer, _ dy: FloatBuffer, _ g: Conv2dShape)
    -> (y: [Double], dx: [Double], dw: [Double])
{
    var y = [Double](repeating: 0, count: g.n * g.k * g.p * g.q)
    var dx = [Double](repeating: 0, count: g.n * g.c * g.h * g.w)
    var dw = [Double](repeating: 0, count: g.k * g.c * 9)
    for n in 0..<g.n {
        for k in 0..<g.k {
            for p in 0..<g.p {
                for q in 0..<g.q {
                    let o = ((n * g.k + k) * g.p + p) * g.q + q
                    for c in 0..<g.c {
                        for r in 0..<3 {
                            let hi = p - g.pad + r
                            if hi < 0 || hi >= g.h { continue }
                            for s in 0..<3 {
                                let wi = q - g.pad + s
                                if wi < 0 || wi >= g.w { continue }
                                let xi = ((n * g.c + c) * g.h + hi) * g.w + wi
                                let wj = ((k * g.c + c) * 3 + r) * 3 + s
                                y[o] += Double(x[xi]) * Double(w[wj])
                                dx[xi] += Double(dy[o]) * Double(w[wj])
                                dw[wj] += Double(dy[o]) * Double(x[xi])
                            }
                        }
                    }
                }
            }
        }
    }
    return (y, dx, dw)
}

final class KernelWinogradTests: XCTestCase {
    /// (name, N, C, H, W, K, pad): odd sizes, pads 0/1/2, batch > 1, channels not multiples of
    /// 4, tile rows wider than one 8-tile block, and a batch cut into 2 chunks + a remainder.
    private static let cases: [(String, Conv2dShape)] = [
        ("odd 7x5 pad1", 2, 3, 7, 5, 5, 1), ("9x9 pad0", 3, 6, 9, 9, 7, 0),
        ("4x6 pad2", 1, 5, 4, 6, 3, 2), ("C17 K10 8x8", 2, 17, 8, 8, 10, 1),
        ("19x21 pad1 (two 8-tile blocks)", 2, 2, 19, 21, 3, 1),
        ("3x3 input pad0 (one output)", 2, 3, 3, 3, 2, 0),
        ("32x32 C16 K16 N3 (chunks 2+1)", 3, 16, 32, 32, 16, 1),
        ("16x16 C5 K4 (half blocks of F(4))", 2, 5, 16, 16, 4, 1),
        ("35x37 pad1 (two 8-tile blocks of F(4))", 1, 2, 35, 37, 3, 1),
        ("10x15 pad1 (F(4): two tile rows a vector, an odd count)", 2, 3, 10, 15, 4, 1),
        ("7x6 pad1 (F(4): four tile rows a vector, two present)", 3, 4, 7, 6, 2, 1),
        // Pad 0 at the widest input each layout allows: the last tile's columns 4 and 5 (the
        // spill past a row's tiles) are real input columns, not padding.
        ("11x18 pad0 (F(4): two tile rows a vector, spill inside)", 1, 2, 11, 18, 3, 0),
        ("10x10 pad0 (F(4): four tile rows a vector, spill inside)", 2, 3, 10, 10, 3, 0),
    ].map {
        (
            $0.0,
            try! Conv2dShape(
                n: $0.1, c: $0.2, h: $0.3, w: $0.4, k: $0.5, r: 3, s: 3, stride: 1, pad: $0.6)
        )
    }

    private let u = Double(Float.ulpOfOne) / 2

    private func assertWithin(
        _ name: String, _ got: FloatBuffer, minus pre: Float, _ ref: [Double], _ bound: [Double],
        steps: Int, file: StaticString = #filePath, line: UInt = #line
    ) {
        var worst = 0.0
        for i in 0..<ref.count {
            let err = Swift.abs(Double(got[i]) - Double(pre) - ref[i])
            // The pre-fill's own rounding (|pre| + |value|)·u is part of an accumulating result.
            let tol =
                Double(steps) * u * bound[i] + 2 * u * (Double(Swift.abs(pre)) + Swift.abs(ref[i]))
            worst = max(worst, bound[i] > 0 ? err / (Double(steps) * u * bound[i]) : err)
            if !(err <= tol) {
                XCTFail(
                    "\(name)[\(i)]: \(got[i]) − \(pre) vs \(ref[i]), error \(err) > \(tol)",
                    file: file, line: line)
                return
            }
        }
        XCTAssertGreaterThan(worst, 0, "\(name): suspiciously exact", file: file, line: line)
    }

    func testTheReferenceItselfIsTheDirectConvolution() {
        for tile in [2, 4] {
            for (i, (name, g)) in Self.cases.prefix(4).enumerated() {
                let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 10 + UInt64(i))
                let w = randomBuffer(g.k * g.c * 9, seed: 20 + UInt64(i))
                let dy = randomBuffer(g.n * g.k * g.p * g.q, seed: 30 + UInt64(i))
                let d = direct(x, w, dy, g)
                let ref = WinoRef(abs: false, tile: tile)
                let y = ref.forward(x, w, g)
                let (dx, dw) = ref.backward(x, w, dy, g)
                for (a, b) in [(y, d.y), (dx, d.dx), (dw, d.dw)] {
                    let err = zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThan(err, 1e-9, "F(\(tile)) \(name)")
                }
            }
        }
    }

    /// Rounding steps (see the header) of the forward, input gradient and weight gradient for
    /// output tile `tile`, C channels, K filters and T tiles in the batch.
    private func steps(tile: Int, c: Int, k: Int, t: Int) -> (y: Int, dx: Int, dw: Int) {
        tile == 2 ? (c + 12, k + 16, t + 16) : (c + 20, k + 22, t + 22)
    }

    func testForwardAndBothGradientsAgreeWithDirectConvolution() {
        for tile in [2, 4] {
            for (i, (name, g)) in Self.cases.enumerated() {
                checkAgainstDirect("F(\(tile)) \(name)", g, tile: tile, seed: UInt64(i))
            }
        }
        // The cases cover every F(4×4) vector layout: one, two and four tile rows a vector.
        let layouts = Set(Self.cases.map { WinogradPlan($0.1, tile: 4).rowsPerVector })
        XCTAssertEqual(layouts, [1, 2, 4])
    }

    private func checkAgainstDirect(_ name: String, _ g: Conv2dShape, tile: Int, seed: UInt64) {
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 100 + seed)
        let w = randomBuffer(g.k * g.c * 9, seed: 200 + seed, -0.5, 0.5)
        let dy = randomBuffer(g.n * g.k * g.p * g.q, seed: 300 + seed)
        let d = direct(x, w, dy, g)
        let absRef = WinoRef(abs: true, tile: tile)
        let sy = absRef.forward(x, w, g)
        let (sdx, sdw) = absRef.backward(x, w, dy, g)
        let plan = WinogradPlan(g, tile: tile)
        let n = steps(tile: tile, c: g.c, k: g.k, t: g.n * plan.tilesPerImage)
        XCTAssertLessThanOrEqual(plan.workspaceCount, g.workspaceCount, name)
        // Garbage in the workspace: nothing may rely on it being zero.
        let ws = FloatBuffer(count: g.workspaceCount)
        ws.buffer.update(repeating: 12345)
        let y = FloatBuffer(count: d.y.count)
        y.buffer.update(repeating: .nan)
        winogradForward(
            output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            tile: tile, workspace: ws.pointer, epilogue: nil)
        assertWithin("\(name) y", y, minus: 0, d.y, sy, steps: n.y)
        // Backward accumulates: pre-filled gradients come back as pre + gradient.
        let dx = FloatBuffer(count: d.dx.count)
        dx.buffer.update(repeating: 0.25)
        let dw = FloatBuffer(count: d.dw.count)
        dw.buffer.update(repeating: -0.5)
        ws.buffer.update(repeating: 12345)
        winogradBackward(
            dInput: dx.pointer, dWeight: dw.pointer, dOutput: dy.pointer, input: x.pointer,
            weight: w.pointer, shape: g, tile: tile, workspace: ws.pointer)
        assertWithin("\(name) dInput", dx, minus: 0.25, d.dx, sdx, steps: n.dx)
        assertWithin("\(name) dWeight", dw, minus: -0.5, d.dw, sdw, steps: n.dw)
        // Without the input gradient, the weight gradient is the same, bitwise.
        let dw2 = FloatBuffer(count: d.dw.count)
        dw2.buffer.update(repeating: -0.5)
        winogradBackward(
            dInput: nil, dWeight: dw2.pointer, dOutput: dy.pointer, input: x.pointer,
            weight: w.pointer, shape: g, tile: tile, workspace: ws.pointer)
        XCTAssertEqual(dw2.array, dw.array, name)
    }

    /// The public entry points dispatch on `ConvAlgorithm.conv3x3`, per shape.
    func testDispatchFollowsTheSetting() throws {
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        let g = Self.cases[3].1
        let strided = try Conv2dShape(n: 2, c: 5, h: 8, w: 8, k: 4, r: 3, s: 3, stride: 2, pad: 1)
        for shape in [g, strided] {
            let x = randomBuffer(shape.n * shape.c * shape.h * shape.w, seed: 5)
            let w = randomBuffer(shape.k * shape.rowLength, seed: 6)
            let bias = randomBuffer(shape.k, seed: 7)
            let ws = FloatBuffer(count: shape.workspaceCount)
            func run(_ a: Conv3x3Algorithm) -> [Float] {
                ConvAlgorithm.conv3x3 = a
                let y = FloatBuffer(count: shape.n * shape.k * shape.p * shape.q)
                conv2dForward(
                    output: y.pointer, input: x.pointer, weight: w.pointer, bias: bias.pointer,
                    shape: shape, workspace: ws.pointer)
                return y.array
            }
            let im2col = run(.im2col)
            let wino = run(.winograd)
            let wino4 = run(.winograd4)
            XCTAssertEqual(run(.auto), im2col, "auto: shape not in the measured table")
            for (setting, tile, got) in [
                (Conv3x3Algorithm.winograd, 2, wino), (.winograd4, 4, wino4),
            ] {
                ConvAlgorithm.conv3x3 = setting
                XCTAssertEqual(ConvAlgorithm.winogradTile(shape), shape == g ? tile : nil)
                if shape == g {
                    let y = FloatBuffer(count: im2col.count)
                    winogradForward(
                        output: y.pointer, input: x.pointer, weight: w.pointer, bias: bias.pointer,
                        shape: g, tile: tile, workspace: ws.pointer, epilogue: nil)
                    XCTAssertEqual(got, y.array, "\(setting) runs the F(\(tile)) kernel")
                    XCTAssertNotEqual(got, im2col, "the algorithms round differently")
                } else {
                    XCTAssertEqual(got, im2col, "stride 2 always runs im2col")
                }
            }
            XCTAssertTrue(shape != g || wino != wino4, "the two tiles round differently")
        }
    }

    /// `auto` follows the measured table: ResNet-50 convs in it run their tile (F(4×4) at
    /// 28×28, F(2×2) at 14×14), 512 @7×7, the same geometry at a width not in the table and a
    /// strided conv run im2col.
    func testAutoFollowsTheMeasuredTable() throws {
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        ConvAlgorithm.conv3x3 = .auto
        func shape(_ c: Int, _ k: Int, _ side: Int, stride: Int = 1) throws -> Conv2dShape {
            try Conv2dShape(n: 2, c: c, h: side, w: side, k: k, r: 3, s: 3, stride: stride, pad: 1)
        }
        XCTAssertEqual(ConvAlgorithm.winogradTile(try shape(128, 128, 28)), 4)
        XCTAssertEqual(ConvAlgorithm.winogradTile(try shape(256, 256, 14)), 2)
        XCTAssertEqual(ConvAlgorithm.winogradTile(try shape(16, 16, 32)), 4)
        XCTAssertNil(ConvAlgorithm.winogradTile(try shape(512, 512, 7)))
        XCTAssertNil(ConvAlgorithm.winogradTile(try shape(80, 80, 28)))
        XCTAssertNil(ConvAlgorithm.winogradTile(try shape(128, 128, 28, stride: 2)))
        XCTAssertTrue(ConvAlgorithm.winogradWins.values.allSatisfy { $0 == 2 || $0 == 4 })
        ConvAlgorithm.conv3x3 = .im2col
        XCTAssertNil(ConvAlgorithm.winogradTile(try shape(128, 128, 28)))
    }

    /// The eval-mode BatchNorm epilogue on the Winograd path: bitwise the unfused result.
    func testEpilogueMatchesSeparatePass() {
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        ConvAlgorithm.conv3x3 = .winograd
        let g = Self.cases[0].1
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1)
        let w = randomBuffer(g.k * g.rowLength, seed: 2)
        let scale = randomBuffer(g.k, seed: 3)
        let shift = randomBuffer(g.k, seed: 4)
        let ws = FloatBuffer(count: g.workspaceCount)
        let fused = FloatBuffer(count: g.n * g.k * g.p * g.q)
        let plain = FloatBuffer(count: fused.count)
        conv2dForward(
            output: fused.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            workspace: ws.pointer,
            epilogue: ChannelAffine(scale: scale.pointer, shift: shift.pointer, relu: true))
        conv2dForward(
            output: plain.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            workspace: ws.pointer)
        let pq = g.p * g.q
        for i in 0..<plain.count {
            let k = (i / pq) % g.k
            plain[i] = max(0, plain[i] * scale[k] + shift[k])
        }
        XCTAssertEqual(fused.array, plain.array)
    }

    /// Finite differences through two stacked 3×3 convs (pad 1 with bias, then pad 0), both on
    /// a Winograd path (each tile size): every weight, the bias and the input.
    func testFiniteDifferencesThroughTwoWinogradConvs() throws {
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        // Both convs are linear in each single entry, so the central difference is exact at any
        // step and its rounding noise falls as 1/h (GradCheck.swift). F(4×4)'s forward rounds
        // about ten times coarser than F(2×2)'s (its transforms multiply by up to 8 and sum
        // up to (10·19/2)² larger magnitudes), so it takes an 8× larger step: measured at
        // Step.linear its worst entry, a near-zero input gradient, was 1.7e-2 against the
        // 1e-3 floor.
        for (setting, h) in [
            (Conv3x3Algorithm.winograd, Step.linear), (.winograd4, 8 * Step.linear),
        ] {
            ConvAlgorithm.conv3x3 = setting
            let report = try finiteDifferencesThroughTwoConvs("\(setting)", h: h)
            print("finite differences, \(setting): max rel error \(report.maxRelError)")
        }
    }

    private func finiteDifferencesThroughTwoConvs(_ name: String, h step: Float) throws
        -> GradCheckReport
    {
        let g1 = try Conv2dShape(n: 2, c: 3, h: 7, w: 6, k: 5, r: 3, s: 3, stride: 1, pad: 1)
        let g2 = try Conv2dShape(
            n: 2, c: 5, h: g1.p, w: g1.q, k: 3, r: 3, s: 3, stride: 1, pad: 0)
        XCTAssertTrue(ConvAlgorithm.usesWinograd(g1) && ConvAlgorithm.usesWinograd(g2))
        let x = randomBuffer(g1.n * g1.c * g1.h * g1.w, seed: 11)
        let w1 = randomBuffer(g1.k * g1.rowLength, seed: 12, -0.5, 0.5)
        let b1 = randomBuffer(g1.k, seed: 13)
        let w2 = randomBuffer(g2.k * g2.rowLength, seed: 14, -0.5, 0.5)
        let (dx, dw1, db1, dw2) = (
            FloatBuffer(count: x.count), FloatBuffer(count: w1.count), FloatBuffer(count: b1.count),
            FloatBuffer(count: w2.count)
        )
        let h = FloatBuffer(count: g1.n * g1.k * g1.p * g1.q)
        let dh = FloatBuffer(count: h.count)
        let y = FloatBuffer(count: g2.n * g2.k * g2.p * g2.q)
        let ws = FloatBuffer(count: max(g1.workspaceCount, g2.workspaceCount))
        // Linear in each single entry, so the central difference is exact at a large step.
        return checkGradients(
            "two Winograd convs, \(name)",
            inputs: [
                GradInput("w1", w1, dw1), GradInput("b1", b1, db1), GradInput("w2", w2, dw2),
                GradInput("input", x, dx),
            ], h: step, rtol: 1e-2, samples: 400, seed: 3,
            forward: {
                conv2dForward(
                    output: h.pointer, input: x.pointer, weight: w1.pointer, bias: b1.pointer,
                    shape: g1, workspace: ws.pointer)
                conv2dForward(
                    output: y.pointer, input: h.pointer, weight: w2.pointer, bias: nil,
                    shape: g2, workspace: ws.pointer)
                return (UnsafePointer(y.pointer), y.count)
            },
            backward: { dy in
                dh.buffer.update(repeating: 0)
                conv2dBackward(
                    dInput: dh.pointer, dWeight: dw2.pointer, dBias: nil, dOutput: dy,
                    input: h.pointer, weight: w2.pointer, shape: g2, workspace: ws.pointer)
                conv2dBackward(
                    dInput: dx.pointer, dWeight: dw1.pointer, dBias: db1.pointer,
                    dOutput: dh.pointer, input: x.pointer, weight: w1.pointer, shape: g1,
                    workspace: ws.pointer)
            })
    }
}
