// ONNX import: translates a model as `torch.onnx.export` writes it (legacy TorchScript
// exporter, opsets 9–21) into a GraphSpec plus weights. Every op maps onto a spec node
// exactly or is refused with one line naming the node, the op and where it sits: nothing is
// approximated.
//
// An .onnx file is untrusted input: its size is bounded before it is read, SwiftProtobuf
// throws on a truncated or malformed message, and every dim, attribute and tensor size is
// checked against the graph (and GraphSpec/Architecture limits) before anything is allocated
// from it.
//
// What the exporter writes besides the compute ops, and how it is read:
// - weights as initializers, deduplicated: equal tensors (e.g. fresh BN running stats) are
//   one initializer read through `Identity` nodes; `Constant` nodes carry Clip bounds and
//   shapes. Both become constants here.
// - eval-mode BatchNorm folded into the conv (weight and a conv bias) unless exported with
//   `do_constant_folding=False`: the folded form imports as conv-with-bias, or, with
//   `unfoldBatchNorm`, as conv + an identity-initialised BatchNorm.
// - `x.view(x.size(0), -1)` as Shape → Gather → Unsqueeze → Concat → Reshape: a tiny shape
//   evaluator follows that chain (the batch dimension stays symbolic).
// - Flatten, Identity and Dropout are aliases, not nodes; a Relu right after a BatchNorm or an
//   Add that only it reads becomes that node's fused ReLU.

import CSGDCore
import CSGDKernels
import CSGDModels
import CSGDONNX
import Foundation
import SwiftProtobuf

/// How to import a model.
public struct ImportOptions: Sendable {
    /// The model's name in the file (default: the file name without extension).
    public var name: String?
    /// Square input side, when the ONNX input's H and W are symbolic (or to override them).
    public var imageSize: Int?
    /// The input normalisation the model was trained with.
    public var preprocessing: Preprocessing?
    /// Insert an identity-initialised BatchNorm after every biased conv that has none.
    public var unfoldBatchNorm = false

    /// Options with everything defaulted.
    public init(
        name: String? = nil, imageSize: Int? = nil, preprocessing: Preprocessing? = nil,
        unfoldBatchNorm: Bool = false
    ) {
        self.name = name
        self.imageSize = imageSize
        self.preprocessing = preprocessing
        self.unfoldBatchNorm = unfoldBatchNorm
    }
}

/// Reads ONNX models into csgd-dist graphs.
public enum ONNXImport {
    /// Largest .onnx file read (protobuf's own 2 GiB message limit).
    public static let maxFileBytes = Int(Int32.max)
    /// Default-domain opsets accepted.
    public static let supportedOpsets = 9...21
    /// Ops translated, for messages and the README: the op table's ONNX names, then the
    /// views and no-ops read as aliases.
    public static let supportedOps: [String] = {
        var seen = Set<String>()
        let names =
            NodeSpec.Op.allCases.flatMap { $0.traits.onnx }
            + ["Flatten", "Squeeze", "Unsqueeze", "Expand", "Identity", "Dropout"]
        return names.filter { seen.insert($0).inserted }
    }()
    /// Largest number of ONNX nodes (Constants and shape arithmetic included).
    static let maxNodes = 100_000

    /// Reads and translates the ONNX file at `path`.
    /// - Throws: a one-line `CSGDError` naming `path` (and the node, when one is at fault).
    public static func read(path: String, options: ImportOptions = .init()) throws
        -> ImportedModel
    {
        let bytes = try readWholeFile(path, limit: maxFileBytes)
        let model: ONNXModelProto
        do {
            model = try ONNXModelProto(serializedBytes: bytes)
        } catch {
            throw CSGDError(
                "\(path): not a readable ONNX model (the protobuf is truncated or malformed: "
                    + "\(error))")
        }
        var opts = options
        if opts.name == nil {
            opts.name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        }
        return try translate(model, source: path, options: opts, modelPath: path)
    }

