// Finite-difference checks of every backward kernel (see GradCheck.swift for h and rtol),
// including that each backward accumulates into its gradient outputs.

import CSGDCore
import XCTest

@testable import CSGDKernels

/// Conv geometries shared by the gradient checks and the forward reference tests.
enum ConvCases {
    /// (name, shape) pairs: batch > 1, strides 1/2/3, pads 0/1/2/3, 1×1 (pointwise and
    /// strided), 3×3, 5×5, 7×7, non-square kernels, non-square inputs, odd channel counts, and
    /// kernel taps that fall entirely into the padding (rows and columns, stride 1 and 2).
    /// Stride-1 cases with Q == W take im2col's shifted-plane path, the rest the row path.
    static let small: [(String, Conv2dShape)] = [
        ("3x3 s1 p1 C3 K5", conv(n: 2, c: 3, h: 5, w: 5, k: 5, r: 3, s: 3, stride: 1, pad: 1)),
        ("3x3 s2 p1 C6 K7 7x5", conv(n: 2, c: 6, h: 7, w: 5, k: 7, r: 3, s: 3, stride: 2, pad: 1)),
        ("3x3 s1 p0 C4 K3 6x5", conv(n: 2, c: 4, h: 6, w: 5, k: 3, r: 3, s: 3, stride: 1, pad: 0)),
        ("3x3 s2 p0 C3 K2 7x8", conv(n: 3, c: 3, h: 7, w: 8, k: 2, r: 3, s: 3, stride: 2, pad: 0)),
        ("3x3 s3 p1 C2 K3 8x7", conv(n: 2, c: 2, h: 8, w: 7, k: 3, r: 3, s: 3, stride: 3, pad: 1)),
        ("3x3 s1 p3 C2 K3 2x3", conv(n: 2, c: 2, h: 2, w: 3, k: 3, r: 3, s: 3, stride: 1, pad: 3)),
        ("1x1 s1 p0 C6 K7 4x5", conv(n: 3, c: 6, h: 4, w: 5, k: 7, r: 1, s: 1, stride: 1, pad: 0)),
        ("1x1 s2 p0 C5 K3 7x6", conv(n: 2, c: 5, h: 7, w: 6, k: 3, r: 1, s: 1, stride: 2, pad: 0)),
        (
            "7x7 s2 p3 C3 K4 9x10",
            conv(n: 2, c: 3, h: 9, w: 10, k: 4, r: 7, s: 7, stride: 2, pad: 3)
        ),
        ("7x7 s2 p3 C2 K3 2x3", conv(n: 2, c: 2, h: 2, w: 3, k: 3, r: 7, s: 7, stride: 2, pad: 3)),
        ("3x2 s1 p1 C2 K3 5x6", conv(n: 2, c: 2, h: 5, w: 6, k: 3, r: 3, s: 2, stride: 1, pad: 1)),
        ("5x5 s1 p2 C2 K3 2x5", conv(n: 2, c: 2, h: 2, w: 5, k: 3, r: 5, s: 5, stride: 1, pad: 2)),
        ("3x1 s1 p0 C3 K2 6x4", conv(n: 2, c: 3, h: 6, w: 4, k: 2, r: 3, s: 1, stride: 1, pad: 0)),
        ("1x3 s1 p1 C3 K2 5x4", conv(n: 2, c: 3, h: 5, w: 4, k: 2, r: 1, s: 3, stride: 1, pad: 1)),
        // Wide enough rows for the 8-at-a-time stride-2 gather/scatter (plus scalar tails).
        (
            "3x3 s2 p1 C6 K4 5x17",
            conv(n: 2, c: 6, h: 5, w: 17, k: 4, r: 3, s: 3, stride: 2, pad: 1)
        ),
        (
            "1x1 s2 p0 C4 K3 5x18",
            conv(n: 2, c: 4, h: 5, w: 18, k: 3, r: 1, s: 1, stride: 2, pad: 0)
        ),
    ]

    /// Geometries where im2col runs in more than one chunk. A chunk holds
    /// max(1, min(N, 262144 / (C·R·S·P·Q))) images (1 MiB of columns; with the earlier 16 MiB
    /// budget, C=16, 3×3, 64×64, N=4 would have been ONE chunk: 4194304 / (144·4096) = 7 ≥ 4).
    /// • per-image GEMMs (P·Q ≥ 256): C·R·S·P·Q = 36·2500 = 90000 → chunk 2, N = 3: a full
    ///   chunk of 2 read with ldb = 2·P·Q, then a remainder chunk of 1 at n0 = 2.
    /// • batched GEMM through the staging block (P·Q = 64 < 256): 288·64 = 18432 → chunk 14,
    ///   N = 16: chunks of 14 and 2, stride 2 on a non-square input.
    static let chunked: [(String, Conv2dShape)] = [
        ("chunked per-image", conv(n: 3, c: 4, h: 50, w: 50, k: 3, r: 3, s: 3, stride: 1, pad: 1)),
        ("chunked batched", conv(n: 16, c: 32, h: 16, w: 15, k: 3, r: 3, s: 3, stride: 2, pad: 1)),
    ]

