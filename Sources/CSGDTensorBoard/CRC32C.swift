// CRC-32C (Castagnoli), the checksum of TFRecord framing: reflected polynomial 0x82F63B78,
// initial value and final XOR 0xFFFFFFFF, one 256-entry table, one byte per step. Events are
// written every `log_every` steps and are a few hundred bytes, so the byte-wise loop is plenty.

/// CRC-32C and the masked form TFRecord stores.
public enum CRC32C {
    /// The Castagnoli polynomial, bit-reversed.
    static let polynomial: UInt32 = 0x82F6_3B78

    /// `table[b]`: the CRC of the single byte `b` with no initial value or final XOR.
    static let table: [UInt32] = (0..<256).map { b in
        var c = UInt32(b)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` (`"123456789"` → 0xE3069283).
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { crc = t[Int(UInt8(truncatingIfNeeded: crc) ^ b)] ^ (crc >> 8) }
        }
        return ~crc
    }

    /// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC stored
    /// inside checksummed data does not make the outer checksum trivial.
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// The masked CRC-32C of `bytes`.
    public static func maskedChecksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        masked(checksum(bytes))
    }
}
