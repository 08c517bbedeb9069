// Generated JPEG image folders for tests and benchmarks: smooth colour patterns (so JPEG
// compresses them like photographs, not like noise) whose tint depends on the class, encoded
// with libjpeg-turbo. Deterministic in the seed.

import CSGDCore
import Foundation

/// Writes small ImageFolder trees of generated JPEGs.
public enum SyntheticImages {
    /// A `width × height` RGB image: per-channel sinusoids with random frequencies and phases,
    /// offset by a class-dependent tint.
    public static func pattern(width: Int, height: Int, label: Int, seed: UInt64) -> [UInt8] {
        var rng = Rng(seed: seed)
        let freq = (0..<6).map { _ in 0.5 + 6 * rng.nextDouble() }
        let phase = (0..<3).map { _ in 2 * Double.pi * rng.nextDouble() }
        let tint = (0..<3).map { c in Double((label * 53 + c * 97) % 160) - 80 }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let v = Double(y) / Double(height)
            for x in 0..<width {
                let u = Double(x) / Double(width)
                for c in 0..<3 {
                    let s = sin(freq[2 * c] * u * 6.3 + freq[2 * c + 1] * v * 4.1 + phase[c])
                    let value = 128 + tint[c] * 0.5 + 70 * s
                    out[(y * width + x) * 3 + c] = UInt8(max(0, min(255, value.rounded())))
                }
            }
        }
        return out
    }

    /// Writes `root/class_<k>/img_<i>.jpg` for `classes` classes of `perClass` images each.
    /// - Returns: the paths written, in sample order.
    @discardableResult
    public static func writeImageFolder(
        root: String, classes: Int, perClass: Int, width: Int, height: Int, seed: UInt64,
        quality: Int = 90
    ) throws -> [String] {
        let codec = JPEGCodec()
        var paths: [String] = []
        for k in 0..<classes {
            let dir = root + "/" + String(format: "class_%03d", k)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for i in 0..<perClass {
                let pixels = pattern(
                    width: width, height: height, label: k,
                    seed: seed &+ UInt64(k * 100_003 + i))
                let jpeg = try codec.encode(
                    pixels, width: width, height: height, layout: .rgb, quality: quality)
                let path = dir + String(format: "/img_%05d.jpg", i)
                if !FileManager.default.createFile(atPath: path, contents: Data(jpeg)) {
                    throw CSGDError("cannot write \(path)")
                }
                paths.append(path)
            }
        }
        return paths
    }
}
