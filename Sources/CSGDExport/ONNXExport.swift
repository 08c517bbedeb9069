// ONNX export: walks a model's layer graph (Graph.swift) and writes one ONNX node per
// operation, with the weights as initializers, so a csgd-dist model — pruned or not — runs in
// onnxruntime, TensorRT, OpenVINO, … without our code.
//
// Conventions of the file we write:
// - input `input` float [N, C, H, W] (N symbolic), normalised exactly as for training; output
//   `logits` float [N, classes] (no softmax).
// - BatchNorm stays a BatchNormalization node (inference form: running mean/var, eps from the
//   network), not folded into the conv. The file then mirrors the checkpoint tensor for tensor
//   under the same torchvision names, and computes what `csgd-dist eval` computes; runtimes
//   fold BN into the preceding conv themselves when they load a model, so folding here would
//   buy no speed at inference, only lose the one-to-one mapping.
// - Values are named after the module that produced them (`layer1.0.conv1`, `layer1.0.bn1`,
//   `layer1.0.bn1.relu`, `layer1.0.add`, …), initializers after their checkpoint tensor.
// - Widths come from the network's architecture, so a pruned net exports like any other.

import CSGDCore
import CSGDModels
import CSGDONNX
import Foundation
import SwiftProtobuf

/// Writes csgd-dist networks as ONNX models.
public enum ONNXExport {
    /// Opsets we can write. Every operator we emit (Conv, BatchNormalization, Relu, Clip, Add,
    /// Concat, MaxPool, AveragePool, GlobalAveragePool, Flatten, Gemm) has the same inference
    /// semantics across them.
    public static let supportedOpsets = 11...21

    /// The default opset: read by every current runtime.
    public static let defaultOpset = 13

    /// The lowest opset that writes every op of `network` (an op's `minimumOpset`), at least
    /// `defaultOpset`: what `export` declares unless told otherwise.
    public static func defaultOpset(for network: Network) -> Int {
        network.graph.layers.reduce(defaultOpset) { max($0, $1.op.traits.minimumOpset) }
    }

    /// The lowest ONNX IR version that can carry `opset` (the pairing of ONNX releases), so
    /// older runtimes accept the file.
    public static func irVersion(opset: Int) -> Int {
        switch opset {
        case ...11: return 6
        case 12...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }

    /// The serialized ONNX model of `network` in eval mode.
    /// - Parameters:
    ///   - opset: the default-domain opset to declare; must be in `supportedOpsets`.
    ///   - docString: free text stored as the model's doc string (e.g. where it came from).
    /// - Throws: `CSGDError` for an unsupported opset.
    public static func serialize(
        _ network: Network, opset: Int = defaultOpset, docString: String = ""
    )
        throws -> Data
    {
        try model(network, opset: opset, docString: docString).serializedBytes()
    }

    /// The ONNX model as a protobuf message (what `serialize` encodes).
    static func model(_ network: Network, opset: Int, docString: String) throws -> ONNXModelProto {
        if !supportedOpsets.contains(opset) {
            throw CSGDError(
                "--opset \(opset) is not supported (use \(supportedOpsets.lowerBound)"
                    + "–\(supportedOpsets.upperBound))")
        }
        for layer in network.graph.layers where layer.op.traits.minimumOpset > opset {
            let t = layer.op.traits
            throw CSGDError(
                "--opset \(opset): the model's \(t.summary) needs opset \(t.minimumOpset) or "
                    + "later (ONNX's \(t.onnx.joined(separator: " → ")))")
        }
        var m = ONNXModelProto()
        m.irVersion = Int64(irVersion(opset: opset))
        m.producerName = "csgd-dist"
        m.modelVersion = 1
        m.docString = docString
        m.opsetImport = [
            ONNXOperatorSetIdProto.with {
                $0.domain = ""
                $0.version = Int64(opset)
            }
        ]
        var writer = GraphWriter(network, opset: opset)
        m.graph = writer.graph()
        let architecture = try architectureJSON(network.architecture)
        m.metadataProps = [
            ONNXStringStringEntryProto.with {
                $0.key = "csgd.architecture"
                $0.value = architecture
            }
        ]
        return m
    }

    private static func architectureJSON(_ a: Architecture) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(a), as: UTF8.self)
    }
}

