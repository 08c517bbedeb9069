// The ops of modern CNNs, translated onto spec nodes exactly (see ONNXImport.swift for the
// conventions): element-wise activations and their fused forms (x · Sigmoid(x) is SiLU,
// x · HardSigmoid(x) is HardSwish), the squeeze-excitation gate (a Mul of a feature map by a
// per-channel [N, C, 1, 1] tensor), global pooling written as ReduceMean / ReduceMax over
// (2, 3), channel Slice and Split, ShuffleNet's shuffle (Reshape → Transpose → Reshape), and
// the Squeeze / Unsqueeze views around 1×1 maps.

import CSGDCore
import CSGDModels
import CSGDONNX

extension Translator {
    /// Whether node input 0 is computed from the image (not shape arithmetic).
    func isImageValue(_ n: ONNXNodeProto, _ i: Int) -> Bool {
        guard let name = n.input.first, let v = values[name] else { return false }
        if case .tensor = v { return true }
        return false
    }

    /// A tensor name for output `k` of node `n`.
    mutating func define(_ n: ONNXNodeProto, _ i: Int, output k: Int, _ v: Value) {
        guard k < n.output.count, !n.output[k].isEmpty else { return }
        values[n.output[k]] = v
        producer[n.output[k]] = display(n, i)
    }

    /// An integer vector input (opset ≥ 10/13 style) or attribute (older opsets).
    func ints(_ n: ONNXNodeProto, _ i: Int, input k: Int, attribute: String, fromInputs: Bool)
        throws -> [Int]?
    {
        if !fromInputs { return intsAttr(n, attribute) }
        // Computed from the graph's own shape (`x.chunk` in a traced export): known values.
        switch try value(n, i, k) {
        case .shape(let d)?:
            return try d.map {
                guard case .known(let v) = $0 else {
                    throw nodeError(n, i, "\(attribute) depends on the batch size")
                }
                return v
            }
        case .shapeScalar(.known(let v))?: return [v]
        default: break
        }
        guard let c = try constantInput(n, i, k, attribute) else { return nil }
        guard let v = c.ints, c.dims.count <= 1 else {
            throw nodeError(n, i, "\(attribute) must be a constant integer vector")
        }
        return v.map { Int(clamping: $0) }
    }

    // MARK: activations

    /// An element-wise op computed by one ONNX op, read through its form in the op table:
    /// float attributes (ONNX's defaults where absent) into the node's fields, required string
    /// attributes checked.
    mutating func activation(_ n: ONNXNodeProto, _ i: Int) throws {
        // Element-wise ops keep an ECA gate's [N, 1, C] view (its Sigmoid) and a channels-last
        // view (ConvNeXt's GELU).
        var sequence = false
        if case .channelSequence? = try value(n, i, 0) { sequence = true }
        let last = try channelsLastInput(n, i)
        let (t, flat) =
            try sequence
            ? (channelSequenceTensor(n, i), false) : last.map { ($0, false) } ?? tensorInput(n, i)
        let op = NodeSpec.Op.elementwise(onnx: n.opType)!
        let form = op.activation(alpha: nil, beta: nil)!.onnx
        for required in form.requiredStrings {
            guard let a = attr(n, required.name) else { continue }
            let v = String(decoding: a.s, as: UTF8.self)
            if v != required.value {
                throw nodeError(
                    n, i,
                    "\(required.name) '\(v.prefix(40))'; csgd-dist imports only '\(required.value)'"
                )
            }
        }
        var node = NodeSpec(op: op, inputs: [t])
        for f in form.floats {
            let v = floatAttr(n, f.name, f.onnxDefault)
            switch f.name {
            case "alpha": node.alpha = v
            case "beta": node.beta = v
            default: preconditionFailure("op table: \(op) reads no attribute '\(f.name)'")
            }
        }
        for v in [node.alpha, node.beta] {
            if let v, !(v.isFinite && abs(v) <= 1e6) {
                throw nodeError(n, i, "attribute value \(v) is not a finite number within ±1e6")
            }
        }
        let y = append(node, shapes[t])
        define(
            n, i,
            sequence ? .channelSequence(y) : last != nil ? .channelsLast(y) : .tensor(y, flat: flat)
        )
    }

    /// The tensor under an ECA gate's [N, 1, C] view at input 0.
    func channelSequenceTensor(_ n: ONNXNodeProto, _ i: Int) throws -> Int {
        guard case .channelSequence(let t)? = try value(n, i, 0) else {
            throw nodeError(n, i, "input 0 is not an ECA gate's [N, 1, C] view")
        }
        return t
    }

