// The network as data: a straight-line list of layers over numbered activation tensors.
//
// Models are built once into this form (ResNet.swift), and everything else reads it: the
// executor runs `layers` forward and in reverse for backward (Network.swift), the topology
// analysis derives residual groups and consumers from it (Topology.swift), and the pruner
// rewrites widths. Nothing keys off layer names except checkpoint I/O.

import CSGDCore
import CSGDKernels

/// Index of an activation tensor in a graph.
public struct TensorID: Hashable, Sendable {
    /// Position in `Graph.tensors`.
    public let index: Int
}

/// Per-image shape of an activation tensor: C × H × W.
public struct ActivationShape: Equatable, Sendable {
    public let c: Int, h: Int, w: Int
    /// A C × H × W shape.
    public init(c: Int, h: Int, w: Int) {
        self.c = c
        self.h = h
        self.w = w
    }
    /// Floats per image.
    public var count: Int { c * h * w }
}

/// A convolution node.
public struct ConvLayer: Sendable {
    /// Module name, e.g. `layer1.0.conv1` (checkpoint names append `.weight`).
    public let name: String
    public let input: TensorID, output: TensorID
    public let weight: ParameterID
    public let bias: ParameterID?
    /// Geometry for batch 1 (use `shape.with(batch:)`); `c` and `k` count all channels.
    public let shape: Conv2dShape
    /// Channel groups: filter `o` reads input channels of group `o / (k / groups)` only.
    public let groups: Int

    /// The geometry of one group (`c / groups` inputs, `k / groups` filters), batch 1.
    public var groupShape: Conv2dShape {
        try! Conv2dShape(
            n: 1, c: shape.c / groups, h: shape.h, w: shape.w, k: shape.k / groups, r: shape.r,
            s: shape.s, stride: shape.stride, pad: shape.pad)
    }
    /// Multiply-adds per image.
    public var flops: Int { shape.flops / groups }
    /// Weight floats: K · (C / groups) · R · S.
    public var weightCount: Int { shape.k * shape.rowLength / groups }
}

/// A depthwise convolution node (channel multiplier 1): output channel c is input channel c
/// convolved with filter c, so channels keep their identity through it.
public struct DepthwiseConvLayer: Sendable {
    /// Module name.
    public let name: String
    public let input: TensorID, output: TensorID
    /// `[C, 1, R, S]`.
    public let weight: ParameterID
    public let bias: ParameterID?
    /// Geometry for batch 1 with `k == c` (one filter per channel).
    public let shape: Conv2dShape
    /// Multiply-adds per image.
    public var flops: Int { shape.k * shape.p * shape.q * shape.r * shape.s }
}

/// An elementwise activation node.
public struct ActivationLayer: Sendable {
    /// Which activation (the kernels' `Activation`).
    public typealias Kind = Activation
    public let input: TensorID, output: TensorID
    public let kind: Kind
}

/// A squeeze-excitation gate: `output[n, c, ·] = input[n, c, ·] · gate[n, c]`.
public struct ChannelScaleLayer: Sendable {
    public let input: TensorID, gate: TensorID, output: TensorID
    public let channels: Int, hw: Int
}

/// Channels `start ..< start + count` of the input (`x[:, a:b]`, one output of a split).
public struct ChannelSliceLayer: Sendable {
    public let input: TensorID, output: TensorID
    public let start: Int, count: Int
    /// Channels of the input.
    public let inputChannels: Int
    public let hw: Int
}

/// ShuffleNet's channel shuffle: output channel `j·groups + i` is input `i·(C/groups) + j`.
public struct ChannelShuffleLayer: Sendable {
    public let input: TensorID, output: TensorID
    public let channels: Int, groups: Int, hw: Int
}

/// ECA's gate conv: `output[n, c] = bias + Σⱼ weight[j] · input[n, c + j − pad]` over the
/// channels of a C×1×1 tensor (zeros beyond its ends), `kernel` = 2·`pad` + 1.
public struct ChannelConvLayer: Sendable {
    /// Module name (`name.weight` is PyTorch's Conv1d weight, `[1, 1, kernel]`).
    public let name: String
    public let input: TensorID, output: TensorID
    public let weight: ParameterID, bias: ParameterID?
    public let channels: Int, kernel: Int, pad: Int
}

