// The jobs behind the CLI: plain training, C-SGD rounds ending in a no-finetune prune, a
// standalone prune (C-SGD plan or the magnitude baseline), and evaluation. Every rank runs the
// same function; only rank 0 prints and writes files.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDData
import CSGDDistributed
import CSGDModels
import CSGDRunData
import CSGDRunFiles
import Foundation

/// Entry points of the `csgd-dist` jobs.
public enum Pipelines {
    /// `csgd-dist train`: trains `config.model` from scratch, from `from`, or resumes; writes
    /// `<out_dir>/model.safetensors`. `overwrite` lets it start over in a folder holding a run.
    public static func train(
        comm: Communicator, config: RunConfig, resume: Bool, from: String?, overwrite: Bool = false
    ) throws {
        let data = try DataBundle.load(config)
        // A fresh network must be a built-in one; say so before touching the run folder.
        if from == nil && !resume { _ = try data.architecture(config) }
        try claimRunDirectory(
            comm, config,
            .init(
                resume: resume, overwrite: overwrite, canResume: true, keep: from.map { [$0] } ?? []
            ))
        let start = try RunStart.resolve(
            comm: comm, config: config, data: data, phase: .train, resume: resume, from: from,
            fresh: { try data.architecture($0) })
        let config = start.config
        let net = start.network
        let state = start.state ?? TrainState(phase: .train, round: 0, worldSize: comm.size)
        let trainer = try Trainer(comm: comm, config: config, data: data)
        try writeResolvedConfig(comm, config)
        trainer.log.info(describe(net, comm: comm, config: config, data: data))
        let result = try trainer.train(net, state: state, epochs: config.epochs, centripetal: nil)
        guard result.completed else { return }
        let path = config.outDir + "/model.safetensors"
        if comm.isRoot { try Checkpoint.save(path: path, network: net, configYAML: config.yaml()) }
        if let t = result.test {
            trainer.log.info(
                String(
                    format: "final test top-1 %.2f%% (top-5 %.2f%%), model: ", 100 * t.top1,
                    100 * t.top5)
                    + path)
        }
    }

