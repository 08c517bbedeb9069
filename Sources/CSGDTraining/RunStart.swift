// Where a train or csgd job starts: a fresh network, a base model (`--from`) or the run's own
// newest checkpoint that verifies (`--resume`; see CheckpointHistory). Everything read from a file is untrusted, so it is checked here,
// before the first step: the model against the data (channels, image size, classes), and a
// resumed loop position against the resolved config (rounds, epochs, steps, the cluster plan),
// because a position that does not fit the config would index past the end of the sampler's
// order or the plan's filters instead of failing.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDModels
import CSGDRunData
import CSGDRunFiles
import Foundation

/// The starting network and loop position of a job, and the config that actually runs.
struct RunStart {
    /// The network, with weights (and, when resumed, momentum and BN buffers).
    var network: Network
    /// The loop position to continue from, when resumed.
    var state: TrainState?
    /// The resolved config, with `model` set to what runs (a `--from` file's model).
    var config: RunConfig

    /// Loads or builds the starting network and checks it.
    /// - Parameters:
    ///   - phase: the job's phase; a resumed checkpoint must be of it.
    ///   - fresh: the architecture of a fresh network for a config.
    /// - Throws: a one-line `CSGDError` naming the file, flag or config key at fault.
    static func resolve(
        comm: Communicator, config: RunConfig, data: DataBundle, phase: TrainPhase, resume: Bool,
        from: String?, fresh: (RunConfig) throws -> Architecture
    ) throws -> RunStart {
        let log = RunLog(comm: comm, metricsPath: nil)
        var config = config
        var resumedFrom: String?
        let start: RunStart
        if resume {
            if let from {
                throw CSGDError(
                    "--resume and --from \(from) cannot be combined: a resumed run continues from "
                        + "its own \(config.outDir)/checkpoint.safetensors")
            }
            let history = CheckpointHistory(outDir: config.outDir, keep: config.keepCheckpoints)
            let (ck, path) = try history.loadNewestValid(warn: log.info)
            resumedFrom = path
            // The config that wrote the checkpoint (nil for files from before it was recorded).
            let saved = ck.configYAML.flatMap { try? RunConfig.load(yamlText: $0, source: path) }
            let state = try checkResume(
                ck, path: path, config: config, saved: saved, data: data, phase: phase)
            if let saved { logConfigChanges(from: saved, to: config, log: log) }
            if state.worldSize != comm.size {
                log.info(
                    "note: checkpoint was written by \(state.worldSize) rank(s), resuming on "
                        + "\(comm.size): the result will not be bitwise equal to an "
                        + "uninterrupted run")
            }
            log.info(
                "resuming from \(path): round \(state.round + 1), epoch \(state.epoch + 1), "
                    + "step \(state.step)")
            start = RunStart(network: ck.network, state: state, config: config)
        } else if let from {
            let net = try Checkpoint.load(path: from).network
            net.store.momentum.zero()
            let model = net.architecture.model
            if model != config.model {
                log.info("model from \(from): \(model) (config key 'model' was \(config.model))")
                config.model = model
            }
            start = RunStart(network: net, state: nil, config: config)
        } else {
            let net = try Network(architecture: try fresh(config))
            net.initialize(seed: config.seed)
            start = RunStart(network: net, state: nil, config: config)
        }
        let source = resumedFrom ?? from ?? "model \(config.model)"
        try data.check(start.network.architecture, from: source)
        return start
    }

    /// The rolling training checkpoint of a run.
    static func checkpointPath(_ config: RunConfig) -> String {
        config.outDir + "/checkpoint.safetensors"
    }

    /// Checks a checkpoint's loop position against the config it is resumed with.
    /// - Returns: the position.
    static func checkResume(
        _ ck: LoadedCheckpoint, path: String, config: RunConfig, saved: RunConfig?,
        data: DataBundle, phase: TrainPhase
    ) throws -> TrainState {
        guard let state = ck.state, ck.hasMomentum else {
            throw CSGDError("\(path): not a training checkpoint (no state or momentum)")
        }
        if state.phase != phase {
            throw CSGDError(
                "\(path): checkpoint is from a '\(state.phase.rawValue)' run, cannot resume "
                    + "'\(phase.rawValue)'")
        }
        if ck.network.architecture.model != config.model {
            throw CSGDError(
                "config key 'model' is \(config.model) but \(path) holds a "
                    + "\(ck.network.architecture.model)",
                hint: "resume with the run's own config (its config.yaml)")
        }
        if state.round < 0 || state.epoch < 0 || state.step < 0 || state.phaseStep < 0
            || state.worldSize < 1
        {
            throw CSGDError("\(path): loop position has a negative field (corrupt csgd.state)")
        }
        let rounds = phase == .csgd ? config.effectiveRounds.count : 1
        if state.round >= rounds {
            throw CSGDError(
                "config key '\(config.widen > 1 ? "widen" : "rounds")' gives \(rounds) round(s) "
                    + "but \(path) is in round \(state.round + 1)",
                hint: "resume with the rounds the run was started with")
        }
        if state.epoch > config.epochs || (state.epoch == config.epochs && state.step > 0) {
            throw CSGDError(
                "config key 'epochs' is \(config.epochs) but \(path) is at epoch "
                    + "\(state.epoch + 1) of its round")
        }
        // Mid-epoch, the rest of the epoch's sample order must be the one the run started.
        if state.step > 0, let saved {
            let orderKeys: [(String, String, String)] = [
                ("batch_size", "\(saved.batchSize)", "\(config.batchSize)"),
                ("train_limit", "\(saved.trainLimit)", "\(config.trainLimit)"),
                ("seed", "\(saved.seed)", "\(config.seed)"),
                ("dataset", saved.dataset.rawValue, config.dataset.rawValue),
            ]
            if let (key, was, now) = orderKeys.first(where: { $0.1 != $0.2 }) {
                throw CSGDError(
                    "config key '\(key)' is \(now) but \(path) stopped mid-epoch (step "
                        + "\(state.step)) of a run with \(key) \(was): the epoch's sample order "
                        + "would change",
                    hint: "resume with \(key) \(was), or from a checkpoint at an epoch boundary")
            }
        }
        let stepsPerEpoch = data.train.count / max(config.batchSize, 1)
        // step == stepsPerEpoch is the step checkpoint written after an epoch's last step and
        // before its end-of-epoch one: the resume goes straight to the epoch's end.
        if state.step > max(stepsPerEpoch, 1) {
            throw CSGDError(
                "\(path) stopped at step \(state.step) of an epoch, but batch_size "
                    + "\(config.batchSize) over \(data.train.count) images gives "
                    + "\(stepsPerEpoch) steps per epoch")
        }
        if let plan = state.plan {
            let topology = try Topology(graph: ck.network.graph)
            do {
                try plan.validate(topology)
            } catch let e as CSGDError {
                throw CSGDError("\(path): cluster plan does not fit the model: \(e.message)")
            }
        }
        return state
    }

    /// Logs which config keys differ from the checkpoint's own config (they apply from now on).
    static func logConfigChanges(from saved: RunConfig, to config: RunConfig, log: RunLog) {
        let changed = ConfigKey.all.compactMap { key -> String? in
            let was = saved.value(of: key.name) ?? ""
            let now = config.value(of: key.name) ?? ""
            return was == now ? nil : "\(key.name) \(was) → \(now)"
        }
        if !changed.isEmpty {
            log.info("resume: config changes applied: " + changed.joined(separator: ", "))
        }
    }
}
