// What an import produces: an architecture (graph spec, sizes, preprocessing) and the tensors
// of the model file by checkpoint name; and the report printed after an import.

import CSGDCore
import CSGDModels

/// A translated model, ready to be written as a csgd-dist model file.
public struct ImportedModel {
    /// The architecture (with its graph spec and preprocessing).
    public var architecture: Architecture
    /// Every parameter and BatchNorm buffer by checkpoint name (`features.0.weight`, …).
    public var tensors: [String: [Float]]
    /// Things the user should know about the translation (one line each).
    public var notes: [String] = []

    /// The network with the imported weights.
    /// - Throws: `CSGDError` if a tensor the graph needs is missing, has the wrong size, or
    ///   is not finite, or a tensor is left over (the translation and the graph disagree).
    public func network() throws -> Network {
        let net = try Network(architecture: architecture)
        let store = net.store
        var unused = Set(tensors.keys)
        func fill(_ name: String, _ count: Int, _ p: UnsafeMutablePointer<Float>) throws {
            guard let v = tensors[name] else {
                throw CSGDError("\(architecture.model): no weights for \(name)")
            }
            if v.count != count {
                throw CSGDError(
                    "\(architecture.model): \(name) has \(v.count) values, the graph needs \(count)"
                )
            }
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw CSGDError("\(architecture.model): \(name)[\(bad)] is \(v[bad])")
            }
            v.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: count) }
            unused.remove(name)
        }
        for (i, s) in store.specs.enumerated() {
            try fill(s.name, s.count, store.value(ParameterID(i)))
        }
        for (i, s) in store.bufferSpecs.enumerated() {
            try fill(s.name, s.count, store.buffer(BufferID(i)))
        }
        if let extra = unused.sorted().first {
            throw CSGDError("\(architecture.model): tensor \(extra) is not used by the graph")
        }
        store.momentum.zero()
        store.grads.zero()
        return net
    }

    /// Writes the model file (atomically) and returns the network written.
    public func write(to path: String) throws -> Network {
        let net = try network()
        try ModelFile.write(path: path, network: net)
        return net
    }
}

/// The lines printed after an import: graph summary and the prunable channel groups.
public enum ImportReport {
    /// Layers by kind, parameters, FLOPs, and the channel groups C-SGD can prune.
    public static func lines(_ net: Network) -> [String] {
        let g = net.graph
        var kinds: [String: Int] = [:]
        for layer in g.layers {
            let kind: String
            switch layer {
            case .conv(let l): kind = l.groups > 1 ? "grouped conv" : "conv"
            default: kind = layer.op.traits.summary
            }
            kinds[kind, default: 0] += 1
        }
        let a = net.architecture
        let layerList = kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
        var out = [
            "graph: \(g.layers.count) layers (\(layerList.joined(separator: ", "))), "
                + "input \(a.inputChannels)×\(a.imageSize)×\(a.imageSize), "
                + "\(a.numClasses) classes",
            "params: \(g.parameterCount), FLOPs (multiply-adds) per image: \(g.flopsPerImage)",
        ]
        if let p = a.preprocessing {
            out.append(
                "preprocessing: (x/255 - mean) / std, mean \(p.mean), std \(p.std)")
        } else {
            out.append("preprocessing: not recorded (pass --mean and --std)")
        }
        do {
            let t = try Topology(graph: g)
            let fixed = t.groups.filter(\.isFixed).count
            out.append(
                "channel groups: \(t.groups.count) (\(t.groups.count - fixed) prunable, "
                    + "\(fixed) fixed)")
            for group in t.groups {
                let names = group.producers.map { t.convs[$0].name }
                let kind =
                    group.isResidual
                    ? "residual"
                    : group.isStem ? "stem" : group.isConcatenated ? "concatenated" : "internal"
                let shown = names.prefix(3).joined(separator: ", ")
                let more = names.count > 3 ? ", … (\(names.count) convs)" : ""
                let state = group.fixedReason.map { "fixed: \($0)" } ?? "prunable"
                let gates =
                    group.gates.isEmpty
                    ? ""
                    : ", gated by " + group.gates.map { t.convs[$0].name }.joined(separator: ", ")
                out.append(
                    "  group \(group.index): \(group.width) channels, \(kind), \(state), "
                        + "\(group.consumers.count) reads, written by \(shown)\(more)\(gates)")
            }
        } catch let e as CSGDError {
            out.append("channel groups: not derived (\(e.message))")
        } catch {
            out.append("channel groups: not derived (\(error))")
        }
        return out
    }
}
