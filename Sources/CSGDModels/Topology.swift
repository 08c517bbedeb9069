// Which channels are tied together, who reads them, and which per-channel parameters must be
// pulled together with them — derived from the graph, channel by channel (docs/pruning-rules.md).
//
// Every tensor's channels are a list of SEGMENTS, each one whole channel space at a channel
// offset. A dense conv starts a new space for its output; per-channel ops (BatchNorm,
// ReLU/ReLU6, max/average pooling, global average pooling, depthwise conv) pass their input's
// segments through, channel j staying channel j; a residual add makes its two inputs' spaces one
// (union-find over spaces; both inputs must have the same segment structure); a concat lays its
// inputs' segments end to end (DenseNet). The image and a linear layer's outputs are spaces
// nothing may prune. The spaces convs write are the channel GROUPS: the convs writing one group
// (pacesetter + followers, C-SGD's terms) share one clustering; the dense convs and linear
// layers reading it are its consumers, whose input channels the pruner sums per cluster at the
// segment's offset; the per-channel parameters met on the way (conv bias, BN γ/β and running
// statistics, depthwise filters) are its coupled tensors, pulled and gathered with the kernels.
// No per-depth table is written by hand.

import CSGDCore
import CSGDKernels

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
    /// Channel groups of the conv (1 = dense); a grouped conv's spaces are fixed.
    public let convGroups: Int
}

/// Something that reads the channels of a channel space.
public enum ChannelConsumer: Equatable, Sendable {
    /// A conv reads them as input channels (index into `Topology.convs`).
    case conv(Int)
    /// An FC layer reads them; the tensor's channel c owns columns
    /// [c·featuresPerChannel, (c+1)·featuresPerChannel) (PyTorch's C·H·W flatten order).
    case linear(layerIndex: Int, featuresPerChannel: Int)
}

/// One read of a channel space: the space's channel j is the consumer's input channel
/// `channelOffset + j`.
public struct ChannelRead: Equatable, Sendable {
    /// Who reads.
    public let consumer: ChannelConsumer
    /// Where the space starts in the consumer's input tensor (non-zero after a concat).
    public let channelOffset: Int
}

/// A per-channel tensor that must agree within a cluster for the merge to be exact: row
/// `channelOffset + j` belongs to channel j of the space.
public struct CoupledTensor: Equatable, Sendable {
    /// Where the values live.
    public enum Storage: Hashable, Sendable {
        /// A trainable tensor.
        case parameter(ParameterID)
        /// A BatchNorm running statistic.
        case buffer(BufferID)
    }
    /// What the rows are; decides how C-SGD treats them.
    public enum Kind: Equatable, Sendable {
        /// A conv's or depthwise conv's filters (pulled with ε, decayed with η).
        case kernel
        /// A conv bias, depthwise bias, BN γ or β (pulled with the vector strength).
        case vector
        /// A BN running mean (not trained; merged once the cluster has collapsed).
        case runningMean
        /// A BN running variance (likewise).
        case runningVar
    }
    /// The tensor.
    public let storage: Storage
    /// Its kind.
    public let kind: Kind
    /// Row holding the space's channel 0.
    public let channelOffset: Int
    /// Floats per row (C·R·S for a conv's filters, R·S for a depthwise filter, 1 for vectors).
    public let rowLength: Int
    /// Rows of the whole tensor.
    public let rows: Int
    /// Index in `graph.layers` of the layer owning the tensor.
    public let layerIndex: Int
    /// Checkpoint name, e.g. `layer1.0.bn1.weight`.
    public let name: String

    /// The parameter, if the tensor is trainable.
    public var parameter: ParameterID? {
        if case .parameter(let p) = storage { return p } else { return nil }
    }
    /// The buffer, if the tensor is a running statistic.
    public var buffer: BufferID? {
        if case .buffer(let b) = storage { return b } else { return nil }
    }
}

/// A run of channels of a tensor that is one whole channel space.
public struct ChannelSegment: Equatable, Sendable {
    /// The channel group (index into `Topology.groups`), or nil for channels no conv writes
    /// (the image, a linear layer's outputs): those are never pruned.
    public let group: Int?
    /// First channel of the run in the tensor.
    public let offset: Int
    /// Channels in the run.
    public let width: Int
    /// Whether the run is the whole space (a slice or shuffle cuts spaces into parts, which
    /// Topology holds fixed).
    public let isWhole: Bool

