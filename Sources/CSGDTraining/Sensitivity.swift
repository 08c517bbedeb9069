// Measured pruning sensitivity, budget allocation and BN recalibration (docs/budget.md).
//
// Sensitivity: each prunable group ALONE is clustered to several widths (the round's
// clustering method and seed), merged to its cluster means (ClusterMerge), and the merged
// net's loss and top-1 on a fixed set of un-augmented training images are compared with the
// unmerged net's. No training happens, so this is a proxy: C-SGD's merge is exact only once
// training has pulled the clusters together, and a group that merges badly now may still
// train well. The (group, width) cells are split across ranks and summed, so every rank holds
// the same table, and the table does not depend on the rank count.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDModels
import CSGDRunData
import CSGDRunFiles
import Foundation

/// A fixed set of un-augmented batches held in memory.
public struct SampleBatches: Sendable {
    /// One batch: `images` [n, C, H, W] normalised, `labels` [n].
    public struct Batch: Sendable {
        public var images: [Float]
        public var labels: [Int32]
        public var count: Int

        /// A batch.
        public init(images: [Float], labels: [Int32], count: Int) {
            self.images = images
            self.labels = labels
            self.count = count
        }
    }

    /// The batches.
    public var batches: [Batch]
    /// Images over all batches.
    public var imageCount: Int { batches.reduce(0) { $0 + $1.count } }

    /// Wraps batches.
    public init(batches: [Batch]) { self.batches = batches }

    /// Synthetic batches for checks without a dataset: standard-normal images in the input
    /// shape of `architecture`, uniform labels below its class count, a pure function of `seed`.
    public static func gaussian(
        for architecture: Architecture, batches: Int, batch: Int, seed: UInt64
    ) -> SampleBatches {
        var rng = Rng(seed: seed)
        let floats = architecture.inputChannels * architecture.imageSize * architecture.imageSize
        return SampleBatches(
            batches: (0..<batches).map { _ in
                Batch(
                    images: (0..<(batch * floats)).map { _ in rng.nextGaussian() },
                    labels: (0..<batch).map { _ in
                        Int32(rng.nextInt(below: architecture.numClasses))
                    },
                    count: batch)
            })
    }
}

/// Sensitivity, allocation and recalibration.
public enum Sensitivity {
    /// Loss and top-1 of `net` (eval mode) over `samples`.
    public static func evaluate(_ net: Network, _ samples: SampleBatches) -> (
        loss: Double, top1: Double
    ) {
        var sums = [0.0, 0.0, 0.0, 0.0]
        for b in samples.batches {
            b.images.withUnsafeBufferPointer { x in
                b.labels.withUnsafeBufferPointer { y in
                    let logits = net.forward(
                        images: x.baseAddress!, batch: b.count, training: false)
                    Trainer.score(
                        logits, y.baseAddress!, b.count, net.numClasses, into: &sums, at: 0)
                }
            }
        }
        let n = max(sums[3], 1)
        return (sums[0] / n, sums[1] / n)
    }

    /// The widths measured for a group of width `n`: ⌈n·i/steps⌉ for i = 1…steps−1 (at least
    /// `lower`, deduplicated), then n itself.
    public static func gridWidths(width n: Int, steps: Int, lower: Int) -> [Int] {
        var out: [Int] = []
        for i in 1..<max(steps, 2) {
            let w = max(lower, (n * i + steps - 1) / steps)
            if w < n && !out.contains(w) { out.append(w) }
        }
        return out.sorted() + [n]
    }