    /// `csgd-dist csgd`: C-SGD rounds (cluster → train → prune, a fresh optimizer each round),
    /// from scratch, from a base model, or resumed; `--widen k` trains k× wider and squeezes
    /// back. Writes `<out_dir>/pruned.safetensors`. `overwrite` lets it start over in a folder
    /// holding a run.
    public static func csgd(
        comm: Communicator, config: RunConfig, resume: Bool, from: String?, overwrite: Bool = false
    ) throws {
        let data = try DataBundle.load(config)
        if config.effectiveRounds.isEmpty {
            throw CSGDError(
                "config key 'rounds' is empty: a csgd run needs at least one round (e.g. 5/8)")
        }
        if from == nil && !resume { _ = try data.architecture(config, widen: config.widen) }
        try claimRunDirectory(
            comm, config,
            .init(
                resume: resume, overwrite: overwrite, canResume: true, keep: from.map { [$0] } ?? []
            ))
        let start = try RunStart.resolve(
            comm: comm, config: config, data: data, phase: .csgd, resume: resume, from: from,
            fresh: { try data.architecture($0, widen: $0.widen) })
        let config = start.config
        var net = start.network
        var resumed = start.state
        let trainer = try Trainer(comm: comm, config: config, data: data)
        try writeResolvedConfig(comm, config)
        // Targets are fractions of the ORIGINAL widths (13/16 → 11/16 → 5/8 of 16/32/64);
        // widen mode squeezes back to the original widths in one round. An imported model's
        // original widths are its graph's nominal ones (the widths it was imported with).
        let original: Architecture
        if ModelZoo.isBuiltIn(config.model) {
            original = try data.architecture(config)
        } else {
            var a = net.architecture
            a.widths = try a.resolvedSpec().nominalWidths
            original = a
        }
        let rounds = config.effectiveRounds
        trainer.log.info(describe(net, comm: comm, config: config, data: data))
        if !config.layerControls.isEmpty && resumed == nil {
            let notes = try config.layerControls.check(
                Topology(graph: net.graph), model: net.architecture.model)
            for line in notes { trainer.log.info(line) }
        }
        let baseGraph = net.graph
        var lastReport = ""
        for r in (resumed?.round ?? 0)..<rounds.count {
            let topology = try Topology(graph: net.graph)
            var state: TrainState
            if let s = resumed, s.round == r, s.plan != nil {
                state = s
            } else {
                let target =
                    rounds[r] == .budget
                    ? try trainer.budgetTarget(
                        net, topology: topology, budget: config.budget!, round: r, write: true
                    ).target
                    : try roundTarget(
                        rounds[r], original: original, net: net, topology: topology,
                        controls: config.layerControls)
                let plan = try agreedPlan(
                    comm: comm, net: net, topology: topology, target: target, config: config,
                    round: r,
                    method: clusterMethod(for: rounds[r], configured: config.clusterMethod))
                net.store.momentum.zero()
                state = TrainState(phase: .csgd, round: r, worldSize: comm.size, plan: plan)
            }
            resumed = nil
            let plan = state.plan!
            let cen = CentripetalUpdate(
                topology: topology, plan: plan, store: net.store,
                config: CentripetalConfig(
                    strength: config.centripetalStrength, weightDecay: config.csgdWeightDecay,
                    vectorStrengthFactor: config.vectorStrengthFactor,
                    vectorWeightDecay: config.biasWeightDecay))
            let widths = plan.prunedWidths(topology)
            trainer.log.info(
                "C-SGD round \(r + 1)/\(rounds.count) (\(rounds[r])): \(topology.groups.filter { plan.isClustered(group: $0.index) }.count) "
                    + "clustered groups, widths \(summarize(net.architecture.widths)) → \(summarize(widths)), "
                    + "ε \(config.centripetalStrength), "
                    + "\(clusterMethod(for: rounds[r], configured: config.clusterMethod).rawValue) clusters"
            )
            let result = try trainer.train(
                net, state: state, epochs: config.epochs, centripetal: cen)
            guard result.completed else { return }
            trainer.log.info(
                ClusterMerge.describe(ClusterMerge.deviation(net, topology: topology, plan: plan)))
            let thin = try mergedPrune(net, topology: topology, plan: plan, trainer: trainer)
            let check = try trainer.compare(net, thin, on: data.test)
            let report = PruneReport(before: net.graph, after: thin.graph)
            lastReport =
                equivalenceLine(check)
                + String(
                    format: "; FLOPs %.2fM → %.2fM (%.1f%% cut)", Double(report.flopsBefore) / 1e6,
                    Double(report.flopsAfter) / 1e6, 100 * report.flopsCut)
            trainer.log.info("round \(r + 1) pruned: " + lastReport)
            try trainer.log.record(
                .prune(pruneRecord(round: r + 1, method: .csgd, check: check, report: report)),
                step: trainer.roundEndStep(r))
            if config.merge == .exact && check.maxLogitDiff > config.pruneTolerance {
                throw CSGDError(
                    "equivalence check failed: pruned and unpruned logits differ by "
                        + "\(check.maxLogitDiff) > prune_tolerance \(config.pruneTolerance)",
                    hint: "train longer or raise centripetal_strength so clusters collapse, or "
                        + "prune with --merge mean; the unpruned checkpoint is "
                        + "\(trainer.checkpointPath)")
            }
            net = thin
            if comm.isRoot {
                try Checkpoint.save(
                    path: config.outDir + "/round\(r + 1)-pruned.safetensors", network: net,
                    configYAML: config.yaml())
            }
            if r + 1 < rounds.count {
                net.store.momentum.zero()
                try trainer.checkpoint(
                    net, TrainState(phase: .csgd, round: r + 1, worldSize: comm.size))
            }
        }
        let path = config.outDir + "/pruned.safetensors"
        if comm.isRoot { try Checkpoint.save(path: path, network: net, configYAML: config.yaml()) }
        let report = PruneReport(before: baseGraph, after: net.graph)
        trainer.log.info("per-layer widths, params and FLOPs (start → final):\n" + report.table())
        trainer.log.info("C-SGD done: " + lastReport + "; pruned model: " + path)
    }

