// The model file: a safetensors file with torchvision-style tensor names and the architecture
// in its metadata (`csgd.architecture`), so the file alone rebuilds the network. It lives with
// the models because every producer of a model writes it — an import, an export's input, a
// training run (whose checkpoints add their loop state on top: CSGDRunFiles/Checkpoint.swift).

import CSGDCore
import Foundation

/// Writes model files.
public enum ModelFile {
    /// The `csgd.format` metadata value.
    public static let format = "csgd-dist/1"

    /// The file of `network`: every parameter, then every BatchNorm buffer, under its
    /// checkpoint name, with the format and architecture metadata.
    /// - Throws: `CSGDError` if the architecture cannot be encoded.
    public static func contents(of network: Network) throws -> SafeTensorsFile {
        let store = network.store
        var file = SafeTensorsFile()
        for (i, spec) in store.specs.enumerated() {
            file.add(
                spec.name, shape: spec.shape,
                floats: UnsafeBufferPointer(start: store.value(ParameterID(i)), count: spec.count))
        }
        for (i, spec) in store.bufferSpecs.enumerated() {
            file.add(
                spec.name, shape: spec.shape,
                floats: UnsafeBufferPointer(start: store.buffer(BufferID(i)), count: spec.count))
        }
        file.metadata["csgd.format"] = format
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        file.metadata["csgd.architecture"] = String(
            decoding: try enc.encode(network.architecture), as: UTF8.self)
        return file
    }

    /// Writes the model file of `network` to `path` atomically; a non-finite tensor is refused
    /// and the previous file, if any, kept.
    public static func write(path: String, network: Network) throws {
        if let bad = network.store.firstNonFiniteTensor(momentum: false) {
            throw CSGDError(
                "refusing to write \(path): tensor \(bad) holds NaN or inf (the previous file, "
                    + "if any, is kept)")
        }
        try contents(of: network).write(path: path)
    }
}
