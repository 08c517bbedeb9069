// Grouped 2-D convolution (PyTorch's Conv2d with 1 < groups < C), NCHW, weight
// [K, C / groups, R, S]: filters `gi·K/groups ..< (gi+1)·K/groups` read input channels
// `gi·C/groups ..< (gi+1)·C/groups` only.
//
// Method: each group is a dense convolution on its own channels, so it runs through the dense
// im2col + GEMM kernels (`conv2dForward` / `conv2dBackward`) unchanged. A group's channels are
// contiguous within one image but not across the batch, so they are gathered into a contiguous
// [N, C/groups, H, W] scratch (and the group's output scattered back); with a batch of one
// image the slices are used in place. Depthwise convs (groups == C) have their own direct
// kernel (DepthwiseConv.swift).

extension Conv2dShape {
    /// The geometry of one of `groups` groups: `c / groups` inputs, `k / groups` filters.
    /// `groups` must divide both channel counts.
    public func group(_ groups: Int) -> Conv2dShape {
        precondition(groups >= 1 && c % groups == 0 && k % groups == 0, "groups must divide C, K")
        return try! Conv2dShape(
            n: n, c: c / groups, h: h, w: w, k: k / groups, r: r, s: s, stride: stride, pad: pad)
    }

    /// Floats of scratch `groupedConv2dForward` / `groupedConv2dBackward` need for `groups`:
    /// a gathered input, output and input gradient of one group, plus the dense kernels'
    /// workspace for one group.
    public func groupedWorkspaceCount(groups: Int) -> Int {
        let gs = group(groups)
        return 2 * gs.n * gs.c * gs.h * gs.w + gs.n * gs.k * gs.p * gs.q + gs.workspaceCount
    }
}

/// Scratch regions of one group inside the grouped workspace.
private struct GroupScratch {
    let input: UnsafeMutablePointer<Float>
    let output: UnsafeMutablePointer<Float>
    let dInput: UnsafeMutablePointer<Float>
    let convWorkspace: UnsafeMutablePointer<Float>

    init(_ ws: UnsafeMutablePointer<Float>, _ gs: Conv2dShape) {
        let inCount = gs.n * gs.c * gs.h * gs.w
        input = ws
        dInput = ws + inCount
        output = ws + 2 * inCount
        convWorkspace = output + gs.n * gs.k * gs.p * gs.q
    }
}

/// Copies channels `c0 ..< c0 + cg` of every image of `src` (`total` channels) into the
/// contiguous `dst` [N, cg, hw].
@inline(__always)
private func gatherChannels(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, n: Int, total: Int, c0: Int,
    cg: Int, hw: Int
) {
    for i in 0..<n { (dst + i * cg * hw).update(from: src + (i * total + c0) * hw, count: cg * hw) }
}

/// Grouped convolution forward: `output[N, K, P, Q]` from `input[N, C, H, W]`,
/// `weight[K, C / groups, R, S]`, `bias[K]`, then `epilogue` per output channel, as
/// `conv2dForward`.
/// - Parameter workspace: at least `shape.groupedWorkspaceCount(groups:)` floats.
public func groupedConv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape, groups: Int,
    workspace: UnsafeMutablePointer<Float>, epilogue: ChannelAffine? = nil
) {
    let gs = g.group(groups)
    let hw = g.h * g.w
    let pq = g.p * g.q
    let scratch = GroupScratch(workspace, gs)
    let weightCount = gs.k * gs.rowLength
    for gi in 0..<groups {
        let inGroup: UnsafePointer<Float>
        let outGroup: UnsafeMutablePointer<Float>
        if g.n == 1 {
            inGroup = input + gi * gs.c * hw
            outGroup = output + gi * gs.k * pq
        } else {
            gatherChannels(
                scratch.input, input, n: g.n, total: g.c, c0: gi * gs.c, cg: gs.c, hw: hw)
            inGroup = UnsafePointer(scratch.input)
            outGroup = scratch.output
        }
        let e = epilogue.map {
            ChannelAffine(scale: $0.scale + gi * gs.k, shift: $0.shift + gi * gs.k, relu: $0.relu)
        }
        conv2dForward(
            output: outGroup, input: inGroup, weight: weight + gi * weightCount,
            bias: bias.map { $0 + gi * gs.k }, shape: gs, workspace: scratch.convWorkspace,
            epilogue: e)
        if g.n != 1 {
            for i in 0..<g.n {
                (output + (i * g.k + gi * gs.k) * pq).update(
                    from: scratch.output + i * gs.k * pq, count: gs.k * pq)
            }
        }
    }
}

/// Grouped convolution backward. ACCUMULATES into `dInput`, `dWeight` and `dBias` (`+=`).
/// - Parameters:
///   - dInput: `[N, C, H, W]`, or nil when the input needs no gradient.
///   - dWeight: `[K, C / groups, R, S]`.
///   - dBias: `[K]` or nil.
///   - dOutput: `[N, K, P, Q]`.
///   - workspace: at least `shape.groupedWorkspaceCount(groups:)` floats.
public func groupedConv2dBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, shape g: Conv2dShape, groups: Int,
    workspace: UnsafeMutablePointer<Float>
) {
    let gs = g.group(groups)
    let hw = g.h * g.w
    let pq = g.p * g.q
    let scratch = GroupScratch(workspace, gs)
    let weightCount = gs.k * gs.rowLength
    for gi in 0..<groups {
        let inGroup: UnsafePointer<Float>
        let dOutGroup: UnsafePointer<Float>
        var dInGroup: UnsafeMutablePointer<Float>? = nil
        if g.n == 1 {
            // One image: the group's slices are contiguous, and conv2dBackward accumulates.
            inGroup = input + gi * gs.c * hw
            dOutGroup = dOutput + gi * gs.k * pq
            dInGroup = dInput.map { $0 + gi * gs.c * hw }
        } else {
            gatherChannels(
                scratch.input, input, n: g.n, total: g.c, c0: gi * gs.c, cg: gs.c, hw: hw)
            gatherChannels(
                scratch.output, dOutput, n: g.n, total: g.k, c0: gi * gs.k, cg: gs.k, hw: pq)
            inGroup = UnsafePointer(scratch.input)
            dOutGroup = UnsafePointer(scratch.output)
            if dInput != nil {
                scratch.dInput.update(repeating: 0, count: g.n * gs.c * hw)
                dInGroup = scratch.dInput
            }
        }
        conv2dBackward(
            dInput: dInGroup, dWeight: dWeight + gi * weightCount,
            dBias: dBias.map { $0 + gi * gs.k }, dOutput: dOutGroup, input: inGroup,
            weight: weight + gi * weightCount, shape: gs, workspace: scratch.convWorkspace)
        if g.n != 1, let dInput {
            for i in 0..<g.n {
                let dst = dInput + (i * g.c + gi * gs.c) * hw
                let src = scratch.dInput + i * gs.c * hw
                for j in 0..<(gs.c * hw) { dst[j] += src[j] }
            }
        }
    }
}
