// One split of a run's data, whichever loader it comes from: an in-memory dataset (Fashion-MNIST,
// CIFAR; batches assembled on the spot) or JPEG files (imagefolder; decoded on worker threads,
// prefetched). The trainer only sees sizes and a `BatchStream` of batches in order.

import CSGDConfig
import CSGDCore
import CSGDData

/// A train or test split of a run's data.
public enum DataSplit {
    /// Images held in memory as bytes.
    case memory(ImageDataset)
    /// JPEG images decoded on the fly at `imageSize × imageSize`.
    case files(ImageFolderDataset, name: String, imageSize: Int)

    /// Human-readable name, e.g. `fashion-mnist-train`.
    public var name: String {
        switch self {
        case .memory(let d): return d.name
        case .files(_, let name, _): return name
        }
    }

    /// Number of images.
    public var count: Int {
        switch self {
        case .memory(let d): return d.count
        case .files(let d, _, _): return d.count
        }
    }

    /// Channels per model input image.
    public var channels: Int {
        switch self {
        case .memory(let d): return d.channels
        case .files: return 3
        }
    }

    /// Side of the (square) model input image.
    public var height: Int {
        switch self {
        case .memory(let d): return d.height
        case .files(_, _, let size): return size
        }
    }

    /// Number of classes.
    public var numClasses: Int {
        switch self {
        case .memory(let d): return d.numClasses
        case .files(let d, _, _): return d.classes.count
        }
    }

    /// Floats per model input image.
    public var imageFloats: Int { channels * height * height }

    /// The first `n` images (all if `n ≥ count`).
    public func subset(first n: Int) -> DataSplit {
        switch self {
        case .memory(let d): return .memory(d.subset(first: n))
        case .files(let d, let name, let size):
            return .files(d.subset(first: n), name: name, imageSize: size)
        }
    }

    /// Hands out `batches` (sample indices) of this split for `epoch`, augmented when
    /// `train && config.augment` (CIFAR-style crop + flip in memory; RandomResizedCrop + flip
    /// for files, else resize + center crop), decoded by `config.loaderWorkers` threads
    /// `config.prefetchBatches` batches ahead.
    public func stream(batches: [[Int]], epoch: Int, train: Bool, config: RunConfig)
        -> BatchStream
    {
        let augment = train && config.augment
        switch self {
        case .memory(let d):
            return InMemoryBatchStream(
                dataset: d, batches: batches, augmentation: augment ? .standard : .none,
                seed: config.seed, epoch: epoch)
        case .files(let d, _, let size):
            var transform = augment ? ImageTransform.train(size: size) : .eval(size: size)
            transform.maxPixels = config.maxImagePixels
            return ImageBatchLoader(
                dataset: d, transform: transform,
                batches: batches, seed: config.seed, epoch: epoch, workers: config.loaderWorkers,
                prefetch: config.prefetchBatches,
                policy: config.badImages)
        }
    }

    /// Loads the imagefolder splits `<dataDir>/train` and `<dataDir>/val` (each a class-folder
    /// tree or packed), checking that both have the same classes.
    static func imageFolder(_ c: RunConfig) throws -> (train: DataSplit, test: DataSplit) {
        if c.dataDir.isEmpty {
            throw CSGDError(
                "dataset imagefolder needs --data-dir (the folder holding train/ and val/)")
        }
        let train = try ImageFolderDataset.open(c.dataDir + "/train")
        let val = try ImageFolderDataset.open(c.dataDir + "/val")
        if val.classes != train.classes {
            throw CSGDError(
                "\(val.root) has \(val.classes.count) classes that differ from the "
                    + "\(train.classes.count) of \(train.root)",
                hint: "val must hold the same class folders as train")
        }
        let limit = { (d: ImageFolderDataset, n: Int) in n > 0 ? d.subset(evenly: n) : d }
        return (
            .files(limit(train, c.trainLimit), name: "imagefolder-train", imageSize: c.imageSize),
            .files(limit(val, c.testLimit), name: "imagefolder-val", imageSize: c.imageSize)
        )
    }
}
