// Max pooling (PyTorch MaxPool2d: padding counts as −∞, ties go to the first maximum in
// row-major window order) and global average pooling to [N, C].

import CSGDCore

/// Geometry of a max pool.
public struct PoolShape: Equatable, Sendable {
    public let n: Int, c: Int, h: Int, w: Int
    public let kernel: Int, stride: Int, pad: Int
    /// PyTorch's `ceil_mode`: a last, partial window where the floor division drops one
    /// (only if it starts inside the input or its left padding).
    public let ceilMode: Bool
    /// Output height.
    public let p: Int
    /// Output width.
    public let q: Int

    /// Validates and derives the output size.
    /// - Throws: `CSGDError` for non-positive sizes, padding above half the kernel (PyTorch's
    ///   rule) or a window larger than the padded input.
    public init(
        n: Int, c: Int, h: Int, w: Int, kernel: Int, stride: Int, pad: Int, ceilMode: Bool = false
    ) throws {
        if n < 1 || c < 1 || h < 1 || w < 1 || kernel < 1 || stride < 1 || pad < 0 {
            throw CSGDError("maxpool: sizes must be positive")
        }
        if pad > kernel / 2 { throw CSGDError("maxpool: pad \(pad) exceeds half the kernel") }
        if kernel > h + 2 * pad || kernel > w + 2 * pad {
            throw CSGDError("maxpool: kernel \(kernel) is larger than the padded input")
        }
        self.n = n
        self.c = c
        self.h = h
        self.w = w
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.ceilMode = ceilMode
        // torch's pooling_output_shape (dilation 1).
        func side(_ x: Int) -> Int {
            var o = (x + 2 * pad - kernel + (ceilMode ? stride - 1 : 0)) / stride + 1
            if ceilMode && (o - 1) * stride >= x + pad { o -= 1 }
            return o
        }
        p = side(h)
        q = side(w)
    }

    /// Same geometry for another batch size.
    public func with(batch: Int) -> PoolShape {
        try! PoolShape(
            n: batch, c: c, h: h, w: w, kernel: kernel, stride: stride, pad: pad,
            ceilMode: ceilMode)
    }
}

/// Max pool forward. Writes `output[N, C, P, Q]` and the flat input index of each maximum
/// (within its H·W plane) into `argmax` for backward.
public func maxPoolForward(
    output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
    input: UnsafePointer<Float>, shape g: PoolShape
) {
    let hw = g.h * g.w
    let pq = g.p * g.q
    parallelForEach(g.n * g.c, elementsEach: hw) { plane in
        let x = input + plane * hw
        let y = output + plane * pq
        let am = argmax + plane * pq
        for p in 0..<g.p {
            for q in 0..<g.q {
                var best = -Float.infinity
                var bestIndex: Int32 = -1
                for r in 0..<g.kernel {
                    let hi = p * g.stride - g.pad + r
                    if hi < 0 || hi >= g.h { continue }
                    for s in 0..<g.kernel {
                        let wi = q * g.stride - g.pad + s
                        if wi < 0 || wi >= g.w { continue }
                        let v = x[hi * g.w + wi]
                        if v > best || bestIndex < 0 {
                            best = v
                            bestIndex = Int32(hi * g.w + wi)
                        }
                    }
                }
                y[p * g.q + q] = best
                am[p * g.q + q] = bestIndex
            }
        }
    }
}

/// Max pool backward. ACCUMULATES each output gradient into its maximum's input position.
public func maxPoolBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    argmax: UnsafePointer<Int32>, shape g: PoolShape
) {
    let hw = g.h * g.w
    let pq = g.p * g.q
    parallelForEach(g.n * g.c, elementsEach: hw) { plane in
        let dx = dInput + plane * hw
        let dy = dOutput + plane * pq
        let am = argmax + plane * pq
        for j in 0..<pq { dx[Int(am[j])] += dy[j] }
    }
}

/// Global average pool: `output[N, C] = mean over H·W of input[N, C, H·W]`.
public func globalAvgPoolForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, nc: Int, hw: Int
) {
    let inv = 1 / Float(hw)
    parallelForEach(nc, elementsEach: hw) { i in
        output[i] = vsum(input + i * hw, hw) * inv
    }
}

/// Global average pool backward. ACCUMULATES `dOutput[N, C] / (H·W)` into every position.
public func globalAvgPoolBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, nc: Int, hw: Int
) {
    let inv = 1 / Float(hw)
    parallelForEach(nc, elementsEach: hw) { i in
        let g = dOutput[i] * inv
        let dx = dInput + i * hw
        for j in 0..<hw { dx[j] += g }
    }
}
