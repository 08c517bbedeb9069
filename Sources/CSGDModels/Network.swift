// The executor: runs a Graph forward and backward over one ParameterStore.
//
// Activations live in an arena sized for the current batch (one per (batch, mode), reused
// across steps, so steady-state training allocates nothing). Forward saves what backward needs
// (every layer's input tensor, BN batch mean/invstd, max-pool argmax); backward walks the layers
// in reverse, llm.c style, and ACCUMULATES parameter gradients into `store.grads`.

import CSGDCore
import CSGDKernels

/// A model instance: architecture, graph, parameters and the activation arenas.
public final class Network {
    /// The widths and sizes this network was built from.
    public let architecture: Architecture
    /// The layer graph.
    public let graph: Graph
    /// Parameters, gradients, momentum and BN buffers.
    public let store: ParameterStore
    /// BatchNorm eps and running-stat momentum.
    public var batchNorm = BatchNormConfig()
    /// In eval mode, run each BatchNorm that only reads a conv's output as that conv's
    /// epilogue (bitwise the same logits; saves a pass over the activations). Tests turn it off
    /// to compare.
    public var fusesBatchNormInEval = true
    /// BatchNorm groups (SyncBN): when set, training-mode BatchNorm pools its batch statistics
    /// over a group of ranks by calling this with per-channel doubles to sum in place over the
    /// group (twice per BN layer and step: `batchNormStatisticsCount(channels:)` doubles in
    /// forward, 2·C in backward; see CSGDKernels/BatchNorm.swift). Every rank of the group must
    /// run the same layers in the same order. Nil (the default): per-rank statistics, no calls.
    public var batchNormGroupReducer: ((UnsafeMutablePointer<Double>, Int) -> Void)?
    /// conv (dense, grouped or depthwise) layer index → the BatchNorm layer right after it that
    /// is its output's only reader.
    private let fusibleBatchNorm: [Int: Int]
    private var arenas: [ArenaKey: Arena] = [:]
    private var lastTrainingBatch: Int?
    /// The group reducer the last training-mode forward used; backward must pool the same way.
    private var lastTrainingReducer: ((UnsafeMutablePointer<Double>, Int) -> Void)?

    /// Builds the network with zeroed parameters (call `initialize(seed:)` or load weights).
    public init(architecture: Architecture) throws {
        self.architecture = architecture
        graph = try architecture.graph()
        store = ParameterStore(specs: graph.specs, bufferSpecs: graph.bufferSpecs)
        var readers = [Int](repeating: 0, count: graph.tensors.count)
        for layer in graph.layers { for t in layer.inputs { readers[t.index] += 1 } }
        var fusible: [Int: Int] = [:]
        for (li, layer) in graph.layers.enumerated().dropLast() {
            let convOutput: TensorID?
            switch layer {
            case .conv(let c): convOutput = c.output
            case .depthwiseConv(let d): convOutput = d.output
            default: convOutput = nil
            }
            if let out = convOutput, case .batchNorm(let bn) = graph.layers[li + 1],
                bn.input == out, readers[out.index] == 1, out != graph.logits
            {
                fusible[li] = li + 1
            }
        }
        fusibleBatchNorm = fusible
    }

    /// The BatchNorm settings of one layer: the network's, with the layer's own epsilon.
    func batchNormConfig(_ l: BatchNormLayer) -> BatchNormConfig {
        var c = batchNorm
        if let e = l.eps { c.eps = e }
        return c
    }

    /// Number of classes (logit width).
    public var numClasses: Int { architecture.numClasses }
    /// Floats per input image.
    public var imageCount: Int { graph.tensors[graph.input.index].count }

