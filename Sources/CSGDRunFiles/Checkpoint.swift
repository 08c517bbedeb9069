// Checkpoints: model files (CSGDModels/ModelFile.swift) — safetensors with torchvision-style tensor names
// (`layer1.0.conv1.weight`, `bn1.running_mean`, …) so PyTorch users can load the weights, plus
// the metadata that makes a file self-describing: the architecture (widths), and for training
// checkpoints the loop position, the cluster plan, the resolved config and the optimizer
// momentum (`optim.momentum.<name>` tensors). Written atomically with a checksum
// (SafeTensors.write); a corrupt, truncated or mismatched file is refused with one line.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDModels
import Foundation

/// Where a training loop stands; restoring it resumes bit-exactly.
public struct TrainState: Codable, Equatable, Sendable {
    /// What the loop is doing.
    public var phase: TrainPhase
    /// C-SGD round (0 for plain training).
    public var round: Int
    /// Epoch in progress, 0-based.
    public var epoch: Int
    /// Optimizer steps completed in `epoch`.
    public var step: Int
    /// Optimizer steps completed in this phase/round.
    public var phaseStep: Int
    /// Ranks the run was started with (resume must match for bitwise equality).
    public var worldSize: Int
    /// The clusters of the current C-SGD round.
    public var plan: ClusterPlan?

    /// A fresh state at the start of a phase.
    public init(phase: TrainPhase, round: Int, worldSize: Int, plan: ClusterPlan? = nil) {
        self.phase = phase
        self.round = round
        epoch = 0
        step = 0
        phaseStep = 0
        self.worldSize = worldSize
        self.plan = plan
    }
}

/// A loaded checkpoint or model file.
public struct LoadedCheckpoint {
    /// The network, with weights, BN buffers and (if present) momentum restored.
    public let network: Network
    /// The training state, for checkpoints.
    public let state: TrainState?
    /// The resolved config that wrote the file, if recorded.
    public let configYAML: String?
    /// Whether momentum tensors were present.
    public let hasMomentum: Bool
}

/// Reads and writes checkpoint/model files.
public enum Checkpoint {
    static let format = ModelFile.format
    static let momentumPrefix = "optim.momentum."

    /// Writes `network` (and optionally state, config and momentum) to `path`, atomically.
    public static func save(
        path: String, network: Network, state: TrainState? = nil, configYAML: String? = nil,
        includeMomentum: Bool = false
    ) throws {
        let store = network.store
        if let bad = store.firstNonFiniteTensor(momentum: includeMomentum) {
            throw CSGDError(
                "refusing to write \(path): tensor \(bad) holds NaN or inf (the previous file, "
                    + "if any, is kept)")
        }
        var file = try ModelFile.contents(of: network)
        if includeMomentum {
            for (i, spec) in store.specs.enumerated() {
                file.add(
                    momentumPrefix + spec.name, shape: spec.shape,
                    floats: UnsafeBufferPointer(
                        start: store.momentum(ParameterID(i)), count: spec.count))
            }
        }
        if let state { file.metadata["csgd.state"] = try json(state) }
        if let configYAML { file.metadata["csgd.config"] = configYAML }
        try file.write(path: path)
    }

    /// Loads a file written by `save`.
    /// - Throws: `CSGDError` naming the path for a missing/corrupt file, a file that is not a
    ///   csgd-dist model, or tensors that do not match the recorded architecture.
    public static func load(path: String) throws -> LoadedCheckpoint {
        let file = try SafeTensorsFile.read(path: path)
        guard let archText = file.metadata["csgd.architecture"] else {
            throw CSGDError(
                "\(path): not a csgd-dist model (no csgd.architecture metadata)",
                hint: "pass a file written by `csgd-dist train`, `csgd` or `prune`")
        }
        let arch: Architecture
        do {
            arch = try JSONDecoder().decode(Architecture.self, from: Data(archText.utf8))
        } catch {
            throw CSGDError("\(path): unreadable csgd.architecture metadata")
        }
        let net: Network
        do {
            net = try Network(architecture: arch)
        } catch let e as CSGDError {
            throw CSGDError("\(path): \(e.message)")
        }
        let store = net.store
        func copy(_ name: String, _ shape: [Int], into p: UnsafeMutablePointer<Float>) throws {
            guard let s = file.shape(name) else {
                throw CSGDError("\(path): tensor \(name) is missing")
            }
            if s != shape {
                throw CSGDError("\(path): tensor \(name) has shape \(s), the model needs \(shape)")
            }
            try file.copyFloats(
                name, into: UnsafeMutableBufferPointer(start: p, count: shape.reduce(1, *)))
        }
        for (i, spec) in store.specs.enumerated() {
            try copy(spec.name, spec.shape, into: store.value(ParameterID(i)))
        }
        for (i, spec) in store.bufferSpecs.enumerated() {
            try copy(spec.name, spec.shape, into: store.buffer(BufferID(i)))
        }
        let hasMomentum = file.shape(momentumPrefix + store.specs[0].name) != nil
        if hasMomentum {
            for (i, spec) in store.specs.enumerated() {
                try copy(
                    momentumPrefix + spec.name, spec.shape, into: store.momentum(ParameterID(i)))
            }
        }
        if let bad = store.firstNonFiniteTensor(momentum: hasMomentum) {
            throw CSGDError("\(path): tensor \(bad) holds NaN or inf; this is not a usable model")
        }
        var state: TrainState?
        if let text = file.metadata["csgd.state"] {
            do {
                state = try JSONDecoder().decode(TrainState.self, from: Data(text.utf8))
            } catch {
                throw CSGDError("\(path): unreadable csgd.state metadata")
            }
        }
        return LoadedCheckpoint(
            network: net, state: state, configYAML: file.metadata["csgd.config"],
            hasMomentum: hasMomentum)
    }

    static func json<T: Encodable>(_ value: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(value), as: UTF8.self)
    }
}
