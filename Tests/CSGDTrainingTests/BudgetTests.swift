import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDModels
import CSGDTestSupport
import XCTest

@testable import CSGDTraining

/// Budgets, per-layer control, the widen round's clustering and cluster-mean merging
/// (docs/budget.md). FLOPs and parameters always come from graphs built at the chosen widths.
final class BudgetTests: XCTestCase {
    func arch(_ model: String, channels: Int = 3, size: Int = 32, classes: Int = 10, widen: Int = 1)
        throws -> Architecture
    {
        try Architecture.standard(
            model: model, inputChannels: channels, imageSize: size, numClasses: classes,
            widen: widen)
    }

    func randomNet(_ a: Architecture, seed: UInt64) throws -> Network {
        let net = try Network(architecture: a)
        net.initialize(seed: seed)
        return net
    }

    /// A deterministic stand-in for a measured table: convex in the width cut, scaled per
    /// group, so groups differ in how much they resist.
    func syntheticTable(_ a: Architecture, _ t: Topology, steps: Int) -> SensitivityTable {
        SensitivityTable(
            model: a.model, images: 0, baseLoss: 1, baseTop1: 0.5, flops: 0, params: 0,
            groups: t.groups.map { g in
                SensitivityTable.Group(
                    index: g.index, name: t.convs[g.pacesetter].name, convs: [],
                    width: g.width,
                    rows: Sensitivity.gridWidths(width: g.width, steps: steps, lower: 1).map { w in
                        let cut = 1 - Double(w) / Double(g.width)
                        return SensitivityTable.Row(
                            width: w, deltaLoss: cut * cut * Double(1 + (g.index * 7) % 5),
                            deltaTop1: 0, flops: 0, params: 0)
                    })
            })
    }

    func free(_ t: Topology) -> GroupBounds {
        GroupBounds(lower: t.groups.map { _ in 1 }, upper: t.groups.map(\.width))
    }

    /// The allocated widths rebuilt into a graph give the target within ±1%.
    func assertMeets(
        _ a: Architecture, _ t: Topology, _ alloc: Allocation, _ target: BudgetTarget,
        line: UInt = #line
    ) throws {
        var b = a
        b.widths = t.convs.map { alloc.groupWidths[$0.groupIndex] }
        let graph = try b.graph()
        let got = Double(target.metric.measure(graph))
        let goal = target.absolute(full: target.metric.measure(try a.graph()))
        XCTAssertEqual(Int(got), alloc.achieved, line: line)
        XCTAssertLessThanOrEqual(abs(got / goal - 1), 0.01, "\(got) vs \(goal)", line: line)
        XCTAssertLessThan(got, Double(target.metric.measure(try a.graph())), line: line)
    }

    // MARK: - widen

    func testWidenRoundClustersEveryFilterWithExactlyKMinusOneCopies() throws {
        for k in [2, 3] {
            let wide = try randomNet(try arch("resnet20", channels: 1, widen: k), seed: 5)
            let original = try arch("resnet20", channels: 1)
            let topology = try Topology(graph: wide.graph)
            let method = Pipelines.clusterMethod(for: .widenSqueeze, configured: .kmeans)
            XCTAssertEqual(method, .balanced)
            let target = try Pipelines.roundTarget(
                .widenSqueeze, original: original, net: wide, topology: topology)
            let plan = try Clustering.plan(
                network: wide, topology: topology, target: target, method: method, seed: 1)
            for (gi, g) in plan.groups.enumerated() {
                XCTAssertEqual(g.count, topology.groups[gi].width / k)
                XCTAssertEqual(Set(g.map(\.count)), [k], "group \(gi): \(g.map(\.count))")
            }
        }
        // Other rounds keep the configured method.
        XCTAssertEqual(
            Pipelines.clusterMethod(for: .ratio(WidthRatio("5/8")!), configured: .kmeans), .kmeans)
    }

    func testBalancedKMeansSizesWhenWidthIsNotAMultiple() throws {
        var rng = Rng(seed: 3)
        let rows = (0..<(23 * 5)).map { _ in rng.nextGaussian() }
        var r2 = Rng(seed: 4)
        let c = rows.withUnsafeBufferPointer {
            Clustering.balancedKMeans(rows: $0.baseAddress!, n: 23, d: 5, k: 5, rng: &r2)
        }
        XCTAssertEqual(c.map(\.count).sorted(), [4, 4, 5, 5, 5])
        XCTAssertEqual(c.flatMap { $0 }.sorted(), Array(0..<23))
    }

    // MARK: - budget targets and controls

