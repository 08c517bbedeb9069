// Reading and writing the safetensors format (https://github.com/huggingface/safetensors), the
// container for checkpoints and exported models: PyTorch, NumPy and JAX users can open it
// without our code, and it cannot execute anything on load (unlike pickle).
//
// Layout: 8-byte little-endian UInt64 header length N, N bytes of UTF-8 JSON
// (`{"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`,
// padded with spaces to a multiple of 8), then the raw little-endian tensor bytes, contiguous,
// in the order written; offsets count from the start of the data section.
//
// On top of the format we store an FNV-1a checksum of the data section in the metadata key
// `csgd.checksum` and verify it on read, so a truncated or bit-flipped checkpoint is refused
// with a one-line error instead of resuming from garbage. Output is deterministic: metadata
// keys sorted, tensors in insertion order, so equal content gives equal bytes.

import Foundation

#if !_endian(little)
    #error("SafeTensors.swift copies tensor bytes as-is and assumes a little-endian host")
#endif

/// Element types a safetensors file may hold here (a subset of the format's dtypes).
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    /// 32-bit IEEE float: weights, gradients, momentum.
    case f32 = "F32"
    /// 64-bit IEEE float.
    case f64 = "F64"
    /// 64-bit signed integer: steps, RNG state words (as bit patterns).
    case i64 = "I64"
    /// 32-bit signed integer: cluster ids, widths.
    case i32 = "I32"
    /// Unsigned byte: masks, raw blobs.
    case u8 = "U8"

    /// Size of one element in bytes.
    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        case .u8: return 1
        }
    }
}

/// An in-memory safetensors file: string metadata plus named, typed, shaped tensors.
///
/// Build one with `add`, then `write(path:)`; or `read(path:)` one and query it with `floats`,
/// `shape`, `names`. The metadata key `csgd.checksum` is reserved: `serialized()` sets it and
/// `read` verifies and removes it, so `metadata` only ever holds the caller's keys.
public struct SafeTensorsFile: Equatable {
    /// One tensor: its name, element type, shape (outermost first) and raw little-endian bytes.
    public struct Tensor: Equatable, Sendable {
        /// Name, unique within the file.
        public let name: String
        /// Element type.
        public let dtype: SafeTensorsDType
        /// Shape, outermost first; `[]` is a scalar.
        public let shape: [Int]
        /// Raw little-endian element bytes, `count × dtype.byteSize` of them.
        public let bytes: [UInt8]
        /// Number of elements (product of `shape`; 1 for a scalar).
        public var count: Int { shape.reduce(1, *) }
    }

    /// The metadata key holding the FNV-1a hex checksum of the data section.
    public static let checksumKey = "csgd.checksum"

    /// Free-form string metadata (`__metadata__`), excluding the reserved checksum key.
    public var metadata: [String: String]
    /// Tensors in file order (the order they were added, or their order in the data section).
    public private(set) var tensors: [Tensor] = []
    /// Where the file came from (its path, or `<memory>`); used in error messages.
    public let source: String
    private var indexByName: [String: Int] = [:]

    /// An empty file with the given metadata.
    public init(metadata: [String: String] = [:], source: String = "<memory>") {
        self.metadata = metadata
        self.source = source
    }

    /// Equal when metadata and tensors (names, order, dtypes, shapes, bytes) are equal.
    public static func == (a: SafeTensorsFile, b: SafeTensorsFile) -> Bool {
        a.metadata == b.metadata && a.tensors == b.tensors
    }

    // MARK: - Queries

    /// Tensor names in file order.
    public var names: [String] { tensors.map(\.name) }

    /// The tensor called `name`, if present.
    public func tensor(_ name: String) -> Tensor? {
        indexByName[name].map { tensors[$0] }
    }

    /// The shape of tensor `name`, or nil if there is no such tensor.
    public func shape(_ name: String) -> [Int]? { tensor(name)?.shape }

    /// The dtype of tensor `name`, or nil if there is no such tensor.
    public func dtype(_ name: String) -> SafeTensorsDType? { tensor(name)?.dtype }

    /// The values of an F32 tensor.
    /// - Throws: `CSGDError` if the tensor is missing or not F32.
    public func floats(_ name: String) throws -> [Float] { try values(name, .f32) }

    /// The values of an F64 tensor.
    public func doubles(_ name: String) throws -> [Double] { try values(name, .f64) }