/// Turns one network's graph into ONNX nodes, value names and initializers.
private struct GraphWriter {
    let network: Network
    var graphIR: Graph { network.graph }
    var store: ParameterStore { network.store }
    /// The ONNX value currently holding each activation tensor (an in-place ReLU in our graph
    /// is a separate ONNX node, so a tensor's value name changes after it).
    var valueOf: [String]
    var nodes: [ONNXNodeProto] = []
    var usedNames: Set<String> = ["input", "logits"]
    /// Scalar initializers the graph needs beyond the model's tensors (Clip bounds, GELU's).
    var constants: [Float: String] = [:]
    /// int64 vector initializers (Slice bounds, Reshape shapes, pads), by value.
    var intConstants: [[Int]: String] = [:]
    /// float vector initializers (Resize scales), by value.
    var floatConstants: [[Float]: String] = [:]
    let opset: Int

    init(_ network: Network, opset: Int) {
        self.network = network
        self.opset = opset
        valueOf = [String](repeating: "", count: network.graph.tensors.count)
        valueOf[network.graph.input.index] = "input"
    }

    mutating func graph() -> ONNXGraphProto {
        for layer in graphIR.layers {
            emit(layer)
        }
        if valueOf[graphIR.logits.index] != "logits" {  // a conv classifier + pooling
            nodes.append(
                makeNode(
                    "Flatten", unique("flatten"), [valueOf[graphIR.logits.index]], "logits",
                    [int("axis", 1)]))
        }
        var g = ONNXGraphProto()
        g.name = network.architecture.model
        g.node = nodes
        g.initializer =
            store.specs.indices.map { i in
                let spec = store.specs[i]
                return tensor(spec.name, spec.shape, store.value(ParameterID(i)))
            }
            + store.bufferSpecs.indices.map { i in
                let spec = store.bufferSpecs[i]
                return tensor(spec.name, spec.shape, store.buffer(BufferID(i)))
            }
            + constants.sorted { $0.value < $1.value }.map { value, name in
                withUnsafePointer(to: value) { tensor(name, [], $0) }
            }
            + floatConstants.sorted { $0.value < $1.value }.map { values, name in
                values.withUnsafeBufferPointer { tensor(name, [values.count], $0.baseAddress!) }
            }
            + intConstants.sorted { $0.value < $1.value }.map { values, name in
                ONNXTensorProto.with {
                    $0.name = name
                    $0.dims = [Int64(values.count)]
                    $0.dataType = Int32(ONNXTensorProto.DataType.int64.rawValue)
                    $0.int64Data = values.map(Int64.init)
                }
            }
        let image = graphIR.tensors[graphIR.input.index]
        g.input = [valueInfo("input", [nil, image.c, image.h, image.w])]
        g.output = [valueInfo("logits", [nil, network.numClasses])]
        return g
    }

    // MARK: - nodes

