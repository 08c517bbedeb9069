// The model as a file can hold it: a list of nodes over numbered tensors, serialisable as JSON
// in a model file's metadata (`csgd.architecture`), and built into an executable `Graph`.
//
// Every network goes through this one description: the built-in families (ModelZoo.swift)
// emit specs, `csgd-dist import` translates ONNX files into specs, and training, C-SGD,
// pruning, eval, export and resume read the `Graph` built from it. Tensor numbering makes
// cycles impossible by construction: tensor 0 is the image, tensor i + 1 is node i's output,
// and a node may only read tensors numbered below its own output.
//
// Widths: a spec's conv nodes carry their nominal output width; the actual widths (after
// pruning, or widened) come from `Architecture.widths`, one per dense/grouped conv in node
// order. Depthwise convs have no entry: their width is their input's.

import CSGDCore
import CSGDKernels

/// One node of a serialisable model graph.
public struct NodeSpec: Codable, Equatable, Sendable {
    /// The operation.
    public var op: Op
    /// Module name: parameters are `name.weight`, `name.bias`, `name.running_mean`, …;
    /// empty for ops without parameters.
    public var name: String
    /// Tensors read: 0 is the image, i + 1 is node i's output.
    public var inputs: [Int]
    /// Output channels of a conv (nominal: `Architecture.widths` overrides) or features of a
    /// linear node.
    public var outChannels: Int?
    /// Square kernel side (conv, depthwise conv, pools).
    public var kernel: Int?
    /// Stride (conv, depthwise conv, pools).
    public var stride: Int?
    /// Zero padding on every side (conv, depthwise conv, pools).
    public var pad: Int?
    /// Channel groups of a conv (1 = dense).
    public var groups: Int?
    /// Whether a conv, depthwise conv or linear node has a bias.
    public var bias: Bool?
    /// Whether a ReLU is fused onto a batchNorm or add node's output.
    public var relu: Bool?
    /// Whether average pooling counts padded zeros in the divisor.
    public var countIncludePad: Bool?
    /// PyTorch's `ceil_mode` of a pool (a last, partial window).
    public var ceilMode: Bool?
    /// First channel of a channel slice.
    public var start: Int?
    /// LeakyRelu's negative slope; HardSigmoid's alpha.
    public var alpha: Float?
    /// HardSigmoid's beta.
    public var beta: Float?
    /// Zero padding [top, left, bottom, right] of a pad node.
    public var pads: [Int]?
    /// A batchNorm node's epsilon when it is not PyTorch's 1e-5 (TF-ported weights use 1e-3):
    /// training and eval both add it to the variance, as the source framework does. A
    /// channelNorm's epsilon (PyTorch's LayerNorm default 1e-5 when nil; ConvNeXt uses 1e-6).
    public var eps: Float?

    /// A node; attributes not relevant to `op` stay nil.
    public init(
        op: Op, name: String = "", inputs: [Int], outChannels: Int? = nil, kernel: Int? = nil,
        stride: Int? = nil, pad: Int? = nil, groups: Int? = nil, bias: Bool? = nil,
        relu: Bool? = nil, countIncludePad: Bool? = nil, ceilMode: Bool? = nil,
        start: Int? = nil, alpha: Float? = nil, beta: Float? = nil, pads: [Int]? = nil,
        eps: Float? = nil
    ) {
        self.op = op
        self.name = name
        self.inputs = inputs
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.groups = groups
        self.bias = bias
        self.relu = relu
        self.countIncludePad = countIncludePad
        self.ceilMode = ceilMode
        self.start = start
        self.alpha = alpha
        self.beta = beta
        self.pads = pads
        self.eps = eps
    }

    /// Whether this node has an entry in `Architecture.widths` (dense and grouped convs).
    public var hasWidth: Bool { op == .conv }
}

/// A serialisable model graph (see the file comment).
public struct GraphSpec: Codable, Equatable, Sendable {
    /// Nodes in execution order.
    public var nodes: [NodeSpec]
    /// The logits tensor (must be `[classes, 1, 1]` per image).
    public var output: Int

    /// A spec from its nodes and output tensor.
    public init(nodes: [NodeSpec], output: Int) {
        self.nodes = nodes
        self.output = output
    }

    /// Largest values a spec may hold (a model file is untrusted input).
    public enum Limits {
        /// Nodes in one graph.
        public static let nodes = 20_000
        /// Kernel side of a conv or pool.
        public static let kernel = 31
        /// Stride.
        public static let stride = 16
        /// Inputs of one concat.
        public static let concatInputs = 4_096
        /// Characters in a module name.
        public static let nameLength = 256
    }

