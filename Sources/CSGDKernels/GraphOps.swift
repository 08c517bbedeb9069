// The smaller ops of imported graphs: ReLU6, channel concatenation and average pooling
// (PyTorch semantics throughout).

// MARK: - ReLU6

/// `output = min(max(input, 0), 6)` (PyTorch's ReLU6 = Hardtanh(0, 6)); may run in place.
public func relu6Forward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int
) {
    let zero = SIMD8<Float>()
    let six = SIMD8<Float>(repeating: 6)
    var i = 0
    while i + 8 <= count {
        var v = UnsafeRawPointer(input + i).loadUnaligned(as: SIMD8<Float>.self)
        v = v.replacing(with: zero, where: .!(v .> zero))
        v = v.replacing(with: six, where: v .> six)
        UnsafeMutableRawPointer(output + i).storeBytes(of: v, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        let v = input[i]
        output[i] = !(v > 0) ? 0 : (v > 6 ? 6 : v)
        i += 1
    }
}

/// ReLU6 backward from the forward output. ACCUMULATES: `dInput += dOutput · [0 < output < 6]`.
/// The gradient is 0 AT both bounds, as PyTorch's `hardtanh_backward` (it passes the gradient
/// only where min_val < x < max_val); 0 < y < 6 ⇔ 0 < x < 6, so the output decides.
public func relu6Backward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    output: UnsafePointer<Float>, count: Int
) {
    let zero = SIMD8<Float>()
    let six = SIMD8<Float>(repeating: 6)
    var i = 0
    while i + 8 <= count {
        let y = UnsafeRawPointer(output + i).loadUnaligned(as: SIMD8<Float>.self)
        let g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: SIMD8<Float>.self)
        let d = UnsafeRawPointer(dInput + i).loadUnaligned(as: SIMD8<Float>.self)
        let pass = (y .> zero) .& (y .< six)
        UnsafeMutableRawPointer(dInput + i).storeBytes(
            of: d + g.replacing(with: zero, where: .!pass), as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        if output[i] > 0 && output[i] < 6 { dInput[i] += dOutput[i] }
        i += 1
    }
}

// MARK: - concat

/// Channel concatenation, one input at a time: copies `input[N, channels, hw]` to channels
/// `offset ..< offset + channels` of `output[N, totalChannels, hw]` (a concat calls this once
/// per input).
public func concatForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, offset: Int,
    channels: Int, totalChannels: Int, n: Int, hw: Int
) {
    let count = channels * hw
    for i in 0..<n {
        (output + (i * totalChannels + offset) * hw).update(from: input + i * count, count: count)
    }
}

/// Concat backward for one input: ACCUMULATES its slice of `dOutput[N, totalChannels, hw]`
/// (channels `offset ..< offset + channels`) into `dInput[N, channels, hw]`, or STORES it when
/// `overwrite` (a buffer that holds nothing yet).
public func concatBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, offset: Int,
    channels: Int, totalChannels: Int, n: Int, hw: Int, overwrite: Bool = false
) {
    let count = channels * hw
    for i in 0..<n {
        let src = dOutput + (i * totalChannels + offset) * hw
        let dst = dInput + i * count
        if overwrite {
            dst.update(from: src, count: count)
        } else {
            for j in 0..<count { dst[j] += src[j] }
        }
    }
}

// MARK: - average pooling

/// The window of output (p, q): rows `h0 ..< h1`, columns `w0 ..< w1` clipped to the image,
/// and its divisor: the window's size inside the padded input when `countIncludePad`
/// (PyTorch's `count_include_pad=True`), else the number of image entries it covers.
@inline(__always)
private func avgWindow(_ g: PoolShape, _ p: Int, _ q: Int, countIncludePad: Bool) -> (
    h0: Int, h1: Int, w0: Int, w1: Int, divisor: Float
) {
    let hs = p * g.stride - g.pad
    let ws = q * g.stride - g.pad
    let he = min(hs + g.kernel, g.h + g.pad)
    let we = min(ws + g.kernel, g.w + g.pad)
    let padded = (he - hs) * (we - ws)
    let h0 = max(hs, 0)
    let w0 = max(ws, 0)
    let h1 = min(he, g.h)
    let w1 = min(we, g.w)
    // PoolShape keeps pad ≤ kernel / 2, so every window covers at least one image entry.
    return (h0, h1, w0, w1, Float(countIncludePad ? padded : (h1 - h0) * (w1 - w0)))
}

/// Average pool forward (PyTorch AvgPool2d, floor mode): `output[N, C, P, Q]` is each
/// window's sum divided by its divisor (see `countIncludePad`).
/// - Parameter countIncludePad: count padded zeros in the divisor (PyTorch's default; ONNX
///   AveragePool's default is not to).
public func avgPoolForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, shape g: PoolShape,
    countIncludePad: Bool
) {
    let hw = g.h * g.w
    let pq = g.p * g.q
    for plane in 0..<(g.n * g.c) {
        let x = input + plane * hw
        let y = output + plane * pq
        for p in 0..<g.p {
            for q in 0..<g.q {
                let win = avgWindow(g, p, q, countIncludePad: countIncludePad)
                var sum: Float = 0
                for hi in win.h0..<win.h1 {
                    for wi in win.w0..<win.w1 { sum += x[hi * g.w + wi] }
                }
                y[p * g.q + q] = sum / win.divisor
            }
        }
    }
}

/// Average pool backward. ACCUMULATES `dOutput / divisor` into every input entry of each
/// window.
public func avgPoolBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, shape g: PoolShape,
    countIncludePad: Bool
) {
    let hw = g.h * g.w
    let pq = g.p * g.q
    for plane in 0..<(g.n * g.c) {
        let dx = dInput + plane * hw
        let dy = dOutput + plane * pq
        for p in 0..<g.p {
            for q in 0..<g.q {
                let win = avgWindow(g, p, q, countIncludePad: countIncludePad)
                let d = dy[p * g.q + q] / win.divisor
                for hi in win.h0..<win.h1 {
                    for wi in win.w0..<win.w1 { dx[hi * g.w + wi] += d }
                }
            }
        }
    }
}