    static func conv(n: Int, c: Int, h: Int, w: Int, k: Int, r: Int, s: Int, stride: Int, pad: Int)
        -> Conv2dShape
    {
        try! Conv2dShape(n: n, c: c, h: h, w: w, k: k, r: r, s: s, stride: stride, pad: pad)
    }

    /// Images per im2col chunk (the public workspace size no longer tells: for 3×3 stride-1
    /// shapes it also covers the Winograd path).
    static func chunk(_ g: Conv2dShape) -> Int {
        g.isPointwise ? g.n : ConvPlan(g).chunk
    }
}

final class KernelGradientTests: XCTestCase {
    // MARK: conv2d

    /// Gradient check of conv2d w.r.t. input, weight and bias on one geometry.
    private func checkConv(
        _ name: String, _ g: Conv2dShape, bias: Bool = true, inputGrad: Bool = true,
        samples: Int = 256, seed: UInt64, file: StaticString = #filePath, line: UInt = #line
    ) {
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: seed)
        let w = randomBuffer(g.k * g.rowLength, seed: seed + 1, -0.5, 0.5)
        let b = randomBuffer(g.k, seed: seed + 2)
        let dx = FloatBuffer(count: x.count)
        let dw = FloatBuffer(count: w.count)
        let db = FloatBuffer(count: b.count)
        let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
        let ws = FloatBuffer(count: g.workspaceCount)
        var inputs = [GradInput("weight", w, dw)]
        if bias { inputs.append(GradInput("bias", b, db)) }
        if inputGrad { inputs.append(GradInput("input", x, dx)) }
        checkGradients(
            "conv2d \(name)", inputs: inputs, h: Step.linear, rtol: 1e-2, samples: samples,
            seed: seed,
            forward: {
                conv2dForward(
                    output: y.pointer, input: x.pointer, weight: w.pointer,
                    bias: bias ? b.pointer : nil, shape: g, workspace: ws.pointer)
                return (UnsafePointer(y.pointer), y.count)
            },
            backward: { dy in
                conv2dBackward(
                    dInput: inputGrad ? dx.pointer : nil, dWeight: dw.pointer,
                    dBias: bias ? db.pointer : nil, dOutput: dy, input: x.pointer,
                    weight: w.pointer, shape: g, workspace: ws.pointer)
            }, file: file, line: line)
    }

    func testConv2dGradients() {
        for (i, (name, g)) in ConvCases.small.enumerated() {
            checkConv(name, g, seed: 100 + UInt64(i) * 10)
        }
    }

    func testConv2dGradientsWithoutBiasOrInputGradient() {
        // The stem: no bias, no input gradient (dInput nil), both code paths.
        checkConv("stem 3x3", ConvCases.small[0].1, bias: false, inputGrad: false, seed: 7)
        checkConv("stem 1x1", ConvCases.small[6].1, bias: false, inputGrad: false, seed: 8)
    }

    func testConv2dGradientsChunkedIm2col() {
        for (i, (name, g)) in ConvCases.chunked.enumerated() {
            let chunk = ConvCases.chunk(g)
            XCTAssertTrue(
                chunk > 1 && g.n > chunk && g.n % chunk != 0,
                "\(name): needs full chunks of > 1 image plus a remainder (chunk \(chunk))")
            checkConv(name, g, samples: 200, seed: 42 + UInt64(i))
        }
    }

    // MARK: batch norm

    func testBatchNormTrainingGradients() {
        let n = 3
        let c = 4
        let hw = 15
        let count = n * c * hw
        // Per-channel offsets and spreads so mean ≠ 0 and var ≠ 1.
        var rng = Rng(seed: 11)
        let x = FloatBuffer(
            (0..<count).map { i in
                let ch = Float((i / hw) % c)
                return (0.5 + ch) * (2 * rng.nextFloat() - 1) + ch - 1.5
            })
        let scale = FloatBuffer([0.7, -1.3, 1.1, 0.9])
        let shift = FloatBuffer([0.2, -0.4, 0.0, 1.0])
        let dx = FloatBuffer(count: count)
        let dScale = FloatBuffer(count: c)
        let dShift = FloatBuffer(count: c)
        let y = FloatBuffer(count: count)
        let saveMean = FloatBuffer(count: c)
        let saveInvStd = FloatBuffer(count: c)
        let runMean = FloatBuffer(count: c)
        let runVar = FloatBuffer([1, 1, 1, 1])
        // h = 1e-3: BN is smooth but not linear (see GradCheck.swift); the running stats are
        // snapshotted and restored around every evaluation.
        checkGradients(
            "batchnorm train",
            inputs: [
                GradInput("input", x, dx), GradInput("scale", scale, dScale),
                GradInput("shift", shift, dShift),
            ], state: [runMean, runVar], h: Step.batchNorm, rtol: 1e-2, seed: 12,
            forward: {
                batchNormForwardTraining(
                    output: y.pointer, saveMean: saveMean.pointer, saveInvStd: saveInvStd.pointer,
                    runningMean: runMean.pointer, runningVar: runVar.pointer, input: x.pointer,
                    scale: scale.pointer, shift: shift.pointer, n: n, c: c, hw: hw)
                return (UnsafePointer(y.pointer), count)
            },
            backward: { dy in
                batchNormBackward(
                    dInput: dx.pointer, dScale: dScale.pointer, dShift: dShift.pointer,
                    dOutput: dy, input: x.pointer, scale: scale.pointer,
                    saveMean: saveMean.pointer, saveInvStd: saveInvStd.pointer, n: n, c: c,
                    hw: hw)
            })
        XCTAssertEqual(runMean.array, [0, 0, 0, 0], "state restored after the check")
        XCTAssertEqual(runVar.array, [1, 1, 1, 1], "state restored after the check")
    }

    // MARK: elementwise

    func testReluGradients() {
        // |x| ≥ 0.05 > 2h: no ±h step crosses the kink at 0.
        var rng = Rng(seed: 21)
        let count = 60
        let x = FloatBuffer(
            (0..<count).map { _ in
                let v = 0.05 + 0.95 * rng.nextFloat()
                return rng.nextFloat() < 0.5 ? -v : v
            })
        XCTAssertTrue(x.array.contains { $0 < 0 } && x.array.contains { $0 > 0 })
        let dx = FloatBuffer(count: count)
        let y = FloatBuffer(count: count)
        checkGradients(
            "relu", inputs: [GradInput("input", x, dx)], h: Step.piecewiseLinear, rtol: 1e-2,
            seed: 22,
            forward: {
                reluForward(output: y.pointer, input: x.pointer, count: count)
                return (UnsafePointer(y.pointer), count)
            },
            backward: { dy in
                reluBackward(dInput: dx.pointer, dOutput: dy, output: y.pointer, count: count)
            })
    }

    func testReluMaskInPlaceMatchesReluBackward() {
        let count = 40
        let x = randomBuffer(count, seed: 23)
        x[0] = 0  // the kink itself: both treat output 0 as "not positive"
        let y = FloatBuffer(count: count)
        reluForward(output: y.pointer, input: x.pointer, count: count)
        let dy = randomBuffer(count, seed: 24)
        let dx = FloatBuffer(count: count)
        reluBackward(dInput: dx.pointer, dOutput: dy.pointer, output: y.pointer, count: count)
        reluMaskInPlace(dOutput: dy.pointer, output: y.pointer, count: count)
        XCTAssertEqual(dy.array, dx.array)
        // In place on its own input.
        reluForward(output: x.pointer, input: x.pointer, count: count)
        XCTAssertEqual(x.array, y.array)
    }

    func testAddGradients() {
        let count = 30
        let a = randomBuffer(count, seed: 31)
        let b = randomBuffer(count, seed: 32)
        let da = FloatBuffer(count: count)
        let db = FloatBuffer(count: count)
        let y = FloatBuffer(count: count)
        checkGradients(
            "add", inputs: [GradInput("a", a, da), GradInput("b", b, db)], h: Step.linear,
            rtol: 1e-2,
            seed: 33,
            forward: {
                addForward(output: y.pointer, a: a.pointer, b: b.pointer, count: count)
                return (UnsafePointer(y.pointer), count)
            },
            backward: { dy in
                addBackward(dA: da.pointer, dB: db.pointer, dOutput: dy, count: count)
            })
    }

    // MARK: pooling

    private func checkMaxPool(_ g: PoolShape, seed: UInt64) {
        // Distinct values 0.05 apart (a shuffled ramp): a ±h = ±0.01 step never changes which
        // entry is a window's maximum.
        let count = g.n * g.c * g.h * g.w
        var rng = Rng(seed: seed)
        let x = FloatBuffer(rng.permutation(count).map { Float($0) * 0.05 - Float(count) * 0.025 })
        let dx = FloatBuffer(count: count)
        let outCount = g.n * g.c * g.p * g.q
        let y = FloatBuffer(count: outCount)
        let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: outCount)
        defer { argmax.deallocate() }
        checkGradients(
            "maxpool k\(g.kernel) s\(g.stride) p\(g.pad)", inputs: [GradInput("input", x, dx)],
            h: Step.piecewiseLinear, rtol: 1e-2, seed: seed + 1,
            forward: {
                maxPoolForward(output: y.pointer, argmax: argmax, input: x.pointer, shape: g)
                return (UnsafePointer(y.pointer), outCount)
            },
            backward: { dy in
                maxPoolBackward(dInput: dx.pointer, dOutput: dy, argmax: argmax, shape: g)
            })
    }

    func testMaxPoolGradients() throws {
        // Overlapping windows with padding (the ResNet stem pool) and disjoint 2×2 windows on
        // an odd height (last row dropped).
        checkMaxPool(try PoolShape(n: 2, c: 3, h: 7, w: 6, kernel: 3, stride: 2, pad: 1), seed: 41)
        checkMaxPool(try PoolShape(n: 2, c: 2, h: 5, w: 8, kernel: 2, stride: 2, pad: 0), seed: 43)
    }

    func testGlobalAvgPoolGradients() {
        let nc = 6
        let hw = 7
        let x = randomBuffer(nc * hw, seed: 51)
        let dx = FloatBuffer(count: x.count)
        let y = FloatBuffer(count: nc)
        checkGradients(
            "global avg pool", inputs: [GradInput("input", x, dx)], h: Step.linear, rtol: 1e-2,
            seed: 52,
            forward: {
                globalAvgPoolForward(output: y.pointer, input: x.pointer, nc: nc, hw: hw)
                return (UnsafePointer(y.pointer), nc)
            },
            backward: { dy in
                globalAvgPoolBackward(dInput: dx.pointer, dOutput: dy, nc: nc, hw: hw)
            })
    }

    // MARK: linear and loss

    func testLinearGradients() {
        let n = 4
        let inF = 7
        let outF = 5
        let x = randomBuffer(n * inF, seed: 61)
        let w = randomBuffer(outF * inF, seed: 62)
        let b = randomBuffer(outF, seed: 63)
        let dx = FloatBuffer(count: x.count)
        let dw = FloatBuffer(count: w.count)
        let db = FloatBuffer(count: b.count)
        let y = FloatBuffer(count: n * outF)
        checkGradients(
            "linear",
            inputs: [
                GradInput("input", x, dx), GradInput("weight", w, dw), GradInput("bias", b, db),
            ],
            h: Step.linear, rtol: 1e-2, seed: 64,
            forward: {
                linearForward(
                    output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer, n: n,
                    inFeatures: inF, outFeatures: outF)
                return (UnsafePointer(y.pointer), y.count)
            },
            backward: { dy in
                linearBackward(
                    dInput: dx.pointer, dWeight: dw.pointer, dBias: db.pointer, dOutput: dy,
                    input: x.pointer, weight: w.pointer, n: n, inFeatures: inF, outFeatures: outF)
            })
    }

    func testSoftmaxCrossEntropyGradients() {
        // The loss OVERWRITES dLogits (the chain rule starts there) with
        // scale·(softmax − onehot)/N = ∂(scale·loss)/∂logits; scale ≠ 1 on purpose.
        // Smooth: truncation ≈ h²/6·|∂³| ≈ 2e-5 at h = 1e-2, rounding ≈ ε/h ≈ 6e-6.
        let n = 4
        let classes = 7
        let scale: Float = 0.37
        var rng = Rng(seed: 71)
        let logits = FloatBuffer((0..<(n * classes)).map { _ in 2 * rng.nextGaussian() })
        let labels: [Int32] = [3, 0, 6, 3]
        let dLogits = FloatBuffer(count: logits.count)
        checkScalarGradients(
            "softmax cross-entropy", inputs: [GradInput("logits", logits, dLogits)],
            h: Step.softmax,
            rtol: 1e-2, semantics: .overwrites, seed: 72,
            forward: {
                labels.withUnsafeBufferPointer { lab in
                    Double(scale)
                        * softmaxCrossEntropy(
                            dLogits: nil, logits: logits.pointer, labels: lab.baseAddress!, n: n,
                            classes: classes
                        ).loss
                }
            },
            backward: {
                labels.withUnsafeBufferPointer { lab in
                    _ = softmaxCrossEntropy(
                        dLogits: dLogits.pointer, logits: logits.pointer,
                        labels: lab.baseAddress!, n: n, classes: classes, scale: scale)
                }
            })
    }
}
