// The data-parallel training loop, the same code for 1 rank (the plain binary) and N ranks.
//
// One optimizer step, per the design:
//   every rank: forward/backward on its shard (split into micro-batches; gradients accumulate)
//   allreduce-sum of the whole gradient block, scaled by 1/size
//   update `.rank0`:      rank 0 applies the C-SGD transform + SGD, then broadcasts the weights
//   update `.replicated`: every rank applies the identical update (the official C-SGD code)
// BN batch statistics are per rank (per micro-batch), or pooled over groups of `bn_group_size`
// consecutive ranks (SyncBN: each group's micro-batches together). Running statistics are averaged across
// ranks after every step (a few KB): averaging an EMA each step equals averaging it before
// eval/checkpoint, and it keeps every rank's buffers identical, so a checkpoint holds the whole
// state and resuming is bitwise. The loop is a pure function of (weights,
// momentum, BN buffers, epoch, step, config): the data pipeline derives all randomness from
// (seed, epoch, sample index), so a checkpoint holding those resumes bit-exactly.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDData
import CSGDDistributed
import CSGDKernels
import CSGDModels
import CSGDRunData
import CSGDRunFiles
import Foundation

/// Loss and accuracy over a dataset.
public struct EvalResult: Sendable {
    public var loss: Double
    public var top1: Double
    public var top5: Double
    public var count: Int
}

/// Outcome of one training phase.
public struct PhaseResult {
    /// Whether the phase ran to its last epoch (false when `max_steps` stopped it).
    public let completed: Bool
    /// Last test evaluation, if any.
    public let test: EvalResult?
}

/// Runs training phases and evaluations for one process of a (possibly 1-rank) job.
public final class Trainer {
    public let comm: Communicator
    public let config: RunConfig
    public let data: DataBundle
    public let log: RunLog
    /// Where the rolling training checkpoint goes (rank 0 writes).
    public let checkpointPath: String
    /// The BatchNorm group of this rank (`bn_group_size` consecutive ranks).
    let bnGroup: RankGroup
    /// When this trainer was made (the job's training clock, for step records).
    let started = monotonicSeconds()
    /// Total optimizer steps across phases, for `max_steps`.
    public private(set) var totalSteps = 0
    /// Images per evaluation forward pass: 250 at 32×32, fewer for larger images (at least 8)
    /// to bound activation and prefetch memory.
    var evalBatch: Int { min(250, max(8, 250 * 1024 / (data.test.height * data.test.height))) }

    /// - Throws: `CSGDError` if the batch does not split evenly over ranks and micro-batches.
    public init(comm: Communicator, config: RunConfig, data: DataBundle) throws {
        self.comm = comm
        self.config = config
        self.data = data
        try config.validate(worldSize: comm.size)
        bnGroup = try comm.makeRankGroup(groupSize: config.bnGroupSize)
        log = RunLog(
            comm: comm, metricsPath: config.outDir + "/metrics.jsonl",
            stepsPath: config.outDir + "/steps.jsonl", tensorBoardDir: config.outDir + "/tb")
        checkpointPath = RunStart.checkpointPath(config)
        BLASThreads.set(config.threads)
        KernelThreads.set(config.threads)
    }

    // MARK: - training

