// The conv GEMM schedule (ConvPlan): the real forward + backward and the benchmark's GEMM-only
// replay issue exactly the planned GEMMs, the plan stays inside its buffers and does each
// pass's work once, and a few schedules are pinned by hand.

import CSGDCore
import XCTest

@testable import CSGDKernels

final class ConvPlanTests: XCTestCase {
    /// Geometries beyond ConvCases: a staged shape whose last chunk is one image (so it goes
    /// direct), a multi-chunk pointwise conv, odd sizes with stride 2 and 7×7, 5×5 chunked.
    static let extra: [(String, Conv2dShape)] = [
        (
            "staged, 1-image tail",
            ConvCases.conv(n: 15, c: 32, h: 16, w: 15, k: 3, r: 3, s: 3, stride: 2, pad: 1)
        ),
        (
            "pointwise N5",
            ConvCases.conv(n: 5, c: 9, h: 7, w: 11, k: 4, r: 1, s: 1, stride: 1, pad: 0)
        ),
        (
            "7x7 s2 p3 odd",
            ConvCases.conv(n: 5, c: 3, h: 37, w: 41, k: 8, r: 7, s: 7, stride: 2, pad: 3)
        ),
        (
            "5x5 s1 p2 chunked",
            ConvCases.conv(n: 7, c: 8, h: 30, w: 30, k: 6, r: 5, s: 5, stride: 1, pad: 2)
        ),
        (
            "3x3 s1 p1 staged odd",
            ConvCases.conv(n: 11, c: 24, h: 9, w: 13, k: 10, r: 3, s: 3, stride: 1, pad: 1)
        ),
    ]

    static var cases: [(String, Conv2dShape)] { ConvCases.small + ConvCases.chunked + extra }

    /// Collects the GEMMs a kernel issues through `ConvTensors.trace`.
    final class GemmLog {
        var gemms: [ConvGemm] = []
    }

