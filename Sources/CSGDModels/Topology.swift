// Which convs are tied together and who consumes whose channels — derived from the graph.
//
// Channel identity flows through per-channel ops: BatchNorm, ReLU, max pool and global average
// pooling keep channel j as channel j, and a residual add makes its two inputs and its output
// one channel space. A union-find over tensors along those edges gives the channel spaces; the
// convs that write into one space form a residual group (pacesetter + followers, C-SGD's
// terms) and must share one clustering; the convs and FC layers that read from a space are its
// consumers, whose input channels the pruner merges. No per-depth table is written by hand.

import CSGDCore

/// A conv layer as C-SGD sees it.
public struct ConvNode: Sendable {
    /// Position in the width array (conv order).
    public let convIndex: Int
    /// Index in `graph.layers`.
    public let layerIndex: Int
    /// Module name, e.g. `layer2.0.conv1`.
    public let name: String
    /// Output channels.
    public let width: Int
    public let weight: ParameterID
    public let bias: ParameterID?
    /// The BatchNorm directly after it (γ/β are clustered with the kernel), if any.
    public let bnLayerIndex: Int?
    public let bnScale: ParameterID?
    public let bnShift: ParameterID?
    public let runningMean: BufferID?
    public let runningVar: BufferID?
    /// Channel space its output belongs to.
    public let groupIndex: Int
}

/// Something that reads the channels of a channel space.
public enum ChannelConsumer: Equatable, Sendable {
    /// A conv reads them as input channels (index into `Topology.convs`).
    case conv(Int)
    /// An FC layer reads them; channel j owns columns [j·featuresPerChannel, (j+1)·…).
    case linear(layerIndex: Int, featuresPerChannel: Int)
}

/// A channel space written by one conv, or by several convs whose outputs are added.
public struct ChannelGroup: Sendable {
    /// Position in `Topology.groups`.
    public let index: Int
    /// Number of channels.
    public let width: Int
    /// Convs writing the space, in conv order; the first is the pacesetter.
    public let producers: [Int]
    /// Layers reading the space.
    public let consumers: [ChannelConsumer]
    /// The conv whose kernel is clustered; followers copy its clusters.
    public var pacesetter: Int { producers[0] }
    /// Convs that copy the pacesetter's clusters.
    public var followers: ArraySlice<Int> { producers.dropFirst() }
    /// Whether the space is a residual stream (more than one producer).
    public var isResidual: Bool { producers.count > 1 }
    /// Whether a producer reads the network's input image (the stem conv).
    public let isStem: Bool
    /// Whether the space lives inside a residual block: neither a residual stream nor the
    /// stem's output (the paper's ImageNet setting prunes exactly these: the first two convs
    /// of each bottleneck, the first of each basic block).
    public var isBlockInternal: Bool { !isResidual && !isStem }
}

/// Producers, consumers and residual groups of every conv of a graph.
public struct Topology: Sendable {
    /// Every conv, in conv order.
    public let convs: [ConvNode]
    /// Every channel space written by convs.
    public let groups: [ChannelGroup]

    /// Derives the topology of `graph`.
    /// - Throws: `CSGDError` if a channel space is read by something the pruner cannot merge.
    public init(graph: Graph) throws {
        var parent = Array(graph.tensors.indices)
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x {
                parent[x] = parent[parent[x]]
                x = parent[x]
            }
            return x
        }
        func union(_ a: TensorID, _ b: TensorID) { parent[find(a.index)] = find(b.index) }
        for layer in graph.layers {
            switch layer {
            case .batchNorm(let l): union(l.input, l.output)
            case .maxPool(let l): union(l.input, l.output)
            case .globalAvgPool(let l): union(l.input, l.output)
            case .add(let l):
                union(l.a, l.output)
                union(l.b, l.output)
            case .depthwiseConv(let l): union(l.input, l.output)
            case .activation(let l): union(l.input, l.output)
            case .avgPool(let l): union(l.input, l.output)
            case .concat:
                throw CSGDError("concat is not supported by the topology yet")  // graph branch
            case .conv, .linear: break
            }
        }
        // Group by channel space, in order of first producer.
        var groupOfRoot: [Int: Int] = [:]
        var producers: [[Int]] = []
        var convLayers: [(Int, ConvLayer)] = []
        for (li, layer) in graph.layers.enumerated() {
            guard case .conv(let l) = layer else { continue }
            let root = find(l.output.index)
            if groupOfRoot[root] == nil {
                groupOfRoot[root] = producers.count
                producers.append([])
            }
            producers[groupOfRoot[root]!].append(convLayers.count)
            convLayers.append((li, l))
        }
        var consumers = [[ChannelConsumer]](repeating: [], count: producers.count)
        var convOrdinal: [Int: Int] = [:]
        for (ci, (li, _)) in convLayers.enumerated() { convOrdinal[li] = ci }
        for (li, layer) in graph.layers.enumerated() {
            switch layer {
            case .conv(let l):
                if let g = groupOfRoot[find(l.input.index)] {
                    consumers[g].append(.conv(convOrdinal[li]!))
                }
            case .linear(let l):
                if let g = groupOfRoot[find(l.input.index)] {
                    let c = graph.tensors[l.input.index].c
                    let perChannel = l.inFeatures / c
                    if perChannel * c != l.inFeatures {
                        throw CSGDError(
                            "\(l.name): input features are not a whole number per channel")
                    }
                    consumers[g].append(.linear(layerIndex: li, featuresPerChannel: perChannel))
                }
            default: break
            }
        }
        var nodes: [ConvNode] = []
        for (ci, (li, l)) in convLayers.enumerated() {
            // The BN reading this conv's output directly.
            var bn: (Int, BatchNormLayer)?
            for (bi, layer) in graph.layers.enumerated() {
                if case .batchNorm(let b) = layer, b.input == l.output {
                    bn = (bi, b)
                    break
                }
            }
            nodes.append(
                ConvNode(
                    convIndex: ci, layerIndex: li, name: l.name, width: l.shape.k, weight: l.weight,
                    bias: l.bias, bnLayerIndex: bn?.0, bnScale: bn?.1.scale, bnShift: bn?.1.shift,
                    runningMean: bn?.1.runningMean, runningVar: bn?.1.runningVar,
                    groupIndex: groupOfRoot[find(l.output.index)]!))
        }
        convs = nodes
        groups = producers.enumerated().map { gi, prods in
            ChannelGroup(
                index: gi, width: nodes[prods[0]].width, producers: prods, consumers: consumers[gi],
                isStem: prods.contains { convLayers[$0].1.input == graph.input })
        }
    }
}
