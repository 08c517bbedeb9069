// ConvNeXt's channels-last blocks as PyTorch exports them (torchvision's CNBlock, LayerNorm2d):
//   x.permute(0, 2, 3, 1)                 Transpose perm [0, 2, 3, 1]  → [N, H, W, C]
//   nn.LayerNorm(C)                       LayerNormalization, axis -1
//   nn.Linear(C, 4C) → GELU → nn.Linear   MatMul (+ Add bias), Gelu, MatMul (+ Add bias)
//   .permute(0, 3, 1, 2)                  Transpose perm [0, 3, 1, 2]  → [N, C, H, W]
//   layer_scale * y                       Mul by a [C, 1, 1] constant
// The [N, H, W, C] view is a value of its own (`channelsLast`) over the same spec tensor: a
// Linear on it is a 1×1 conv, a LayerNorm over its last axis is a channelNorm, element-wise
// ops keep it, and only the permute back makes it an image tensor again. A Mul by a
// per-channel constant (the layer scale) is a depthwise 1×1 conv without bias: exact, and
// trainable like the PyTorch parameter it is.

import CSGDCore
import CSGDModels
import CSGDONNX

extension Translator {
    /// The spec tensor under a channels-last view at input `k`, if that input is one.
    func channelsLastInput(_ n: ONNXNodeProto, _ i: Int, _ k: Int = 0) throws -> Int? {
        if case .channelsLast(let t)? = try value(n, i, k) { return t }
        return nil
    }

    /// Transpose: into and out of the channels-last view, the swap of a constant matrix (the
    /// legacy exporter writes `weight.T` for a Linear on a 4-D input), and a channel shuffle's
    /// middle step.
    mutating func transpose(_ n: ONNXNodeProto, _ i: Int) throws {
        let perm = intsAttr(n, "perm")
        switch try value(n, i, 0) {
        case .tensor(let t, false)? where perm == [0, 2, 3, 1]:
            define(n, i, .channelsLast(t))
        case .channelsLast(let t)?:
            guard perm == [0, 3, 1, 2] else {
                throw nodeError(
                    n, i,
                    "perm \(perm.map { "\($0)" } ?? "reversed") of a channels-last view; "
                        + "csgd-dist imports only the permute back, [0, 3, 1, 2]")
            }
            define(n, i, .tensor(t, flat: false))
        case .constant(let c)? where c.dims.count == 2 && (perm == nil || perm == [1, 0]):
            guard let f = c.floats else {
                throw nodeError(n, i, "csgd-dist transposes only float32 constant matrices")
            }
            let (r, q) = (c.dims[0], c.dims[1])
            var out = [Float](repeating: 0, count: f.count)
            for a in 0..<r { for b in 0..<q { out[b * r + a] = f[a * q + b] } }
            define(n, i, .constant(ConstantTensor(dims: [q, r], floats: out)))
            if let o = n.output.first, let src = n.input.first {
                constantOrigin[o] = constantOrigin[src] ?? src
            }
        case .groupedView(let t, let g)? where perm == [0, 2, 1, 3, 4]:
            define(n, i, .groupedTransposed(t, groups: g))
        default:
            throw nodeError(
                n, i,
                "csgd-dist imports Transpose as the permute to channels-last [0, 2, 3, 1] and "
                    + "back, the swap of a constant matrix, or inside a channel shuffle "
                    + "(view [N, g, C/g, H, W], perm [0, 2, 1, 3, 4])")
        }
    }

    /// LayerNormalization over the channels: of a channels-last view (axis -1 or 3), or of a
    /// flattened [N, C] from a 1×1 map (axis -1 or 1).
    mutating func layerNorm(_ n: ONNXNodeProto, _ i: Int) throws {
        let axis = intAttr(n, "axis", -1)
        let t: Int
        let view: Bool
        if let c = try channelsLastInput(n, i) {
            guard axis == -1 || axis == 3 else {
                throw nodeError(
                    n, i,
                    "axis \(axis) of a channels-last view; csgd-dist imports LayerNorm over the "
                        + "channels (axis -1)")
            }
            (t, view) = (c, true)
        } else {
            let (x, flat) = try tensorInput(n, i)
            guard flat, shapes[x].h == 1, shapes[x].w == 1, axis == -1 || axis == 1 else {
                throw nodeError(
                    n, i,
                    "LayerNorm of \(describe(shapes[x], flat)) over axis \(axis); csgd-dist "
                        + "imports LayerNorm over the channels of [N, H, W, C] or [N, C]")
            }
            (t, view) = (x, false)
        }
        for k in 1..<n.output.count where !n.output[k].isEmpty && uses[n.output[k], default: 0] > 0
        {
            throw nodeError(n, i, "its mean / inverse-deviation output \(k) is used (training)")
        }
        let eps = floatAttr(n, "epsilon", 1e-5)
        if !(eps > 0 && eps <= 1) {
            throw nodeError(n, i, "epsilon \(eps) is not in (0, 1]")
        }
        let c = shapes[t].c
        guard let w = try floats(n, i, 1, "scale", dims: [c]) else {
            throw nodeError(n, i, "no scale input")
        }
        let b = try floats(n, i, 2, "bias", dims: [c])
        let name = moduleName(n, i, weight: n.input[1])
        tensors[name + ".weight"] = w
        if let b { tensors[name + ".bias"] = b }
        let y = append(
            NodeSpec(op: .channelNorm, name: name, inputs: [t], bias: b != nil, eps: eps),
            shapes[t])
        define(n, i, view ? .channelsLast(y) : .tensor(y, flat: true))
    }

