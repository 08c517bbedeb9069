// The centripetal gradient transform, csgd.md §3.2, in per-cluster arithmetic.
//
// For a clustered tensor reshaped to rows W (one row per filter/channel) with loss gradient G:
//     g̃ = M·G + D·W,   D = η·I + ε·(I − M),   M = within-cluster averaging.
// Row j of cluster H:  g̃_j = mean_H(G) + η·W_j + ε·(W_j − mean_H(W)).
// Kernels use (η, ε); per-channel vectors — conv bias, BN γ and β — use (η_b, factor·ε), the
// official code's 10× weaker pull on vectors. The mean gradient of a cluster is computed once
// and written to every member, so members' loss-driven updates are bitwise equal and
// W_j − W_k contracts by exactly (1 − τ(η+ε)) per plain-SGD step (§3.3).
// The optimizer must NOT add its own weight decay to these tensors: η already lives in D.

import CSGDCore
import CSGDModels

/// C-SGD hyper-parameters.
public struct CentripetalConfig: Codable, Equatable, Sendable {
    /// ε, the centripetal strength on kernels.
    public var strength: Double
    /// η, the weight decay carried inside D for clustered kernels.
    public var weightDecay: Double
    /// Vectors are pulled with `vectorStrengthFactor · ε` (0.1 in the official code).
    public var vectorStrengthFactor: Double
    /// η_b, the decay of clustered vectors (0 in every shipped config).
    public var vectorWeightDecay: Double

    /// Creates a configuration (defaults: the paper's CIFAR values).
    public init(
        strength: Double = 3e-3, weightDecay: Double = 1e-4, vectorStrengthFactor: Double = 0.1,
        vectorWeightDecay: Double = 0
    ) {
        self.strength = strength
        self.weightDecay = weightDecay
        self.vectorStrengthFactor = vectorStrengthFactor
        self.vectorWeightDecay = vectorWeightDecay
    }
}

/// One tensor the transform acts on.
public struct ClusteredTensor: Sendable {
    /// The parameter.
    public let parameter: ParameterID
    /// Floats per row (C·R·S for kernels, 1 for vectors).
    public let rowLength: Int
    /// Its group's clusters.
    public let clusters: [[Int]]
    /// Whether it is a per-channel vector (bias, γ, β).
    public let isVector: Bool
}

/// Applies C-SGD to gradients and measures how far clusters are from collapsing.
public struct CentripetalUpdate: Sendable {
    /// Every tensor the transform touches.
    public let tensors: [ClusteredTensor]
    /// Hyper-parameters.
    public let config: CentripetalConfig

    /// Collects the kernel, bias and BN γ/β of every conv in a clustered group.
    public init(
        topology: Topology, plan: ClusterPlan, store: ParameterStore, config: CentripetalConfig
    ) {
        var list: [ClusteredTensor] = []
        for node in topology.convs where plan.isClustered(group: node.groupIndex) {
            let clusters = plan.groups[node.groupIndex]
            list.append(
                ClusteredTensor(
                    parameter: node.weight, rowLength: store[node.weight].rowLength,
                    clusters: clusters, isVector: false))
            for v in [node.bias, node.bnScale, node.bnShift].compactMap({ $0 }) {
                list.append(
                    ClusteredTensor(parameter: v, rowLength: 1, clusters: clusters, isVector: true))
            }
        }
        tensors = list
        self.config = config
    }

    /// Parameters whose weight decay the optimizer must skip (D carries it).
    public var parameters: Set<ParameterID> { Set(tensors.map(\.parameter)) }

    /// Replaces each clustered tensor's gradient in `store.grads` by M·G + D·W, in place.
    public func transformGradients(_ store: ParameterStore) {
        for t in tensors {
            let eta = Float(t.isVector ? config.vectorWeightDecay : config.weightDecay)
            let eps = Float(
                t.isVector ? config.strength * config.vectorStrengthFactor : config.strength)
            CentripetalUpdate.transform(
                grad: store.grad(t.parameter), weight: store.value(t.parameter),
                rowLength: t.rowLength, clusters: t.clusters, decay: eta, strength: eps)
        }
    }

    /// The transform on one tensor: a pure function of (gradient, weights, clusters).
    /// Row j of cluster H becomes mean_H(G) + decay·W_j + strength·(W_j − mean_H(W)).
    public static func transform(
        grad: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, rowLength d: Int,
        clusters: [[Int]], decay: Float, strength: Float
    ) {
        let meanG = UnsafeMutablePointer<Float>.allocate(capacity: d)
        let meanW = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer {
            meanG.deallocate()
            meanW.deallocate()
        }
        for h in clusters {
            if h.count == 1 {
                // M row is e_j, (I − M) row is 0: plain weight decay.
                let g = grad + h[0] * d
                let w = weight + h[0] * d
                for i in 0..<d { g[i] += decay * w[i] }
                continue
            }
            meanG.update(repeating: 0, count: d)
            meanW.update(repeating: 0, count: d)
            for j in h {
                let g = grad + j * d
                let w = weight + j * d
                for i in 0..<d {
                    meanG[i] += g[i]
                    meanW[i] += w[i]
                }
            }
            let inv = 1 / Float(h.count)
            for i in 0..<d {
                meanG[i] *= inv
                meanW[i] *= inv
            }
            for j in h {
                let g = grad + j * d
                let w = weight + j * d
                for i in 0..<d { g[i] = meanG[i] + decay * w[i] + strength * (w[i] - meanW[i]) }
            }
        }
    }

    /// Σ over clustered kernels (and, separately, vectors) of Σ_H Σ_{j∈H} ‖W_j − mean_H‖².
    public func deviation(_ store: ParameterStore) -> (kernels: Double, vectors: Double) {
        var k = 0.0
        var v = 0.0
        for t in tensors {
            let w = store.value(t.parameter)
            var s = 0.0
            for h in t.clusters where h.count > 1 {
                for i in 0..<t.rowLength {
                    var mean = 0.0
                    for j in h { mean += Double(w[j * t.rowLength + i]) }
                    mean /= Double(h.count)
                    for j in h {
                        let e = Double(w[j * t.rowLength + i]) - mean
                        s += e * e
                    }
                }
            }
            if t.isVector { v += s } else { k += s }
        }
        return (k, v)
    }
}