    /// Translates a parsed ONNX model; `source` names it in messages, `modelPath` (the file it
    /// was read from) locates its external data.
    public static func translate(
        _ model: ONNXModelProto, source: String, options: ImportOptions = .init(),
        modelPath: String? = nil
    ) throws -> ImportedModel {
        var t = try Translator(
            model: model, source: source, options: options,
            external: ExternalData(modelPath: modelPath, source: source))
        return try t.run()
    }
}

/// A dimension of a shape computed inside the graph (`x.size(0)`).
enum ShapeDim: Equatable {
    case batch
    case known(Int)
}

/// A constant tensor (initializer, Constant node, or Identity of one).
struct ConstantTensor {
    var dims: [Int]
    var floats: [Float]?
    var ints: [Int64]?
    var count: Int { dims.reduce(1, *) }
}

/// What an ONNX value name stands for.
enum Value {
    /// A spec tensor (`flat`: viewed as [N, C·H·W]).
    case tensor(Int, flat: Bool)
    case constant(ConstantTensor)
    /// A 1-D int64 shape vector computed from a tensor's shape.
    case shape([ShapeDim])
    /// A 0-D element of one.
    case shapeScalar(ShapeDim)
    /// A spec tensor viewed as [N, groups, C / groups, H, W] (the first step of a shuffle).
    case groupedView(Int, groups: Int)
    /// That view with axes 1 and 2 swapped: [N, C / groups, groups, H, W].
    case groupedTransposed(Int, groups: Int)
    /// A C×1×1 spec tensor viewed as the sequence [N, 1, C] an ECA gate's Conv1d slides over.
    case channelSequence(Int)
    /// A C×1×1 spec tensor expanded to `shape` (`gate.expand_as(x)`): only a Mul with a
    /// tensor of that shape reads it, as a channel gate.
    case expandedGate(Int, to: ActivationShape)
    /// A step of GELU's erf form, x · 0.5 · (1 + erf(x / √2)), as torch and opsets < 20
    /// write it: 1 = x / √2, 2 = erf(·), 3 = 1 + ·, 4 = x · (·); the last Mul by 0.5 makes
    /// the node.
    case geluStep(Int, flat: Bool, step: Int)
    /// A C×H×W spec tensor viewed as [N, H, W, C] (`x.permute(0, 2, 3, 1)`, ConvNeXt's
    /// LayerNorm and Linear layers): see ONNXImportChannelsLast.swift.
    case channelsLast(Int)
    /// A spec tensor of a batch-1 file flattened to one vector (`Reshape(x, [-1])`), read only
    /// by the Gather that views it back.
    case batchOneVector(Int)
}

struct Translator {
    let model: ONNXModelProto
    let source: String
    let options: ImportOptions
    let graph: ONNXGraphProto
    var opset = 0
    var values: [String: Value] = [:]
    /// Which node (display name) produced a value, for "after '…'" in messages.
    var producer: [String: String] = [:]
    /// How many node inputs and graph outputs read each value name.
    var uses: [String: Int] = [:]
    var nodes: [NodeSpec] = []
    var shapes: [ActivationShape] = []
    var tensors: [String: [Float]] = [:]
    var usedNames = Set<String>()
    var notes: [String] = []
    /// Linear nodes from a MatMul that an Add may still give a bias: tensor → node index.
    var biaslessMatMul: [Int: Int] = [:]
    /// The initializer a transposed constant came from (`weight.T`), for module names.
    var constantOrigin: [String: String] = [:]
    /// The graph input's batch dimension when the file fixes it (the dynamo exporter's 1).
    var fixedBatch: Int?
    let eps = BatchNormConfig().eps
    /// Initializers stored outside the .onnx file.
    var external: ExternalData

    init(
        model: ONNXModelProto, source: String, options: ImportOptions, external: ExternalData
    ) throws {
        self.model = model
        self.source = source
        self.options = options
        self.external = external
        graph = model.graph
    }

    func fail(_ why: String) -> CSGDError { CSGDError("\(source): \(why)") }

    // MARK: - setup

