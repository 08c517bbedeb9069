import CSGDCentripetal
import CSGDCore
import CSGDModels
import XCTest

/// Exact C-SGD pruning on hand-built graphs of every op of the graph contract: the derived
/// groups, consumers and coupled tensors are the expected ones, and once every cluster's
/// coupled tensors are identical, the pruned net is the same function (eval mode).
final class GraphPruningTests: XCTestCase {
    // Tensor numbering: 0 is the image, node i writes tensor i + 1.
    func conv(
        _ name: String, _ x: Int, _ k: Int, kernel: Int = 3, stride: Int = 1, groups: Int? = nil,
        bias: Bool? = nil
    ) -> NodeSpec {
        NodeSpec(
            op: .conv, name: name, inputs: [x], outChannels: k, kernel: kernel, stride: stride,
            pad: kernel / 2, groups: groups, bias: bias)
    }
    func bn(_ name: String, _ x: Int, relu: Bool = false) -> NodeSpec {
        NodeSpec(op: .batchNorm, name: name, inputs: [x], relu: relu ? true : nil)
    }
    func op(_ op: NodeSpec.Op, _ xs: Int...) -> NodeSpec { NodeSpec(op: op, inputs: xs) }
    func fc(_ x: Int, _ classes: Int = 5) -> NodeSpec {
        NodeSpec(op: .linear, name: "fc", inputs: [x], outChannels: classes)
    }

    func network(_ nodes: [NodeSpec], seed: UInt64 = 4) throws -> (Network, Topology) {
        let spec = GraphSpec(nodes: nodes, output: nodes.count)
        let arch = try Architecture.from(spec: spec, model: "test", inputChannels: 3, imageSize: 8)
        let net = try Network(architecture: arch)
        net.initialize(seed: seed)
        randomizePerChannelTensors(net, seed: seed &+ 1)
        return (net, try Topology(graph: net.graph))
    }

    func group(_ t: Topology, _ conv: String) -> ChannelGroup {
        t.groups[t.convs.first { $0.name == conv }!.groupIndex]
    }
    func reads(_ t: Topology, _ g: ChannelGroup) -> [String] {
        g.reads.map { r in
            switch r.consumer {
            case .conv(let c): return "\(t.convs[c].name)@\(r.channelOffset)"
            case .linear(_, let p): return "fc@\(r.channelOffset)×\(p)"
            }
        }
    }
    func coupled(_ g: ChannelGroup) -> [String] {
        g.coupled.map { "\($0.name)@\($0.channelOffset)" }
    }

