// Building the thinner network, csgd.md §7, on any graph of the contract's ops
// (docs/pruning-rules.md).
//
// Each channel group gets a list of channel SETS. Every tensor's channels are segments of groups
// (Topology.segments), so each tensor's new channel i is a set of its old channels: the group's
// set at the segment's offset. Per-channel tensors (a conv's filters and bias for its output,
// BN γ/β/running statistics, depthwise filters and biases for their input) keep the first
// member of each set; dense mixers (a conv's input axis, an FC's column blocks of H·W floats)
// SUM their inputs over each set. For C-SGD the sets are the clusters: members compute identical
// outputs, so W·x over the members equals (Σ W)·x_first — the thin net is the same function.
// For magnitude pruning the sets are the kept channels alone, so consumers simply drop the
// rest. Residual groups share one set list, so all adds delete the same channels; a concat's
// new offsets follow from the new widths. Grouped convs only touch fixed groups, so they are
// copied. Nothing is resized in place: a new Network is built from the new widths.

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
        let old = net.store
        let new = thin.store
        let groupOfConvLayer = Dictionary(
            uniqueKeysWithValues: topology.convs.map { ($0.layerIndex, $0.groupIndex) })
        // Each tensor's new channels as sets of its old channels: per segment, the group's sets
        // at the segment's offset; channels no conv writes (image, linear outputs) stay as is.
        func channelMap(_ t: TensorID) -> [[Int]] {
            var map: [[Int]] = []
            for s in topology.segments[t.index] {
                // A fixed group keeps every channel; its runs may be parts of it (a slice).
                if let g = s.group, !topology.groups[g].isFixed {
                    map += sets[g].map { set in set.map { $0 + s.offset } }
                } else {
                    map += (s.offset..<(s.offset + s.width)).map { [$0] }
                }
            }
            return map
        }
        func fail(_ name: String) -> CSGDError {
            CSGDError("prune: \(name) has an unexpected shape after pruning")
        }
        // New row o of `dst` is old row reps[o] of `src` (rows of `d` floats).
        func gather(
            _ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
            _ reps: [Int], _ d: Int
        ) {
            for (o, r) in reps.enumerated() { (dst + o * d).update(from: src + r * d, count: d) }
        }
        func gatherParameter(_ a: ParameterID?, _ b: ParameterID?, _ reps: [Int], _ name: String)
            throws
        {
            guard let a, let b else { return }
            let d = old[a].rowLength
            if new[b].shape != [reps.count] + old[a].shape.dropFirst() { throw fail(name) }
            gather(old.value(a), new.value(b), reps, d)
        }
        for (li, (layer, newLayer)) in zip(net.graph.layers, thin.graph.layers).enumerated() {
            switch (layer, newLayer) {
            case (.conv(let l), .conv(let nl)):
                let outSets = sets[groupOfConvLayer[li]!]
                let reps = outSets.map { $0[0] }
                let inMap = channelMap(l.input)
                let spec = old[l.weight]
                let rs = spec.shape[2] * spec.shape[3]
                if l.groups > 1 {
                    // All its spaces are fixed: nothing changes.
                    if new[nl.weight].shape != spec.shape { throw fail(l.name) }
                    new.value(nl.weight).update(from: old.value(l.weight), count: spec.count)
                } else {
                    let cIn = spec.shape[1]
                    let newIn = inMap.count
                    if new[nl.weight].shape != [reps.count, newIn, spec.shape[2], spec.shape[3]] {
                        throw fail(l.name)
                    }
                    let src = old.value(l.weight)
                    let dst = new.value(nl.weight)
                    for (o, ro) in reps.enumerated() {
                        for (i, set) in inMap.enumerated() {
                            let out = dst + (o * newIn + i) * rs
                            out.update(repeating: 0, count: rs)
                            for k in set {
                                let inp = src + (ro * cIn + k) * rs
                                for t in 0..<rs { out[t] += inp[t] }
                            }
                        }
                    }
                }
                try gatherParameter(l.bias, nl.bias, reps, l.name)
            case (.depthwiseConv(let l), .depthwiseConv(let nl)):
                let reps = channelMap(l.input).map { $0[0] }
                try gatherParameter(l.weight, nl.weight, reps, l.name)
                try gatherParameter(l.bias, nl.bias, reps, l.name)
            case (.batchNorm(let l), .batchNorm(let nl)):
                let reps = channelMap(l.input).map { $0[0] }
                if nl.channels != reps.count { throw fail(l.name) }
                try gatherParameter(l.scale, nl.scale, reps, l.name)
                try gatherParameter(l.shift, nl.shift, reps, l.name)
                gather(old.buffer(l.runningMean), new.buffer(nl.runningMean), reps, 1)
                gather(old.buffer(l.runningVar), new.buffer(nl.runningVar), reps, 1)
            case (.linear(let l), .linear(let nl)):
                let t = net.graph.tensors[l.input.index]
                let p = t.h * t.w
                let inMap = channelMap(l.input)
                if nl.inFeatures != inMap.count * p || nl.outFeatures != l.outFeatures {
                    throw fail(l.name)
                }
                let src = old.value(l.weight)
                let dst = new.value(nl.weight)
                for o in 0..<l.outFeatures {
                    for (i, set) in inMap.enumerated() {
                        let out = dst + o * nl.inFeatures + i * p
                        out.update(repeating: 0, count: p)
                        for k in set {
                            let inp = src + o * l.inFeatures + k * p
                            for t in 0..<p { out[t] += inp[t] }
                        }
                    }
                }
                if let b = l.bias, let nb = nl.bias {
                    new.value(nb).update(from: old.value(b), count: l.outFeatures)
                }
            case (.channelConv(let l), .channelConv(let nl)):
                // Topology holds the space it slides over fixed: the weights carry over as is.
                if nl.channels != l.channels || nl.kernel != l.kernel { throw fail(l.name) }
                new.value(nl.weight).update(from: old.value(l.weight), count: l.kernel)
                if let b = l.bias, let nb = nl.bias {
                    new.value(nb).update(from: old.value(b), count: 1)
                }
            case (.channelNorm(let l), .channelNorm(let nl)):
                // Topology holds the space it normalises fixed: the weights carry over as is.
                if nl.channels != l.channels || (nl.bias == nil) != (l.bias == nil) {
                    throw fail(l.name)
                }
                new.value(nl.weight).update(from: old.value(l.weight), count: l.channels)
                if let b = l.bias, let nb = nl.bias {
                    new.value(nb).update(from: old.value(b), count: l.channels)
                }
            default:
                // Ops without parameters have nothing to gather: their widths follow their
                // inputs in the rebuilt graph.
                if layer.op != newLayer.op {
                    throw CSGDError("prune: layer \(li) changed kind after pruning")
                }
                if layer.op.traits.hasParameters {
                    throw CSGDError("prune: no rule for the parameters of layer \(li)")
                }
            }
        }
        return thin
    }
}

/// Per-layer widths, parameters and FLOPs before → after pruning.
public struct PruneReport: Sendable {
    /// One row per conv (dense, grouped, depthwise) plus the FC.
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
                        paramsBefore: x.weightCount, paramsAfter: y.weightCount,
                        flopsBefore: x.flops, flopsAfter: y.flops))
            case (.depthwiseConv(let x), .depthwiseConv(let y)):
                rows.append(
                    Row(
                        name: x.name, widthBefore: x.shape.k, widthAfter: y.shape.k,
                        paramsBefore: x.shape.k * x.shape.r * x.shape.s,
                        paramsAfter: y.shape.k * y.shape.r * y.shape.s, flopsBefore: x.flops,
                        flopsAfter: y.flops))
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
