// Batch assembly on the training hot path: gather images by index, apply the standard CIFAR
// augmentation (random crop with zero padding, then random horizontal flip, as torchvision's
// RandomCrop(padding=) + RandomHorizontalFlip), and normalize to floats, one row at a time.
//
// The random draws for a sample depend only on (seed, epoch, sample index), never on its
// position in a batch, so one rank with micro-batches and N ranks produce identical inputs.

import CSGDCore

/// Training-time augmentation settings.
///
/// Note: when an `Augmentation?` is expected, write `Augmentation.none` in full; a bare
/// `.none` would mean `Optional.none`.
public struct Augmentation: Sendable, Equatable {
    /// Zero padding (in pixels) added on every side before a random crop back to the original
    /// size; 0 disables cropping.
    public var padCrop: Int
    /// Whether to mirror the image left–right with probability 0.5.
    public var horizontalFlip: Bool

    /// Creates augmentation settings.
    public init(padCrop: Int, horizontalFlip: Bool) {
        self.padCrop = padCrop
        self.horizontalFlip = horizontalFlip
    }

    /// No augmentation (evaluation).
    public static let none = Augmentation(padCrop: 0, horizontalFlip: false)
    /// The standard CIFAR recipe: pad 4, random 32×32 crop, random horizontal flip.
    public static let standard = Augmentation(padCrop: 4, horizontalFlip: true)

    /// Whether this setting changes anything.
    public var isIdentity: Bool { padCrop == 0 && !horizontalFlip }

    /// The random choices for dataset sample `index` in `epoch`.
    ///
    /// Drawn from `Rng.derived(seed: seed, 0xA6, epoch, index)`: first the crop's top offset,
    /// then its left offset (each uniform in `0...2·padCrop`, only if `padCrop > 0`), then the
    /// flip (`nextFloat() < 0.5`, only if `horizontalFlip`).
    public func draw(seed: UInt64, epoch: Int, index: Int) -> AugmentationDraw {
        if isIdentity { return AugmentationDraw(shiftY: 0, shiftX: 0, flip: false) }
        var rng = Rng.derived(
            seed: seed, 0xA6, UInt64(truncatingIfNeeded: epoch), UInt64(truncatingIfNeeded: index))
        var top = padCrop
        var left = padCrop
        if padCrop > 0 {
            top = rng.nextInt(below: 2 * padCrop + 1)
            left = rng.nextInt(below: 2 * padCrop + 1)
        }
        let flip = horizontalFlip && rng.nextFloat() < 0.5
        return AugmentationDraw(shiftY: top - padCrop, shiftX: left - padCrop, flip: flip)
    }
}

/// The random choices applied to one sample.
///
/// Output pixel `(y, x)` before the flip is input pixel `(y + shiftY, x + shiftX)`, or the
/// zero padding if that lies outside the image. With `flip`, output column `x` then takes the
/// cropped column `width − 1 − x`.
public struct AugmentationDraw: Sendable, Equatable {
    /// Vertical crop offset relative to the unpadded image, in `-padCrop...padCrop`.
    public let shiftY: Int
    /// Horizontal crop offset relative to the unpadded image, in `-padCrop...padCrop`.
    public let shiftX: Int
    /// Whether the cropped image is mirrored left–right.
    public let flip: Bool

    /// Creates a draw.
    public init(shiftY: Int, shiftX: Int, flip: Bool) {
        self.shiftY = shiftY
        self.shiftX = shiftX
        self.flip = flip
    }
}

/// Assembles a batch: for each `indices[b]`, writes the (augmented) image normalized as
/// `(pixel / 255 − mean[c]) / std[c]` to `images[b·C·H·W ..< (b+1)·C·H·W]` (NCHW) and its label
/// to `labels[b]`.
///
/// Padding is zero in pixel space, so padded positions hold `(0 − mean[c]) / std[c]`, as with
/// torchvision's RandomCrop on the PIL image before Normalize. The augmentation of a sample
/// depends only on `(seed, epoch, indices[b])` (see `Augmentation.draw`), not on `b` or on the
/// other indices, so any split of a global batch across ranks or micro-batches yields the same
/// per-sample inputs.
/// - Parameters:
///   - images: Room for `indices.count · C · H · W` floats.
///   - labels: Room for `indices.count` labels.
public func makeBatch(
    dataset: ImageDataset, indices: [Int], augmentation: Augmentation, seed: UInt64, epoch: Int,
    images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>
) {
    if augmentation.padCrop < 0 {
        fatalError("makeBatch: padCrop must be ≥ 0, got \(augmentation.padCrop)")
    }
    let channels = dataset.channels
    let height = dataset.height
    let width = dataset.width
    let plane = height * width

    // Per-channel lookup table byte → normalized float (same arithmetic for every path).
    var table = [Float](repeating: 0, count: channels * 256)
    for c in 0..<channels {
        for v in 0..<256 {
            table[c * 256 + v] = (Float(v) / 255 - dataset.mean[c]) / dataset.std[c]
        }
    }

    table.withUnsafeBufferPointer { tableBuffer in
        dataset.pixels.withUnsafeBufferPointer { pixelBuffer in
            guard let lutBase = tableBuffer.baseAddress else { return }
            let pixelBase = pixelBuffer.baseAddress
            for (b, index) in indices.enumerated() {
                if index < 0 || index >= dataset.count {
                    fatalError("makeBatch: index \(index) outside 0..<\(dataset.count)")
                }
                labels[b] = dataset.labels[index]
                let d = augmentation.draw(seed: seed, epoch: epoch, index: index)
                // Output columns whose cropped source column lies inside the image.
                let x0 = min(width, max(0, -d.shiftX))
                let x1 = max(x0, min(width, width - d.shiftX))
                for c in 0..<channels {
                    let lut = lutBase + c * 256
                    let padValue = lut[0]
                    let src = pixelBase! + (index * channels + c) * plane
                    let dst = images + (b * channels + c) * plane
                    for y in 0..<height {
                        let out = dst + y * width
                        let sy = y + d.shiftY
                        if sy < 0 || sy >= height {
                            out.update(repeating: padValue, count: width)
                            continue
                        }
                        let row = src + sy * width + d.shiftX  // row[x] = cropped column x
                        if !d.flip {
                            out.update(repeating: padValue, count: x0)
                            for x in x0..<x1 { out[x] = lut[Int(row[x])] }
                            (out + x1).update(repeating: padValue, count: width - x1)
                        } else {
                            // out[x] = cropped[width − 1 − x]; valid x in width−x1 ..< width−x0.
                            let last = row + (width - 1)
                            out.update(repeating: padValue, count: width - x1)
                            for x in (width - x1)..<(width - x0) { out[x] = lut[Int(last[-x])] }
                            (out + width - x0).update(repeating: padValue, count: x0)
                        }
                    }
                }
            }
        }
    }
}
