// JPEG decoding and encoding through libjpeg-turbo's TurboJPEG API.
//
// Decoding always yields packed RGB (3 bytes per pixel, rows top to bottom): grayscale files are
// expanded by the library, CMYK/YCCK files are decoded to CMYK and converted here. Decoding can
// use the codec's DCT-domain scaling (1/8 … 1), which skips most of the work for large images
// that are about to be shrunk anyway. A `JPEGCodec` owns TurboJPEG handles and is not
// thread-safe: each loader worker has its own.

import CSGDCore
import CTurboJPEG
import Foundation

/// The size and colour layout of a JPEG file, read from its header alone.
public struct JPEGHeader: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// Whether the file stores CMYK (or YCCK) and needs converting to RGB.
    public let isCMYK: Bool
    /// Whether the file stores one gray channel.
    public let isGray: Bool
}

/// A decoded image: packed RGB bytes, `height` rows of `width · 3`.
public struct RGBImage: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// `width · height · 3` bytes, R G B per pixel, row-major.
    public var pixels: [UInt8]

    /// Creates an image; `pixels.count` must be `width · height · 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        if pixels.count != width * height * 3 {
            fatalError("RGBImage: \(pixels.count) bytes for \(width)×\(height)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// A DCT scaling factor `num/denom` of libjpeg-turbo (1/8, 1/4, 3/8, … 1).
public struct JPEGScale: Sendable, Equatable {
    /// Numerator.
    public let num: Int
    /// Denominator.
    public let denom: Int

    /// No scaling.
    public static let one = JPEGScale(num: 1, denom: 1)

    /// Creates a factor.
    public init(num: Int, denom: Int) {
        self.num = num
        self.denom = denom
    }

    /// A dimension after scaling, rounded up as the decoder does (`TJSCALED`).
    public func scaled(_ dimension: Int) -> Int { (dimension * num + denom - 1) / denom }

    /// The factor as a number.
    public var value: Double { Double(num) / Double(denom) }

    /// The reductions worth using, smallest first: the factors 1/n (1/8, 1/4, 1/2) that
    /// `tjGetScalingFactors` offers, and 1. The library's other factors (3/8, 5/8, 3/4, 7/8)
    /// take its non-SIMD scaled IDCT and measured slower than a full decode here: a 500×375
    /// JPEG took 0.43 ms in full, 0.80 ms at 3/4, 0.26 ms at 1/2, 0.16 ms at 1/8.
    public static let available: [JPEGScale] = {
        var n: Int32 = 0
        guard let list = tjGetScalingFactors(&n) else { return [.one] }
        let all = (0..<Int(n)).map { JPEGScale(num: Int(list[$0].num), denom: Int(list[$0].denom)) }
        return all.filter { $0.num == 1 }.sorted { $0.value < $1.value }
    }()

    /// The largest reduction (smallest factor) that keeps a `boxWidth × boxHeight` region of
    /// the image at least `outWidth × outHeight` pixels after scaling, so the final resize
    /// never has to enlarge what a full decode would have shrunk. `.one` if none qualifies.
    public static func largestReduction(
        boxWidth: Double, boxHeight: Double, outWidth: Int, outHeight: Int
    ) -> JPEGScale {
        for s in available
        where boxWidth * s.value >= Double(outWidth) && boxHeight * s.value >= Double(outHeight) {
            return s
        }
        return .one
    }
}

/// A JPEG file that could not be decoded; `message` is libjpeg-turbo's reason.
public struct JPEGError: Error, Sendable {
    /// What the library reported.
    public let message: String
}

/// TurboJPEG handles for one thread: decode to RGB (optionally DCT-scaled) and encode.
public final class JPEGCodec {
    /// The default largest image decoded, in pixels of the header's width × height:
    /// 89,478,485, PIL's `Image.MAX_IMAGE_PIXELS` (⌊1 GiB / 4 / 3⌋), the size above which
    /// torchvision's loader warns of a decompression bomb, so a dataset PyTorch reads without
    /// that warning decodes here too (a 24-megapixel camera photo is a quarter of it).
    /// Its RGB buffer is at most 256 MiB (341 MiB for CMYK), per loader worker. A JPEG header
    /// can claim 65500 × 65500 (4.3 gigapixels, a 12 GiB buffer and minutes of decoding) in a
    /// few hundred bytes.
    public static let defaultMaxPixels = 89_478_485

    private var decoder: tjhandle
    private var encoder: tjhandle?

    /// Creates the decompressor handle (the compressor is created on first use).
    public init() {
        guard let h = tjInitDecompress() else { fatalError("tjInitDecompress failed") }
        decoder = h
    }

    deinit {
        tjDestroy(decoder)
        if let encoder { tjDestroy(encoder) }
    }

    /// The decoder's error, after replacing the decoder: a stream that fails inside
    /// `jpeg_read_header` (a 0×0 header, say) leaves TurboJPEG's handle mid-header, and every
    /// later call on it fails with "Improper call to JPEG library in state 201", so one bad
    /// file would make every following image of this worker unreadable too.
    private func failure() -> JPEGError {
        let error = JPEGError(message: lastError(decoder))
        guard let fresh = tjInitDecompress() else { fatalError("tjInitDecompress failed") }
        tjDestroy(decoder)
        decoder = fresh
        return error
    }

    /// Reads the header of `bytes`.
    /// - Throws: `JPEGError` if it is not a JPEG stream.
    public func header(_ bytes: UnsafeRawBufferPointer) throws -> JPEGHeader {
        var w: Int32 = 0
        var h: Int32 = 0
        var subsamp: Int32 = 0
        var colorspace: Int32 = 0
        let r = tjDecompressHeader3(
            decoder, bytes.bindMemory(to: UInt8.self).baseAddress, UInt(bytes.count), &w, &h,
            &subsamp, &colorspace)
        if r != 0 || w < 1 || h < 1 { throw failure() }
        let cs = TJCS(UInt32(colorspace))
        return JPEGHeader(
            width: Int(w), height: Int(h), isCMYK: cs == TJCS_CMYK || cs == TJCS_YCCK,
            isGray: cs == TJCS_GRAY)
    }

    /// Throws unless `head` claims at most `maxPixels` pixels (width × height, before any DCT
    /// scaling: the decoder's work grows with the full size whatever the scale).
    /// - Throws: `JPEGError` saying the claimed size and the cap.
    public static func checkSize(_ head: JPEGHeader, maxPixels: Int) throws {
        let pixels = head.width * head.height  // each at most 65535: no overflow
        if pixels > maxPixels {
            throw JPEGError(
                message: "its header claims \(head.width)×\(head.height) = \(pixels) pixels, "
                    + "more than max_image_pixels \(maxPixels)")
        }
    }

    /// Decodes `bytes` to RGB at `scale` (size `scale.scaled(width) × scale.scaled(height)`).
    ///
    /// Gray files come out with three equal channels; CMYK files are converted with
    /// `R = C·K/255` (likewise G, B), the inverted-CMYK convention of Adobe files that
    /// libjpeg-turbo and PIL follow.
    ///
    /// Nothing is allocated for an image whose header claims more than `maxPixels` pixels.
    /// Any warning of the decoder is an error (`TJFLAG_STOPONWARNING`): a truncated file, a
    /// corrupt entropy-coded segment, even extraneous bytes before a marker. The first two
    /// leave gray or garbled rows that would be trained on; PIL tolerates the last, but a file
    /// that needs it is damaged, and `bad_images` decides what to do with it (stop naming it,
    /// or skip it and count it). A progressive file with more than 500 scans is an error too
    /// (`TJFLAG_LIMITSCANS`), rather than minutes of decoding.
    /// - Throws: `JPEGError` for a non-JPEG, over-large, corrupt or truncated stream.
    public func decode(
        _ bytes: UnsafeRawBufferPointer, scale: JPEGScale = .one,
        maxPixels: Int = JPEGCodec.defaultMaxPixels
    ) throws -> RGBImage {
        let head = try header(bytes)
        try Self.checkSize(head, maxPixels: maxPixels)
        let w = scale.scaled(head.width)
        let h = scale.scaled(head.height)
        let channels = head.isCMYK ? 4 : 3
        let format = head.isCMYK ? TJPF_CMYK : TJPF_RGB
        var raw = [UInt8](repeating: 0, count: w * h * channels)
        let r = raw.withUnsafeMutableBufferPointer { dst in
            tjDecompress2(
                decoder, bytes.bindMemory(to: UInt8.self).baseAddress, UInt(bytes.count),
                dst.baseAddress, Int32(w), 0, Int32(h), Int32(format.rawValue),
                TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS)
        }
        // With TJFLAG_STOPONWARNING a warning (tjGetErrorCode == TJERR_WARNING) fails too.
        if r != 0 { throw failure() }
        if !head.isCMYK { return RGBImage(width: w, height: h, pixels: raw) }
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for p in 0..<(w * h) {
            let k = UInt32(raw[4 * p + 3])
            for c in 0..<3 { rgb[3 * p + c] = UInt8((UInt32(raw[4 * p + c]) * k + 127) / 255) }
        }
        return RGBImage(width: w, height: h, pixels: rgb)
    }

    /// The pixel layouts `encode` accepts.
    public enum PixelLayout: Sendable {
        /// 3 bytes per pixel, R G B; written as YCbCr 4:2:0.
        case rgb
        /// 1 byte per pixel; written as a grayscale JPEG.
        case gray
        /// 4 bytes per pixel, inverted C M Y K (Adobe convention); written as YCCK.
        case cmyk
    }

    /// Encodes packed pixels as a baseline JPEG of `quality` (1–100); 4:4:4 chroma when
    /// `fullChroma`, else 4:2:0.
    /// - Throws: `JPEGError` if the library rejects the input.
    public func encode(
        _ pixels: [UInt8], width: Int, height: Int, layout: PixelLayout, quality: Int,
        fullChroma: Bool = false
    ) throws -> [UInt8] {
        if encoder == nil { encoder = tjInitCompress() }
        guard let encoder else { throw JPEGError(message: "tjInitCompress failed") }
        let (format, subsamp, channels): (TJPF, TJSAMP, Int)
        switch layout {
        case .rgb: (format, subsamp, channels) = (TJPF_RGB, fullChroma ? TJSAMP_444 : TJSAMP_420, 3)
        case .gray: (format, subsamp, channels) = (TJPF_GRAY, TJSAMP_GRAY, 1)
        case .cmyk:
            (format, subsamp, channels) = (TJPF_CMYK, fullChroma ? TJSAMP_444 : TJSAMP_420, 4)
        }
        if pixels.count != width * height * channels {
            throw JPEGError(message: "\(pixels.count) bytes for \(width)×\(height)×\(channels)")
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let r = pixels.withUnsafeBufferPointer { src in
            tjCompress2(
                encoder, src.baseAddress, Int32(width), 0, Int32(height), Int32(format.rawValue),
                &out,
                &size, Int32(subsamp.rawValue), Int32(quality), 0)
        }
        defer { if let out { tjFree(out) } }
        if r != 0 || out == nil { throw JPEGError(message: lastError(encoder)) }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    private func lastError(_ handle: tjhandle) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown libjpeg-turbo error" }
        return String(cString: text)
    }
}
