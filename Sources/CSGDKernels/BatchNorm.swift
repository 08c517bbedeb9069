// Batch normalization over (N, H, W) per channel, PyTorch BatchNorm2d semantics:
// training uses batch statistics (biased variance to normalise), updates running stats with
// `momentum` (default 0.1) and the UNBIASED batch variance; eval uses the running stats.
// Sums are accumulated in Double: a 64×32×32 channel has 65536 terms.
// Channels are independent, so every pass runs its channels across `KernelThreads`; each
// channel's arithmetic is the same on any thread, so results are bitwise thread-count-free.

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
    parallelForEach(c, elementsEach: n * hw) { ch in
        let (sum, sq) = batchNormChannelMoments(input, ch, n, c, hw)
        batchNormChannelNormalize(
            output, saveMean, saveInvStd, runningMean, runningVar, input, scale, shift,
            mean: sum / Double(m), variance: sq / Double(m), count: m, ch, n, c, hw,
            config: config, relu: relu)
    }
}

/// Σx and Σ(x − mean)² of channel `ch` over the batch, the mean taken from the first pass
/// (stable two-pass variance); per image in Float, across images in Double. The fused kernel
/// and the group phase share it, so they agree bitwise.
@inline(__always)
func batchNormChannelMoments(
    _ input: UnsafePointer<Float>, _ ch: Int, _ n: Int, _ c: Int, _ hw: Int
) -> (sum: Double, centeredSquares: Double) {
    var sum = 0.0
    for i in 0..<n { sum += Double(vsum(input + (i * c + ch) * hw, hw)) }
    let meanF = Float(sum / Double(n * hw))
    var sq = 0.0
    for i in 0..<n {
        sq += Double(vsumAndCenteredSquares(input + (i * c + ch) * hw, hw, center: meanF).1)
    }
    return (sum, sq)
}

