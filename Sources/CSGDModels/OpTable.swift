// The op vocabulary: one row per op of a model graph, read by everything that must know ops
// (spec validation, graph building, the channel rules of Topology, the ONNX importer's and
// exporter's names, the import report). Adding an op means one row here, one kernel file,
// the builder call in `GraphSpec.build` and its tests; the switches below are exhaustive, so
// a new case does not compile until its row exists.

import CSGDKernels

/// How an op's output channels relate to its inputs' (the channel rules of
/// docs/pruning-rules.md; Topology applies them).
public enum ChannelFlow: String, Sendable, CaseIterable {
    /// Starts a new channel space (a dense conv: prunable unless something fixes it).
    case newSpace
    /// Output channel j is input channel j (BatchNorm, activations, pooling, depthwise conv).
    case passThrough
    /// Two inputs' spaces become one (residual add).
    case merge
    /// Inputs' spaces laid end to end (concatenation).
    case concat
    /// The first input's channels weighted by a per-channel gate (squeeze-excitation): the
    /// gate's producing rows are coupled to the gated space.
    case gate
    /// A run of the input's channels: every space of the input is held fixed.
    case slice
    /// A permutation of the input's channels: every space of the input is held fixed.
    case permute
    /// A space nothing may prune (a classifier's outputs).
    case fixedSpace
}

/// What the rest of the program needs to know about one op.
public struct OpTraits: Sendable {
    /// Number of tensor inputs.
    public let arity: ClosedRange<Int>
    /// Whether the node owns named parameters (`name.weight`, …).
    public let hasParameters: Bool
    /// How channels flow through it.
    public let channelFlow: ChannelFlow
    /// The ONNX op types it is imported from and exported as (the first is written).
    public let onnx: [String]
    /// Words for the import report.
    public let summary: String
}

extension NodeSpec.Op {
    /// This op's row of the table.
    public var traits: OpTraits {
        func row(
            inputs arity: ClosedRange<Int> = 1...1, parameters: Bool = false, _ flow: ChannelFlow,
            _ onnx: [String], _ summary: String
        ) -> OpTraits {
            OpTraits(
                arity: arity, hasParameters: parameters, channelFlow: flow, onnx: onnx,
                summary: summary)
        }
        switch self {
        case .conv: return row(parameters: true, .newSpace, ["Conv"], "conv")
        case .depthwiseConv:
            return row(parameters: true, .passThrough, ["Conv"], "depthwise conv")
        case .batchNorm:
            return row(parameters: true, .passThrough, ["BatchNormalization"], "batchnorm")
        case .relu: return row(.passThrough, ["Relu"], "relu")
        case .relu6: return row(.passThrough, ["Clip"], "relu6")
        case .sigmoid: return row(.passThrough, ["Sigmoid"], "sigmoid")
        case .hardSigmoid: return row(.passThrough, ["HardSigmoid"], "hardsigmoid")
        case .silu: return row(.passThrough, ["Sigmoid", "Mul"], "silu")
        case .hardSwish: return row(.passThrough, ["HardSwish"], "hardswish")
        case .leakyRelu: return row(.passThrough, ["LeakyRelu"], "leakyrelu")
        case .gelu: return row(.passThrough, ["Gelu"], "gelu")
        case .add: return row(inputs: 2...2, .merge, ["Add"], "add")
        case .concat:
            return row(inputs: 1...GraphSpec.Limits.concatInputs, .concat, ["Concat"], "concat")
        case .maxPool: return row(.passThrough, ["MaxPool"], "maxpool")
        case .avgPool: return row(.passThrough, ["AveragePool"], "avgpool")
        case .globalAvgPool:
            return row(.passThrough, ["GlobalAveragePool", "ReduceMean"], "global avgpool")
        case .globalMaxPool:
            return row(.passThrough, ["GlobalMaxPool", "ReduceMax"], "global maxpool")
        case .channelScale: return row(inputs: 2...2, .gate, ["Mul"], "channel gate")
        case .channelSlice: return row(.slice, ["Slice", "Split"], "channel slice")
        case .channelShuffle:
            return row(.permute, ["Reshape", "Transpose", "Reshape"], "channel shuffle")
        case .pad: return row(.passThrough, ["Pad"], "pad")
        case .upsample: return row(.passThrough, ["Resize", "Upsample"], "nearest upsample")
        case .linear: return row(parameters: true, .fixedSpace, ["Gemm", "MatMul"], "linear")
        }
    }
}

extension NodeSpec {
    /// The element-wise activation this node computes, if it is one.
    public var activation: Activation? {
        switch op {
        case .relu: return .relu
        case .relu6: return .relu6
        case .sigmoid: return .sigmoid
        case .hardSigmoid:
            return .hardSigmoid(alpha: alpha ?? 1 / 6, beta: beta ?? 0.5)
        case .silu: return .silu
        case .hardSwish: return .hardSwish
        case .leakyRelu: return .leakyRelu(alpha: alpha ?? 0.01)
        case .gelu: return .gelu
        case .conv, .depthwiseConv, .batchNorm, .add, .concat, .maxPool, .avgPool,
            .globalAvgPool, .globalMaxPool, .channelScale, .channelSlice, .channelShuffle,
            .pad, .upsample, .linear:
            return nil
        }
    }
}

extension Activation {
    /// The spec op computing this activation.
    public var op: NodeSpec.Op {
        switch self {
        case .relu: return .relu
        case .relu6: return .relu6
        case .sigmoid: return .sigmoid
        case .hardSigmoid: return .hardSigmoid
        case .silu: return .silu
        case .hardSwish: return .hardSwish
        case .leakyRelu: return .leakyRelu
        case .gelu: return .gelu
        }
    }
}

extension Layer {
    /// The op this layer computes (its row of the table).
    public var op: NodeSpec.Op {
        switch self {
        case .conv: return .conv
        case .depthwiseConv: return .depthwiseConv
        case .batchNorm: return .batchNorm
        case .activation(let l): return l.kind.op
        case .add: return .add
        case .concat: return .concat
        case .maxPool: return .maxPool
        case .avgPool: return .avgPool
        case .globalAvgPool: return .globalAvgPool
        case .globalMaxPool: return .globalMaxPool
        case .channelScale: return .channelScale
        case .channelSlice: return .channelSlice
        case .channelShuffle: return .channelShuffle
        case .pad: return .pad
        case .upsample: return .upsample
        case .linear: return .linear
        }
    }

    /// How channels flow through this layer (the row of its op).
    public var channelFlow: ChannelFlow { op.traits.channelFlow }
}