    mutating func run() throws -> ImportedModel {
        if !model.hasGraph { throw fail("no graph in the ONNX model") }
        var found = false
        for o in model.opsetImport where o.domain.isEmpty || o.domain == "ai.onnx" {
            opset = Int(clamping: o.version)
            found = true
        }
        if !found && !model.opsetImport.isEmpty {
            throw fail("no default-domain (ai.onnx) opset import")
        }
        if !found { opset = 1 }
        if !ONNXImport.supportedOpsets.contains(opset) {
            throw fail(
                "opset \(opset) is not supported (csgd-dist imports opsets "
                    + "\(ONNXImport.supportedOpsets.lowerBound)–\(ONNXImport.supportedOpsets.upperBound))"
            )
        }
        if graph.node.count > ONNXImport.maxNodes {
            throw fail("\(graph.node.count) nodes exceed the limit of \(ONNXImport.maxNodes)")
        }
        for t in graph.initializer {
            if t.name.isEmpty { throw fail("an initializer has no name") }
            if values[t.name] != nil { throw fail("initializer '\(t.name)' is defined twice") }
            values[t.name] = .constant(try constant(t, what: "initializer '\(t.name)'"))
        }
        let inputs = graph.input.filter { values[$0.name] == nil }
        if inputs.count != 1 {
            throw fail(
                "the graph has \(inputs.count) inputs besides its initializers "
                    + "(\(inputs.map { "'\($0.name)'" }.joined(separator: ", "))); "
                    + "csgd-dist imports one image input")
        }
        let input = inputs[0]
        shapes = [try inputShape(input)]
        if case .tensorType(let tt) = input.type.value, let d = tt.shape.dim.first,
            case .dimValue(let b) = d.value
        {
            fixedBatch = Int(clamping: b)
        }
        values[input.name] = .tensor(0, flat: false)
        producer[input.name] = "the input '\(input.name)'"
        if graph.output.count != 1 {
            throw fail(
                "the graph has \(graph.output.count) outputs; csgd-dist imports one (logits)")
        }
        for n in graph.node { for i in n.input where !i.isEmpty { uses[i, default: 0] += 1 } }
        uses[graph.output[0].name, default: 0] += 1

        for (i, n) in try topologicalOrder() {
            try translate(n, index: i)
        }
        let outName = graph.output[0].name
        guard let out = values[outName] else {
            throw fail("the graph output '\(outName)' is not produced by any node")
        }
        guard case .tensor(let t, _) = out, t > 0 else {
            throw fail("the graph output '\(outName)' is not computed from the image")
        }
        var spec = removeDeadNodes(GraphSpec(nodes: nodes, output: t))
        spec = fuseReLUs(spec)
        if options.unfoldBatchNorm { spec = unfoldBatchNorm(spec) }
        let arch: Architecture
        do {
            arch = try Architecture.from(
                spec: spec, model: options.name ?? "imported", inputChannels: shapes[0].c,
                imageSize: shapes[0].h, preprocessing: options.preprocessing)
            try arch.validate()
        } catch let e as CSGDError {
            throw fail(e.message)
        }
        return ImportedModel(architecture: arch, tensors: tensors, notes: notes)
    }

    /// [N, C, H, W] float; C static; H = W static or given by `--image-size`.
    func inputShape(_ v: ONNXValueInfoProto) throws -> ActivationShape {
        let at = "input '\(v.name)'"
        guard case .tensorType(let tt) = v.type.value else {
            throw fail("\(at) is not a tensor")
        }
        if tt.elemType != 1 {
            throw fail("\(at) has element type \(tt.elemType); csgd-dist imports float32 models")
        }
        let dims = tt.shape.dim
        if dims.count != 4 {
            throw fail("\(at) has \(dims.count) dimensions; csgd-dist imports [N, C, H, W] images")
        }
        func known(_ d: ONNXTensorShapeProto.Dimension) -> Int? {
            if case .dimValue(let v) = d.value, v > 0, v <= Int64(Architecture.Limits.imageSize) {
                return Int(v)
            }
            return nil
        }
        guard let c = known(dims[1]), c <= Architecture.Limits.inputChannels else {
            throw fail(
                "\(at): the channel dimension must be a number in 1...\(Architecture.Limits.inputChannels)"
            )
        }
        let size: Int
        if let s = options.imageSize {
            size = s
        } else if let h = known(dims[2]), let w = known(dims[3]) {
            if h != w {
                throw fail("\(at) is \(h)×\(w); csgd-dist imports square images")
            }
            size = h
        } else {
            throw fail("\(at) has a symbolic height or width; pass --image-size")
        }
        if !(8...Architecture.Limits.imageSize).contains(size) {
            throw fail("image size \(size) is out of 8...\(Architecture.Limits.imageSize)")
        }
        return ActivationShape(c: c, h: size, w: size)
    }