    /// Trains `net` for `epochs` epochs from `state` (fresh or restored), optionally with C-SGD.
    /// Writes checkpoints, metrics and progress; stops early once `max_steps` is reached.
    public func train(
        _ net: Network, state initial: TrainState, epochs: Int, centripetal: CentripetalUpdate?
    ) throws -> PhaseResult {
        var state = initial
        let phase = try PhaseSetup(self, net, epochs: epochs, centripetal: centripetal)
        if phase.runner.allreduceBucketCount > 0 && state.epoch < epochs {
            log.info(
                "gradient allreduce overlapped with backward in "
                    + "\(phase.runner.allreduceBucketCount) bucket(s) of ~\(config.bucketMb) MiB")
        }
        if phase.runner.parallelMicroBatches > 1 && state.epoch < epochs {
            log.info(
                "\(config.microBatches) micro-batches of \(phase.microBatch) images run "
                    + "\(phase.runner.parallelMicroBatches) at a time on \(config.threads) threads "
                    + "(one single-threaded network replica each)")
        } else if config.threads > 1 && config.microBatches == 1 && state.epoch < epochs {
            log.info(
                "\(config.threads) threads split each kernel; --micro-batches \(config.threads) "
                    + "runs images on them in parallel instead (faster, docs/scaling.md; BN "
                    + "statistics then per micro-batch)")
        }
        if bnGroup.size > 1 && state.epoch < epochs {
            log.info(
                "BatchNorm statistics pooled over groups of \(bnGroup.size) ranks "
                    + "(\(bnGroup.size * phase.microBatch) images per BN)")
        }
        var lastTest: EvalResult?
        while state.epoch < epochs {
            var meter = EpochMeter()
            phase.runner.resetTimers()
            let stream = openEpochStream(phase, state)
            defer { stream.close() }
            while state.step < phase.sampler.stepsPerEpoch {
                if stepBudgetSpent {
                    try checkpoint(net, state)
                    log.info("stopped after max_steps = \(config.maxSteps) (checkpoint written)")
                    return PhaseResult(completed: false, test: lastTest)
                }
                try stopIfPreempted(net, state)
                let lr = phase.schedule.lr(at: state.phaseStep)
                comm.currentStep = totalSteps + 1
                let batch = try stream.next()
                let mb = phase.microBatch
                let floats = mb * data.train.imageFloats
                let r = phase.runner.step(sgd: phase.sgd, centripetal: centripetal, lr: lr) {
                    m, images, labels in
                    images.update(from: batch.images + m * floats, count: floats)
                    labels.update(from: batch.labels + m * mb, count: mb)
                }
                meter.add(r, images: phase.sampler.localBatch)
                state.step += 1
                state.phaseStep += 1
                totalSteps += 1
                if !r.lossSum.isFinite { throw nonFinite("training loss", net, state) }
                try endOfStep(net, state, phase, meter, stream, lr: lr)
            }
            if let t = try endOfEpoch(net, &state, phase, meter, stream) { lastTest = t }
        }
        return PhaseResult(completed: true, test: lastTest)
    }

    /// What one call of `train` sets up once: sampling, schedule, optimizer, step runner.
    struct PhaseSetup {
        let sampler: Sampler
        let schedule: LRSchedule
        let sgd: SGD
        let runner: StepRunner
        let epochs: Int
        let centripetal: CentripetalUpdate?
        /// Images per forward/backward (`validate(worldSize:)` made the split exact).
        let microBatch: Int
        /// Global steps of the whole run: every C-SGD round of the job, or this phase.
        let runSteps: Int

        init(_ t: Trainer, _ net: Network, epochs: Int, centripetal: CentripetalUpdate?) throws {
            let c = t.config
            sampler = try Sampler(
                datasetCount: t.data.train.count, globalBatch: c.batchSize, rank: t.comm.rank,
                worldSize: t.comm.size, seed: c.seed, shuffle: true)
            schedule = LRSchedule(c, stepsPerEpoch: sampler.stepsPerEpoch, epochs: epochs)
            sgd = SGD(
                store: net.store, config: SGDConfig(c), noDecay: centripetal?.parameters ?? [])
            microBatch = sampler.localBatch / c.microBatches
            runner = try StepRunner(
                net: net, comm: t.comm, microBatch: microBatch, microBatches: c.microBatches,
                update: c.update, allreduce: c.allreduce, bucketMiB: c.bucketMb,
                bnGroup: t.bnGroup, threads: c.threads)
            self.epochs = epochs
            self.centripetal = centripetal
            let rounds = centripetal == nil ? 1 : c.effectiveRounds.count
            runSteps = rounds * epochs * sampler.stepsPerEpoch
        }
    }