    /// PyTorch/torchvision-style initialisation, deterministic in `seed`:
    /// conv weights ~ N(0, 2/(K·R·S)) (Kaiming normal, fan-out, ReLU gain, as torchvision's
    /// ResNet); BN γ = 1, β = 0, running mean 0, running var 1; FC weight and bias
    /// ~ U(−1/√in, 1/√in) (nn.Linear's default); conv bias 0.
    public func initialize(seed: UInt64) {
        var rng = Rng.derived(seed: seed, 0x1417)
        for (i, spec) in store.specs.enumerated() {
            let p = store.value(ParameterID(i))
            switch spec.role {
            case .convWeight:
                // [K, C, R, S], or [1, 1, k] for the ECA gate's Conv1d.
                let fanOut = spec.shape[0] * spec.shape.dropFirst(2).reduce(1, *)
                let std = Float((2.0 / Double(fanOut)).squareRoot())
                for j in 0..<spec.count { p[j] = rng.nextGaussian() * std }
            case .bnScale:
                p.update(repeating: 1, count: spec.count)
            case .bnShift, .convBias:
                p.update(repeating: 0, count: spec.count)
            case .fcWeight, .fcBias:
                break  // below, per layer: both use the layer's fan-in
            }
        }
        // FC layers come last in the parameter order, so drawing them here keeps the stream
        // order of a single pass.
        for case .linear(let l) in graph.layers {
            let bound = Float(1 / Double(l.inFeatures).squareRoot())
            for id in [l.weight] + (l.bias.map { [$0] } ?? []) {
                let p = store.value(id)
                for j in 0..<store[id].count { p[j] = (rng.nextFloat() * 2 - 1) * bound }
            }
        }
        for (i, spec) in store.bufferSpecs.enumerated() {
            store.buffer(BufferID(i)).update(
                repeating: spec.role == .bnRunningVar ? 1 : 0, count: spec.count)
        }
        store.momentum.zero()
        store.grads.zero()
    }

    // MARK: - forward

