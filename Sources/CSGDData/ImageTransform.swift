// The ImageNet transforms with torchvision's semantics, on decoded JPEGs:
//   train: RandomResizedCrop(size, scale 0.08–1, ratio 3/4–4/3) + RandomHorizontalFlip + Normalize
//   eval:  Resize(shorter side = round(size · 256/224)) + CenterCrop(size) + Normalize
// Both are "take a box of the source image, resample it to size × size". The box geometry is a
// pure function (tested against hand-computed boxes); resampling is a separable triangle
// (bilinear) filter whose support widens with the shrink factor, as PIL's antialiased bilinear
// resize does. JPEG DCT scaling first cuts the image down to no less than the box needs.
//
// The random draws of a sample come from Rng.derived(seed, 0x1F, epoch, index): they depend on
// (seed, epoch, sample index) only, never on the worker thread or the batch it lands in.

import CSGDCore
import Foundation

/// A region of the source image in pixel coordinates (fractional for the eval resize).
public struct CropBox: Sendable, Equatable {
    /// Left edge.
    public var x: Double
    /// Top edge.
    public var y: Double
    /// Width.
    public var width: Double
    /// Height.
    public var height: Double

    /// Creates a box.
    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
}

/// Crop geometry of torchvision's RandomResizedCrop and Resize + CenterCrop.
public enum CropGeometry {
    /// RandomResizedCrop's box (torchvision `get_params`): up to 10 attempts, each drawing an
    /// area fraction uniform in `scale` and a log-uniform aspect ratio in `ratio`, taking
    /// `w = round(√(area·r))`, `h = round(√(area/r))` (round half to even, as Python) if it fits,
    /// at a uniform position; otherwise the center crop clamped to `ratio` (whole image if the
    /// image's own ratio is inside).
    /// - Parameters:
    ///   - uniform: the next draw uniform in [0, 1) (area first, then ratio, per attempt).
    ///   - below: the next integer draw in `0..<n` (top first, then left).
    /// - Returns: integer box (left, top, width, height).
    public static func randomResizedCrop(
        width: Int, height: Int, scale: ClosedRange<Double> = 0.08...1,
        ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3), uniform: () -> Double,
        below: (Int) -> Int
    ) -> CropBox {
        let area = Double(width * height)
        let logLo = log(ratio.lowerBound)
        let logHi = log(ratio.upperBound)
        for _ in 0..<10 {
            let target =
                area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * uniform())
            let r = exp(logLo + (logHi - logLo) * uniform())
            let w = Int((target * r).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / r).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = below(height - h + 1)
                let left = below(width - w + 1)
                return CropBox(x: Double(left), y: Double(top), width: Double(w), height: Double(h))
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width
        var h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return CropBox(
            x: Double((width - w) / 2), y: Double((height - h) / 2), width: Double(w),
            height: Double(h))
    }

    /// The source box that Resize(shorter side = `resize`) then CenterCrop(`crop`) samples:
    /// the long side resizes to `⌊resize·long/short⌋` (torchvision truncates), the crop offset is
    /// `round((resized − crop)/2)` (half to even), and both map back through the resize factors.
    public static func resizeCenterCrop(width: Int, height: Int, resize: Int, crop: Int)
        -> CropBox
    {
        let (newW, newH): (Int, Int)
        if width <= height {
            (newW, newH) = (resize, Int(Double(resize) * Double(height) / Double(width)))
        } else {
            (newW, newH) = (Int(Double(resize) * Double(width) / Double(height)), resize)
        }
        let top = (Double(newH - crop) / 2).rounded(.toNearestOrEven)
        let left = (Double(newW - crop) / 2).rounded(.toNearestOrEven)
        let sx = Double(width) / Double(newW)
        let sy = Double(height) / Double(newH)
        return CropBox(
            x: left * sx, y: top * sy, width: Double(crop) * sx, height: Double(crop) * sy)
    }
}

/// Train or eval transform of JPEG bytes into a normalized `3 × size × size` float image.
public struct ImageTransform: Sendable, Equatable {
    /// ImageNet per-channel (R, G, B) mean of `pixel / 255`.
    public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    /// ImageNet per-channel (R, G, B) standard deviation of `pixel / 255`.
    public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

    /// Random resized crop + flip (`true`), or resize + center crop (`false`).
    public var train: Bool
    /// Output side in pixels (224 for ImageNet).
    public var size: Int
    /// Eval resize of the shorter side: `round(size · 256 / 224)` (256 for 224, 73 for 64).
    public var resize: Int
    /// Decode with libjpeg-turbo's DCT scaling where the crop allows it (off only to measure
    /// what it saves).
    public var scaledDecoding = true
    /// Largest source image decoded, in pixels (width × height from the JPEG header); a larger
    /// one is a bad image (config key `max_image_pixels`).
    public var maxPixels = JPEGCodec.defaultMaxPixels

