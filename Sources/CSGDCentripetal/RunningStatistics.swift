// Running statistics of collapsed clusters (docs/pruning-rules.md).
//
// C-SGD pulls a cluster's kernels, biases and BN γ/β together, but a BN's running mean and
// variance are not trained: they follow the batch statistics through the running average
// (×0.9 per step). A net that arrives trained (imported, or thinned by an earlier round) brings
// statistics that differ inside a cluster, so after a short round the kernels and γ/β can be
// bitwise identical while the statistics still differ by 0.9^steps of their spread — and eval
// mode normalises with the statistics, so the pruned net is not the unpruned one.
//
// The choice: at the end of a round, for every cluster whose trainable coupled tensors agree
// (largest member difference ≤ tolerance × the largest magnitude of the tensor's rows in the
// group), set the members' running mean and variance to the cluster mean, in the unpruned net
// itself (the round's last checkpoint holds the merged values). From then on the members are identical channels, in eval
// and in any further training (identical kernels give identical batch statistics, so the
// running averages stay equal); the pruned net equals this unpruned net exactly, and that is
// what the equivalence check compares against. The change to the unpruned net is only the
// not-yet-decayed history the running average would have erased anyway.
// Not chosen: merging at the start of a round (the kernels still differ, so the statistics
// drift apart again and a short round stays inexact); re-estimating over a few hundred batches
// (a data pass that also moves every other channel's statistics). Clusters that have not
// collapsed keep their statistics: merging them would change the unpruned net without making
// the prune exact, and the equivalence check reports them.

import CSGDCore
import CSGDModels

/// Merging the running statistics of collapsed clusters (see the file comment).
public enum RunningStatistics {
    /// Relative agreement of a cluster's trainable tensors that counts as collapsed.
    public static let defaultTolerance = 1e-5

    /// What a merge did.
    public struct Summary: Equatable, Sendable {
        /// Clusters with more than one member.
        public var clusters = 0
        /// Of those, the collapsed ones whose statistics were merged.
        public var merged = 0
        /// Largest |statistic − cluster mean| changed by the merge.
        public var largestChange = 0.0
        /// The pacesetter of a group with a cluster that had not collapsed, if any.
        public var notCollapsed: String?
    }

    /// Whether every trainable tensor coupled to `group` agrees within cluster `members`: the
    /// largest difference of a member's row from the first member's is at most `tolerance`
    /// times the largest magnitude in the tensor's rows of the group. (Measured against the
    /// cluster's own rows instead, a cluster whose values happen to sit near zero — a β or a
    /// folded bias of ~1e-7 — would never count as collapsed, though its rows agree to far
    /// below anything the logits can see.)
    public static func isCollapsed(
        _ members: [Int], group: ChannelGroup, store: ParameterStore, tolerance: Double
    ) -> Bool {
        for t in group.coupled {
            guard let p = t.parameter else { continue }
            let d = t.rowLength
            let w = store.value(p) + t.channelOffset * d
            var scale: Float = 0
            for i in 0..<(group.width * d) { scale = max(scale, abs(w[i])) }
            var diff: Float = 0
            let first = w + members[0] * d
            for j in members {
                let r = w + j * d
                for i in 0..<d { diff = max(diff, abs(r[i] - first[i])) }
            }
            if !(Double(diff) <= tolerance * Double(scale)) { return false }
        }
        return true
    }

    /// Sets the running mean and variance of every collapsed cluster of `plan` to the cluster
    /// mean (all coupled BNs: after the producer, after a depthwise conv, over a concat).
    public static func merge(
        _ store: ParameterStore, topology: Topology, plan: ClusterPlan,
        tolerance: Double = defaultTolerance
    ) -> Summary {
        var summary = Summary()
        for g in topology.groups where plan.isClustered(group: g.index) {
            for h in plan.groups[g.index] where h.count > 1 {
                summary.clusters += 1
                if !isCollapsed(h, group: g, store: store, tolerance: tolerance) {
                    if summary.notCollapsed == nil {
                        summary.notCollapsed = topology.convs[g.pacesetter].name
                    }
                    continue
                }
                summary.merged += 1
                for t in g.coupled {
                    guard let b = t.buffer else { continue }
                    let v = store.buffer(b) + t.channelOffset
                    let mean = h.reduce(0.0) { $0 + Double(v[$1]) } / Double(h.count)
                    for j in h {
                        summary.largestChange = max(summary.largestChange, abs(Double(v[j]) - mean))
                        v[j] = Float(mean)
                    }
                }
            }
        }
        return summary
    }
}
