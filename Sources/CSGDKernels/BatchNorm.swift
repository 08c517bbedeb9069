// Batch normalization over (N, H, W) per channel, PyTorch BatchNorm2d semantics:
// training uses batch statistics (biased variance to normalise), updates running stats with
// `momentum` (default 0.1) and the UNBIASED batch variance; eval uses the running stats.
// Sums are accumulated in Double: a 64×32×32 channel has 65536 terms.

/// Hyper-parameters of a BatchNorm layer.
public struct BatchNormConfig: Sendable, Equatable {
    /// Added to the variance before the square root.
    public var eps: Float = 1e-5
    /// Running-stat update weight: `running = (1 − momentum)·running + momentum·batch`.
    public var momentum: Float = 0.1
    /// PyTorch defaults (eps 1e-5, momentum 0.1).
    public init(eps: Float = 1e-5, momentum: Float = 0.1) {
        self.eps = eps
        self.momentum = momentum
    }
}

/// BatchNorm forward in training mode.
/// - Parameters:
///   - output: `[N, C, H·W]`, overwritten (may alias nothing).
///   - saveMean, saveInvStd: `[C]`, overwritten with the batch mean and 1/√(var+eps) for backward.
///   - runningMean, runningVar: `[C]`, updated in place.
///   - input: `[N, C, H·W]`.
///   - scale, shift: γ and β, `[C]`.
///   - relu: apply ReLU to the output in the same pass (BN → ReLU fused).
public func batchNormForwardTraining(
    output: UnsafeMutablePointer<Float>, saveMean: UnsafeMutablePointer<Float>,
    saveInvStd: UnsafeMutablePointer<Float>, runningMean: UnsafeMutablePointer<Float>,
    runningVar: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, n: Int, c: Int, hw: Int,
    config: BatchNormConfig = .init(), relu: Bool = false
) {
    let m = n * hw
    for ch in 0..<c {
        // Pass 1: the mean; pass 2: squared deviations from it (stable two-pass variance).
        var sum = 0.0
        for i in 0..<n { sum += Double(vsum(input + (i * c + ch) * hw, hw)) }
        let mean = sum / Double(m)
        let meanF = Float(mean)
        var sq = 0.0
        for i in 0..<n {
            sq += Double(vsumAndCenteredSquares(input + (i * c + ch) * hw, hw, center: meanF).1)
        }
        let variance = sq / Double(m)
        let invStd = Float(1.0 / (variance + Double(config.eps)).squareRoot())
        saveMean[ch] = meanF
        saveInvStd[ch] = invStd
        let a = scale[ch] * invStd
        let b = shift[ch] - meanF * a
        for i in 0..<n {
            affine(output + (i * c + ch) * hw, input + (i * c + ch) * hw, hw, a, b, relu: relu)
        }
        let unbiased = m > 1 ? variance * Double(m) / Double(m - 1) : variance
        let mom = config.momentum
        runningMean[ch] = (1 - mom) * runningMean[ch] + mom * meanF
        runningVar[ch] = (1 - mom) * runningVar[ch] + mom * Float(unbiased)
    }
}

/// BatchNorm forward in eval mode: `y = (x − running_mean)/√(running_var + eps)·γ + β`.
public func batchNormForwardEval(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, n: Int, c: Int, hw: Int,
    config: BatchNormConfig = .init(), relu: Bool = false
) {
    for ch in 0..<c {
        let (a, b) = batchNormEvalCoefficients(
            ch, runningMean: runningMean, runningVar: runningVar, scale: scale, shift: shift,
            config: config)
        for i in 0..<n {
            affine(output + (i * c + ch) * hw, input + (i * c + ch) * hw, hw, a, b, relu: relu)
        }
    }
}