    /// Collapses the clusters of `target`, prunes, and checks the logits on random images.
    /// - Returns: the pruned net.
    @discardableResult
    func checkExact(
        _ net: Network, _ t: Topology, target: PruneTarget, method: ClusterMethod = .kmeans,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> Network {
        let plan = try Clustering.plan(
            network: net, topology: t, target: target, method: method, seed: 3)
        XCTAssertTrue(
            t.groups.contains { plan.isClustered(group: $0.index) }, "no real cluster", file: file,
            line: line)
        let x = randomImages(count: 4, floats: net.imageCount, seed: 11)
        // Not vacuous: before the collapse, the pruned net is a different function.
        let raw = try Pruner.prune(net, topology: t, plan: plan)
        let rawDiff = maxDiff(logits(net, x, batch: 4), logits(raw, x, batch: 4)).diff
        XCTAssertGreaterThan(rawDiff, 1e-3, file: file, line: line)
        collapse(net, t, plan)
        let thin = try Pruner.prune(net, topology: t, plan: plan)
        XCTAssertEqual(thin.architecture.widths, plan.prunedWidths(t), file: file, line: line)
        XCTAssertLessThan(thin.graph.flopsPerImage, net.graph.flopsPerImage, file: file, line: line)
        let (d, scale) = maxDiff(logits(net, x, batch: 4), logits(thin, x, batch: 4))
        XCTAssertGreaterThan(scale, 0.05, "logits are degenerate", file: file, line: line)
        XCTAssertLessThanOrEqual(
            d, 1e-5 * max(1, scale), "max |Δlogit| \(d)", file: file, line: line)
        return thin
    }

    /// conv → [BN-ReLU-conv → concat] × 2 → BN-ReLU-1×1 transition → avg pool →
    /// BN-ReLU-conv → concat → BN-ReLU → global pool → FC.
    func denseNet() -> [NodeSpec] {
        [
            conv("conv0", 0, 8),  // t1
            bn("d1.bn", 1, relu: true), conv("d1.conv", 2, 4), op(.concat, 1, 3),  // t4: 12
            bn("d2.bn", 4, relu: true), conv("d2.conv", 5, 4), op(.concat, 4, 6),  // t7: 16
            bn("t.bn", 7, relu: true), conv("trans", 8, 8, kernel: 1),  // t9
            NodeSpec(op: .avgPool, inputs: [9], kernel: 2, stride: 2, pad: 0),  // t10: 4×4
            bn("d3.bn", 10, relu: true), conv("d3.conv", 11, 4), op(.concat, 10, 12),  // t13
            bn("final.bn", 13, relu: true), op(.globalAvgPool, 14), fc(15),
        ]
    }

    func testDenseNetConcatGroupsOffsetsAndPreActivationBatchNorms() throws {
        let (net, t) = try network(denseNet())
        XCTAssertEqual(t.groups.count, 5)
        let g0 = group(t, "conv0")
        XCTAssertTrue(g0.isStem && g0.isConcatenated && !g0.isBlockInternal)
        XCTAssertEqual(reads(t, g0), ["d1.conv@0", "d2.conv@0", "trans@0"])
        XCTAssertEqual(
            coupled(g0),
            [
                "conv0.weight@0", "d1.bn.weight@0", "d1.bn.bias@0", "d1.bn.running_mean@0",
                "d1.bn.running_var@0", "d2.bn.weight@0", "d2.bn.bias@0", "d2.bn.running_mean@0",
                "d2.bn.running_var@0", "t.bn.weight@0", "t.bn.bias@0", "t.bn.running_mean@0",
                "t.bn.running_var@0",
            ])
        let g1 = group(t, "d1.conv")
        XCTAssertEqual(reads(t, g1), ["d2.conv@8", "trans@8"])
        XCTAssertEqual(
            coupled(g1).filter { $0.contains("weight") },
            ["d1.conv.weight@0", "d2.bn.weight@8", "t.bn.weight@8"])
        XCTAssertEqual(reads(t, group(t, "d2.conv")), ["trans@12"])
        let g3 = group(t, "trans")
        XCTAssertTrue(g3.isConcatenated && !g3.isBlockInternal)
        XCTAssertEqual(reads(t, g3), ["d3.conv@0", "fc@0×1"])
        XCTAssertEqual(reads(t, group(t, "d3.conv")), ["fc@8×1"])
        XCTAssertTrue(t.groups.allSatisfy { !$0.isFixed && !$0.isResidual })
        XCTAssertEqual(
            t.segments[13].map(\.offset), [0, 8], "concat of the pooled transition and d3.conv")
        try checkExact(net, t, target: .ratio(0.5))
    }

    func testDenseNetBatchNormOnTheConcatMustBeCollapsedToo() throws {
        // Guards the pre-activation coupling against vacuity: collapse everything but d2.bn's
        // rows for d1.conv's channels, and the prune is no longer exact.
        let (net, t) = try network(denseNet())
        let plan = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .even, seed: 3)
        collapse(net, t, plan)
        let g1 = group(t, "d1.conv")
        let gamma = net.store.value(net.store.parameterID(named: "d2.bn.weight")!)
        for h in plan.groups[g1.index] { for j in h.dropFirst() { gamma[8 + j] += 0.5 } }
        let thin = try Pruner.prune(net, topology: t, plan: plan)
        let x = randomImages(count: 4, floats: net.imageCount, seed: 11)
        XCTAssertGreaterThan(
            maxDiff(logits(net, x, batch: 4), logits(thin, x, batch: 4)).diff, 1e-3)
    }