    /// Running sums of one epoch on this rank.
    struct EpochMeter {
        let start = monotonicSeconds()
        var lossSum = 0.0
        var correct = 0
        var seen = 0
        var steps = 0

        mutating func add(_ r: (lossSum: Double, correct: Int), images: Int) {
            lossSum += r.lossSum
            correct += r.correct
            seen += images
            steps += 1
        }
    }

    /// Whether `max_steps` (counted over every phase of the job) has been reached.
    var stepBudgetSpent: Bool { config.maxSteps > 0 && totalSteps >= config.maxSteps }

    /// This rank's batches for the rest of the epoch (up to `max_steps`), prefetched.
    func openEpochStream(_ phase: PhaseSetup, _ state: TrainState) -> BatchStream {
        let order = phase.sampler.globalOrder(epoch: state.epoch)
        var lastStep = phase.sampler.stepsPerEpoch
        if config.maxSteps > 0 {
            lastStep = min(lastStep, state.step + max(0, config.maxSteps - totalSteps))
        }
        return data.train.stream(
            batches: (state.step..<lastStep).map {
                phase.sampler.rankBatch(order: order, step: $0)
            },
            epoch: state.epoch, train: true, config: config)
    }

    /// Step cadences: replica check, progress line, step checkpoint.
    func endOfStep(
        _ net: Network, _ state: TrainState, _ phase: PhaseSetup, _ meter: EpochMeter,
        _ stream: BatchStream, lr: Double
    ) throws {
        if config.debug || (config.verifyEvery > 0 && totalSteps % config.verifyEvery == 0) {
            verifyReplicas(net)
        }
        let elapsed = monotonicSeconds() - meter.start
        let perEpoch = phase.sampler.stepsPerEpoch
        let ips = Double(meter.steps * config.batchSize) / max(elapsed, 1e-9)
        let step = globalStep(state)
        // ETA of the whole run (every round), at this epoch's pace, up to max_steps.
        var left = phase.runSteps - step
        if config.maxSteps > 0 { left = min(left, config.maxSteps - totalSteps) }
        let remaining = Double(max(left, 0)) / max(Double(meter.steps) / elapsed, 1e-9)
        let seen = Double(max(meter.seen, 1))
        log.progress(
            "\(clockTime()) [step \(step)] \(phaseTag(state)) epoch \(state.epoch + 1)/\(phase.epochs) "
                + "step \(state.step)/\(perEpoch)"
                + String(
                    format: " loss %.4f acc %.2f%% lr %.4g %.0f img/s ETA %@",
                    meter.lossSum / seen, 100 * Double(meter.correct) / seen, lr, ips,
                    formatDuration(remaining)),
            step: state.step, every: config.logEvery)
        if totalSteps % config.logEvery == 0 {
            try recordStep(net, state, phase, meter, stream, lr: lr)
        }
        if config.checkpointEverySteps > 0 && totalSteps % config.checkpointEverySteps == 0 {
            try checkpoint(net, state)
        }
    }

    /// Appends the step record (every rank takes part: the loss sums are reduced).
    func recordStep(
        _ net: Network, _ state: TrainState, _ phase: PhaseSetup, _ meter: EpochMeter,
        _ stream: BatchStream, lr: Double
    ) throws {
        var sums = [meter.lossSum, Double(meter.correct), Double(meter.seen)]
        comm.allreduceSum(&sums)
        let elapsed = max(monotonicSeconds() - meter.start, 1e-9)
        let t = phase.runner.seconds
        let dev = phase.centripetal?.deviation(net.store)
        try log.record(
            step: StepRecord(
                step: globalStep(state), time: ISO8601DateFormatter().string(from: Date()),
                elapsedSeconds: monotonicSeconds() - started, epoch: state.epoch + 1,
                round: state.round + 1, phase: state.phase, lr: lr,
                loss: sums[0] / max(sums[2], 1), top1: sums[1] / max(sums[2], 1),
                imgPerS: Double(meter.steps * config.batchSize) / elapsed,
                dataWaitFraction: stream.waitSeconds / elapsed,
                commFraction: t.communication / max(t.compute + t.communication + t.update, 1e-9),
                deviationKernels: dev?.kernels, deviationVectors: dev?.vectors))
    }

