// FNV-1a over raw bytes: cheap, portable, good enough to detect corruption and replica drift.

/// Incremental 64-bit FNV-1a hash.
public struct Checksum {
    /// The hash of everything added so far.
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    /// A fresh hash.
    public init() {}

    /// Mixes raw bytes into the hash.
    public mutating func add(bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        value = h
    }

    /// Mixes the bit patterns of floats into the hash.
    public mutating func add(_ floats: UnsafeMutableBufferPointer<Float>) {
        add(bytes: UnsafeRawBufferPointer(floats))
    }

    /// Hex string of the hash.
    public var hex: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