    /// The values of an I64 tensor.
    public func int64s(_ name: String) throws -> [Int64] { try values(name, .i64) }

    /// The values of an I32 tensor.
    public func int32s(_ name: String) throws -> [Int32] { try values(name, .i32) }

    /// The values of a U8 tensor.
    public func uint8s(_ name: String) throws -> [UInt8] { try checked(name, .u8).bytes }

    /// Copies an F32 tensor into `destination` without allocating (e.g. straight into a
    /// `ParameterStore` block).
    /// - Throws: `CSGDError` if the tensor is missing, not F32, or its element count differs
    ///   from `destination.count`.
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>)
        throws
    {
        let t = try checked(name, .f32)
        if t.count != destination.count {
            throw CSGDError(
                "\(source): tensor '\(name)' has \(t.count) elements \(t.shape), "
                    + "expected \(destination.count)")
        }
        t.bytes.withUnsafeBytes { src in
            UnsafeMutableRawBufferPointer(destination).copyMemory(from: src)
        }
    }

    private func checked(_ name: String, _ dtype: SafeTensorsDType) throws -> Tensor {
        guard let t = tensor(name) else {
            throw CSGDError("\(source): no tensor named '\(name)'")
        }
        if t.dtype != dtype {
            throw CSGDError(
                "\(source): tensor '\(name)' is \(t.dtype.rawValue), expected \(dtype.rawValue)")
        }
        return t
    }

    private func values<T>(_ name: String, _ dtype: SafeTensorsDType) throws -> [T] {
        let t = try checked(name, dtype)
        return [T](unsafeUninitializedCapacity: t.count) { buf, n in
            t.bytes.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: src)
            }
            n = t.count
        }
    }

    // MARK: - Building

    /// Appends an F32 tensor copied from `floats`.
    ///
    /// Names must be unique and `floats.count` must equal the product of `shape`; violating
    /// either is a programming error and stops the process.
    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        append(name, .f32, shape, UnsafeRawBufferPointer(floats), floats.count)
    }

    /// Appends an F32 tensor.
    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }

    /// Appends an F64 tensor.
    public mutating func add(_ name: String, shape: [Int], doubles: [Double]) {
        doubles.withUnsafeBytes { append(name, .f64, shape, $0, doubles.count) }
    }

    /// Appends an I64 tensor (store `UInt64` words as `Int64(bitPattern:)`).
    public mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        int64s.withUnsafeBytes { append(name, .i64, shape, $0, int64s.count) }
    }

    /// Appends an I32 tensor.
    public mutating func add(_ name: String, shape: [Int], int32s: [Int32]) {
        int32s.withUnsafeBytes { append(name, .i32, shape, $0, int32s.count) }
    }

    /// Appends a U8 tensor.
    public mutating func add(_ name: String, shape: [Int], uint8s: [UInt8]) {
        uint8s.withUnsafeBytes { append(name, .u8, shape, $0, uint8s.count) }
    }

    private mutating func append(
        _ name: String, _ dtype: SafeTensorsDType, _ shape: [Int],
        _ raw: UnsafeRawBufferPointer, _ count: Int
    ) {
        if name == "__metadata__" || indexByName[name] != nil {
            fatalError("SafeTensorsFile.add: duplicate or reserved tensor name '\(name)'")
        }
        if shape.contains(where: { $0 < 0 }) || shape.reduce(1, *) != count {
            fatalError("SafeTensorsFile.add: '\(name)' has \(count) values but shape \(shape)")
        }
        indexByName[name] = tensors.count
        tensors.append(Tensor(name: name, dtype: dtype, shape: shape, bytes: Array(raw)))
    }

    // MARK: - Writing

    /// The file's bytes: header length, JSON header (with `csgd.checksum`), data.
    public func serialized() -> Data {
        var checksum = Checksum()
        for t in tensors { t.bytes.withUnsafeBytes { checksum.add(bytes: $0) } }
        var meta = metadata
        meta[Self.checksumKey] = checksum.hex

        var json = "{\"__metadata__\":{"
        let keys = meta.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        json += keys.map { jsonStringLiteral($0) + ":" + jsonStringLiteral(meta[$0]!) }.joined(
            separator: ",")
        json += "}"
        var offset = 0
        for t in tensors {
            let end = offset + t.bytes.count
            json += "," + jsonStringLiteral(t.name) + ":{\"dtype\":\"" + t.dtype.rawValue + "\""
            json += ",\"shape\":[" + t.shape.map(String.init).joined(separator: ",") + "]"
            json += ",\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)

        var out = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for t in tensors { out.append(contentsOf: t.bytes) }
        return out
    }

    /// Writes the file to `path` atomically (temp file, fsync, rename).
    /// - Throws: `CSGDError` naming the path if it cannot be written.
    public func write(path: String) throws {
        try writeFileAtomically(serialized(), to: path)
    }

    // MARK: - Reading

    /// Reads and validates a safetensors file, verifying `csgd.checksum` when present.
    /// - Throws: a one-line `CSGDError` naming `path` for a missing file or any malformed input.
    ///
    /// The file is mapped, not read: the header is checked against the file's size before any
    /// tensor byte is touched, so a sparse 7 GB file (or a header claiming 8 GB) is refused at
    /// once, and a file whose tensors would take more than half of this machine's memory is
    /// refused before they are copied.
    public static func read(path: String) throws -> SafeTensorsFile {
        let (fd, size) = try openRegularFile(path)
        defer { close(fd) }
        if size < 8 { return try parse(UnsafeRawBufferPointer(start: nil, count: 0), source: path) }
        let limit = Int(min(ProcessInfo.processInfo.physicalMemory / 2, UInt64(Int.max)))
        if size > limit {
            throw CSGDError(
                "\(path): \(size) bytes is more than half of this machine's memory "
                    + "(\(limit) bytes); csgd-dist loads a model file whole")
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw CSGDError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { munmap(base, size) }
        return try parse(UnsafeRawBufferPointer(start: base, count: size), source: path)
    }

    /// Parses serialized safetensors bytes; `source` names them in error messages.
    public init(serialized data: Data, source: String = "<memory>") throws {
        self = try data.withUnsafeBytes { try Self.parse($0, source: source) }
    }

    private static func parse(_ raw: UnsafeRawBufferPointer, source: String) throws
        -> SafeTensorsFile
    {
        func fail(_ why: String) -> CSGDError { CSGDError("\(source): \(why)") }
        if raw.count < 8 {
            throw fail("too short for a safetensors file (\(raw.count) bytes)")
        }
        let n64 = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        if n64 > UInt64(raw.count - 8) {
            throw fail(
                "header length \(n64) is larger than the file (\(raw.count) bytes); "
                    + "not a safetensors file, or truncated")
        }
        let headerLength = Int(n64)
        let headerBytes = UnsafeRawBufferPointer(rebasing: raw[8..<(8 + headerLength)])
        let dataStart = 8 + headerLength
        let data = UnsafeRawBufferPointer(rebasing: raw[dataStart...])

        if String(validating: headerBytes, as: UTF8.self) == nil {
            throw fail("header is not valid UTF-8")
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(headerBytes))
        } catch {
            throw fail("header is not valid JSON")
        }
        guard let root = parsed as? [String: Any] else {
            throw fail("header JSON is not an object")
        }

        var file = SafeTensorsFile(source: source)
        if let m = root["__metadata__"] {
            guard let meta = m as? [String: Any] else {
                throw fail("__metadata__ is not an object")
            }
            for (k, v) in meta {
                guard let s = v as? String else {
                    throw fail("__metadata__ value for '\(k)' is not a string")
                }
                file.metadata[k] = s
            }
        }

        struct Entry {
            let name: String
            let dtype: SafeTensorsDType
            let shape: [Int]
            let begin: Int
            let end: Int
        }
        var entries: [Entry] = []
        for (name, value) in root where name != "__metadata__" {
            guard let info = value as? [String: Any] else {
                throw fail("tensor '\(name)': entry is not an object")
            }
            guard let dtypeName = info["dtype"] as? String else {
                throw fail("tensor '\(name)': missing dtype")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail("tensor '\(name)': unsupported dtype '\(dtypeName)' (known: \(known))")
            }
            guard let shape = intArray(info["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(name)': shape is not a list of non-negative integers")
            }
            guard let offsets = intArray(info["data_offsets"]), offsets.count == 2 else {
                throw fail("tensor '\(name)': data_offsets is not [begin, end]")
            }
            let (begin, end) = (offsets[0], offsets[1])
            if begin < 0 || end < begin {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] out of range")
            }
            var byteCount = dtype.byteSize
            for d in shape {
                let (p, overflow) = byteCount.multipliedReportingOverflow(by: d)
                if overflow { throw fail("tensor '\(name)': shape \(shape) is too large") }
                byteCount = p
            }
            if end - begin != byteCount {
                throw fail(
                    "tensor '\(name)': data_offsets [\(begin), \(end)] span \(end - begin) "
                        + "bytes but \(dtype.rawValue) \(shape) needs \(byteCount)")
            }
            if end > data.count {
                throw fail(
                    "tensor '\(name)' ends at data byte \(end) but the data section has only "
                        + "\(data.count) bytes (file truncated)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // JSON objects are unordered; the data section fixes the order. Only empty tensors can
        // share an offset; they are ordered by name.
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for e in entries {
            if e.begin < expected {
                throw fail("tensor '\(e.name)': data_offsets [\(e.begin), \(e.end)] overlap")
            }
            if e.begin > expected {
                throw fail(
                    "tensor '\(e.name)': gap in the data section before byte \(e.begin)")
            }
            expected = e.end
        }
        if expected != data.count {
            throw fail(
                "data section has \(data.count) bytes but the tensors cover \(expected)")
        }

        if let stored = file.metadata.removeValue(forKey: checksumKey) {
            var checksum = Checksum()
            checksum.add(bytes: data)
            if stored.lowercased() != checksum.hex {
                throw fail("checksum mismatch (file corrupt or truncated)")
            }
        }
        for e in entries {
            let bytes = Array(UnsafeRawBufferPointer(rebasing: data[e.begin..<e.end]))
            file.indexByName[e.name] = file.tensors.count
            file.tensors.append(
                Tensor(name: e.name, dtype: e.dtype, shape: e.shape, bytes: bytes))
        }
        return file
    }
}

/// JSON integers (NSNumber) as `[Int]`; nil if `value` is not an array of integers.
private func intArray(_ value: Any?) -> [Int]? {
    guard let array = value as? [Any] else { return nil }
    var out: [Int] = []
    for v in array {
        guard let i = v as? Int else { return nil }
        out.append(i)
    }
    return out
}

/// A JSON string literal: quotes, backslashes and control characters escaped; other
/// characters (including non-ASCII) written as UTF-8, so the output is deterministic.
public func jsonStringLiteral(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

/// The whole content of `path`, or a one-line `CSGDError` naming it.
/// Reads a whole regular file. Opened non-blocking so a FIFO or device named as input is
/// refused at once instead of blocking the job forever.
/// - Parameter limit: largest accepted size in bytes.
/// - Throws: a one-line `CSGDError` naming `path` for a missing, unreadable, non-regular or
///   over-large file.
public func readWholeFile(_ path: String, limit: Int = Int.max) throws -> [UInt8] {
    let (fd, size) = try openRegularFile(path)
    defer { close(fd) }
    if size > limit {
        throw CSGDError("cannot read \(path): \(size) bytes is more than the \(limit) accepted")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var got = 0
    var failure: String?
    bytes.withUnsafeMutableBytes { buf in
        while got < size {
            let n = Foundation.read(fd, buf.baseAddress! + got, size - got)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { failure = String(cString: strerror(errno)) }
            if n <= 0 { break }
            got += n
        }
    }
    if let failure { throw CSGDError("cannot read \(path): \(failure)") }
    return got == size ? bytes : Array(bytes[0..<got])
}

/// Opens `path` for reading, refusing anything but a regular file. Opened non-blocking (then
/// set back to blocking) so a FIFO or device named as input is refused at once instead of
/// blocking the job forever.
/// - Returns: the open descriptor (the caller closes it) and the file's size in bytes.
/// - Throws: a one-line `CSGDError` naming `path`.
public func openRegularFile(_ path: String) throws -> (fd: Int32, size: Int) {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    if fd < 0 { throw CSGDError("cannot read \(path): \(String(cString: strerror(errno)))") }
    var st = stat()
    if fstat(fd, &st) != 0 {
        let why = String(cString: strerror(errno))
        close(fd)
        throw CSGDError("cannot read \(path): \(why)")
    }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        close(fd)
        throw CSGDError("cannot read \(path): it is a directory")
    }
    if (st.st_mode & S_IFMT) != S_IFREG {
        close(fd)
        throw CSGDError("cannot read \(path): not a regular file (a pipe, socket or device)")
    }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    return (fd, Int(st.st_size))
}