    /// stem → BN → ReLU6 → [1×1 expand-BN-ReLU6 → depthwise 3×3-BN-ReLU6 → 1×1 project-BN]
    /// + the block input → 1×1 head-BN-ReLU6 → global pool → FC.
    func mobileNet() -> [NodeSpec] {
        [
            conv("stem", 0, 8), bn("stem.bn", 1), op(.relu6, 2),  // t3
            conv("b1.expand", 3, 16, kernel: 1), bn("b1.bn1", 4), op(.relu6, 5),  // t6
            NodeSpec(op: .depthwiseConv, name: "b1.dw", inputs: [6], kernel: 3, stride: 1, pad: 1),
            bn("b1.bn2", 7), op(.relu6, 8),  // t9
            conv("b1.project", 9, 8, kernel: 1), bn("b1.bn3", 10),  // t11
            op(.add, 3, 11),  // t12
            conv("head", 12, 12, kernel: 1), bn("head.bn", 13), op(.relu6, 14),  // t15
            op(.globalAvgPool, 15), fc(16),
        ]
    }

    func testMobileNetInvertedResidualDepthwiseFollowsItsInput() throws {
        let (net, t) = try network(mobileNet())
        XCTAssertEqual(t.groups.count, 3)
        let stream = group(t, "stem")
        XCTAssertEqual(stream.producers.map { t.convs[$0].name }, ["stem", "b1.project"])
        XCTAssertTrue(stream.isResidual && stream.isStem && !stream.isBlockInternal)
        XCTAssertEqual(reads(t, stream), ["b1.expand@0", "head@0"])
        let expanded = group(t, "b1.expand")
        XCTAssertTrue(expanded.isBlockInternal)
        XCTAssertEqual(reads(t, expanded), ["b1.project@0"])
        XCTAssertEqual(
            coupled(expanded),
            [
                "b1.expand.weight@0", "b1.bn1.weight@0", "b1.bn1.bias@0", "b1.bn1.running_mean@0",
                "b1.bn1.running_var@0", "b1.dw.weight@0", "b1.bn2.weight@0", "b1.bn2.bias@0",
                "b1.bn2.running_mean@0", "b1.bn2.running_var@0",
            ])
        XCTAssertEqual(expanded.coupled.first { $0.name == "b1.dw.weight" }?.kind, .kernel)
        XCTAssertEqual(expanded.coupled.first { $0.name == "b1.dw.weight" }?.rowLength, 9)
        XCTAssertTrue(group(t, "head").isBlockInternal)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [4, 8, 4, 6])
        // The depthwise conv follows its input: 8 filters after pruning.
        XCTAssertEqual(
            thin.store[thin.store.parameterID(named: "b1.dw.weight")!].shape, [8, 1, 3, 3])
        // `internal:` shrinks the expanded channels and the head only.
        let plan = try Clustering.plan(
            network: net, topology: t, target: .internalRatio(0.5), method: .even, seed: 1)
        XCTAssertEqual(plan.prunedWidths(t), [8, 8, 8, 6])
    }

    func testGroupedConvSpacesAreFixed() throws {
        let (net, t) = try network([
            conv("c1", 0, 8), bn("bn1", 1, relu: true),  // t2
            conv("g", 2, 8, groups: 2), bn("bn2", 3, relu: true),  // t4
            conv("c3", 4, 8), bn("bn3", 5, relu: true), op(.globalAvgPool, 6), fc(7),
        ])
        XCTAssertEqual(t.groups.count, 3)
        XCTAssertEqual(t.convs.map(\.convGroups), [1, 2, 1])
        XCTAssertTrue(group(t, "c1").isFixed && group(t, "g").isFixed)
        XCTAssertTrue(group(t, "c1").fixedReason!.contains("grouped conv g"))
        XCTAssertFalse(group(t, "c3").isFixed)
        XCTAssertFalse(group(t, "g").isBlockInternal)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [8, 8, 4])
        XCTAssertThrowsError(try PruneTarget.perConv([4, 8, 8]).groupWidths(t)) {
            XCTAssertTrue("\($0)".contains("grouped conv g"), "\($0)")
        }
        var bad = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .even, seed: 1)
        bad.groups[0] = Clustering.even(n: 8, clusters: 4)
        XCTAssertThrowsError(try bad.validate(t))
    }

    func testFoldedConvBiasWithoutBatchNormIsPulledAndGathered() throws {
        let (net, t) = try network([
            conv("c1", 0, 8, bias: true), op(.relu, 1),  // t2
            conv("c2", 2, 8, bias: true), op(.relu, 3),  // t4
            NodeSpec(op: .maxPool, inputs: [4], kernel: 2, stride: 2, pad: 0),  // t5
            conv("c3", 5, 6, bias: true), op(.relu, 6), op(.globalAvgPool, 7), fc(8),
        ])
        XCTAssertEqual(coupled(group(t, "c2")), ["c2.weight@0", "c2.bias@0"])
        XCTAssertEqual(reads(t, group(t, "c2")), ["c3@0"])
        let plan = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .even, seed: 1)
        let cen = CentripetalUpdate(
            topology: t, plan: plan, store: net.store, config: CentripetalConfig())
        let bias = net.store.parameterID(named: "c2.bias")!
        XCTAssertTrue(cen.tensors.contains { $0.parameter == bias && $0.isVector })
        try checkExact(net, t, target: .ratio(0.5))
    }

    func testClassifierOverAFlattenedPooledTensor() throws {
        let (net, t) = try network([
            conv("c1", 0, 8, stride: 2), bn("bn1", 1, relu: true),  // t2: 8×4×4
            conv("c2", 2, 8), bn("bn2", 3, relu: true),  // t4
            NodeSpec(
                op: .avgPool, inputs: [4], kernel: 2, stride: 2, pad: 0, countIncludePad: true),
            fc(5),  // 32 features: 4 per channel
        ])
        XCTAssertEqual(reads(t, group(t, "c2")), ["fc@0×4"])
        let thin = try checkExact(net, t, target: .ratio(0.5), method: .even)
        XCTAssertEqual(
            thin.graph.layers.last.map { l -> Int in
                if case .linear(let fc) = l { return fc.inFeatures } else { return 0 }
            }, 16)
    }

    /// A shortcut added to a concatenation (GhostNet, MixNet): the channels meet channels of
    /// other spaces, so every space of both sides is held fixed, naming the add; the rest of
    /// the net still prunes exactly.
    func testAddOfDifferentlyConcatenatedTensorsHoldsBothSidesFixed() throws {
        let (net, t) = try network([
            conv("a", 0, 4), conv("b", 0, 4), op(.concat, 1, 2), conv("c", 0, 8),
            op(.add, 3, 4),  // t5 [8]
            conv("d", 5, 6), bn("d.bn", 6, relu: true), op(.globalAvgPool, 7), fc(8),
        ])
        for name in ["a", "b", "c"] {
            XCTAssertTrue(
                group(t, name).fixedReason?.contains("4+4 vs 8, layer 4") == true,
                "\(group(t, name).fixedReason ?? "prunable")")
        }
        XCTAssertFalse(group(t, "d").isFixed)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [4, 4, 8, 3])
    }

    func testShortRoundFromTrainedStatisticsMergesThemAndPrunesExactly() throws {
        // A trained-like net: running statistics differ per channel. A short C-SGD round
        // collapses kernels, γ/β and depthwise filters, but the statistics still differ by
        // ~0.9^steps of their spread, so the prune is not exact until they are merged.
        let (net, t) = try network(mobileNet())
        let plan = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .kmeans, seed: 5)
        let cen = CentripetalUpdate(
            topology: t, plan: plan, store: net.store,
            config: CentripetalConfig(strength: 10, weightDecay: 0, vectorStrengthFactor: 1))
        let untouched = Array(net.store.buffers.buffer)
        let early = cen.mergeRunningStatistics(net.store)
        XCTAssertEqual(early.merged, 0, "clusters that have not collapsed keep their statistics")
        XCTAssertNotNil(early.notCollapsed)
        XCTAssertEqual(Array(net.store.buffers.buffer), untouched)
        let (batch, tau): (Int, Float) = (8, 0.05)
        var rng = Rng(seed: 21)
        let dLogits = FloatBuffer(count: batch * net.numClasses)
        for step in 0..<30 {
            let x = randomImages(count: batch, floats: net.imageCount, seed: 100 + UInt64(step))
            net.forward(images: x.pointer, batch: batch, training: true)
            for i in 0..<dLogits.count { dLogits[i] = rng.nextGaussian() * 0.1 / Float(batch) }
            net.store.grads.zero()
            net.backward(dLogits: dLogits.pointer)
            cen.transformGradients(net.store)
            for i in 0..<net.store.values.count { net.store.values[i] -= tau * net.store.grads[i] }
        }
        let dev = cen.deviation(net.store)
        XCTAssertLessThan(dev.kernels + dev.vectors, 1e-12)
        let x = randomImages(count: 4, floats: net.imageCount, seed: 7)
        let before = try Pruner.prune(net, topology: t, plan: plan)
        let unmerged = maxDiff(logits(net, x, batch: 4), logits(before, x, batch: 4)).diff
        XCTAssertGreaterThan(unmerged, 1e-4, "statistics should still differ after 30 steps")
        let merge = cen.mergeRunningStatistics(net.store)
        XCTAssertEqual(merge.merged, merge.clusters)
        XCTAssertGreaterThan(merge.largestChange, 1e-4)
        for g in t.groups {
            for c in g.coupled {
                guard let b = c.buffer else { continue }
                let v = net.store.buffer(b) + c.channelOffset
                for h in plan.groups[g.index] {
                    for j in h { XCTAssertEqual(v[j].bitPattern, v[h[0]].bitPattern, c.name) }
                }
            }
        }
        let thin = try Pruner.prune(net, topology: t, plan: plan)
        let (d, scale) = maxDiff(logits(net, x, batch: 4), logits(thin, x, batch: 4))
        XCTAssertGreaterThan(scale, 0.05)
        XCTAssertLessThanOrEqual(
            d, 1e-5 * max(1, scale), "max |Δlogit| \(d) (unmerged \(unmerged))")
    }
}

