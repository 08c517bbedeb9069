// SGD with momentum (PyTorch torch.optim.SGD semantics, dampening 0) over the whole parameter
// block, with per-group learning rate and weight decay decided by each tensor's ROLE:
//   kernels, FC weight:       lr × 1,              decay `weightDecay`
//   BN scale γ:               lr × 1,              decay 0
//   biases, BN shift β:       lr × biasLrFactor,   decay `biasWeightDecay`   (official code: 2×)
//   C-SGD-clustered tensors:  as their kind,       decay 0 (η lives in the decay matrix D)
// Update: g ← grad + wd·w;  buf ← μ·buf + g;  step = Nesterov ? g + μ·buf : buf;  w ← w − lr·step.

import CSGDConfig
import CSGDCore
import Foundation

/// Hyper-parameters of the optimizer.
public struct SGDConfig: Equatable, Sendable {
    public var momentum: Double
    public var nesterov: Bool
    public var weightDecay: Double
    public var biasLrFactor: Double
    public var biasWeightDecay: Double

    /// From a run configuration.
    public init(_ c: RunConfig) {
        momentum = c.momentum
        nesterov = c.nesterov
        weightDecay = c.weightDecay
        biasLrFactor = c.biasLrFactor
        biasWeightDecay = c.biasWeightDecay
    }
}

/// Momentum SGD over a `ParameterStore` (values, grads and momentum blocks).
public struct SGD: Sendable {
    /// A run of the block sharing one learning-rate scale and one weight decay.
    struct Segment: Sendable {
        let offset: Int, count: Int
        let lrScale: Float, decay: Float
    }
    let segments: [Segment]
    let momentum: Float
    let nesterov: Bool

    /// Plans the parameter groups of `store`; tensors in `noDecay` get no weight decay.
    public init(store: ParameterStore, config: SGDConfig, noDecay: Set<ParameterID> = []) {
        var segs: [Segment] = []
        for (i, spec) in store.specs.enumerated() {
            let bias = spec.role.isBiasLike
            var decay: Double
            switch spec.role {
            case .convWeight, .fcWeight: decay = config.weightDecay
            case .bnScale: decay = 0
            case .convBias, .bnShift, .fcBias: decay = config.biasWeightDecay
            }
            if noDecay.contains(ParameterID(i)) { decay = 0 }
            segs.append(
                Segment(
                    offset: spec.offset, count: spec.count,
                    lrScale: Float(bias ? config.biasLrFactor : 1), decay: Float(decay)))
        }
        segments = segs
        momentum = Float(config.momentum)
        nesterov = config.nesterov
    }

    /// One step at learning rate `lr`, consuming `store.grads`.
    public func step(_ store: ParameterStore, lr: Double) {
        let w = store.values.pointer
        let g = store.grads.pointer
        let m = store.momentum.pointer
        let mu = momentum
        for s in segments {
            let lrs = Float(lr) * s.lrScale
            let wd = s.decay
            for i in s.offset..<(s.offset + s.count) {
                let gi = g[i] + wd * w[i]
                let buf = mu * m[i] + gi
                m[i] = buf
                let step = nesterov ? gi + mu * buf : buf
                w[i] -= lrs * step
            }
        }
    }
}

/// Learning rate as a function of the global step (iteration-based, as the official code).
public struct LRSchedule: Sendable {
    public let base: Double
    public let kind: LRScheduleKind
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public let milestones: [Int]
    public let gamma: Double
    public let warmupSteps: Int

    /// From a run configuration and the number of steps per epoch.
    public init(_ c: RunConfig, stepsPerEpoch: Int, epochs: Int? = nil) {
        base = c.lr
        kind = c.lrSchedule
        self.stepsPerEpoch = stepsPerEpoch
        totalSteps = stepsPerEpoch * (epochs ?? c.epochs)
        milestones = c.milestones.map { $0 * stepsPerEpoch }
        gamma = c.lrGamma
        warmupSteps = Int((c.warmupEpochs * Double(stepsPerEpoch)).rounded())
    }

    /// LR of step `it` (0-based): warmup from 0, then multistep / cosine / constant.
    public func lr(at it: Int) -> Double {
        var lr = base
        switch kind {
        case .multistep:
            lr *= pow(gamma, Double(milestones.filter { $0 <= it }.count))
        case .cosine:
            let t = Double(it) / Double(max(1, totalSteps))
            lr *= 0.5 * (1 + cos(Double.pi * min(1, t)))
        case .constant:
            break
        }
        if it < warmupSteps { lr *= Double(it) / Double(warmupSteps) }
        return lr
    }
}