    /// A run of channels.
    public init(group: Int?, offset: Int, width: Int, isWhole: Bool = true) {
        self.group = group
        self.offset = offset
        self.width = width
        self.isWhole = isWhole
    }
}

/// A channel space written by one conv, or by several convs whose outputs are added.
public struct ChannelGroup: Sendable {
    /// Position in `Topology.groups`.
    public let index: Int
    /// Number of channels.
    public let width: Int
    /// Convs writing the space, in conv order; the first is the pacesetter. Includes the
    /// `gates`.
    public let producers: [Int]
    /// Producers that compute a squeeze-excitation gate of the space (one value per channel
    /// and image): coupled to its clusters, not a residual branch.
    public let gates: [Int]
    /// Every read of the space by a conv or linear layer, with its channel offset.
    public let reads: [ChannelRead]
    /// Layers reading the space (one entry per read).
    public var consumers: [ChannelConsumer] { reads.map(\.consumer) }
    /// Every per-channel tensor coupled to the space, in layer order: the producers' kernels
    /// and biases, then BN, depthwise conv tensors wherever the space's channels pass.
    public let coupled: [CoupledTensor]
    /// The conv whose kernel is clustered; followers copy its clusters.
    public var pacesetter: Int { producers[0] }
    /// Convs that copy the pacesetter's clusters.
    public var followers: ArraySlice<Int> { producers.dropFirst() }
    /// Whether the space is a residual stream (more than one producer besides its gates).
    public var isResidual: Bool { producers.count - gates.count > 1 }
    /// Whether a producer reads the network's input image (the stem conv).
    public let isStem: Bool
    /// Why the space may not be pruned (read or written by a grouped conv, added to the image,
    /// reaching the network output), or nil if it may.
    public let fixedReason: String?
    /// Whether the space is unprunable (`fixedReason`).
    public var isFixed: Bool { fixedReason != nil }
    /// Whether the space's channels are concatenated into a wider tensor (DenseNet's growth
    /// and transition outputs: the concatenation is the block's stream).
    public let isConcatenated: Bool
    /// Whether the space lives inside a block: one producer, not the stem, not fixed, not
    /// concatenated. For ResNets these are the first two convs of each bottleneck and the
    /// first of each basic block (the paper's ImageNet setting prunes exactly these); for
    /// MobileNetV2 the expanded channels of each inverted residual (and the projection of a
    /// block no add follows); for VGG every conv but the stem; for DenseNet-BC the 4k-wide
    /// bottleneck convs — growth channels land in the concatenated stream and are not
    /// internal (prune them with a width map such as `12:3`).
    public var isBlockInternal: Bool { !isResidual && !isStem && !isFixed && !isConcatenated }
}

/// Producers, consumers, coupled tensors and residual groups of every conv of a graph.
public struct Topology: Sendable {
    /// Every conv (dense or grouped), in conv order (the order of `Architecture.widths`).
    public let convs: [ConvNode]
    /// Every channel space written by convs, in order of first producer.
    public let groups: [ChannelGroup]
    /// The channel segments of every tensor of the graph (`graph.tensors` order).
    public let segments: [[ChannelSegment]]

