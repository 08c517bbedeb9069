// TFRecord framing, the container of TensorBoard's event files. Each record is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
//   `length` bytes of data       | uint32 masked CRC-32C of the data
// with the CRCs little-endian too. Readers check both CRCs, so a flipped byte is caught.

import CSGDCore

/// Frames and unframes TFRecord records.
public enum TFRecord {
    /// Bytes a record adds around its data: length, its CRC, the data's CRC.
    public static let overhead = 16

    /// `data` as one framed record.
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + overhead)
        appendLE(UInt64(data.count), to: &out)
        appendLE(CRC32C.maskedChecksum(out[0..<8]), to: &out)
        out += data
        appendLE(CRC32C.maskedChecksum(data), to: &out)
        return out
    }

    /// The data of every record in `bytes`, checking both CRCs of each.
    /// - Parameter name: names the source (a file) in errors.
    /// - Throws: `CSGDError` naming `name`, the record's index and byte offset when a record is
    ///   cut short, claims more bytes than remain, or fails a CRC check.
    public static func records(in bytes: [UInt8], name: String) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        var at = 0
        while at < bytes.count {
            let what = "\(name): record \(out.count) at byte \(at)"
            guard bytes.count - at >= 12 else {
                throw CSGDError("\(what): cut short in its header")
            }
            let length = readLE(UInt64.self, bytes, at)
            if readLE(UInt32.self, bytes, at + 8) != CRC32C.maskedChecksum(bytes[at..<at + 8]) {
                throw CSGDError("\(what): length CRC mismatch")
            }
            // Compare before converting: a corrupt length may not fit an Int.
            guard length <= UInt64(bytes.count - at - 12), bytes.count - at - 12 - Int(length) >= 4
            else {
                throw CSGDError("\(what): claims \(length) bytes, \(bytes.count - at - 12) remain")
            }
            let start = at + 12
            let end = start + Int(length)
            if readLE(UInt32.self, bytes, end) != CRC32C.maskedChecksum(bytes[start..<end]) {
                throw CSGDError("\(what): data CRC mismatch")
            }
            out.append(Array(bytes[start..<end]))
            at = end + 4
        }
        return out
    }

    static func appendLE<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        for i in 0..<(T.bitWidth / 8) { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }

    static func readLE<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ at: Int) -> T {
        var v: T = 0
        for i in 0..<(T.bitWidth / 8) { v |= T(bytes[at + i]) << (8 * i) }
        return v
    }
}