    private mutating func emit(_ layer: Layer) {
        switch layer {
        case .conv(let l):
            let g = l.shape
            conv(
                l.name, l.input, l.output, l.weight, l.bias, kernel: (g.r, g.s), stride: g.stride,
                pad: g.pad, groups: l.groups)
        case .batchNorm(let l):
            node(
                "BatchNormalization", l.name,
                [
                    valueOf[l.input.index], store[l.scale].name, store[l.shift].name,
                    store[l.runningMean].name, store[l.runningVar].name,
                ],
                l.output, [float("epsilon", l.eps ?? network.batchNorm.eps)], last: !l.relu)
            if l.relu { relu(l.output, l.name) }
        case .add(let l):
            // Named after the block whose residual branch it closes: `layer1.0.add`.
            let name = blockPrefix(of: valueOf[l.a.index]) + "add"
            node(
                "Add", name, [valueOf[l.a.index], valueOf[l.b.index]], l.output, [], last: !l.relu)
            if l.relu { relu(l.output, name) }
        case .maxPool(let l):
            let g = l.shape
            node(
                "MaxPool", "maxpool", [valueOf[l.input.index]], l.output,
                [
                    ints("kernel_shape", [g.kernel, g.kernel]),
                    ints("strides", [g.stride, g.stride]),
                    ints("pads", [g.pad, g.pad, g.pad, g.pad]),
                    int("ceil_mode", g.ceilMode ? 1 : 0),
                ])
        case .depthwiseConv(let l):
            // ONNX has no depthwise op: a Conv with one group per channel.
            let g = l.shape
            conv(
                l.name, l.input, l.output, l.weight, l.bias, kernel: (g.r, g.s), stride: g.stride,
                pad: g.pad, groups: g.c)
        case .activation(let l):
            activation(l)
        case .globalMaxPool(let l):
            node("GlobalMaxPool", "maxpool", [valueOf[l.input.index]], l.output, [])
        case .channelScale(let l):
            let x = valueOf[l.input.index]
            node("Mul", blockPrefix(of: x) + "gate", [x, valueOf[l.gate.index]], l.output, [])
        case .channelSlice(let l):
            let x = valueOf[l.input.index]
            node(
                "Slice", x + ".slice",
                [
                    x, intVector([l.start]), intVector([l.start + l.count]), intVector([1]),
                    intVector([1]),
                ], l.output, [])
        case .pad(let l):
            let x = valueOf[l.input.index]
            node(
                "Pad", x + ".pad",
                [x, intVector([0, 0, l.top, l.left, 0, 0, l.bottom, l.right]), scalar(0)],
                l.output, [])
        case .upsample(let l):
            // torch's nearest Upsample: asymmetric coordinates, floor.
            let x = valueOf[l.input.index]
            let f = Float(l.factor)
            node(
                "Resize", x + ".upsample", [x, "", floatVector([1, 1, f, f])], l.output,
                [
                    string("mode", "nearest"),
                    string("coordinate_transformation_mode", "asymmetric"),
                    string("nearest_mode", "floor"),
                ])
        case .channelShuffle(let l):
            // view(N, g, C/g, H, W) → transpose(1, 2) → view(N, C, H, W), as torch writes it
            // (0 in a Reshape target copies the batch dimension).
            let x = valueOf[l.input.index]
            let s = graphIR.tensors[l.input.index]
            let split = unique(x + ".shuffle_view")
            let moved = unique(x + ".shuffle_transpose")
            nodes.append(
                makeNode(
                    "Reshape", split,
                    [x, intVector([0, l.groups, l.channels / l.groups, s.h, s.w])],
                    split, []))
            nodes.append(
                makeNode("Transpose", moved, [split], moved, [ints("perm", [0, 2, 1, 3, 4])]))
            node(
                "Reshape", x + ".shuffle", [moved, intVector([0, l.channels, s.h, s.w])], l.output,
                [])
        case .channelConv(let l):
            // y.view(N, 1, C) → Conv1d(1, 1, k) → view(N, C, 1, 1), as timm's EcaModule and
            // torch write it (0 in a Reshape target copies the batch dimension).
            let x = valueOf[l.input.index]
            let sequence = unique(l.name + ".view")
            let conv = unique(l.name)
            nodes.append(makeNode("Reshape", sequence, [x, intVector([0, 1, -1])], sequence, []))
            var inputs = [sequence, store[l.weight].name]
            if let b = l.bias { inputs.append(store[b].name) }
            nodes.append(
                makeNode(
                    "Conv", conv, inputs, conv,
                    [
                        ints("kernel_shape", [l.kernel]), ints("strides", [1]),
                        ints("pads", [l.pad, l.pad]), ints("dilations", [1]), int("group", 1),
                    ]))
            node("Reshape", l.name + ".unview", [conv, intVector([0, -1, 1, 1])], l.output, [])
        case .channelNorm(let l):
            // x.permute(0, 2, 3, 1) → LayerNorm over the last axis → permute back, as torch
            // writes ConvNeXt's LayerNorm2d (opset ≥ 17, checked in `model`).
            let x = valueOf[l.input.index]
            let last = unique(l.name + ".channels_last")
            let norm = unique(l.name)
            nodes.append(
                makeNode("Transpose", last, [x], last, [ints("perm", [0, 2, 3, 1])]))
            var inputs = [last, store[l.weight].name]
            if let b = l.bias { inputs.append(store[b].name) }
            nodes.append(
                makeNode(
                    "LayerNormalization", norm, inputs, norm,
                    [int("axis", -1), float("epsilon", l.eps)]))
            node(
                "Transpose", l.name + ".channels_first", [norm], l.output,
                [ints("perm", [0, 3, 1, 2])])
        case .concat(let l):
            node("Concat", "concat", l.inputs.map { valueOf[$0.index] }, l.output, [int("axis", 1)])
        case .avgPool(let l):
            let g = l.shape
            node(
                "AveragePool", "avgpool", [valueOf[l.input.index]], l.output,
                [
                    ints("kernel_shape", [g.kernel, g.kernel]),
                    ints("strides", [g.stride, g.stride]),
                    ints("pads", [g.pad, g.pad, g.pad, g.pad]),
                    int("count_include_pad", l.countIncludePad ? 1 : 0),
                    int("ceil_mode", g.ceilMode ? 1 : 0),
                ])
        case .globalAvgPool(let l):
            node("GlobalAveragePool", "avgpool", [valueOf[l.input.index]], l.output, [])
        case .linear(let l):
            // Gemm needs [N, features]; our activations are [N, C, H, W] (H = W = 1 after the
            // global pool), so flatten first, as torch.flatten(x, 1) does.
            let flat = unique(l.name + ".flatten")
            nodes.append(
                makeNode("Flatten", flat, [valueOf[l.input.index]], flat, [int("axis", 1)]))
            var inputs = [flat, store[l.weight].name]
            if let b = l.bias { inputs.append(store[b].name) }
            node(
                "Gemm", l.name, inputs, l.output,
                [float("alpha", 1), float("beta", 1), int("transA", 0), int("transB", 1)])
        }
    }