    /// `csgd-dist prune`: prunes a C-SGD checkpoint with its own cluster plan, or any model by
    /// L1 magnitude to `target` (then finetunes `finetune_epochs`); checks and reports.
    /// `overwrite` lets it write into a folder holding another run (whose records are moved
    /// aside); without it such a folder is refused.
    public static func prune(
        comm: Communicator, config: RunConfig, input: String, method: PruneMethod,
        target: PruneTarget?, output: String, overwrite: Bool = false
    ) throws {
        let data = try DataBundle.load(config)
        let trainer = try Trainer(comm: comm, config: config, data: data)
        let ck = try Checkpoint.load(path: input)
        let net = ck.network
        try data.check(net.architecture, from: input)
        let topology = try Topology(graph: net.graph)
        var thin: Network
        var allocation: (allocation: Allocation, table: SensitivityTable)?
        switch method {
        case .csgd:
            if config.budget != nil {
                throw CSGDError(
                    "--target-flops / --target-params apply to --method magnitude: a C-SGD "
                        + "checkpoint is pruned with its own clusters",
                    hint: "give the budget to the csgd run instead (csgd --target-flops …)")
            }
            guard let plan = ck.state?.plan else {
                throw CSGDError(
                    "\(input): no cluster plan inside (not a C-SGD training checkpoint)",
                    hint: "use the checkpoint.safetensors of a `csgd` run, or --method magnitude")
            }
            do {
                try plan.validate(topology)
            } catch let e as CSGDError {
                throw CSGDError("\(input): cluster plan does not fit the model: \(e.message)")
            }
            // As at the end of a round: collapsed clusters' running statistics become the
            // cluster mean (a no-op on a round's own checkpoint, which has them merged).
            let merged = RunningStatistics.merge(net.store, topology: topology, plan: plan)
            trainer.log.info(statisticsLine(merged))
            trainer.log.info(
                ClusterMerge.describe(ClusterMerge.deviation(net, topology: topology, plan: plan)))
            thin = try mergedPrune(net, topology: topology, plan: plan, trainer: trainer)
        case .magnitude:
            if !config.layerControls.isEmpty {
                let notes = try config.layerControls.check(
                    topology, model: net.architecture.model)
                for line in notes { trainer.log.info(line) }
            }
            let widths: PruneTarget
            if let budget = config.budget {
                let b = try trainer.budgetTarget(
                    net, topology: topology, budget: budget, round: 0, write: false)
                widths = b.target
                allocation = (b.allocation, b.table)
            } else {
                guard let target else {
                    throw CSGDError(
                        "--method magnitude needs --target (e.g. 5/8) or --target-flops / "
                            + "--target-params")
                }
                widths = try controlled(
                    target, topology: topology, controls: config.layerControls,
                    model: net.architecture.model)
            }
            thin = try Pruner.magnitudePrune(net, topology: topology, target: widths)
        }
        let check = try trainer.compare(net, thin, on: data.test)
        let report = PruneReport(before: net.graph, after: thin.graph)
        trainer.log.info(report.table())
        trainer.log.info("\(method.rawValue) prune: " + equivalenceLine(check))
        try claimRunDirectory(
            comm, config,
            .init(resume: false, overwrite: overwrite, canResume: false, keep: [input]))
        try writeResolvedConfig(comm, config)
        if let allocation { try trainer.writeAllocation(allocation.allocation, allocation.table) }
        try trainer.log.record(
            .prune(pruneRecord(round: 1, method: method, check: check, report: report)), step: 0)
        if method == .csgd && config.merge == .exact && check.maxLogitDiff > config.pruneTolerance {
            throw CSGDError(
                "equivalence check failed: max |logit diff| \(check.maxLogitDiff) > "
                    + "prune_tolerance \(config.pruneTolerance)",
                hint: "the clusters have not collapsed; --merge mean (with "
                    + "--recalibrate-batches N) prunes anyway and reports the accuracy change")
        }
        if method == .magnitude && config.finetuneEpochs > 0 {
            thin.store.momentum.zero()
            let r = try trainer.train(
                thin, state: TrainState(phase: .finetune, round: 0, worldSize: comm.size),
                epochs: config.finetuneEpochs, centripetal: nil)
            if let t = r.test {
                trainer.log.info(
                    String(
                        format: "after %d finetune epochs: test top-1 %.2f%%",
                        config.finetuneEpochs, 100 * t.top1))
            }
        }
        if comm.isRoot {
            try Checkpoint.save(path: output, network: thin, configYAML: config.yaml())
        }
        trainer.log.info("pruned model: \(output)")
    }