    /// Epoch cadences: reduce the train metrics, evaluate, log and record, checkpoint. Moves
    /// `state` to the next epoch; returns the test result if it evaluated.
    func endOfEpoch(
        _ net: Network, _ state: inout TrainState, _ phase: PhaseSetup, _ meter: EpochMeter,
        _ stream: BatchStream
    ) throws -> EvalResult? {
        // The last update of the epoch can overflow with a finite loss; catch it before the
        // evaluation, the record and the checkpoint see it.
        if net.store.firstNonFiniteTensor(momentum: true) != nil {
            throw nonFinite("weights", net, state)
        }
        var sums = [meter.lossSum, Double(meter.correct), Double(meter.seen)]
        comm.allreduceSum(&sums)
        let seconds = monotonicSeconds() - meter.start
        let trainLoss = sums[0] / max(sums[2], 1)
        let trainTop1 = sums[1] / max(sums[2], 1)
        // None seen: resumed from the checkpoint after the epoch's last step, whose train
        // sums were not saved.
        let seen = sums[2] > 0
        var record = EpochRecord(
            phase: state.phase, round: state.round + 1, epoch: state.epoch + 1,
            trainLoss: seen ? trainLoss : nil, trainTop1: seen ? trainTop1 : nil,
            lr: phase.schedule.lr(at: max(0, state.phaseStep - 1)), seconds: seconds,
            imgPerS: Double(meter.steps * config.batchSize) / max(seconds, 1e-9),
            worldSize: comm.size, dataWaitSeconds: comm.allreduceMax(stream.waitSeconds))
        var skipped = [Double(stream.skippedImages.count)]
        comm.allreduceSum(&skipped)
        if skipped[0] > 0 {
            record.skippedImages = Int(skipped[0])
            let first = stream.skippedImages.first.map { " (e.g. \($0))" } ?? ""
            log.info("skipped \(Int(skipped[0])) unreadable image(s) this epoch\(first)")
        }
        var line =
            "\(phaseTag(state)) epoch \(state.epoch + 1)/\(phase.epochs): train loss "
            + (seen
                ? String(format: "%.4f acc %.2f%%", trainLoss, 100 * trainTop1)
                : "n/a (resumed at the epoch's end)")
        if let c = phase.centripetal {
            let dev = c.deviation(net.store)
            record.deviationKernels = dev.kernels
            record.deviationVectors = dev.vectors
            line += String(
                format: ", C-SGD deviation %.3e (BN/bias %.3e)", dev.kernels, dev.vectors)
        }
        let last = state.epoch + 1 == phase.epochs
        if last, let c = phase.centripetal {
            // Before the round's last evaluation and checkpoint, so both see the net the prune
            // reproduces exactly (RunningStatistics.swift). Recomputed statistics come first:
            // the merge then averages what the final weights produce.
            if config.roundEndBnBatches > 0 {
                // `batch_size` images per batch on every rank, so N ranks recompute what one does.
                let samples = try sampleBatches(
                    images: config.roundEndBnBatches * config.batchSize, batch: config.batchSize)
                Sensitivity.recalibrateBatchNorm(net, samples)
                log.info(
                    "round end: BN statistics recomputed over \(samples.batches.count) batches "
                        + "(\(samples.imageCount) training images) with the final weights")
            }
            log.info(Pipelines.statisticsLine(c.mergeRunningStatistics(net.store)))
        }
        var test: EvalResult?
        if last || (state.epoch + 1) % config.evalEvery == 0 {
            let t = try evaluate(net, data.test)
            test = t
            record.testLoss = t.loss
            record.testTop1 = t.top1
            record.testTop5 = t.top5
            line += String(
                format: " | test loss %.4f top-1 %.2f%% top-5 %.2f%%", t.loss, 100 * t.top1,
                100 * t.top5)
        }
        log.info(line + " (" + formatDuration(seconds) + ")")
        try log.record(.epoch(record), step: globalStep(state))
        state.epoch += 1
        state.step = 0
        if last || state.epoch % config.checkpointEvery == 0 {
            try checkpoint(net, state, roundEnd: last && state.phase == .csgd)
        }
        return test
    }