    /// The float scalar constant at input `k`, if that input is one.
    func floatScalar(_ n: ONNXNodeProto, _ k: Int) -> Float? {
        guard k < n.input.count, case .constant(let c)? = values[n.input[k]], c.count == 1,
            let f = c.floats
        else { return nil }
        return f[0]
    }

    /// Div, Erf and the Add / Mul steps of GELU's erf form (see `Value.geluStep`); each step
    /// must read the previous one and the constants must be GELU's, else the node is refused.
    mutating func geluStep(_ n: ONNXNodeProto, _ i: Int) throws {
        func refuse() -> CSGDError {
            nodeError(
                n, i,
                "csgd-dist imports \(n.opType) only inside GELU's erf form "
                    + "x·0.5·(1 + erf(x/√2))")
        }
        let a = try value(n, i, 0)
        switch (n.opType, a) {
        case ("Div", .tensor(let x, let flat)?):
            guard let c = floatScalar(n, 1), abs(c - Float(2).squareRoot()) < 1e-5 else {
                throw refuse()
            }
            define(n, i, .geluStep(x, flat: flat, step: 1))
        case ("Erf", .geluStep(let x, let flat, 1)?):
            define(n, i, .geluStep(x, flat: flat, step: 2))
        case ("Add", _):
            for k in 0..<2 {
                if case .geluStep(let x, let flat, 2)? = try value(n, i, k),
                    floatScalar(n, 1 - k) == 1
                {
                    define(n, i, .geluStep(x, flat: flat, step: 3))
                    return
                }
            }
            throw refuse()
        case ("Mul", _):
            let b = try value(n, i, 1)
            for (p, q, k) in [(a, b, 1), (b, a, 0)] {
                if case .geluStep(let x, let flat, 3)? = p, case .tensor(x, _)? = q {
                    define(n, i, .geluStep(x, flat: flat, step: 4))
                    return
                }
                if case .geluStep(let x, let flat, 4)? = p, floatScalar(n, k) == 0.5 {
                    define(
                        n, i,
                        .tensor(append(NodeSpec(op: .gelu, inputs: [x]), shapes[x]), flat: flat))
                    return
                }
            }
            throw refuse()
        default:
            throw refuse()
        }
    }

    /// Mul: x · Sigmoid(x) (SiLU), x · HardSigmoid(x) (HardSwish), or a feature map times a
    /// per-channel gate (squeeze-excitation). Nothing else is a Mul csgd-dist can prune
    /// through, so anything else is refused.
    mutating func mul(_ n: ONNXNodeProto, _ i: Int) throws {
        guard let a = try value(n, i, 0), let b = try value(n, i, 1) else {
            throw nodeError(n, i, "needs two inputs")
        }
        let isGeluStep = [a, b].contains {
            if case .geluStep = $0 { return true } else { return false }
        }
        if isGeluStep { return try geluStep(n, i) }
        // `x * gate.expand_as(x)`: the expanded gate is the gate, for x of the shape it took.
        func unexpanded(_ v: Value, against other: Value) -> Value {
            if case .expandedGate(let g, let shape) = v, case .tensor(let x, false) = other,
                shapes[x] == shape
            {
                return .tensor(g, flat: false)
            }
            return v
        }
        let (a2, b2) = (unexpanded(a, against: b), unexpanded(b, against: a))
        if try channelConstantScale(n, i) { return }
        guard case .tensor(let ta, let fa) = a2, case .tensor(let tb, let fb) = b2 else {
            throw nodeError(
                n, i,
                "multiplies by a constant; csgd-dist imports Mul as x·Sigmoid(x), "
                    + "x·HardSigmoid(x) or a channel gate")
        }
        for (x, g) in [(ta, tb), (tb, ta)] where g > 0 && nodes[g - 1].inputs == [x] {
            let act = nodes[g - 1]
            if act.op == .sigmoid {
                define(n, i, .tensor(append(NodeSpec(op: .silu, inputs: [x]), shapes[x]), flat: fa))
                return
            }
            if act.op == .hardSigmoid, abs((act.alpha ?? 0) - 1 / 6) < 1e-6,
                abs((act.beta ?? 0) - 0.5) < 1e-6
            {
                define(
                    n, i,
                    .tensor(append(NodeSpec(op: .hardSwish, inputs: [x]), shapes[x]), flat: fa))
                return
            }
        }
        let (sa, sb) = (shapes[ta], shapes[tb])
        func isGate(_ g: ActivationShape, of x: ActivationShape) -> Bool {
            g.c == x.c && g.h == 1 && g.w == 1
        }
        let gated: (x: Int, gate: Int, flat: Bool)?
        if !fa && isGate(sb, of: sa) {
            gated = (ta, tb, fa)
        } else if !fb && isGate(sa, of: sb) {
            gated = (tb, ta, fb)
        } else if fa && fb && sa == sb && sa.h == 1 && sa.w == 1 {
            gated = (ta, tb, true)  // both flattened [N, C]
        } else {
            gated = nil
        }
        guard let gated else {
            throw nodeError(
                n, i,
                "multiplies \(describe(sa, fa)) by \(describe(sb, fb)); csgd-dist imports Mul as "
                    + "x·Sigmoid(x), x·HardSigmoid(x) or x [N, C, H, W] times a gate [N, C, 1, 1]")
        }
        define(
            n, i,
            .tensor(
                append(
                    NodeSpec(op: .channelScale, inputs: [gated.x, gated.gate]), shapes[gated.x]),
                flat: gated.flat))
    }

