// The op vocabulary: one row per op of a model graph, read by everything that must know ops
// (spec validation, graph building, the channel rules of Topology, the ONNX importer's and
// exporter's forms, the import report). The switches below are exhaustive, so a new case does
// not compile until its row exists.
//
// Code elsewhere switches on an op's FAMILY, not on the op: every element-wise op (ReLU,
// SiLU, GELU, …) is one family with one path through spec validation, graph building, the
// executor, Topology, the pruner, the exporter and the importer. Adding an element-wise op is
// therefore its case and row here (family, channel flow, ONNX form, its `Activation`) plus its
// formula and slope in CSGDKernels/Activations.swift, and tests. An op of a new family (a new
// layer shape) still needs its layer type, builder and executor case.

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
    /// Output channel j reads the input's channels near j (ECA's Conv1d along the channel
    /// axis): every space of the input is held fixed; output channel j lines up with input j.
    case mixNeighbours
    /// Output channel j is input channel j normalised by statistics over ALL the input's
    /// channels (LayerNorm over channels): every space of the input is held fixed (merging two
    /// identical channels would change the mean and variance the others see).
    case normaliseAcross
    /// A space nothing may prune (a classifier's outputs).
    case fixedSpace
}

/// Ops that share one code path (see the file comment); one per layer kind of the graph.
public enum OpFamily: String, Sendable, CaseIterable {
    case conv, depthwiseConv, batchNorm
    /// Any `Activation`: one input, one output of its shape, value by value.
    case elementwise
    case add, concat, maxPool, avgPool, globalAvgPool, globalMaxPool, channelScale
    case channelSlice, channelShuffle, channelConv, channelNorm, pad, upsample, linear
}

extension NodeSpec {
    /// What a node computes.
    public enum Op: String, Codable, CaseIterable, Sendable {
        /// Dense or grouped 2-D convolution (`groups` > 1 splits channels into groups).
        case conv
        /// Depthwise 2-D convolution, channel multiplier 1: output channel c reads input c only.
        case depthwiseConv
        /// BatchNorm over channels (inference form: running statistics), optional fused ReLU.
        case batchNorm
        /// max(x, 0).
        case relu
        /// min(max(x, 0), 6) (ONNX Clip(0, 6)).
        case relu6
        /// 1 / (1 + e^(−x)).
        case sigmoid
        /// max(0, min(1, alpha·x + beta)) (PyTorch's Hardsigmoid: alpha 1/6, beta 1/2).
        case hardSigmoid
        /// x · sigmoid(x) (SiLU, Swish).
        case silu
        /// x · hardsigmoid(x) (PyTorch's Hardswish).
        case hardSwish
        /// x for x > 0, else alpha·x.
        case leakyRelu
        /// x · Φ(x) (exact, erf form).
        case gelu
        /// tanh(x).
        case tanh
        /// Elementwise sum of two tensors of one shape, optional fused ReLU.
        case add
        /// Concatenation along channels, in input order.
        case concat
        /// Max pooling.
        case maxPool
        /// Average pooling (`countIncludePad` as PyTorch's `count_include_pad`).
        case avgPool
        /// Mean over H×W, to C×1×1.
        case globalAvgPool
        /// Max over H×W, to C×1×1.
        case globalMaxPool
        /// Squeeze-excitation gate: input 0 (C×H×W) times input 1 (C×1×1), per channel.
        case channelScale
        /// Channels `start ..< start + outChannels` of the input.
        case channelSlice
        /// ShuffleNet's channel shuffle in `groups` groups.
        case channelShuffle
        /// ECA's gate conv: a 1-in, 1-out Conv1d of side `kernel` (zero padding `pad`) sliding
        /// along the channels of a C×1×1 input (`x.view(N, 1, C)` in PyTorch).
        case channelConv
        /// LayerNorm over the channels of each pixel, with a per-channel weight and bias
        /// (ConvNeXt's `LayerNorm2d`, and `nn.LayerNorm` on the channels-last view); `eps` as
        /// the source framework's (PyTorch's default 1e-5).
        case channelNorm
        /// Zero padding by `pads` = [top, left, bottom, right].
        case pad
        /// Nearest upsampling by the integer factor `stride`.
        case upsample
        /// Fully connected over the flattened input (C·H·W features, PyTorch's flatten order).
        case linear
    }
}

/// What the rest of the program needs to know about one op.
public struct OpTraits: Sendable {
    /// The code path it shares with other ops.
    public let family: OpFamily
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
    /// The lowest ONNX opset whose operators write it (the exporter refuses a lower one).
    public let minimumOpset: Int
}