    /// Nodes in an order where every input is defined first (Kahn's algorithm, stable in file
    /// order); unknown inputs and cycles are refused.
    func topologicalOrder() throws -> [(Int, ONNXNodeProto)] {
        let ns = graph.node
        var producerIndex: [String: Int] = [:]
        for (i, n) in ns.enumerated() {
            for o in n.output where !o.isEmpty {
                if values[o] != nil || producerIndex[o] != nil {
                    throw fail(
                        "node '\(display(n, i))' (\(n.opType)) writes '\(o)', which is already "
                            + "defined")
                }
                producerIndex[o] = i
            }
        }
        var pending = [Int](repeating: 0, count: ns.count)
        var readers: [Int: [Int]] = [:]
        for (i, n) in ns.enumerated() {
            for name in n.input where !name.isEmpty {
                if let p = producerIndex[name] {
                    pending[i] += 1
                    readers[p, default: []].append(i)
                } else if values[name] == nil {
                    throw fail(
                        "node '\(display(n, i))' (\(n.opType)) reads '\(name)', which no node, "
                            + "initializer or graph input defines")
                }
            }
        }
        // Ready nodes sorted descending, so popLast takes the earliest in file order.
        var ready = ns.indices.filter { pending[$0] == 0 }.sorted(by: >)
        var order: [(Int, ONNXNodeProto)] = []
        while let i = ready.popLast() {
            order.append((i, ns[i]))
            for r in readers[i] ?? [] {
                pending[r] -= 1
                if pending[r] == 0 {
                    ready.append(r)
                    ready.sort(by: >)
                }
            }
        }
        if order.count != ns.count {
            let stuck = ns.indices.first { pending[$0] > 0 }!
            throw fail(
                "node '\(display(ns[stuck], stuck))' (\(ns[stuck].opType)) is on a cycle: the "
                    + "graph's nodes cannot be ordered")
        }
        return order
    }

    func display(_ n: ONNXNodeProto, _ i: Int) -> String {
        n.name.isEmpty ? "#\(i)" : n.name
    }

    // MARK: - constants