    /// Derives the topology of `graph`.
    /// - Throws: `CSGDError` naming the node when a linear layer's inputs are not whole per
    ///   channel.
    public init(graph: Graph) throws {
        var spaces = SpaceSet()
        var segs = [[Run]](repeating: [], count: graph.tensors.count)
        let inputC = graph.tensors[graph.input.index].c
        let image = spaces.add(fixed: "the input image", width: inputC)
        segs[graph.input.index] = [Run(space: image, offset: 0, width: inputC, start: 0)]
        var convSpace: [Int: Int] = [:]  // layer index → space of its output
        var concatenated: [Int] = []
        var gateSpaces = Set<Int>()  // spaces of squeeze-excitation gates
        func fixAll(_ runs: [Run], _ why: String) { for r in runs { spaces.fix(r.space, why) } }
        for (li, layer) in graph.layers.enumerated() {
            let out = layer.output.index
            // The op table says which ops keep channel j as channel j; those need no case here.
            if layer.channelFlow == .passThrough {
                segs[out] = segs[layer.inputs[0].index]
                continue
            }
            switch layer {
            case .conv(let l):
                let grouped = l.groups > 1 ? "read or written by grouped conv \(l.name)" : nil
                let s = spaces.add(fixed: grouped, width: l.shape.k)
                convSpace[li] = s
                if let grouped { fixAll(segs[l.input.index], grouped) }
                segs[out] = [Run(space: s, offset: 0, width: l.shape.k, start: 0)]
            case .linear(let l):
                let s = spaces.add(fixed: "outputs of linear layer \(l.name)", width: l.outFeatures)
                segs[out] = [Run(space: s, offset: 0, width: l.outFeatures, start: 0)]
            case .add(let l):
                let a = segs[l.a.index]
                let b = segs[l.b.index]
                if Run.aligned(a, b, spaces) {
                    for (x, y) in zip(a, b) { spaces.union(x.space, y.space) }
                } else {
                    // Channel c of one side meets a channel of another space on the other
                    // (a shortcut added to a concatenation, or to part of a sliced tensor):
                    // no clustering ties them, so every space on both sides keeps its width.
                    let why =
                        "added to channels of another structure (\(Run.describe(a)) vs "
                        + "\(Run.describe(b)), layer \(li))"
                    fixAll(a, why)
                    fixAll(b, why)
                }
                segs[out] = a
            case .concat(let l):
                var runs: [Run] = []
                for (j, t) in l.inputs.enumerated() {
                    for r in segs[t.index] {
                        runs.append(
                            Run(
                                space: r.space, offset: l.offsets[j] + r.offset, width: r.width,
                                start: r.start))
                        concatenated.append(r.space)
                    }
                }
                segs[out] = runs
            case .channelScale(let l):
                // The gate's rows belong to the gated channels' clusters: one space, so the
                // gate's producer is clustered (and pruned) with the gated space's producers.
                let x = segs[l.input.index]
                let g = segs[l.gate.index]
                if Run.aligned(x, g, spaces) {
                    // An ECA gate is computed from the gated space itself: no other producer.
                    for (a, b) in zip(x, g) where spaces.find(a.space) != spaces.find(b.space) {
                        gateSpaces.insert(b.space)
                        spaces.union(a.space, b.space)
                    }
                } else {
                    let why = "gated by a gate of another channel structure (layer \(li))"
                    fixAll(x, why)
                    fixAll(g, why)
                }
                segs[out] = x
            case .channelSlice(let l):
                // Held fixed: the slice's bounds are channel numbers of the unpruned net.
                let runs = segs[l.input.index]
                fixAll(runs, "cut by a channel slice (layer \(li))")
                segs[out] = Run.slice(runs, l.start, l.count)
            case .channelShuffle(let l):
                let runs = segs[l.input.index]
                fixAll(runs, "permuted by a channel shuffle (layer \(li))")
                segs[out] = (0..<l.channels).flatMap { c in
                    Run.slice(
                        runs, shuffledSource(c, channels: l.channels, groups: l.groups), 1
                    ).map { Run(space: $0.space, offset: c, width: 1, start: $0.start) }
                }
            case .channelConv(let l):
                // Output channel c mixes input channels c − pad … c + pad: merging two of them
                // would change what their neighbours read, so the spaces keep their widths.
                let runs = segs[l.input.index]
                fixAll(runs, "mixed with neighbouring channels by ECA conv \(l.name) (layer \(li))")
                segs[out] = runs
            case .channelNorm(let l):
                // Every output channel is normalised by statistics over all input channels:
                // dropping one copy of a duplicated channel changes them, so nothing merges.
                let runs = segs[l.input.index]
                fixAll(runs, "normalised across channels by LayerNorm \(l.name) (layer \(li))")
                segs[out] = runs
            case .batchNorm, .activation, .maxPool, .avgPool, .globalAvgPool, .globalMaxPool,
                .depthwiseConv, .pad, .upsample:
                preconditionFailure("pass-through layers are handled before the switch")
            }
        }
        for s in segs[graph.logits.index] {
            spaces.fix(s.space, "reaches the network output without a dense layer after it")
        }
        // Groups: the spaces convs write, in order of first producer.
        var groupOfRoot: [Int: Int] = [:]
        var producers: [[Int]] = []
        var gates: [[Int]] = []
        var convLayers: [(layerIndex: Int, layer: ConvLayer)] = []
        for (li, layer) in graph.layers.enumerated() {
            guard case .conv(let l) = layer else { continue }
            let root = spaces.find(convSpace[li]!)
            if groupOfRoot[root] == nil {
                groupOfRoot[root] = producers.count
                producers.append([])
                gates.append([])
            }
            producers[groupOfRoot[root]!].append(convLayers.count)
            if gateSpaces.contains(convSpace[li]!) {
                gates[groupOfRoot[root]!].append(convLayers.count)
            }
            convLayers.append((li, l))
        }
        let tensorSegments = segs.map { runs in
            runs.map {
                ChannelSegment(
                    group: groupOfRoot[spaces.find($0.space)], offset: $0.offset, width: $0.width,
                    isWhole: $0.start == 0 && $0.width == spaces.width($0.space))
            }
        }
        var convOrdinal: [Int: Int] = [:]
        for (ci, c) in convLayers.enumerated() { convOrdinal[c.layerIndex] = ci }
        var reads = [[ChannelRead]](repeating: [], count: producers.count)
        var coupled = [[CoupledTensor]](repeating: [], count: producers.count)
        func couple(
            _ g: Int, _ storage: CoupledTensor.Storage, _ kind: CoupledTensor.Kind, offset: Int,
            rowLength: Int, rows: Int, layer li: Int
        ) {
            let name: String
            switch storage {
            case .parameter(let p): name = graph.specs[p.index].name
            case .buffer(let b): name = graph.bufferSpecs[b.index].name
            }
            coupled[g].append(
                CoupledTensor(
                    storage: storage, kind: kind, channelOffset: offset, rowLength: rowLength,
                    rows: rows, layerIndex: li, name: name))
        }
        for (li, layer) in graph.layers.enumerated() {
            switch layer {
            case .conv(let l):
                let g = groupOfRoot[spaces.find(convSpace[li]!)]!
                let k = l.shape.k
                couple(
                    g, .parameter(l.weight), .kernel, offset: 0, rowLength: l.weightCount / k,
                    rows: k, layer: li)
                if let b = l.bias {
                    couple(g, .parameter(b), .vector, offset: 0, rowLength: 1, rows: k, layer: li)
                }
                for s in tensorSegments[l.input.index] where s.isWhole {
                    if let g = s.group {
                        reads[g].append(
                            ChannelRead(consumer: .conv(convOrdinal[li]!), channelOffset: s.offset))
                    }
                }
            case .linear(let l):
                let t = graph.tensors[l.input.index]
                let perChannel = t.h * t.w
                if perChannel * t.c != l.inFeatures {
                    throw CSGDError(
                        "\(l.name): input features are not a whole number per channel")
                }
                for s in tensorSegments[l.input.index] where s.isWhole {
                    if let g = s.group {
                        reads[g].append(
                            ChannelRead(
                                consumer: .linear(layerIndex: li, featuresPerChannel: perChannel),
                                channelOffset: s.offset))
                    }
                }
            case .batchNorm(let l):
                for s in tensorSegments[l.input.index] where s.isWhole {
                    guard let g = s.group else { continue }
                    let c = l.channels
                    couple(
                        g, .parameter(l.scale), .vector, offset: s.offset, rowLength: 1, rows: c,
                        layer: li)
                    couple(
                        g, .parameter(l.shift), .vector, offset: s.offset, rowLength: 1, rows: c,
                        layer: li)
                    couple(
                        g, .buffer(l.runningMean), .runningMean, offset: s.offset, rowLength: 1,
                        rows: c, layer: li)
                    couple(
                        g, .buffer(l.runningVar), .runningVar, offset: s.offset, rowLength: 1,
                        rows: c, layer: li)
                }
            case .depthwiseConv(let l):
                for s in tensorSegments[l.input.index] where s.isWhole {
                    guard let g = s.group else { continue }
                    let c = l.shape.k
                    couple(
                        g, .parameter(l.weight), .kernel, offset: s.offset,
                        rowLength: l.shape.r * l.shape.s, rows: c, layer: li)
                    if let b = l.bias {
                        couple(
                            g, .parameter(b), .vector, offset: s.offset, rowLength: 1, rows: c,
                            layer: li)
                    }
                }
            case .channelConv, .channelNorm:
                // Their parameters act on spaces held fixed above: nothing is clustered there.
                break
            default:
                // Only convs, linear layers, BatchNorm and depthwise convs read or hold
                // per-channel parameters; the op table records which ops have parameters.
                assert(!layer.op.traits.hasParameters)
            }
        }
        // The BN reading each conv's output directly (kept for callers that want "its" BN).
        var bnReading: [Int: (Int, BatchNormLayer)] = [:]
        for (bi, layer) in graph.layers.enumerated() {
            if case .batchNorm(let b) = layer, bnReading[b.input.index] == nil {
                bnReading[b.input.index] = (bi, b)
            }
        }
        var nodes: [ConvNode] = []
        for (ci, (li, l)) in convLayers.enumerated() {
            let bn = bnReading[l.output.index]
            nodes.append(
                ConvNode(
                    convIndex: ci, layerIndex: li, name: l.name, width: l.shape.k, weight: l.weight,
                    bias: l.bias, bnLayerIndex: bn?.0, bnScale: bn?.1.scale, bnShift: bn?.1.shift,
                    runningMean: bn?.1.runningMean, runningVar: bn?.1.runningVar,
                    groupIndex: groupOfRoot[spaces.find(convSpace[li]!)]!, convGroups: l.groups))
        }
        let imageRoot = spaces.find(image)
        let concatenatedRoots = Set(concatenated.map { spaces.find($0) })
        var rootOfGroup = [Int](repeating: 0, count: producers.count)
        for (root, g) in groupOfRoot { rootOfGroup[g] = root }
        convs = nodes
        segments = tensorSegments
        groups = producers.enumerated().map { gi, prods in
            let root = rootOfGroup[gi]
            return ChannelGroup(
                index: gi, width: nodes[prods[0]].width, producers: prods, gates: gates[gi],
                reads: reads[gi], coupled: coupled[gi],
                isStem: prods.contains { p in
                    segs[convLayers[p].layer.input.index].contains {
                        spaces.find($0.space) == imageRoot
                    }
                },
                fixedReason: spaces.fixedReason(root),
                isConcatenated: concatenatedRoots.contains(root))
        }
    }
}