    func testBudgetTargetSpellings() throws {
        func p(_ s: String) throws -> BudgetTarget {
            try BudgetTarget(parsing: s, metric: .flops, key: "target_flops")
        }
        XCTAssertEqual(try p("0.4").absolute(full: 1000), 400, accuracy: 1e-9)
        XCTAssertEqual(try p("40%").absolute(full: 1000), 400, accuracy: 1e-9)
        XCTAssertEqual(try p("16M").absolute(full: 1), 16e6)
        XCTAssertEqual(try p("1.2G").absolute(full: 1), 1.2e9, accuracy: 1)
        XCTAssertEqual(try p("100k").absolute(full: 1), 1e5)
        XCTAssertEqual(try p("250000").absolute(full: 1), 250_000)
        for bad in ["", "abc", "0", "-3M", "150%", "1.2X"] {
            assertCSGDError(["target_flops"]) { _ = try p(bad) }
        }
        var c = RunConfig()
        c.targetFlops = "0.4"
        c.targetParams = "0.5"
        assertCSGDError(["set one"]) { _ = try c.validate() }
        c.targetParams = ""
        c.widen = 2
        assertCSGDError(["widen"]) { _ = try c.validate() }
        c.widen = 1
        XCTAssertNoThrow(try c.validate())
        XCTAssertEqual(c.effectiveRounds, [.budget])
    }

    func testLayerControlsFixExcludedAndExplicitGroupsAndNameUnknownLayers() throws {
        let a = try arch("resnet56")
        let t = try Topology(graph: try a.graph())
        let c = LayerControls(
            widths: ["layer3.0.conv1=20"], exclude: ["layer2.*.conv1"], minWidth: 6)
        let b = try c.bounds(t, model: "resnet56")
        for node in t.convs {
            let g = node.groupIndex
            if node.name.hasPrefix("layer2.") && node.name.hasSuffix(".conv1") {
                XCTAssertEqual([b.lower[g], b.upper[g]], [32, 32], node.name)
            } else if node.name == "layer3.0.conv1" {
                XCTAssertEqual([b.lower[g], b.upper[g]], [20, 20])
            } else {
                XCTAssertEqual(b.lower[g], 6, node.name)
            }
        }
        assertCSGDError(["'layer9.*' matches no conv"]) {
            _ = try LayerControls(exclude: ["layer9.*"]).bounds(t, model: "resnet56")
        }
        assertCSGDError(["layer_widths"]) {
            _ = try LayerControls(widths: ["layer1.0.conv1=99"]).bounds(t, model: "resnet56")
        }
        // A residual stream has one width: two values for two of its convs conflict.
        assertCSGDError(["residual stream"]) {
            _ = try LayerControls(widths: ["layer1.0.conv2=8", "layer1.1.conv2=10"]).bounds(
                t, model: "resnet56")
        }
        XCTAssertTrue(LayerControls.glob("layer*.?.conv1", matches: "layer3.4.conv1"))
        XCTAssertFalse(LayerControls.glob("layer*.?.conv1", matches: "layer3.14.conv1"))
    }

    // MARK: - allocation

    func testBudgetIsMetWithinOnePercentOnResNet56AndResNet50() throws {
        let cases: [(String, Int, BudgetMetric, String)] = [
            ("resnet56", 32, .flops, "0.4"), ("resnet56", 32, .params, "0.5"),
            ("resnet56", 32, .flops, "60M"), ("resnet50", 224, .flops, "0.5"),
            ("resnet50", 224, .params, "12M"),
        ]
        for (model, size, metric, text) in cases {
            let a = try arch(model, size: size, classes: model == "resnet50" ? 1000 : 10)
            let t = try Topology(graph: try a.graph())
            let target = try BudgetTarget(parsing: text, metric: metric, key: "target")
            let alloc = try BudgetAllocator.allocate(
                architecture: a, topology: t, sensitivity: syntheticTable(a, t, steps: 8),
                target: target, bounds: free(t))
            try assertMeets(a, t, alloc, target)
        }
    }