extension NodeSpec.Op {
    /// This op's row of the table.
    public var traits: OpTraits {
        func row(
            _ family: OpFamily, inputs arity: ClosedRange<Int> = 1...1, parameters: Bool = false,
            _ flow: ChannelFlow, _ onnx: [String], _ summary: String, opset: Int = 1
        ) -> OpTraits {
            OpTraits(
                family: family, arity: arity, hasParameters: parameters, channelFlow: flow,
                onnx: onnx, summary: summary, minimumOpset: opset)
        }
        // Every element-wise op: one input, channels pass through; its ONNX names come from
        // its form (`Activation.onnx`).
        func elementwise(_ summary: String) -> OpTraits {
            let form = activation(alpha: nil, beta: nil)!.onnx
            let names = form.op.map { [$0] } ?? form.composition.map(\.op)
            return row(.elementwise, .passThrough, names, summary)
        }
        switch self {
        case .conv: return row(.conv, parameters: true, .newSpace, ["Conv"], "conv")
        case .depthwiseConv:
            return row(.depthwiseConv, parameters: true, .passThrough, ["Conv"], "depthwise conv")
        case .batchNorm:
            return row(
                .batchNorm, parameters: true, .passThrough, ["BatchNormalization"], "batchnorm")
        case .relu: return elementwise("relu")
        case .relu6: return elementwise("relu6")
        case .sigmoid: return elementwise("sigmoid")
        case .hardSigmoid: return elementwise("hardsigmoid")
        case .silu: return elementwise("silu")
        case .hardSwish: return elementwise("hardswish")
        case .leakyRelu: return elementwise("leakyrelu")
        case .gelu: return elementwise("gelu")
        case .tanh: return elementwise("tanh")
        case .add: return row(.add, inputs: 2...2, .merge, ["Add"], "add")
        case .concat:
            return row(
                .concat, inputs: 1...GraphSpec.Limits.concatInputs, .concat, ["Concat"], "concat")
        case .maxPool: return row(.maxPool, .passThrough, ["MaxPool"], "maxpool")
        case .avgPool: return row(.avgPool, .passThrough, ["AveragePool"], "avgpool")
        case .globalAvgPool:
            return row(
                .globalAvgPool, .passThrough, ["GlobalAveragePool", "ReduceMean"],
                "global avgpool")
        case .globalMaxPool:
            return row(
                .globalMaxPool, .passThrough, ["GlobalMaxPool", "ReduceMax"], "global maxpool")
        case .channelScale:
            return row(.channelScale, inputs: 2...2, .gate, ["Mul"], "channel gate")
        case .channelSlice:
            return row(.channelSlice, .slice, ["Slice", "Split"], "channel slice")
        case .channelShuffle:
            return row(
                .channelShuffle, .permute, ["Reshape", "Transpose", "Reshape"], "channel shuffle")
        case .channelConv:
            return row(
                .channelConv, parameters: true, .mixNeighbours, ["Reshape", "Conv", "Reshape"],
                "ECA channel conv")
        case .channelNorm:
            // ONNX has LayerNormalization from opset 17 on; it normalises the last axis, so
            // the channels are moved there and back, as torch writes `LayerNorm2d`.
            return row(
                .channelNorm, parameters: true, .normaliseAcross,
                ["Transpose", "LayerNormalization", "Transpose"], "LayerNorm over channels",
                opset: 17)
        case .pad: return row(.pad, .passThrough, ["Pad"], "pad")
        case .upsample:
            return row(.upsample, .passThrough, ["Resize", "Upsample"], "nearest upsample")
        case .linear:
            return row(.linear, parameters: true, .fixedSpace, ["Gemm", "MatMul"], "linear")
        }
    }

    /// The op's code path.
    public var family: OpFamily { traits.family }

    /// The element-wise op's activation from a node's attributes (nil where it has none:
    /// PyTorch's defaults), or nil when the op is not element-wise.
    public func activation(alpha: Float?, beta: Float?) -> Activation? {
        switch self {
        case .relu: return .relu
        case .relu6: return .relu6
        case .sigmoid: return .sigmoid
        case .hardSigmoid: return .hardSigmoid(alpha: alpha ?? 1 / 6, beta: beta ?? 0.5)
        case .silu: return .silu
        case .hardSwish: return .hardSwish
        case .leakyRelu: return .leakyRelu(alpha: alpha ?? 0.01)
        case .gelu: return .gelu
        case .tanh: return .tanh
        case .conv, .depthwiseConv, .batchNorm, .add, .concat, .maxPool, .avgPool,
            .globalAvgPool, .globalMaxPool, .channelScale, .channelSlice, .channelShuffle,
            .channelConv, .channelNorm, .pad, .upsample, .linear:
            return nil
        }
    }

    /// The element-wise op an ONNX node of type `opType` is, where one ONNX op computes it
    /// alone with float attributes only (Clip, whose bounds are inputs, and the fused
    /// compositions are matched by the importer itself).
    public static func elementwise(onnx opType: String) -> NodeSpec.Op? {
        elementwiseByONNX[opType]
    }

