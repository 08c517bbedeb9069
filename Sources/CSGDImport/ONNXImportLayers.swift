// The layers every CNN export has, translated onto spec nodes (see ONNXImport.swift for the
// conventions): Conv, BatchNormalization, Clip, Add, Concat, the pools, and the flatten /
// Reshape / Gemm / MatMul tail with the shape arithmetic around it.

import CSGDCore
import CSGDKernels
import CSGDModels
import CSGDONNX

extension Translator {
    // MARK: conv, batchnorm

    /// Square kernel, equal strides, symmetric pads, dilation 1, explicit padding.
    func geometry(_ n: ONNXNodeProto, _ i: Int, kernel: [Int]?, unpadded: Bool = false) throws
        -> (kernel: Int, stride: Int, pad: Int)
    {
        let ks = intsAttr(n, "kernel_shape") ?? kernel ?? []
        if let k = kernel, k != ks {
            throw nodeError(n, i, "kernel_shape \(ks) disagrees with the weight's \(k)")
        }
        guard ks.count == 2, ks[0] == ks[1], (1...GraphSpec.Limits.kernel).contains(ks[0]) else {
            throw nodeError(
                n, i,
                "kernel \(ks); csgd-dist imports square 2-D kernels up to "
                    + "\(GraphSpec.Limits.kernel)")
        }
        let st = intsAttr(n, "strides") ?? [1, 1]
        guard st.count == 2, st[0] == st[1], (1...GraphSpec.Limits.stride).contains(st[0]) else {
            throw nodeError(n, i, "strides \(st); csgd-dist imports equal strides")
        }
        let pads = unpadded ? [0, 0, 0, 0] : intsAttr(n, "pads") ?? [0, 0, 0, 0]
        guard pads.count == 4, Set(pads).count == 1, (0...GraphSpec.Limits.kernel).contains(pads[0])
        else {
            throw nodeError(n, i, "pads \(pads); csgd-dist imports the same padding on every side")
        }
        if let d = intsAttr(n, "dilations"), d.contains(where: { $0 != 1 }) {
            throw nodeError(n, i, "dilations \(d); csgd-dist imports dilation 1")
        }
        if let a = attr(n, "auto_pad") {
            let mode = String(decoding: a.s, as: UTF8.self)
            if !(mode == "NOTSET" || (mode == "VALID" && pads[0] == 0)) {
                throw nodeError(n, i, "auto_pad \(mode); csgd-dist imports explicit pads")
            }
        }
        return (ks[0], st[0], pads[0])
    }

    func outSide(_ n: ONNXNodeProto, _ i: Int, _ s: Int, _ g: (kernel: Int, stride: Int, pad: Int))
        throws -> Int
    {
        if s + 2 * g.pad < g.kernel {
            throw nodeError(n, i, "kernel \(g.kernel) is larger than the padded \(s)×\(s) input")
        }
        return (s + 2 * g.pad - g.kernel) / g.stride + 1
    }