    /// The training transform at `size`.
    public static func train(size: Int) -> ImageTransform {
        ImageTransform(train: true, size: size, resize: evalResize(size))
    }

    /// The evaluation transform at `size`.
    public static func eval(size: Int) -> ImageTransform {
        ImageTransform(train: false, size: size, resize: evalResize(size))
    }

    /// `round(size · 256 / 224)`.
    public static func evalResize(_ size: Int) -> Int {
        Int((Double(size) * 256 / 224).rounded())
    }

    /// Floats per output image: `3 · size · size`.
    public var imageFloats: Int { 3 * size * size }

    /// The box and flip of sample `index` in `epoch` for a `width × height` source image.
    /// Train draws come from `Rng.derived(seed: seed, 0x1F, epoch, index)`: the crop (see
    /// `CropGeometry.randomResizedCrop`), then the flip (`nextFloat() < 0.5`).
    public func geometry(width: Int, height: Int, seed: UInt64, epoch: Int, index: Int) -> (
        box: CropBox, flip: Bool
    ) {
        if !train {
            return (
                CropGeometry.resizeCenterCrop(
                    width: width, height: height, resize: resize, crop: size), false
            )
        }
        var rng = Rng.derived(
            seed: seed, 0x1F, UInt64(truncatingIfNeeded: epoch), UInt64(truncatingIfNeeded: index))
        let box = CropGeometry.randomResizedCrop(
            width: width, height: height, uniform: { rng.nextDouble() },
            below: { rng.nextInt(below: $0) })
        return (box, rng.nextFloat() < 0.5)
    }

    /// Decodes `jpeg`, crops, resamples, flips and writes `(pixel/255 − mean[c]) / std[c]` to
    /// `output` in CHW order (`imageFloats` floats). Pixels are rounded to bytes after
    /// resampling, as torchvision's PIL pipeline produces an 8-bit image before ToTensor.
    /// - Throws: `JPEGError` if the bytes do not decode, or the header claims more than
    ///   `maxPixels` pixels.
    public func apply(
        jpeg: UnsafeRawBufferPointer, codec: JPEGCodec, seed: UInt64, epoch: Int, index: Int,
        output: UnsafeMutablePointer<Float>
    ) throws {
        let head = try codec.header(jpeg)
        try JPEGCodec.checkSize(head, maxPixels: maxPixels)
        let (box, flip) = geometry(
            width: head.width, height: head.height, seed: seed, epoch: epoch, index: index)
        let scale =
            scaledDecoding
            ? JPEGScale.largestReduction(
                boxWidth: box.width, boxHeight: box.height, outWidth: size, outHeight: size)
            : .one
        let image = try codec.decode(jpeg, scale: scale, maxPixels: maxPixels)
        // The box in the decoded (scaled) image's coordinates.
        let fx = Double(image.width) / Double(head.width)
        let fy = Double(image.height) / Double(head.height)
        let scaledBox = CropBox(
            x: box.x * fx, y: box.y * fy, width: box.width * fx, height: box.height * fy)
        let bytes = resample(image, box: scaledBox, width: size, height: size)
        writeNormalized(bytes, flip: flip, output: output)
    }

    /// Normalizes an HWC byte image of `size × size` into CHW floats, mirrored if `flip`.
    func writeNormalized(_ hwc: [UInt8], flip: Bool, output: UnsafeMutablePointer<Float>) {
        let n = size
        for c in 0..<3 {
            var lut = [Float](repeating: 0, count: 256)
            for v in 0..<256 {
                lut[v] =
                    (Float(v) / 255 - ImageTransform.imageNetMean[c])
                    / ImageTransform.imageNetStd[c]
            }
            let plane = output + c * n * n
            for y in 0..<n {
                for x in 0..<n {
                    let sx = flip ? n - 1 - x : x
                    plane[y * n + x] = lut[Int(hwc[(y * n + sx) * 3 + c])]
                }
            }
        }
    }
}

/// Per-output-pixel filter taps along one axis: `first[o]`, `count[o]` source pixels with
/// weights `weights[o · maxTaps ..< o · maxTaps + count[o]]`, summing to 1.
struct ResampleTaps {
    var first: [Int] = []
    var count: [Int] = []
    var weights: [Float] = []
    var maxTaps = 0

