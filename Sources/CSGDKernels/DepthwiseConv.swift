// Depthwise 2-D convolution (channel multiplier 1, PyTorch's Conv2d with groups == C), NCHW,
// weight [C, 1, R, S]: output plane (n, c) is input plane (n, c) cross-correlated with filter c.
//
// Method: direct loops, one image plane at a time. There is no reduction over channels, so an
// im2col GEMM would be a batch of matrix-vector products with one row each: the direct form
// moves less memory. Each filter tap (r, s) is one scaled row add over the output rows whose
// input row lies inside the image; for stride 1 that add is contiguous (explicit SIMD). The
// valid row/column ranges come from the same helpers as im2col, so no per-element bounds
// branches.

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