    mutating func conv(_ n: ONNXNodeProto, _ i: Int) throws {
        if case .channelSequence(let t)? = try value(n, i, 0) {
            return try channelConv(n, i, sequence: t)
        }
        let (x0, flat) = try tensorInput(n, i)
        var x = x0
        if flat { throw nodeError(n, i, "input is 2-D, Conv needs [N, C, H, W]") }
        var s = shapes[x]
        guard let wc = try constantInput(n, i, 1, "weight") else {
            throw nodeError(n, i, "no weight input")
        }
        if wc.dims.count != 4 {
            throw nodeError(n, i, "weight has shape \(wc.dims); csgd-dist imports 2-D convolutions")
        }
        let groups = intAttr(n, "group", 1)
        let k = wc.dims[0]
        // Asymmetric pads (TF "same", PyTorch's padding="same" with even kernels): a zero-pad
        // node, then the conv unpadded.
        let autoPad = attr(n, "auto_pad").map { String(decoding: $0.s, as: UTF8.self) } ?? "NOTSET"
        if let p = intsAttr(n, "pads"), p.count == 4, Set(p).count > 1, autoPad == "NOTSET" {
            let (top, left, bottom, right) = (p[0], p[1], p[2], p[3])
            if p.contains(where: { $0 < 0 || $0 > GraphSpec.Limits.kernel })
                || top + bottom != left + right
            {
                throw nodeError(n, i, "pads \(p); csgd-dist pads the same total on both axes")
            }
            s = ActivationShape(c: s.c, h: s.h + top + bottom, w: s.w + left + right)
            x = append(NodeSpec(op: .pad, inputs: [x], pads: [top, left, bottom, right]), s)
        }
        let geo = try geometry(n, i, kernel: [wc.dims[2], wc.dims[3]], unpadded: x != x0)
        if groups < 1 || groups > s.c || s.c % groups != 0 || k % groups != 0 {
            throw nodeError(
                n, i, "group \(groups) does not divide \(s.c) input and \(k) output channels")
        }
        if !(1...Architecture.Limits.width).contains(k) {
            throw nodeError(
                n, i, "\(k) output channels are out of 1...\(Architecture.Limits.width)")
        }
        let wDims = [k, s.c / groups, geo.kernel, geo.kernel]
        let depthwise = groups > 1 && groups == s.c && k == s.c
        let name = moduleName(n, i, weight: n.input[1])
        guard let w = try floats(n, i, 1, "weight", dims: wDims) else {
            throw nodeError(n, i, "no weight input")
        }
        let b = try floats(n, i, 2, "bias", dims: [k])
        let side = try outSide(n, i, s.h, geo)
        let node =
            depthwise
            ? NodeSpec(
                op: .depthwiseConv, name: name, inputs: [x], kernel: geo.kernel,
                stride: geo.stride, pad: geo.pad, bias: b != nil ? true : nil)
            : NodeSpec(
                op: .conv, name: name, inputs: [x], outChannels: k, kernel: geo.kernel,
                stride: geo.stride, pad: geo.pad, groups: groups == 1 ? nil : groups,
                bias: b != nil ? true : nil)
        tensors[name + ".weight"] = w
        if let b { tensors[name + ".bias"] = b }
        define(n, i, .tensor(append(node, ActivationShape(c: k, h: side, w: side)), flat: false))
    }

    mutating func batchNorm(_ n: ONNXNodeProto, _ i: Int) throws {
        let (x, flat) = try tensorInput(n, i)
        let s = shapes[x]
        if flat && (s.h != 1 || s.w != 1) {
            throw nodeError(n, i, "input is a flattened C×H×W map; csgd-dist normalises channels")
        }
        if n.output.count > 1, n.output.dropFirst().contains(where: { !$0.isEmpty }) {
            throw nodeError(n, i, "training-mode BatchNormalization (running-stat outputs)")
        }
        if intAttr(n, "training_mode", 0) != 0 {
            throw nodeError(n, i, "training_mode 1; export the model in eval mode")
        }
        if intAttr(n, "spatial", 1) != 1 {
            throw nodeError(n, i, "spatial 0 (per-activation BatchNorm) is not supported")
        }
        let c = [s.c]
        let name = moduleName(n, i, weight: n.input.count > 1 ? n.input[1] : nil)
        guard let g = try floats(n, i, 1, "scale", dims: c),
            let beta = try floats(n, i, 2, "bias", dims: c),
            let mean = try floats(n, i, 3, "mean", dims: c),
            let v = try floats(n, i, 4, "var", dims: c)
        else { throw nodeError(n, i, "needs scale, bias, mean and var inputs") }
        let fileEps = floatAttr(n, "epsilon", 1e-5)
        if !(fileEps.isFinite && fileEps >= 0) {
            throw nodeError(n, i, "epsilon \(fileEps)")
        }
        // Kept per node (TF-ported weights use 1e-3): folding it into running_var would be
        // right for eval only, as training normalises by the batch variance + epsilon.
        if !(fileEps > 0 && fileEps <= 1) {
            throw nodeError(n, i, "epsilon \(fileEps) is not in (0, 1]")
        }
        if let bad = v.firstIndex(where: { !($0 + fileEps > 0) }) {
            throw nodeError(n, i, "var[\(bad)] + epsilon is \(v[bad] + fileEps), not positive")
        }
        tensors[name + ".weight"] = g
        tensors[name + ".bias"] = beta
        tensors[name + ".running_mean"] = mean
        tensors[name + ".running_var"] = v
        define(
            n, i,
            .tensor(
                append(
                    NodeSpec(
                        op: .batchNorm, name: name, inputs: [x],
                        eps: fileEps == eps ? nil : fileEps), s), flat: flat))
    }