    /// `csgd-dist eval`: test-set loss and accuracy of any model file (widths from the file).
    /// - Parameter dumpLogits: if set, rank 0 also writes the test images as evaluated
    ///   (`images` [N, C, H, W], normalised), `labels` [N] and `logits` [N, classes] there.
    public static func eval(
        comm: Communicator, config: RunConfig, input: String, dumpLogits: String? = nil
    ) throws {
        let data = try DataBundle.load(config)
        let trainer = try Trainer(comm: comm, config: config, data: data)
        let net = try Checkpoint.load(path: input).network
        try data.check(net.architecture, from: input)
        let t = try trainer.evaluate(net, data.test)
        trainer.log.info(
            "\(input): \(net.architecture.model) widths \(summarize(net.architecture.widths)), "
                + "\(net.graph.parameterCount) params, "
                + String(
                    format:
                        "%.2f MFLOPs/image; test loss %.4f top-1 %.2f%% top-5 %.2f%% on %d images",
                    Double(net.graph.flopsPerImage) / 1e6, t.loss, 100 * t.top1, 100 * t.top5,
                    t.count))
        if let dumpLogits {
            if comm.isRoot {
                try dump(net, data.test, trainer: trainer, to: dumpLogits)
                trainer.log.info(
                    "images, labels and logits of \(data.test.count) images: \(dumpLogits)")
            }
            comm.barrier()
        }
    }

    /// Runs `net` over the whole of `dataset` on this rank and writes inputs, labels and
    /// logits as a safetensors file (atomically).
    static func dump(_ net: Network, _ dataset: DataSplit, trainer: Trainer, to path: String)
        throws
    {
        let k = net.numClasses
        var images: [Float] = []
        var labels: [Int32] = []
        var logits: [Float] = []
        images.reserveCapacity(dataset.count * dataset.imageFloats)
        try trainer.forEachBatch(dataset, 0..<dataset.count) { x, y, n in
            images.append(contentsOf: UnsafeBufferPointer(start: x, count: n * dataset.imageFloats))
            labels.append(contentsOf: UnsafeBufferPointer(start: y, count: n))
            let out = net.forward(images: x, batch: n, training: false)
            logits.append(contentsOf: UnsafeBufferPointer(start: out, count: n * k))
        }
        var file = SafeTensorsFile()
        file.add(
            "images", shape: [dataset.count, dataset.channels, dataset.height, dataset.height],
            floats: images)
        file.add("labels", shape: [dataset.count], int32s: labels)
        file.add("logits", shape: [dataset.count, k], floats: logits)
        try file.write(path: path)
    }

    // MARK: - helpers

    /// The round's target as explicit widths per conv, relative to the original widths, with
    /// the per-layer controls applied (excluded groups keep their width, explicit widths are
    /// reached in the first round, no group goes below min_width).
    static func roundTarget(
        _ round: RoundTarget, original: Architecture, net: Network, topology: Topology,
        controls: LayerControls = LayerControls()
    ) throws -> PruneTarget {
        let ratio: Double
        let internalOnly: Bool
        switch round {
        case .widenSqueeze: return .perConv(original.widths)
        case .budget: throw CSGDError("internal: a budget round has no ratio target")
        case .ratio(let r): (ratio, internalOnly) = (r.value, false)
        case .internalOnly(let r): (ratio, internalOnly) = (r.value, true)
        }
        if original.widths.count != net.architecture.widths.count {
            throw CSGDError("rounds: the starting model is not a \(original.model)")
        }
        let target = PruneTarget.perConv(
            topology.convs.map { node in
                let current = net.architecture.widths[node.convIndex]
                let group = topology.groups[node.groupIndex]
                if group.isFixed || (internalOnly && !group.isBlockInternal) { return current }
                let t = Int((Double(original.widths[node.convIndex]) * ratio - 1e-9).rounded(.up))
                return min(current, max(1, t))
            })
        return try controlled(
            target, topology: topology, controls: controls, model: net.architecture.model)
    }

