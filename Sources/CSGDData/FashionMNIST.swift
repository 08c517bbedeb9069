// Fashion-MNIST loader: reads the four IDX files (gzip'd, as the Debian package
// dataset-fashion-mnist installs them) straight through zlib, checks every header field
// against the data, and zero-pads the 28×28 images to 32×32 so the CIFAR-shaped ResNet stem
// (with 1 input channel) can be reused unchanged.

import CSGDCore
import Foundation

/// The Fashion-MNIST dataset (Xiao et al. 2017): 60 000 train / 10 000 test grayscale images
/// of 10 clothing classes, stored in IDX format.
///
/// Images are loaded as **1 channel** of 32×32: the 28×28 originals are zero-padded by 2 pixels
/// on every side. Models are built with a 1-channel stem for this dataset (we do not replicate
/// the gray plane to 3 channels). Normalization uses mean 0.2860 and std 0.3530, the
/// statistics of the unpadded 28×28 training pixels.
public enum FashionMNIST {
    /// Where the Debian package `dataset-fashion-mnist` installs the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    /// Mean of `pixel / 255` over the training set.
    public static let mean: Float = 0.2860
    /// Standard deviation of `pixel / 255` over the training set.
    public static let std: Float = 0.3530
    /// Number of classes (labels 0–9).
    public static let numClasses = 10
    /// Side of a stored (raw) image.
    public static let rawSide = 28
    /// Side of a loaded (padded) image.
    public static let paddedSide = 32

    static let imageMagic = 2051
    static let labelMagic = 2049

    /// Loads the training (`train-*`) or test (`t10k-*`) split from `directory`.
    ///
    /// Reads `<split>-images-idx3-ubyte.gz` and `<split>-labels-idx1-ubyte.gz` (an uncompressed
    /// file without `.gz` is used if the `.gz` is absent). Both files are read and checked in
    /// full even when `limit` is set.
    /// - Parameters:
    ///   - directory: Folder holding the IDX files.
    ///   - train: `true` for the 60 000-image training split, `false` for the test split.
    ///   - limit: Keep only the first `limit` images (all if `nil` or larger than the split).
    /// - Throws: `CSGDError` naming the file if it is missing, has the wrong magic number, is
    ///   truncated or has trailing bytes, is not 28×28, has a label ≥ 10, or if the image and
    ///   label counts differ.
    public static func load(directory: String, train: Bool, limit: Int? = nil) throws
        -> ImageDataset
    {
        if let limit, limit < 0 { throw CSGDError("Fashion-MNIST limit must be ≥ 0, got \(limit)") }
        let split = train ? "train" : "t10k"
        let imagesPath = try locate(directory, "\(split)-images-idx3-ubyte")
        let labelsPath = try locate(directory, "\(split)-labels-idx1-ubyte")

        let images = try readIDX(path: imagesPath, magic: imageMagic, dimensions: 3)
        if images.dims[1] != rawSide || images.dims[2] != rawSide {
            throw CSGDError(
                "\(imagesPath): images are \(images.dims[1])×\(images.dims[2]), expected 28×28")
        }
        let labels = try readIDX(path: labelsPath, magic: labelMagic, dimensions: 1)
        if images.dims[0] != labels.dims[0] {
            throw CSGDError(
                "\(imagesPath) has \(images.dims[0]) images but \(labelsPath) has "
                    + "\(labels.dims[0]) labels",
                hint: "the two files must come from the same split of the same download")
        }
        for (i, label) in labels.data.enumerated() where Int(label) >= numClasses {
            throw CSGDError(
                "\(labelsPath): label \(label) at index \(i) is out of range 0..<\(numClasses)")
        }

        let n = min(images.dims[0], limit ?? Int.max)
        let raw = rawSide * rawSide
        let padded = paddedSide * paddedSide
        let border = (paddedSide - rawSide) / 2
        var pixels = [UInt8](repeating: 0, count: n * padded)
        images.data.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                for i in 0..<n {
                    for row in 0..<rawSide {
                        let from = s + i * raw + row * rawSide
                        let to = d + i * padded + (row + border) * paddedSide + border
                        to.update(from: from, count: rawSide)
                    }
                }
            }
        }
        return ImageDataset(
            name: train ? "fashion-mnist-train" : "fashion-mnist-test", channels: 1,
            height: paddedSide, width: paddedSide, numClasses: numClasses, pixels: pixels,
            labels: labels.data[0..<n].map { Int32($0) }, mean: [mean], std: [std])
    }

    /// The `.gz` path if present, else the uncompressed path if present; throws otherwise.
    static func locate(_ directory: String, _ base: String) throws -> String {
        let gz = directory + "/" + base + ".gz"
        if FileManager.default.fileExists(atPath: gz) { return gz }
        let plain = directory + "/" + base
        if FileManager.default.fileExists(atPath: plain) { return plain }
        throw CSGDError(
            "missing Fashion-MNIST file \(gz)",
            hint: "install the Debian package dataset-fashion-mnist (it fills "
                + "\(defaultDirectory)) or point the data directory at a folder holding the "
                + "four *-ubyte.gz files")
    }

    /// Reads an unsigned-byte IDX file: big-endian magic, `dimensions` big-endian UInt32 sizes,
    /// then exactly the product of the sizes in bytes.
    static func readIDX(path: String, magic: Int, dimensions: Int) throws
        -> (dims: [Int], data: [UInt8])
    {
        let reader = try GzipReader(path: path)
        let header = try reader.readArray(count: 4 * (1 + dimensions))
        if header.bytes.count < 4 {
            throw CSGDError("\(path) is truncated: \(header.bytes.count) bytes, no IDX header")
        }
        let found = bigEndian(header.bytes, at: 0)
        if found != magic {
            throw CSGDError(
                "\(path) has wrong magic number \(found), expected \(magic) (IDX "
                    + (magic == imageMagic ? "images)" : "labels)"),
                hint: "check the file is an uncorrupted Fashion-MNIST IDX file")
        }
        if !header.complete {
            throw CSGDError("\(path) is truncated inside its IDX header")
        }
        let dims = (0..<dimensions).map { bigEndian(header.bytes, at: 4 + 4 * $0) }
        var total = 1
        for d in dims {
            let (p, overflow) = total.multipliedReportingOverflow(by: d)
            if overflow || p > 1 << 34 {
                throw CSGDError("\(path): IDX header claims an impossible size \(dims)")
            }
            total = p
        }
        let body = try reader.readArray(count: total)
        if !body.complete {
            throw CSGDError(
                "\(path) is truncated: \(body.bytes.count) data bytes, header "
                    + "\(dims.map(String.init).joined(separator: "×")) needs \(total)")
        }
        if try reader.hasMoreData() {
            throw CSGDError("\(path) has bytes beyond the \(total) its IDX header announces")
        }
        return (dims, body.bytes)
    }

    private static func bigEndian(_ b: [UInt8], at i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }
}
