// Forward kernels against independent references (naive loops in Double, closed-form
// formulas, hand-computed examples) and shape validation.

import CSGDCore
import CSGDKernels
import XCTest

final class KernelForwardTests: XCTestCase {
    // MARK: conv2d

    /// Direct 7-loop convolution in Double (zero padding, cross-correlation).
    private func naiveConv(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        _ g: Conv2dShape
    ) -> [Double] {
        var out = [Double](repeating: 0, count: g.n * g.k * g.p * g.q)
        for n in 0..<g.n {
            for k in 0..<g.k {
                for p in 0..<g.p {
                    for q in 0..<g.q {
                        var acc = Double(b[k])
                        for c in 0..<g.c {
                            for r in 0..<g.r {
                                let hi = p * g.stride - g.pad + r
                                if hi < 0 || hi >= g.h { continue }
                                for s in 0..<g.s {
                                    let wi = q * g.stride - g.pad + s
                                    if wi < 0 || wi >= g.w { continue }
                                    acc +=
                                        Double(x[((n * g.c + c) * g.h + hi) * g.w + wi])
                                        * Double(w[((k * g.c + c) * g.r + r) * g.s + s])
                                }
                            }
                        }
                        out[((n * g.k + k) * g.p + p) * g.q + q] = acc
                    }
                }
            }
        }
        return out
    }