    // MARK: activations, add, concat, pools

    func scalar(_ n: ONNXNodeProto, _ i: Int, _ k: Int, _ role: String) throws -> Float? {
        guard let c = try constantInput(n, i, k, role) else { return nil }
        guard let f = c.floats, f.count == 1, c.dims.count <= 1 else {
            throw nodeError(n, i, "\(role) '\(n.input[k])' is not a float scalar")
        }
        return f[0]
    }

    mutating func clip(_ n: ONNXNodeProto, _ i: Int) throws {
        let (x, flat) = try tensorInput(n, i)
        var lo = -Float.infinity
        var hi = Float.infinity
        if opset < 11 {
            lo = floatAttr(n, "min", lo)
            hi = floatAttr(n, "max", hi)
        } else {
            lo = try scalar(n, i, 1, "min") ?? lo
            hi = try scalar(n, i, 2, "max") ?? hi
        }
        let op: NodeSpec.Op
        switch (lo, hi) {
        case (0, 6): op = .relu6
        case (0, .infinity): op = .relu
        default:
            throw nodeError(
                n, i, "Clip(\(lo), \(hi)); csgd-dist imports Clip(0, 6) (ReLU6) and Clip(0, ∞)")
        }
        define(n, i, .tensor(append(NodeSpec(op: op, inputs: [x]), shapes[x]), flat: flat))
    }

    mutating func add(_ n: ONNXNodeProto, _ i: Int) throws {
        guard let a = try value(n, i, 0), let b = try value(n, i, 1) else {
            throw nodeError(n, i, "needs two inputs")
        }
        if case .geluStep = a { return try geluStep(n, i) }
        if case .geluStep = b { return try geluStep(n, i) }
        switch (a, b) {
        case (.tensor(let ta, let fa), .tensor(let tb, let fb)):
            if shapes[ta] != shapes[tb] || fa != fb {
                throw nodeError(
                    n, i, "adds shapes \(describe(shapes[ta], fa)) and \(describe(shapes[tb], fb))")
            }
            define(
                n, i,
                .tensor(append(NodeSpec(op: .add, inputs: [ta, tb]), shapes[ta]), flat: fa))
        case (.channelsLast(let ta), .channelsLast(let tb)):
            throw nodeError(
                n, i,
                "adds two channels-last views (\(describe(shapes[ta], false)), "
                    + "\(describe(shapes[tb], false))); csgd-dist imports the residual add after "
                    + "the permute back to [N, C, H, W]")
        case (.tensor(let t, _), .constant), (.constant, .tensor(let t, _)),
            (.channelsLast(let t), .constant), (.constant, .channelsLast(let t)):
            // MatMul + Add: the bias of the linear node that MatMul made.
            let k = { if case .constant = a { return 0 } else { return 1 } }()
            let src = n.input[1 - k]
            let x = k == 0 ? b : a
            // A [K] constant broadcasts over the LAST axis: channels only of [N, K] and of a
            // channels-last view, never of [N, K, H, W] (it would add along W).
            let onChannels = {
                if case .tensor(_, false) = x { return false } else { return true }
            }()
            guard onChannels, let li = biaslessMatMul[t], uses[src, default: 0] == 1 else {
                throw nodeError(
                    n, i,
                    "adds a constant to a computed tensor; csgd-dist imports a constant "
                        + "Add only as the bias of a MatMul")
            }
            let out = nodes[li].outChannels!
            guard let c = try constantInput(n, i, k, "bias"),
                c.dims == [out] || c.dims == [1, out],
                let f = c.floats
            else {
                throw nodeError(n, i, "the MatMul bias must be float32 [\(out)]")
            }
            if let bad = f.firstIndex(where: { !$0.isFinite }) {
                throw nodeError(n, i, "bias holds \(f[bad]) at \(bad)")
            }
            nodes[li].bias = true
            tensors[nodes[li].name + ".bias"] = f
            biaslessMatMul[t] = nil
            if case .channelsLast = x {
                define(n, i, .channelsLast(t))
            } else {
                define(n, i, .tensor(t, flat: true))
            }
        default:
            throw nodeError(n, i, "adds two constants or shapes; csgd-dist imports image tensors")
        }
    }