    /// Appends a node writing activation `output`; its value is `logits` if this is the
    /// graph's final value (`last`: no in-place ReLU follows), else a fresh name from `name`.
    private mutating func node(
        _ op: String, _ name: String, _ inputs: [String], _ output: TensorID,
        _ attributes: [ONNXAttributeProto], last: Bool = true
    ) {
        let nodeName = unique(name)
        // The logits are [N, classes]: Gemm writes them; any other last op is flattened after.
        let value = (last && output == graphIR.logits && op == "Gemm") ? "logits" : nodeName
        valueOf[output.index] = value
        nodes.append(makeNode(op, nodeName, inputs, value, attributes))
    }

    /// A Conv node (dense, grouped or depthwise: `groups` says which).
    private mutating func conv(
        _ name: String, _ input: TensorID, _ output: TensorID, _ weight: ParameterID,
        _ bias: ParameterID?, kernel: (Int, Int), stride: Int, pad: Int, groups: Int
    ) {
        var inputs = [valueOf[input.index], store[weight].name]
        if let bias { inputs.append(store[bias].name) }
        node(
            "Conv", name, inputs, output,
            [
                ints("kernel_shape", [kernel.0, kernel.1]), ints("strides", [stride, stride]),
                ints("pads", [pad, pad, pad, pad]), ints("dilations", [1, 1]),
                int("group", groups),
            ])
    }

    /// An element-wise activation as the op table's form says: its own ONNX op where the
    /// opset has one, else the composition torch writes (SiLU as x · Sigmoid(x), GELU through
    /// Erf).
    private mutating func activation(_ l: ActivationLayer) {
        let from = valueOf[l.input.index]
        let form = l.kind.onnx
        let name = from + "." + l.kind.op.rawValue.lowercased()
        func attributes(_ fs: [ONNXFloatAttribute]) -> [ONNXAttributeProto] {
            fs.map { float($0.name, $0.value) }
        }
        if let op = form.op, opset >= form.since {
            node(
                op, name, [from] + form.scalarInputs.map { scalar($0) }, l.output,
                attributes(form.floats))
            return
        }
        var steps: [String] = []
        for (k, step) in form.composition.enumerated() {
            let inputs = step.operands.map { o -> String in
                switch o {
                case .x: return from
                case .step(let j): return steps[j]
                case .scalar(let v): return scalar(v)
                }
            }
            if k == form.composition.count - 1 {
                node(step.op, name, inputs, l.output, attributes(step.floats))
            } else {
                steps.append(
                    intermediate(
                        step.op, name + "_" + step.op.lowercased(), inputs, attributes(step.floats))
                )
            }
        }
    }