    // MARK: global pooling

    /// ReduceMean / ReduceMax over (2, 3) and GlobalMaxPool: global pooling to C×1×1
    /// (`keepdims` 0 gives the flattened [N, C]).
    mutating func globalPool(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        if flat { throw nodeError(n, i, "input is 2-D; csgd-dist pools [N, C, H, W] maps") }
        let max = n.opType != "ReduceMean"
        var keep = true
        if n.opType != "GlobalMaxPool" {
            // Opset 18 moved the axes of ReduceMean/ReduceMax from an attribute to an input.
            let axes = try ints(n, i, input: 1, attribute: "axes", fromInputs: opset >= 18)
            let normal = (axes ?? []).map { $0 < 0 ? $0 + 4 : $0 }.sorted()
            if normal != [2, 3] {
                throw nodeError(
                    n, i,
                    "axes \(axes.map { "\($0)" } ?? "all"); csgd-dist imports a reduction over "
                        + "(2, 3), a global pool")
            }
            keep = intAttr(n, "keepdims", 1) != 0
        }
        let s = shapes[t]
        let node = NodeSpec(op: max ? .globalMaxPool : .globalAvgPool, inputs: [t])
        define(n, i, .tensor(append(node, ActivationShape(c: s.c, h: 1, w: 1)), flat: !keep))
    }

    // MARK: views

    /// Squeeze of a [N, C, 1, 1] map to [N, C], Unsqueeze back: views, not nodes.
    mutating func squeeze(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        let s = shapes[t]
        let axes = try ints(n, i, input: 1, attribute: "axes", fromInputs: opset >= 13)
        if s.h != 1 || s.w != 1 {
            throw nodeError(
                n, i,
                "\(n.opType) of \(describe(s, flat)); csgd-dist imports it only around 1×1 maps")
        }
        if n.opType == "Squeeze" {
            let normal = (axes ?? [2, 3]).map { $0 < 0 ? $0 + (flat ? 2 : 4) : $0 }.sorted()
            if flat || normal != [2, 3] {
                throw nodeError(
                    n, i, "axes \(axes ?? []); csgd-dist squeezes [N, C, 1, 1] to [N, C]")
            }
            define(n, i, .tensor(t, flat: true))
        } else {
            let normal = (axes ?? []).map { $0 < 0 ? $0 + 4 : $0 }.sorted()
            if !flat || normal != [2, 3] {
                throw nodeError(
                    n, i, "axes \(axes ?? []); csgd-dist unsqueezes [N, C] to [N, C, 1, 1]")
            }
            define(n, i, .tensor(t, flat: false))
        }
    }

    // MARK: channel slices

    /// Slice along channels: `x[:, a:b]` (step 1).
    mutating func slice(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        if flat { throw nodeError(n, i, "slices a flattened tensor; csgd-dist slices channels") }
        let fromInputs = opset >= 10
        guard let starts = try ints(n, i, input: 1, attribute: "starts", fromInputs: fromInputs),
            let ends = try ints(n, i, input: 2, attribute: "ends", fromInputs: fromInputs)
        else { throw nodeError(n, i, "needs constant starts and ends") }
        let axes = try ints(n, i, input: 3, attribute: "axes", fromInputs: fromInputs)
        let steps =
            fromInputs ? try ints(n, i, input: 4, attribute: "steps", fromInputs: true) : nil
        let axis = (axes ?? [0]).map { $0 < 0 ? $0 + 4 : $0 }
        if axis != [1] || starts.count != 1 || ends.count != 1
            || !(steps ?? [1]).allSatisfy({ $0 == 1 })
        {
            throw nodeError(
                n, i,
                "slices axes \(axes ?? [0]) with steps \(steps ?? [1]); csgd-dist imports a "
                    + "channel slice x[:, a:b]")
        }
        let c = shapes[t].c
        func clamp(_ v: Int) -> Int { Swift.max(0, Swift.min(c, v < 0 ? v + c : v)) }
        let (lo, hi) = (clamp(starts[0]), clamp(ends[0]))
        if hi <= lo { throw nodeError(n, i, "channels \(lo)..<\(hi) are empty") }
        define(n, i, try channelRange(t, lo, hi))
    }

