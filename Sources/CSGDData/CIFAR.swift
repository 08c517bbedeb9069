// CIFAR-10 / CIFAR-100 loader for the "binary version" downloads
// (https://www.cs.toronto.edu/~kriz/cifar.html). Each record is the label byte(s) followed by
// 3072 pixel bytes already in CHW order (R, G, B planes of 32×32), so records copy straight
// into the NCHW pixel array without any reshuffling.

import CSGDCore
import Foundation

/// The CIFAR-10 and CIFAR-100 datasets (Krizhevsky 2009), 32×32 RGB, 50 000 train / 10 000 test.
public enum CIFAR {
    /// Which CIFAR dataset to load.
    public enum Variant: String, Sendable, CaseIterable {
        /// 10 classes; files `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`.
        case cifar10
        /// 100 fine classes (20 coarse); files `train.bin`, `test.bin`.
        case cifar100

        /// Number of classes of the label that is kept (fine labels for CIFAR-100).
        public var numClasses: Int { self == .cifar10 ? 10 : 100 }

        /// Per-channel (R, G, B) mean of `pixel / 255` over the training set.
        public var mean: [Float] {
            self == .cifar10 ? [0.4914, 0.4822, 0.4465] : [0.5071, 0.4865, 0.4409]
        }

        /// Per-channel (R, G, B) standard deviation of `pixel / 255` over the training set.
        public var std: [Float] {
            self == .cifar10 ? [0.2470, 0.2435, 0.2616] : [0.2673, 0.2564, 0.2762]
        }

        /// Label bytes at the start of each record (CIFAR-100 stores coarse then fine).
        public var labelBytes: Int { self == .cifar10 ? 1 : 2 }

        /// Bytes per record: label byte(s) plus 3 × 32 × 32 pixels.
        public var recordSize: Int { labelBytes + CIFAR.imageBytes }

        /// The binary files of a split, in the order their records are concatenated.
        public func fileNames(train: Bool) -> [String] {
            switch self {
            case .cifar10:
                return train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
            case .cifar100:
                return train ? ["train.bin"] : ["test.bin"]
            }
        }
    }

    /// Bytes of one image: 3 channels × 32 × 32.
    public static let imageBytes = 3 * 32 * 32

    /// Loads a split of CIFAR-10 or CIFAR-100 from the extracted binary download.
    ///
    /// All the split's files must exist; with `limit`, files after the one that completes the
    /// limit are not read. Every file that is read is checked in full.
    /// - Parameters:
    ///   - directory: Folder holding the `.bin` files (`cifar-10-batches-bin` or
    ///     `cifar-100-binary` after extraction).
    ///   - variant: `.cifar10` or `.cifar100` (fine labels are kept for CIFAR-100).
    ///   - train: `true` for the 50 000-image training split, `false` for the test split.
    ///   - limit: Keep only the first `limit` images (all if `nil` or larger than the split).
    /// - Throws: `CSGDError` naming the file if it is missing, unreadable, empty, truncated
    ///   (size not a multiple of the record size) or holds a label out of range.
    public static func load(directory: String, variant: Variant, train: Bool, limit: Int? = nil)
        throws -> ImageDataset
    {
        if let limit, limit < 0 { throw CSGDError("CIFAR limit must be ≥ 0, got \(limit)") }
        let paths = variant.fileNames(train: train).map { directory + "/" + $0 }
        for path in paths where !FileManager.default.fileExists(atPath: path) {
            throw CSGDError(
                "missing \(variant.rawValue) file \(path)",
                hint: "download the binary version from https://www.cs.toronto.edu/~kriz/"
                    + "cifar.html, extract it and point the data directory at the folder "
                    + "holding \(variant.fileNames(train: train).joined(separator: ", "))")
        }
        let wanted = limit ?? Int.max
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        for path in paths where labels.count < wanted {
            try readFile(
                path: path, variant: variant, keep: wanted - labels.count, pixels: &pixels,
                labels: &labels)
        }
        return ImageDataset(
            name: "\(variant.rawValue)-\(train ? "train" : "test")", channels: 3, height: 32,
            width: 32, numClasses: variant.numClasses, pixels: pixels, labels: labels,
            mean: variant.mean, std: variant.std)
    }

    /// Validates one binary file and appends its first `keep` records.
    static func readFile(
        path: String, variant: Variant, keep: Int, pixels: inout [UInt8], labels: inout [Int32]
    ) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CSGDError("cannot read \(variant.rawValue) file \(path)")
        }
        let record = variant.recordSize
        if data.isEmpty { throw CSGDError("\(variant.rawValue) file \(path) is empty") }
        if data.count % record != 0 {
            throw CSGDError(
                "\(variant.rawValue) file \(path) is truncated: \(data.count) bytes is not a "
                    + "multiple of the \(record)-byte record",
                hint: "re-download and re-extract the binary version of the dataset")
        }
        let records = data.count / record
        let take = min(records, keep)
        let firstPixel = pixels.count
        pixels.append(contentsOf: repeatElement(0, count: take * imageBytes))
        labels.reserveCapacity(labels.count + take)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let src = raw.bindMemory(to: UInt8.self)
            for i in 0..<records {
                let base = i * record
                if variant == .cifar100 && src[base] >= 20 {
                    throw CSGDError(
                        "\(variant.rawValue) file \(path): coarse label \(src[base]) of record "
                            + "\(i) is out of range 0..<20")
                }
                let label = Int(src[base + variant.labelBytes - 1])
                if label >= variant.numClasses {
                    throw CSGDError(
                        "\(variant.rawValue) file \(path): label \(label) of record \(i) is "
                            + "out of range 0..<\(variant.numClasses)")
                }
                if i < take { labels.append(Int32(label)) }
            }
            pixels.withUnsafeMutableBufferPointer { dst in
                for i in 0..<take {
                    let from = src.baseAddress! + i * record + variant.labelBytes
                    let to = dst.baseAddress! + firstPixel + i * imageBytes
                    to.update(from: from, count: imageBytes)
                }
            }
        }
    }
}
