import CSGDCentripetal
import CSGDCore
import CSGDModels
import CSGDTestGraphs
import XCTest

/// The channel rules of the modern ops: a squeeze-excitation gate's producing conv is coupled
/// to the gated space (a gate, not a residual branch), its hidden width is a space of its own,
/// slices and shuffles hold the spaces they cut fixed, a conv classifier's space is fixed — and
/// once clusters collapse, the pruned net is the same function.
extension GraphPruningTests {
    func testSqueezeExcitationGateIsCoupledToTheGatedChannels() throws {
        let (net, t) = try network(ModernOpGraphs.squeezeExcitation().nodes)
        let expanded = group(t, "b.expand")
        XCTAssertEqual(expanded.producers.map { t.convs[$0].name }, ["b.expand", "b.se.expand"])
        XCTAssertEqual(expanded.gates.map { t.convs[$0].name }, ["b.se.expand"])
        XCTAssertFalse(expanded.isResidual)
        XCTAssertTrue(expanded.isBlockInternal)
        XCTAssertEqual(reads(t, expanded), ["b.se.reduce@0", "b.project@0"])
        // The gate's rows (kernel and bias) are pulled with the gated channels' filters.
        XCTAssertTrue(coupled(expanded).contains("b.se.expand.weight@0"))
        XCTAssertTrue(coupled(expanded).contains("b.se.expand.bias@0"))
        XCTAssertTrue(group(t, "b.se.reduce").isBlockInternal)
        // The head's Sigmoid-gated SE couples the same way; the stem is a residual stream.
        XCTAssertEqual(group(t, "head").gates.map { t.convs[$0].name }, ["head.se.expand"])
        XCTAssertTrue(group(t, "stem").isResidual)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        // stem, b.expand, se.reduce, se.expand (= b.expand), project (= stem), head, …
        XCTAssertEqual(thin.architecture.widths, [4, 8, 2, 8, 4, 6, 3, 6])
        // `internal:` prunes the expanded channels, both SE hidden widths and the head.
        let plan = try Clustering.plan(
            network: net, topology: t, target: .internalRatio(0.5), method: .even, seed: 1)
        XCTAssertEqual(plan.prunedWidths(t), [8, 8, 2, 8, 8, 6, 3, 6])
    }

    func testSlicedAndShuffledSpacesAreFixedAndTheRestPrunesExactly() throws {
        let spec = ModernOpGraphs.shuffle()
        let arch = try Architecture.from(spec: spec, model: "t", inputChannels: 3, imageSize: 8)
        let net = try Network(architecture: arch)
        net.initialize(seed: 4)
        randomizePerChannelTensors(net, seed: 5)
        let t = try Topology(graph: net.graph)
        XCTAssertTrue(group(t, "stem").fixedReason!.contains("channel slice"), "\(t.groups)")
        XCTAssertTrue(group(t, "b.pw2").fixedReason!.contains("channel shuffle"))
        XCTAssertTrue(group(t, "classifier").fixedReason!.contains("network output"))
        XCTAssertFalse(group(t, "b.pw1").isFixed)
        XCTAssertFalse(group(t, "head").isFixed)
        // The slice's runs are parts of the stem's space, marked as such.
        let sliced = t.segments[4]
        XCTAssertEqual(sliced.map(\.isWhole), [false])
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [8, 3, 4, 5, 5])
    }

    /// ECA's Conv1d mixes neighbouring channels, so the space it gates (here the stem's
    /// residual stream, which the gated branch is added to) keeps its width; the branch's
    /// hidden width and the head prune, exactly.
    func testECAGatedSpaceIsFixedAndTheRestPrunesExactly() throws {
        let (net, t) = try network(ModernOpGraphs.efficientChannelAttention().nodes)
        let gated = group(t, "b.conv2")
        XCTAssertTrue(gated.fixedReason!.contains("ECA conv b.eca.conv"), "\(t.groups)")
        XCTAssertEqual(gated.producers.map { t.convs[$0].name }, ["stem", "b.conv2"])
        XCTAssertEqual(gated.gates, [], "the ECA gate has no producing conv of its own")
        XCTAssertFalse(group(t, "b.conv1").isFixed)
        XCTAssertFalse(group(t, "head").isFixed)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [8, 3, 8, 5])
    }

    /// LayerNorm over channels normalises by statistics over all of them, so the stream it
    /// reads (stem + the block's output, one residual space) keeps its width; the block's 4×
    /// hidden width between the two 1×1 convs prunes, exactly, through GELU.
    func testLayerNormedStreamIsFixedAndTheHiddenWidthPrunesExactly() throws {
        let (net, t) = try network(ModernOpGraphs.convNeXt().nodes)
        let stream = group(t, "stem")
        XCTAssertTrue(stream.fixedReason?.contains("LayerNorm") ?? false, "\(t.groups)")
        XCTAssertEqual(stream.producers.map { t.convs[$0].name }, ["stem", "b.pw2"])
        XCTAssertFalse(group(t, "b.pw1").isFixed)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [8, 8, 8])
    }

    /// The upsampled branch joins the full-resolution stream: one residual group, pruned
    /// together through the upsampling and the pad.
    func testUpsampledBranchJoinsTheStreamItIsAddedTo() throws {
        let (net, t) = try network(ModernOpGraphs.multiResolution().nodes)
        XCTAssertEqual(group(t, "stem").producers.map { t.convs[$0].name }, ["stem", "fuse"])
        XCTAssertTrue(group(t, "stem").isResidual)
        XCTAssertFalse(group(t, "down").isFixed)
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [4, 3, 4, 5])
    }

    /// Every op of the table appears in some graph whose prune is checked exact here.
    func testEveryOpHasAnExactPruneCase() throws {
        var used = Set<NodeSpec.Op>()
        for spec in [denseNet(), mobileNet()] { used.formUnion(spec.map(\.op)) }
        for (_, spec) in ModernOpGraphs.all { used.formUnion(spec.nodes.map(\.op)) }
        XCTAssertEqual(NodeSpec.Op.allCases.filter { !used.contains($0) }, [])
    }
}