    /// Measures the sensitivity table of `net` on `samples` for the groups that `bounds`
    /// leaves free.
    /// - Parameters:
    ///   - steps: grid resolution (8 measures 1/8 … 7/8 of each width).
    ///   - method, seed: the clustering used for the merge.
    ///   - context: nil measures each group alone. Otherwise a width per group: every cell
    ///     merges the other groups to their context widths and the measured group to the
    ///     cell's width, recalibrates BN on `samples`, and is compared with the same context
    ///     with the measured group unmerged.
    public static func measure(
        comm: Communicator, net: Network, topology: Topology, samples: SampleBatches,
        bounds: GroupBounds, steps: Int, method: ClusterMethod, seed: UInt64,
        context: [Int]? = nil
    ) throws -> SensitivityTable {
        let groups = topology.groups
        if let c = context, c.count != groups.count {
            throw CSGDError("sensitivity: context has \(c.count) widths for \(groups.count) groups")
        }
        let free = groups.indices.filter { !bounds.isFixed($0) }
        // Every cell is (group, width). A group the context merges is also measured at its
        // full width, the reference its Δ is taken against; for any other group (and alone)
        // that net is the base itself.
        func needsReference(_ g: Int) -> Bool { (context?[g] ?? groups[g].width) < groups[g].width }
        var cells: [(g: Int, w: Int)] = []
        var grids: [Int: [Int]] = [:]
        for g in free {
            let grid = gridWidths(width: groups[g].width, steps: steps, lower: bounds.lower[g])
            grids[g] = grid
            for w in needsReference(g) ? grid : Array(grid.dropLast()) { cells.append((g, w)) }
        }
        let values = Array(net.store.values.buffer)
        let buffers = Array(net.store.buffers.buffer)
        func restore() {
            net.store.values.pointer.update(from: values, count: values.count)
            net.store.buffers.pointer.update(from: buffers, count: buffers.count)
        }
        func clusters(_ g: Int, _ w: Int) -> [[Int]] {
            w >= groups[g].width
                ? (0..<groups[g].width).map { [$0] }
                : Clustering.clusters(
                    network: net, topology: topology, group: g, width: w, method: method,
                    seed: seed)
        }
        // The context's clusters come from the unmerged net, once.
        let contextClusters = context.map { c in groups.indices.map { clusters($0, c[$0]) } }
        func merged(_ cell: (g: Int, w: Int)?) -> (loss: Double, top1: Double) {
            defer { restore() }
            guard var all = contextClusters else {
                guard let cell else { return evaluate(net, samples) }
                ClusterMerge.meanMerge(
                    net, topology: topology, group: cell.g, clusters: clusters(cell.g, cell.w))
                return evaluate(net, samples)
            }
            if let cell { all[cell.g] = clusters(cell.g, cell.w) }
            ClusterMerge.meanMerge(net, topology: topology, clusters: all)
            recalibrateBatchNorm(net, samples)
            return evaluate(net, samples)
        }
        let base = merged(nil)
        var results = [Double](repeating: 0, count: 2 * cells.count)
        // Cells in rounds of one per rank, so every rank makes the same preemption checks: a
        // signal is honoured after at most one cell (seconds), not after the whole table.
        for first in stride(from: 0, to: cells.count, by: comm.size) {
            let e = first + comm.rank
            if e < cells.count {
                let r = merged(cells[e])
                results[2 * e] = r.loss
                results[2 * e + 1] = r.top1
            }
            if Preemption.requested(comm) { throw Preempted.duringSensitivity }
        }
        if comm.size > 1 { comm.allreduceSum(&results) }
        let full = net.architecture
        var out: [SensitivityTable.Group] = []
        var e = 0
        for g in free {
            let grid = grids[g]!
            // Against the base, or against this group's full-width cell, the last of its grid.
            let reference =
                !needsReference(g)
                ? (loss: base.loss, top1: base.top1)
                : (
                    loss: results[2 * (e + grid.count - 1)],
                    top1: results[2 * (e + grid.count - 1) + 1]
                )
            var rows: [SensitivityTable.Row] = []
            for w in grid {
                var a = full
                a.widths = topology.convs.map { $0.groupIndex == g ? w : full.widths[$0.convIndex] }
                let graph = try a.graph()
                let last = w == groups[g].width
                rows.append(
                    SensitivityTable.Row(
                        width: w, deltaLoss: last ? 0 : results[2 * e] - reference.loss,
                        deltaTop1: last ? 0 : results[2 * e + 1] - reference.top1,
                        flops: graph.flopsPerImage, params: graph.parameterCount))
                if !last || needsReference(g) { e += 1 }
            }
            out.append(
                SensitivityTable.Group(
                    index: g, name: topology.convs[groups[g].pacesetter].name,
                    convs: groups[g].producers.map { topology.convs[$0].name },
                    width: groups[g].width, rows: rows))
        }
        return SensitivityTable(
            model: full.model, images: samples.imageCount, baseLoss: base.loss,
            baseTop1: base.top1, flops: net.graph.flopsPerImage, params: net.graph.parameterCount,
            groups: out, context: context)
    }