    /// Split along channels into several slices.
    mutating func split(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        let axis = intAttr(n, "axis", 0)
        if flat || !(axis == 1 || axis == -3) {
            throw nodeError(n, i, "axis \(axis); csgd-dist imports a split of channels")
        }
        let c = shapes[t].c
        let k = n.output.count
        var sizes = try ints(n, i, input: 1, attribute: "split", fromInputs: opset >= 13)
        if sizes == nil {
            if k < 1 || k > c { throw nodeError(n, i, "\(k) outputs for \(c) channels") }
            // Equal parts; opset 18's num_outputs lets the last be smaller.
            let each = (c + k - 1) / k
            sizes = (0..<k).map { Swift.min(each, c - $0 * each) }
        }
        guard let sizes, sizes.count == k, sizes.allSatisfy({ $0 > 0 }), sizes.reduce(0, +) == c
        else {
            throw nodeError(
                n, i, "split sizes \(sizes ?? []) do not cover the \(c) channels in \(k) parts")
        }
        var lo = 0
        for (j, size) in sizes.enumerated() {
            define(n, i, output: j, try channelRange(t, lo, lo + size))
            lo += size
        }
    }

    /// Channels `lo ..< hi` of tensor `t`: the tensor itself when that is all of it.
    mutating func channelRange(_ t: Int, _ lo: Int, _ hi: Int) throws -> Value {
        let s = shapes[t]
        if lo == 0 && hi == s.c { return .tensor(t, flat: false) }
        return .tensor(
            append(
                NodeSpec(op: .channelSlice, inputs: [t], outChannels: hi - lo, start: lo),
                ActivationShape(c: hi - lo, h: s.h, w: s.w)), flat: false)
    }

    // MARK: channel shuffle

    /// The two Reshapes of a channel shuffle: [N, C, H, W] → [N, g, C/g, H, W], and the
    /// transposed view back to [N, C, H, W]. Returns false for any other Reshape.
    mutating func shuffleReshape(_ n: ONNXNodeProto, _ i: Int) throws -> Bool {
        guard let v = try value(n, i, 0) else { return false }
        let dims: [ShapeDim]
        switch try value(n, i, 1) {
        case .shape(let d)?: dims = d
        case .constant(let c)? where c.ints != nil && c.dims.count == 1:
            dims = c.ints!.map { .known(Int(clamping: $0)) }
        default: return false
        }
        switch v {
        case .tensor(let t, false) where dims.count == 5:
            let s = shapes[t]
            guard let d = resolve(dims, features: s.count), d[2] * d[1] == s.c, d[3] == s.h,
                d[4] == s.w, d[1] > 1
            else {
                throw nodeError(
                    n, i,
                    "target shape \(dims.map(describe)); csgd-dist imports a 5-D view only as "
                        + "a channel shuffle's [N, groups, C/groups, H, W]")
            }
            define(n, i, .groupedView(t, groups: d[1]))
            return true
        case .groupedTransposed(let t, let g):
            let s = shapes[t]
            guard dims.count == 4, let d = resolve(dims, features: s.count), d[1] == s.c,
                d[2] == s.h, d[3] == s.w
            else {
                throw nodeError(
                    n, i,
                    "target shape \(dims.map(describe)); a channel shuffle ends with a view to "
                        + "[N, \(s.c), \(s.h), \(s.w)]")
            }
            define(
                n, i,
                .tensor(
                    append(NodeSpec(op: .channelShuffle, inputs: [t], groups: g), s), flat: false))
            return true
        case .groupedView:
            throw nodeError(n, i, "reshapes a grouped view; csgd-dist imports channel shuffles")
        default:
            return false
        }
    }