    /// Reads a float32 or int64/int32 tensor, checking its dims against its data first.
    mutating func constant(_ t: ONNXTensorProto, what: String) throws -> ConstantTensor {
        let isExternal = t.dataLocation == .external || !t.externalData.isEmpty
        if isExternal && (!t.rawData.isEmpty || !t.floatData.isEmpty || !t.int64Data.isEmpty) {
            throw fail("\(what) is stored both in the file and in external data")
        }
        if t.dims.count > 8 { throw fail("\(what) has \(t.dims.count) dimensions") }
        var count = 1
        var dims: [Int] = []
        for d in t.dims {
            if d < 0 || d > Int64(Architecture.Limits.parameters) {
                throw fail("\(what) has dimension \(d)")
            }
            let (p, o) = count.multipliedReportingOverflow(by: Int(d))
            if o || p > Architecture.Limits.parameters {
                throw fail("\(what) has dims \(t.dims), too many values")
            }
            count = p
            dims.append(Int(d))
        }
        let raw = isExternal ? Data(try external.bytes(of: t, what: what)) : t.rawData
        switch t.dataType {
        case 1:
            if !raw.isEmpty && !t.floatData.isEmpty {
                throw fail("\(what) has both raw_data and float_data")
            }
            if !raw.isEmpty {
                if raw.count != count * 4 {
                    throw fail(
                        "\(what) has dims \(dims) (\(count) floats) but \(raw.count) bytes of data")
                }
                var f = [Float](repeating: 0, count: count)
                f.withUnsafeMutableBytes { dst in _ = raw.copyBytes(to: dst) }
                for i in f.indices {
                    f[i] = Float(bitPattern: UInt32(littleEndian: f[i].bitPattern))
                }
                return ConstantTensor(dims: dims, floats: f)
            }
            if t.floatData.count != count {
                throw fail(
                    "\(what) has dims \(dims) (\(count) floats) but \(t.floatData.count) values")
            }
            return ConstantTensor(dims: dims, floats: t.floatData)
        case 6, 7, 9:  // int32, int64, bool (Dropout's training_mode)
            let width = t.dataType == 7 ? 8 : t.dataType == 6 ? 4 : 1
            let typed = t.dataType == 7 ? t.int64Data.count : t.int32Data.count
            if !raw.isEmpty && typed > 0 {
                throw fail("\(what) has both raw_data and typed data")
            }
            if count > 1 << 20 { throw fail("\(what) is an integer tensor of \(count) values") }
            if !raw.isEmpty {
                if raw.count != count * width {
                    throw fail(
                        "\(what) has dims \(dims) (\(count) values) but \(raw.count) bytes of data")
                }
                let bytes = [UInt8](raw)
                var out: [Int64] = []
                out.reserveCapacity(count)
                for i in 0..<count {
                    var v: UInt64 = 0
                    for b in 0..<width { v |= UInt64(bytes[i * width + b]) << (8 * UInt64(b)) }
                    out.append(
                        width == 8
                            ? Int64(bitPattern: v)
                            : width == 4 ? Int64(Int32(bitPattern: UInt32(v))) : Int64(v))
                }
                return ConstantTensor(dims: dims, ints: out)
            }
            if typed != count {
                throw fail("\(what) has dims \(dims) (\(count) values) but \(typed) values")
            }
            return ConstantTensor(
                dims: dims,
                ints: t.dataType == 7 ? t.int64Data : t.int32Data.map { Int64($0) })
        default:
            throw fail(
                "\(what) has data type \(t.dataType); csgd-dist imports float32 weights "
                    + "(and int64 shapes)")
        }
    }

    // MARK: - nodes

    /// The error for node `n`: "node 'X' (Op) after 'Y': why".
    func nodeError(_ n: ONNXNodeProto, _ i: Int, _ why: String) -> CSGDError {
        let first = n.input.first { !$0.isEmpty && producer[$0] != nil }
        let place = first.map { " after '\(producer[$0]!)'" } ?? ""
        return fail("node '\(display(n, i))' (\(n.opType))\(place): \(why)")
    }

    func attr(_ n: ONNXNodeProto, _ name: String) -> ONNXAttributeProto? {
        n.attribute.first { $0.name == name }
    }

    func intAttr(_ n: ONNXNodeProto, _ name: String, _ def: Int) -> Int {
        attr(n, name).map { Int(clamping: $0.i) } ?? def
    }

    func intsAttr(_ n: ONNXNodeProto, _ name: String) -> [Int]? {
        attr(n, name).map { $0.ints.map { Int(clamping: $0) } }
    }

    func floatAttr(_ n: ONNXNodeProto, _ name: String, _ def: Float) -> Float {
        attr(n, name).map { $0.f } ?? def
    }

    func value(_ n: ONNXNodeProto, _ i: Int, _ k: Int) throws -> Value? {
        guard k < n.input.count, !n.input[k].isEmpty else { return nil }
        guard let v = values[n.input[k]] else {
            throw nodeError(n, i, "input '\(n.input[k])' is not defined")
        }
        return v
    }

