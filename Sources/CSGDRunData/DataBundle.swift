// The data a run config names: the train and test splits it loads, and the check that a model
// takes them (channels, image size, classes) before anything runs on it.

import CSGDConfig
import CSGDCore
import CSGDData
import CSGDModels
import Foundation

extension DataSplit {
    /// Per-channel (mean, std) of pixel/255 that this split's batches are normalised with.
    public var normalization: (mean: [Float], std: [Float]) {
        switch self {
        case .memory(let d): return (d.mean, d.std)
        case .files: return (ImageTransform.imageNetMean, ImageTransform.imageNetStd)
        }
    }
}

/// Train and test sets of a run.
public struct DataBundle {
    public let train: DataSplit
    public let test: DataSplit

    /// Loads the configured dataset (Fashion-MNIST from the Debian package by default).
    public static func load(_ c: RunConfig) throws -> DataBundle {
        let limit = { (n: Int) in n > 0 ? n : nil }
        switch c.dataset {
        case .fashionMNIST:
            let dir = c.dataDir.isEmpty ? FashionMNIST.defaultDirectory : c.dataDir
            return DataBundle(
                train: .memory(
                    try FashionMNIST.load(directory: dir, train: true, limit: limit(c.trainLimit))),
                test: .memory(
                    try FashionMNIST.load(directory: dir, train: false, limit: limit(c.testLimit)))
            )
        case .imagefolder:
            let (train, test) = try DataSplit.imageFolder(c)
            return DataBundle(train: train, test: test)
        case .cifar10, .cifar100:
            let variant: CIFAR.Variant = c.dataset == .cifar100 ? .cifar100 : .cifar10
            if c.dataDir.isEmpty {
                throw CSGDError(
                    "dataset \(c.dataset.rawValue) needs --data-dir (the folder with the binary batches)"
                )
            }
            return DataBundle(
                train: .memory(
                    try CIFAR.load(
                        directory: c.dataDir, variant: variant, train: true,
                        limit: limit(c.trainLimit))),
                test: .memory(
                    try CIFAR.load(
                        directory: c.dataDir, variant: variant, train: false,
                        limit: limit(c.testLimit)))
            )
        }
    }

    /// Checks that a network built for `arch` takes this data: image channels and size, one
    /// output per class (every label is in range: the loaders check labels against their own
    /// class count), and the normalisation the model records (imported models), if any.
    /// Called before the first step of every job, since a mismatch would index past the end
    /// of buffers rather than fail (or, for the normalisation, silently feed the model inputs
    /// it was not trained on).
    /// - Parameter source: the model file (or "the configured model") for the message.
    public func check(_ arch: Architecture, from source: String) throws {
        let data = train
        if arch.inputChannels != data.channels || arch.imageSize != data.height
            || arch.numClasses != data.numClasses || test.channels != data.channels
            || test.height != data.height || test.numClasses != data.numClasses
        {
            throw CSGDError(
                "\(source): the model takes \(arch.inputChannels)-channel "
                    + "\(arch.imageSize)×\(arch.imageSize) images and \(arch.numClasses) classes; "
                    + "\(data.name) has \(data.channels)-channel \(data.height)×\(data.height) "
                    + "images and \(data.numClasses) classes (test: \(test.channels), "
                    + "\(test.height)×\(test.height), \(test.numClasses))")
        }
        if let p = arch.preprocessing {
            for split in [train, test] {
                let (mean, std) = split.normalization
                let close = { (a: [Float], b: [Float]) in
                    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 }
                }
                if !close(p.mean, mean) || !close(p.std, std) {
                    throw CSGDError(
                        "\(source): the model expects inputs normalised with mean \(p.mean), "
                            + "std \(p.std); \(split.name) is normalised with mean \(mean), "
                            + "std \(std)",
                        hint: "re-import the model with the --mean/--std it was trained with, "
                            + "or use data prepared the same way")
                }
            }
        }
    }

    /// The architecture of `config.model` for this data (channels, size, classes), widened.
    public func architecture(_ c: RunConfig, widen: Int = 1) throws -> Architecture {
        if !ModelZoo.isBuiltIn(c.model) {
            throw CSGDError(
                "config key 'model': '\(c.model)' is not a built-in model ("
                    + ModelZoo.names.joined(separator: ", ") + ")",
                hint: "an imported model runs from its file: --from model.safetensors")
        }
        var a = try Architecture.standard(
            model: c.model, inputChannels: train.channels, imageSize: train.height,
            numClasses: train.numClasses, widen: widen)
        if c.widthMultiplier != 1 {
            a.widths = a.widths.map { max(1, Int((Double($0) * c.widthMultiplier).rounded())) }
        }
        return a
    }
}