/// LayerNorm over the channels of each pixel: `output[n, c, p]` is `input[n, c, p]`
/// normalised by the mean and variance over c at (n, p), times `weight[c]`, plus `bias[c]`.
public struct ChannelNormLayer: Sendable {
    /// Module name (`name.weight`, `name.bias`: PyTorch's LayerNorm affine, `[C]`).
    public let name: String
    public let input: TensorID, output: TensorID
    public let weight: ParameterID, bias: ParameterID?
    public let channels: Int, hw: Int
    public let eps: Float
}

/// Zero padding of the spatial sides (an asymmetric "same" padding before a conv).
public struct PadLayer: Sendable {
    public let input: TensorID, output: TensorID
    /// Input shape.
    public let shape: ActivationShape
    public let top: Int, left: Int, bottom: Int, right: Int
}

/// Nearest upsampling by an integer factor.
public struct UpsampleLayer: Sendable {
    public let input: TensorID, output: TensorID
    /// Input shape.
    public let shape: ActivationShape
    public let factor: Int
}

/// Global max pooling to `[N, C, 1, 1]`.
public struct GlobalMaxPoolLayer: Sendable {
    public let input: TensorID, output: TensorID
    public let channels: Int, hw: Int
}

/// Concatenation along channels: input j lands at channel offset `offsets[j]`.
public struct ConcatLayer: Sendable {
    public let inputs: [TensorID], output: TensorID
    /// Channel offset of each input in the output.
    public let offsets: [Int]
    /// Channels of each input.
    public let channels: [Int]
    /// H·W of every input and of the output.
    public let hw: Int
}

/// An average-pool node.
public struct AvgPoolLayer: Sendable {
    public let input: TensorID, output: TensorID
    /// Geometry for batch 1.
    public let shape: PoolShape
    /// Whether padded zeros count in the divisor (PyTorch's default for AvgPool2d).
    public let countIncludePad: Bool
}

/// A BatchNorm node, optionally with a fused ReLU on its output.
public struct BatchNormLayer: Sendable {
    /// Module name, e.g. `layer1.0.bn1`.
    public let name: String
    public let input: TensorID, output: TensorID
    public let scale: ParameterID, shift: ParameterID
    public let runningMean: BufferID, runningVar: BufferID
    public let channels: Int, hw: Int
    /// Whether a ReLU follows (applied in place on `output`).
    public let relu: Bool
    /// Its epsilon when it is not the network's (`Network.batchNorm.eps`, PyTorch's 1e-5).
    public var eps: Float? = nil
}

/// A residual add node `output = a + b`, optionally followed by an in-place ReLU.
public struct AddLayer: Sendable {
    public let a: TensorID, b: TensorID, output: TensorID
    public let relu: Bool
}

/// A max-pool node.
public struct MaxPoolLayer: Sendable {
    public let input: TensorID, output: TensorID
    /// Geometry for batch 1.
    public let shape: PoolShape
}

/// Global average pooling to `[N, C]`.
public struct GlobalAvgPoolLayer: Sendable {
    public let input: TensorID, output: TensorID
    public let channels: Int, hw: Int
}

/// A fully-connected node (`fc`).
public struct LinearLayer: Sendable {
    public let name: String
    public let input: TensorID, output: TensorID
    public let weight: ParameterID, bias: ParameterID?
    public let inFeatures: Int, outFeatures: Int
}

/// One node of the graph.
public enum Layer: Sendable {
    case conv(ConvLayer)
    case depthwiseConv(DepthwiseConvLayer)
    case batchNorm(BatchNormLayer)
    case activation(ActivationLayer)
    case add(AddLayer)
    case concat(ConcatLayer)
    case maxPool(MaxPoolLayer)
    case avgPool(AvgPoolLayer)
    case globalAvgPool(GlobalAvgPoolLayer)
    case globalMaxPool(GlobalMaxPoolLayer)
    case channelScale(ChannelScaleLayer)
    case channelSlice(ChannelSliceLayer)
    case channelShuffle(ChannelShuffleLayer)
    case channelConv(ChannelConvLayer)
    case channelNorm(ChannelNormLayer)
    case pad(PadLayer)
    case upsample(UpsampleLayer)
    case linear(LinearLayer)