    func tensorInput(_ n: ONNXNodeProto, _ i: Int, _ k: Int = 0) throws -> (Int, Bool) {
        guard let v = try value(n, i, k) else { throw nodeError(n, i, "input \(k) is missing") }
        switch v {
        case .tensor(let t, let flat): return (t, flat)
        case .channelSequence:
            throw nodeError(
                n, i,
                "input '\(n.input[k])' is an ECA gate's [N, 1, C] view; csgd-dist reads it only "
                    + "with a Conv1d, element-wise ops and a Reshape back to [N, C, 1, 1]")
        case .expandedGate:
            throw nodeError(
                n, i,
                "input '\(n.input[k])' is a gate expanded over H×W; csgd-dist reads it only in a "
                    + "Mul with the gated tensor")
        case .channelsLast:
            throw nodeError(
                n, i,
                "input '\(n.input[k])' is a channels-last [N, H, W, C] view; csgd-dist reads it "
                    + "only with LayerNorm, MatMul (+ bias), element-wise ops, a per-channel "
                    + "scale and the permute back")
        case .batchOneVector:
            throw nodeError(
                n, i,
                "input '\(n.input[k])' is a feature map flattened with its batch; csgd-dist "
                    + "reads it only with the Gather that views it back")
        default:
            throw nodeError(
                n, i, "input '\(n.input[k])' is a constant, not computed from the image")
        }
    }

    func constantInput(_ n: ONNXNodeProto, _ i: Int, _ k: Int, _ role: String) throws
        -> ConstantTensor?
    {
        guard let v = try value(n, i, k) else { return nil }
        guard case .constant(let c) = v else {
            throw nodeError(
                n, i, "\(role) '\(n.input[k])' is computed, not an initializer or Constant")
        }
        return c
    }

    func floats(_ n: ONNXNodeProto, _ i: Int, _ k: Int, _ role: String, dims: [Int]) throws
        -> [Float]?
    {
        guard let c = try constantInput(n, i, k, role) else { return nil }
        guard let f = c.floats else {
            throw nodeError(n, i, "\(role) '\(n.input[k])' is not float32")
        }
        if c.dims != dims {
            throw nodeError(
                n, i, "\(role) '\(n.input[k])' has shape \(c.dims), the graph needs \(dims)")
        }
        if let bad = f.firstIndex(where: { !$0.isFinite }) {
            throw nodeError(n, i, "\(role) '\(n.input[k])' holds \(f[bad]) at \(bad)")
        }
        return f
    }

    mutating func define(_ n: ONNXNodeProto, _ i: Int, _ v: Value) {
        if let o = n.output.first, !o.isEmpty {
            values[o] = v
            producer[o] = display(n, i)
        }
    }

    mutating func append(_ node: NodeSpec, _ shape: ActivationShape) -> Int {
        nodes.append(node)
        shapes.append(shape)
        return nodes.count
    }

    /// A module name for a node with parameters: the PyTorch module path when the file
    /// shows it (a `…weight` value name, or torch's `/a/a.0/Conv` node names), else the node
    /// name; sanitised to the contract's charset and made unique.
    mutating func moduleName(_ n: ONNXNodeProto, _ i: Int, weight: String?) -> String {
        var base = ""
        if let w = weight, w.hasSuffix(".weight"), w.count > 7 {
            base = String(w.dropLast(7))
        } else if n.name.hasPrefix("/") {
            base = scopePath(parts: Array(n.name.split(separator: "/").map(String.init).dropLast()))
        } else {
            base = n.name
        }
        var name = String(
            base.unicodeScalars.map { c -> Character in
                let ok =
                    (c.isASCII && (c.properties.isAlphabetic || c.properties.numericType != nil))
                    || "._-/:".unicodeScalars.contains(c)
                return ok ? Character(c) : "_"
            }
        ).trimmingCharacters(in: CharacterSet(charactersIn: "._-/:"))
        if name.count > 200 { name = String(name.prefix(200)) }
        if name.isEmpty { name = "\(n.opType.lowercased())\(i)" }
        var unique = name
        var k = 1
        while usedNames.contains(unique) {
            unique = "\(name)_\(k)"
            k += 1
        }
        usedNames.insert(unique)
        return unique
    }

    /// torch's scope components → the dotted module path: a component that extends the
    /// previous one (`features`, `features.0`) names a child of it, else a nested attribute.
    func scopePath(parts: [String]) -> String {
        var path = ""
        var last = ""
        for p in parts {
            if !last.isEmpty, p.hasPrefix(last + ".") {
                path += String(p.dropFirst(last.count))
            } else {
                path += path.isEmpty ? p : "." + p
            }
            last = p
        }
        return path
    }