/// Eval-mode BatchNorm as a per-channel affine map: `a = γ/√(running_var + eps)`,
/// `b = β − running_mean·a`, so `y = x·a + b`. Writes `[C]` each of `a` and `b`: feed them to
/// `conv2dForward`'s epilogue to fuse the BN into the conv before it (same rounding).
public func batchNormEvalAffine(
    a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, c: Int,
    config: BatchNormConfig = .init()
) {
    for ch in 0..<c {
        (a[ch], b[ch]) = batchNormEvalCoefficients(
            ch, runningMean: runningMean, runningVar: runningVar, scale: scale, shift: shift,
            config: config)
    }
}

@inline(__always)
func batchNormEvalCoefficients(
    _ ch: Int, runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, config: BatchNormConfig
) -> (Float, Float) {
    let invStd = 1 / (runningVar[ch] + config.eps).squareRoot()
    let a = scale[ch] * invStd
    return (a, shift[ch] - runningMean[ch] * a)
}

/// `y = x·a + b`, then `max(·, 0)` when `relu` — one pass (a fused ReLU saves re-reading and
/// re-writing the whole tensor). Rounding is the same as the separate steps: no FMA.
@inline(__always)
func affine(
    _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int, _ a: Float,
    _ b: Float, relu: Bool
) {
    let va = SIMD8<Float>(repeating: a)
    let vb = SIMD8<Float>(repeating: b)
    let zero = SIMD8<Float>()
    var j = 0
    while j + 8 <= count {
        var v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self) * va + vb
        if relu { v = v.replacing(with: zero, where: .!(v .> zero)) }
        UnsafeMutableRawPointer(y + j).storeBytes(of: v, as: SIMD8<Float>.self)
        j += 8
    }
    while j < count {
        let v = x[j] * a + b
        y[j] = relu && !(v > 0) ? 0 : v
        j += 1
    }
}

/// BatchNorm backward (training mode). ACCUMULATES into `dScale`, `dShift` and — unless
/// `overwriteInput` — into `dInput`; with `overwriteInput` the input gradient is stored, not
/// added (the caller's buffer holds nothing yet: saves zeroing it and reading it back).
///
/// With x̂ = (x − mean)·invStd: dβ = Σ dy, dγ = Σ dy·x̂,
/// dx = γ·invStd·(dy − mean(dy) − x̂·mean(dy·x̂)).
public func batchNormBackward(
    dInput: UnsafeMutablePointer<Float>, dScale: UnsafeMutablePointer<Float>,
    dShift: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, scale: UnsafePointer<Float>, saveMean: UnsafePointer<Float>,
    saveInvStd: UnsafePointer<Float>, n: Int, c: Int, hw: Int, overwriteInput: Bool = false
) {
    let m = Float(n * hw)
    for ch in 0..<c {
        let mean = saveMean[ch]
        let invStd = saveInvStd[ch]
        var sumDy = 0.0
        var sumDyXhat = 0.0
        for i in 0..<n {
            let (s1, s2) = vsumAndCenteredDot(
                dOutput + (i * c + ch) * hw, input + (i * c + ch) * hw, hw, center: mean)
            sumDy += Double(s1)
            sumDyXhat += Double(s2)
        }
        let sDy = Float(sumDy)
        let sDyXhat = Float(sumDyXhat) * invStd
        dShift[ch] += sDy
        dScale[ch] += sDyXhat
        let g = scale[ch] * invStd
        let meanDy = sDy / m
        let meanDyXhat = sDyXhat / m
        for i in 0..<n {
            let x = input + (i * c + ch) * hw
            let dy = dOutput + (i * c + ch) * hw
            let dx = dInput + (i * c + ch) * hw
            if overwriteInput {
                for j in 0..<hw {
                    let xhat = (x[j] - mean) * invStd
                    dx[j] = g * (dy[j] - meanDy - xhat * meanDyXhat)
                }
            } else {
                for j in 0..<hw {
                    let xhat = (x[j] - mean) * invStd
                    dx[j] += g * (dy[j] - meanDy - xhat * meanDyXhat)
                }
            }
        }
    }
}