    /// Tensors this layer reads.
    public var inputs: [TensorID] {
        switch self {
        case .conv(let l): return [l.input]
        case .depthwiseConv(let l): return [l.input]
        case .batchNorm(let l): return [l.input]
        case .activation(let l): return [l.input]
        case .add(let l): return [l.a, l.b]
        case .concat(let l): return l.inputs
        case .maxPool(let l): return [l.input]
        case .avgPool(let l): return [l.input]
        case .globalAvgPool(let l): return [l.input]
        case .globalMaxPool(let l): return [l.input]
        case .channelScale(let l): return [l.input, l.gate]
        case .channelSlice(let l): return [l.input]
        case .channelShuffle(let l): return [l.input]
        case .channelConv(let l): return [l.input]
        case .channelNorm(let l): return [l.input]
        case .pad(let l): return [l.input]
        case .upsample(let l): return [l.input]
        case .linear(let l): return [l.input]
        }
    }

    /// The tensor this layer writes.
    public var output: TensorID {
        switch self {
        case .conv(let l): return l.output
        case .depthwiseConv(let l): return l.output
        case .batchNorm(let l): return l.output
        case .activation(let l): return l.output
        case .add(let l): return l.output
        case .concat(let l): return l.output
        case .maxPool(let l): return l.output
        case .avgPool(let l): return l.output
        case .globalAvgPool(let l): return l.output
        case .globalMaxPool(let l): return l.output
        case .channelScale(let l): return l.output
        case .channelSlice(let l): return l.output
        case .channelShuffle(let l): return l.output
        case .channelConv(let l): return l.output
        case .channelNorm(let l): return l.output
        case .pad(let l): return l.output
        case .upsample(let l): return l.output
        case .linear(let l): return l.output
        }
    }
}

/// A built model graph: layers in execution order, tensor shapes, and the parameter layout.
public struct Graph: Sendable {
    /// Layers in forward order.
    public let layers: [Layer]
    /// Per-image shape of every tensor.
    public let tensors: [ActivationShape]
    /// The image input tensor.
    public let input: TensorID
    /// The logits tensor `[N, classes]`.
    public let logits: TensorID
    /// Tensor names and roles, in declaration order.
    public let specs: [ParameterSpec]
    /// Buffer names and roles.
    public let bufferSpecs: [BufferSpec]

    /// Indices (into `layers`) of the conv layers, in order: the order of the width array.
    public var convLayerIndices: [Int] {
        layers.indices.filter { if case .conv = layers[$0] { return true } else { return false } }
    }

    /// Multiply-adds per image (convs + FC), the convention of the C-SGD papers.
    public var flopsPerImage: Int {
        var total = 0
        for layer in layers {
            switch layer {
            case .conv(let l): total += l.flops
            case .depthwiseConv(let l): total += l.flops
            case .linear(let l): total += l.inFeatures * l.outFeatures
            case .channelConv(let l): total += l.channels * l.kernel
            default: break
            }
        }
        return total
    }

    /// Trainable parameter count.
    public var parameterCount: Int { specs.reduce(0) { $0 + $1.count } }
}

/// Incrementally builds a `Graph` (used by the model definitions).
public struct GraphBuilder {
    private(set) var layers: [Layer] = []
    private(set) var tensors: [ActivationShape] = []
    private var params = ParameterStoreBuilder()

    /// Starts a graph whose input has the given per-image shape.
    public init(input: ActivationShape) { tensors.append(input) }

    /// The input tensor.
    public var input: TensorID { TensorID(index: 0) }

    /// Shape of a tensor.
    public func shape(_ t: TensorID) -> ActivationShape { tensors[t.index] }

    private mutating func newTensor(_ s: ActivationShape) -> TensorID {
        tensors.append(s)
        return TensorID(index: tensors.count - 1)
    }

