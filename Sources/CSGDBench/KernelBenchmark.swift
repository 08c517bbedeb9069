// Kernel micro-benchmarks behind `csgd-dist bench kernels`: raw sgemm throughput, then conv2d
// forward+backward on the ResNet-56 (CIFAR) layer shapes at batch 64, each reported as GFLOP/s
// and as a fraction of the sgemm rate measured in the same run. Per conv shape it also times
// the exact GEMM calls the conv makes, without im2col/col2im, so the gap between the two rows
// is the cost of the data movement around the GEMMs.
//
// `BenchResult` is deliberately generic (name, value, unit, named extras) so train-step,
// communication and pruning benchmarks can report through the same table/JSON code.

import CSGDCore
import CSGDKernels
import Foundation

/// One measured quantity of a benchmark run.
public struct BenchResult: Sendable, Equatable, Codable {
    /// Row name, e.g. `sgemm_1024` or `conv3x3_16-16_32x32`.
    public var name: String
    /// The headline number, in `unit`.
    public var value: Double
    /// Unit of `value`, e.g. `GFLOP/s`, `ms`, `images/s`.
    public var unit: String
    /// Secondary numbers keyed by snake_case name, e.g. `ratio_to_sgemm`, `median_ms`.
    public var extra: [String: Double]

    /// Creates a result row.
    public init(name: String, value: Double, unit: String, extra: [String: Double] = [:]) {
        self.name = name
        self.value = value
        self.unit = unit
        self.extra = extra
    }

    /// Unit string of throughput rows; such rows also carry a `gflops` field in JSON.
    public static let gflopsUnit = "GFLOP/s"

