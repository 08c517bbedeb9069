// Writes that never leave a half-written file: write to a temp file beside the target, fsync,
// then rename over it (rename is atomic within one file system).
//
// And writes that never destroy what the user has: the temp file gets an unpredictable name and
// is created exclusively, never through a symlink (a link planted at a predictable name would
// make the job overwrite the file it points to); the target must be a regular file or absent
// (renaming over /dev/null deletes the device for the whole machine; renaming over a symlink
// deletes the link); and `refuseOutputOverInputs` stops an output that names an input under
// another spelling (compared by device and inode, after resolving symlinks).

import Foundation

/// Throws unless `path` is absent or a regular file (not a symlink, device, FIFO, socket or
/// folder): what an atomic write may replace.
/// - Throws: a one-line `CSGDError` naming the path.
public func checkReplaceable(_ path: String) throws {
    var st = stat()
    if lstat(path, &st) != 0 {
        if errno == ENOENT { return }
        throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    switch st.st_mode & S_IFMT {
    case S_IFREG: return
    case S_IFLNK:
        throw CSGDError(
            "cannot write \(path): it is a symbolic link, which csgd-dist does not replace "
                + "(name the file it points to, or another path)")
    case S_IFDIR: throw CSGDError("cannot write \(path): it is a folder")
    default:
        throw CSGDError(
            "cannot write \(path): it is not a regular file (a device, FIFO or socket); "
                + "csgd-dist writes only regular files")
    }
}

/// Refuses `output` (given by `flag`) when it is the same file as one of `inputs`: same device
/// and inode, symlinks resolved. Inputs that do not exist are ignored.
/// - Throws: a one-line `CSGDError` naming both.
public func refuseOutputOverInputs(_ output: String, flag: String, inputs: [String]) throws {
    var out = stat()
    guard stat(output, &out) == 0 else { return }
    for input in inputs {
        var st = stat()
        if stat(input, &st) == 0 && st.st_dev == out.st_dev && st.st_ino == out.st_ino {
            throw CSGDError(
                "\(flag) \(output) is the same file as the input \(input); csgd-dist never "
                    + "overwrites its input: choose another output path")
        }
    }
}

/// A fresh temp name beside `path`: `.<name>.<random>.tmp-<pid>` in the same folder (the pid
/// lets a later job remove it once its writer is gone: `removeStaleTemps`). Files and `pack`'s
/// folders are named this way.
public func tempPath(beside path: String) -> String {
    let url = URL(fileURLWithPath: path).standardizedFileURL
    let tag = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + "." + tag
        + ".tmp-\(getpid())"
}

/// A new temp file beside `path` (`tempPath`), created with O_EXCL | O_NOFOLLOW.
func createTempFile(beside path: String) throws -> (path: String, fd: Int32) {
    let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for _ in 0..<16 {
        let tmp = tempPath(beside: path)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if fd >= 0 { return (tmp, fd) }
        if errno != EEXIST { break }
    }
    throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))")
}

/// Removes what a killed writer of `path` left beside it: the `.<name>.<random>.tmp-<pid>`
/// files (or, for `pack`, folders) of `path`'s own name whose pid is no longer alive on this
/// host. Called after a write of `path` succeeded, so a rerun of a killed export or pack
/// cleans up after it. (A writer on another host sharing the folder, writing the same path at
/// the same moment, cannot be told apart by its pid: don't write one output from two hosts.)
public func removeStaleTemps(beside path: String) {
    let url = URL(fileURLWithPath: path).standardizedFileURL
    let dir = url.deletingLastPathComponent().path
    let prefix = "." + url.lastPathComponent + "."
    for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    where name.hasPrefix(prefix) {
        guard let r = name.range(of: ".tmp-", options: .backwards),
            !name[name.index(name.startIndex, offsetBy: prefix.count)..<r.lowerBound].contains("."),
            let pid = Int32(name[r.upperBound...]), pid > 0, pid != getpid(),
            kill(pid, 0) != 0, errno == ESRCH
        else { continue }
        try? FileManager.default.removeItem(atPath: dir + "/" + name)
    }
}

/// Writes `data` to `path` atomically (temp file in the same folder, fsync, rename).
/// - Throws: `CSGDError` naming the path if any step fails; the temp file is removed.
/// `path` must be absent or a regular file (`checkReplaceable`).
public func writeFileAtomically(_ data: Data, to path: String) throws {
    try checkReplaceable(path)
    let (tmp, fd) = try createTempFile(beside: path)
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
    do {
        try checkReplaceable(path)  // again: it may have changed while we wrote
    } catch {
        unlink(tmp)
        throw error
    }
    if !ok || rename(tmp, path) != 0 {
        let why = String(cString: strerror(errno))
        unlink(tmp)
        throw CSGDError("cannot write \(path): \(why)")
    }
    removeStaleTemps(beside: path)
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
    /// `path` must be absent or a regular file (`checkReplaceable`).
    public init(path: String) throws {
        self.path = path
        try checkReplaceable(path)
        (tmp, fd) = try createTempFile(beside: path)
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
        do {
            try checkReplaceable(path)
        } catch {
            unlink(tmp)
            throw error
        }
        if !ok || rename(tmp, path) != 0 {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw CSGDError("cannot write \(path): \(why)")
        }
        removeStaleTemps(beside: path)
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