/// The built-in VGG / MobileNetV2 / DenseNet graphs at their real widths: exact after collapse.
final class BuiltInFamilyPruningTests: XCTestCase {
    func check(
        _ model: String, _ target: PruneTarget, file: StaticString = #filePath, line: UInt = #line
    )
        throws -> (Topology, ClusterPlan)
    {
        let a = try Architecture.standard(
            model: model, inputChannels: 1, imageSize: 32, numClasses: 10)
        let net = try Network(architecture: a)
        net.initialize(seed: 2)
        randomizePerChannelTensors(net, seed: 3)
        let t = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: t, target: target, method: .even, seed: 1)
        collapse(net, t, plan)
        let thin = try Pruner.prune(net, topology: t, plan: plan)
        XCTAssertLessThan(thin.graph.flopsPerImage, net.graph.flopsPerImage, file: file, line: line)
        let x = randomImages(count: 2, floats: net.imageCount, seed: 5)
        let (d, scale) = maxDiff(logits(net, x, batch: 2), logits(thin, x, batch: 2))
        XCTAssertGreaterThan(scale, 0.01, "\(model): degenerate logits", file: file, line: line)
        XCTAssertLessThanOrEqual(
            d, 1e-5 * max(1, scale), "\(model): max |Δlogit| \(d)", file: file, line: line)
        return (t, plan)
    }

    func testVGG16() throws {
        let (t, _) = try check("vgg16", .ratio(0.5))
        XCTAssertEqual(t.groups.filter(\.isBlockInternal).count, 12, "every conv but the stem")
    }

    func testMobileNetV2() throws {
        let (t, plan) = try check("mobilenetv2", .ratio(0.5))
        XCTAssertEqual(t.groups.filter(\.isResidual).count, 5)
        XCTAssertTrue(t.groups.allSatisfy { plan.isClustered(group: $0.index) })
        // `internal:` takes every expansion (with its depthwise conv and BNs), never a stream.
        let internalNames = t.groups.filter(\.isBlockInternal).map { t.convs[$0.pacesetter].name }
        let expansions = t.convs.map(\.name).filter { $0.hasSuffix(".conv.0.0") }
        XCTAssertEqual(expansions.count, 16)
        XCTAssertTrue(Set(expansions).isSubset(of: internalNames))
        XCTAssertFalse(t.groups.contains { $0.isResidual && $0.isBlockInternal })
    }

    func testDenseNet40ThreeThreeThree() throws {
        // The paper's DenseNet-40 "3-3-3": every growth layer 12 → 3; stem and transitions kept.
        let (t, plan) = try check("densenet40", .widthMap([12: 3]))
        XCTAssertEqual(t.groups.filter { plan.isClustered(group: $0.index) }.count, 36)
        XCTAssertTrue(t.groups.allSatisfy { !$0.isBlockInternal })
    }
}