    mutating func translate(_ n: ONNXNodeProto, index i: Int) throws {
        if !(n.domain.isEmpty || n.domain == "ai.onnx") {
            throw unsupported(n, i, domain: n.domain)
        }
        var seen = Set<String>()
        for a in n.attribute where !seen.insert(a.name).inserted {
            throw nodeError(n, i, "has attribute '\(a.name)' twice")
        }
        switch n.opType {
        // `where` binds to the last pattern only, so one pattern with the list in the guard.
        case let op where Translator.foldedOps.contains(op) && isKnownArithmetic(n):
            try fold(n, i)
        case "Conv": try conv(n, i)
        case "BatchNormalization": try batchNorm(n, i)
        case let op where NodeSpec.Op.elementwise(onnx: op) != nil: try activation(n, i)
        case "Mul": try mul(n, i)
        case "Div", "Erf": try geluStep(n, i)
        case "ReduceMean", "ReduceMax", "GlobalMaxPool": try globalPool(n, i)
        case "Slice": try slice(n, i)
        case "Split": try split(n, i)
        case "Transpose": try transpose(n, i)
        case let op where ["Squeeze", "Unsqueeze"].contains(op) && isImageValue(n, i):
            try squeeze(n, i)
        case "Pad": try pad(n, i)
        case "Resize", "Upsample": try upsample(n, i)
        case "Clip": try clip(n, i)
        case "Add": try add(n, i)
        case "Concat": try concat(n, i)
        case "MaxPool", "AveragePool": try pool(n, i)
        case "GlobalAveragePool":
            let (t, flat) = try tensorInput(n, i)
            if flat { throw nodeError(n, i, "input is 2-D, GlobalAveragePool needs [N, C, H, W]") }
            let s = shapes[t]
            define(
                n, i,
                .tensor(
                    append(
                        NodeSpec(op: .globalAvgPool, inputs: [t]),
                        ActivationShape(c: s.c, h: 1, w: 1)), flat: false))
        case "Flatten":
            let (t, flat) = try tensorInput(n, i)
            let axis = intAttr(n, "axis", 1)
            if !(axis == 1 || (!flat && axis == -3) || (flat && axis == -1)) {
                throw nodeError(n, i, "axis \(axis); csgd-dist imports Flatten to [N, C·H·W]")
            }
            define(n, i, .tensor(t, flat: true))
        case "Reshape": try reshape(n, i)
        case "Expand": try expand(n, i)
        case "Gemm", "MatMul":
            if let t = try channelsLastInput(n, i) {
                try channelsLastLinear(n, i, view: t)
            } else {
                try linear(n, i)
            }
        case "LayerNormalization": try layerNorm(n, i)
        case "Identity":
            guard let v = try value(n, i, 0) else { throw nodeError(n, i, "no input") }
            define(n, i, v)
        case "Dropout":
            if n.output.count > 1, !n.output[1].isEmpty, uses[n.output[1], default: 0] > 0 {
                throw nodeError(n, i, "its mask output is used (training-mode dropout)")
            }
            if let m = try value(n, i, 2) {
                guard case .constant(let c) = m, (c.ints ?? []).allSatisfy({ $0 == 0 }),
                    (c.floats ?? []).allSatisfy({ $0 == 0 })
                else { throw nodeError(n, i, "training_mode is not a constant false") }
            }
            let (t, flat) = try tensorInput(n, i)
            define(n, i, .tensor(t, flat: flat))
        case "Constant": try constantNode(n, i)
        case "Shape", "Gather", "Unsqueeze": try shapeArithmetic(n, i)
        default:
            throw unsupported(n, i, domain: nil)
        }
    }

    func unsupported(_ n: ONNXNodeProto, _ i: Int, domain: String?) -> CSGDError {
        nodeError(
            n, i,
            "unsupported op\(domain.map { " of domain '\($0)'" } ?? ""); csgd-dist imports "
                + ONNXImport.supportedOps.joined(separator: ", "))
    }