/// Union-find over channel spaces; a set is fixed if any member is.
private struct SpaceSet {
    private var parent: [Int] = []
    private var reason: [String?] = []
    private var widths: [Int] = []

    mutating func add(fixed: String?, width: Int) -> Int {
        parent.append(parent.count)
        reason.append(fixed)
        widths.append(width)
        return parent.count - 1
    }

    /// Channels of space `x` as created (every member of a set has the same width).
    func width(_ x: Int) -> Int { widths[x] }

    mutating func find(_ x: Int) -> Int {
        var x = x
        while parent[x] != x {
            parent[x] = parent[parent[x]]
            x = parent[x]
        }
        return x
    }

    mutating func union(_ a: Int, _ b: Int) {
        let (ra, rb) = (find(a), find(b))
        if ra == rb { return }
        parent[ra] = rb
        if reason[rb] == nil { reason[rb] = reason[ra] }
    }

    mutating func fix(_ x: Int, _ why: String) {
        let r = find(x)
        if reason[r] == nil { reason[r] = why }
    }

    mutating func fixedReason(_ x: Int) -> String? { reason[find(x)] }
}

/// A run of a tensor's channels: channels `start ..< start + width` of `space`, at `offset` in
/// the tensor.
private struct Run {
    var space: Int
    var offset: Int
    var width: Int
    var start: Int

    /// Whether two tensors' runs line up one to one as WHOLE spaces (same offsets, each run
    /// all of its space). Parts of spaces never line up: a slice of a 38-wide space added to a
    /// 27-wide one (ReXNet's partial shortcut, DPN's split residual) would otherwise make one
    /// group of spaces of different widths.
    static func aligned(_ a: [Run], _ b: [Run], _ spaces: SpaceSet) -> Bool {
        func whole(_ r: Run) -> Bool { r.start == 0 && r.width == spaces.width(r.space) }
        return a.count == b.count
            && zip(a, b).allSatisfy {
                $0.offset == $1.offset && $0.width == $1.width && whole($0) && whole($1)
            }
    }

    /// The runs covering channels `from ..< from + count`, renumbered from 0.
    static func slice(_ runs: [Run], _ from: Int, _ count: Int) -> [Run] {
        runs.compactMap { r in
            let lo = max(r.offset, from)
            let hi = min(r.offset + r.width, from + count)
            if lo >= hi { return nil }
            return Run(
                space: r.space, offset: lo - from, width: hi - lo, start: r.start + lo - r.offset)
        }
    }

    static func describe(_ runs: [Run]) -> String {
        runs.map { String($0.width) }.joined(separator: "+")
    }
}
