// The kernels behind imported graphs (depthwise and grouped conv, ReLU6, concat, average
// pooling): forward against naive Double loops, backward by finite differences (GradCheck.swift
// for h and rtol), including that each backward accumulates.

import CSGDCore
import CSGDKernels
import XCTest

/// Direct grouped convolution in Double: filter k reads input channels of group
/// k / (K / groups) only (groups == C is depthwise, groups == 1 dense).
func naiveGroupedConv(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>?,
    _ g: Conv2dShape, groups: Int
) -> [Double] {
    let cg = g.c / groups
    let kg = g.k / groups
    var out = [Double](repeating: 0, count: g.n * g.k * g.p * g.q)
    for n in 0..<g.n {
        for k in 0..<g.k {
            let c0 = (k / kg) * cg
            for p in 0..<g.p {
                for q in 0..<g.q {
                    var acc = b.map { Double($0[k]) } ?? 0
                    for ci in 0..<cg {
                        for r in 0..<g.r {
                            let hi = p * g.stride - g.pad + r
                            if hi < 0 || hi >= g.h { continue }
                            for s in 0..<g.s {
                                let wi = q * g.stride - g.pad + s
                                if wi < 0 || wi >= g.w { continue }
                                acc +=
                                    Double(x[((n * g.c + c0 + ci) * g.h + hi) * g.w + wi])
                                    * Double(w[((k * cg + ci) * g.r + r) * g.s + s])
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

/// max |y − ref| over max(1, max |ref|), NaN counting as infinitely far.
func relativeMaxDiff(_ y: FloatBuffer, _ ref: [Double]) -> Double {
    var maxDiff = 0.0
    var magnitude = 1.0
    for j in 0..<ref.count {
        let d = abs(Double(y[j]) - ref[j])
        maxDiff = d.isNaN ? .infinity : max(maxDiff, d)
        magnitude = max(magnitude, abs(ref[j]))
    }
    return maxDiff / magnitude
}

final class GraphOpsTests: XCTestCase {
    static func conv(
        n: Int, c: Int, h: Int, w: Int, k: Int, r: Int, s: Int, stride: Int, pad: Int
    ) -> Conv2dShape {
        try! Conv2dShape(n: n, c: c, h: h, w: w, k: k, r: r, s: s, stride: stride, pad: pad)
    }

    /// Depthwise geometries (K = C): strides 1/2/3, pads 0–2, odd and non-square sizes, a
    /// non-square kernel, taps entirely in the padding, and rows wide enough for the 8-lane path.
    static let depthwise: [(String, Conv2dShape)] = [
        ("3x3 s1 p1 C5 7x7", conv(n: 2, c: 5, h: 7, w: 7, k: 5, r: 3, s: 3, stride: 1, pad: 1)),
        ("3x3 s2 p1 C3 9x6", conv(n: 3, c: 3, h: 9, w: 6, k: 3, r: 3, s: 3, stride: 2, pad: 1)),
        ("3x3 s1 p0 C4 5x19", conv(n: 2, c: 4, h: 5, w: 19, k: 4, r: 3, s: 3, stride: 1, pad: 0)),
        ("5x5 s1 p2 C2 2x3", conv(n: 2, c: 2, h: 2, w: 3, k: 2, r: 5, s: 5, stride: 1, pad: 2)),
        ("3x2 s3 p1 C3 8x7", conv(n: 2, c: 3, h: 8, w: 7, k: 3, r: 3, s: 2, stride: 3, pad: 1)),
        ("3x3 s2 p1 C6 4x17", conv(n: 2, c: 6, h: 4, w: 17, k: 6, r: 3, s: 3, stride: 2, pad: 1)),
    ]

    /// Grouped geometries (1 < groups < C), batch 1 (slices used in place) and > 1 (gathered).
    static let grouped: [(String, Conv2dShape, Int)] = [
        (
            "3x3 s1 p1 C6 K9 g3 N2",
            conv(n: 2, c: 6, h: 5, w: 6, k: 9, r: 3, s: 3, stride: 1, pad: 1), 3
        ),
        (
            "3x3 s2 p1 C4 K6 g2 N1",
            conv(n: 1, c: 4, h: 7, w: 5, k: 6, r: 3, s: 3, stride: 2, pad: 1), 2
        ),
        (
            "1x1 s1 p0 C8 K4 g4 N3",
            conv(n: 3, c: 8, h: 3, w: 5, k: 4, r: 1, s: 1, stride: 1, pad: 0), 4
        ),
        (
            "3x3 s1 p1 C4 K8 g2 N2 (depthwise-like k/g 4)",
            conv(n: 2, c: 4, h: 4, w: 4, k: 8, r: 3, s: 3, stride: 1, pad: 1), 2
        ),
    ]

    // MARK: depthwise conv

    func testDepthwiseForwardMatchesDirectConvolution() {
        for (i, (name, g)) in Self.depthwise.enumerated() {
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 500 + UInt64(i))
            let w = randomBuffer(g.c * g.r * g.s, seed: 600 + UInt64(i))
            let b = randomBuffer(g.c, seed: 700 + UInt64(i))
            let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            y.buffer.update(repeating: .nan)  // every output must be written
            depthwiseConv2dForward(
                output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer, shape: g)
            let ref = naiveGroupedConv(x.pointer, w.pointer, b.pointer, g, groups: g.c)
            // Float32 sums of ≤ 25 products: rounding ≈ 1e-7 of the magnitude.
            XCTAssertLessThanOrEqual(relativeMaxDiff(y, ref), 1e-5, "depthwise forward \(name)")
            // Without a bias.
            depthwiseConv2dForward(
                output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g)
            let refNoBias = naiveGroupedConv(x.pointer, w.pointer, nil, g, groups: g.c)
            XCTAssertLessThanOrEqual(
                relativeMaxDiff(y, refNoBias), 1e-5, "depthwise forward \(name), no bias")
        }
    }

    func testDepthwiseGradients() {
        for (i, (name, g)) in Self.depthwise.enumerated() {
            let seed = 800 + UInt64(i) * 10
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: seed)
            let w = randomBuffer(g.c * g.r * g.s, seed: seed + 1, -0.5, 0.5)
            let b = randomBuffer(g.c, seed: seed + 2)
            let dx = FloatBuffer(count: x.count)
            let dw = FloatBuffer(count: w.count)
            let db = FloatBuffer(count: b.count)
            let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            checkGradients(
                "depthwise \(name)",
                inputs: [
                    GradInput("input", x, dx), GradInput("weight", w, dw),
                    GradInput("bias", b, db),
                ], h: Step.linear, rtol: 1e-2, seed: seed,
                forward: {
                    depthwiseConv2dForward(
                        output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer,
                        shape: g)
                    return (UnsafePointer(y.pointer), y.count)
                },
                backward: { dy in
                    depthwiseConv2dBackward(
                        dInput: dx.pointer, dWeight: dw.pointer, dBias: db.pointer, dOutput: dy,
                        input: x.pointer, weight: w.pointer, shape: g)
                })
        }
    }

    func testDepthwiseWithoutInputGradientLeavesWeightGradientEqual() {
        let g = Self.depthwise[1].1
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 1)
        let w = randomBuffer(g.c * g.r * g.s, seed: 2)
        let dy = randomBuffer(g.n * g.k * g.p * g.q, seed: 3)
        let dx = FloatBuffer(count: x.count)
        let dw1 = FloatBuffer(count: w.count)
        let dw2 = FloatBuffer(count: w.count)
        depthwiseConv2dBackward(
            dInput: dx.pointer, dWeight: dw1.pointer, dBias: nil, dOutput: dy.pointer,
            input: x.pointer, weight: w.pointer, shape: g)
        depthwiseConv2dBackward(
            dInput: nil, dWeight: dw2.pointer, dBias: nil, dOutput: dy.pointer, input: x.pointer,
            weight: w.pointer, shape: g)
        XCTAssertEqual(dw1.array, dw2.array)
        XCTAssertTrue(dx.array.contains { $0 != 0 })
    }

    /// An eval-mode BatchNorm (+ ReLU) epilogue equals the depthwise conv followed by the
    /// BatchNorm kernel, bitwise (the same per-element affine on the same conv output).
    func testDepthwiseEpilogueEqualsConvThenBatchNorm() {
        let g = Self.depthwise[0].1
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 11)
        let w = randomBuffer(g.c * g.r * g.s, seed: 12)
        let mean = randomBuffer(g.c, seed: 13)
        let variance = randomBuffer(g.c, seed: 14, 0.5, 2)
        let scale = randomBuffer(g.c, seed: 15)
        let shift = randomBuffer(g.c, seed: 16)
        let count = g.n * g.k * g.p * g.q
        let plain = FloatBuffer(count: count)
        let fused = FloatBuffer(count: count)
        let a = FloatBuffer(count: g.c)
        let b = FloatBuffer(count: g.c)
        let config = BatchNormConfig()
        depthwiseConv2dForward(
            output: plain.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g)
        batchNormForwardEval(
            output: plain.pointer, input: plain.pointer, runningMean: mean.pointer,
            runningVar: variance.pointer, scale: scale.pointer, shift: shift.pointer, n: g.n,
            c: g.c, hw: g.p * g.q, config: config, relu: true)
        batchNormEvalAffine(
            a: a.pointer, b: b.pointer, runningMean: mean.pointer, runningVar: variance.pointer,
            scale: scale.pointer, shift: shift.pointer, c: g.c, config: config)
        depthwiseConv2dForward(
            output: fused.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            epilogue: ChannelAffine(scale: a.pointer, shift: b.pointer, relu: true))
        XCTAssertEqual(fused.array, plain.array)
        XCTAssertTrue(plain.array.contains { $0 == 0 } && plain.array.contains { $0 > 0 })
    }

    // MARK: grouped conv

    func testGroupedForwardMatchesDirectConvolution() {
        for (i, (name, g, groups)) in Self.grouped.enumerated() {
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 900 + UInt64(i))
            let w = randomBuffer(g.k * g.rowLength / groups, seed: 910 + UInt64(i))
            let b = randomBuffer(g.k, seed: 920 + UInt64(i))
            let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            y.buffer.update(repeating: .nan)
            let ws = FloatBuffer(count: g.groupedWorkspaceCount(groups: groups))
            groupedConv2dForward(
                output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer, shape: g,
                groups: groups, workspace: ws.pointer)
            let ref = naiveGroupedConv(x.pointer, w.pointer, b.pointer, g, groups: groups)
            XCTAssertLessThanOrEqual(relativeMaxDiff(y, ref), 1e-5, "grouped forward \(name)")
        }
    }

    func testGroupedGradients() {
        for (i, (name, g, groups)) in Self.grouped.enumerated() {
            let seed = 1000 + UInt64(i) * 10
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: seed)
            let w = randomBuffer(g.k * g.rowLength / groups, seed: seed + 1, -0.5, 0.5)
            let b = randomBuffer(g.k, seed: seed + 2)
            let dx = FloatBuffer(count: x.count)
            let dw = FloatBuffer(count: w.count)
            let db = FloatBuffer(count: b.count)
            let y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            let ws = FloatBuffer(count: g.groupedWorkspaceCount(groups: groups))
            checkGradients(
                "grouped \(name)",
                inputs: [
                    GradInput("input", x, dx), GradInput("weight", w, dw),
                    GradInput("bias", b, db),
                ], h: Step.linear, rtol: 1e-2, seed: seed,
                forward: {
                    groupedConv2dForward(
                        output: y.pointer, input: x.pointer, weight: w.pointer, bias: b.pointer,
                        shape: g, groups: groups, workspace: ws.pointer)
                    return (UnsafePointer(y.pointer), y.count)
                },
                backward: { dy in
                    groupedConv2dBackward(
                        dInput: dx.pointer, dWeight: dw.pointer, dBias: db.pointer, dOutput: dy,
                        input: x.pointer, weight: w.pointer, shape: g, groups: groups,
                        workspace: ws.pointer)
                })
        }
    }

    /// The grouped epilogue offsets the per-channel affine to each group's filters.
    func testGroupedEpilogueEqualsConvThenAffine() {
        let (_, g, groups) = Self.grouped[0]
        let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 21)
        let w = randomBuffer(g.k * g.rowLength / groups, seed: 22)
        let a = randomBuffer(g.k, seed: 23)
        let b = randomBuffer(g.k, seed: 24)
        let count = g.n * g.k * g.p * g.q
        let plain = FloatBuffer(count: count)
        let fused = FloatBuffer(count: count)
        let ws = FloatBuffer(count: g.groupedWorkspaceCount(groups: groups))
        groupedConv2dForward(
            output: plain.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            groups: groups, workspace: ws.pointer)
        groupedConv2dForward(
            output: fused.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
            groups: groups, workspace: ws.pointer,
            epilogue: ChannelAffine(scale: a.pointer, shift: b.pointer, relu: false))
        let pq = g.p * g.q
        var maxDiff: Float = 0
        for i in 0..<count {
            let k = (i / pq) % g.k
            maxDiff = max(maxDiff, abs(fused[i] - (plain[i] * a[k] + b[k])))
        }
        XCTAssertLessThanOrEqual(maxDiff, 1e-5)
    }

    // MARK: ReLU6

    func testRelu6ForwardAndBoundaryGradients() {
        // PyTorch (2.13): nn.ReLU6 is Hardtanh(0, 6), whose backward passes the gradient only
        // where 0 < x < 6: F.relu6([-1, 0, 3, 6, 7]).sum().backward() gives [0, 0, 1, 0, 0].
        // (torch.clamp would give 1 at the bounds; nn.ReLU6 is what models use.)
        let x = FloatBuffer([-1, 0, 3, 6, 7, -0.5, 5.999, 6.001, 2, 0.001, -3, 10])
        let y = FloatBuffer(count: x.count)
        relu6Forward(output: y.pointer, input: x.pointer, count: x.count)
        XCTAssertEqual(y.array, [0, 0, 3, 6, 6, 0, 5.999, 6, 2, 0.001, 0, 6])
        let dy = FloatBuffer([Float](repeating: 1, count: x.count))
        let dx = FloatBuffer([Float](repeating: 0.25, count: x.count))
        relu6Backward(dInput: dx.pointer, dOutput: dy.pointer, output: y.pointer, count: x.count)
        XCTAssertEqual(
            dx.array, [0.25, 0.25, 1.25, 0.25, 0.25, 0.25, 1.25, 0.25, 1.25, 1.25, 0.25, 0.25])
        // In place.
        relu6Forward(output: x.pointer, input: x.pointer, count: x.count)
        XCTAssertEqual(x.array, y.array)
    }

    func testRelu6Gradients() {
        // Values at least 0.05 > 2h from both kinks (0 and 6), on both sides of each.
        var rng = Rng(seed: 31)
        let count = 61
        let x = FloatBuffer(
            (0..<count).map { i in
                let base: [Float] = [-1.5, 1, 3, 7]
                return base[i % 4] + (0.05 + 0.9 * rng.nextFloat()) * (i % 2 == 0 ? 1 : -1)
            })
        let dx = FloatBuffer(count: count)
        let y = FloatBuffer(count: count)
        checkGradients(
            "relu6", inputs: [GradInput("input", x, dx)], h: Step.piecewiseLinear, rtol: 1e-2,
            seed: 32,
            forward: {
                relu6Forward(output: y.pointer, input: x.pointer, count: count)
                return (UnsafePointer(y.pointer), count)
            },
            backward: { dy in
                relu6Backward(dInput: dx.pointer, dOutput: dy, output: y.pointer, count: count)
            })
        XCTAssertTrue(y.array.contains(6) && y.array.contains(0))
    }

    // MARK: concat

    func testConcatForwardAndBackward() {
        let n = 3
        let hw = 5
        let channels = [2, 1, 3]
        let offsets = [0, 2, 3]
        let total = 6
        let xs = channels.enumerated().map { randomBuffer(n * $1 * hw, seed: 40 + UInt64($0)) }
        let y = FloatBuffer(count: n * total * hw)
        y.buffer.update(repeating: .nan)
        for j in 0..<3 {
            concatForward(
                output: y.pointer, input: xs[j].pointer, offset: offsets[j], channels: channels[j],
                totalChannels: total, n: n, hw: hw)
        }
        for i in 0..<n {
            for c in 0..<total {
                let j = offsets.lastIndex { $0 <= c }!
                for e in 0..<hw {
                    XCTAssertEqual(
                        y[(i * total + c) * hw + e],
                        xs[j][(i * channels[j] + c - offsets[j]) * hw + e])
                }
            }
        }
        for j in 0..<3 {
            let dx = FloatBuffer(count: xs[j].count)
            checkGradients(
                "concat input \(j)", inputs: [GradInput("input", xs[j], dx)], h: Step.linear,
                rtol: 1e-2, seed: 45 + UInt64(j),
                forward: {
                    for k in 0..<3 {
                        concatForward(
                            output: y.pointer, input: xs[k].pointer, offset: offsets[k],
                            channels: channels[k], totalChannels: total, n: n, hw: hw)
                    }
                    return (UnsafePointer(y.pointer), y.count)
                },
                backward: { dy in
                    concatBackward(
                        dInput: dx.pointer, dOutput: dy, offset: offsets[j], channels: channels[j],
                        totalChannels: total, n: n, hw: hw)
                })
            // overwrite stores the slice whatever the buffer held.
            let dy = randomBuffer(y.count, seed: 49)
            let fromZero = FloatBuffer(count: dx.count)
            concatBackward(
                dInput: fromZero.pointer, dOutput: dy.pointer, offset: offsets[j],
                channels: channels[j], totalChannels: total, n: n, hw: hw)
            dx.buffer.update(repeating: .nan)
            concatBackward(
                dInput: dx.pointer, dOutput: dy.pointer, offset: offsets[j], channels: channels[j],
                totalChannels: total, n: n, hw: hw, overwrite: true)
            XCTAssertEqual(dx.array, fromZero.array)
        }
    }

    // MARK: average pooling

    /// Naive PyTorch AvgPool2d (floor mode) in Double.
    private func naiveAvgPool(_ x: FloatBuffer, _ g: PoolShape, countIncludePad: Bool)
        -> [Double]
    {
        var out: [Double] = []
        for plane in 0..<(g.n * g.c) {
            for p in 0..<g.p {
                for q in 0..<g.q {
                    var sum = 0.0
                    var inside = 0
                    for r in 0..<g.kernel {
                        for s in 0..<g.kernel {
                            let hi = p * g.stride - g.pad + r
                            let wi = q * g.stride - g.pad + s
                            if hi < 0 || hi >= g.h || wi < 0 || wi >= g.w { continue }
                            sum += Double(x[(plane * g.h + hi) * g.w + wi])
                            inside += 1
                        }
                    }
                    // Floor mode never lets a window leave the padded input: kernel² entries.
                    out.append(sum / Double(countIncludePad ? g.kernel * g.kernel : inside))
                }
            }
        }
        return out
    }

    static let pools: [PoolShape] = [
        try! PoolShape(n: 2, c: 3, h: 7, w: 6, kernel: 3, stride: 2, pad: 1),
        try! PoolShape(n: 2, c: 2, h: 5, w: 8, kernel: 2, stride: 2, pad: 0),
        try! PoolShape(n: 1, c: 2, h: 5, w: 5, kernel: 3, stride: 1, pad: 1),
        try! PoolShape(n: 2, c: 1, h: 9, w: 7, kernel: 5, stride: 3, pad: 2),
    ]

    func testAvgPoolForwardMatchesNaiveBothCountModes() throws {
        for (i, g) in Self.pools.enumerated() {
            let x = randomBuffer(g.n * g.c * g.h * g.w, seed: 60 + UInt64(i))
            let y = FloatBuffer(count: g.n * g.c * g.p * g.q)
            for include in [true, false] {
                y.buffer.update(repeating: .nan)
                avgPoolForward(
                    output: y.pointer, input: x.pointer, shape: g, countIncludePad: include)
                let ref = naiveAvgPool(x, g, countIncludePad: include)
                XCTAssertLessThanOrEqual(
                    relativeMaxDiff(y, ref), 1e-6, "avgpool \(i) countIncludePad \(include)")
            }
        }
        // Hand example: 3×3 ones, kernel 3, pad 1: a corner window covers 4 of 9 entries.
        let g = try PoolShape(n: 1, c: 1, h: 3, w: 3, kernel: 3, stride: 1, pad: 1)
        let ones = FloatBuffer([Float](repeating: 1, count: 9))
        let y = FloatBuffer(count: 9)
        avgPoolForward(output: y.pointer, input: ones.pointer, shape: g, countIncludePad: true)
        XCTAssertEqual(y[0], 4 / 9)
        XCTAssertEqual(y[1], 6 / 9)
        XCTAssertEqual(y[4], 1)
        avgPoolForward(output: y.pointer, input: ones.pointer, shape: g, countIncludePad: false)
        XCTAssertEqual(y.array, [Float](repeating: 1, count: 9))
    }

    func testAvgPoolGradientsBothCountModes() {
        for (i, g) in Self.pools.enumerated() {
            for include in [true, false] {
                let seed = 70 + UInt64(i) * 2 + (include ? 1 : 0)
                let x = randomBuffer(g.n * g.c * g.h * g.w, seed: seed)
                let dx = FloatBuffer(count: x.count)
                let y = FloatBuffer(count: g.n * g.c * g.p * g.q)
                checkGradients(
                    "avgpool \(i) countIncludePad \(include)", inputs: [GradInput("input", x, dx)],
                    h: Step.linear, rtol: 1e-2, seed: seed,
                    forward: {
                        avgPoolForward(
                            output: y.pointer, input: x.pointer, shape: g, countIncludePad: include)
                        return (UnsafePointer(y.pointer), y.count)
                    },
                    backward: { dy in
                        avgPoolBackward(
                            dInput: dx.pointer, dOutput: dy, shape: g, countIncludePad: include)
                    })
            }
        }
    }
}