    /// The nominal widths of the width-bearing convs, in node order.
    public var nominalWidths: [Int] { nodes.filter(\.hasWidth).map { $0.outChannels ?? 0 } }

    /// Checks node references, attribute presence and bounds, and module names, naming the
    /// node. Shapes are checked by `build`.
    /// - Throws: a one-line `CSGDError`.
    public func validate() throws {
        if nodes.isEmpty || nodes.count > Limits.nodes {
            throw CSGDError("model graph has \(nodes.count) nodes, must be in 1...\(Limits.nodes)")
        }
        if output < 1 || output > nodes.count {
            throw CSGDError("model graph output tensor \(output) is not a node output")
        }
        var names = Set<String>()
        for (i, n) in nodes.enumerated() {
            let at =
                "model graph node \(i) (\(n.op.rawValue)\(n.name.isEmpty ? "" : " '\(n.name)'"))"
            func need(_ v: Int?, _ field: String, _ range: ClosedRange<Int>) throws {
                guard let v else { throw CSGDError("\(at): missing \(field)") }
                if !range.contains(v) {
                    throw CSGDError("\(at): \(field) \(v) is out of \(range)")
                }
            }
            for t in n.inputs where t < 0 || t > i {
                throw CSGDError("\(at): input tensor \(t) is not produced before this node")
            }
            let traits = n.op.traits
            if !traits.arity.contains(n.inputs.count) {
                throw CSGDError("\(at): takes \(traits.arity) inputs, has \(n.inputs.count)")
            }
            func finite(_ v: Float?, _ field: String) throws {
                if let v, !(v.isFinite && abs(v) <= 1e6) {
                    throw CSGDError("\(at): \(field) \(v) is not a finite number within ±1e6")
                }
            }
            switch n.op.family {
            case .conv:
                try need(n.outChannels, "outChannels", 1...Architecture.Limits.width)
                try need(n.kernel, "kernel", 1...Limits.kernel)
                try need(n.stride, "stride", 1...Limits.stride)
                try need(n.pad, "pad", 0...Limits.kernel)
                try need(n.groups ?? 1, "groups", 1...Architecture.Limits.width)
            case .depthwiseConv, .maxPool, .avgPool:
                try need(n.kernel, "kernel", 1...Limits.kernel)
                try need(n.stride, "stride", 1...Limits.stride)
                try need(n.pad, "pad", 0...Limits.kernel)
            case .linear:
                try need(n.outChannels, "outChannels", 1...Architecture.Limits.numClasses)
            case .channelSlice:
                try need(n.start, "start", 0...Architecture.Limits.width * 16)
                try need(n.outChannels, "outChannels", 1...Architecture.Limits.width * 16)
            case .channelShuffle:
                try need(n.groups, "groups", 1...Architecture.Limits.width)
            case .channelConv:
                try need(n.kernel, "kernel", 1...Limits.kernel)
            case .channelNorm:
                if let e = n.eps, !(e > 0 && e <= 1) {
                    throw CSGDError("\(at): eps \(e) is not in (0, 1]")
                }
            case .upsample:
                try need(n.stride, "stride", 1...Limits.stride)
            case .pad:
                guard let p = n.pads, p.count == 4 else { throw CSGDError("\(at): needs 4 pads") }
                for v in p { try need(v, "pads", 0...Limits.kernel) }
            case .elementwise:
                try finite(n.alpha, "alpha")
                try finite(n.beta, "beta")
            case .batchNorm:
                if let e = n.eps, !(e > 0 && e <= 1) {
                    throw CSGDError("\(at): eps \(e) is not in (0, 1]")
                }
            case .add, .concat, .globalAvgPool, .globalMaxPool, .channelScale:
                break
            }
            if traits.hasParameters {
                let valid = n.name.unicodeScalars.allSatisfy {
                    ($0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil))
                        || "._-/:".unicodeScalars.contains($0)
                }
                if n.name.isEmpty || n.name.count > Limits.nameLength || !valid {
                    throw CSGDError(
                        "\(at): module name must be 1...\(Limits.nameLength) characters of "
                            + "letters, digits and ._-/:")
                }
                if !names.insert(n.name).inserted {
                    throw CSGDError("\(at): module name '\(n.name)' is used twice")
                }
            }
        }
    }

    /// Builds the executable graph for an input of `inputChannels` × `imageSize`².
    /// - Parameters:
    ///   - widths: output width of every width-bearing conv in node order (nil: the nominal
    ///     widths).
    ///   - numClasses: the classifier's width when it differs from the spec's (a classifier
    ///     re-initialised for another dataset); the output node must then be a linear node.
    /// - Throws: `CSGDError` naming the node when the spec is invalid, the widths array has
    ///   the wrong length, or shapes do not fit (add of different shapes, grouped conv whose
    ///   channels do not divide, pooling window larger than its input, logits not C×1×1).
    public func build(
        inputChannels: Int, imageSize: Int, widths: [Int]? = nil, numClasses: Int? = nil
    ) throws -> Graph {
        try validate()
        // Only a linear classifier can be re-initialised for other classes; a conv classifier
        // (+ pooling) must already have them.
        let classesFixed = numClasses != nil && nodes[output - 1].op != .linear
        let widths = widths ?? nominalWidths
        let needed = nodes.filter(\.hasWidth).count
        if widths.count != needed {
            throw CSGDError(
                "widths array has \(widths.count) entries, the model has \(needed) convs")
        }
        var b = GraphBuilder(input: ActivationShape(c: inputChannels, h: imageSize, w: imageSize))
        var tensor: [TensorID] = [b.input]
        var nextWidth = 0
        for (i, n) in nodes.enumerated() {
            let at =
                "model graph node \(i) (\(n.op.rawValue)\(n.name.isEmpty ? "" : " '\(n.name)'"))"
            let x = n.inputs.map { tensor[$0] }
            let y: TensorID
            do {
                switch n.op.family {
                case .conv:
                    let k = widths[nextWidth]
                    nextWidth += 1
                    y = try b.conv(
                        n.name, x[0], outChannels: k, kernel: n.kernel!, stride: n.stride!,
                        pad: n.pad!, groups: n.groups ?? 1, bias: n.bias ?? false)
                case .depthwiseConv:
                    y = try b.depthwiseConv(
                        n.name, x[0], kernel: n.kernel!, stride: n.stride!, pad: n.pad!,
                        bias: n.bias ?? false)
                case .batchNorm:
                    y = b.batchNorm(n.name, x[0], relu: n.relu ?? false, eps: n.eps)
                case .elementwise: y = b.activation(x[0], n.activation!)
                case .add: y = try b.add(x[0], x[1], relu: n.relu ?? false)
                case .concat: y = try b.concat(x)
                case .maxPool:
                    y = try b.maxPool(
                        x[0], kernel: n.kernel!, stride: n.stride!, pad: n.pad!,
                        ceilMode: n.ceilMode ?? false)
                case .avgPool:
                    y = try b.avgPool(
                        x[0], kernel: n.kernel!, stride: n.stride!, pad: n.pad!,
                        countIncludePad: n.countIncludePad ?? true, ceilMode: n.ceilMode ?? false)
                case .globalAvgPool: y = b.globalAvgPool(x[0])
                case .globalMaxPool: y = b.globalMaxPool(x[0])
                case .channelScale: y = try b.channelScale(x[0], gate: x[1])
                case .channelSlice:
                    y = try b.channelSlice(x[0], start: n.start!, count: n.outChannels!)
                case .channelShuffle: y = try b.channelShuffle(x[0], groups: n.groups!)
                case .channelConv:
                    y = try b.channelConv(n.name, x[0], kernel: n.kernel!, bias: n.bias ?? false)
                case .channelNorm:
                    y = try b.channelNorm(
                        n.name, x[0], eps: n.eps ?? BatchNormConfig().eps, bias: n.bias ?? true)
                case .pad:
                    let p = n.pads!
                    y = try b.pad(x[0], top: p[0], left: p[1], bottom: p[2], right: p[3])
                case .upsample: y = try b.upsample(x[0], factor: n.stride!)
                case .linear:
                    let features = i == output - 1 ? numClasses ?? n.outChannels! : n.outChannels!
                    y = b.linear(n.name, x[0], outFeatures: features, bias: n.bias ?? true)
                }
            } catch let e as CSGDError {
                throw CSGDError("\(at): \(e.message)", hint: e.hint)
            }
            tensor.append(y)
        }
        let logits = tensor[output]
        let s = b.shape(logits)
        if s.h != 1 || s.w != 1 {
            throw CSGDError("model graph output is \(s.c)×\(s.h)×\(s.w), expected classes×1×1")
        }
        if classesFixed && s.c != numClasses {
            throw CSGDError(
                "model graph output has \(s.c) classes and is not a linear (classifier) node, "
                    + "so it cannot be given \(numClasses!)")
        }
        return b.finish(logits: logits)
    }
}
