// Our non-GEMM kernels split their work over `KernelThreads` only along independent pieces
// (channels, planes, element ranges), so a result must be bitwise the same for any thread
// count. Each test runs a kernel at 1 and at 3 threads on tensors large enough to be split
// (checked through `parallelRanges`) and compares the bit patterns.

import CSGDCore
import XCTest

@testable import CSGDKernels

final class KernelThreadsTests: XCTestCase {
    override func tearDown() {
        KernelThreads.set(1)
        super.tearDown()
    }

    /// Deterministic values in [-1, 1) (some negative, so ReLU masks are mixed).
    private func filled(_ count: Int, seed: UInt64) -> FloatBuffer {
        var rng = Rng(seed: seed)
        let b = FloatBuffer(count: count)
        for i in 0..<count { b[i] = Float(rng.nextDouble() * 2 - 1) }
        return b
    }

    /// Runs `body` (which returns the buffers it wrote) at 1 and 3 threads; asserts every
    /// output bitwise equal.
    private func assertThreadFree(
        _ what: String, file: StaticString = #filePath, line: UInt = #line,
        _ body: () -> [FloatBuffer]
    ) {
        KernelThreads.set(1)
        let one = body().map { $0.array.map(\.bitPattern) }
        KernelThreads.set(3)
        let three = body().map { $0.array.map(\.bitPattern) }
        KernelThreads.set(1)
        XCTAssertEqual(one.count, three.count, what, file: file, line: line)
        for (i, (a, b)) in zip(one, three).enumerated() {
            let diff = zip(a, b).filter { $0 != $1 }.count
            XCTAssertEqual(
                diff, 0, "\(what): output \(i) differs in \(diff) elements", file: file, line: line)
        }
    }

