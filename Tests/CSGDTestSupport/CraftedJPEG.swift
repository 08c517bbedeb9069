// Crafted JPEG bytes for hostile-input tests (shared by the loader's unit tests and the
// tests through the real binary).

/// `jpeg` with its SOF0 header claiming `width × height` (the marker FF C0, a 2-byte length,
/// the precision byte, then big-endian height and width); nil if it has no SOF0 marker.
public func jpegClaimingSize(_ jpeg: [UInt8], width: Int, height: Int) -> [UInt8]? {
    guard jpeg.count > 9,
        let sof = (0..<(jpeg.count - 9)).first(where: { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
    else { return nil }
    var out = jpeg
    out[sof + 5] = UInt8(height >> 8)
    out[sof + 6] = UInt8(height & 0xFF)
    out[sof + 7] = UInt8(width >> 8)
    out[sof + 8] = UInt8(width & 0xFF)
    return out
}