    /// Built once: the importer asks for every node of a file.
    private static let elementwiseByONNX: [String: NodeSpec.Op] = {
        var map: [String: NodeSpec.Op] = [:]
        for op in allCases {
            guard let form = op.activation(alpha: nil, beta: nil)?.onnx, let name = form.op,
                form.scalarInputs.isEmpty
            else { continue }
            if map[name] == nil { map[name] = op }
        }
        return map
    }()
}

/// One operand of an ONNX composition step.
public enum ONNXOperand: Sendable, Equatable {
    /// The op's input.
    case x
    /// The output of an earlier step.
    case step(Int)
    /// A scalar float constant.
    case scalar(Float)
}

/// One ONNX node of a composition.
public struct ONNXStep: Sendable, Equatable {
    public let op: String
    public let operands: [ONNXOperand]
    public let floats: [ONNXFloatAttribute]
}

/// A float attribute as written, with the default ONNX gives it when it is absent.
public struct ONNXFloatAttribute: Sendable, Equatable {
    /// The attribute's name; also the `NodeSpec` field it is read into (`alpha`, `beta`).
    public let name: String
    public let value: Float
    public let onnxDefault: Float
}

/// How an element-wise op is written to ONNX and read back (the exporter and importer read
/// only this).
public struct ONNXElementwiseForm: Sendable {
    /// The single ONNX op computing it, from opset `since` on; nil where ONNX has none.
    public let op: String?
    public let since: Int
    /// Its float attributes.
    public let floats: [ONNXFloatAttribute]
    /// Scalar constant inputs after x (Clip's bounds).
    public let scalarInputs: [Float]
    /// String attributes the importer requires when present (name, the one value read).
    public let requiredStrings: [(name: String, value: String)]
    /// What is written below `since`, or always when `op` is nil: the composition torch writes
    /// (the importer fuses it back); the last step is the output.
    public let composition: [ONNXStep]
}

extension Activation {
    /// Its ONNX form (the exporter writes it, the importer reads the single-op form).
    public var onnx: ONNXElementwiseForm {
        func form(
            _ op: String?, since: Int = 1, floats: [ONNXFloatAttribute] = [],
            scalars: [Float] = [], strings: [(String, String)] = [], _ composition: [ONNXStep] = []
        ) -> ONNXElementwiseForm {
            ONNXElementwiseForm(
                op: op, since: since, floats: floats, scalarInputs: scalars,
                requiredStrings: strings.map { (name: $0.0, value: $0.1) },
                composition: composition)
        }
        func step(_ op: String, _ operands: ONNXOperand..., floats: [ONNXFloatAttribute] = [])
            -> ONNXStep
        {
            ONNXStep(op: op, operands: operands, floats: floats)
        }
        func hardSigmoidFloats(_ a: Float, _ b: Float) -> [ONNXFloatAttribute] {
            [
                ONNXFloatAttribute(name: "alpha", value: a, onnxDefault: 0.2),
                ONNXFloatAttribute(name: "beta", value: b, onnxDefault: 0.5),
            ]
        }
        switch self {
        case .relu: return form("Relu")
        // Clip takes its bounds as inputs from opset 11 on (all we write).
        case .relu6: return form("Clip", scalars: [0, 6])
        case .sigmoid: return form("Sigmoid")
        case .hardSigmoid(let a, let b): return form("HardSigmoid", floats: hardSigmoidFloats(a, b))
        case .silu: return form(nil, [step("Sigmoid", .x), step("Mul", .x, .step(0))])
        case .hardSwish:
            return form(
                "HardSwish", since: 14,
                [
                    step("HardSigmoid", .x, floats: hardSigmoidFloats(1 / 6, 0.5)),
                    step("Mul", .x, .step(0)),
                ])
        case .leakyRelu(let a):
            return form(
                "LeakyRelu",
                floats: [ONNXFloatAttribute(name: "alpha", value: a, onnxDefault: 0.01)])
        case .gelu:
            return form(
                "Gelu", since: 20, strings: [("approximate", "none")],
                [
                    step("Div", .x, .scalar(Float(2).squareRoot())), step("Erf", .step(0)),
                    step("Add", .step(1), .scalar(1)), step("Mul", .x, .step(2)),
                    step("Mul", .step(3), .scalar(0.5)),
                ])
        case .tanh: return form("Tanh")
        }
    }
}

extension NodeSpec {
    /// The element-wise activation this node computes, if it is one.
    public var activation: Activation? { op.activation(alpha: alpha, beta: beta) }
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
        case .tanh: return .tanh
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
        case .channelConv: return .channelConv
        case .channelNorm: return .channelNorm
        case .pad: return .pad
        case .upsample: return .upsample
        case .linear: return .linear
        }
    }

    /// How channels flow through this layer (the row of its op).
    public var channelFlow: ChannelFlow { op.traits.channelFlow }
}