    /// The row as one line of JSON: `name`, `value`, `unit`, `gflops` (GFLOP/s rows only),
    /// then every extra in key order. Non-finite numbers become `null`.
    public var jsonLine: String {
        var fields = [
            "\"name\":\(jsonStringLiteral(name))", "\"value\":\(Self.jsonNumber(value))",
            "\"unit\":\(jsonStringLiteral(unit))",
        ]
        if unit == Self.gflopsUnit && extra["gflops"] == nil {
            fields.append("\"gflops\":\(Self.jsonNumber(value))")
        }
        for key in extra.keys.sorted() {
            fields.append("\(jsonStringLiteral(key)):\(Self.jsonNumber(extra[key]!))")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func jsonNumber(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }

    /// Parses a line written by `jsonLine` (null numbers become NaN); nil if it is not one.
    public init?(jsonLine: String) {
        guard let data = jsonLine.data(using: .utf8),
            let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let name = o["name"] as? String, let unit = o["unit"] as? String
        else { return nil }
        let number = { (v: Any?) in (v as? NSNumber)?.doubleValue ?? .nan }
        var extra: [String: Double] = [:]
        for (k, v) in o where !["name", "value", "unit", "gflops"].contains(k) {
            extra[k] = number(v)
        }
        self.init(name: name, value: number(o["value"]), unit: unit, extra: extra)
    }
}

/// Kernel throughput benchmarks (sgemm and conv2d on ResNet-56 shapes).
public enum KernelBenchmark {
    /// One conv layer geometry of ResNet-56 and how many layers of the network share it.
    public struct ConvCase: Sendable {
        /// Row name, e.g. `conv3x3_16-32_s2_32x32` (input size after the underscore).
        public let name: String
        /// Geometry at the benchmark batch size.
        public let shape: Conv2dShape
        /// How many convs of ResNet-56 have this geometry.
        public let count: Int
        /// Whether backward computes the input gradient (false only for the stem).
        public let inputGradient: Bool

        /// Forward FLOPs: 2·N·K·P·Q·C·R·S.
        public var forwardFlops: Double { 2 * Double(shape.flops) }
        /// Backward FLOPs: weight gradient, plus input gradient when computed (each = forward).
        public var backwardFlops: Double { forwardFlops * (inputGradient ? 2 : 1) }
    }

    /// The distinct conv geometries of CIFAR ResNet-56 (3 stages × 9 basic blocks, 1×1
    /// stride-2 projection shortcuts) with their multiplicities: stage 1 has the stem plus
    /// 18 convs 16→16 (19); stages 2 and 3 each have one strided 3×3, 17 plain 3×3 and one
    /// projection (19 each); 57 convs in all.
    public static func resNet56Convs(batch: Int = 64) -> [ConvCase] {
        func conv(_ c: Int, _ k: Int, _ hw: Int, _ rs: Int, _ stride: Int) -> Conv2dShape {
            try! Conv2dShape(
                n: batch, c: c, h: hw, w: hw, k: k, r: rs, s: rs, stride: stride, pad: rs / 2)
        }
        return [
            ConvCase(
                name: "conv3x3_3-16_32x32_stem", shape: conv(3, 16, 32, 3, 1), count: 1,
                inputGradient: false),
            ConvCase(
                name: "conv3x3_16-16_32x32", shape: conv(16, 16, 32, 3, 1), count: 18,
                inputGradient: true),
            ConvCase(
                name: "conv3x3_16-32_s2_32x32", shape: conv(16, 32, 32, 3, 2), count: 1,
                inputGradient: true),
            ConvCase(
                name: "conv1x1_16-32_s2_32x32", shape: conv(16, 32, 32, 1, 2), count: 1,
                inputGradient: true),
            ConvCase(
                name: "conv3x3_32-32_16x16", shape: conv(32, 32, 16, 3, 1), count: 17,
                inputGradient: true),
            ConvCase(
                name: "conv3x3_32-64_s2_16x16", shape: conv(32, 64, 16, 3, 2), count: 1,
                inputGradient: true),
            ConvCase(
                name: "conv1x1_32-64_s2_16x16", shape: conv(32, 64, 16, 1, 2), count: 1,
                inputGradient: true),
            ConvCase(
                name: "conv3x3_64-64_8x8", shape: conv(64, 64, 8, 3, 1), count: 17,
                inputGradient: true),
        ]
    }

    /// Runs every kernel benchmark once.
    ///
    /// Rows: `sgemm_1024` (square GEMM, the reference rate); per ResNet-56 conv shape
    /// `gemm_<shape>` (only the GEMM calls that conv makes: `conv2dGemmsOnly`) and
    /// `<shape>` (conv2d forward+backward); then the `…_resnet56_mix` aggregates, weighted by
    /// how often each shape occurs in the network (total FLOPs ÷ total time). Every rate row
    /// carries `ratio_to_sgemm` (÷ `sgemm_1024` of this run).
    /// - Parameters:
    ///   - threads: OpenBLAS and kernel threads (`BLASThreads`, `KernelThreads`; ≤ 0 keeps the defaults).
    ///   - repeats: timed repetitions per row after one warm-up; the median is reported.
    public static func run(threads: Int, repeats: Int) -> [BenchResult] {
        BLASThreads.set(threads)
        KernelThreads.set(threads)
        let reps = max(1, repeats)

        // The reference rate is measured before and after the conv rows and the faster of the
        // two is used, so a burst of machine load during one of them cannot inflate ratios.
        let before = sgemmSquareSeconds(size: 1024, repeats: reps)
        var timings: [(ConvCase, ConvTiming)] = []
        for c in resNet56Convs() { timings.append((c, timeConv(c, repeats: reps))) }
        let after = sgemmSquareSeconds(size: 1024, repeats: reps)
        let squareFlops = 2.0 * 1024 * 1024 * 1024
        let sgemmRate = squareFlops / min(before, after) / 1e9
        var results = [
            BenchResult(
                name: "sgemm_1024", value: sgemmRate, unit: BenchResult.gflopsUnit,
                extra: [
                    "ratio_to_sgemm": 1, "median_ms": min(before, after) * 1e3,
                    "first_pass_gflops": squareFlops / before / 1e9,
                    "last_pass_gflops": squareFlops / after / 1e9,
                    "threads": Double(BLASThreads.current),
                ])
        ]

        var convFlops = 0.0
        var convSeconds = 0.0
        var gemmSeconds = 0.0
        var convRows: [BenchResult] = []
        for (c, t) in timings {
            let flops = c.forwardFlops + c.backwardFlops
            let rate = flops / t.total / 1e9
            let gemmRate = flops / t.gemms / 1e9
            results.append(
                BenchResult(
                    name: "gemm_" + c.name, value: gemmRate, unit: BenchResult.gflopsUnit,
                    extra: ["ratio_to_sgemm": gemmRate / sgemmRate, "median_ms": t.gemms * 1e3]))
            convRows.append(
                BenchResult(
                    name: c.name, value: rate, unit: BenchResult.gflopsUnit,
                    extra: [
                        "ratio_to_sgemm": rate / sgemmRate,
                        "ratio_to_gemm_shapes": t.gemms / t.total,
                        "fwd_gflops": c.forwardFlops / t.forward / 1e9,
                        "bwd_gflops": c.backwardFlops / t.backward / 1e9,
                        "median_ms": t.total * 1e3, "count_in_resnet56": Double(c.count),
                    ]))
            convFlops += Double(c.count) * flops
            convSeconds += Double(c.count) * t.total
            gemmSeconds += Double(c.count) * t.gemms
        }
        results += convRows
        let gemmMix = convFlops / gemmSeconds / 1e9
        results.append(
            BenchResult(
                name: "gemm_resnet56_mix", value: gemmMix, unit: BenchResult.gflopsUnit,
                extra: ["ratio_to_sgemm": gemmMix / sgemmRate]))
        let mix = convFlops / convSeconds / 1e9
        results.append(
            BenchResult(
                name: "conv_fwd_bwd_resnet56_mix", value: mix, unit: BenchResult.gflopsUnit,
                extra: [
                    "ratio_to_sgemm": mix / sgemmRate,
                    "ratio_to_gemm_shapes": gemmSeconds / convSeconds,
                    "ms_per_batch": convSeconds * 1e3,
                ]))
        return results
    }

    // MARK: - timing

    /// Seconds elapsed while running `body`.
    static func seconds(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }

    /// Median of `repeats` timings of `sample` after one warm-up call.
    static func median(_ repeats: Int, _ sample: () -> Double) -> Double {
        _ = sample()
        return medianOf((0..<repeats).map { _ in sample() })
    }

    static func medianOf(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A buffer of small seeded values uniform in [−0.1, 0.1) (no denormals, no NaNs).
    static func filled(_ count: Int, seed: UInt64) -> FloatBuffer {
        var rng = Rng(seed: seed)
        let b = FloatBuffer(count: count)
        for i in 0..<count { b[i] = 0.2 * rng.nextFloat() - 0.1 }
        return b
    }

    /// Median seconds of one square sgemm of side `n`.
    static func sgemmSquareSeconds(size n: Int, repeats: Int) -> Double {
        let a = filled(n * n, seed: 1)
        let b = filled(n * n, seed: 2)
        let c = FloatBuffer(count: n * n)
        return median(repeats) {
            seconds {
                sgemm(
                    transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a.pointer,
                    lda: n, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
            }
        }
    }

    /// Median seconds of one conv case (see `timeConv`).
    struct ConvTiming {
        var forward: Double
        var backward: Double
        /// Forward + backward (median of the per-round sums).
        var total: Double
        /// The GEMM-only replay of forward + backward.
        var gemms: Double
    }

    /// The buffers one timed conv needs: seeded input, weights and output gradient; output,
    /// both gradients and the workspace sized for `shape`.
    struct ConvBenchBuffers {
        let x, w, y, dy, dx, dw, ws: FloatBuffer

        init(_ g: Conv2dShape) {
            x = filled(g.n * g.c * g.h * g.w, seed: 3)
            w = filled(g.k * g.rowLength, seed: 4)
            y = FloatBuffer(count: g.n * g.k * g.p * g.q)
            dy = filled(y.count, seed: 5)
            dx = FloatBuffer(count: x.count)
            dw = FloatBuffer(count: w.count)
            ws = FloatBuffer(count: g.workspaceCount)
        }

        /// The seven buffers in declaration order, for destructuring.
        var all:
            (
                FloatBuffer, FloatBuffer, FloatBuffer, FloatBuffer, FloatBuffer, FloatBuffer,
                FloatBuffer
            )
        { (x, w, y, dy, dx, dw, ws) }
    }

    /// Median seconds of one conv case: forward, backward, their sum, and the GEMM-only
    /// replay (`conv2dGemmsOnly`) of the same pair. One warm-up round, then `repeats` rounds,
    /// the conv and its replay interleaved so both see the same machine state.
    static func timeConv(_ c: ConvCase, repeats: Int) -> ConvTiming {
        let g = c.shape
        let (x, w, y, dy, dx, dw, ws) = ConvBenchBuffers(g).all
        let dInput = c.inputGradient ? dx.pointer : nil
        var fwd: [Double] = []
        var bwd: [Double] = []
        var tot: [Double] = []
        var gemm: [Double] = []
        for rep in 0...repeats {
            let f = seconds {
                conv2dForward(
                    output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil, shape: g,
                    workspace: ws.pointer)
            }
            let b = seconds {
                conv2dBackward(
                    dInput: dInput, dWeight: dw.pointer, dBias: nil, dOutput: dy.pointer,
                    input: x.pointer, weight: w.pointer, shape: g, workspace: ws.pointer)
            }
            let r = seconds {
                conv2dGemmsOnly(
                    output: y.pointer, dInput: dInput, dWeight: dw.pointer, dOutput: dy.pointer,
                    input: x.pointer, weight: w.pointer, shape: g, workspace: ws.pointer)
            }
            if rep == 0 { continue }  // warm-up
            fwd.append(f)
            bwd.append(b)
            tot.append(f + b)
            gemm.append(r)
        }
        return ConvTiming(
            forward: medianOf(fwd), backward: medianOf(bwd), total: medianOf(tot),
            gemms: medianOf(gemm))
    }

    // MARK: - Winograd calibration

    /// The 3×3 stride-1 pad-1 shapes the Winograd table is measured on: ResNet-56 at batch 64
    /// (full widths and the 5/8-pruned ones) and ResNet-50 at 224, batch 16.
    public static func winogradCases() -> [ConvCase] {
        func conv(_ n: Int, _ c: Int, _ k: Int, _ hw: Int) -> ConvCase {
            ConvCase(
                name: "conv3x3_\(c)-\(k)_\(hw)x\(hw)_b\(n)",
                shape: try! Conv2dShape(
                    n: n, c: c, h: hw, w: hw, k: k, r: 3, s: 3, stride: 1, pad: 1),
                count: 1, inputGradient: true)
        }
        return [
            conv(64, 16, 16, 32), conv(64, 32, 32, 16), conv(64, 64, 64, 8),
            conv(64, 10, 10, 32), conv(64, 20, 20, 16), conv(64, 40, 40, 8),
            conv(16, 64, 64, 56), conv(16, 128, 128, 28), conv(16, 256, 256, 14),
            conv(16, 512, 512, 7),
        ]
    }

    /// CPU seconds of the calling thread while running `body` (with 1 BLAS thread all the work
    /// is on this thread; unlike wall time it does not count time other processes hold the
    /// core, which on a shared 2-core machine is most of the noise).
    static func threadCPUSeconds(_ body: () -> Void) -> Double {
        var t0 = timespec()
        var t1 = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0)
        body()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1)
        return Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) * 1e-9
    }

    /// im2col vs Winograd F(2×2, 3×3) vs F(4×4, 3×3) per shape of `winogradCases()`, forward
    /// and backward, interleaved (each round runs all three back to back, rotating which goes
    /// first), timed in thread CPU seconds (`threadCPUSeconds`; run it with 1 BLAS thread).
    /// Rows `winograd_<shape>`: value = im2col time ÷ the faster Winograd's time of forward +
    /// backward (> 1: Winograd wins), with each tile's ratio (`f2_speedup`, `f4_speedup`), its
    /// forward and backward ratios (`f2_fwd_speedup`, …; the forward alone is what inference
    /// runs) and the times. Restores `ConvAlgorithm.conv3x3` afterwards.
    public static func winogradCalibration(threads: Int, repeats: Int) -> [BenchResult] {
        BLASThreads.set(threads)
        KernelThreads.set(threads)
        let saved = ConvAlgorithm.conv3x3
        defer { ConvAlgorithm.conv3x3 = saved }
        var rows: [BenchResult] = []
        let algorithms: [Conv3x3Algorithm] = [.im2col, .winograd, .winograd4]
        for c in winogradCases() {
            let g = c.shape
            let (x, w, y, dy, dx, dw, ws) = ConvBenchBuffers(g).all
            // Per algorithm (0 im2col, 1 F(2×2), 2 F(4×4)): forward and backward times.
            var fwd: [[Double]] = [[], [], []]
            var bwd: [[Double]] = [[], [], []]
            for rep in 0...max(1, repeats) {
                for step in 0..<3 {
                    let a = (rep + step) % 3
                    ConvAlgorithm.conv3x3 = algorithms[a]
                    let f = threadCPUSeconds {
                        conv2dForward(
                            output: y.pointer, input: x.pointer, weight: w.pointer, bias: nil,
                            shape: g, workspace: ws.pointer)
                    }
                    let b = threadCPUSeconds {
                        conv2dBackward(
                            dInput: dx.pointer, dWeight: dw.pointer, dBias: nil,
                            dOutput: dy.pointer, input: x.pointer, weight: w.pointer, shape: g,
                            workspace: ws.pointer)
                    }
                    if rep == 0 { continue }  // warm-up
                    fwd[a].append(f)
                    bwd[a].append(b)
                }
            }
            let f = fwd.map(medianOf)
            let b = bwd.map(medianOf)
            let total = (0..<3).map { f[$0] + b[$0] }
            let extra: [String: Double] = [
                "f2_speedup": total[0] / total[1], "f4_speedup": total[0] / total[2],
                "f2_fwd_speedup": f[0] / f[1], "f4_fwd_speedup": f[0] / f[2],
                "f2_bwd_speedup": b[0] / b[1], "f4_bwd_speedup": b[0] / b[2],
                "im2col_ms": 1e3 * total[0], "f2_ms": 1e3 * total[1], "f4_ms": 1e3 * total[2],
                "im2col_gflops": 3 * c.forwardFlops / total[0] / 1e9,
            ]
            rows.append(
                BenchResult(
                    name: "winograd_" + c.name, value: total[0] / min(total[1], total[2]),
                    unit: "×im2col", extra: extra))
        }
        return rows
    }
}
