// 2-D convolution (cross-correlation, as PyTorch's Conv2d), groups = 1, NCHW, weight [K, C, R, S].
//
// Method: im2col over a chunk of images into columns (C·R·S, nb·P·Q), one sgemm per chunk,
// then a row-copy scatter back to NCHW. 1×1 stride-1 unpadded convs skip im2col and run one
// sgemm per image straight on the input. im2col/col2im copy whole rows (no per-element bounds
// branches): that is what keeps them cheap next to the GEMM.

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

    /// Images per im2col chunk: enough columns for an efficient GEMM, bounded memory.
    var chunk: Int {
        let budget = 1 << 22  // floats of columns per chunk (16 MiB)
        return max(1, min(n, budget / max(1, rowLength * p * q)))
    }

    /// Floats of scratch the kernels need (columns + a K×(nb·P·Q) staging block).
    public var workspaceCount: Int {
        if isPointwise { return 0 }
        return chunk * p * q * (rowLength + k)
    }
}

// MARK: - im2col / col2im

/// One past the last output column whose input column q·stride − pad + s is inside the image.
/// (Swift's `/` truncates toward zero, so a negative numerator must not reach the division.)
@inline(__always)
func validEnd(_ g: Conv2dShape, _ s: Int) -> Int {
    let last = g.w - 1 + g.pad - s
    return last < 0 ? 0 : min(g.q, last / g.stride + 1)
}

