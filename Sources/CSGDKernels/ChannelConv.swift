// The ECA gate's convolution (Wang et al., "ECA-Net", CVPR 2020; timm's EcaModule): a Conv1d
// with one input and one output channel that slides along the CHANNEL axis of pooled
// features, `y[n, c] = b + Σⱼ w[j] · x[n, c + j − pad]` (zeros outside 0 ..< C), as PyTorch's
// `Conv1d(1, 1, k, padding: pad)` on `x.view(N, 1, C)` computes it. It mixes neighbouring
// channels, which is why Topology holds the space it reads fixed.
// Backward passes ACCUMULATE into their gradients, like every other kernel here.

/// ECA forward over `n` rows of `channels` values: output keeps the input's length
/// (`kernel` = 2·`pad` + 1).
public func channelConvForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: Float, n: Int, channels: Int, kernel: Int, pad: Int
) {
    for row in 0..<n {
        let x = input + row * channels
        let y = output + row * channels
        for c in 0..<channels {
            // The taps whose source channel c + j − pad lies inside the row.
            let lo = max(0, pad - c)
            let hi = min(kernel, channels + pad - c)
            var s: Float = 0
            var j = lo
            while j < hi {
                s += weight[j] * x[c + j - pad]
                j += 1
            }
            y[c] = s + bias
        }
    }
}

/// ECA backward. ACCUMULATES `dInput` (when non-nil), `dWeight[j] += Σ dy[c] · x[c + j − pad]`
/// and `dBias += Σ dy` (when non-nil).
public func channelConvBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, channels: Int,
    kernel: Int, pad: Int
) {
    for row in 0..<n {
        let x = input + row * channels
        let dy = dOutput + row * channels
        for c in 0..<channels {
            let lo = max(0, pad - c)
            let hi = min(kernel, channels + pad - c)
            let g = dy[c]
            var j = lo
            while j < hi {
                dWeight[j] += g * x[c + j - pad]
                if let dInput { dInput[row * channels + c + j - pad] += g * weight[j] }
                j += 1
            }
            if let dBias { dBias[0] += g }
        }
    }
}
