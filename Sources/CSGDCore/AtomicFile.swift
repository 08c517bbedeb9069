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

/// A large file written in pieces that appears under its name only when complete: bytes go to
/// a temp file beside the target; `commit()` fsyncs and renames it over `path`, and a writer
/// dropped without `commit()` removes the temp file.
public final class AtomicFileWriter {
    /// The final path.
    public let path: String
    /// Bytes appended so far.
    public private(set) var count = 0
    private let tmp: String
    private var fd: Int32

    /// Creates the temp file (and the folder).
    /// - Throws: `CSGDError` naming `path` if it cannot be created.
    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tmp)
        }
    }

    /// Appends `bytes`.
    /// - Throws: `CSGDError` naming `path` on a write error (e.g. disk full).
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n <= 0 {
                throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            off += n
        }
        count += bytes.count
    }

    /// Flushes to disk and renames the temp file to `path`.
    /// - Throws: `CSGDError` naming `path`; the temp file is then removed.
    public func commit() throws {
        let ok = fsync(fd) == 0
        close(fd)
        fd = -1
        if !ok || rename(tmp, path) != 0 {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw CSGDError("cannot write \(path): \(why)")
        }
    }
}

/// Appends `line` and a newline to `path` in one `O_APPEND` write loop (so concurrent
/// appenders never interleave inside a line), creating the file as needed; retries on EINTR
/// and after partial writes.
/// - Throws: a one-line `CSGDError` naming `path`.
public func appendLine(_ line: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    if fd < 0 { throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes = Array((line + "\n").utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))") }
        bytes = bytes.dropFirst(n)
    }
}