    /// `target` with the per-layer controls applied: fixed groups get their fixed width,
    /// the others are clamped into their bounds.
    static func controlled(
        _ target: PruneTarget, topology: Topology, controls: LayerControls, model: String
    ) throws -> PruneTarget {
        if controls.isEmpty { return target }
        let bounds = try controls.bounds(topology, model: model)
        let widths = try target.groupWidths(topology)
        let clamped = topology.groups.indices.map { g in
            bounds.isFixed(g)
                ? bounds.upper[g] : min(bounds.upper[g], max(bounds.lower[g], widths[g]))
        }
        return .perConv(topology.convs.map { clamped[$0.groupIndex] })
    }

    /// Prunes with the config's merge: `exact` keeps each cluster's first member (the
    /// clusters must be identical; the caller checks); `mean` first sets each cluster to its
    /// mean on a copy, then prunes, then recomputes the BN statistics over
    /// `recalibrate_batches` training batches when asked.
    static func mergedPrune(
        _ net: Network, topology: Topology, plan: ClusterPlan, trainer: Trainer
    ) throws -> Network {
        let config = trainer.config
        guard config.merge == .mean else {
            return try Pruner.prune(net, topology: topology, plan: plan)
        }
        let merged = try Sensitivity.copy(net)
        ClusterMerge.meanMerge(merged, topology: topology, clusters: plan.groups)
        let thin = try Pruner.prune(merged, topology: topology, plan: plan)
        if config.recalibrateBatches > 0 {
            let perRank = max(1, config.batchSize / trainer.comm.size)
            let samples = try trainer.sampleBatches(
                images: config.recalibrateBatches * perRank, batch: perRank)
            Sensitivity.recalibrateBatchNorm(thin, samples)
            trainer.log.info(
                "merge mean: BN statistics recomputed over \(samples.batches.count) batches "
                    + "of \(perRank) training images")
        } else {
            trainer.log.info("merge mean: clusters set to their means (BN statistics averaged)")
        }
        return thin
    }

    /// The clustering a round uses: a widen round squeezes k× widened layers, so plain k-means
    /// (clusters of any size — measured 1 to 7 filters for k = 2 on random kernels) becomes
    /// balanced k-means, giving every cluster exactly k members; `even` is kept as asked.
    public static func clusterMethod(for round: RoundTarget, configured: ClusterMethod)
        -> ClusterMethod
    {
        round == .widenSqueeze && configured == .kmeans ? .balanced : configured
    }

    /// Rank 0 clusters; the plan is broadcast so every rank uses the very same clusters.
    static func agreedPlan(
        comm: Communicator, net: Network, topology: Topology, target: PruneTarget,
        config: RunConfig, round: Int, method: ClusterMethod
    ) throws -> ClusterPlan {
        var bytes: [UInt8] = []
        if comm.isRoot {
            let plan = try Clustering.plan(
                network: net, topology: topology, target: target, method: method,
                seed: config.seed &+ UInt64(round))
            bytes = Array(try JSONEncoder().encode(plan))
        }
        comm.broadcast(bytes: &bytes, root: 0)
        let plan = try JSONDecoder().decode(ClusterPlan.self, from: Data(bytes))
        try plan.validate(topology)
        return plan
    }

    static func equivalenceLine(_ c: (maxLogitDiff: Double, a: EvalResult, b: EvalResult)) -> String
    {
        String(
            format:
                "test top-1 before pruning %.2f%%, after %.2f%% (Δ %+.2f pt), max |logit diff| %.3g",
            100 * c.a.top1, 100 * c.b.top1, 100 * (c.b.top1 - c.a.top1), c.maxLogitDiff)
    }