    /// The per-image dims of a Reshape target whose first dim is the batch (N, 0, -1 or a
    /// fixed batch size), with one -1 resolved; nil if it does not hold `features` values.
    func resolve(_ dims: [ShapeDim], features: Int) -> [Int]? {
        var rest: [Int] = []
        for d in dims.dropFirst() {
            guard case .known(let v) = d, v == -1 || v > 0 else { return nil }
            rest.append(v)
        }
        let known = rest.filter { $0 > 0 }.reduce(1, *)
        let unknown = rest.filter { $0 == -1 }.count
        if unknown > 1 || known == 0 { return nil }
        if unknown == 1 {
            if features % known != 0 { return nil }
            rest = rest.map { $0 == -1 ? features / known : $0 }
        }
        if rest.reduce(1, *) != features { return nil }
        switch dims[0] {
        case .batch: break
        case .known(let b) where b == 0 || b > 0: break
        case .known(-1) where unknown == 0: break
        default: return nil
        }
        return [0] + rest
    }

    /// Ops evaluated when all their inputs are known (shape arithmetic of traced exports:
    /// `x.chunk`, a shuffle's `C // g`, TF "same" padding's `ceil(ih / s)`).
    static let foldedOps: Set<String> = [
        "Add", "Sub", "Mul", "Div", "Ceil", "Floor", "Cast", "Clip", "Neg", "Max", "Min",
        "Shape", "Gather", "ConstantOfShape", "Reshape", "Slice", "Transpose", "Concat",
        "Unsqueeze", "Squeeze",
    ]

    /// A small tensor whose values are known at import: shape values and constants.
    struct Known {
        var dims: [Int]
        var values: [Double]
        var isInt: Bool
    }

    /// The known value of `v`, if it has one (no batch dimension, at most 64 values).
    func known(_ v: Value?) -> Known? {
        switch v {
        case .constant(let c)? where c.count <= 64:
            if let f = c.floats {
                return Known(dims: c.dims, values: f.map(Double.init), isInt: false)
            }
            if let i = c.ints {
                return Known(dims: c.dims, values: i.map(Double.init), isInt: true)
            }
            return nil
        case .shape(let d)?:
            var out: [Double] = []
            for x in d {
                guard case .known(let v) = x else { return nil }
                out.append(Double(v))
            }
            return Known(dims: [d.count], values: out, isInt: true)
        case .shapeScalar(.known(let x))?: return Known(dims: [], values: [Double(x)], isInt: true)
        default: return nil
        }
    }

    /// `v` as an Int, saturated to Int64's range (torch writes INT64_MAX as "to the end").
    static func saturating(_ v: Double) -> Int {
        v >= 9.2e18 ? Int(Int64.max) : v <= -9.2e18 ? Int(Int64.min) : Int(v)
    }

    /// Whether every non-empty input of `n` is known.
    func isKnownArithmetic(_ n: ONNXNodeProto) -> Bool {
        let inputs = n.input.filter { !$0.isEmpty }
        return !inputs.isEmpty && inputs.allSatisfy { known(values[$0]) != nil }
    }

