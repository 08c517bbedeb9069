// Ops that move or weigh whole channels, from imported graphs (PyTorch semantics): the
// squeeze-excitation gate (x · g, g one value per image and channel), a channel slice
// (`x[:, a:b]`, `torch.split`), the channel shuffle of ShuffleNet
// (view(N, g, C/g, H, W) → transpose(1, 2) → view(N, C, H, W)) and global max pooling.
// Backward passes ACCUMULATE into their input gradients, like every other kernel here.

/// `output[n, c, i] = input[n, c, i] · gate[n, c]` (the gate broadcast over H·W).
public func channelScaleForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, nc: Int, hw: Int
) {
    parallelForEach(nc, elementsEach: hw) { p in
        let g = gate[p]
        let x = input + p * hw
        let y = output + p * hw
        for i in 0..<hw { y[i] = x[i] * g }
    }
}

/// Channel-scale backward. ACCUMULATES `dInput += dOutput · gate` and
/// `dGate[n, c] += Σᵢ dOutput · input` (either may be nil: the image needs no gradient).
public func channelScaleBackward(
    dInput: UnsafeMutablePointer<Float>?, dGate: UnsafeMutablePointer<Float>?,
    dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, gate: UnsafePointer<Float>,
    nc: Int, hw: Int
) {
    parallelForEach(nc, elementsEach: hw) { p in
        let dy = dOutput + p * hw
        if let dInput {
            let g = gate[p]
            let dx = dInput + p * hw
            for i in 0..<hw { dx[i] += dy[i] * g }
        }
        if let dGate {
            let x = input + p * hw
            var s: Float = 0
            for i in 0..<hw { s += dy[i] * x[i] }
            dGate[p] += s
        }
    }
}

/// Channels `start ..< start + count` of `input[N, channels, hw]` into `output[N, count, hw]`.
public func channelSliceForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, start: Int, count: Int,
    channels: Int, n: Int, hw: Int
) {
    for i in 0..<n {
        (output + i * count * hw).update(
            from: input + (i * channels + start) * hw, count: count * hw)
    }
}

/// Channel-slice backward: ACCUMULATES `dOutput[N, count, hw]` into channels
/// `start ..< start + count` of `dInput[N, channels, hw]`.
public func channelSliceBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, start: Int, count: Int,
    channels: Int, n: Int, hw: Int
) {
    for i in 0..<n {
        let dy = dOutput + i * count * hw
        let dx = dInput + (i * channels + start) * hw
        for j in 0..<(count * hw) { dx[j] += dy[j] }
    }
}

/// The input channel that output channel `c` of a shuffle of `channels` in `groups` reads:
/// output `j·groups + i` is input `i·(channels / groups) + j`.
@inline(__always)
public func shuffledSource(_ c: Int, channels: Int, groups: Int) -> Int {
    (c % groups) * (channels / groups) + c / groups
}

/// Channel shuffle forward (`groups` divides `channels`).
public func channelShuffleForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, channels: Int,
    groups: Int, n: Int, hw: Int
) {
    for i in 0..<n {
        for c in 0..<channels {
            let src = shuffledSource(c, channels: channels, groups: groups)
            (output + (i * channels + c) * hw).update(
                from: input + (i * channels + src) * hw, count: hw)
        }
    }
}

/// Channel shuffle backward: ACCUMULATES each output channel's gradient into its source.
public func channelShuffleBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, channels: Int,
    groups: Int, n: Int, hw: Int
) {
    for i in 0..<n {
        for c in 0..<channels {
            let src = shuffledSource(c, channels: channels, groups: groups)
            let dy = dOutput + (i * channels + c) * hw
            let dx = dInput + (i * channels + src) * hw
            for j in 0..<hw { dx[j] += dy[j] }
        }
    }
}

/// Global max pool: `output[p] = max of plane p`, the first maximum's index into `argmax`.
public func globalMaxPoolForward(
    output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
    input: UnsafePointer<Float>, nc: Int, hw: Int
) {
    parallelForEach(nc, elementsEach: hw) { p in
        let x = input + p * hw
        var best = x[0]
        var at = 0
        for i in 1..<max(hw, 1) where x[i] > best || best.isNaN {
            best = x[i]
            at = i
        }
        output[p] = best
        argmax[p] = Int32(at)
    }
}

/// Global max pool backward: ACCUMULATES each plane's gradient at its maximum.
public func globalMaxPoolBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    argmax: UnsafePointer<Int32>, nc: Int, hw: Int
) {
    for p in 0..<nc { dInput[p * hw + Int(argmax[p])] += dOutput[p] }
}

// MARK: - spatial: zero padding and nearest upsampling

/// Zero padding of `input[planes, h, w]` by `top`, `left`, `bottom`, `right` rows/columns
/// (an asymmetric "same" padding before a conv); `output` is
/// `[planes, h + top + bottom, w + left + right]`.
public func padForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, planes: Int, h: Int,
    w: Int, top: Int, left: Int, bottom: Int, right: Int
) {
    let (oh, ow) = (h + top + bottom, w + left + right)
    output.update(repeating: 0, count: planes * oh * ow)
    for p in 0..<planes {
        for r in 0..<h {
            (output + (p * oh + r + top) * ow + left).update(
                from: input + (p * h + r) * w, count: w)
        }
    }
}

/// Padding backward: ACCUMULATES the interior of `dOutput` into `dInput`.
public func padBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, planes: Int, h: Int,
    w: Int, top: Int, left: Int, bottom: Int, right: Int
) {
    let (oh, ow) = (h + top + bottom, w + left + right)
    for p in 0..<planes {
        for r in 0..<h {
            let dy = dOutput + (p * oh + r + top) * ow + left
            let dx = dInput + (p * h + r) * w
            for c in 0..<w { dx[c] += dy[c] }
        }
    }
}

/// Nearest upsampling by an integer `factor` (PyTorch's `Upsample(scale_factor=s,
/// mode="nearest")`): `output[p, i, j] = input[p, i / s, j / s]`.
public func upsampleForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, planes: Int, h: Int,
    w: Int, factor s: Int
) {
    let (oh, ow) = (h * s, w * s)
    parallelForEach(planes, elementsEach: oh * ow) { p in
        for i in 0..<oh {
            let x = input + (p * h + i / s) * w
            let y = output + (p * oh + i) * ow
            for j in 0..<ow { y[j] = x[j / s] }
        }
    }
}

/// Upsampling backward: ACCUMULATES the sum of each s×s block of `dOutput` into its source.
public func upsampleBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, planes: Int, h: Int,
    w: Int, factor s: Int
) {
    let (oh, ow) = (h * s, w * s)
    parallelForEach(planes, elementsEach: oh * ow) { p in
        for i in 0..<oh {
            let dx = dInput + (p * h + i / s) * w
            let dy = dOutput + (p * oh + i) * ow
            for j in 0..<ow { dx[j / s] += dy[j] }
        }
    }
}
