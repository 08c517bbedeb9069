// The in-memory image dataset every loader produces: raw 0–255 bytes in NCHW order plus the
// per-channel statistics used to normalize them. Keeping bytes (not floats) makes CIFAR-10
// 150 MB instead of 600 MB; `makeBatch` normalizes on the fly through a 256-entry table.

/// A labelled image classification dataset held in memory.
///
/// `pixels` is `count × channels × height × width` bytes in NCHW order, values 0–255. A model
/// input is `(pixel / 255 − mean[c]) / std[c]` (see `makeBatch`).
public struct ImageDataset: Sendable, Equatable {
    /// Human-readable name, e.g. `fashion-mnist-train`.
    public let name: String
    /// Number of images.
    public let count: Int
    /// Channels per image (1 for Fashion-MNIST, 3 for CIFAR).
    public let channels: Int
    /// Image height in pixels.
    public let height: Int
    /// Image width in pixels.
    public let width: Int
    /// Number of classes; every label is in `0..<numClasses`.
    public let numClasses: Int
    /// Raw bytes, NCHW, `count · channels · height · width` of them.
    public let pixels: [UInt8]
    /// One label per image.
    public let labels: [Int32]
    /// Per-channel mean of `pixel / 255`, used for normalization.
    public let mean: [Float]
    /// Per-channel standard deviation of `pixel / 255`, used for normalization.
    public let std: [Float]

    /// Creates a dataset; `count` is `labels.count`.
    ///
    /// Sizes must agree (`pixels.count == labels.count · channels · height · width`, one
    /// `mean` and `std` per channel); a mismatch is a programming error and stops the process.
    public init(
        name: String, channels: Int, height: Int, width: Int, numClasses: Int,
        pixels: [UInt8], labels: [Int32], mean: [Float], std: [Float]
    ) {
        if channels < 1 || height < 1 || width < 1 || numClasses < 1 {
            fatalError("ImageDataset \(name): bad shape \(channels)×\(height)×\(width)")
        }
        if pixels.count != labels.count * channels * height * width {
            fatalError(
                "ImageDataset \(name): \(pixels.count) pixel bytes for \(labels.count) images")
        }
        if mean.count != channels || std.count != channels {
            fatalError("ImageDataset \(name): mean/std need one value per channel")
        }
        self.name = name
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.numClasses = numClasses
        self.pixels = pixels
        self.labels = labels
        self.mean = mean
        self.std = std
    }

    /// Bytes per image: `channels · height · width`.
    public var imageSize: Int { channels * height * width }

    /// The first `n` images (all of them if `n ≥ count`), with the same statistics and name.
    public func subset(first n: Int) -> ImageDataset {
        let k = max(0, min(n, count))
        if k == count { return self }
        return ImageDataset(
            name: name, channels: channels, height: height, width: width,
            numClasses: numClasses, pixels: Array(pixels[0..<(k * imageSize)]),
            labels: Array(labels[0..<k]), mean: mean, std: std)
    }
}