    func testMeasuredAllocationIsDeterministicAndKeepsExcludedLayers() throws {
        let a = try arch("resnet20", channels: 1, size: 16)
        let net = try randomNet(a, seed: 11)
        let t = try Topology(graph: net.graph)
        let s = SampleBatches.gaussian(for: a, batches: 2, batch: 4, seed: 2)
        let controls = LayerControls(exclude: ["layer2.1.conv1", "conv1"], minWidth: 3)
        let bounds = try controls.bounds(t, model: a.model)
        func run() throws -> (SensitivityTable, Allocation) {
            let table = try Sensitivity.measure(
                comm: LocalCommunicator(), net: net, topology: t, samples: s, bounds: bounds,
                steps: 4, method: .kmeans, seed: 7)
            let target = try BudgetTarget(parsing: "0.45", metric: .flops, key: "target_flops")
            let alloc = try BudgetAllocator.allocate(
                architecture: a, topology: t, sensitivity: table, target: target, bounds: bounds)
            try assertMeets(a, t, alloc, target)
            return (table, alloc)
        }
        let before = Array(net.store.values.buffer)
        let (t1, a1) = try run()
        let (t2, a2) = try run()
        XCTAssertEqual(t1, t2)
        XCTAssertEqual(a1, a2)
        XCTAssertEqual(Array(net.store.values.buffer), before, "measuring changed the weights")
        // Merging changes the loss somewhere, and unmeasured (fixed) groups are absent.
        XCTAssertTrue(t1.groups.contains { $0.rows.contains { $0.deltaLoss != 0 } })
        for name in ["layer2.1.conv1", "conv1"] {
            let g = t.convs.first { $0.name == name }!.groupIndex
            XCTAssertEqual(a1.groupWidths[g], t.groups[g].width, name)
            XCTAssertTrue(a1.groups[g].fixed)
            XCTAssertFalse(t1.groups.contains { $0.index == g })
        }
        XCTAssertGreaterThanOrEqual(a1.groupWidths.min()!, 3)
    }

    func testUniformWidthsAreTheWidestUniformNetWithinTheBudget() throws {
        let a = try arch("resnet56")
        let t = try Topology(graph: try a.graph())
        let bounds = try LayerControls(exclude: ["conv1"]).bounds(t, model: a.model)
        for spelling in ["0.4", "0.75"] {
            let target = try BudgetTarget(parsing: spelling, metric: .flops, key: "target_flops")
            let w = try BudgetAllocator.uniformWidths(
                architecture: a, topology: t, target: target, bounds: bounds)
            func flops(_ w: [Int]) throws -> Double {
                var b = a
                b.widths = t.convs.map { w[$0.groupIndex] }
                return Double(try b.graph().flopsPerImage)
            }
            let goal = target.absolute(full: try a.graph().flopsPerImage)
            XCTAssertLessThanOrEqual(try flops(w), goal, spelling)
            // One more channel in every free group overshoots: no wider uniform net fits.
            let wider = t.groups.indices.map { bounds.isFixed($0) ? w[$0] : w[$0] + 1 }
            XCTAssertGreaterThan(try flops(wider), goal, spelling)
            let conv1 = t.convs.first { $0.name == "conv1" }!.groupIndex
            XCTAssertEqual(w[conv1], t.groups[conv1].width, "excluded group kept")
        }
    }

    /// In a context, a cell is: the other groups merged to their context widths, this group to
    /// the cell's width, BN recalibrated, evaluated; its Δ is against the same context with this
    /// group unmerged. Recomputed here by hand for every group at one width.
    func testContextSensitivityIsTheMergedContextRecalibrated() throws {
        let a = try arch("resnet20", channels: 1, size: 16)
        let net = try randomNet(a, seed: 11)
        let t = try Topology(graph: net.graph)
        let s = SampleBatches.gaussian(for: a, batches: 2, batch: 4, seed: 2)
        let bounds = free(t)
        let target = try BudgetTarget(parsing: "0.5", metric: .flops, key: "target_flops")
        let uniform = try Sensitivity.contextWidths(
            .uniform, net: net, topology: t, budget: target, bounds: bounds)!
        XCTAssertNil(
            try Sensitivity.contextWidths(
                .alone, net: net, topology: t, budget: nil, bounds: bounds))
        assertCSGDError(["sensitivity_context", "target_flops"]) {
            _ = try Sensitivity.contextWidths(
                .uniform, net: net, topology: t, budget: nil, bounds: bounds)
        }
        let before = Array(net.store.values.buffer)
        let buffers = Array(net.store.buffers.buffer)
        for context in [uniform, t.groups.map(\.width)] {
            let table = try Sensitivity.measure(
                comm: LocalCommunicator(), net: net, topology: t, samples: s, bounds: bounds,
                steps: 4, method: .kmeans, seed: 7, context: context)
            XCTAssertEqual(table.context, context)
            XCTAssertEqual(Array(net.store.values.buffer), before, "measuring changed the weights")
            XCTAssertEqual(Array(net.store.buffers.buffer), buffers, "measuring changed BN stats")
            func loss(_ widths: [Int]) throws -> Double {
                let copy = try Sensitivity.copy(net)
                let clusters = t.groups.indices.map { g in
                    widths[g] >= t.groups[g].width
                        ? (0..<t.groups[g].width).map { [$0] }
                        : Clustering.clusters(
                            network: net, topology: t, group: g, width: widths[g],
                            method: .kmeans, seed: 7)
                }
                ClusterMerge.meanMerge(copy, topology: t, clusters: clusters)
                Sensitivity.recalibrateBatchNorm(copy, s)
                return Sensitivity.evaluate(copy, s).loss
            }
            XCTAssertEqual(table.baseLoss, try loss(context))
            for group in table.groups {
                let row = group.rows[1]
                var cell = context
                cell[group.index] = row.width
                var reference = context
                reference[group.index] = group.width
                XCTAssertEqual(
                    row.deltaLoss, try loss(cell) - loss(reference), group.name)
                XCTAssertEqual(group.rows.last!.deltaLoss, 0)
            }
            XCTAssertTrue(table.groups.contains { $0.rows.contains { $0.deltaLoss != 0 } })
        }
    }