    /// Appends a convolution (no bias unless asked) and returns its output tensor.
    /// - Throws: `CSGDError` if `groups` does not divide both channel counts or the kernel
    ///   is larger than the padded input.
    public mutating func conv(
        _ name: String, _ x: TensorID, outChannels k: Int, kernel: Int, stride: Int, pad: Int,
        groups: Int = 1, bias: Bool = false
    ) throws -> TensorID {
        let s = shape(x)
        if groups < 1 || s.c % groups != 0 || k % groups != 0 {
            throw CSGDError(
                "conv \(name): \(groups) groups do not divide \(s.c) input and \(k) output channels"
            )
        }
        let g = try Conv2dShape(
            n: 1, c: s.c, h: s.h, w: s.w, k: k, r: kernel, s: kernel, stride: stride, pad: pad)
        let w = params.addParameter(
            name + ".weight", shape: [k, s.c / groups, kernel, kernel], role: .convWeight)
        let b = bias ? params.addParameter(name + ".bias", shape: [k], role: .convBias) : nil
        let y = newTensor(ActivationShape(c: k, h: g.p, w: g.q))
        layers.append(
            .conv(
                ConvLayer(
                    name: name, input: x, output: y, weight: w, bias: b, shape: g, groups: groups)))
        return y
    }

    /// Appends a depthwise convolution (one R×R filter per channel) and returns its output.
    public mutating func depthwiseConv(
        _ name: String, _ x: TensorID, kernel: Int, stride: Int, pad: Int, bias: Bool = false
    ) throws -> TensorID {
        let s = shape(x)
        let g = try Conv2dShape(
            n: 1, c: s.c, h: s.h, w: s.w, k: s.c, r: kernel, s: kernel, stride: stride, pad: pad)
        let w = params.addParameter(
            name + ".weight", shape: [s.c, 1, kernel, kernel], role: .convWeight)
        let b = bias ? params.addParameter(name + ".bias", shape: [s.c], role: .convBias) : nil
        let y = newTensor(ActivationShape(c: s.c, h: g.p, w: g.q))
        layers.append(
            .depthwiseConv(
                DepthwiseConvLayer(name: name, input: x, output: y, weight: w, bias: b, shape: g)))
        return y
    }

    /// Appends an element-wise activation and returns its output tensor.
    public mutating func activation(_ x: TensorID, _ kind: ActivationLayer.Kind) -> TensorID {
        let y = newTensor(shape(x))
        layers.append(.activation(ActivationLayer(input: x, output: y, kind: kind)))
        return y
    }

    /// Appends a channel concatenation; every input must have the same H×W.
    public mutating func concat(_ xs: [TensorID]) throws -> TensorID {
        guard let first = xs.first else { throw CSGDError("concat: no inputs") }
        let s0 = shape(first)
        var offsets: [Int] = []
        var c = 0
        for x in xs {
            let s = shape(x)
            if s.h != s0.h || s.w != s0.w {
                throw CSGDError(
                    "concat: spatial sizes differ (\(s0.h)×\(s0.w) vs \(s.h)×\(s.w))")
            }
            offsets.append(c)
            c += s.c
        }
        if c > Architecture.Limits.width * 16 {
            throw CSGDError("concat: \(c) channels exceed the limit")
        }
        let y = newTensor(ActivationShape(c: c, h: s0.h, w: s0.w))
        layers.append(
            .concat(
                ConcatLayer(
                    inputs: xs, output: y, offsets: offsets, channels: xs.map { shape($0).c },
                    hw: s0.h * s0.w)))
        return y
    }

    /// Appends an average pool.
    public mutating func avgPool(
        _ x: TensorID, kernel: Int, stride: Int, pad: Int, countIncludePad: Bool,
        ceilMode: Bool = false
    ) throws -> TensorID {
        let s = shape(x)
        let g = try PoolShape(
            n: 1, c: s.c, h: s.h, w: s.w, kernel: kernel, stride: stride, pad: pad,
            ceilMode: ceilMode)
        let y = newTensor(ActivationShape(c: s.c, h: g.p, w: g.q))
        layers.append(
            .avgPool(
                AvgPoolLayer(input: x, output: y, shape: g, countIncludePad: countIncludePad)))
        return y
    }

    /// Appends BatchNorm (+ optional fused ReLU) and returns its output tensor.
    public mutating func batchNorm(_ name: String, _ x: TensorID, relu: Bool, eps: Float? = nil)
        -> TensorID
    {
        let s = shape(x)
        let g = params.addParameter(name + ".weight", shape: [s.c], role: .bnScale)
        let b = params.addParameter(name + ".bias", shape: [s.c], role: .bnShift)
        let m = params.addBuffer(name + ".running_mean", shape: [s.c], role: .bnRunningMean)
        let v = params.addBuffer(name + ".running_var", shape: [s.c], role: .bnRunningVar)
        let y = newTensor(s)
        layers.append(
            .batchNorm(
                BatchNormLayer(
                    name: name, input: x, output: y, scale: g, shift: b, runningMean: m,
                    runningVar: v, channels: s.c, hw: s.h * s.w, relu: relu, eps: eps)))
        return y
    }