extension GraphPruningTests {
    /// A cluster whose β sits near zero counts as collapsed once its rows agree to the group's
    /// scale (it failed when measured against its own ~1e-7 values, and a ResNet-50 kept four
    /// clusters' BN statistics apart); a real difference is still caught.
    func testCollapseIsMeasuredAgainstTheGroupsRows() throws {
        let (net, t) = try network([
            conv("c1", 0, 4), bn("bn1", 1, relu: true), op(.globalAvgPool, 2), fc(3),
        ])
        let g = group(t, "c1")
        for c in g.coupled {
            guard let p = c.parameter else { continue }
            let w = net.store.value(p) + c.channelOffset * c.rowLength
            (w + c.rowLength).update(from: w, count: c.rowLength)  // row 1 = row 0
        }
        let beta = net.store.value(net.store.parameterID(named: "bn1.bias")!)
        beta[0] = 1e-7
        beta[1] = 1.1e-7
        beta[2] = 0.8
        XCTAssertTrue(
            RunningStatistics.isCollapsed([0, 1], group: g, store: net.store, tolerance: 1e-5))
        beta[1] = 1e-7 + 1e-3
        XCTAssertFalse(
            RunningStatistics.isCollapsed([0, 1], group: g, store: net.store, tolerance: 1e-5))
    }
}

extension GraphPruningTests {
    /// ReXNet adds its shortcut into the first channels of a wider block output
    /// (`x[:, :C] += shortcut`) and DPN adds the residual slices of two wider outputs: a part
    /// of one space meets a whole (or a part of) another. Such spaces must not become one
    /// group — a group of producers of different widths gave tied convs two targets
    /// ("must get one width, got [27, 38]"); both sides are held fixed instead, each group's
    /// producers share its width, and the rest prunes exactly.
    func testPartialShortcutsHoldBothSidesFixedAndKeepOneWidthPerGroup() throws {
        let (net, t) = try network([
            conv("stem", 0, 4), bn("stem.bn", 1, relu: true),  // t2 [4]
            conv("b1.exp", 2, 8, kernel: 1), bn("b1.bn1", 3, relu: true),  // t4 [8]
            conv("b1.pwl", 4, 6, kernel: 1), bn("b1.bn2", 5),  // t6 [6]
            NodeSpec(op: .channelSlice, inputs: [6], outChannels: 4, start: 0),  // t7 [4]
            op(.add, 7, 2),  // t8: ReXNet's partial shortcut
            NodeSpec(op: .channelSlice, inputs: [6], outChannels: 2, start: 4),  // t9 [2]
            op(.concat, 8, 9),  // t10 [6]
            conv("b2.pwl", 10, 10, kernel: 1), bn("b2.bn", 11),  // t12 [10]
            conv("b3.pwl", 10, 12, kernel: 1), bn("b3.bn", 13),  // t14 [12]
            NodeSpec(op: .channelSlice, inputs: [12], outChannels: 8, start: 0),  // t15 [8]
            NodeSpec(op: .channelSlice, inputs: [14], outChannels: 8, start: 0),  // t16 [8]
            op(.add, 15, 16),  // t17: DPN's residual parts of two wider outputs
            conv("head", 17, 6), bn("head.bn", 18, relu: true),  // t19
            op(.globalAvgPool, 19), fc(20),
        ])
        for g in t.groups {
            XCTAssertEqual(
                Set(g.producers.map { t.convs[$0].width }), [g.width],
                "group of \(t.convs[g.pacesetter].name)")
        }
        XCTAssertEqual(group(t, "stem").producers.map { t.convs[$0].name }, ["stem"])
        XCTAssertTrue(group(t, "stem").fixedReason!.contains("another structure"))
        XCTAssertTrue(group(t, "b1.pwl").isFixed)
        XCTAssertEqual(group(t, "b2.pwl").producers.map { t.convs[$0].name }, ["b2.pwl"])
        XCTAssertTrue(group(t, "b2.pwl").isFixed)
        XCTAssertTrue(group(t, "b3.pwl").isFixed)
        XCTAssertFalse(group(t, "b1.exp").isFixed)
        // Per-conv targets (what a C-SGD round asks for) are one width per group.
        let perConv = PruneTarget.perConv(
            t.convs.map { c in t.groups[c.groupIndex].isFixed ? c.width : (c.width + 1) / 2 })
        XCTAssertEqual(try perConv.groupWidths(t), [4, 4, 6, 10, 12, 3])
        let thin = try checkExact(net, t, target: .ratio(0.5))
        XCTAssertEqual(thin.architecture.widths, [4, 4, 6, 10, 12, 3])
    }
}