    /// Evaluates an element-wise op on known values (numpy broadcasting of a scalar or equal
    /// shapes) into a constant.
    mutating func fold(_ n: ONNXNodeProto, _ i: Int) throws {
        let args = try n.input.indices.map { k -> Known? in
            n.input[k].isEmpty ? nil : known(try value(n, i, k))
        }
        guard let a = args.first ?? nil else { throw nodeError(n, i, "no input") }
        func binary(_ f: (Double, Double) -> Double) throws -> Known {
            guard args.count == 2, let b = args[1] else {
                throw nodeError(n, i, "needs two inputs")
            }
            let count = max(a.values.count, b.values.count)
            if !(a.values.count == count || a.values.count == 1)
                || !(b.values.count == count || b.values.count == 1)
            {
                throw nodeError(n, i, "shapes \(a.dims) and \(b.dims) do not broadcast")
            }
            let v = (0..<count).map {
                f(a.values[a.values.count == 1 ? 0 : $0], b.values[b.values.count == 1 ? 0 : $0])
            }
            return Known(
                dims: a.values.count >= b.values.count ? a.dims : b.dims, values: v,
                isInt: a.isInt && b.isInt)
        }
        var r: Known
        switch n.opType {
        case "Shape", "Gather", "ConstantOfShape", "Reshape", "Slice", "Transpose", "Concat",
            "Unsqueeze", "Squeeze":
            r = try foldLayout(n, i, args)
        case "Add": r = try binary(+)
        case "Sub": r = try binary(-)
        case "Mul": r = try binary(*)
        case "Max": r = try binary { max($0, $1) }
        case "Min": r = try binary { min($0, $1) }
        case "Div":
            let ints = a.isInt && (args.count > 1 ? args[1]?.isInt ?? false : false)
            // ONNX integer division truncates toward zero.
            r = try binary { b, c in c == 0 ? .nan : (ints ? (b / c).rounded(.towardZero) : b / c) }
        case "Ceil":
            r = Known(dims: a.dims, values: a.values.map { $0.rounded(.up) }, isInt: a.isInt)
        case "Floor":
            r = Known(dims: a.dims, values: a.values.map { $0.rounded(.down) }, isInt: a.isInt)
        case "Neg": r = Known(dims: a.dims, values: a.values.map { -$0 }, isInt: a.isInt)
        case "Clip":
            let lo = args.count > 1 ? args[1]?.values.first ?? -.infinity : -.infinity
            let hi = args.count > 2 ? args[2]?.values.first ?? .infinity : .infinity
            r = Known(dims: a.dims, values: a.values.map { min(max($0, lo), hi) }, isInt: a.isInt)
        default:  // Cast
            let to = intAttr(n, "to", 0)
            switch to {
            case 1, 11: r = Known(dims: a.dims, values: a.values, isInt: false)
            case 6, 7:
                r = Known(
                    dims: a.dims, values: a.values.map { $0.rounded(.towardZero) }, isInt: true)
            default: throw nodeError(n, i, "Cast to type \(to) of a shape value")
            }
        }
        if let bad = r.values.first(where: { !$0.isFinite }) {
            throw nodeError(n, i, "shape arithmetic gives \(bad)")
        }
        define(
            n, i,
            .constant(
                ConstantTensor(
                    dims: r.dims, floats: r.isInt ? nil : r.values.map { Float($0) },
                    ints: r.isInt ? r.values.map { Int64(Self.saturating($0)) } : nil)))
    }