    func testUnreachableBudgetNamesTheConstraint() throws {
        let a = try arch("resnet20")
        let t = try Topology(graph: try a.graph())
        let bounds = try LayerControls(minWidth: 16).bounds(t, model: a.model)
        assertCSGDError(["min_width"]) {
            _ = try BudgetAllocator.allocate(
                architecture: a, topology: t, sensitivity: syntheticTable(a, t, steps: 8),
                target: try BudgetTarget(parsing: "0.1", metric: .flops, key: "target_flops"),
                bounds: bounds)
        }
    }

    // MARK: - cluster-mean merge and recalibration

    func testMeanMergeOfCollapsedClustersEqualsTheExactPrune() throws {
        let a = try arch("resnet20", channels: 1, size: 16)
        let net = try randomNet(a, seed: 4)
        let t = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .kmeans, seed: 1)
        // Collapse: copy each cluster's first member onto the others.
        let s = net.store
        for node in t.convs {
            let d = s[node.weight].rowLength
            for h in plan.groups[node.groupIndex] {
                for j in h.dropFirst() {
                    (s.value(node.weight) + j * d).update(
                        from: s.value(node.weight) + h[0] * d, count: d)
                    for p in [node.bias, node.bnScale, node.bnShift].compactMap({ $0 }) {
                        s.value(p)[j] = s.value(p)[h[0]]
                    }
                    for b in [node.runningMean, node.runningVar].compactMap({ $0 }) {
                        s.buffer(b)[j] = s.buffer(b)[h[0]]
                    }
                }
            }
        }
        XCTAssertTrue(
            ClusterMerge.deviation(net, topology: t, plan: plan).allSatisfy { $0.worst == 0 })
        let exact = try Pruner.prune(net, topology: t, plan: plan)
        let merged = try Sensitivity.copy(net)
        ClusterMerge.meanMerge(merged, topology: t, clusters: plan.groups)
        let viaMean = try Pruner.prune(merged, topology: t, plan: plan)
        XCTAssertEqual(Array(viaMean.store.values.buffer), Array(exact.store.values.buffer))
        XCTAssertEqual(Array(viaMean.store.buffers.buffer), Array(exact.store.buffers.buffer))
    }

    func testDeviationReportAndMeanMergeOnAnUnconvergedNet() throws {
        let a = try arch("resnet20", channels: 1, size: 16)
        let net = try randomNet(a, seed: 4)
        let t = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: t, target: .ratio(0.5), method: .kmeans, seed: 1)
        let dev = ClusterMerge.deviation(net, topology: t, plan: plan)
        XCTAssertEqual(dev.count, t.groups.count)
        XCTAssertTrue(dev.allSatisfy { $0.kernel > 0.1 && $0.kernel <= 1 })
        ClusterMerge.meanMerge(net, topology: t, clusters: plan.groups)
        XCTAssertTrue(
            ClusterMerge.deviation(net, topology: t, plan: plan).allSatisfy { $0.worst < 1e-6 })
    }

    func testRecalibrationReplacesRunningStatisticsWithTheBatchAverage() throws {
        let a = try arch("resnet20", channels: 1, size: 16)
        let net = try randomNet(a, seed: 4)
        let s = SampleBatches.gaussian(for: a, batches: 3, batch: 4, seed: 9)
        Sensitivity.recalibrateBatchNorm(net, s)
        let once = Array(net.store.buffers.buffer)
        // Whatever the statistics were before, the result is the same: the first batch's
        // weight is 1, so nothing of the old statistics remains.
        for i in 0..<net.store.buffers.count { net.store.buffers[i] = 7 }
        Sensitivity.recalibrateBatchNorm(net, s)
        XCTAssertEqual(Array(net.store.buffers.buffer), once)
        XCTAssertEqual(net.batchNorm.momentum, BatchNormConfigDefaults.momentum)
        // One batch alone gives other statistics than three.
        Sensitivity.recalibrateBatchNorm(net, SampleBatches(batches: [s.batches[0]]))
        XCTAssertNotEqual(Array(net.store.buffers.buffer), once)
    }
}

/// PyTorch's default BN momentum, as `BatchNormConfig()` sets it.
enum BatchNormConfigDefaults {
    static let momentum: Float = 0.1
}