/// Writes the columns of images `n0..<n0+nb` into `col` laid out (C·R·S, nb·P·Q).
func im2col(
    col: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, shape g: Conv2dShape,
    n0: Int, nb: Int
) {
    let pq = g.p * g.q
    let ld = nb * pq
    let hw = g.h * g.w
    for c in 0..<g.c {
        for r in 0..<g.r {
            for s in 0..<g.s {
                let row = col + ((c * g.r + r) * g.s + s) * ld
                // Valid q range: 0 ≤ q·stride − pad + s < W.
                let qLo = max(0, (g.pad - s + g.stride - 1) / g.stride)
                let qHi = validEnd(g, s)  // exclusive
                for i in 0..<nb {
                    let img = input + ((n0 + i) * g.c + c) * hw
                    let dst0 = row + i * pq
                    for p in 0..<g.p {
                        let dst = dst0 + p * g.q
                        let hIn = p * g.stride - g.pad + r
                        if hIn < 0 || hIn >= g.h || qHi <= qLo {
                            dst.update(repeating: 0, count: g.q)
                            continue
                        }
                        if qLo > 0 { dst.update(repeating: 0, count: qLo) }
                        if qHi < g.q { (dst + qHi).update(repeating: 0, count: g.q - qHi) }
                        let src = img + hIn * g.w + (qLo * g.stride - g.pad + s)
                        if g.stride == 1 {
                            (dst + qLo).update(from: src, count: qHi - qLo)
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
func col2imAccumulate(
    dInput: UnsafeMutablePointer<Float>, col: UnsafePointer<Float>, shape g: Conv2dShape,
    n0: Int, nb: Int
) {
    let pq = g.p * g.q
    let ld = nb * pq
    let hw = g.h * g.w
    for c in 0..<g.c {
        for r in 0..<g.r {
            for s in 0..<g.s {
                let row = col + ((c * g.r + r) * g.s + s) * ld
                let qLo = max(0, (g.pad - s + g.stride - 1) / g.stride)
                let qHi = validEnd(g, s)
                if qHi <= qLo { continue }
                for i in 0..<nb {
                    let img = dInput + ((n0 + i) * g.c + c) * hw
                    let src0 = row + i * pq
                    for p in 0..<g.p {
                        let hIn = p * g.stride - g.pad + r
                        if hIn < 0 || hIn >= g.h { continue }
                        let src = src0 + p * g.q + qLo
                        let dst = img + hIn * g.w + (qLo * g.stride - g.pad + s)
                        if g.stride == 1 {
                            for j in 0..<(qHi - qLo) { dst[j] += src[j] }
                        } else {
                            for j in 0..<(qHi - qLo) { dst[j * g.stride] += src[j] }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - forward / backward

/// Convolution forward: `output[N, K, P, Q] = conv(input[N, C, H, W], weight[K, C, R, S]) + bias`.
/// - Parameters:
///   - output: overwritten, N·K·P·Q floats.
///   - bias: optional `[K]`.
///   - workspace: at least `shape.workspaceCount` floats of scratch.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape,
    workspace: UnsafeMutablePointer<Float>?
) {
    let pq = g.p * g.q
    let crs = g.rowLength
    if g.isPointwise {
        for i in 0..<g.n {
            sgemm(
                transA: false, transB: false, m: g.k, n: pq, k: g.c, alpha: 1, a: weight, lda: crs,
                b: input + i * g.c * pq, ldb: pq, beta: 0, c: output + i * g.k * pq, ldc: pq)
        }
    } else {
        let ws = workspace!
        let nbMax = g.chunk
        var n0 = 0
        while n0 < g.n {
            let nb = min(nbMax, g.n - n0)
            let col = ws
            let staging = ws + crs * nbMax * pq
            im2col(col: col, input: input, shape: g, n0: n0, nb: nb)
            sgemm(
                transA: false, transB: false, m: g.k, n: nb * pq, k: crs, alpha: 1, a: weight,
                lda: crs, b: col, ldb: nb * pq, beta: 0, c: staging, ldc: nb * pq)
            // (K, nb·PQ) → (nb, K, PQ)
            for kk in 0..<g.k {
                for i in 0..<nb {
                    (output + ((n0 + i) * g.k + kk) * pq).update(
                        from: staging + kk * nb * pq + i * pq, count: pq)
                }
            }
            n0 += nb
        }
    }
    if let bias {
        for i in 0..<g.n {
            for kk in 0..<g.k {
                let o = output + (i * g.k + kk) * pq
                let b = bias[kk]
                for j in 0..<pq { o[j] += b }
            }
        }
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
    let crs = g.rowLength
    if let dBias {
        for i in 0..<g.n {
            for kk in 0..<g.k {
                let d = dOutput + (i * g.k + kk) * pq
                var acc: Float = 0
                for j in 0..<pq { acc += d[j] }
                dBias[kk] += acc
            }
        }
    }
    if g.isPointwise {
        for i in 0..<g.n {
            let dOut = dOutput + i * g.k * pq
            // dW[K, C] += dOut[K, PQ] · in[C, PQ]ᵀ
            sgemm(
                transA: false, transB: true, m: g.k, n: g.c, k: pq, alpha: 1, a: dOut, lda: pq,
                b: input + i * g.c * pq, ldb: pq, beta: 1, c: dWeight, ldc: crs)
            if let dInput {
                // dIn[C, PQ] += W[K, C]ᵀ · dOut[K, PQ]
                sgemm(
                    transA: true, transB: false, m: g.c, n: pq, k: g.k, alpha: 1, a: weight,
                    lda: crs, b: dOut, ldb: pq, beta: 1, c: dInput + i * g.c * pq, ldc: pq)
            }
        }
        return
    }
    let ws = workspace!
    let nbMax = g.chunk
    var n0 = 0
    while n0 < g.n {
        let nb = min(nbMax, g.n - n0)
        let col = ws
        let staging = ws + crs * nbMax * pq
        im2col(col: col, input: input, shape: g, n0: n0, nb: nb)
        // (nb, K, PQ) → (K, nb·PQ)
        for kk in 0..<g.k {
            for i in 0..<nb {
                (staging + kk * nb * pq + i * pq).update(
                    from: dOutput + ((n0 + i) * g.k + kk) * pq, count: pq)
            }
        }
        sgemm(
            transA: false, transB: true, m: g.k, n: crs, k: nb * pq, alpha: 1, a: staging,
            lda: nb * pq, b: col, ldb: nb * pq, beta: 1, c: dWeight, ldc: crs)
        if let dInput {
            sgemm(
                transA: true, transB: false, m: crs, n: nb * pq, k: g.k, alpha: 1, a: weight,
                lda: crs, b: staging, ldb: nb * pq, beta: 0, c: col, ldc: nb * pq)
            col2imAccumulate(dInput: dInput, col: col, shape: g, n0: n0, nb: nb)
        }
        n0 += nb
    }
}