    /// Triangle filter mapping `[start, start + length)` of a `source`-pixel axis onto `output`
    /// pixels: output pixel `o` is centred at `start + (o + 0.5)·s`, `s = length/output`, and
    /// takes source pixel `i` (centre `i + 0.5`) with weight `max(0, 1 − |i + 0.5 − centre| / f)`,
    /// `f = max(s, 1)` (so shrinking averages over the whole footprint instead of aliasing).
    init(source: Int, start: Double, length: Double, output: Int) {
        let s = length / Double(output)
        let f = max(s, 1)
        maxTaps = Int((2 * f).rounded(.up)) + 2
        first = [Int](repeating: 0, count: output)
        count = [Int](repeating: 0, count: output)
        weights = [Float](repeating: 0, count: output * maxTaps)
        for o in 0..<output {
            let centre = start + (Double(o) + 0.5) * s
            let lo = max(0, Int((centre - f - 0.5).rounded(.down)))
            let hi = min(source - 1, Int((centre + f - 0.5).rounded(.up)))
            var w = [Double]()
            var total = 0.0
            if hi >= lo {
                for i in lo...hi {
                    let t = max(0, 1 - abs(Double(i) + 0.5 - centre) / f)
                    w.append(t)
                    total += t
                }
            }
            if total <= 0 {
                // The footprint fell outside the image (only at degenerate boxes): nearest edge.
                let edge = min(source - 1, max(0, Int(centre)))
                first[o] = edge
                count[o] = 1
                weights[o * maxTaps] = 1
                continue
            }
            // Drop zero-weight taps at the ends so the loops stay short.
            var a = 0
            var b = w.count
            while a < b && w[a] == 0 { a += 1 }
            while b > a && w[b - 1] == 0 { b -= 1 }
            first[o] = lo + a
            count[o] = b - a
            for k in a..<b { weights[o * maxTaps + k - a] = Float(w[k] / total) }
        }
    }
}

/// Resamples `box` of `image` to `width × height` (HWC bytes, rounded and clamped), with the
/// separable triangle filter of `ResampleTaps`: rows first, then columns.
public func resample(_ image: RGBImage, box: CropBox, width: Int, height: Int) -> [UInt8] {
    let hx = ResampleTaps(source: image.width, start: box.x, length: box.width, output: width)
    let hy = ResampleTaps(source: image.height, start: box.y, length: box.height, output: height)
    // Only the source rows some output row touches go through the horizontal pass.
    var rowLo = image.height
    var rowHi = 0
    for o in 0..<height {
        rowLo = min(rowLo, hy.first[o])
        rowHi = max(rowHi, hy.first[o] + hy.count[o])
    }
    let rows = max(0, rowHi - rowLo)
    var mid = [Float](repeating: 0, count: rows * width * 3)
    var out = [UInt8](repeating: 0, count: width * height * 3)
    image.pixels.withUnsafeBufferPointer { src in
        mid.withUnsafeMutableBufferPointer { m in
            hx.weights.withUnsafeBufferPointer { wx in
                for r in 0..<rows {
                    let srcRow = src.baseAddress! + (rowLo + r) * image.width * 3
                    let dst = m.baseAddress! + r * width * 3
                    for o in 0..<width {
                        var acc0: Float = 0
                        var acc1: Float = 0
                        var acc2: Float = 0
                        let p = srcRow + hx.first[o] * 3
                        let w = wx.baseAddress! + o * hx.maxTaps
                        for k in 0..<hx.count[o] {
                            acc0 += w[k] * Float(p[3 * k])
                            acc1 += w[k] * Float(p[3 * k + 1])
                            acc2 += w[k] * Float(p[3 * k + 2])
                        }
                        dst[3 * o] = acc0
                        dst[3 * o + 1] = acc1
                        dst[3 * o + 2] = acc2
                    }
                }
            }
            hy.weights.withUnsafeBufferPointer { wy in
                out.withUnsafeMutableBufferPointer { dst in
                    let rowFloats = width * 3
                    var acc = [Float](repeating: 0, count: rowFloats)
                    for o in 0..<height {
                        for i in 0..<rowFloats { acc[i] = 0 }
                        let w = wy.baseAddress! + o * hy.maxTaps
                        for k in 0..<hy.count[o] {
                            let row = m.baseAddress! + (hy.first[o] + k - rowLo) * rowFloats
                            let wk = w[k]
                            for i in 0..<rowFloats { acc[i] += wk * row[i] }
                        }
                        let d = dst.baseAddress! + o * rowFloats
                        for i in 0..<rowFloats {
                            d[i] = UInt8(min(255, max(0, acc[i].rounded())))
                        }
                    }
                }
            }
        }
    }
    return out
}