    /// Appends a node whose output is not a graph tensor; returns its value name.
    private mutating func intermediate(
        _ op: String, _ name: String, _ inputs: [String], _ attributes: [ONNXAttributeProto]
    ) -> String {
        let v = unique(name)
        nodes.append(makeNode(op, v, inputs, v, attributes))
        return v
    }

    /// The name of a scalar float initializer holding `value` (created on first use).
    private mutating func scalar(_ value: Float) -> String {
        if let name = constants[value] { return name }
        let name = unique("const_\(constants.count)")
        constants[value] = name
        return name
    }

    /// The name of a float vector initializer holding `values` (created on first use).
    private mutating func floatVector(_ values: [Float]) -> String {
        if let name = floatConstants[values] { return name }
        let name = unique("scales_\(floatConstants.count)")
        floatConstants[values] = name
        return name
    }

    /// The name of an int64 vector initializer holding `values` (created on first use).
    private mutating func intVector(_ values: [Int]) -> String {
        if let name = intConstants[values] { return name }
        let name = unique("shape_\(intConstants.count)")
        intConstants[values] = name
        return name
    }

    /// The in-place ReLU our graph fuses into BN/add, as its own node.
    private mutating func relu(_ tensor: TensorID, _ producer: String) {
        node("Relu", producer + ".relu", [valueOf[tensor.index]], tensor, [])
    }

    private func makeNode(
        _ op: String, _ name: String, _ inputs: [String], _ output: String,
        _ attributes: [ONNXAttributeProto]
    ) -> ONNXNodeProto {
        ONNXNodeProto.with {
            $0.opType = op
            $0.name = name
            $0.input = inputs
            $0.output = [output]
            $0.attribute = attributes
        }
    }

    /// `name`, or `name_2`, `name_3`, … if taken; node and value names must be unique.
    private mutating func unique(_ name: String) -> String {
        var candidate = name
        var k = 2
        while usedNames.contains(candidate) {
            candidate = "\(name)_\(k)"
            k += 1
        }
        usedNames.insert(candidate)
        return candidate
    }

    /// `layer1.0.` for `layer1.0.bn2` (the module path without its last component).
    private func blockPrefix(of value: String) -> String {
        guard let dot = value.lastIndex(of: ".") else { return "" }
        return String(value[...dot])
    }

    // MARK: - attributes, tensors, types

    private func ints(_ name: String, _ values: [Int]) -> ONNXAttributeProto {
        ONNXAttributeProto.with {
            $0.name = name
            $0.type = .ints
            $0.ints = values.map(Int64.init)
        }
    }

    private func int(_ name: String, _ value: Int) -> ONNXAttributeProto {
        ONNXAttributeProto.with {
            $0.name = name
            $0.type = .int
            $0.i = Int64(value)
        }
    }

    private func string(_ name: String, _ value: String) -> ONNXAttributeProto {
        ONNXAttributeProto.with {
            $0.name = name
            $0.type = .string
            $0.s = Data(value.utf8)
        }
    }

    private func float(_ name: String, _ value: Float) -> ONNXAttributeProto {
        ONNXAttributeProto.with {
            $0.name = name
            $0.type = .float
            $0.f = value
        }
    }

    /// A FLOAT initializer; raw_data is little-endian, as is our memory (see SafeTensors.swift).
    private func tensor(_ name: String, _ shape: [Int], _ values: UnsafePointer<Float>)
        -> ONNXTensorProto
    {
        ONNXTensorProto.with {
            $0.name = name
            $0.dims = shape.map(Int64.init)
            $0.dataType = Int32(ONNXTensorProto.DataType.float.rawValue)
            $0.rawData = Data(
                buffer: UnsafeBufferPointer(start: values, count: shape.reduce(1, *)))
        }
    }

    /// A float tensor value; `nil` dimensions are the symbolic batch size `N`.
    private func valueInfo(_ name: String, _ dims: [Int?]) -> ONNXValueInfoProto {
        ONNXValueInfoProto.with {
            $0.name = name
            $0.type.tensorType.elemType = Int32(ONNXTensorProto.DataType.float.rawValue)
            $0.type.tensorType.shape.dim = dims.map { d in
                ONNXTensorShapeProto.Dimension.with {
                    if let d { $0.dimValue = Int64(d) } else { $0.dimParam = "N" }
                }
            }
        }
    }
}