    /// The layout ops of traced shape arithmetic on known values (torch's lowering of
    /// `F.pad` with computed pads: Shape, ConstantOfShape, Reshape, a reversing Slice,
    /// Transpose, Concat).
    func foldLayout(_ n: ONNXNodeProto, _ i: Int, _ args: [Known?]) throws -> Known {
        let a = args[0]!
        func arg(_ k: Int) throws -> Known {
            guard k < args.count, let v = args[k] else {
                throw nodeError(n, i, "input \(k) must be a known constant")
            }
            return v
        }
        func count(_ dims: [Int]) -> Int { dims.reduce(1, *) }
        switch n.opType {
        case "Shape":
            return Known(dims: [a.dims.count], values: a.dims.map(Double.init), isInt: true)
        case "ConstantOfShape":
            let dims = a.values.map(Self.saturating)
            if dims.count > 8 || dims.contains(where: { $0 < 0 || $0 > 64 }) || count(dims) > 64 {
                throw nodeError(n, i, "shape \(dims) is not a small constant")
            }
            let fill =
                attr(n, "value").flatMap { t -> Double? in
                    if !t.t.int64Data.isEmpty { return Double(t.t.int64Data[0]) }
                    if !t.t.floatData.isEmpty { return Double(t.t.floatData[0]) }
                    if t.t.rawData.count == 8 {
                        return Double(
                            t.t.rawData.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })
                    }
                    if t.t.rawData.count == 4 {
                        return Double(
                            t.t.rawData.withUnsafeBytes { $0.loadUnaligned(as: Float.self) })
                    }
                    return nil
                } ?? 0
            let isInt = attr(n, "value").map { $0.t.dataType != 1 } ?? false
            return Known(
                dims: dims, values: Array(repeating: fill, count: count(dims)), isInt: isInt)
        case "Gather":
            let idx = try arg(1)
            if intAttr(n, "axis", 0) != 0 || a.dims.count != 1 {
                throw nodeError(n, i, "csgd-dist gathers only from a 1-D known vector")
            }
            let v = try idx.values.map { x -> Double in
                let j =
                    Self.saturating(x) < 0
                    ? Self.saturating(x) + a.values.count : Self.saturating(x)
                if j < 0 || j >= a.values.count { throw nodeError(n, i, "index \(x) out of range") }
                return a.values[j]
            }
            return Known(dims: idx.dims, values: v, isInt: a.isInt)
        case "Reshape":
            var dims = try arg(1).values.map(Self.saturating)
            if dims.count > 8 {
                throw nodeError(n, i, "cannot reshape \(a.dims) to \(dims.count) dims")
            }
            for (k, d) in dims.enumerated() where d == 0 {
                dims[k] = k < a.dims.count ? a.dims[k] : 0
            }
            if let u = dims.firstIndex(of: -1) {
                let others = dims.enumerated().filter { $0.offset != u }.map(\.element)
                if others.contains(where: { $0 < 1 || $0 > 64 }) {
                    throw nodeError(n, i, "cannot reshape \(a.dims) to \(dims)")
                }
                let rest = others.reduce(1, *)
                if rest <= 0 || a.values.count % rest != 0 {
                    throw nodeError(n, i, "cannot reshape \(a.dims) to \(dims)")
                }
                dims[u] = a.values.count / rest
            }
            if dims.contains(where: { $0 < 0 || $0 > 64 }) || count(dims) != a.values.count {
                throw nodeError(n, i, "cannot reshape \(a.dims) to \(dims)")
            }
            return Known(dims: dims, values: a.values, isInt: a.isInt)
        case "Transpose":
            let perm = intsAttr(n, "perm") ?? Array((0..<a.dims.count).reversed())
            if a.dims.count != 2 || perm != [1, 0] {
                throw nodeError(n, i, "csgd-dist transposes only 2-D known matrices")
            }
            let (r, c) = (a.dims[0], a.dims[1])
            let v = (0..<(r * c)).map { k in a.values[(k % r) * c + k / r] }
            return Known(dims: [c, r], values: v, isInt: a.isInt)
        case "Concat":
            if a.dims.count != 1 {
                throw nodeError(n, i, "csgd-dist concatenates 1-D known vectors")
            }
            let parts = try (0..<args.count).map { try arg($0) }
            let v = parts.flatMap(\.values)
            return Known(dims: [v.count], values: v, isInt: parts.allSatisfy(\.isInt))
        case "Unsqueeze", "Squeeze":
            // Only the scalar ⇄ 1-element vector views shape arithmetic uses.
            if a.values.count != 1 { throw nodeError(n, i, "\(n.opType) of a known vector") }
            return Known(dims: n.opType == "Unsqueeze" ? [1] : [], values: a.values, isInt: a.isInt)
        default:  // Slice along one axis, any step (a reversal of rows).
            let starts = try arg(1).values.map(Self.saturating)
            let ends = try arg(2).values.map(Self.saturating)
            let axes = args.count > 3 ? args[3]?.values.map(Self.saturating) ?? [0] : [0]
            let steps = args.count > 4 ? args[4]?.values.map(Self.saturating) ?? [1] : [1]
            guard starts.count == 1, ends.count == 1, axes.count == 1, steps.count == 1,
                steps[0] != 0
            else { throw nodeError(n, i, "csgd-dist slices known values along one axis") }
            let rank = a.dims.count
            let axis = axes[0] < 0 ? axes[0] + rank : axes[0]
            if axis < 0 || axis >= rank { throw nodeError(n, i, "axis \(axes[0])") }
            let len = a.dims[axis]
            let step = max(min(steps[0], len + 1), -(len + 1))  // larger steps take one value
            func clamp(_ v: Int, _ lo: Int, _ hi: Int) -> Int {
                min(max(v < 0 ? (v < -len ? lo : v + len) : v, lo), hi)
            }
            let (lo, hi) = step > 0 ? (0, len) : (-1, len - 1)
            let start = clamp(starts[0], lo, hi)
            let end = clamp(ends[0], lo, hi)
            var picks: [Int] = []
            var k = start
            while step > 0 ? k < end : k > end {
                picks.append(k)
                k += step
            }
            let inner = a.dims[(axis + 1)...].reduce(1, *)
            let outer = a.dims[..<axis].reduce(1, *)
            var v: [Double] = []
            for o in 0..<outer {
                for p in picks {
                    v += a.values[((o * len + p) * inner)..<((o * len + p + 1) * inner)]
                }
            }
            var dims = a.dims
            dims[axis] = picks.count
            return Known(dims: dims, values: v, isInt: a.isInt)
        }
    }

    // MARK: spatial

    /// Pad with zeros on H and W (constant mode): a pad node, or nothing when all pads are 0.
    mutating func pad(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        if flat { throw nodeError(n, i, "pads a flattened tensor") }
        let mode = attr(n, "mode").map { String(decoding: $0.s, as: UTF8.self) } ?? "constant"
        if mode != "constant" {
            throw nodeError(n, i, "mode '\(mode)'; csgd-dist imports zero (constant) padding")
        }
        let fromInputs = opset >= 11
        guard let p = try ints(n, i, input: 1, attribute: "pads", fromInputs: fromInputs),
            p.count == 8
        else { throw nodeError(n, i, "needs 8 constant pads for an [N, C, H, W] tensor") }
        let value: Double =
            fromInputs
            ? (known(try value(n, i, 2))?.values.first ?? 0) : Double(floatAttr(n, "value", 0))
        if n.input.count > 3, !n.input[3].isEmpty {
            throw nodeError(n, i, "the axes input is not supported")
        }
        // ONNX order: [x1_begin, x2_begin, x3_begin, x4_begin, x1_end, …].
        let (top, left, bottom, right) = (p[2], p[3], p[6], p[7])
        if value != 0 || p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0
            || [top, left, bottom, right].contains(where: { $0 < 0 || $0 > GraphSpec.Limits.kernel }
            )
            || top + bottom != left + right
        {
            throw nodeError(
                n, i,
                "pads \(p) value \(value); csgd-dist imports zero padding of H and W (0...\(GraphSpec.Limits.kernel), the same total on both)"
            )
        }
        if top + bottom == 0 {
            define(n, i, .tensor(t, flat: false))
            return
        }
        let s = shapes[t]
        define(
            n, i,
            .tensor(
                append(
                    NodeSpec(op: .pad, inputs: [t], pads: [top, left, bottom, right]),
                    ActivationShape(c: s.c, h: s.h + top + bottom, w: s.w + left + right)),
                flat: false))
    }

    /// Resize / Upsample in nearest mode by one integer factor on H and W, with torch's
    /// coordinates (asymmetric, floor): nearest upsampling.
    mutating func upsample(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        if flat { throw nodeError(n, i, "resizes a flattened tensor") }
        func text(_ name: String, _ def: String) -> String {
            attr(n, name).map { String(decoding: $0.s, as: UTF8.self) } ?? def
        }
        let mode = text("mode", "nearest")
        let coords = text("coordinate_transformation_mode", "half_pixel")
        let rounding = text("nearest_mode", "round_prefer_floor")
        let legacy = n.opType == "Upsample" || opset < 11
        if mode != "nearest" || (!legacy && (coords != "asymmetric" || rounding != "floor")) {
            throw nodeError(
                n, i,
                "mode \(mode), coordinates \(coords), rounding \(rounding); csgd-dist imports "
                    + "nearest upsampling as torch writes it (asymmetric, floor)")
        }
        let s = shapes[t]
        var factors: [Double] = []
        if let scales = known(try value(n, i, legacy ? 1 : 2)), scales.values.count == 4 {
            factors = scales.values
        } else if !legacy, let sizes = known(try value(n, i, 3)), sizes.values.count == 4 {
            factors = [1, 1, sizes.values[2] / Double(s.h), sizes.values[3] / Double(s.w)]
        } else if legacy, let f = attr(n, "scales"), f.floats.count == 4 {
            factors = f.floats.map(Double.init)
        }
        guard factors.count == 4, factors[0] == 1, factors[1] == 1, factors[2] == factors[3],
            factors[2] >= 1, factors[2] == factors[2].rounded(),
            factors[2] <= Double(GraphSpec.Limits.stride)
        else {
            throw nodeError(
                n, i, "scales \(factors); csgd-dist imports one integer factor on H and W")
        }
        let f = Int(factors[2])
        define(
            n, i,
            .tensor(
                append(
                    NodeSpec(op: .upsample, inputs: [t], stride: f),
                    ActivationShape(c: s.c, h: s.h * f, w: s.w * f)), flat: false))
    }

    // MARK: rewrites

    /// Drops nodes the output does not read (a Sigmoid folded into SiLU) and their tensors.
    mutating func removeDeadNodes(_ spec: GraphSpec) -> GraphSpec {
        var live = [Bool](repeating: false, count: spec.nodes.count + 1)
        live[spec.output] = true
        for i in spec.nodes.indices.reversed() where live[i + 1] {
            for t in spec.nodes[i].inputs { live[t] = true }
        }
        var map = Array(0...spec.nodes.count)
        var out: [NodeSpec] = []
        for (i, n) in spec.nodes.enumerated() {
            if !live[i + 1] {
                if n.op.traits.hasParameters {
                    for part in ["weight", "bias", "running_mean", "running_var"] {
                        tensors[n.name + "." + part] = nil
                    }
                }
                continue
            }
            var node = n
            node.inputs = n.inputs.map { map[$0] }
            out.append(node)
            map[i + 1] = out.count
        }
        return GraphSpec(nodes: out, output: map[spec.output])
    }
}
