// Fuzz target: the JPEG reader (CSGDData's `JPEGCodec`): the header read, the size check and
// a decode capped at a small pixel count, at full size and at a reduction. One codec serves
// every input, as one loader worker's codec serves every image it reads, so a failure that
// leaves the decoder in a bad state shows up on later inputs. Any thrown error is an accepted
// outcome; a trap, a sanitizer report, a hang or a blown memory limit is a finding.

import CSGDData
import Foundation

nonisolated(unsafe) let codec = JPEGCodec()
/// Small enough that a decode stays fast; large enough for the seeds.
let maxPixels = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let head = try? codec.header(bytes) else { return 0 }
    guard (try? JPEGCodec.checkSize(head, maxPixels: maxPixels)) != nil else { return 0 }
    let scale = JPEGScale.available[size % JPEGScale.available.count]
    for s in [JPEGScale.one, scale] {
        guard let image = try? codec.decode(bytes, scale: s, maxPixels: maxPixels) else {
            continue
        }
        if image.pixels.count != image.width * image.height * 3
            || image.width != s.scaled(head.width) || image.height != s.scaled(head.height)
        {
            fatalError("decoded \(image.width)×\(image.height) does not match \(head) at \(s)")
        }
    }
    return 0
}

/// With CSGD_FUZZ_SEEDS=<dir>, writes small JPEGs made with the project's own encoder and exits.
@_cdecl("LLVMFuzzerInitialize")
public func initJPEG(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let dir = ProcessInfo.processInfo.environment["CSGD_FUZZ_SEEDS"] else { return 0 }
    func pattern(_ w: Int, _ h: Int, _ channels: Int) -> [UInt8] {
        (0..<(w * h * channels)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 / 7) }
    }
    let seeds: [(String, [UInt8], Int, Int, JPEGCodec.PixelLayout, Bool)] = [
        ("rgb-16x12", pattern(16, 12, 3), 16, 12, .rgb, false),
        ("rgb-full-9x7", pattern(9, 7, 3), 9, 7, .rgb, true),
        ("gray-8x8", pattern(8, 8, 1), 8, 8, .gray, false),
        ("cmyk-10x6", pattern(10, 6, 4), 10, 6, .cmyk, false),
        ("rgb-1x1", [200, 10, 30], 1, 1, .rgb, false),
    ]
    for (name, pixels, w, h, layout, full) in seeds {
        let jpeg = try! codec.encode(
            pixels, width: w, height: h, layout: layout, quality: 75, fullChroma: full)
        try! Data(jpeg).write(to: URL(fileURLWithPath: "\(dir)/\(name).jpg"))
    }
    exit(0)
}