    /// Appends `a + b` (+ optional ReLU); the shapes must match.
    public mutating func add(_ a: TensorID, _ b: TensorID, relu: Bool) throws -> TensorID {
        if shape(a) != shape(b) {
            throw CSGDError(
                "residual add: shapes differ (\(shape(a)) vs \(shape(b))); the width array "
                    + "gives tied convs different widths")
        }
        let y = newTensor(shape(a))
        layers.append(.add(AddLayer(a: a, b: b, output: y, relu: relu)))
        return y
    }

    /// Appends a max pool.
    public mutating func maxPool(
        _ x: TensorID, kernel: Int, stride: Int, pad: Int, ceilMode: Bool = false
    ) throws -> TensorID {
        let s = shape(x)
        let g = try PoolShape(
            n: 1, c: s.c, h: s.h, w: s.w, kernel: kernel, stride: stride, pad: pad,
            ceilMode: ceilMode)
        let y = newTensor(ActivationShape(c: s.c, h: g.p, w: g.q))
        layers.append(.maxPool(MaxPoolLayer(input: x, output: y, shape: g)))
        return y
    }

    /// Appends global average pooling.
    public mutating func globalAvgPool(_ x: TensorID) -> TensorID {
        let s = shape(x)
        let y = newTensor(ActivationShape(c: s.c, h: 1, w: 1))
        layers.append(
            .globalAvgPool(GlobalAvgPoolLayer(input: x, output: y, channels: s.c, hw: s.h * s.w)))
        return y
    }

    /// Appends global max pooling.
    public mutating func globalMaxPool(_ x: TensorID) -> TensorID {
        let s = shape(x)
        let y = newTensor(ActivationShape(c: s.c, h: 1, w: 1))
        layers.append(
            .globalMaxPool(GlobalMaxPoolLayer(input: x, output: y, channels: s.c, hw: s.h * s.w)))
        return y
    }

    /// Appends a squeeze-excitation gate `x · gate`, `gate` being C×1×1 for x's C channels.
    public mutating func channelScale(_ x: TensorID, gate: TensorID) throws -> TensorID {
        let s = shape(x)
        let g = shape(gate)
        if g != ActivationShape(c: s.c, h: 1, w: 1) {
            throw CSGDError(
                "channel gate: the gate is \(g.c)×\(g.h)×\(g.w), the gated tensor needs "
                    + "\(s.c)×1×1")
        }
        let y = newTensor(s)
        layers.append(
            .channelScale(
                ChannelScaleLayer(input: x, gate: gate, output: y, channels: s.c, hw: s.h * s.w)))
        return y
    }

    /// Appends a channel slice `x[:, start ..< start + count]`.
    public mutating func channelSlice(_ x: TensorID, start: Int, count: Int) throws -> TensorID {
        let s = shape(x)
        if start < 0 || count < 1 || start + count > s.c {
            throw CSGDError(
                "channel slice \(start)..<\(start + count) is outside the input's \(s.c) channels")
        }
        let y = newTensor(ActivationShape(c: count, h: s.h, w: s.w))
        layers.append(
            .channelSlice(
                ChannelSliceLayer(
                    input: x, output: y, start: start, count: count, inputChannels: s.c,
                    hw: s.h * s.w)))
        return y
    }

    /// Appends a channel shuffle in `groups` groups (`groups` divides the channels).
    public mutating func channelShuffle(_ x: TensorID, groups: Int) throws -> TensorID {
        let s = shape(x)
        if groups < 1 || s.c % groups != 0 {
            throw CSGDError("channel shuffle: \(groups) groups do not divide \(s.c) channels")
        }
        let y = newTensor(s)
        layers.append(
            .channelShuffle(
                ChannelShuffleLayer(
                    input: x, output: y, channels: s.c, groups: groups, hw: s.h * s.w)))
        return y
    }