    func describe(_ s: ActivationShape, _ flat: Bool) -> String {
        flat ? "[N, \(s.count)]" : "[N, \(s.c), \(s.h), \(s.w)]"
    }

    mutating func concat(_ n: ONNXNodeProto, _ i: Int) throws {
        let axis = intAttr(n, "axis", 0)
        let vs = try n.input.indices.map { k -> Value in
            guard let v = try value(n, i, k) else { throw nodeError(n, i, "empty input \(k)") }
            return v
        }
        if vs.isEmpty { throw nodeError(n, i, "no inputs") }
        if case .tensor = vs[0] {
            if axis != 1 && axis != -3 {
                throw nodeError(n, i, "axis \(axis); csgd-dist concatenates channels (axis 1)")
            }
            if vs.count > GraphSpec.Limits.concatInputs {
                throw nodeError(n, i, "\(vs.count) inputs exceed \(GraphSpec.Limits.concatInputs)")
            }
            var ts: [Int] = []
            var c = 0
            for (k, v) in vs.enumerated() {
                guard case .tensor(let t, false) = v else {
                    throw nodeError(n, i, "input '\(n.input[k])' is not an [N, C, H, W] tensor")
                }
                if shapes[t].h != shapes[ts.first ?? t].h || shapes[t].w != shapes[ts.first ?? t].w
                {
                    throw nodeError(n, i, "inputs have different H×W")
                }
                c += shapes[t].c
                ts.append(t)
            }
            if c > Architecture.Limits.width * 16 {
                throw nodeError(n, i, "\(c) channels exceed the limit")
            }
            let s = shapes[ts[0]]
            define(
                n, i,
                .tensor(
                    append(
                        NodeSpec(op: .concat, inputs: ts), ActivationShape(c: c, h: s.h, w: s.w)),
                    flat: false))
            return
        }
        // Shape arithmetic: 1-D int vectors along axis 0.
        if axis != 0 && axis != -1 { throw nodeError(n, i, "axis \(axis) on a shape vector") }
        var dims: [ShapeDim] = []
        for (k, v) in vs.enumerated() {
            switch v {
            case .shape(let d): dims += d
            case .constant(let c) where c.ints != nil && c.dims.count == 1:
                dims += c.ints!.map { .known(Int(clamping: $0)) }
            default: throw nodeError(n, i, "input '\(n.input[k])' is not a shape vector")
            }
        }
        define(n, i, .shape(dims))
    }

    mutating func pool(_ n: ONNXNodeProto, _ i: Int) throws {
        let (x, flat) = try tensorInput(n, i)
        if flat { throw nodeError(n, i, "input is 2-D, pooling needs [N, C, H, W]") }
        if n.output.count > 1, !n.output[1].isEmpty {
            throw nodeError(n, i, "the Indices output is not supported")
        }
        if intAttr(n, "storage_order", 0) != 0 {
            throw nodeError(n, i, "storage_order 1 is not supported")
        }
        let geo = try geometry(n, i, kernel: nil)
        let s = shapes[x]
        if geo.pad > geo.kernel / 2 {
            throw nodeError(n, i, "pad \(geo.pad) is more than half the kernel \(geo.kernel)")
        }
        // PyTorch's ceil_mode (a last, partial window) where it changes the output size.
        let ceil = intAttr(n, "ceil_mode", 0) != 0
        let side: Int
        do {
            side = try PoolShape(
                n: 1, c: s.c, h: s.h, w: s.w, kernel: geo.kernel, stride: geo.stride, pad: geo.pad,
                ceilMode: ceil
            ).p
        } catch let e as CSGDError {
            throw nodeError(n, i, e.message)
        }
        let node: NodeSpec
        if n.opType == "MaxPool" {
            node = NodeSpec(
                op: .maxPool, inputs: [x], kernel: geo.kernel, stride: geo.stride, pad: geo.pad,
                ceilMode: ceil ? true : nil)
        } else {
            node = NodeSpec(
                op: .avgPool, inputs: [x], kernel: geo.kernel, stride: geo.stride, pad: geo.pad,
                countIncludePad: intAttr(n, "count_include_pad", 0) != 0,
                ceilMode: ceil ? true : nil)
        }
        define(n, i, .tensor(append(node, ActivationShape(c: s.c, h: side, w: side)), flat: false))
    }