    /// The `context` argument of `measure` for a config's `sensitivity_context`.
    /// - Throws: `CSGDError` for `uniform` without a budget.
    public static func contextWidths(
        _ context: SensitivityContext, net: Network, topology: Topology, budget: BudgetTarget?,
        bounds: GroupBounds
    ) throws -> [Int]? {
        switch context {
        case .alone: return nil
        case .recalibrated: return topology.groups.map(\.width)
        case .uniform:
            guard let budget else {
                throw CSGDError(
                    "config key 'sensitivity_context': uniform needs a budget (target_flops or "
                        + "target_params) to pick the uniform widths")
            }
            return try BudgetAllocator.uniformWidths(
                architecture: net.architecture, topology: topology, target: budget, bounds: bounds)
        }
    }

    /// Recomputes every BatchNorm's running mean and variance as the plain average of the
    /// batch statistics over `samples` (train-mode forwards with update weight 1/t on batch t:
    /// PyTorch's `momentum=None`); the weights are not touched. Any SyncBN group reducer is
    /// off meanwhile: the samples are the same on every rank, so pooling would only recount them.
    public static func recalibrateBatchNorm(_ net: Network, _ samples: SampleBatches) {
        let saved = (net.batchNorm, net.batchNormGroupReducer)
        net.batchNormGroupReducer = nil
        defer {
            (net.batchNorm, net.batchNormGroupReducer) = saved
            net.releaseActivations()
        }
        for (t, b) in samples.batches.enumerated() {
            net.batchNorm.momentum = 1 / Float(t + 1)
            b.images.withUnsafeBufferPointer {
                _ = net.forward(images: $0.baseAddress!, batch: b.count, training: true)
            }
        }
    }

    /// A deep copy of `net` (weights, BN buffers and BN settings; no momentum).
    public static func copy(_ net: Network) throws -> Network {
        let out = try Network(architecture: net.architecture)
        out.batchNorm = net.batchNorm
        out.store.values.pointer.update(
            from: net.store.values.pointer, count: net.store.values.count)
        out.store.buffers.pointer.update(
            from: net.store.buffers.pointer, count: net.store.buffers.count)
        return out
    }
}

extension Trainer {
    /// The first `images` training images (un-augmented, the same on every rank), in batches
    /// of `batch`.
    func sampleBatches(images: Int, batch: Int) throws -> SampleBatches {
        let n = min(images, data.train.count)
        var out: [SampleBatches.Batch] = []
        let floats = data.train.imageFloats
        let batches = stride(from: 0, to: n, by: batch).map { Array($0..<min($0 + batch, n)) }
        let stream = data.train.stream(batches: batches, epoch: 0, train: false, config: config)
        defer { stream.close() }
        for _ in batches {
            let b = try stream.next()
            out.append(
                SampleBatches.Batch(
                    images: Array(UnsafeBufferPointer(start: b.images, count: b.count * floats)),
                    labels: Array(UnsafeBufferPointer(start: b.labels, count: b.count)),
                    count: b.count))
        }
        return SampleBatches(batches: out)
    }