    /// Appends ECA's gate conv over the channels of a C×1×1 tensor (`kernel` odd, padded by
    /// `kernel / 2` so the output keeps C channels).
    public mutating func channelConv(_ name: String, _ x: TensorID, kernel: Int, bias: Bool)
        throws -> TensorID
    {
        let s = shape(x)
        if s.h != 1 || s.w != 1 {
            throw CSGDError(
                "channel conv \(name): input is \(s.c)×\(s.h)×\(s.w), it slides over a C×1×1 "
                    + "tensor's channels")
        }
        if kernel < 1 || kernel % 2 == 0 || kernel > GraphSpec.Limits.kernel {
            throw CSGDError(
                "channel conv \(name): kernel \(kernel) must be odd and at most "
                    + "\(GraphSpec.Limits.kernel)")
        }
        let w = params.addParameter(name + ".weight", shape: [1, 1, kernel], role: .convWeight)
        let b = bias ? params.addParameter(name + ".bias", shape: [1], role: .convBias) : nil
        let y = newTensor(s)
        layers.append(
            .channelConv(
                ChannelConvLayer(
                    name: name, input: x, output: y, weight: w, bias: b, channels: s.c,
                    kernel: kernel, pad: kernel / 2)))
        return y
    }

    /// Appends LayerNorm over the channels of each pixel (affine weight, optional bias).
    public mutating func channelNorm(_ name: String, _ x: TensorID, eps: Float, bias: Bool)
        throws -> TensorID
    {
        if !(eps > 0 && eps <= 1) {
            throw CSGDError("channel norm \(name): eps \(eps) is not in (0, 1]")
        }
        let s = shape(x)
        let w = params.addParameter(name + ".weight", shape: [s.c], role: .bnScale)
        let b = bias ? params.addParameter(name + ".bias", shape: [s.c], role: .bnShift) : nil
        let y = newTensor(s)
        layers.append(
            .channelNorm(
                ChannelNormLayer(
                    name: name, input: x, output: y, weight: w, bias: b, channels: s.c,
                    hw: s.h * s.w, eps: eps)))
        return y
    }

    /// Appends zero padding of the spatial sides.
    public mutating func pad(_ x: TensorID, top: Int, left: Int, bottom: Int, right: Int) throws
        -> TensorID
    {
        let s = shape(x)
        if [top, left, bottom, right].contains(where: { $0 < 0 || $0 > GraphSpec.Limits.kernel }) {
            throw CSGDError("pad: sides must be in 0...\(GraphSpec.Limits.kernel)")
        }
        let y = newTensor(ActivationShape(c: s.c, h: s.h + top + bottom, w: s.w + left + right))
        layers.append(
            .pad(
                PadLayer(
                    input: x, output: y, shape: s, top: top, left: left, bottom: bottom,
                    right: right)))
        return y
    }

    /// Appends nearest upsampling by `factor`.
    public mutating func upsample(_ x: TensorID, factor: Int) throws -> TensorID {
        let s = shape(x)
        if factor < 1 || factor > GraphSpec.Limits.stride {
            throw CSGDError("upsample: factor \(factor) is out of 1...\(GraphSpec.Limits.stride)")
        }
        let y = newTensor(ActivationShape(c: s.c, h: s.h * factor, w: s.w * factor))
        layers.append(.upsample(UpsampleLayer(input: x, output: y, shape: s, factor: factor)))
        return y
    }

    /// Appends a fully-connected layer over the flattened input.
    public mutating func linear(_ name: String, _ x: TensorID, outFeatures: Int, bias: Bool = true)
        -> TensorID
    {
        let inF = shape(x).count
        let w = params.addParameter(name + ".weight", shape: [outFeatures, inF], role: .fcWeight)
        let b =
            bias ? params.addParameter(name + ".bias", shape: [outFeatures], role: .fcBias) : nil
        let y = newTensor(ActivationShape(c: outFeatures, h: 1, w: 1))
        layers.append(
            .linear(
                LinearLayer(
                    name: name, input: x, output: y, weight: w, bias: b, inFeatures: inF,
                    outFeatures: outFeatures)))
        return y
    }

    /// Finishes the graph with `logits` as its output.
    public func finish(logits: TensorID) -> Graph {
        let store = params
        return Graph(
            layers: layers, tensors: tensors, input: input, logits: logits, specs: store.specs,
            bufferSpecs: store.bufferSpecs)
    }
}