    // MARK: reshape, shapes, linear

    mutating func shapeArithmetic(_ n: ONNXNodeProto, _ i: Int) throws {
        switch n.opType {
        case "Shape":
            let (t, flat) = try tensorInput(n, i)
            let s = shapes[t]
            var dims: [ShapeDim] =
                flat ? [.batch, .known(s.count)] : [.batch, .known(s.c), .known(s.h), .known(s.w)]
            let r = dims.count
            func clampAxis(_ a: Int) -> Int { max(0, min(r, a < 0 ? a + r : a)) }
            let start = clampAxis(intAttr(n, "start", 0))
            let end = clampAxis(intAttr(n, "end", r))
            dims = start < end ? Array(dims[start..<end]) : []
            define(n, i, .shape(dims))
        case "Gather":
            if case .batchOneVector(let t)? = try value(n, i, 0) {
                return try batchOneVectorGather(n, i, vector: t)
            }
            guard case .shape(let dims)? = try value(n, i, 0) else {
                throw nodeError(
                    n, i, "csgd-dist evaluates Gather only on a tensor's shape (x.size(k))")
            }
            if intAttr(n, "axis", 0) != 0 { throw nodeError(n, i, "axis must be 0") }
            guard let idx = try constantInput(n, i, 1, "indices"), let ints = idx.ints,
                idx.dims.count <= 1
            else { throw nodeError(n, i, "indices must be a constant int scalar or vector") }
            let picked = try ints.map { v -> ShapeDim in
                let j = Int(clamping: v) < 0 ? Int(clamping: v) + dims.count : Int(clamping: v)
                if j < 0 || j >= dims.count { throw nodeError(n, i, "index \(v) out of range") }
                return dims[j]
            }
            define(n, i, idx.dims.isEmpty ? .shapeScalar(picked[0]) : .shape(picked))
        default:  // Unsqueeze of a scalar to a 1-element vector
            let axes: [Int]
            if opset >= 13 {
                guard let a = try constantInput(n, i, 1, "axes"), let ints = a.ints else {
                    throw nodeError(n, i, "axes must be a constant")
                }
                axes = ints.map { Int(clamping: $0) }
            } else {
                axes = intsAttr(n, "axes") ?? []
            }
            if axes != [0] && axes != [-1] {
                throw nodeError(n, i, "csgd-dist evaluates Unsqueeze only of a shape scalar")
            }
            switch try value(n, i, 0) {
            case .shapeScalar(let d)?: define(n, i, .shape([d]))
            default:
                throw nodeError(n, i, "csgd-dist evaluates Unsqueeze only of a shape scalar")
            }
        }
    }

    /// The target shape at input 1 of a Reshape or Expand: a constant, or `x.size()`
    /// arithmetic evaluated at import.
    func targetShape(_ n: ONNXNodeProto, _ i: Int) throws -> [ShapeDim] {
        switch try value(n, i, 1) {
        case .shape(let d)?: return d
        case .constant(let c)? where c.ints != nil && c.dims.count == 1:
            return c.ints!.map { .known(Int(clamping: $0)) }
        default:
            throw nodeError(n, i, "the target shape is neither a constant nor x.size() arithmetic")
        }
    }