    func testRangesCoverTheCountDisjointAlignedAndUseTheThreads() {
        KernelThreads.set(3)
        for (count, grain, align) in [(100_000, 1000, 16), (10, 1, 1), (37, 5, 4), (48, 16, 16)] {
            let lock = NSLock()
            var ranges: [Range<Int>] = []
            parallelRanges(count, grain: grain, align: align) { r in
                lock.lock()
                ranges.append(r)
                lock.unlock()
            }
            ranges.sort { $0.lowerBound < $1.lowerBound }
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, count)
            for (a, b) in zip(ranges, ranges.dropFirst()) {
                XCTAssertEqual(a.upperBound, b.lowerBound)
            }
            for r in ranges.dropFirst() { XCTAssertEqual(r.lowerBound % align, 0, "\(count)") }
            XCTAssertEqual(ranges.count, min(3, count / grain), "\(count) items, grain \(grain)")
        }
        // Below one grain the caller's thread does all of it, in one range.
        var calls = 0
        parallelRanges(500, grain: 1000) { r in
            calls += 1
            XCTAssertEqual(r, 0..<500)
        }
        XCTAssertEqual(calls, 1)
    }

    func testBatchNormIsBitwiseThreadFree() {
        let (n, c, hw) = (8, 12, 33 * 33)
        // The channels must really be split for the test to mean anything.
        XCTAssertGreaterThan(c / max(1, elementwiseGrain / (n * hw)), 1)
        let x = filled(n * c * hw, seed: 1)
        let dy = filled(n * c * hw, seed: 2)
        let gamma = filled(c, seed: 3)
        let beta = filled(c, seed: 4)
        for relu in [false, true] {
            assertThreadFree("BN train fwd+bwd, relu \(relu)") {
                let y = FloatBuffer(count: x.count)
                let mean = FloatBuffer(count: c)
                let invStd = FloatBuffer(count: c)
                let rm = filled(c, seed: 5)
                let rv = FloatBuffer(count: c)
                for i in 0..<c { rv[i] = 1 + Float(i) / 7 }
                batchNormForwardTraining(
                    output: y.pointer, saveMean: mean.pointer, saveInvStd: invStd.pointer,
                    runningMean: rm.pointer, runningVar: rv.pointer, input: x.pointer,
                    scale: gamma.pointer, shift: beta.pointer, n: n, c: c, hw: hw, relu: relu)
                let dx = filled(x.count, seed: 6)
                let dg = filled(c, seed: 7)
                let db = filled(c, seed: 8)
                batchNormBackward(
                    dInput: dx.pointer, dScale: dg.pointer, dShift: db.pointer,
                    dOutput: dy.pointer, input: x.pointer, scale: gamma.pointer,
                    saveMean: mean.pointer, saveInvStd: invStd.pointer, n: n, c: c, hw: hw)
                let yEval = FloatBuffer(count: x.count)
                batchNormForwardEval(
                    output: yEval.pointer, input: x.pointer, runningMean: rm.pointer,
                    runningVar: rv.pointer, scale: gamma.pointer, shift: beta.pointer, n: n,
                    c: c, hw: hw, relu: relu)
                return [y, mean, invStd, rm, rv, dx, dg, db, yEval]
            }
        }
        assertThreadFree("BN group phases") {
            let stats = UnsafeMutablePointer<Double>.allocate(
                capacity: batchNormStatisticsCount(channels: c))
            defer { stats.deallocate() }
            batchNormStatistics(stats: stats, input: x.pointer, n: n, c: c, hw: hw)
            let y = FloatBuffer(count: x.count)
            let mean = FloatBuffer(count: c)
            let invStd = FloatBuffer(count: c)
            let rm = FloatBuffer(count: c)
            let rv = FloatBuffer(count: c)
            batchNormNormalize(
                output: y.pointer, saveMean: mean.pointer, saveInvStd: invStd.pointer,
                runningMean: rm.pointer, runningVar: rv.pointer, input: x.pointer,
                stats: stats, scale: gamma.pointer, shift: beta.pointer, n: n, c: c, hw: hw)
            let sums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * c)
            defer { sums.deallocate() }
            let dg = FloatBuffer(count: c)
            let db = FloatBuffer(count: c)
            batchNormBackwardSums(
                sums: sums, dScale: dg.pointer, dShift: db.pointer, dOutput: dy.pointer,
                input: x.pointer, saveMean: mean.pointer, saveInvStd: invStd.pointer, n: n,
                c: c, hw: hw)
            let dx = FloatBuffer(count: x.count)
            batchNormBackwardInput(
                dInput: dx.pointer, dOutput: dy.pointer, input: x.pointer, scale: gamma.pointer,
                saveMean: mean.pointer, saveInvStd: invStd.pointer, sums: sums,
                count: n * hw, n: n, c: c, hw: hw, overwriteInput: true)
            let statsCopy = FloatBuffer((0..<(3 * c + 1)).map { Float(stats[$0]) })
            return [y, mean, invStd, rm, rv, dg, db, dx, statsCopy]
        }
    }

    func testElementwiseIsBitwiseThreadFree() {
        // Not a multiple of the lane count, so the ranges end in a scalar tail too.
        let count = 3 * elementwiseGrain + 77
        let a = filled(count, seed: 11)
        let b = filled(count, seed: 12)
        let g = filled(count, seed: 13)
        assertThreadFree("relu, add, masks") {
            let r = FloatBuffer(count: count)
            reluForward(output: r.pointer, input: a.pointer, count: count)
            let dr = filled(count, seed: 14)
            reluBackward(dInput: dr.pointer, dOutput: g.pointer, output: r.pointer, count: count)
            let masked = FloatBuffer(g.array)
            reluMaskInPlace(dOutput: masked.pointer, output: r.pointer, count: count)
            let sum = FloatBuffer(count: count)
            addForward(output: sum.pointer, a: a.pointer, b: b.pointer, count: count, relu: true)
            let da = filled(count, seed: 15)
            let db = filled(count, seed: 16)
            addBackward(
                dA: da.pointer, dB: db.pointer, dOutput: g.pointer, count: count,
                reluOutput: sum.pointer, overwriteB: true)
            return [r, dr, masked, sum, da, db]
        }
    }

    func testIm2colConvAndPoolingAreBitwiseThreadFree() throws {
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        // im2col: stride 1 (shifted-plane path), stride 2 (gather/scatter) and a 1×1;
        // Winograd: its four transforms, each thread with its own scratch plane.
        let cases: [(Conv3x3Algorithm, Conv2dShape)] = [
            (
                .im2col,
                try Conv2dShape(n: 4, c: 10, h: 31, w: 31, k: 12, r: 3, s: 3, stride: 1, pad: 1)
            ),
            (
                .im2col,
                try Conv2dShape(n: 4, c: 10, h: 31, w: 29, k: 12, r: 3, s: 3, stride: 2, pad: 1)
            ),
            (
                .im2col,
                try Conv2dShape(n: 4, c: 10, h: 30, w: 30, k: 6, r: 1, s: 1, stride: 1, pad: 0)
            ),
            (
                .winograd,
                try Conv2dShape(n: 4, c: 12, h: 30, w: 29, k: 10, r: 3, s: 3, stride: 1, pad: 1)
            ),
            (
                .winograd4,
                try Conv2dShape(n: 4, c: 12, h: 30, w: 29, k: 10, r: 3, s: 3, stride: 1, pad: 1)
            ),
        ]
        for (algorithm, g) in cases {
            ConvAlgorithm.conv3x3 = algorithm
            XCTAssertEqual(ConvAlgorithm.usesWinograd(g), algorithm != .im2col)
            let x = filled(g.n * g.c * g.h * g.w, seed: 21)
            let w = filled(g.k * g.c * g.r * g.s, seed: 22)
            let bias = filled(g.k, seed: 23)
            let dy = filled(g.n * g.k * g.p * g.q, seed: 24)
            assertThreadFree("\(algorithm) conv \(g)") {
                let ws = FloatBuffer(count: g.workspaceCount)
                let y = FloatBuffer(count: dy.count)
                conv2dForward(
                    output: y.pointer, input: x.pointer, weight: w.pointer, bias: bias.pointer,
                    shape: g, workspace: ws.pointer)
                let dx = filled(x.count, seed: 25)
                let dw = FloatBuffer(count: w.count)
                let db = FloatBuffer(count: g.k)
                conv2dBackward(
                    dInput: dx.pointer, dWeight: dw.pointer, dBias: db.pointer,
                    dOutput: dy.pointer, input: x.pointer, weight: w.pointer, shape: g,
                    workspace: ws.pointer)
                return [y, dx, dw, db]
            }
        }
        let pool = try PoolShape(n: 6, c: 16, h: 32, w: 32, kernel: 3, stride: 2, pad: 1)
        let x = filled(pool.n * pool.c * pool.h * pool.w, seed: 31)
        let dy = filled(pool.n * pool.c * pool.p * pool.q, seed: 32)
        assertThreadFree("max and global-average pooling") {
            let y = FloatBuffer(count: dy.count)
            let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: dy.count)
            defer { argmax.deallocate() }
            maxPoolForward(output: y.pointer, argmax: argmax, input: x.pointer, shape: pool)
            let dx = filled(x.count, seed: 33)
            maxPoolBackward(dInput: dx.pointer, dOutput: dy.pointer, argmax: argmax, shape: pool)
            let nc = pool.n * pool.c
            let hw = pool.h * pool.w
            let avg = FloatBuffer(count: nc)
            globalAvgPoolForward(output: avg.pointer, input: x.pointer, nc: nc, hw: hw)
            let dAvg = filled(x.count, seed: 34)
            globalAvgPoolBackward(dInput: dAvg.pointer, dOutput: dy.pointer, nc: nc, hw: hw)
            return [y, dx, avg, dAvg]
        }
    }
}
