// The centripetal gradient transform, csgd.md §3.2, in per-cluster arithmetic.
//
// For a clustered tensor reshaped to rows W (one row per filter/channel) with loss gradient G:
//     g̃ = M·G + D·W,   D = η·I + ε·(I − M),   M = within-cluster averaging.
// Row j of cluster H:  g̃_j = mean_H(G) + η·W_j + ε·(W_j − mean_H(W)).
// Kernels — the producers' filters and every depthwise filter the channels pass through — use
// (η, ε); per-channel vectors — conv and depthwise biases, BN γ and β, including a
// pre-activation BN reading the channels inside a concatenation — use (η_b, factor·ε), the
// official code's 10× weaker pull on vectors. Which rows belong to which cluster comes from the
// topology's coupled-tensor list (ChannelGroup.coupled), the one list the pruner also reads. The mean gradient of a cluster is computed once
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
    /// Row of the tensor holding channel 0 of the clusters (non-zero for a BN on a concat).
    public let channelOffset: Int
}

/// Applies C-SGD to gradients and measures how far clusters are from collapsing.
public struct CentripetalUpdate: Sendable {
    /// Every tensor the transform touches.
    public let tensors: [ClusteredTensor]
    /// Hyper-parameters.
    public let config: CentripetalConfig

    /// The topology the tensors come from (for merging running statistics).
    public let topology: Topology
    /// The clusters.
    public let plan: ClusterPlan

    /// Collects every trainable tensor coupled to a clustered group (`ChannelGroup.coupled`).
    /// Rows of those tensors outside any clustered group (a BN over a concat of clustered and
    /// unclustered channels) get singleton entries, i.e. plain decay by the same η: the
    /// optimizer skips its own decay for the whole tensor.
    public init(
        topology: Topology, plan: ClusterPlan, store: ParameterStore, config: CentripetalConfig
    ) {
        var list: [ClusteredTensor] = []
        var covered: [ParameterID: (rows: [Bool], rowLength: Int, isVector: Bool)] = [:]
        for g in topology.groups where plan.isClustered(group: g.index) {
            for t in g.coupled {
                guard let p = t.parameter else { continue }
                let isVector = t.kind == .vector
                list.append(
                    ClusteredTensor(
                        parameter: p, rowLength: t.rowLength, clusters: plan.groups[g.index],
                        isVector: isVector, channelOffset: t.channelOffset))
                var c =
                    covered[p]
                    ?? ([Bool](repeating: false, count: t.rows), t.rowLength, isVector)
                for j in 0..<g.width { c.rows[t.channelOffset + j] = true }
                covered[p] = c
            }
        }
        for p in covered.keys.sorted(by: { $0.index < $1.index }) {
            let c = covered[p]!
            var j = 0
            while j < c.rows.count {
                if c.rows[j] {
                    j += 1
                    continue
                }
                let start = j
                while j < c.rows.count && !c.rows[j] { j += 1 }
                list.append(
                    ClusteredTensor(
                        parameter: p, rowLength: c.rowLength,
                        clusters: (0..<(j - start)).map { [$0] }, isVector: c.isVector,
                        channelOffset: start))
            }
        }
        tensors = list
        self.config = config
        self.topology = topology
        self.plan = plan
    }

    /// Parameters whose weight decay the optimizer must skip (D carries it).
    public var parameters: Set<ParameterID> { Set(tensors.map(\.parameter)) }

    /// Replaces each clustered tensor's gradient in `store.grads` by M·G + D·W, in place.
    public func transformGradients(_ store: ParameterStore) {
        for t in tensors {
            let eta = Float(t.isVector ? config.vectorWeightDecay : config.weightDecay)
            let eps = Float(
                t.isVector ? config.strength * config.vectorStrengthFactor : config.strength)
            let rows = t.channelOffset * t.rowLength
            CentripetalUpdate.transform(
                grad: store.grad(t.parameter) + rows, weight: store.value(t.parameter) + rows,
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

    /// Σ over clustered kernels (and, separately, vectors) of Σ_H Σ_{j∈H} ‖W_j − mean_H‖²,
    /// over every coupled tensor (producers' kernels and biases, BN γ/β, depthwise filters).
    public func deviation(_ store: ParameterStore) -> (kernels: Double, vectors: Double) {
        var k = 0.0
        var v = 0.0
        for t in tensors {
            let w = store.value(t.parameter) + t.channelOffset * t.rowLength
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

extension CentripetalUpdate {
    /// Sets the running statistics of every collapsed cluster to the cluster mean
    /// (`RunningStatistics.merge`); call once a round's training has ended.
    public func mergeRunningStatistics(
        _ store: ParameterStore, tolerance: Double = RunningStatistics.defaultTolerance
    ) -> RunningStatistics.Summary {
        RunningStatistics.merge(store, topology: topology, plan: plan, tolerance: tolerance)
    }
}