    func testConv2dForwardMatchesDirectConvolution() {
        let cases = ConvCases.small + ConvCases.chunked
        for (i, (name, g)) in cases.enumerated() {
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 200 + UInt64(i))
            let w = randomBuffer(g.k * g.rowLength, seed: 300 + UInt64(i))
            let b = randomBuffer(g.k, seed: 400 + UInt64(i))
            let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            y.buffer.update(repeating: .nan)  // every output must be written
            let ws = FloatBuffer(count: g.workspaceCount)
            conv2dForward(
                output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer,
                shape: g, workspace: ws.pointer)
            let ref = naiveConv(x.pointer, w.pointer, b.pointer, g)
            var maxDiff = 0.0
            var magnitude = 1.0
            for j in 0..<ref.count {
                let d = abs(Double(y[j]) - ref[j])
                maxDiff = d.isNaN ? .infinity : max(maxDiff, d)
                magnitude = max(magnitude, abs(ref[j]))
            }
            // Float32 sums of ≤ 147 products: error ≈ √147·ε·|terms| ≈ 1e-6 of the magnitude.
            XCTAssertLessThanOrEqual(maxDiff, 1e-4 * magnitude, "conv2d forward \(name)")
        }
    }

    /// An eval-mode BatchNorm (+ ReLU) run as the conv's epilogue gives bitwise the same output
    /// as the conv followed by `batchNormForwardEval`, on every conv path (pointwise, im2col
    /// with per-image GEMMs, batched through the staging block), with and without a bias.
    func testConvBatchNormEpilogueEqualsConvThenBatchNorm() {
        let cases = ConvCases.small + ConvCases.chunked
        for (i, (name, g)) in cases.enumerated() {
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 500 + UInt64(i))
            let w = randomBuffer(g.k * g.rowLength, seed: 600 + UInt64(i))
            let bias = randomBuffer(g.k, seed: 700 + UInt64(i))
            let gamma = randomBuffer(g.k, seed: 800 + UInt64(i), -2, 2)
            let beta = randomBuffer(g.k, seed: 900 + UInt64(i))
            let mean = randomBuffer(g.k, seed: 1000 + UInt64(i))
            let variance = randomBuffer(g.k, seed: 1100 + UInt64(i), 0.1, 3)
            let ws = FloatBuffer(count: g.workspaceCount)
            let count = g.n * g.k * g.p * g.q
            for withBias in [false, true] {
                for relu in [false, true] {
                    let conv = FloatBuffer(count: count)
                    conv2dForward(
                        output: conv.pointer, input: x.pointer, weight: w.pointer,
                        bias: withBias ? bias.pointer : nil, shape: g, workspace: ws.pointer)
                    let expected = FloatBuffer(count: count)
                    batchNormForwardEval(
                        output: expected.pointer, input: conv.pointer, runningMean: mean.pointer,
                        runningVar: variance.pointer, scale: gamma.pointer, shift: beta.pointer,
                        n: g.n, c: g.k, hw: g.p * g.q, relu: relu)
                    let a = FloatBuffer(count: g.k)
                    let b = FloatBuffer(count: g.k)
                    batchNormEvalAffine(
                        a: a.pointer, b: b.pointer, runningMean: mean.pointer,
                        runningVar: variance.pointer, scale: gamma.pointer, shift: beta.pointer,
                        c: g.k)
                    let fused = FloatBuffer(count: count)
                    fused.buffer.update(repeating: .nan)  // every output must be written
                    conv2dForward(
                        output: fused.pointer, input: x.pointer, weight: w.pointer,
                        bias: withBias ? bias.pointer : nil, shape: g, workspace: ws.pointer,
                        epilogue: ChannelAffine(scale: a.pointer, shift: b.pointer, relu: relu))
                    XCTAssertEqual(
                        fused.array.map(\.bitPattern), expected.array.map(\.bitPattern),
                        "\(name), bias \(withBias), relu \(relu)")
                    if relu {
                        XCTAssertTrue(expected.array.contains(0), "must exercise the clamp")
                    }
                }
            }
        }
    }

    func testConvCasesCoverEveryPath() {
        let all = (ConvCases.small + ConvCases.chunked).map(\.1)
        XCTAssertTrue(all.contains { $0.isPointwise })
        XCTAssertTrue(all.contains { $0.r == 1 && $0.s == 1 && !$0.isPointwise })
        XCTAssertTrue(all.contains { $0.stride == 1 && $0.q == $0.w && !$0.isPointwise })
        XCTAssertTrue(all.contains { $0.stride == 1 && $0.q != $0.w })
        XCTAssertTrue(all.contains { $0.stride == 2 })
        XCTAssertTrue(all.contains { $0.stride == 3 })
        // Per-image GEMMs need P·Q ≥ 256, the staging path P·Q < 256; both multi-chunk.
        XCTAssertTrue(ConvCases.chunked.contains { $0.1.p * $0.1.q >= 256 })
        XCTAssertTrue(ConvCases.chunked.contains { $0.1.p * $0.1.q < 256 })
    }

    // MARK: batch norm

    func testBatchNormTrainingForwardAndRunningStats() {
        let n = 4
        let c = 3
        let hw = 6
        let m = n * hw
        var rng = Rng(seed: 81)
        let x = FloatBuffer((0..<(n * c * hw)).map { _ in 3 * rng.nextFloat() + 1 })
        let scale = FloatBuffer([1.5, -0.5, 2])
        let shift = FloatBuffer([0.1, 0.2, -0.3])
        let y = FloatBuffer(count: x.count)
        let saveMean = FloatBuffer(count: c)
        let saveInvStd = FloatBuffer(count: c)
        let runMean = FloatBuffer(count: c)  // PyTorch init: mean 0, var 1
        let runVar = FloatBuffer([1, 1, 1])
        var expectMean = [Double](repeating: 0, count: c)
        var expectVar = [Double](repeating: 1, count: c)
        for step in 0..<2 {
            if step == 1 {  // a second batch: the update must compound from the new state
                for i in 0..<x.count { x[i] = 2 * x[i] - 1.5 }
            }
            batchNormForwardTraining(
                output: y.pointer, saveMean: saveMean.pointer, saveInvStd: saveInvStd.pointer,
                runningMean: runMean.pointer, runningVar: runVar.pointer, input: x.pointer,
                scale: scale.pointer, shift: shift.pointer, n: n, c: c, hw: hw)
            for ch in 0..<c {
                var values: [Double] = []
                for i in 0..<n {
                    for j in 0..<hw { values.append(Double(x[(i * c + ch) * hw + j])) }
                }
                let mean = values.reduce(0, +) / Double(m)
                let biased = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(m)
                let unbiased = biased * Double(m) / Double(m - 1)
                let invStd = 1 / (biased + 1e-5).squareRoot()
                XCTAssertEqual(Double(saveMean[ch]), mean, accuracy: 1e-5 * abs(mean))
                XCTAssertEqual(Double(saveInvStd[ch]), invStd, accuracy: 1e-5 * invStd)
                for i in 0..<n {
                    for j in 0..<hw {
                        let idx = (i * c + ch) * hw + j
                        let ref =
                            (Double(x[idx]) - mean) * invStd * Double(scale[ch])
                            + Double(shift[ch])
                        XCTAssertEqual(Double(y[idx]), ref, accuracy: 1e-5 * (1 + abs(ref)))
                    }
                }
                // momentum 0.1; the running variance takes the UNBIASED batch variance.
                expectMean[ch] = 0.9 * expectMean[ch] + 0.1 * mean
                expectVar[ch] = 0.9 * expectVar[ch] + 0.1 * unbiased
                XCTAssertEqual(Double(runMean[ch]), expectMean[ch], accuracy: 1e-5)
                XCTAssertEqual(Double(runVar[ch]), expectVar[ch], accuracy: 1e-5)
            }
        }
    }

    func testBatchNormEvalUsesRunningStats() {
        let n = 2
        let c = 2
        let hw = 5
        let x = randomBuffer(n * c * hw, seed: 91, -2, 2)
        let runMean = FloatBuffer([0.3, -1.2])
        let runVar = FloatBuffer([0.5, 4])
        let scale = FloatBuffer([1.2, 0.8])
        let shift = FloatBuffer([-0.1, 0.6])
        let y = FloatBuffer(count: x.count)
        batchNormForwardEval(
            output: y.pointer, input: x.pointer, runningMean: runMean.pointer,
            runningVar: runVar.pointer, scale: scale.pointer, shift: shift.pointer, n: n, c: c,
            hw: hw)
        for i in 0..<x.count {
            let ch = (i / hw) % c
            let ref =
                (Double(x[i]) - Double(runMean[ch])) / (Double(runVar[ch]) + 1e-5).squareRoot()
                * Double(scale[ch]) + Double(shift[ch])
            XCTAssertEqual(Double(y[i]), ref, accuracy: 1e-5 * (1 + abs(ref)))
        }
    }

    /// The fused BN → ReLU and add → ReLU passes give exactly the unfused sequence (odd sizes
    /// exercise the SIMD tails), and the fused add backward equals mask-then-add, also when
    /// both inputs are the same tensor.
    func testFusedReLUPassesEqualTheUnfusedSequence() {
        let n = 3
        let c = 2
        let hw = 13
        let x = randomBuffer(n * c * hw, seed: 17, -2, 2)
        let scale = FloatBuffer([1.3, -0.7])
        let shift = FloatBuffer([0.2, -0.1])
        let runMean = FloatBuffer([0.1, -0.3])
        let runVar = FloatBuffer([0.8, 1.7])
        for training in [false, true] {
            func bn(_ relu: Bool) -> [Float] {
                let y = FloatBuffer(count: x.count)
                let rm = FloatBuffer(runMean.array)
                let rv = FloatBuffer(runVar.array)
                if training {
                    let m = FloatBuffer(count: c)
                    let s = FloatBuffer(count: c)
                    batchNormForwardTraining(
                        output: y.pointer, saveMean: m.pointer, saveInvStd: s.pointer,
                        runningMean: rm.pointer, runningVar: rv.pointer, input: x.pointer,
                        scale: scale.pointer, shift: shift.pointer, n: n, c: c, hw: hw,
                        relu: relu)
                } else {
                    batchNormForwardEval(
                        output: y.pointer, input: x.pointer, runningMean: rm.pointer,
                        runningVar: rv.pointer, scale: scale.pointer, shift: shift.pointer, n: n,
                        c: c, hw: hw, relu: relu)
                }
                return y.array
            }
            let plain = bn(false)
            XCTAssertTrue(plain.contains { $0 < 0 }, "the test must exercise the clamp")
            XCTAssertEqual(bn(true), plain.map { max($0, 0) }, "training \(training)")
        }
        let b = randomBuffer(x.count, seed: 18, -2, 2)
        let sum = FloatBuffer(count: x.count)
        let fused = FloatBuffer(count: x.count)
        addForward(output: sum.pointer, a: x.pointer, b: b.pointer, count: x.count)
        addForward(output: fused.pointer, a: x.pointer, b: b.pointer, count: x.count, relu: true)
        XCTAssertEqual(fused.array, sum.array.map { max($0, 0) })
        let dy = randomBuffer(x.count, seed: 19, -1, 1)
        let masked = FloatBuffer(dy.array)
        reluMaskInPlace(dOutput: masked.pointer, output: fused.pointer, count: x.count)
        let da = randomBuffer(x.count, seed: 20, -1, 1)
        let db = randomBuffer(x.count, seed: 21, -1, 1)
        let (da2, db2) = (FloatBuffer(da.array), FloatBuffer(db.array))
        addBackward(dA: da.pointer, dB: db.pointer, dOutput: masked.pointer, count: x.count)
        addBackward(
            dA: da2.pointer, dB: db2.pointer, dOutput: dy.pointer, count: x.count,
            reluOutput: fused.pointer)
        XCTAssertEqual(da2.array, da.array)
        XCTAssertEqual(db2.array, db.array)
        // x + x: one buffer receives both contributions.
        let same = FloatBuffer(count: x.count)
        addBackward(
            dA: same.pointer, dB: same.pointer, dOutput: dy.pointer, count: x.count,
            reluOutput: fused.pointer)
        XCTAssertEqual(same.array, masked.array.map { $0 + $0 })
        // Storing instead of adding (first contributor): stale contents are ignored.
        let (sa, sb) = (randomBuffer(x.count, seed: 22), randomBuffer(x.count, seed: 23))
        addBackward(
            dA: sa.pointer, dB: sb.pointer, dOutput: dy.pointer, count: x.count,
            reluOutput: fused.pointer, overwriteA: true, overwriteB: true)
        XCTAssertEqual(sa.array, masked.array)
        XCTAssertEqual(sb.array, masked.array)
        // BN backward storing its input gradient == accumulating it into zeros.
        let saveMean = FloatBuffer([0.05, -0.2])
        let saveInvStd = FloatBuffer([1.1, 0.9])
        func bnBackward(_ overwrite: Bool) -> [Float] {
            let dx = overwrite ? randomBuffer(x.count, seed: 24) : FloatBuffer(count: x.count)
            let (ds, db) = (FloatBuffer(count: c), FloatBuffer(count: c))
            batchNormBackward(
                dInput: dx.pointer, dScale: ds.pointer, dShift: db.pointer, dOutput: dy.pointer,
                input: x.pointer, scale: scale.pointer, saveMean: saveMean.pointer,
                saveInvStd: saveInvStd.pointer, n: n, c: c, hw: hw, overwriteInput: overwrite)
            return dx.array + ds.array + db.array
        }
        XCTAssertEqual(bnBackward(true), bnBackward(false))
    }

    // MARK: softmax cross-entropy

    func testCrossEntropyHandComputed() {
        // logits [[1, 2, 3], [1, 0, −1]], labels [2, 1].
        // Both rows have logsumexp = max + ln(1 + e⁻¹ + e⁻²) = max + ln 1.5032147244 =
        // max + 0.4076059644: row 0 → 3.4076059644, row 1 → 1.4076059644.
        // loss₀ = 3.4076059644 − 3 = 0.4076059644, loss₁ = 1.4076059644 − 0 = 1.4076059644,
        // mean = 0.9076059644. Row 0's label is its argmax (top-1 hit), row 1's is second.
        // softmax row 0 = [0.0900305732, 0.2447284711, 0.6652409558], row 1 reversed;
        // dLogits = scale·(softmax − onehot)/2 with scale = 1.
        let logits = FloatBuffer([1, 2, 3, 1, 0, -1])
        let labels: [Int32] = [2, 1]
        let d = FloatBuffer(count: 6)
        let result = softmaxCrossEntropy(
            dLogits: d.pointer, logits: logits.pointer, labels: labels, n: 2, classes: 3)
        XCTAssertEqual(result.loss, 0.9076059644, accuracy: 1e-6)
        XCTAssertEqual(result.top1, 1)
        XCTAssertEqual(result.top5, 2)
        let expected: [Float] = [
            0.0450152866, 0.1223642355, -0.1673795221,
            0.3326204779, -0.3776357645, 0.0450152866,
        ]
        for i in 0..<6 { XCTAssertEqual(d[i], expected[i], accuracy: 1e-6) }
    }

    func testCrossEntropyTopKCounts() {
        // 7 classes. Rows 0–2 are the ramp 0…6: label 6 (rank 1), label 1 (5 logits beat
        // it: outside the top 5), label 2 (4 beat it: top 5 only). Rows 3–4 are all equal, so
        // ties go to the lower index: label 0 is rank 1, label 5 has 5 ahead (miss).
        let ramp: [Float] = [0, 1, 2, 3, 4, 5, 6]
        let flat = [Float](repeating: 1, count: 7)
        let logits = FloatBuffer(ramp + ramp + ramp + flat + flat)
        let labels: [Int32] = [6, 1, 2, 0, 5]
        let result = softmaxCrossEntropy(
            dLogits: nil, logits: logits.pointer, labels: labels, n: 5, classes: 7)
        XCTAssertEqual(result.top1, 2)
        XCTAssertEqual(result.top5, 3)
        // Flat rows: loss = ln 7 each.
        let rampLSE = 6 + log((0...6).map { exp(Double($0) - 6) }.reduce(0, +))
        let expected = ((rampLSE - 6) + (rampLSE - 1) + (rampLSE - 2) + 2 * log(7.0)) / 5
        XCTAssertEqual(result.loss, expected, accuracy: 1e-6)
    }

    // MARK: pooling

    func testMaxPoolHandExample() throws {
        // 4×4 plane:        k2 s2 p0 windows → max (flat index)   k3 s2 p1 → max (index)
        //   1  9  2  0      {1,9,3,4} → 9 (1)   {2,0,8,7} → 8 (6)   (0,0) 9 (1)  (0,1) 9 (1)
        //   3  4  8  7      {-1,-5,-2,-3} → -1 (8)                  (1,0) 4 (5)  (1,1) 8 (6)
        //  -1 -5  6  6      {6,6,5,-4} → 6, the FIRST of the tie (10)
        //  -2 -3  5 -4
        let x = FloatBuffer([1, 9, 2, 0, 3, 4, 8, 7, -1, -5, 6, 6, -2, -3, 5, -4])
        let y = FloatBuffer(count: 4)
        var argmax = [Int32](repeating: -1, count: 4)
        let g2 = try PoolShape(n: 1, c: 1, h: 4, w: 4, kernel: 2, stride: 2, pad: 0)
        maxPoolForward(output: y.pointer, argmax: &argmax, input: x.pointer, shape: g2)
        XCTAssertEqual(y.array, [9, 8, -1, 6])
        XCTAssertEqual(argmax, [1, 6, 8, 10])

        let g3 = try PoolShape(n: 1, c: 1, h: 4, w: 4, kernel: 3, stride: 2, pad: 1)
        XCTAssertEqual([g3.p, g3.q], [2, 2])
        maxPoolForward(output: y.pointer, argmax: &argmax, input: x.pointer, shape: g3)
        XCTAssertEqual(y.array, [9, 9, 4, 8])
        XCTAssertEqual(argmax, [1, 1, 5, 6])
        // Backward: overlapping windows sharing a maximum add up, on top of what was there.
        let dx = FloatBuffer([Float](repeating: 10, count: 16))
        let dy = FloatBuffer([1, 2, 3, 4])
        maxPoolBackward(dInput: dx.pointer, dOutput: dy.pointer, argmax: argmax, shape: g3)
        var expected = [Float](repeating: 10, count: 16)
        expected[1] += 3
        expected[5] += 3
        expected[6] += 4
        XCTAssertEqual(dx.array, expected)

        // Padding counts as −∞: an all-negative plane keeps its negative maxima.
        let neg = FloatBuffer([-5, -6, -7, -8])
        let g = try PoolShape(n: 1, c: 1, h: 2, w: 2, kernel: 3, stride: 2, pad: 1)
        let out = FloatBuffer(count: 1)
        var am: [Int32] = [-1]
        maxPoolForward(output: out.pointer, argmax: &am, input: neg.pointer, shape: g)
        XCTAssertEqual(out.array, [-5])
        XCTAssertEqual(am, [0])
    }

    func testGlobalAvgPoolForward() {
        let x = FloatBuffer([1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6])
        let y = FloatBuffer(count: 2)
        globalAvgPoolForward(output: y.pointer, input: x.pointer, nc: 2, hw: 6)
        XCTAssertEqual(y.array, [3.5, -3.5])
    }

    // MARK: linear

    func testLinearForwardMatchesNaiveLoops() {
        let n = 5
        let inF = 9
        let outF = 4
        let x = randomBuffer(n * inF, seed: 95)
        let w = randomBuffer(outF * inF, seed: 96)
        let b = randomBuffer(outF, seed: 97)
        let y = FloatBuffer(count: n * outF)
        linearForward(
            output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer, n: n,
            inFeatures: inF, outFeatures: outF)
        for i in 0..<n {
            for o in 0..<outF {
                var acc = Double(b[o])
                for j in 0..<inF { acc += Double(x[i * inF + j]) * Double(w[o * inF + j]) }
                XCTAssertEqual(Double(y[i * outF + o]), acc, accuracy: 1e-5)
            }
        }
        // Without bias.
        linearForward(
            output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, n: n,
            inFeatures: inF, outFeatures: outF)
        var acc = 0.0
        for j in 0..<inF { acc += Double(x[j]) * Double(w[j]) }
        XCTAssertEqual(Double(y[0]), acc, accuracy: 1e-5)
    }

    // MARK: shape validation

    private func assertThrowsCSGDError(
        _ make: @autoclosure () throws -> Any, mentioning words: [String],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try make(), file: file, line: line) { error in
            guard let e = error as? CSGDError else {
                return XCTFail("not a CSGDError: \(error)", file: file, line: line)
            }
            for word in words {
                XCTAssertTrue(
                    e.message.contains(word), "'\(e.message)' lacks '\(word)'", file: file,
                    line: line)
            }
        }
    }

    func testBadConvShapesThrow() {
        assertThrowsCSGDError(
            try Conv2dShape(n: 1, c: 3, h: 4, w: 4, k: 8, r: 7, s: 7, stride: 1, pad: 1),
            mentioning: ["kernel 7x7", "larger", "6x6"])
        assertThrowsCSGDError(
            try Conv2dShape(n: 1, c: 3, h: 8, w: 2, k: 8, r: 3, s: 3, stride: 1, pad: 0),
            mentioning: ["kernel 3x3", "8x2"])
        assertThrowsCSGDError(
            try Conv2dShape(n: 0, c: 3, h: 8, w: 8, k: 8, r: 3, s: 3, stride: 1, pad: 1),
            mentioning: ["sizes must be positive", "N=0"])
        assertThrowsCSGDError(
            try Conv2dShape(n: 2, c: 3, h: 8, w: 8, k: 0, r: 3, s: 3, stride: 1, pad: 1),
            mentioning: ["K=0"])
        assertThrowsCSGDError(
            try Conv2dShape(n: 2, c: 3, h: 8, w: 8, k: 4, r: 3, s: 3, stride: 0, pad: 1),
            mentioning: ["stride=0"])
    }

    func testBadPoolShapesThrow() {
        assertThrowsCSGDError(
            try PoolShape(n: 1, c: 1, h: 2, w: 2, kernel: 5, stride: 1, pad: 0),
            mentioning: ["kernel 5", "larger"])
        assertThrowsCSGDError(
            try PoolShape(n: 1, c: 0, h: 4, w: 4, kernel: 2, stride: 2, pad: 0),
            mentioning: ["sizes must be positive"])
        assertThrowsCSGDError(
            try PoolShape(n: 1, c: 1, h: 4, w: 4, kernel: 2, stride: 2, pad: 2),
            mentioning: ["pad 2", "kernel"])
    }
}