    /// The error that stops a run whose loss or weights are not finite, naming the step and
    /// the first tensor holding a non-finite value. No checkpoint is written after it.
    func nonFinite(_ what: String, _ net: Network, _ state: TrainState) -> CSGDError {
        let tensor = net.store.firstNonFiniteTensor(momentum: true)
        return CSGDError(
            "non-finite \(what) at step \(totalSteps) (\(phaseTag(state)) epoch "
                + "\(state.epoch + 1), step \(state.step)); "
                + (tensor.map { "first non-finite tensor: \($0)" }
                    ?? "weights still finite (the forward pass overflowed)"),
            hint: "lower lr (now \(config.lr)) or add warmup_epochs; the last good checkpoint is "
                + checkpointPath)
    }

    /// "train", "csgd round 2", "finetune round 1" for log lines.
    func phaseTag(_ state: TrainState) -> String {
        switch state.phase {
        case .train: return "train"
        case .csgd, .finetune: return "\(state.phase.rawValue) round \(state.round + 1)"
        }
    }

    /// Aborts the job if any rank's weights differ from rank 0's.
    func verifyReplicas(_ net: Network) {
        var h = Checksum()
        h.add(net.store.values.buffer)
        let all = comm.allgather(h.value)
        if let bad = all.firstIndex(where: { $0 != all[0] }) {
            comm.abort(
                code: 3,
                message: "replica check failed: rank \(bad)'s weights differ from rank 0's "
                    + "(checksums \(all.map { String($0, radix: 16) }))")
        }
    }

    /// Writes a checkpoint (rank 0) into the run's history and makes it the stable latest
    /// (`checkpointPath`); every rank holds the same state. See `CheckpointHistory`.
    /// - Parameter roundEnd: the last checkpoint of a C-SGD round's training, kept for good.
    func checkpoint(_ net: Network, _ state: TrainState, roundEnd: Bool = false) throws {
        if comm.isRoot {
            let yaml = config.yaml()
            try history.save(
                step: globalStep(state), round: state.phase == .csgd ? state.round + 1 : nil,
                roundEnd: roundEnd
            ) { path in
                try Checkpoint.save(
                    path: path, network: net, state: state, configYAML: yaml,
                    includeMomentum: true)
            }
        }
        comm.barrier()
    }

    /// The run's checkpoint files.
    var history: CheckpointHistory {
        CheckpointHistory(outDir: config.outDir, keep: config.keepCheckpoints)
    }

    /// Optimizer steps since the run started, over all rounds: a C-SGD round is `epochs`
    /// epochs of `train_size / batch_size` steps. Restored exactly from a resumed `state`.
    func globalStep(_ state: TrainState) -> Int {
        let perEpoch = data.train.count / max(config.batchSize, 1)
        return state.round * config.epochs * perEpoch + state.phaseStep
    }

    /// The global step at the end of C-SGD round `round` (0-based): where its prune goes.
    func roundEndStep(_ round: Int) -> Int {
        (round + 1) * config.epochs * (data.train.count / max(config.batchSize, 1))
    }

    // MARK: - evaluation

