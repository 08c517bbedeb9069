// Shared helpers for the CSGDData tests: scratch folders, gzip writing through zlib, IDX and
// CIFAR byte layouts, and an assertion that a call throws a CSGDError mentioning a file.

import CSGDCore
import CSGDData
import CZlib
import Foundation
import XCTest

/// A fresh empty folder under the system temp directory.
func makeScratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("csgd-data-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Writes `bytes` gzip-compressed to `path` with zlib's gzopen/gzwrite.
func writeGzip(_ bytes: [UInt8], to path: String) {
    guard let f = gzopen(path, "wb") else { fatalError("gzopen \(path) failed") }
    let written = bytes.withUnsafeBytes { raw -> Int32 in
        guard let base = raw.baseAddress else { return 0 }
        return gzwrite(f, base, UInt32(raw.count))
    }
    if Int(written) != bytes.count { fatalError("gzwrite \(path) failed") }
    if gzclose(f) != Z_OK { fatalError("gzclose \(path) failed") }
}

/// Writes raw bytes to `path`.
func writeBytes(_ bytes: [UInt8], to path: String) {
    if !FileManager.default.createFile(atPath: path, contents: Data(bytes)) {
        fatalError("cannot write \(path)")
    }
}

/// An unsigned-byte IDX file: big-endian magic, big-endian dims, then `data`.
func idxBytes(magic: Int, dims: [Int], data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    for v in [magic] + dims {
        out += [
            UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF),
        ]
    }
    return out + data
}

/// `count` pseudo-random bytes from `seed`.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = Rng(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) }
}
