// Graceful pruning of a round that has not fully converged, and the merge behind the
// sensitivity measurement.
//
// `meanMerge` sets every member of a cluster to the cluster mean — every tensor coupled to the
// group's channels (Topology: producers' kernel rows and biases, BN γ, β, running mean and
// variance wherever the channels pass, depthwise filters) — on the UNPRUNED net. After
// it, the cluster members are identical, so the exact prune (Pruner.prune: keep member 0, sum
// the consumers' input slices) applies unchanged and the thin net computes what the merged
// net computes. When C-SGD has converged the members are already equal and the merge changes
// nothing; otherwise the merged net differs from the trained one by how far the clusters
// were from collapsing, which `deviation` reports per group and tensor kind.

import CSGDCore
import CSGDModels
import Foundation

/// How the filters of a cluster become one.
public enum MergeMode: String, Codable, Sendable, CaseIterable {
    /// The exact prune: clusters must already be identical (checked on the test set).
    case exact
    /// Set each cluster to its mean first (and optionally recalibrate BN), then prune.
    case mean
}

/// Relative within-cluster deviation of one group.
public struct GroupDeviation: Codable, Equatable, Sendable {
    /// The pacesetter conv's name.
    public var name: String
    /// √(Σ_H Σ_{j∈H} ‖x_j − x̄_H‖²) / √(Σ_j ‖x_j‖²), per tensor kind; nil when the group has none.
    public var kernel: Double
    public var bias: Double?
    public var bnScale: Double?
    public var bnShift: Double?
    public var runningMean: Double?
    public var runningVar: Double?

    /// The largest of the kinds.
    public var worst: Double {
        [kernel, bias, bnScale, bnShift, runningMean, runningVar].compactMap { $0 }.max() ?? 0
    }
}

/// Cluster-mean merging and the deviation report.
public enum ClusterMerge {
    /// Sets every cluster member of every group to its cluster mean (see the file comment).
    /// `clusters[g]` is a partition of group g's channels; singletons are left alone.
    public static func meanMerge(_ net: Network, topology: Topology, clusters: [[[Int]]]) {
        for g in topology.groups {
            let h = clusters[g.index]
            if !h.contains(where: { $0.count > 1 }) { continue }
            // Every per-channel tensor the space passes through (Topology's coupled list):
            // kernels and biases of the producers, BN γ/β/statistics, depthwise filters.
            for t in g.coupled {
                average(rows(net, t), rowLength: t.rowLength, clusters: h)
            }
        }
    }

    /// Merges one group only (the sensitivity measurement).
    public static func meanMerge(
        _ net: Network, topology: Topology, group: Int, clusters: [[Int]]
    ) {
        var all = topology.groups.map { g in (0..<g.width).map { [$0] } }
        all[group] = clusters
        meanMerge(net, topology: topology, clusters: all)
    }

    /// The relative within-cluster deviation of every clustered group of `plan`.
    public static func deviation(_ net: Network, topology: Topology, plan: ClusterPlan)
        -> [GroupDeviation]
    {
        var out: [GroupDeviation] = []
        for g in topology.groups where plan.isClustered(group: g.index) {
            let h = plan.groups[g.index]
            var sums: [String: (dev: Double, norm: Double)] = [:]
            func add(_ key: String, _ x: UnsafePointer<Float>, _ d: Int) {
                let (dev, norm) = spread(x, rowLength: d, clusters: h)
                let old = sums[key] ?? (0, 0)
                sums[key] = (old.dev + dev, old.norm + norm)
            }
            for t in g.coupled {
                add(kindKey(net, t), UnsafePointer(rows(net, t)), t.rowLength)
            }
            func rel(_ key: String) -> Double? {
                sums[key].map { $0.norm > 0 ? ($0.dev / $0.norm).squareRoot() : 0 }
            }
            out.append(
                GroupDeviation(
                    name: topology.convs[g.pacesetter].name, kernel: rel("kernel") ?? 0,
                    bias: rel("bias"), bnScale: rel("gamma"), bnShift: rel("beta"),
                    runningMean: rel("mean"), runningVar: rel("var")))
        }
        return out
    }

    /// The deviation report as text, one line per clustered group.
    public static func describe(_ rows: [GroupDeviation]) -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%9.2e", $0) } ?? "        -" }
        var out =
            "relative within-cluster deviation per group\n"
            + "group                                  kernel     bias    gamma     beta "
            + "    mean      var\n"
        for r in rows {
            out +=
                r.name.padding(toLength: 36, withPad: " ", startingAt: 0) + " "
                + [r.kernel, r.bias, r.bnScale, r.bnShift, r.runningMean, r.runningVar].map(f)
                .joined(separator: "") + "\n"
        }
        return out
    }

    // MARK: - helpers

    /// The rows of `t` holding the group's channel 0 onwards.
    static func rows(_ net: Network, _ t: CoupledTensor) -> UnsafeMutablePointer<Float> {
        let base: UnsafeMutablePointer<Float>
        switch t.storage {
        case .parameter(let p): base = net.store.value(p)
        case .buffer(let b): base = net.store.buffer(b)
        }
        return base + t.channelOffset * t.rowLength
    }

    /// The report column of a coupled tensor: kernel (conv or depthwise filters), bias (conv
    /// or depthwise bias), gamma/beta (BN), mean/var (BN running statistics).
    static func kindKey(_ net: Network, _ t: CoupledTensor) -> String {
        switch t.kind {
        case .kernel: return "kernel"
        case .runningMean: return "mean"
        case .runningVar: return "var"
        case .vector:
            if case .batchNorm(let bn) = net.graph.layers[t.layerIndex] {
                return t.parameter == bn.scale ? "gamma" : "beta"
            }
            return "bias"
        }
    }

    /// Rows of length `d`: each cluster's rows become their mean.
    static func average(_ x: UnsafeMutablePointer<Float>, rowLength d: Int, clusters: [[Int]]) {
        var mean = [Double](repeating: 0, count: d)
        for h in clusters where h.count > 1 {
            for t in 0..<d { mean[t] = 0 }
            for j in h {
                for t in 0..<d { mean[t] += Double(x[j * d + t]) }
            }
            let inv = 1 / Double(h.count)
            for j in h {
                for t in 0..<d { x[j * d + t] = Float(mean[t] * inv) }
            }
        }
    }

    /// (Σ_H Σ_{j∈H} ‖x_j − x̄_H‖², Σ_j ‖x_j‖²).
    static func spread(_ x: UnsafePointer<Float>, rowLength d: Int, clusters: [[Int]])
        -> (Double, Double)
    {
        var dev = 0.0
        var norm = 0.0
        var mean = [Double](repeating: 0, count: d)
        for h in clusters {
            for t in 0..<d { mean[t] = 0 }
            for j in h {
                for t in 0..<d { mean[t] += Double(x[j * d + t]) }
            }
            for t in 0..<d { mean[t] /= Double(h.count) }
            for j in h {
                for t in 0..<d {
                    let v = Double(x[j * d + t])
                    dev += (v - mean[t]) * (v - mean[t])
                    norm += v * v
                }
            }
        }
        return (dev, norm)
    }
}
