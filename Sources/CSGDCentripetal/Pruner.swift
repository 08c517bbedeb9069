// Building the thinner network, csgd.md §7.
//
// Each channel group gets a list of channel SETS; new channel i of every producer in the group
// is the old channel sets[i][0] (kernel row, bias, BN γ/β/running stats), and every consumer's
// new input channel i is the SUM of its old input channels in sets[i] (conv: over the input
// axis; FC: over that channel's column block). For C-SGD the sets are the clusters: members
// compute identical outputs, so W·x over the members equals (Σ W)·x_first — the thin net is the
// same function. For magnitude pruning the sets are the kept channels alone, so consumers simply
// drop the rest. Residual groups share one set list, so all adds delete the same channels.
// Nothing is resized in place: a new Network is built from the new widths.

import CSGDCore
import CSGDModels

/// Builds thinner networks from a trained one.
public enum Pruner {
    /// C-SGD pruning: keeps the first filter of every cluster, sums consumers' inputs per
    /// cluster.
    /// - Throws: `CSGDError` if the plan does not fit the network.
    public static func prune(_ net: Network, topology: Topology, plan: ClusterPlan) throws
        -> Network
    {
        try plan.validate(topology)
        return try rebuild(net, topology: topology, channelSets: plan.groups)
    }

    /// Magnitude (L1-norm) filter pruning to the widths of `target`: in each group, keeps the
    /// channels with the largest L1 norm summed over all the group's producer kernels; the
    /// rest are deleted, consumers drop their inputs (Li et al., "Pruning Filters for Efficient
    /// ConvNets", ICLR 2017).
    public static func magnitudePrune(
        _ net: Network, topology: Topology, target: PruneTarget
    ) throws -> Network {
        let widths = try target.groupWidths(topology)
        var sets: [[[Int]]] = []
        for (gi, g) in topology.groups.enumerated() {
            var norms = [Double](repeating: 0, count: g.width)
            for p in g.producers {
                let w = net.store.value(topology.convs[p].weight)
                let d = net.store[topology.convs[p].weight].rowLength
                for j in 0..<g.width {
                    for i in 0..<d { norms[j] += Double(abs(w[j * d + i])) }
                }
            }
            // Stable order: larger norm first, ties by index; then keep ascending indices.
            let keep = (0..<g.width).sorted {
                norms[$0] != norms[$1] ? norms[$0] > norms[$1] : $0 < $1
            }
            .prefix(widths[gi]).sorted()
            sets.append(keep.map { [$0] })
        }
        return try rebuild(net, topology: topology, channelSets: sets)
    }

    /// The general rewrite (see the file comment).
    static func rebuild(_ net: Network, topology: Topology, channelSets sets: [[[Int]]]) throws
        -> Network
    {
        var arch = net.architecture
        arch.widths = topology.convs.map { sets[$0.groupIndex].count }
        let thin = try Network(architecture: arch)
        thin.batchNorm = net.batchNorm
        let newTopology = try Topology(graph: thin.graph)
        // Which group feeds each conv / FC layer.
        var inputGroupOfConv: [Int: Int] = [:]
        var inputGroupOfLinear: [Int: (group: Int, perChannel: Int)] = [:]
        for g in topology.groups {
            for c in g.consumers {
                switch c {
                case .conv(let ci): inputGroupOfConv[ci] = g.index
                case .linear(let li, let p): inputGroupOfLinear[li] = (g.index, p)
                }
            }
        }
        let old = net.store
        let new = thin.store
        for (ci, node) in topology.convs.enumerated() {
            let newNode = newTopology.convs[ci]
            let reps = sets[node.groupIndex].map { $0[0] }
            let oldSpec = old[node.weight]
            let (cIn, rs) = (oldSpec.shape[1], oldSpec.shape[2] * oldSpec.shape[3])
            let inSets = inputGroupOfConv[ci].map { sets[$0] } ?? (0..<cIn).map { [$0] }
            let src = old.value(node.weight)
            let dst = new.value(newNode.weight)
            let newIn = inSets.count
            if new[newNode.weight].shape != [reps.count, newIn, oldSpec.shape[2], oldSpec.shape[3]]
            {
                throw CSGDError("prune: \(node.name) has an unexpected shape after pruning")
            }
            for (o, ro) in reps.enumerated() {
                for (i, set) in inSets.enumerated() {
                    let out = dst + (o * newIn + i) * rs
                    out.update(repeating: 0, count: rs)
                    for k in set {
                        let inp = src + (ro * cIn + k) * rs
                        for t in 0..<rs { out[t] += inp[t] }
                    }
                }
            }
            func gather(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>) {
                for (o, ro) in reps.enumerated() { b[o] = a[ro] }
            }
            if let b = node.bias, let nb = newNode.bias { gather(old.value(b), new.value(nb)) }
            if let s = node.bnScale, let ns = newNode.bnScale {
                gather(old.value(s), new.value(ns))
            }
            if let s = node.bnShift, let ns = newNode.bnShift {
                gather(old.value(s), new.value(ns))
            }
            if let m = node.runningMean, let nm = newNode.runningMean {
                gather(old.buffer(m), new.buffer(nm))
            }
            if let v = node.runningVar, let nv = newNode.runningVar {
                gather(old.buffer(v), new.buffer(nv))
            }
        }
        for (li, layer) in net.graph.layers.enumerated() {
            guard case .linear(let l) = layer, case .linear(let nl) = thin.graph.layers[li] else {
                continue
            }
            let src = old.value(l.weight)
            let dst = new.value(nl.weight)
            if let (g, p) = inputGroupOfLinear[li] {
                for o in 0..<l.outFeatures {
                    for (i, set) in sets[g].enumerated() {
                        let out = dst + o * nl.inFeatures + i * p
                        out.update(repeating: 0, count: p)
                        for k in set {
                            let inp = src + o * l.inFeatures + k * p
                            for t in 0..<p { out[t] += inp[t] }
                        }
                    }
                }
            } else {
                dst.update(from: src, count: l.outFeatures * l.inFeatures)
            }
            if let b = l.bias, let nb = nl.bias {
                new.value(nb).update(from: old.value(b), count: l.outFeatures)
            }
        }
        return thin
    }
}