/// Normalises channel `ch` with its batch `mean` and biased `variance` over `count` elements,
/// saves mean and 1/√(var+eps), and updates the running statistics (unbiased variance).
@inline(__always)
func batchNormChannelNormalize(
    _ output: UnsafeMutablePointer<Float>, _ saveMean: UnsafeMutablePointer<Float>,
    _ saveInvStd: UnsafeMutablePointer<Float>, _ runningMean: UnsafeMutablePointer<Float>,
    _ runningVar: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>, mean: Double,
    variance: Double, count m: Int, _ ch: Int, _ n: Int, _ c: Int, _ hw: Int,
    config: BatchNormConfig, relu: Bool
) {
    let meanF = Float(mean)
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

// MARK: - Split phases (BatchNorm groups / SyncBN)
//
// The same training-mode BatchNorm cut where a caller may sum per-channel quantities over the
// ranks of a group, so the kernels stay communication-free:
//   forward:  batchNormStatistics → [sum over the group] → batchNormNormalize
//   backward: batchNormBackwardSums → [sum over the group] → batchNormBackwardInput
// With an identity sum (one rank) the phases give bit for bit what the fused kernels give.
//
// Variance across ranks, two-level: each rank keeps the fused kernel's stable two-pass M2
// (squares centred on its own mean, so no cancellation inside a rank), and the group sum
// merges them in Double with the parallel-variance identity
//   Σ_all (x − μ)² = Σ_r M2_r + (Σ_r S_r·μ_r − S·μ)      (S_r = Σx on rank r, μ_r = S_r/n_r).
// The bracket is Σ_r n_r(μ_r − μ)² ≥ 0 computed as a difference of Double sums: its error is
// ≈ 1e-16·N·μ², negligible unless |μ|/σ > 1e4. A plain (Σx, Σx²) exchange would instead need
// Σx² accumulated per element in Double (the row kernels sum in Float, which would lose the
// variance to cancellation once |μ| ≫ σ), and it would not reproduce the fused result with one
// rank. So the forward exchange is 3 doubles per channel plus the element count.

/// Doubles per channel that `batchNormStatistics` writes (Σx, M2, Σx·mean); the buffer holds
/// `batchNormStatisticsCount(channels:)` doubles in all.
public let batchNormStatisticsPerChannel = 3

/// Doubles in a `batchNormStatistics` buffer for `c` channels: 3 per channel, then the number
/// of elements per channel (so a group sum also pools the count).
public func batchNormStatisticsCount(channels c: Int) -> Int { 3 * c + 1 }

/// Doubles per channel that `batchNormBackwardSums` writes (Σdy, Σdy·(x − mean)).
public let batchNormGradientSumsPerChannel = 2

/// Training-mode BatchNorm, phase 1: this batch's per-channel statistics, to be summed
/// element-wise over a group of ranks (or left as they are) before `batchNormNormalize`.
/// - Parameters:
///   - stats: `batchNormStatisticsCount(channels: c)` doubles, overwritten:
///     `[0, c)` Σx, `[c, 2c)` Σ(x − x̄)² around this batch's own mean x̄ (as Float, as the fused
///     kernel centres), `[2c, 3c)` Σx·x̄ (x̄ in Double), `[3c]` the element count n·hw.
///   - input: `[N, C, H·W]`.
public func batchNormStatistics(
    stats: UnsafeMutablePointer<Double>, input: UnsafePointer<Float>, n: Int, c: Int, hw: Int
) {
    let m = n * hw
    parallelForEach(c, elementsEach: n * hw) { ch in
        // Exactly the fused kernel's two passes.
        let (sum, sq) = batchNormChannelMoments(input, ch, n, c, hw)
        stats[ch] = sum
        stats[c + ch] = sq
        stats[2 * c + ch] = sum * (sum / Double(m))
    }
    stats[3 * c] = Double(m)
}

/// Training-mode BatchNorm, phase 2: normalises with the (group-summed) statistics of
/// `batchNormStatistics`, saves mean and 1/√(var+eps) for backward and updates the running
/// statistics with them (unbiased variance over the pooled count, as PyTorch's SyncBatchNorm).
/// - Parameters:
///   - output: `[N, C, H·W]`, overwritten.
///   - saveMean, saveInvStd: `[C]`, overwritten.
///   - runningMean, runningVar: `[C]`, updated in place.
///   - stats: the summed statistics; its count `stats[3c]` (the pooled elements per channel)
///     must be at least 1.
///   - input, scale, shift, relu: as `batchNormForwardTraining`.
public func batchNormNormalize(
    output: UnsafeMutablePointer<Float>, saveMean: UnsafeMutablePointer<Float>,
    saveInvStd: UnsafeMutablePointer<Float>, runningMean: UnsafeMutablePointer<Float>,
    runningVar: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    stats: UnsafePointer<Double>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
    n: Int, c: Int, hw: Int, config: BatchNormConfig = .init(), relu: Bool = false
) {
    let total = stats[3 * c]
    precondition(total >= 1 && total <= 9e15, "batchNormNormalize: bad pooled count")
    let m = Int(total)
    parallelForEach(c, elementsEach: n * hw) { ch in
        let sum = stats[ch]
        let mean = sum / Double(m)
        // Parallel-variance merge (see above); the bracket is exactly 0 for a single rank.
        let sq = max(0, stats[c + ch] + (stats[2 * c + ch] - sum * mean))
        batchNormChannelNormalize(
            output, saveMean, saveInvStd, runningMean, runningVar, input, scale, shift,
            mean: mean, variance: sq / Double(m), count: m, ch, n, c, hw, config: config,
            relu: relu)
    }
}

/// BatchNorm forward in eval mode: `y = (x − running_mean)/√(running_var + eps)·γ + β`.
public func batchNormForwardEval(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, n: Int, c: Int, hw: Int,
    config: BatchNormConfig = .init(), relu: Bool = false
) {
    parallelForEach(c, elementsEach: n * hw) { ch in
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
    let va = FloatLanes(repeating: a)
    let vb = FloatLanes(repeating: b)
    let zero = FloatLanes()
    var j = 0
    while j + FloatLanes.scalarCount <= count {
        var v = UnsafeRawPointer(x + j).loadUnaligned(as: FloatLanes.self) * va + vb
        if relu { v = v.replacing(with: zero, where: .!(v .> zero)) }
        UnsafeMutableRawPointer(y + j).storeBytes(of: v, as: FloatLanes.self)
        j += FloatLanes.scalarCount
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
    parallelForEach(c, elementsEach: n * hw) { ch in
        let (sumDy, sumDyXhat) = batchNormChannelSums(dOutput, input, saveMean[ch], ch, n, c, hw)
        let sDy = Float(sumDy)
        let sDyXhat = Float(sumDyXhat) * saveInvStd[ch]
        dShift[ch] += sDy
        dScale[ch] += sDyXhat
        batchNormChannelInputGradient(
            dInput, dOutput, input, scale[ch], saveMean[ch], saveInvStd[ch], sDy, sDyXhat, m,
            ch, n, c, hw, overwrite: overwriteInput)
    }
}

/// Σdy and Σdy·(x − mean) of channel `ch` over the batch, summed per image in Float and
/// across images in Double (the fused and the group backward share it, so they agree bitwise).
@inline(__always)
func batchNormChannelSums(
    _ dOutput: UnsafePointer<Float>, _ input: UnsafePointer<Float>, _ mean: Float, _ ch: Int,
    _ n: Int, _ c: Int, _ hw: Int
) -> (Double, Double) {
    var sumDy = 0.0
    var sumDyXhat = 0.0
    for i in 0..<n {
        let (s1, s2) = vsumAndCenteredDot(
            dOutput + (i * c + ch) * hw, input + (i * c + ch) * hw, hw, center: mean)
        sumDy += Double(s1)
        sumDyXhat += Double(s2)
    }
    return (sumDy, sumDyXhat)
}

/// `dx = γ·invStd·(dy − Σdy/M − x̂·Σdy·x̂/M)` for channel `ch`, stored or accumulated.
@inline(__always)
func batchNormChannelInputGradient(
    _ dInput: UnsafeMutablePointer<Float>, _ dOutput: UnsafePointer<Float>,
    _ input: UnsafePointer<Float>, _ scale: Float, _ mean: Float, _ invStd: Float, _ sDy: Float,
    _ sDyXhat: Float, _ m: Float, _ ch: Int, _ n: Int, _ c: Int, _ hw: Int, overwrite: Bool
) {
    let g = scale * invStd
    let meanDy = sDy / m
    let meanDyXhat = sDyXhat / m
    for i in 0..<n {
        let x = input + (i * c + ch) * hw
        let dy = dOutput + (i * c + ch) * hw
        let dx = dInput + (i * c + ch) * hw
        if overwrite {
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

/// BatchNorm backward, phase 1: this batch's per-channel sums, to be summed over the group
/// before `batchNormBackwardInput`. Also ACCUMULATES this batch's own share into `dScale` and
/// `dShift` (dβ = Σdy, dγ = Σdy·x̂ over this rank's samples only): the gradient allreduce over
/// all ranks then adds the shares up once, where the group sums would count each one g times.
/// - Parameters:
///   - sums: `2·C` doubles, overwritten: `[0, c)` Σdy, `[c, 2c)` Σdy·(x − mean).
///   - dOutput, input, saveMean, saveInvStd: as `batchNormBackward`.
public func batchNormBackwardSums(
    sums: UnsafeMutablePointer<Double>, dScale: UnsafeMutablePointer<Float>,
    dShift: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, saveMean: UnsafePointer<Float>,
    saveInvStd: UnsafePointer<Float>, n: Int, c: Int, hw: Int
) {
    parallelForEach(c, elementsEach: n * hw) { ch in
        let (sumDy, sumDyXhat) = batchNormChannelSums(dOutput, input, saveMean[ch], ch, n, c, hw)
        sums[ch] = sumDy
        sums[c + ch] = sumDyXhat
        dShift[ch] += Float(sumDy)
        dScale[ch] += Float(sumDyXhat) * saveInvStd[ch]
    }
}

/// BatchNorm backward, phase 2: the input gradient from the (group-summed) sums of
/// `batchNormBackwardSums`, `dx = γ·invStd·(dy − Σdy/M − x̂·Σdy·x̂/M)` with M = `count`, the
/// pooled elements per channel (`stats[3c]` of the forward). ACCUMULATES into `dInput` unless
/// `overwriteInput` (as `batchNormBackward`).
public func batchNormBackwardInput(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, scale: UnsafePointer<Float>, saveMean: UnsafePointer<Float>,
    saveInvStd: UnsafePointer<Float>, sums: UnsafePointer<Double>, count: Int, n: Int, c: Int,
    hw: Int, overwriteInput: Bool = false
) {
    let m = Float(count)
    parallelForEach(c, elementsEach: n * hw) { ch in
        batchNormChannelInputGradient(
            dInput, dOutput, input, scale[ch], saveMean[ch], saveInvStd[ch], Float(sums[ch]),
            Float(sums[c + ch]) * saveInvStd[ch], m, ch, n, c, hw, overwrite: overwriteInput)
    }
}