    mutating func constantNode(_ n: ONNXNodeProto, _ i: Int) throws {
        guard let a = n.attribute.first, n.attribute.count == 1 else {
            throw nodeError(n, i, "needs exactly one value attribute")
        }
        let c: ConstantTensor
        switch a.name {
        case "value": c = try constant(a.t, what: "node '\(display(n, i))' (Constant)")
        case "value_float": c = ConstantTensor(dims: [], floats: [a.f])
        case "value_floats": c = ConstantTensor(dims: [a.floats.count], floats: a.floats)
        case "value_int": c = ConstantTensor(dims: [], ints: [a.i])
        case "value_ints": c = ConstantTensor(dims: [a.ints.count], ints: a.ints)
        default: throw nodeError(n, i, "attribute '\(a.name)' is not supported")
        }
        define(n, i, .constant(c))
    }

    // MARK: - spec rewrites

    /// A Relu right after a BatchNorm or Add that only it reads becomes that node's fused ReLU.
    func fuseReLUs(_ spec: GraphSpec) -> GraphSpec {
        var readers = [Int](repeating: 0, count: spec.nodes.count + 1)
        for n in spec.nodes { for t in n.inputs { readers[t] += 1 } }
        var map = Array(0...spec.nodes.count)
        var out: [NodeSpec] = []
        for (i, n) in spec.nodes.enumerated() {
            var node = n
            node.inputs = n.inputs.map { map[$0] }
            let t = node.inputs.first ?? 0
            if node.op == .relu, t > 0, readers[n.inputs[0]] == 1, n.inputs[0] != spec.output,
                [.batchNorm, .add].contains(out[t - 1].op),
                out[t - 1].relu != true
            {
                out[t - 1].relu = true
                map[i + 1] = t
                continue
            }
            out.append(node)
            map[i + 1] = out.count
        }
        return GraphSpec(nodes: out, output: map[spec.output])
    }

    /// After every conv with a bias that no BatchNorm reads: BN(γ 1, β bias, mean 0, var v)
    /// with v + eps == 1 in float, so the BN computes x·1 + bias: the conv's bias add (the
    /// kernels add a bias and a BN shift at different points, so equal to float rounding).
    mutating func unfoldBatchNorm(_ spec: GraphSpec) -> GraphSpec {
        var readers = [[Int]](repeating: [], count: spec.nodes.count + 1)
        for (i, n) in spec.nodes.enumerated() { for t in n.inputs { readers[t].append(i) } }
        var v = 1 - eps
        while v + eps < 1 { v = v.nextUp }
        while v + eps > 1 { v = v.nextDown }
        var map = Array(0...spec.nodes.count)
        var out: [NodeSpec] = []
        var inserted = 0
        for (i, n) in spec.nodes.enumerated() {
            var node = n
            node.inputs = n.inputs.map { map[$0] }
            out.append(node)
            map[i + 1] = out.count
            let hasBN = readers[i + 1].count == 1 && spec.nodes[readers[i + 1][0]].op == .batchNorm
            guard [.conv, .depthwiseConv].contains(n.op), n.bias == true, !hasBN,
                let bias = tensors.removeValue(forKey: n.name + ".bias")
            else { continue }
            out[out.count - 1].bias = nil
            var name = n.name + ".bn"
            var k = 1
            while usedNames.contains(name) {
                name = n.name + ".bn_\(k)"
                k += 1
            }
            usedNames.insert(name)
            out.append(NodeSpec(op: .batchNorm, name: name, inputs: [out.count]))
            map[i + 1] = out.count
            tensors[name + ".weight"] = [Float](repeating: 1, count: bias.count)
            tensors[name + ".bias"] = bias
            tensors[name + ".running_mean"] = [Float](repeating: 0, count: bias.count)
            tensors[name + ".running_var"] = [Float](repeating: v, count: bias.count)
            inserted += 1
        }
        notes.append(
            "--unfold-bn: inserted \(inserted) identity-initialised BatchNorm layers "
                + "(γ 1, β = the conv bias, mean 0, var \(v))")
        return GraphSpec(nodes: out, output: map[spec.output])
    }
}
