// Writes that never leave a half-written file: write to a temp file beside the target, fsync,
// then rename over it (rename is atomic within one file system).

import Foundation

/// Writes `data` to `path` atomically (temp file in the same folder, fsync, rename).
/// - Throws: `CSGDError` naming the path if any step fails; the temp file is removed.
public func writeFileAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if fd < 0 { throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))") }
    var ok = true
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(fd, raw.baseAddress! + off, raw.count - off)
            if n <= 0 {
                ok = false
                break
            }
            off += n
        }
    }
    if fsync(fd) != 0 { ok = false }
    close(fd)
    if !ok || rename(tmp, path) != 0 {
        let why = String(cString: strerror(errno))
        unlink(tmp)
        throw CSGDError("cannot write \(path): \(why)")
    }
}