    /// MatMul of a channels-last view by a constant [C, K]: a 1×1 conv to K channels (its bias
    /// is the Add that follows, as for a Linear on [N, C]).
    mutating func channelsLastLinear(_ n: ONNXNodeProto, _ i: Int, view t: Int) throws {
        if n.opType != "MatMul" {
            throw nodeError(n, i, "csgd-dist imports a Linear on [N, H, W, C] as MatMul")
        }
        let c = shapes[t].c
        guard let wc = try constantInput(n, i, 1, "weight"), wc.dims.count == 2, wc.dims[0] == c
        else {
            throw nodeError(
                n, i, "csgd-dist imports a MatMul of [N, H, W, \(c)] by a constant [\(c), K]")
        }
        let k = wc.dims[1]
        if !(1...Architecture.Limits.width).contains(k) {
            throw nodeError(n, i, "\(k) outputs are out of 1...\(Architecture.Limits.width)")
        }
        guard let f = try floats(n, i, 1, "weight", dims: [c, k]) else {
            throw nodeError(n, i, "no weight input")
        }
        var w = [Float](repeating: 0, count: f.count)  // [C, K] → the conv's [K, C, 1, 1]
        for a in 0..<c { for o in 0..<k { w[o * c + a] = f[a * k + o] } }
        let name = moduleName(n, i, weight: constantOrigin[n.input[1]] ?? n.input[1])
        tensors[name + ".weight"] = w
        let s = shapes[t]
        let y = append(
            NodeSpec(
                op: .conv, name: name, inputs: [t], outChannels: k, kernel: 1, stride: 1, pad: 0),
            ActivationShape(c: k, h: s.h, w: s.w))
        biaslessMatMul[y] = nodes.count - 1
        define(n, i, .channelsLast(y))
    }

    /// A Mul by a per-channel constant (ConvNeXt's layer scale): `[C, 1, 1]` or `[1, C, 1, 1]`
    /// on an image tensor, `[C]` on a channels-last view; a depthwise 1×1 conv. False when no
    /// input is a constant (the Mul is something else).
    mutating func channelConstantScale(_ n: ONNXNodeProto, _ i: Int) throws -> Bool {
        for k in 0..<2 {
            guard case .constant(let c)? = try value(n, i, k) else { continue }
            let other = try value(n, i, 1 - k)
            let t: Int
            let view: Bool
            switch other {
            case .tensor(let x, false)?: (t, view) = (x, false)
            case .channelsLast(let x)?: (t, view) = (x, true)
            default:
                throw nodeError(
                    n, i,
                    "multiplies a constant by a value that is not an image tensor; csgd-dist "
                        + "imports a constant Mul only as a per-channel scale")
            }
            let ch = shapes[t].c
            let dims = view ? [[ch], [1, 1, 1, ch]] : [[ch, 1, 1], [1, ch, 1, 1]]
            guard dims.contains(c.dims) else {
                throw nodeError(
                    n, i,
                    "multiplies by a constant of shape \(c.dims); csgd-dist imports a constant "
                        + "Mul only as a per-channel scale \(dims[0]) (a layer scale)")
            }
            guard let f = try floats(n, i, k, "scale", dims: c.dims) else { return false }
            let name = moduleName(n, i, weight: n.input[k] + ".weight")
            tensors[name + ".weight"] = f
            let y = append(
                NodeSpec(
                    op: .depthwiseConv, name: name, inputs: [t], kernel: 1, stride: 1, pad: 0),
                shapes[t])
            define(n, i, view ? .channelsLast(y) : .tensor(y, flat: false))
            return true
        }
        return false
    }

    /// `Reshape(x, [-1])` of a pooled map when the file's batch is 1 (the dynamo exporter's
    /// `as_strided` after `adaptive_avg_pool2d`): the image's features as one vector, read
    /// only by the Gather that views them back.
    mutating func batchOneVectorReshape(_ n: ONNXNodeProto, _ i: Int, target dims: [ShapeDim])
        throws -> Bool
    {
        guard dims.count == 1, case .tensor(let t, false)? = try value(n, i, 0), fixedBatch == 1
        else { return false }
        guard dims[0] == .known(-1) || dims[0] == .known(shapes[t].count) else { return false }
        define(n, i, .batchOneVector(t))
        return true
    }

    /// Gather(axis 0) of a batch-1 feature vector by the indices 0 ..< C·H·W shaped
    /// [1, C, H, W]: the image tensor itself.
    mutating func batchOneVectorGather(_ n: ONNXNodeProto, _ i: Int, vector t: Int) throws {
        let s = shapes[t]
        guard intAttr(n, "axis", 0) == 0, let idx = try constantInput(n, i, 1, "indices"),
            let ints = idx.ints, idx.dims == [1, s.c, s.h, s.w],
            ints.enumerated().allSatisfy({ Int64($0.offset) == $0.element })
        else {
            throw nodeError(
                n, i,
                "csgd-dist imports a Gather of a flattened feature map only as the identity "
                    + "view back to [1, \(s.c), \(s.h), \(s.w)] (torch's as_strided)")
        }
        define(n, i, .tensor(t, flat: false))
    }
}
