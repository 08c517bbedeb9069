// LayerNorm over the channels of each pixel (ConvNeXt's `LayerNorm2d`; `nn.LayerNorm(C)` on
// the channels-last view): for image n and pixel p,
//   μ = mean_c x[n, c, p],  σ² = mean_c (x[n, c, p] − μ)²  (biased, as PyTorch),
//   y[n, c, p] = (x[n, c, p] − μ) / √(σ² + eps) · weight[c] + bias[c].
// The layout stays NCHW: the statistics run over the channel stride, a pixel row at a time,
// so the inner loops are contiguous. The variance is two-pass (Σ (x − μ)², not Σx² − μ²), the
// form that stays accurate when |μ| ≫ σ.
// Backward passes ACCUMULATE into their gradients, like every other kernel here.

/// Per-pixel mean and 1/√(σ² + eps) of one image's `channels` × `hw` values.
@inline(__always)
private func channelStatistics(
    _ x: UnsafePointer<Float>, channels: Int, hw: Int, eps: Float,
    mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>
) {
    mean.update(repeating: 0, count: hw)
    rstd.update(repeating: 0, count: hw)
    for c in 0..<channels {
        let row = x + c * hw
        for p in 0..<hw { mean[p] += row[p] }
    }
    let inv = 1 / Float(channels)
    for p in 0..<hw { mean[p] *= inv }
    for c in 0..<channels {
        let row = x + c * hw
        for p in 0..<hw {
            let d = row[p] - mean[p]
            rstd[p] += d * d
        }
    }
    for p in 0..<hw { rstd[p] = 1 / (rstd[p] * inv + eps).squareRoot() }
}

/// LayerNorm over channels, forward, for `n` images of `channels` × `hw`.
public func channelNormForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, n: Int, channels: Int, hw: Int,
    eps: Float
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * hw) { scratch in
        let mean = scratch.baseAddress!
        let rstd = mean + hw
        for b in 0..<n {
            let x = input + b * channels * hw
            let y = output + b * channels * hw
            channelStatistics(x, channels: channels, hw: hw, eps: eps, mean: mean, rstd: rstd)
            for c in 0..<channels {
                let w = weight[c]
                let s = bias?[c] ?? 0
                let xr = x + c * hw
                let yr = y + c * hw
                for p in 0..<hw { yr[p] = (xr[p] - mean[p]) * rstd[p] * w + s }
            }
        }
    }
}

/// LayerNorm over channels, backward. With x̂ = (x − μ)·r and g = dy · weight:
///   dx = r · (g − mean_c g − x̂ · mean_c (g · x̂)),  dWeight[c] += Σ dy · x̂,  dBias[c] += Σ dy.
/// ACCUMULATES `dInput` (when non-nil), `dWeight` and `dBias` (when non-nil).
public func channelNormBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, channels: Int, hw: Int,
    eps: Float
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * hw) { scratch in
        let mean = scratch.baseAddress!
        let rstd = mean + hw
        let sumG = mean + 2 * hw
        let sumGX = mean + 3 * hw
        let inv = 1 / Float(channels)
        for b in 0..<n {
            let x = input + b * channels * hw
            let dy = dOutput + b * channels * hw
            channelStatistics(x, channels: channels, hw: hw, eps: eps, mean: mean, rstd: rstd)
            sumG.update(repeating: 0, count: hw)
            sumGX.update(repeating: 0, count: hw)
            for c in 0..<channels {
                let w = weight[c]
                let xr = x + c * hw
                let dr = dy + c * hw
                var dw: Float = 0
                var db: Float = 0
                for p in 0..<hw {
                    let xhat = (xr[p] - mean[p]) * rstd[p]
                    let g = dr[p] * w
                    sumG[p] += g
                    sumGX[p] += g * xhat
                    dw += dr[p] * xhat
                    db += dr[p]
                }
                dWeight[c] += dw
                if let dBias { dBias[c] += db }
            }
            guard let dInput else { continue }
            let dx = dInput + b * channels * hw
            for c in 0..<channels {
                let w = weight[c]
                let xr = x + c * hw
                let dr = dy + c * hw
                let out = dx + c * hw
                for p in 0..<hw {
                    let xhat = (xr[p] - mean[p]) * rstd[p]
                    out[p] += rstd[p] * (dr[p] * w - sumG[p] * inv - xhat * sumGX[p] * inv)
                }
            }
        }
    }
}
