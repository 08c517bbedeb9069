// Depthwise 2-D convolution (channel multiplier 1, PyTorch's Conv2d with groups == C), NCHW,
// weight [C, 1, R, S]: output plane (n, c) is input plane (n, c) cross-correlated with filter c.
//
// Method: direct loops, one image plane at a time. There is no reduction over channels, so an
// im2col GEMM would be a batch of matrix-vector products with one row each: the direct form
// moves less memory. Stride 1 (most depthwise layers): the plane is copied into a zero-padded
// scratch plane of width W + 2·pad, and the output is computed at that same row pitch, so each
// filter tap (r, s) is ONE contiguous scaled add over the whole plane (columns past Q are
// scratch, dropped when copying out) instead of one short add per output row: CIFAR rows are
// only 4–32 wide. Other strides: one scaled row add per tap and output row, over the rows and
// columns whose input lies inside the image (the same range helpers as im2col), no per-element
// bounds branches. Both use explicit SIMD for the contiguous adds and dots.

/// `dst[j] += a · src[j·stride]` for j < n (explicit SIMD for stride 1).
@inline(__always)
private func scaledAdd(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, _ a: Float,
    stride: Int
) {
    if stride != 1 {
        for j in 0..<n { dst[j] += a * src[j * stride] }
        return
    }
    let va = SIMD8<Float>(repeating: a)
    var j = 0
    while j + 8 <= n {
        let s = UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self)
        let d = UnsafeRawPointer(dst + j).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + j).storeBytes(of: d + va * s, as: SIMD8<Float>.self)
        j += 8
    }
    while j < n {
        dst[j] += a * src[j]
        j += 1
    }
}

/// `dst[j·stride] += a · src[j]` for j < n (explicit SIMD for stride 1).
@inline(__always)
private func scaledScatterAdd(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int, _ a: Float,
    stride: Int
) {
    if stride == 1 { return scaledAdd(dst, src, n, a, stride: 1) }
    for j in 0..<n { dst[j * stride] += a * src[j] }
}

/// Σ a[j] · b[j·stride], j < n (eight lanes for stride 1).
@inline(__always)
private func strideDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, stride: Int)
    -> Float
{
    var j = 0
    var acc = SIMD8<Float>()
    if stride == 1 {
        while j + 8 <= n {
            acc +=
                UnsafeRawPointer(a + j).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + j).loadUnaligned(as: SIMD8<Float>.self)
            j += 8
        }
    }
    var s = acc.sum()
    while j < n {
        s += a[j] * b[j * stride]
        j += 1
    }
    return s
}

/// The output rows `pLo..<pHi` and columns `qLo..<qHi` whose tap (r, s) reads inside the image.
@inline(__always)
private func tapRange(_ g: Conv2dShape, _ r: Int, _ s: Int) -> (
    pLo: Int, pHi: Int, qLo: Int, qHi: Int
) {
    let pLo = min(g.p, max(0, (g.pad - r + g.stride - 1) / g.stride))
    let pHi = max(pLo, validRowEnd(g, r))
    let qLo = min(g.q, max(0, (g.pad - s + g.stride - 1) / g.stride))
    let qHi = max(qLo, validEnd(g, s))
    return (pLo, pHi, qLo, qHi)
}

/// Depthwise convolution forward: `output[N, C, P, Q]` = each input plane `[N, C, H, W]`
/// cross-correlated with its filter `weight[C, 1, R, S]`, plus `bias[C]`; then `epilogue`
/// per channel (an eval-mode BatchNorm), as `conv2dForward`. `shape.k` must equal `shape.c`.
public func depthwiseConv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape,
    epilogue: ChannelAffine? = nil
) {
    precondition(g.k == g.c, "depthwise conv needs one filter per channel")
    if g.stride == 1 {
        return depthwiseForwardStride1(
            output: output, input: input, weight: weight, bias: bias, shape: g,
            epilogue: epilogue)
    }
    let hw = g.h * g.w
    let pq = g.p * g.q
    let rs = g.r * g.s
    for plane in 0..<(g.n * g.c) {
        let c = plane % g.c
        let x = input + plane * hw
        let y = output + plane * pq
        let w = weight + c * rs
        y.update(repeating: bias?[c] ?? 0, count: pq)
        for r in 0..<g.r {
            for s in 0..<g.s {
                let t = tapRange(g, r, s)
                if t.qHi <= t.qLo { continue }
                let a = w[r * g.s + s]
                for p in t.pLo..<t.pHi {
                    let hIn = p * g.stride - g.pad + r
                    scaledAdd(
                        y + p * g.q + t.qLo, x + hIn * g.w + (t.qLo * g.stride - g.pad + s),
                        t.qHi - t.qLo, a, stride: g.stride)
                }
            }
        }
        if let e = epilogue { affine(y, y, pq, e.scale[c], e.shift[c], relu: e.relu) }
    }
}

