// The ECA gate as PyTorch exports it (timm's EcaModule):
//   y = x.mean((2, 3)).view(N, 1, -1)     ReduceMean → Reshape to [N, 1, C]
//   y = conv(y)                           Conv1d(1, 1, k, padding k // 2), no bias
//   y = sigmoid(y).view(N, -1, 1, 1)      Sigmoid → Reshape to [N, C, 1, 1]
//   x * y.expand_as(x)                    Expand (to Shape(x) or a constant) → Mul
// The [N, 1, C] view is a value of its own (`channelSequence`), so the only ops that read it
// are the ones below: the Conv1d, element-wise ops, and the Reshape back to channels.

import CSGDCore
import CSGDModels
import CSGDONNX

extension Translator {
    /// Whether `d` can be the batch dimension of a Reshape target (`x.size(0)`, 0 = copy,
    /// a fixed batch, or -1 when `inferred` is the only -1).
    func isBatch(_ d: ShapeDim, allowZero: Bool, minusOneFree: Bool) -> Bool {
        switch d {
        case .batch: return true
        case .known(0): return !allowZero
        case .known(-1): return minusOneFree
        case .known(let b): return b > 0
        }
    }

    /// Reshapes into and out of an ECA gate's [N, 1, C] view; false when `n` is neither.
    mutating func channelSequenceReshape(_ n: ONNXNodeProto, _ i: Int, target dims: [ShapeDim])
        throws -> Bool
    {
        let allowZero = intAttr(n, "allowzero", 0) != 0
        func channels(_ d: ShapeDim, _ c: Int) -> Bool { d == .known(-1) || d == .known(c) }
        switch try value(n, i, 0) {
        case .tensor(let t, _)?:
            let s = shapes[t]
            guard dims.count == 3, dims[1] == .known(1), s.h == 1, s.w == 1 else { return false }
            let ok =
                channels(dims[2], s.c)
                && isBatch(dims[0], allowZero: allowZero, minusOneFree: dims[2] != .known(-1))
            if !ok {
                throw nodeError(
                    n, i,
                    "target shape \(dims.map(describe)); csgd-dist views pooled channels as "
                        + "[N, 1, \(s.c)] (an ECA gate)")
            }
            define(n, i, .channelSequence(t))
            return true
        case .channelSequence(let t)?:
            let c = shapes[t].c
            let free = dims.dropFirst().allSatisfy { $0 != .known(-1) }
            let batch = dims.first.map { isBatch($0, allowZero: allowZero, minusOneFree: free) }
            if dims.count == 4, batch == true, channels(dims[1], c), dims[2] == .known(1),
                dims[3] == .known(1)
            {
                define(n, i, .tensor(t, flat: false))
            } else if dims.count == 2, batch == true, channels(dims[1], c) {
                define(n, i, .tensor(t, flat: true))
            } else {
                throw nodeError(
                    n, i,
                    "target shape \(dims.map(describe)) for an ECA gate's [N, 1, \(c)]; csgd-dist "
                        + "imports the view back to [N, \(c), 1, 1]")
            }
            return true
        default:
            return false
        }
    }

    /// The ECA gate's Conv1d over the channels of the [N, 1, C] view `t`.
    mutating func channelConv(_ n: ONNXNodeProto, _ i: Int, sequence t: Int) throws {
        guard let wc = try constantInput(n, i, 1, "weight"), wc.dims.count == 3,
            wc.dims[0] == 1, wc.dims[1] == 1
        else {
            throw nodeError(
                n, i, "csgd-dist imports a Conv1d over [N, 1, C] with a [1, 1, k] weight (ECA)")
        }
        let k = wc.dims[2]
        if k < 1 || k % 2 == 0 || k > GraphSpec.Limits.kernel {
            throw nodeError(
                n, i,
                "kernel \(k); csgd-dist imports an odd ECA kernel up to "
                    + "\(GraphSpec.Limits.kernel)")
        }
        let autoPad = attr(n, "auto_pad").map { String(decoding: $0.s, as: UTF8.self) } ?? "NOTSET"
        let geometry: [(String, [Int]?, [Int])] = [
            ("kernel_shape", intsAttr(n, "kernel_shape"), [k]),
            ("strides", intsAttr(n, "strides"), [1]),
            ("dilations", intsAttr(n, "dilations"), [1]),
            ("pads", intsAttr(n, "pads"), [k / 2, k / 2]),
        ]
        for (name, got, want) in geometry where got != nil && got != want {
            throw nodeError(
                n, i, "\(name) \(got!); csgd-dist imports an ECA Conv1d with \(name) \(want)")
        }
        if autoPad != "NOTSET" || intAttr(n, "group", 1) != 1
            || (intsAttr(n, "pads") == nil && k > 1)
        {
            throw nodeError(
                n, i,
                "csgd-dist imports an ECA Conv1d with explicit pads [\(k / 2), \(k / 2)], "
                    + "group 1")
        }
        guard let w = try floats(n, i, 1, "weight", dims: [1, 1, k]) else {
            throw nodeError(n, i, "no weight input")
        }
        let b = try floats(n, i, 2, "bias", dims: [1])
        let name = moduleName(n, i, weight: n.input[1])
        tensors[name + ".weight"] = w
        if let b { tensors[name + ".bias"] = b }
        let node = NodeSpec(
            op: .channelConv, name: name, inputs: [t], kernel: k, bias: b != nil ? true : nil)
        define(n, i, .channelSequence(append(node, shapes[t])))
    }

    /// Expand: the identity when the target changes nothing, and a gate broadcast over H×W
    /// (`y.expand_as(x)` for a C×1×1 `y`), read by the Mul that follows.
    mutating func expand(_ n: ONNXNodeProto, _ i: Int) throws {
        let (t, flat) = try tensorInput(n, i)
        let s = shapes[t]
        let dims = try targetShape(n, i)
        func fail() -> CSGDError {
            nodeError(
                n, i,
                "expands \(describe(s, flat)) to \(dims.map(describe)); csgd-dist imports Expand "
                    + "of a [N, C, 1, 1] gate to [N, C, H, W]")
        }
        guard !flat, dims.count == 4, isBatch(dims[0], allowZero: true, minusOneFree: false),
            dims[1] == .known(s.c) || dims[1] == .known(1)
        else { throw fail() }
        guard case .known(let h) = dims[2], case .known(let w) = dims[3],
            (1...Architecture.Limits.imageSize).contains(h),
            (1...Architecture.Limits.imageSize).contains(w)
        else { throw fail() }
        if (h, w) == (s.h, s.w) || (h == 1 && w == 1) {
            define(n, i, .tensor(t, flat: false))
        } else if s.h == 1 && s.w == 1 {
            define(n, i, .expandedGate(t, to: ActivationShape(c: s.c, h: h, w: w)))
        } else {
            throw fail()
        }
    }
}
