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

    mutating func activation(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        var node: NodeSpec
        switch n.opType {
        case "Relu": node = NodeSpec(op: .relu, inputs: [t])
        case "Sigmoid": node = NodeSpec(op: .sigmoid, inputs: [t])
        case "HardSwish": node = NodeSpec(op: .hardSwish, inputs: [t])
        case "HardSigmoid":
            node = NodeSpec(
                op: .hardSigmoid, inputs: [t], alpha: floatAttr(n, "alpha", 0.2),
                beta: floatAttr(n, "beta", 0.5))
        case "LeakyRelu":
            node = NodeSpec(op: .leakyRelu, inputs: [t], alpha: floatAttr(n, "alpha", 0.01))
        default:  // Gelu (opset 20)
            let approximate = attr(n, "approximate").map { String(decoding: $0.s, as: UTF8.self) }
            if let approximate, approximate != "none" {
                throw nodeError(
                    n, i, "approximate '\(approximate)'; csgd-dist imports the exact (erf) GELU")
            }
            node = NodeSpec(op: .gelu, inputs: [t])
        }
        for v in [node.alpha, node.beta] {
            if let v, !(v.isFinite && abs(v) <= 1e6) {
                throw nodeError(n, i, "attribute value \(v) is not a finite number within ±1e6")
            }
        }
        define(n, i, .tensor(append(node, shapes[t]), flat: flat))
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
        guard case .tensor(let ta, let fa) = a, case .tensor(let tb, let fb) = b else {
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

    mutating func transpose(_ n: ONNXNodeProto, _ i: Int) throws {
        guard case .groupedView(let t, let g)? = try value(n, i, 0),
            intsAttr(n, "perm") == [0, 2, 1, 3, 4]
        else {
            throw nodeError(
                n, i,
                "csgd-dist imports Transpose only inside a channel shuffle "
                    + "(view [N, g, C/g, H, W], perm [0, 2, 1, 3, 4])")
        }
        define(n, i, .groupedTransposed(t, groups: g))
    }

    /// Whether every input of `n` is a shape value or an integer constant.
    func isShapeArithmetic(_ n: ONNXNodeProto) -> Bool {
        !n.input.isEmpty
            && n.input.allSatisfy { name in
                switch values[name] {
                case .shape?, .shapeScalar?: return true
                case .constant(let c)?: return c.ints != nil
                default: return false
                }
            }
    }

    /// A known integer of a shape value or constant with one element.
    func knownInt(_ v: Value?) -> Int? {
        switch v {
        case .shapeScalar(.known(let x))?: return x
        case .shape(let d)? where d.count == 1:
            if case .known(let x) = d[0] { return x }
            return nil
        case .constant(let c)? where c.count == 1: return c.ints.map { Int(clamping: $0[0]) }
        default: return nil
        }
    }

    /// Add / Sub / Mul / Div of known shape values (`C // 2` in `x.chunk(2, 1)`, a shuffle's
    /// `C // groups`).
    mutating func shapeBinary(_ n: ONNXNodeProto, _ i: Int) throws {
        guard let a = knownInt(try value(n, i, 0)), let b = knownInt(try value(n, i, 1)),
            abs(a) <= 1 << 40, abs(b) <= 1 << 40
        else {
            throw nodeError(
                n, i, "csgd-dist evaluates \(n.opType) only on known shape values (x.size(1) // g)")
        }
        let r: Int
        switch n.opType {
        case "Add": r = a + b
        case "Sub": r = a - b
        case "Mul": r = a * b
        default:
            if b == 0 { throw nodeError(n, i, "divides a shape value by 0") }
            r = Int((Double(a) / Double(b)).rounded(.down))
        }
        if case .shapeScalar? = try value(n, i, 0) {
            define(n, i, .shapeScalar(.known(r)))
        } else {
            define(n, i, .shape([.known(r)]))
        }
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
