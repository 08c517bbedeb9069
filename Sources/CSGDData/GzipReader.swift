// Sequential reads from a gzip file through zlib (gzopen/gzread), so the Debian-packaged
// Fashion-MNIST `.gz` files are read in place without unpacking them to disk. zlib also reads
// an uncompressed file transparently, which lets users point at gunzipped copies.

import CSGDCore
import CZlib
import Foundation

/// A read-only gzip stream that turns every zlib failure into a `CSGDError` naming the file.
final class GzipReader {
    /// The path being read, quoted in every error.
    let path: String
    private let file: gzFile

    /// Opens `path` for reading; throws if it is missing or cannot be opened.
    init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            throw CSGDError("missing file \(path)")
        }
        guard let f = gzopen(path, "rb") else {
            throw CSGDError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        file = f
        _ = gzbuffer(f, 1 << 18)  // bigger input buffer; must precede the first read
    }

    deinit { gzclose(file) }

    /// Reads up to `count` bytes into `dst` and returns how many arrived; fewer than `count`
    /// means the data ended. A corrupt or cut-off gzip stream throws.
    func read(into dst: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var done = 0
        while done < count {
            let want = UInt32(min(count - done, 1 << 30))
            let n = gzread(file, dst + done, want)
            if n < 0 { throw CSGDError("\(path) is not a valid gzip file: \(zlibMessage())") }
            if n == 0 {
                // zlib reports a cut-off stream as end of data with Z_BUF_ERROR set.
                var errnum: Int32 = Z_OK
                _ = gzerror(file, &errnum)
                if errnum != Z_OK {
                    throw CSGDError("\(path) is a truncated or corrupt gzip file: \(zlibMessage())")
                }
                break
            }
            done += Int(n)
        }
        return done
    }

    /// Reads exactly `count` bytes into a new array, or returns how many there were.
    func readArray(count: Int) throws -> (bytes: [UInt8], complete: Bool) {
        var got = 0
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            if count > 0 { got = try read(into: buf.baseAddress!, count: count) }
            initialized = got
        }
        return (bytes, got == count)
    }

    /// Whether any data remains (reads and discards at most one byte).
    func hasMoreData() throws -> Bool {
        var byte: UInt8 = 0
        return try read(into: &byte, count: 1) == 1
    }

    private func zlibMessage() -> String {
        var errnum: Int32 = Z_OK
        guard let msg = gzerror(file, &errnum) else { return "zlib error \(errnum)" }
        let text = String(cString: msg)  // zlib prefixes the path; we already name it
        return text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
    }
}
