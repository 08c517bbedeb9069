// 2-D convolution (cross-correlation, as PyTorch's Conv2d), groups = 1, NCHW, weight [K, C, R, S].
//
// Method: im2col over a chunk of images into columns (C·R·S, nb·P·Q), sgemm, col2im for the
// input gradient. 1×1 stride-1 unpadded convs skip im2col and run one sgemm per image straight
// on the input. Where the time goes (ResNet-56 shapes, 1 thread): the GEMMs, then moving
// columns. So:
// • Chunks are small (≤ 1 MiB of columns) so im2col writes, the GEMM reads and col2im reads
//   stay in L2 instead of streaming a 16 MiB block through L3.
// • When an image's P·Q is wide enough for an efficient GEMM (≥ 256), each image gets its own
//   GEMMs reading/writing NCHW directly (no staging copy between (K, nb·P·Q) and (nb, K, P·Q));
//   narrower images are batched through a staging block.
// • Stride 1 with Q == W ("same" width, e.g. 3×3 pad 1): each (c, r, s) block of the columns is
//   the input plane shifted by (r − pad)·W + (s − pad), so im2col is ONE contiguous copy plus
//   zeroing the border columns, and col2im is one contiguous add after zeroing the border
//   entries of the (scratch) columns.
// • Stride 2 gathers/scatters eight at a time with 16-wide vector loads (even lanes).
// • Other geometries copy whole rows; no per-element bounds branches anywhere.
// The chunking and every GEMM's sizes and operands live in ConvPlan.swift, shared by forward,
// backward and the benchmark's GEMM-only replay; this file does the data moves around them.

import CSGDCore

/// Geometry of one convolution; validated on creation so kernels can trust it.
public struct Conv2dShape: Equatable, Sendable, Codable {
    public let n: Int, c: Int, h: Int, w: Int
    public let k: Int, r: Int, s: Int
    public let stride: Int, pad: Int
    /// Output height.
    public let p: Int
    /// Output width.
    public let q: Int

    /// Validates and derives the output size.
    /// - Throws: `CSGDError` when a size is not positive or the kernel is larger than the
    ///   padded input.
    public init(n: Int, c: Int, h: Int, w: Int, k: Int, r: Int, s: Int, stride: Int, pad: Int)
        throws
    {
        if n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || r < 1 || s < 1 || stride < 1 || pad < 0 {
            throw CSGDError(
                "conv2d: sizes must be positive (N=\(n) C=\(c) H=\(h) W=\(w) K=\(k) R=\(r) "
                    + "S=\(s) stride=\(stride) pad=\(pad))")
        }
        if r > h + 2 * pad || s > w + 2 * pad {
            throw CSGDError(
                "conv2d: kernel \(r)x\(s) is larger than the padded input "
                    + "\(h + 2 * pad)x\(w + 2 * pad)")
        }
        self.n = n
        self.c = c
        self.h = h
        self.w = w
        self.k = k
        self.r = r
        self.s = s
        self.stride = stride
        self.pad = pad
        p = (h + 2 * pad - r) / stride + 1
        q = (w + 2 * pad - s) / stride + 1
    }

    /// Same geometry for another batch size.
    public func with(batch: Int) -> Conv2dShape {
        try! Conv2dShape(n: batch, c: c, h: h, w: w, k: k, r: r, s: s, stride: stride, pad: pad)
    }

    /// Length of one filter row: C·R·S.
    public var rowLength: Int { c * r * s }
    /// Whether the 1×1 fast path (no im2col) applies.
    public var isPointwise: Bool { r == 1 && s == 1 && stride == 1 && pad == 0 }
    /// Multiply-adds of the forward pass.
    public var flops: Int { n * k * p * q * rowLength }

    /// Floats of scratch the kernels need (columns + a K×(nb·P·Q) staging block, see
    /// `ConvPlan`; for shapes the Winograd path can run, also enough for it, whatever
    /// `ConvAlgorithm.conv3x3` says, so changing the setting never outgrows a workspace).
    /// The same value for every call with this shape; callers may share one workspace.
    public var workspaceCount: Int {
        let im2col = ConvPlan(self).workspaceCount
        guard WinogradPlan.supports(self) else { return im2col }
        return max(
            im2col, WinogradPlan(self, tile: 2).workspaceCount,
            WinogradPlan(self, tile: 4).workspaceCount)
    }