    /// Runs the network on `batch` images (`[batch, C, H, W]`, normalised).
    /// - Parameter training: batch statistics and running-stat updates in BN, and saves what
    ///   `backward` needs; otherwise eval mode (running statistics).
    /// - Returns: the logits `[batch, classes]`, valid until the next call.
    @discardableResult
    public func forward(images: UnsafePointer<Float>, batch: Int, training: Bool)
        -> UnsafeMutablePointer<Float>
    {
        let arena = self.arena(batch: batch, training: training)
        arena.values[graph.input.index].pointer.update(from: images, count: batch * imageCount)
        let v = arena.values
        let fuse = !training && fusesBatchNormInEval
        var skip = -1  // a BatchNorm already applied as the previous conv's epilogue
        // Where conv layer `li` writes, and the BatchNorm epilogue to apply when it is fused.
        func convTarget(_ li: Int, _ output: TensorID) -> (
            UnsafeMutablePointer<Float>, ChannelAffine?
        ) {
            guard fuse, let bi = fusibleBatchNorm[li], case .batchNorm(let bn) = graph.layers[bi]
            else { return (v[output.index].pointer, nil) }
            let a = arena.affineScale.pointer
            let b = arena.affineShift.pointer
            batchNormEvalAffine(
                a: a, b: b, runningMean: store.buffer(bn.runningMean),
                runningVar: store.buffer(bn.runningVar), scale: store.value(bn.scale),
                shift: store.value(bn.shift), c: bn.channels, config: batchNormConfig(bn))
            skip = bi
            return (v[bn.output.index].pointer, ChannelAffine(scale: a, shift: b, relu: bn.relu))
        }
        for (li, layer) in graph.layers.enumerated() where li != skip {
            switch layer {
            case .conv(let l):
                let (output, epilogue) = convTarget(li, l.output)
                if l.groups == 1 {
                    conv2dForward(
                        output: output, input: v[l.input.index].pointer,
                        weight: store.value(l.weight), bias: l.bias.map { store.value($0) },
                        shape: arena.convShapes[li]!, workspace: arena.workspace.pointer,
                        epilogue: epilogue)
                } else {
                    groupedConv2dForward(
                        output: output, input: v[l.input.index].pointer,
                        weight: store.value(l.weight), bias: l.bias.map { store.value($0) },
                        shape: arena.convShapes[li]!, groups: l.groups,
                        workspace: arena.workspace.pointer, epilogue: epilogue)
                }
            case .depthwiseConv(let l):
                let (output, epilogue) = convTarget(li, l.output)
                depthwiseConv2dForward(
                    output: output, input: v[l.input.index].pointer,
                    weight: store.value(l.weight), bias: l.bias.map { store.value($0) },
                    shape: arena.convShapes[li]!, epilogue: epilogue)
            case .batchNorm(let l):
                let y = v[l.output.index].pointer
                if training, let reduce = batchNormGroupReducer {
                    groupBatchNormForward(l, li, arena, batch, reduce)
                } else if training {
                    batchNormForwardTraining(
                        output: y, saveMean: arena.bnMean[li]!.pointer,
                        saveInvStd: arena.bnInvStd[li]!.pointer,
                        runningMean: store.buffer(l.runningMean),
                        runningVar: store.buffer(l.runningVar), input: v[l.input.index].pointer,
                        scale: store.value(l.scale), shift: store.value(l.shift), n: batch,
                        c: l.channels, hw: l.hw, config: batchNormConfig(l), relu: l.relu)
                } else {
                    batchNormForwardEval(
                        output: y, input: v[l.input.index].pointer,
                        runningMean: store.buffer(l.runningMean),
                        runningVar: store.buffer(l.runningVar), scale: store.value(l.scale),
                        shift: store.value(l.shift), n: batch, c: l.channels, hw: l.hw,
                        config: batchNormConfig(l), relu: l.relu)
                }
            case .add(let l):
                let y = v[l.output.index].pointer
                let n = batch * graph.tensors[l.output.index].count
                addForward(
                    output: y, a: v[l.a.index].pointer, b: v[l.b.index].pointer, count: n,
                    relu: l.relu)
            case .maxPool(let l):
                maxPoolForward(
                    output: v[l.output.index].pointer, argmax: arena.argmax[li]!,
                    input: v[l.input.index].pointer, shape: l.shape.with(batch: batch))
            case .globalAvgPool(let l):
                globalAvgPoolForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    nc: batch * l.channels, hw: l.hw)
            case .activation(let l):
                let n = batch * graph.tensors[l.output.index].count
                activationForward(
                    l.kind, output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    count: n)
            case .globalMaxPool(let l):
                globalMaxPoolForward(
                    output: v[l.output.index].pointer, argmax: arena.argmax[li]!,
                    input: v[l.input.index].pointer, nc: batch * l.channels, hw: l.hw)
            case .channelScale(let l):
                channelScaleForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    gate: v[l.gate.index].pointer, nc: batch * l.channels, hw: l.hw)
            case .channelSlice(let l):
                channelSliceForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    start: l.start, count: l.count, channels: l.inputChannels, n: batch, hw: l.hw)
            case .pad(let l):
                padForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    planes: batch * l.shape.c, h: l.shape.h, w: l.shape.w, top: l.top,
                    left: l.left, bottom: l.bottom, right: l.right)
            case .upsample(let l):
                upsampleForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    planes: batch * l.shape.c, h: l.shape.h, w: l.shape.w, factor: l.factor)
            case .channelShuffle(let l):
                channelShuffleForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    channels: l.channels, groups: l.groups, n: batch, hw: l.hw)
            case .concat(let l):
                let y = v[l.output.index].pointer
                let total = graph.tensors[l.output.index].c
                for (j, t) in l.inputs.enumerated() {
                    concatForward(
                        output: y, input: v[t.index].pointer, offset: l.offsets[j],
                        channels: l.channels[j], totalChannels: total, n: batch, hw: l.hw)
                }
            case .avgPool(let l):
                avgPoolForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    shape: l.shape.with(batch: batch), countIncludePad: l.countIncludePad)
            case .channelConv(let l):
                channelConvForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    weight: store.value(l.weight), bias: l.bias.map { store.value($0)[0] } ?? 0,
                    n: batch, channels: l.channels, kernel: l.kernel, pad: l.pad)
            case .channelNorm(let l):
                channelNormForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    weight: store.value(l.weight), bias: l.bias.map { store.value($0) }, n: batch,
                    channels: l.channels, hw: l.hw, eps: l.eps)
            case .linear(let l):
                linearForward(
                    output: v[l.output.index].pointer, input: v[l.input.index].pointer,
                    weight: store.value(l.weight), bias: l.bias.map { store.value($0) }, n: batch,
                    inFeatures: l.inFeatures, outFeatures: l.outFeatures)
            }
        }
        if training {
            lastTrainingBatch = batch
            lastTrainingReducer = batchNormGroupReducer
        }
        return v[graph.logits.index].pointer
    }

    // MARK: - backward

    /// Backpropagates `dLogits` (`[batch, classes]`) through the last training-mode forward.
    /// ACCUMULATES parameter gradients into `store.grads` (zero them once per optimizer step).
    /// - Parameter onGradientsReady: called on the way back, right after each conv (dense,
    ///   grouped, depthwise), BN and linear layer, with the range of `store.grads` (its parameters' gradients) that no
    ///   later part of this backward writes, so a caller can start reducing it at once.
    public func backward(
        dLogits: UnsafePointer<Float>, onGradientsReady: ((Range<Int>) -> Void)? = nil
    ) {
        guard let batch = lastTrainingBatch,
            let arena = arenas[ArenaKey(batch: batch, training: true)]
        else { fatalError("Network.backward called without a training-mode forward") }
        let v = arena.values
        // Activation gradients live in a small pool: a tensor's gradient is taken when the
        // first layer that feeds it back runs and returned once its producer has consumed it,
        // so only the few gradients crossing the current layer exist at any time (about 3 for
        // a ResNet) instead of one per tensor. A freshly taken buffer is zeroed for kernels
        // that accumulate, unless the first contributor stores its result outright (BN, add,
        // concat).
        var slotOf = [Int](repeating: -1, count: graph.tensors.count)
        var free = Array(arena.gradPool.indices.reversed())  // the pool persists across steps
        func slot(_ t: TensorID) -> (UnsafeMutablePointer<Float>, fresh: Bool) {
            if slotOf[t.index] >= 0 { return (arena.gradPool[slotOf[t.index]].pointer, false) }
            let slot: Int
            if let f = free.popLast() {
                slot = f
            } else {
                arena.gradPool.append(FloatBuffer(count: arena.maxTensorCount))
                slot = arena.gradPool.count - 1
            }
            slotOf[t.index] = slot
            return (arena.gradPool[slot].pointer, true)
        }
        func take(_ t: TensorID) -> UnsafeMutablePointer<Float> {
            let (p, fresh) = slot(t)
            if fresh { p.update(repeating: 0, count: batch * graph.tensors[t.index].count) }
            return p
        }
        func grad(_ t: TensorID) -> UnsafeMutablePointer<Float>? {
            t == graph.input ? nil : take(t)
        }
        func release(_ t: TensorID) {
            if slotOf[t.index] >= 0 {
                free.append(slotOf[t.index])
                slotOf[t.index] = -1
            }
        }
        // Each layer's parameters (weight then bias, or scale then shift) are declared
        // together, so they are one range; report separately if a graph ever differs.
        func ready(_ first: ParameterID, _ second: ParameterID?) {
            guard let onGradientsReady else { return }
            let a = store[first].offset..<(store[first].offset + store[first].count)
            guard let second else { return onGradientsReady(a) }
            let b = store[second].offset..<(store[second].offset + store[second].count)
            if a.upperBound == b.lowerBound {
                onGradientsReady(a.lowerBound..<b.upperBound)
            } else {
                onGradientsReady(a)
                onGradientsReady(b)
            }
        }
        slot(graph.logits).0.update(from: dLogits, count: batch * numClasses)  // stored: no zeroing
        for li in graph.layers.indices.reversed() {
            switch graph.layers[li] {
            case .conv(let l):
                if l.groups == 1 {
                    conv2dBackward(
                        dInput: grad(l.input), dWeight: store.grad(l.weight),
                        dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                        input: v[l.input.index].pointer, weight: store.value(l.weight),
                        shape: arena.convShapes[li]!, workspace: arena.workspace.pointer)
                } else {
                    groupedConv2dBackward(
                        dInput: grad(l.input), dWeight: store.grad(l.weight),
                        dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                        input: v[l.input.index].pointer, weight: store.value(l.weight),
                        shape: arena.convShapes[li]!, groups: l.groups,
                        workspace: arena.workspace.pointer)
                }
                ready(l.weight, l.bias)
            case .depthwiseConv(let l):
                depthwiseConv2dBackward(
                    dInput: grad(l.input), dWeight: store.grad(l.weight),
                    dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                    input: v[l.input.index].pointer, weight: store.value(l.weight),
                    shape: arena.convShapes[li]!)
                ready(l.weight, l.bias)
            case .batchNorm(let l):
                let dy = take(l.output)
                if l.relu {
                    reluMaskInPlace(
                        dOutput: dy, output: v[l.output.index].pointer,
                        count: batch * l.channels * l.hw)
                }
                let (dx, fresh) = slot(l.input)
                if let reduce = lastTrainingReducer {
                    groupBatchNormBackward(l, li, arena, batch, reduce, dx: dx, dy: dy, fresh)
                } else {
                    batchNormBackward(
                        dInput: dx, dScale: store.grad(l.scale), dShift: store.grad(l.shift),
                        dOutput: dy, input: v[l.input.index].pointer, scale: store.value(l.scale),
                        saveMean: arena.bnMean[li]!.pointer,
                        saveInvStd: arena.bnInvStd[li]!.pointer,
                        n: batch, c: l.channels, hw: l.hw, overwriteInput: fresh)
                }
                ready(l.scale, l.shift)
            case .add(let l):
                let n = batch * graph.tensors[l.output.index].count
                let dy = take(l.output)
                let relu = l.relu ? v[l.output.index].pointer : nil
                if l.a == l.b {  // x + x: one buffer, two contributions
                    let dx = take(l.a)
                    addBackward(dA: dx, dB: dx, dOutput: dy, count: n, reluOutput: relu)
                } else {
                    let (da, freshA) = slot(l.a)
                    let (db, freshB) = slot(l.b)
                    addBackward(
                        dA: da, dB: db, dOutput: dy, count: n, reluOutput: relu,
                        overwriteA: freshA, overwriteB: freshB)
                }
            case .maxPool(let l):
                if let dx = grad(l.input) {
                    maxPoolBackward(
                        dInput: dx, dOutput: take(l.output),
                        argmax: arena.argmax[li]!, shape: l.shape.with(batch: batch))
                }
            case .globalAvgPool(let l):
                globalAvgPoolBackward(
                    dInput: grad(l.input)!, dOutput: take(l.output),
                    nc: batch * l.channels, hw: l.hw)
            case .activation(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    activationBackward(
                        l.kind, dInput: dx, dOutput: dy, input: v[l.input.index].pointer,
                        output: v[l.output.index].pointer,
                        count: batch * graph.tensors[l.output.index].count)
                }
            case .globalMaxPool(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    globalMaxPoolBackward(
                        dInput: dx, dOutput: dy, argmax: arena.argmax[li]!,
                        nc: batch * l.channels, hw: l.hw)
                }
            case .channelScale(let l):
                let dy = take(l.output)
                // Both gradients accumulate, so a tensor gating itself needs no special case.
                channelScaleBackward(
                    dInput: grad(l.input), dGate: grad(l.gate), dOutput: dy,
                    input: v[l.input.index].pointer, gate: v[l.gate.index].pointer,
                    nc: batch * l.channels, hw: l.hw)
            case .channelSlice(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    channelSliceBackward(
                        dInput: dx, dOutput: dy, start: l.start, count: l.count,
                        channels: l.inputChannels, n: batch, hw: l.hw)
                }
            case .pad(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    padBackward(
                        dInput: dx, dOutput: dy, planes: batch * l.shape.c, h: l.shape.h,
                        w: l.shape.w, top: l.top, left: l.left, bottom: l.bottom, right: l.right)
                }
            case .upsample(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    upsampleBackward(
                        dInput: dx, dOutput: dy, planes: batch * l.shape.c, h: l.shape.h,
                        w: l.shape.w, factor: l.factor)
                }
            case .channelShuffle(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    channelShuffleBackward(
                        dInput: dx, dOutput: dy, channels: l.channels, groups: l.groups, n: batch,
                        hw: l.hw)
                }
            case .concat(let l):
                let dy = take(l.output)
                let total = graph.tensors[l.output.index].c
                for (j, t) in l.inputs.enumerated() where t != graph.input {
                    // A fresh buffer is stored outright (the slice covers all of it); a tensor
                    // listed twice, or also read by another layer, accumulates.
                    let (dx, fresh) = slot(t)
                    concatBackward(
                        dInput: dx, dOutput: dy, offset: l.offsets[j], channels: l.channels[j],
                        totalChannels: total, n: batch, hw: l.hw, overwrite: fresh)
                }
            case .avgPool(let l):
                let dy = take(l.output)
                if let dx = grad(l.input) {
                    avgPoolBackward(
                        dInput: dx, dOutput: dy, shape: l.shape.with(batch: batch),
                        countIncludePad: l.countIncludePad)
                }
            case .channelConv(let l):
                channelConvBackward(
                    dInput: grad(l.input), dWeight: store.grad(l.weight),
                    dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                    input: v[l.input.index].pointer, weight: store.value(l.weight), n: batch,
                    channels: l.channels, kernel: l.kernel, pad: l.pad)
                ready(l.weight, l.bias)
            case .channelNorm(let l):
                channelNormBackward(
                    dInput: grad(l.input), dWeight: store.grad(l.weight),
                    dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                    input: v[l.input.index].pointer, weight: store.value(l.weight), n: batch,
                    channels: l.channels, hw: l.hw, eps: l.eps)
                ready(l.weight, l.bias)
            case .linear(let l):
                linearBackward(
                    dInput: grad(l.input), dWeight: store.grad(l.weight),
                    dBias: l.bias.map { store.grad($0) }, dOutput: take(l.output),
                    input: v[l.input.index].pointer, weight: store.value(l.weight), n: batch,
                    inFeatures: l.inFeatures, outFeatures: l.outFeatures)
                ready(l.weight, l.bias)
            }
            release(graph.layers[li].output)
        }
    }

    /// Activation-gradient buffers currently allocated (bounded after the first backward).
    public var gradientBufferCount: Int { arenas.values.reduce(0) { $0 + $1.gradPool.count } }

    /// Frees all activation arenas (e.g. after training, before a large eval).
    public func releaseActivations() {
        arenas.removeAll()
        lastTrainingBatch = nil
    }

    // MARK: - arena

    private struct ArenaKey: Hashable {
        let batch: Int
        let training: Bool
    }

    private final class Arena {
        var values: [FloatBuffer] = []
        /// Reusable activation-gradient buffers (see `backward`), each `maxTensorCount` floats.
        var gradPool: [FloatBuffer] = []
        var maxTensorCount = 0
        var convShapes: [Int: Conv2dShape] = [:]
        var bnMean: [Int: FloatBuffer] = [:]
        var bnInvStd: [Int: FloatBuffer] = [:]
        /// BatchNorm groups: the pooled element count per BN layer (from forward, for backward)
        /// and the doubles a group sums, sized for the widest layer.
        var bnPooledCount: [Int: Int] = [:]
        var groupSums: [Double] = []
        var argmax: [Int: UnsafeMutablePointer<Int32>] = [:]
        var workspace = FloatBuffer(count: 0)
        /// A fused BatchNorm's per-channel `a`, `b` (eval mode), sized for the widest layer.
        var affineScale = FloatBuffer(count: 0)
        var affineShift = FloatBuffer(count: 0)
        deinit { for p in argmax.values { p.deallocate() } }
    }

    /// Training-mode BatchNorm over a group of ranks: statistics → group sum → normalise.
    private func groupBatchNormForward(
        _ l: BatchNormLayer, _ li: Int, _ arena: Arena, _ batch: Int,
        _ reduce: (UnsafeMutablePointer<Double>, Int) -> Void
    ) {
        let count = batchNormStatisticsCount(channels: l.channels)
        if arena.groupSums.count < count { arena.groupSums = [Double](repeating: 0, count: count) }
        let x = arena.values[l.input.index].pointer
        arena.groupSums.withUnsafeMutableBufferPointer { p in
            let stats = p.baseAddress!
            batchNormStatistics(stats: stats, input: x, n: batch, c: l.channels, hw: l.hw)
            reduce(stats, count)
            arena.bnPooledCount[li] = Int(exactly: stats[3 * l.channels]) ?? 0
            batchNormNormalize(
                output: arena.values[l.output.index].pointer, saveMean: arena.bnMean[li]!.pointer,
                saveInvStd: arena.bnInvStd[li]!.pointer, runningMean: store.buffer(l.runningMean),
                runningVar: store.buffer(l.runningVar), input: x, stats: stats,
                scale: store.value(l.scale), shift: store.value(l.shift), n: batch,
                c: l.channels, hw: l.hw, config: batchNormConfig(l), relu: l.relu)
        }
    }

    /// BatchNorm backward over a group of ranks: local sums (and this rank's dγ, dβ share) →
    /// group sum → input gradient of the pooled batch.
    private func groupBatchNormBackward(
        _ l: BatchNormLayer, _ li: Int, _ arena: Arena, _ batch: Int,
        _ reduce: (UnsafeMutablePointer<Double>, Int) -> Void,
        dx: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>, _ fresh: Bool
    ) {
        let count = batchNormGradientSumsPerChannel * l.channels
        let x = arena.values[l.input.index].pointer
        arena.groupSums.withUnsafeMutableBufferPointer { p in
            let sums = p.baseAddress!
            batchNormBackwardSums(
                sums: sums, dScale: store.grad(l.scale), dShift: store.grad(l.shift), dOutput: dy,
                input: x, saveMean: arena.bnMean[li]!.pointer,
                saveInvStd: arena.bnInvStd[li]!.pointer, n: batch, c: l.channels, hw: l.hw)
            reduce(sums, count)
            batchNormBackwardInput(
                dInput: dx, dOutput: dy, input: x, scale: store.value(l.scale),
                saveMean: arena.bnMean[li]!.pointer, saveInvStd: arena.bnInvStd[li]!.pointer,
                sums: sums, count: arena.bnPooledCount[li]!, n: batch, c: l.channels, hw: l.hw,
                overwriteInput: fresh)
        }
    }

    private func arena(batch: Int, training: Bool) -> Arena {
        let key = ArenaKey(batch: batch, training: training)
        if let a = arenas[key] { return a }
        let a = Arena()
        a.values = graph.tensors.map { FloatBuffer(count: batch * $0.count) }
        a.maxTensorCount = batch * (graph.tensors.map(\.count).max() ?? 0)
        var ws = 0
        for (li, layer) in graph.layers.enumerated() {
            switch layer {
            case .conv(let l):
                let s = l.shape.with(batch: batch)
                a.convShapes[li] = s
                ws = max(
                    ws, l.groups == 1 ? s.workspaceCount : s.groupedWorkspaceCount(groups: l.groups)
                )
            case .depthwiseConv(let l):
                a.convShapes[li] = l.shape.with(batch: batch)
            case .batchNorm(let l) where training:
                a.bnMean[li] = FloatBuffer(count: l.channels)
                a.bnInvStd[li] = FloatBuffer(count: l.channels)
            case .maxPool(let l):
                let n = batch * graph.tensors[l.output.index].count
                a.argmax[li] = .allocate(capacity: n)
            case .globalMaxPool(let l):
                a.argmax[li] = .allocate(capacity: batch * l.channels)
            default: break
            }
        }
        a.workspace = FloatBuffer(count: ws)
        let widest = graph.tensors.map(\.c).max() ?? 0
        a.affineScale = FloatBuffer(count: widest)
        a.affineShift = FloatBuffer(count: widest)
        arenas[key] = a
        return a
    }
}