    /// Runs the real forward + backward, then the GEMM-only replay, on real buffers, tracing
    /// their GEMMs; both must be exactly `plan.gemms` (sizes, transposes, leading dimensions,
    /// operands, beta, order).
    func testKernelsAndReplayIssueThePlannedGemms() {
        for (i, (name, g)) in Self.cases.enumerated() {
            let plan = ConvPlan(g)
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1300 + UInt64(i))
            let w = randomBuffer(g.k * g.rowLength, seed: 1400 + UInt64(i))
            let dy = randomBuffer(g.n * g.k * g.p * g.q, seed: 1500 + UInt64(i))
            let y = FloatBuffer(count: dy.count)
            let dx = FloatBuffer(count: x.count)
            let dw = FloatBuffer(count: w.count)
            let ws = FloatBuffer(count: g.workspaceCount)
            for inputGradient in [true, false] {
                let real = GemmLog()
                let replay = GemmLog()
                var tensors = ConvTensors(
                    input: x.pointer, weight: w.pointer, output: y.pointer, dOutput: dy.pointer,
                    dWeight: dw.pointer, dInput: inputGradient ? dx.pointer : nil,
                    workspace: ws.pointer)
                tensors.trace = { real.gemms.append($0) }
                convForward(plan, tensors, bias: nil, epilogue: nil)
                convBackward(plan, tensors)
                tensors.trace = { replay.gemms.append($0) }
                convGemmsOnly(plan, tensors)
                let planned = plan.gemms(inputGradient: inputGradient)
                let label = "\(name), input gradient \(inputGradient)"
                XCTAssertFalse(planned.isEmpty, label)
                XCTAssertEqual(real.gemms, planned, "forward + backward, \(label)")
                XCTAssertEqual(replay.gemms, planned, "GEMM-only replay, \(label)")
            }
        }
    }

    /// Every planned GEMM reads and writes inside its buffer (leading dimensions included);
    /// each pass multiplies exactly N·K·P·Q·C·R·S; chunks tile the batch in order.
    func testPlanCoversTheBatchWithinBounds() {
        for (name, g) in Self.cases {
            let plan = ConvPlan(g)
            var next = 0
            plan.forEachChunk { ch in
                XCTAssertEqual(ch.n0, next, name)
                XCTAssertTrue(ch.nb == plan.chunk || ch.n0 + ch.nb == g.n, name)
                XCTAssertEqual(
                    ch.direct, g.isPointwise || g.p * g.q >= 256 || ch.nb == 1, name)
                next += ch.nb
            }
            XCTAssertEqual(next, g.n, name)

            let size: [ConvGemm.Buffer: Int] = [
                .input: g.n * g.c * g.h * g.w, .dInput: g.n * g.c * g.h * g.w,
                .weight: g.k * g.rowLength, .dWeight: g.k * g.rowLength,
                .output: g.n * g.k * g.p * g.q, .dOutput: g.n * g.k * g.p * g.q,
                .columns: g.isPointwise ? 0 : plan.stagingOffset,
                .staging: g.workspaceCount - plan.stagingOffset,
            ]
            // Row-major `rows × cols` matrix at `o` with leading dimension `ld`.
            func inside(_ o: ConvGemm.Operand, _ rows: Int, _ cols: Int, _ ld: Int) -> Bool {
                ld >= cols && o.offset >= 0 && o.offset + (rows - 1) * ld + cols <= size[o.buffer]!
            }
            var forward = 0
            var weightGradient = 0
            var inputGradient = 0
            for gemm in plan.gemms(inputGradient: true) {
                let (ar, ac) = gemm.transA ? (gemm.k, gemm.m) : (gemm.m, gemm.k)
                let (br, bc) = gemm.transB ? (gemm.n, gemm.k) : (gemm.k, gemm.n)
                XCTAssertTrue(inside(gemm.a, ar, ac, gemm.lda), "\(name): A of \(gemm)")
                XCTAssertTrue(inside(gemm.b, br, bc, gemm.ldb), "\(name): B of \(gemm)")
                XCTAssertTrue(inside(gemm.c, gemm.m, gemm.n, gemm.ldc), "\(name): C of \(gemm)")
                let work = gemm.m * gemm.n * gemm.k
                switch gemm.c.buffer {
                case .output, .staging: forward += work
                case .dWeight: weightGradient += work
                case .columns, .dInput: inputGradient += work
                default: XCTFail("\(name): writes \(gemm.c.buffer)")
                }
            }
            XCTAssertEqual(forward, g.flops, name)
            XCTAssertEqual(weightGradient, g.flops, name)
            XCTAssertEqual(inputGradient, g.flops, name)
        }
    }

    /// The schedules of three shapes written out by hand (what the kernels issued before the
    /// plan was factored out): per-image chunks with a remainder, staged chunks, pointwise.
    func testPinnedSchedules() {
        typealias O = ConvGemm.Operand
        func gemm(
            _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: O, _ lda: Int,
            _ b: O, _ ldb: Int, _ beta: Float, _ c: O, _ ldc: Int
        ) -> ConvGemm {
            ConvGemm(
                transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                beta: beta, c: c, ldc: ldc)
        }
        let w = O(.weight)
        let col = O(.columns)
        let st = O(.staging)
        let dW = O(.dWeight)

        // N=3, C=4, 50×50, 3×3 s1 p1, K=3: P·Q = 2500, C·R·S = 36, chunk 2 → [0, 1], [2].
        let direct = ConvCases.chunked[0].1
        XCTAssertEqual(ConvPlan(direct).chunk, 2)
        XCTAssertEqual(
            ConvPlan(direct).gemms(inputGradient: true),
            [
                gemm(false, false, 3, 2500, 36, w, 36, col, 5000, 0, O(.output, 0), 2500),
                gemm(
                    false, false, 3, 2500, 36, w, 36, O(.columns, 2500), 5000, 0,
                    O(.output, 7500), 2500),
                gemm(false, false, 3, 2500, 36, w, 36, col, 2500, 0, O(.output, 15000), 2500),
                gemm(false, true, 3, 36, 2500, O(.dOutput, 0), 2500, col, 5000, 1, dW, 36),
                gemm(
                    false, true, 3, 36, 2500, O(.dOutput, 7500), 2500, O(.columns, 2500), 5000,
                    1, dW, 36),
                gemm(true, false, 36, 2500, 3, w, 36, O(.dOutput, 0), 2500, 0, col, 5000),
                gemm(
                    true, false, 36, 2500, 3, w, 36, O(.dOutput, 7500), 2500, 0,
                    O(.columns, 2500), 5000),
                gemm(false, true, 3, 36, 2500, O(.dOutput, 15000), 2500, col, 2500, 1, dW, 36),
                gemm(true, false, 36, 2500, 3, w, 36, O(.dOutput, 15000), 2500, 0, col, 2500),
            ])

        // N=16, C=32, 16×15, 3×3 s2 p1, K=3: P·Q = 64, C·R·S = 288, chunk 14 → 14 + 2, both
        // through the staging block.
        let staged = ConvCases.chunked[1].1
        XCTAssertEqual(ConvPlan(staged).chunk, 14)
        XCTAssertEqual(
            ConvPlan(staged).gemms(inputGradient: false),
            [
                gemm(false, false, 3, 896, 288, w, 288, col, 896, 0, st, 896),
                gemm(false, false, 3, 128, 288, w, 288, col, 128, 0, st, 128),
                gemm(false, true, 3, 288, 896, st, 896, col, 896, 1, dW, 288),
                gemm(false, true, 3, 288, 128, st, 128, col, 128, 1, dW, 288),
            ])

        // Pointwise N=2, C=6, 4×5, K=7: per image, straight on the input, dInput accumulated.
        let pointwise = ConvCases.conv(n: 2, c: 6, h: 4, w: 5, k: 7, r: 1, s: 1, stride: 1, pad: 0)
        XCTAssertEqual(
            ConvPlan(pointwise).gemms(inputGradient: true),
            [
                gemm(false, false, 7, 20, 6, w, 6, O(.input, 0), 20, 0, O(.output, 0), 20),
                gemm(false, false, 7, 20, 6, w, 6, O(.input, 120), 20, 0, O(.output, 140), 20),
                gemm(false, true, 7, 6, 20, O(.dOutput, 0), 20, O(.input, 0), 20, 1, dW, 6),
                gemm(true, false, 6, 20, 7, w, 6, O(.dOutput, 0), 20, 1, O(.dInput, 0), 20),
                gemm(false, true, 7, 6, 20, O(.dOutput, 140), 20, O(.input, 120), 20, 1, dW, 6),
                gemm(true, false, 6, 20, 7, w, 6, O(.dOutput, 140), 20, 1, O(.dInput, 120), 20),
            ])
    }
}