    /// Whether im2col row blocks are shifted copies of the input plane (stride 1, Q == W).
    var isSameWidthStride1: Bool { stride == 1 && q == w }
}

// MARK: - im2col / col2im

/// One past the last output column whose input column q·stride − pad + s is inside the image.
/// (Swift's `/` truncates toward zero, so a negative numerator must not reach the division.)
/// The lower bounds, max(0, ⌈(pad − tap)/stride⌉), are safe with truncation: a negative
/// numerator gives a value ≤ 0 either way.
@inline(__always)
func validEnd(_ g: Conv2dShape, _ s: Int) -> Int {
    let last = g.w - 1 + g.pad - s
    return last < 0 ? 0 : min(g.q, last / g.stride + 1)
}

/// One past the last output row whose input row p·stride − pad + r is inside the image.
@inline(__always)
func validRowEnd(_ g: Conv2dShape, _ r: Int) -> Int {
    let last = g.h - 1 + g.pad - r
    return last < 0 ? 0 : min(g.p, last / g.stride + 1)
}

/// Writes the columns of images `n0..<n0+nb` into `col` laid out (C·R·S, nb·P·Q).
func im2col(
    col: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, shape g: Conv2dShape,
    n0: Int, nb: Int
) {
    let pq = g.p * g.q
    let ld = nb * pq
    let hw = g.h * g.w
    // Channel c owns column rows c·R·S..<(c+1)·R·S and input plane c: threads split channels.
    parallelForEach(g.c, elementsEach: g.r * g.s * ld) { c in
        for r in 0..<g.r {
            // Valid p range: 0 ≤ p·stride − pad + r < H.
            let pLo = min(g.p, max(0, (g.pad - r + g.stride - 1) / g.stride))
            let pHi = max(pLo, validRowEnd(g, r))
            for s in 0..<g.s {
                let row = col + ((c * g.r + r) * g.s + s) * ld
                // Valid q range: 0 ≤ q·stride − pad + s < W.
                let qLo = max(0, (g.pad - s + g.stride - 1) / g.stride)
                let qHi = validEnd(g, s)  // exclusive
                if g.isSameWidthStride1 {
                    // Row p of the block is input row p − pad + r shifted by s − pad, and
                    // consecutive rows are W = Q apart in both: one contiguous copy of the
                    // valid span, then zero the padded border columns it wrapped into.
                    let off = (r - g.pad) * g.w + (s - g.pad)
                    for i in 0..<nb {
                        let img = input + ((n0 + i) * g.c + c) * hw
                        let dst = row + i * pq
                        if qHi <= qLo || pHi <= pLo {
                            dst.update(repeating: 0, count: pq)
                            continue
                        }
                        let start = pLo * g.q + qLo
                        let end = (pHi - 1) * g.q + qHi
                        // Whole rows in the padding; the partial rows pLo and pHi − 1 are
                        // covered by the border-column zeroing.
                        if pLo > 0 { dst.update(repeating: 0, count: pLo * g.q) }
                        if pHi < g.p {
                            (dst + pHi * g.q).update(repeating: 0, count: pq - pHi * g.q)
                        }
                        (dst + start).update(from: img + start + off, count: end - start)
                        zeroBorderColumns(dst, shape: g, pLo: pLo, pHi: pHi, qLo: qLo, qHi: qHi)
                    }
                    continue
                }
                for i in 0..<nb {
                    let img = input + ((n0 + i) * g.c + c) * hw
                    let dst0 = row + i * pq
                    for p in 0..<g.p {
                        let dst = dst0 + p * g.q
                        let hIn = p * g.stride - g.pad + r
                        if hIn < 0 || hIn >= g.h || qHi <= qLo {
                            for q in 0..<g.q { dst[q] = 0 }
                            continue
                        }
                        for q in 0..<qLo { dst[q] = 0 }
                        for q in qHi..<g.q { dst[q] = 0 }
                        let src = img + hIn * g.w + (qLo * g.stride - g.pad + s)
                        if g.stride == 1 {
                            (dst + qLo).update(from: src, count: qHi - qLo)
                        } else if g.stride == 2 {
                            // Vector loads may run past the row into later rows of the
                            // same plane (odd lanes are dropped), never past the plane.
                            gatherStride2(
                                dst + qLo, src, count: qHi - qLo,
                                readable: (g.h - hIn) * g.w - (qLo * 2 - g.pad + s))
                        } else {
                            for j in 0..<(qHi - qLo) { dst[qLo + j] = src[j * g.stride] }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns (C·R·S, nb·P·Q) back into the image gradients of images `n0..<n0+nb`.
/// `col` is scratch: its padded-border entries are zeroed on the way.
func col2imAccumulate(
    dInput: UnsafeMutablePointer<Float>, col: UnsafeMutablePointer<Float>, shape g: Conv2dShape,
    n0: Int, nb: Int
) {
    let pq = g.p * g.q
    let ld = nb * pq
    let hw = g.h * g.w
    // Channel c owns column rows c·R·S..<(c+1)·R·S and input plane c: threads split channels.
    parallelForEach(g.c, elementsEach: g.r * g.s * ld) { c in
        for r in 0..<g.r {
            let pLo = min(g.p, max(0, (g.pad - r + g.stride - 1) / g.stride))
            let pHi = max(pLo, validRowEnd(g, r))
            for s in 0..<g.s {
                let row = col + ((c * g.r + r) * g.s + s) * ld
                let qLo = max(0, (g.pad - s + g.stride - 1) / g.stride)
                let qHi = validEnd(g, s)
                if qHi <= qLo || pHi <= pLo { continue }
                if g.isSameWidthStride1 {
                    // Mirror of im2col's shifted copy: zero the border columns (gradients of
                    // padding, which must not wrap into neighbouring rows), then one
                    // contiguous add of the valid span.
                    let off = (r - g.pad) * g.w + (s - g.pad)
                    let start = pLo * g.q + qLo
                    let end = (pHi - 1) * g.q + qHi
                    for i in 0..<nb {
                        let img = dInput + ((n0 + i) * g.c + c) * hw + off
                        let src = row + i * pq
                        zeroBorderColumns(src, shape: g, pLo: pLo, pHi: pHi, qLo: qLo, qHi: qHi)
                        for j in start..<end { img[j] += src[j] }
                    }
                    continue
                }
                for i in 0..<nb {
                    let img = dInput + ((n0 + i) * g.c + c) * hw
                    let src0 = row + i * pq
                    for p in pLo..<pHi {
                        let hIn = p * g.stride - g.pad + r
                        let src = src0 + p * g.q + qLo
                        let dst = img + hIn * g.w + (qLo * g.stride - g.pad + s)
                        if g.stride == 1 {
                            for j in 0..<(qHi - qLo) { dst[j] += src[j] }
                        } else if g.stride == 2 {
                            // Odd lanes are rewritten unchanged, possibly in later rows of
                            // the same plane, never past the plane.
                            scatterAddStride2(
                                dst, src, count: qHi - qLo,
                                writable: (g.h - hIn) * g.w - (qLo * 2 - g.pad + s))
                        } else {
                            for j in 0..<(qHi - qLo) { dst[j * g.stride] += src[j] }
                        }
                    }
                }
            }
        }
    }
}

/// Zeroes the padded border columns (q < qLo, q ≥ qHi) of rows pLo..<pHi of one P×Q block.
/// Column by column: a row-wise loop would become one tiny memset call per row.
@inline(__always)
func zeroBorderColumns(
    _ block: UnsafeMutablePointer<Float>, shape g: Conv2dShape, pLo: Int, pHi: Int, qLo: Int,
    qHi: Int
) {
    for q in 0..<qLo {
        var d = block + pLo * g.q + q
        for _ in pLo..<pHi {
            d.pointee = 0
            d += g.q
        }
    }
    for q in qHi..<g.q {
        var d = block + pLo * g.q + q
        for _ in pLo..<pHi {
            d.pointee = 0
            d += g.q
        }
    }
}

/// `dst[j] = src[2j]` for j < count, eight at a time (one 16-wide load, keep the even lanes)
/// while the load stays within the `readable` floats from `src`.
@inline(__always)
func gatherStride2(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int, readable: Int
) {
    var j = 0
    while j + 8 <= count && 2 * j + 16 <= readable {
        let v = UnsafeRawPointer(src + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(dst + j).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
        j += 8
    }
    while j < count {
        dst[j] = src[2 * j]
        j += 1
    }
}

/// `dst[2j] += src[j]` for j < count, eight at a time (16-wide load/store of `dst`; the odd
/// lanes are written back unchanged) while the access stays within `writable` floats.
@inline(__always)
func scatterAddStride2(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int, writable: Int
) {
    var j = 0
    while j + 8 <= count && 2 * j + 16 <= writable {
        let raw = UnsafeMutableRawPointer(dst + 2 * j)
        var v = raw.loadUnaligned(as: SIMD16<Float>.self)
        v.evenHalf += UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self)
        raw.storeBytes(of: v, as: SIMD16<Float>.self)
        j += 8
    }
    while j < count {
        dst[2 * j] += src[j]
        j += 1
    }
}

// MARK: - forward / backward

/// Convolution forward: `output[N, K, P, Q] = conv(input[N, C, H, W], weight[K, C, R, S]) + bias`.
/// - Parameters:
///   - output: overwritten, N·K·P·Q floats.
///   - bias: optional `[K]`.
///   - workspace: at least `shape.workspaceCount` floats of scratch.
///   - epilogue: a per-channel `y = x·a + b` (+ ReLU) applied to each image's output while it
///     is still in cache — an eval-mode BatchNorm fused into the conv. Bitwise the same as
///     running the conv (with its bias), then `batchNormForwardEval` on its output.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape,
    workspace: UnsafeMutablePointer<Float>?, epilogue: ChannelAffine? = nil
) {
    if let tile = ConvAlgorithm.winogradTile(g) {
        winogradForward(
            output: output, input: input, weight: weight, bias: bias, shape: g, tile: tile,
            workspace: workspace!, epilogue: epilogue)
        return
    }
    let plan = ConvPlan(g)
    let tensors = ConvTensors(
        input: input, weight: weight, output: output, workspace: workspace)
    convForward(plan, tensors, bias: bias, epilogue: epilogue)
}

/// `conv2dForward` on a plan and its buffers (`tensors.output` set).
func convForward(
    _ plan: ConvPlan, _ tensors: ConvTensors, bias: UnsafePointer<Float>?,
    epilogue: ChannelAffine?
) {
    let g = plan.shape
    let pq = g.p * g.q
    let output = tensors.output!
    // Bias, then the epilogue, on images n0..<n0+nb of the output (just written, still hot).
    func finish(_ n0: Int, _ nb: Int) {
        addBiasAndEpilogue(output, bias: bias, epilogue: epilogue, n0: n0, nb: nb, k: g.k, pq: pq)
    }
    plan.forEachChunk { ch in
        if !g.isPointwise {
            im2col(col: tensors.workspace!, input: tensors.input, shape: g, n0: ch.n0, nb: ch.nb)
        }
        plan.forwardGemms(ch) { gemm, image in
            tensors.run(gemm, plan)
            if let image { finish(image, 1) }
        }
        if ch.direct { return }
        // (K, nb·PQ) → (nb, K, PQ); without a bias the epilogue IS the copy.
        let staging = tensors.workspace! + plan.stagingOffset
        parallelForEach(g.k, elementsEach: ch.nb * pq) { kk in
            for i in 0..<ch.nb {
                let o = output + ((ch.n0 + i) * g.k + kk) * pq
                let src = staging + kk * ch.nb * pq + i * pq
                if let e = epilogue, bias == nil {
                    affine(o, src, pq, e.scale[kk], e.shift[kk], relu: e.relu)
                } else {
                    o.update(from: src, count: pq)
                }
            }
        }
        if bias != nil { finish(ch.n0, ch.nb) }
    }
}

/// Adds `bias[k]` to, then applies `epilogue` to, every output plane of images `n0..<n0+nb`
/// (`output` is `[N, K, P·Q]`), one (image, filter) plane per item across `KernelThreads`.
func addBiasAndEpilogue(
    _ output: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
    epilogue: ChannelAffine?, n0: Int, nb: Int, k: Int, pq: Int
) {
    if bias == nil && epilogue == nil { return }
    parallelForEach(nb * k, elementsEach: pq) { ik in
        let (i, kk) = (n0 + ik / k, ik % k)
        let o = output + (i * k + kk) * pq
        if let bias {
            let b = bias[kk]
            for j in 0..<pq { o[j] += b }
        }
        if let e = epilogue {
            affine(o, o, pq, e.scale[kk], e.shift[kk], relu: e.relu)
        }
    }
}

/// A per-channel affine map `y = x·scale[k] + shift[k]`, then ReLU when `relu` — what an
/// eval-mode BatchNorm (+ ReLU) does, in the form `conv2dForward` can apply as an epilogue.
public struct ChannelAffine {
    /// `[K]` multipliers.
    public let scale: UnsafePointer<Float>
    /// `[K]` offsets.
    public let shift: UnsafePointer<Float>
    /// Whether to clamp at zero afterwards.
    public let relu: Bool

    /// Wraps the two `[K]` arrays (not copied: they must outlive the conv call).
    public init(scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, relu: Bool) {
        self.scale = scale
        self.shift = shift
        self.relu = relu
    }
}

/// Convolution backward. ACCUMULATES into `dWeight`, `dBias` and `dInput` (`+=`).
/// - Parameters:
///   - dInput: `[N, C, H, W]` or nil when the input needs no gradient (the stem).
///   - dWeight: `[K, C, R, S]`.
///   - dBias: `[K]` or nil.
///   - dOutput: `[N, K, P, Q]`.
///   - workspace: at least `shape.workspaceCount` floats of scratch.
public func conv2dBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, shape g: Conv2dShape,
    workspace: UnsafeMutablePointer<Float>?
) {
    let pq = g.p * g.q
    if let dBias {
        // Per filter, images in order: the same additions for any thread count.
        parallelForEach(g.k, elementsEach: g.n * pq) { kk in
            for i in 0..<g.n {
                let d = dOutput + (i * g.k + kk) * pq
                var acc: Float = 0
                for j in 0..<pq { acc += d[j] }
                dBias[kk] += acc
            }
        }
    }
    if let tile = ConvAlgorithm.winogradTile(g) {
        winogradBackward(
            dInput: dInput, dWeight: dWeight, dOutput: dOutput, input: input, weight: weight,
            shape: g, tile: tile, workspace: workspace!)
        return
    }
    let tensors = ConvTensors(
        input: input, weight: weight, dOutput: dOutput, dWeight: dWeight, dInput: dInput,
        workspace: workspace)
    convBackward(ConvPlan(g), tensors)
}

/// The weight and input gradients of `conv2dBackward` on a plan and its buffers
/// (`tensors.dInput` nil skips the input gradient).
func convBackward(_ plan: ConvPlan, _ tensors: ConvTensors) {
    let g = plan.shape
    let pq = g.p * g.q
    let dOutput = tensors.dOutput!
    plan.forEachChunk { ch in
        if !g.isPointwise {
            im2col(col: tensors.workspace!, input: tensors.input, shape: g, n0: ch.n0, nb: ch.nb)
        }
        if !ch.direct {
            // (nb, K, PQ) → (K, nb·PQ)
            let staging = tensors.workspace! + plan.stagingOffset
            parallelForEach(g.k, elementsEach: ch.nb * pq) { kk in
                for i in 0..<ch.nb {
                    (staging + kk * ch.nb * pq + i * pq).update(
                        from: dOutput + ((ch.n0 + i) * g.k + kk) * pq, count: pq)
                }
            }
        }
        plan.weightGradientGemms(ch) { tensors.run($0, plan) }
        if let dInput = tensors.dInput {
            plan.inputGradientGemms(ch) { tensors.run($0, plan) }
            if !g.isPointwise {
                col2imAccumulate(
                    dInput: dInput, col: tensors.workspace!, shape: g, n0: ch.n0, nb: ch.nb)
            }
        }
    }
}

// MARK: - benchmark support

/// Runs only the GEMMs of `conv2dForward` followed by `conv2dBackward` for `shape` (the same
/// `ConvPlan`, so the same GEMMs in the same order), skipping im2col, col2im, the staging
/// copies and the bias. Benchmarks time it next to the real kernels: the difference
/// is what moving the columns costs. Outputs hold meaningless values afterwards.
/// - Parameters: as for `conv2dForward`/`conv2dBackward`; `dInput` nil skips the input-gradient
///   GEMM, as for the stem.
public func conv2dGemmsOnly(
    output: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>?,
    dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, shape g: Conv2dShape,
    workspace: UnsafeMutablePointer<Float>?
) {
    let plan = ConvPlan(g)
    let tensors = ConvTensors(
        input: input, weight: weight, output: output, dOutput: dOutput, dWeight: dWeight,
        dInput: dInput, workspace: workspace)
    convGemmsOnly(plan, tensors)
}

/// `conv2dGemmsOnly` on a plan and its buffers.
func convGemmsOnly(_ plan: ConvPlan, _ tensors: ConvTensors) {
    plan.forEachGemm(inputGradient: tensors.dInput != nil) { tensors.run($0, plan) }
}