    mutating func reshape(_ n: ONNXNodeProto, _ i: Int) throws {
        if try shuffleReshape(n, i) { return }
        let dims = try targetShape(n, i)
        if try channelSequenceReshape(n, i, target: dims) { return }
        if try batchOneVectorReshape(n, i, target: dims) { return }
        let (t, _) = try tensorInput(n, i)
        let features = shapes[t].count
        let allowZero = intAttr(n, "allowzero", 0) != 0
        // [N, -1], [N, F], [-1, F], [0, -1], [0, F] and, from a fixed-batch export, [B, -1].
        var ok = false
        if dims.count == 2 {
            let second: Bool
            switch dims[1] {
            case .known(-1): second = true
            case .known(let f): second = f == features
            case .batch: second = false
            }
            switch dims[0] {
            case .batch: ok = second
            case .known(0): ok = second && !allowZero
            case .known(-1): ok = dims[1] == .known(features)
            case .known(let b): ok = b > 0 && second
            }
        }
        if !ok {
            throw nodeError(
                n, i,
                "target shape \(dims.map(describe)); csgd-dist imports Reshape to "
                    + "[N, -1] (a flatten of [N, \(shapes[t].c), \(shapes[t].h), \(shapes[t].w)])")
        }
        define(n, i, .tensor(t, flat: true))
    }

    func describe(_ d: ShapeDim) -> String {
        switch d {
        case .batch: return "N"
        case .known(let v): return "\(v)"
        }
    }

    mutating func linear(_ n: ONNXNodeProto, _ i: Int) throws {
        let (x, flat) = try tensorInput(n, i)
        let s = shapes[x]
        if !flat {
            throw nodeError(
                n, i, "input \(describe(s, false)) is not 2-D (flatten it first, as PyTorch does)")
        }
        guard let wc = try constantInput(n, i, 1, "weight"), wc.dims.count == 2, let wf = wc.floats
        else { throw nodeError(n, i, "the weight must be a float32 2-D initializer") }
        let gemm = n.opType == "Gemm"
        if gemm {
            if intAttr(n, "transA", 0) != 0 { throw nodeError(n, i, "transA 1 is not supported") }
            if floatAttr(n, "alpha", 1) != 1 || floatAttr(n, "beta", 1) != 1 {
                throw nodeError(n, i, "alpha/beta other than 1 are not supported")
            }
        }
        // Stored as [out, in] (PyTorch's nn.Linear); MatMul and Gemm transB 0 hold [in, out].
        let transposed = gemm && intAttr(n, "transB", 0) != 0
        let (out, inF) = transposed ? (wc.dims[0], wc.dims[1]) : (wc.dims[1], wc.dims[0])
        if inF != s.count {
            throw nodeError(n, i, "weight \(wc.dims) does not take the \(s.count) input features")
        }
        if !(1...Architecture.Limits.numClasses).contains(out) {
            throw nodeError(n, i, "\(out) outputs are out of 1...\(Architecture.Limits.numClasses)")
        }
        if let bad = wf.firstIndex(where: { !$0.isFinite }) {
            throw nodeError(n, i, "weight holds \(wf[bad]) at \(bad)")
        }
        var w = wf
        if !transposed {
            for o in 0..<out { for j in 0..<inF { w[o * inF + j] = wf[j * out + o] } }
        }
        var bias: [Float]?
        if gemm, let c = try constantInput(n, i, 2, "bias") {
            guard c.dims == [out] || c.dims == [1, out], let f = c.floats else {
                throw nodeError(n, i, "bias has shape \(c.dims); csgd-dist imports a [\(out)] bias")
            }
            if let bad = f.firstIndex(where: { !$0.isFinite }) {
                throw nodeError(n, i, "bias holds \(f[bad]) at \(bad)")
            }
            bias = f
        }
        let name = moduleName(n, i, weight: n.input[1])
        tensors[name + ".weight"] = w
        if let bias { tensors[name + ".bias"] = bias }
        let t = append(
            NodeSpec(
                op: .linear, name: name, inputs: [x], outChannels: out, bias: bias != nil),
            ActivationShape(c: out, h: 1, w: 1))
        if !gemm { biaslessMatMul[t] = nodes.count - 1 }
        define(n, i, .tensor(t, flat: true))
    }
}