    /// "running statistics: merged 40/40 clusters to their mean (largest change 0.0031)".
    static func statisticsLine(_ m: RunningStatistics.Summary) -> String {
        String(
            format: "running statistics: merged %d/%d clusters to their mean (largest change %.3g)",
            m.merged, m.clusters, m.largestChange)
            + (m.notCollapsed.map {
                "; clusters not collapsed yet (first: \($0)'s group) keep theirs"
            }
                ?? "")
    }

    static func summarize(_ widths: [Int]) -> String {
        var seen: [Int] = []
        for w in widths where !seen.contains(w) { seen.append(w) }
        return seen.count <= 8
            ? seen.map(String.init).joined(separator: "/") : "\(widths.count) convs"
    }

    static func describe(_ net: Network, comm: Communicator, config: RunConfig, data: DataBundle)
        -> String
    {
        "\(net.architecture.model) on \(data.train.name): \(net.graph.parameterCount) params, "
            + String(format: "%.2f MFLOPs/image", Double(net.graph.flopsPerImage) / 1e6)
            + ", \(data.train.count) train / \(data.test.count) test images, global batch "
            + "\(config.batchSize) = \(comm.size) rank(s) × \(config.batchSize / comm.size)"
            + (config.microBatches > 1 ? " (\(config.microBatches) micro-batches)" : "")
            + ", update \(config.update.rawValue), out \(config.outDir)"
    }

    /// `--resume auto`: whether the job resumes, i.e. whether out_dir holds a checkpoint (the
    /// stable name or a history file; rank 0 looks, every rank gets its answer). A checkpoint
    /// of another experiment (phase or model) is then refused by the resume checks, not
    /// started over; no checkpoint starts fresh (the folder rules apply as without --resume).
    public static func autoResume(comm: Communicator, config: RunConfig) -> Bool {
        var found: [UInt8] = [0]
        if comm.isRoot {
            let history = CheckpointHistory(outDir: config.outDir, keep: config.keepCheckpoints)
            found[0] = history.hasCheckpoint ? 1 : 0
        }
        if comm.size > 1 { comm.broadcast(bytes: &found, root: 0) }
        let log = RunLog(comm: comm, metricsPath: nil)
        log.info(
            found[0] == 1
                ? "--resume auto: \(config.outDir) holds a checkpoint, resuming"
                : "--resume auto: no checkpoint in \(config.outDir), starting fresh")
        return found[0] == 1
    }

    /// Claims the run directory (rank 0: the lock, the resume/overwrite rules, stale temp
    /// files, one more line of command.txt; see `RunDirectory`) before anything is read from or
    /// written into it; every rank throws rank 0's refusal.
    static func claimRunDirectory(
        _ comm: Communicator, _ config: RunConfig, _ intent: RunDirectory.Intent
    ) throws {
        guard let run = try RunDirectory.claim(comm: comm, path: config.outDir, intent: intent)
        else { return }
        let log = RunLog(comm: comm, metricsPath: nil)
        for note in run.notes { log.info(note) }
    }

    /// Writes the resolved config.yaml, the config that actually runs, into the claimed run
    /// directory (rank 0).
    static func writeResolvedConfig(_ comm: Communicator, _ config: RunConfig) throws {
        if comm.isRoot {
            try writeFileAtomically(Data(config.yaml().utf8), to: config.outDir + "/config.yaml")
        }
    }

    /// The metrics.jsonl record of one prune (what `csgd-dist report` reads): the equivalence
    /// check, the size change and every layer's width before → after.
    static func pruneRecord(
        round: Int, method: PruneMethod,
        check: (maxLogitDiff: Double, a: EvalResult, b: EvalResult), report: PruneReport
    ) -> PruneRecord {
        PruneRecord(
            round: round, method: method, maxLogitDiff: check.maxLogitDiff,
            testTop1Before: check.a.top1, testTop1After: check.b.top1,
            flopsBefore: report.flopsBefore, flopsAfter: report.flopsAfter,
            paramsBefore: report.paramsBefore, paramsAfter: report.paramsAfter,
            layers: report.rows.map {
                PruneRecord.Layer(name: $0.name, before: $0.widthBefore, after: $0.widthAfter)
            })
    }
}