/// Depthwise convolution backward. ACCUMULATES into `dInput`, `dWeight` and `dBias` (`+=`).
/// - Parameters:
///   - dInput: `[N, C, H, W]`, or nil when the input needs no gradient.
///   - dWeight: `[C, 1, R, S]`.
///   - dBias: `[C]` or nil.
///   - dOutput: `[N, C, P, Q]`.
public func depthwiseConv2dBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, shape g: Conv2dShape
) {
    precondition(g.k == g.c, "depthwise conv needs one filter per channel")
    if g.stride == 1 {
        return depthwiseBackwardStride1(
            dInput: dInput, dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input,
            weight: weight, shape: g)
    }
    let hw = g.h * g.w
    let pq = g.p * g.q
    let rs = g.r * g.s
    for plane in 0..<(g.n * g.c) {
        let c = plane % g.c
        let x = input + plane * hw
        let dy = dOutput + plane * pq
        if let dBias { dBias[c] += vsum(dy, pq) }
        for r in 0..<g.r {
            for s in 0..<g.s {
                let t = tapRange(g, r, s)
                if t.qHi <= t.qLo { continue }
                let n = t.qHi - t.qLo
                var acc: Float = 0
                for p in t.pLo..<t.pHi {
                    let hIn = p * g.stride - g.pad + r
                    let offset = hIn * g.w + (t.qLo * g.stride - g.pad + s)
                    let dyRow = dy + p * g.q + t.qLo
                    acc += strideDot(dyRow, x + offset, n, stride: g.stride)
                    if let dInput {
                        scaledScatterAdd(
                            dInput + plane * hw + offset, dyRow, n, weight[c * rs + r * g.s + s],
                            stride: g.stride)
                    }
                }
                dWeight[c * rs + r * g.s + s] += acc
            }
        }
    }
}

// MARK: - stride 1 on padded planes

/// The padded-plane geometry of a stride-1 depthwise conv: input planes of `hp` × `wp`
/// (zero border of `pad`), outputs at row pitch `wp`, and `span`, the flat extent from output
/// (0, 0) to (P − 1, Q − 1) at that pitch. Tap (r, s) of output index j reads padded index
/// r·wp + s + j, which stays below hp·wp because P + R − 1 = hp and Q + S − 1 = wp.
private struct PaddedPlane {
    let hp: Int, wp: Int, span: Int

    init(_ g: Conv2dShape) {
        hp = g.h + 2 * g.pad
        wp = g.w + 2 * g.pad
        span = (g.p - 1) * wp + g.q
    }

    /// Copies image plane `x` into the interior of `xp` (its border stays as it was: zero).
    @inline(__always)
    func fill(_ xp: UnsafeMutablePointer<Float>, from x: UnsafePointer<Float>, _ g: Conv2dShape) {
        for h in 0..<g.h {
            (xp + (h + g.pad) * wp + g.pad).update(from: x + h * g.w, count: g.w)
        }
    }
}

/// `depthwiseConv2dForward` for stride 1 (see the file comment).
private func depthwiseForwardStride1(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape,
    epilogue: ChannelAffine?
) {
    let pp = PaddedPlane(g)
    let hw = g.h * g.w
    let pq = g.p * g.q
    let rs = g.r * g.s
    withUnsafeTemporaryAllocation(of: Float.self, capacity: pp.hp * pp.wp + g.p * pp.wp) {
        let xp = $0.baseAddress!
        let yp = xp + pp.hp * pp.wp
        xp.update(repeating: 0, count: pp.hp * pp.wp)
        for plane in 0..<(g.n * g.c) {
            let c = plane % g.c
            let w = weight + c * rs
            let y = output + plane * pq
            pp.fill(xp, from: input + plane * hw, g)
            yp.update(repeating: bias?[c] ?? 0, count: pp.span)
            for r in 0..<g.r {
                for s in 0..<g.s {
                    scaledAdd(yp, xp + r * pp.wp + s, pp.span, w[r * g.s + s], stride: 1)
                }
            }
            for p in 0..<g.p { (y + p * g.q).update(from: yp + p * pp.wp, count: g.q) }
            if let e = epilogue { affine(y, y, pq, e.scale[c], e.shift[c], relu: e.relu) }
        }
    }
}

/// `depthwiseConv2dBackward` for stride 1: the output gradient is laid out at the padded row
/// pitch with zeros in the columns past Q, so those contribute nothing to either gradient.
private func depthwiseBackwardStride1(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, shape g: Conv2dShape
) {
    let pp = PaddedPlane(g)
    let hw = g.h * g.w
    let pq = g.p * g.q
    let rs = g.r * g.s
    let planeCount = pp.hp * pp.wp
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * planeCount + g.p * pp.wp) {
        let xp = $0.baseAddress!
        let dxp = xp + planeCount
        let dyp = dxp + planeCount
        xp.update(repeating: 0, count: planeCount)
        dyp.update(repeating: 0, count: g.p * pp.wp)
        for plane in 0..<(g.n * g.c) {
            let c = plane % g.c
            let dy = dOutput + plane * pq
            pp.fill(xp, from: input + plane * hw, g)
            for p in 0..<g.p { (dyp + p * pp.wp).update(from: dy + p * g.q, count: g.q) }
            if let dBias { dBias[c] += vsum(dy, pq) }
            for r in 0..<g.r {
                for s in 0..<g.s {
                    dWeight[c * rs + r * g.s + s] += strideDot(
                        dyp, xp + r * pp.wp + s, pp.span, stride: 1)
                }
            }
            guard let dInput else { continue }
            dxp.update(repeating: 0, count: planeCount)
            for r in 0..<g.r {
                for s in 0..<g.s {
                    scaledAdd(
                        dxp + r * pp.wp + s, dyp, pp.span, weight[c * rs + r * g.s + s],
                        stride: 1)
                }
            }
            let dx = dInput + plane * hw
            for h in 0..<g.h {
                let src = dxp + (h + g.pad) * pp.wp + g.pad
                let dst = dx + h * g.w
                for j in 0..<g.w { dst[j] += src[j] }
            }
        }
    }
}