    /// Eval-mode loss and top-1/top-5 over `dataset`, sharded across ranks and reduced.
    /// - Throws: `CSGDError` if an image cannot be read (imagefolder, `bad_images: fail`).
    public func evaluate(_ net: Network, _ dataset: DataSplit) throws -> EvalResult {
        let shard = Sampler.evalShard(count: dataset.count, rank: comm.rank, worldSize: comm.size)
        var sums = [0.0, 0.0, 0.0, 0.0]
        try forEachBatch(dataset, shard) { images, labels, n in
            let logits = net.forward(images: images, batch: n, training: false)
            Trainer.score(logits, labels, n, net.numClasses, into: &sums, at: 0)
        }
        return reduced(&sums)[0]
    }

    /// Runs both nets over `dataset` in eval mode, one pass: the max |logit difference| and
    /// each net's loss/accuracy (the pruning equivalence check).
    public func compare(_ a: Network, _ b: Network, on dataset: DataSplit) throws -> (
        maxLogitDiff: Double, a: EvalResult, b: EvalResult
    ) {
        let shard = Sampler.evalShard(count: dataset.count, rank: comm.rank, worldSize: comm.size)
        var sums = [Double](repeating: 0, count: 8)
        var maxDiff = 0.0
        try forEachBatch(dataset, shard) { images, labels, n in
            let k = a.numClasses
            let la = Array(
                UnsafeBufferPointer(
                    start: a.forward(images: images, batch: n, training: false), count: n * k))
            let lb = b.forward(images: images, batch: n, training: false)
            la.withUnsafeBufferPointer {
                Trainer.score($0.baseAddress!, labels, n, k, into: &sums, at: 0)
            }
            Trainer.score(lb, labels, n, k, into: &sums, at: 4)
            for i in 0..<la.count {
                let d = Double(abs(la[i] - lb[i]))
                // A non-finite logit on either side fails the check (max() would drop a NaN).
                maxDiff = d.isFinite ? max(maxDiff, d) : .infinity
            }
        }
        let r = reduced(&sums)
        return (comm.allreduceMax(maxDiff), r[0], r[1])
    }

    /// Adds loss·n, top-1, top-5 and n of one batch to `sums[at..<at+4]`.
    static func score(
        _ logits: UnsafePointer<Float>, _ labels: UnsafePointer<Int32>, _ n: Int, _ classes: Int,
        into sums: inout [Double], at o: Int
    ) {
        let r = softmaxCrossEntropy(
            dLogits: nil, logits: logits, labels: labels, n: n, classes: classes)
        sums[o] += r.loss * Double(n)
        sums[o + 1] += Double(r.top1)
        sums[o + 2] += Double(r.top5)
        sums[o + 3] += Double(n)
    }

    /// Allreduces groups of (loss·n, top-1, top-5, n) and turns each into an `EvalResult`.
    func reduced(_ sums: inout [Double]) -> [EvalResult] {
        comm.allreduceSum(&sums)
        return stride(from: 0, to: sums.count, by: 4).map { o in
            let n = max(sums[o + 3], 1)
            return EvalResult(
                loss: sums[o] / n, top1: sums[o + 1] / n, top5: sums[o + 2] / n,
                count: Int(sums[o + 3]))
        }
    }

    /// Calls `body` with normalised, un-augmented batches of `range` of `dataset`.
    func forEachBatch(
        _ dataset: DataSplit, _ range: Range<Int>,
        _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) -> Void
    ) throws {
        let size = evalBatch
        let batches = stride(from: range.lowerBound, to: range.upperBound, by: size).map {
            Array($0..<min($0 + size, range.upperBound))
        }
        let stream = dataset.stream(batches: batches, epoch: 0, train: false, config: config)
        defer { stream.close() }
        for _ in batches {
            let b = try stream.next()
            body(b.images, b.labels, b.count)
        }
    }
}

/// Wall-clock time of day, HH:MM:SS UTC, for progress lines.
func clockTime() -> String {
    var t = time(nil)
    var parts = tm()
    gmtime_r(&t, &parts)
    return String(format: "%02d:%02d:%02d", parts.tm_hour, parts.tm_min, parts.tm_sec)
}