    /// The widths a budget asks of `net` (config `target_flops` / `target_params`, with the
    /// per-layer controls): measures sensitivity, allocates, logs the allocation; with `write`
    /// also writes `<out_dir>/allocation.json` (rank 0; the run folder must be claimed).
    func budgetTarget(
        _ net: Network, topology: Topology, budget: BudgetTarget, round: Int, write: Bool
    ) throws -> (target: PruneTarget, allocation: Allocation, table: SensitivityTable) {
        let bounds = try config.layerControls.bounds(topology, model: net.architecture.model)
        let samples = try sampleBatches(images: config.sensitivityImages, batch: evalBatch)
        log.info(
            "budget \(budget.metric.rawValue) \(budget): measuring the sensitivity of "
                + "\(topology.groups.indices.filter { !bounds.isFixed($0) }.count) groups on "
                + "\(samples.imageCount) training images")
        let context = try Sensitivity.contextWidths(
            config.sensitivityContext, net: net, topology: topology, budget: budget,
            bounds: bounds)
        let table: SensitivityTable
        do {
            table = try Sensitivity.measure(
                comm: comm, net: net, topology: topology, samples: samples, bounds: bounds,
                steps: config.sensitivitySteps, method: config.clusterMethod,
                seed: config.seed &+ UInt64(round), context: context)
        } catch let p as Preempted where p.checkpoint.isEmpty {
            // Before the round's first step: its start (no plan yet) is the checkpoint, and
            // the resume measures again — the table is seeded, the run continues bitwise.
            try stopIfPreempted(
                net, TrainState(phase: .csgd, round: round, worldSize: comm.size, plan: nil),
                alreadyAgreed: true)
            throw p
        }
        let allocation = try BudgetAllocator.allocate(
            architecture: net.architecture, topology: topology, sensitivity: table,
            target: budget, bounds: bounds)
        log.info(allocation.table())
        if write { try writeAllocation(allocation, table) }
        return (
            .perConv(topology.convs.map { allocation.groupWidths[$0.groupIndex] }), allocation,
            table
        )
    }

    /// Writes `<out_dir>/allocation.json`: the allocation and the sensitivity table behind it
    /// (rank 0, atomically).
    func writeAllocation(_ allocation: Allocation, _ table: SensitivityTable) throws {
        guard comm.isRoot else { return }
        struct File: Encodable {
            let allocation: Allocation
            let sensitivity: SensitivityTable
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeFileAtomically(
            try enc.encode(File(allocation: allocation, sensitivity: table)),
            to: config.outDir + "/allocation.json")
    }
}

extension Pipelines {
    /// `csgd-dist sensitivity MODEL`: the sensitivity table of a model file (every group not
    /// fixed by `exclude` / `layer_widths`), printed by rank 0 as text or JSON.
    public static func sensitivity(
        comm: Communicator, config: RunConfig, input: String, json: Bool
    ) throws {
        let data = try DataBundle.load(config)
        let trainer = try Trainer(comm: comm, config: config, data: data)
        let net = try Checkpoint.load(path: input).network
        try data.check(net.architecture, from: input)
        let topology = try Topology(graph: net.graph)
        let bounds = try config.layerControls.bounds(topology, model: net.architecture.model)
        let samples = try trainer.sampleBatches(
            images: config.sensitivityImages, batch: trainer.evalBatch)
        let context = try Sensitivity.contextWidths(
            config.sensitivityContext, net: net, topology: topology, budget: config.budget,
            bounds: bounds)
        let table = try Sensitivity.measure(
            comm: comm, net: net, topology: topology, samples: samples, bounds: bounds,
            steps: config.sensitivitySteps, method: config.clusterMethod, seed: config.seed,
            context: context)
        // With a budget, also the widths it would get (what `csgd --target-…` would train).
        let allocation = try config.budget.map {
            try BudgetAllocator.allocate(
                architecture: net.architecture, topology: topology, sensitivity: table,
                target: $0, bounds: bounds)
        }
        guard comm.isRoot else { return }
        if json {
            struct WithAllocation: Encodable {
                let allocation: Allocation
                let sensitivity: SensitivityTable
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data =
                try allocation.map {
                    try enc.encode(WithAllocation(allocation: $0, sensitivity: table))
                }
                ?? enc.encode(table)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(table.text() + (allocation?.table() ?? ""), terminator: "")
        }
    }
}