/// Per-layer widths, parameters and FLOPs before → after pruning.
public struct PruneReport: Sendable {
    /// One row per conv plus the FC.
    public struct Row: Sendable {
        public let name: String
        public let widthBefore: Int, widthAfter: Int
        public let paramsBefore: Int, paramsAfter: Int
        public let flopsBefore: Int, flopsAfter: Int
    }
    public let rows: [Row]
    public let paramsBefore: Int, paramsAfter: Int
    public let flopsBefore: Int, flopsAfter: Int

    /// Compares two builds of the same model (same layer structure).
    public init(before: Graph, after: Graph) {
        var rows: [Row] = []
        for (a, b) in zip(before.layers, after.layers) {
            switch (a, b) {
            case (.conv(let x), .conv(let y)):
                rows.append(
                    Row(
                        name: x.name, widthBefore: x.shape.k, widthAfter: y.shape.k,
                        paramsBefore: x.shape.k * x.shape.rowLength,
                        paramsAfter: y.shape.k * y.shape.rowLength, flopsBefore: x.shape.flops,
                        flopsAfter: y.shape.flops))
            case (.linear(let x), .linear(let y)):
                rows.append(
                    Row(
                        name: x.name, widthBefore: x.outFeatures, widthAfter: y.outFeatures,
                        paramsBefore: x.inFeatures * x.outFeatures + x.outFeatures,
                        paramsAfter: y.inFeatures * y.outFeatures + y.outFeatures,
                        flopsBefore: x.inFeatures * x.outFeatures,
                        flopsAfter: y.inFeatures * y.outFeatures))
            default: break
            }
        }
        self.rows = rows
        paramsBefore = before.parameterCount
        paramsAfter = after.parameterCount
        flopsBefore = before.flopsPerImage
        flopsAfter = after.flopsPerImage
    }

    /// Fraction of FLOPs removed.
    public var flopsCut: Double { 1 - Double(flopsAfter) / Double(flopsBefore) }

    /// A fixed-width table: one line per layer and a total line.
    public func table() -> String {
        func pad(_ s: String, _ n: Int) -> String {
            s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
        }
        func lpad(_ s: String, _ n: Int) -> String {
            s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
        }
        var out =
            pad("layer", 26) + lpad("width", 12) + lpad("params", 20) + lpad("MFLOPs", 20) + "\n"
        for r in rows {
            out +=
                pad(r.name, 26) + lpad("\(r.widthBefore) → \(r.widthAfter)", 12)
                + lpad("\(r.paramsBefore) → \(r.paramsAfter)", 20)
                + lpad(
                    fmt(Double(r.flopsBefore) / 1e6) + " → " + fmt(Double(r.flopsAfter) / 1e6), 20)
                + "\n"
        }
        out +=
            pad("total", 26) + lpad("", 12) + lpad("\(paramsBefore) → \(paramsAfter)", 20)
            + lpad(fmt(Double(flopsBefore) / 1e6) + " → " + fmt(Double(flopsAfter) / 1e6), 20)
            + "\n"
        out +=
            "FLOPs cut: \(fmt(100 * flopsCut))%  (params cut: "
            + "\(fmt(100 * (1 - Double(paramsAfter) / Double(paramsBefore))))%)"
        return out
    }

    private func fmt(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return "\(r)"
    }
}
