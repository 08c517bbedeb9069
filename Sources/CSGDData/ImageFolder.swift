// ImageFolder datasets (torchvision's layout: one folder per class, classes sorted by name →
// label ids) read either from the folder tree or from a packed form: a few large record files
// of concatenated JPEG bytes plus `index.tsv` (class names, then per record shard / offset /
// length / label / original path). Packing keeps the folder's sample order, so both forms give
// the same samples, and a cluster's shared file system opens a handful of files instead of
// 1.28 million.
//
// index.tsv, UTF-8, tab-separated, one item per line:
//   csgd-dist packed imagefolder v1
//   class <TAB> name                                      (label order)
//   shard <TAB> file name <TAB> bytes
//   record <TAB> shard <TAB> offset <TAB> length <TAB> label <TAB> relative path

import CSGDCore
import Foundation

/// One image of an `ImageFolderDataset`.
public struct ImageRecord: Sendable, Equatable {
    /// Class id, the position of the class name in the sorted class list.
    public let label: Int32
    /// Path relative to the split folder, e.g. `n01440764/n01440764_10026.JPEG`.
    public let path: String
    /// Record file holding the bytes (packed form), or -1 for a plain file.
    public let shard: Int
    /// Byte offset in the shard.
    public let offset: Int
    /// Byte length in the shard (0 for a plain file).
    public let length: Int

    /// Creates a record.
    public init(label: Int32, path: String, shard: Int = -1, offset: Int = 0, length: Int = 0) {
        self.label = label
        self.path = path
        self.shard = shard
        self.offset = offset
        self.length = length
    }
}

/// A split of labelled JPEG images, as a class-folder tree or packed record files.
public final class ImageFolderDataset: @unchecked Sendable {
    /// Name of the index file that marks a packed split folder.
    public static let indexName = "index.tsv"
    /// First line of the index.
    static let indexMagic = "csgd-dist packed imagefolder v1"
    /// File extensions that are images (compared case-insensitively); other files are ignored.
    public static let extensions: Set<String> = ["jpg", "jpeg"]

    /// The split folder (class folders, or shards + index).
    public let root: String
    /// Class names in label order (sorted by their UTF-8 bytes, as Python sorts strings).
    public let classes: [String]
    /// Images in sample order: by class, then by path.
    public let records: [ImageRecord]
    /// Shard file names (empty for a folder tree).
    public let shards: [String]
    private let files: ShardFiles

    /// Whether the bytes come from packed record files.
    public var isPacked: Bool { !shards.isEmpty }

    /// Number of images.
    public var count: Int { records.count }

    init(root: String, classes: [String], records: [ImageRecord], shards: [String]) throws {
        self.root = root
        self.classes = classes
        self.records = records
        self.shards = shards
        files = try ShardFiles(root: root, names: shards)
    }

    private init(_ parent: ImageFolderDataset, records: [ImageRecord]) {
        root = parent.root
        classes = parent.classes
        shards = parent.shards
        files = parent.files
        self.records = records
    }

    /// Opens a split folder: packed if it holds `index.tsv`, else a class-folder tree.
    /// - Throws: `CSGDError` naming the path if it is missing, has no class folders, a class
    ///   folder holds no JPEG files, or the packed index is corrupt.
    public static func open(_ path: String) throws -> ImageFolderDataset {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) || !isDir.boolValue {
            throw CSGDError(
                "missing image folder \(path)",
                hint: "data_dir must hold train/ and val/, each a folder of class folders of "
                    + "JPEGs or the output of `csgd-dist pack`")
        }
        if FileManager.default.fileExists(atPath: path + "/" + indexName) {
            return try openPacked(path)
        }
        return try scan(path)
    }

    /// Scans a class-folder tree: every sub-folder (not starting with ".") is a class; its
    /// `.jpg`/`.jpeg` files, searched recursively, are the samples, sorted by path.
    public static func scan(_ path: String) throws -> ImageFolderDataset {
        let fm = FileManager.default
        let entries: [String]
        do {
            entries = try fm.contentsOfDirectory(atPath: path)
        } catch {
            throw CSGDError("cannot list image folder \(path)")
        }
        let classes = entries.filter { name in
            var isDir: ObjCBool = false
            return !name.hasPrefix(".")
                && fm.fileExists(atPath: path + "/" + name, isDirectory: &isDir) && isDir.boolValue
        }.sorted(by: utf8Less)
        if classes.isEmpty {
            throw CSGDError(
                "image folder \(path) has no class folders",
                hint: "expected \(path)/<class>/<image>.JPEG (torchvision ImageFolder layout)")
        }
        var records: [ImageRecord] = []
        for (label, name) in classes.enumerated() {
            let dir = path + "/" + name
            guard let walker = fm.enumerator(atPath: dir) else {
                throw CSGDError("cannot list class folder \(dir)")
            }
            var files: [String] = []
            while let rel = walker.nextObject() as? String {
                let ext = (rel as NSString).pathExtension.lowercased()
                if extensions.contains(ext) && !(rel as NSString).lastPathComponent.hasPrefix(".") {
                    files.append(rel)
                }
            }
            if files.isEmpty {
                throw CSGDError(
                    "class folder \(dir) holds no .jpg/.jpeg files",
                    hint: "remove the empty class folder or add its images")
            }
            // torchvision walks sorted folders and sorts file names within each.
            files.sort { a, b in
                let da = (a as NSString).deletingLastPathComponent
                let db = (b as NSString).deletingLastPathComponent
                return da == db ? utf8Less(a, b) : utf8Less(da, db)
            }
            for f in files {
                records.append(ImageRecord(label: Int32(label), path: name + "/" + f))
            }
        }
        return try ImageFolderDataset(root: path, classes: classes, records: records, shards: [])
    }

    /// Largest image file read, in bytes (512 MiB): a JPEG of `max_image_pixels`' default
    /// 89 megapixels is at most ~270 MB even at quality 100 without subsampling.
    public static let maxImageBytes = 1 << 29

    /// Largest index.tsv read, in bytes: ImageNet's 1.28 M training images take ~120 MiB.
    public static let maxIndexBytes = 1 << 30

    /// Reads a packed split folder's index and checks it against the shard files.
    ///
    /// The index is untrusted: it is read only if it is a regular file of at most
    /// `maxIndexBytes`, and every shard it names must be a plain file name (no `/`, no `..`)
    /// that resolves, after symbolic links, to a regular file inside the split folder.
    /// - Throws: `CSGDError` naming `index.tsv:line` for a bad line or shard name.
    public static func openPacked(_ path: String) throws -> ImageFolderDataset {
        let indexPath = path + "/" + indexName
        let data: [UInt8]
        do {
            data = try readWholeFile(indexPath, limit: maxIndexBytes)
        } catch let e as CSGDError {
            throw CSGDError("packed index: \(e.message)")
        }
        let realRoot = realPath(path) ?? path
        var classes: [String] = []
        var shards: [String] = []
        var shardSizes: [Int] = []
        var records: [ImageRecord] = []
        var lineNumber = 0
        func bad(_ why: String) -> CSGDError {
            CSGDError(
                "packed index \(indexPath):\(lineNumber): \(why)",
                hint: "re-run `csgd-dist pack` on the image folder")
        }
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            let text = String(decoding: line, as: UTF8.self)
            if lineNumber == 1 {
                if text != indexMagic { throw bad("not a csgd-dist packed index") }
                continue
            }
            let f = text.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            switch f[0] {
            case "class" where f.count == 2:
                classes.append(f[1])
            case "shard" where f.count == 3:
                guard let size = Int(f[2]), size >= 0 else {
                    throw bad("bad shard size '\(f[2])'")
                }
                if let why = shardNameProblem(f[1], root: path, realRoot: realRoot) {
                    throw bad("shard '\(f[1])' \(why)")
                }
                shards.append(f[1])
                shardSizes.append(size)
            case "record" where f.count == 6:
                guard let shard = Int(f[1]), let offset = Int(f[2]), let length = Int(f[3]),
                    let label = Int32(f[4]), shard >= 0, shard < shards.count, offset >= 0,
                    // Subtracted, not added: a crafted offset near Int.max must not overflow.
                    length > 0, length <= maxImageBytes, offset <= shardSizes[shard] - length,
                    label >= 0,
                    Int(label) < classes.count
                else { throw bad("bad record line") }
                records.append(
                    ImageRecord(
                        label: label, path: f[5], shard: shard, offset: offset, length: length))
            default:
                throw bad("unexpected line '\(text.prefix(40))'")
            }
        }
        if lineNumber == 0 { throw bad("empty file") }
        if classes.isEmpty || records.isEmpty { throw bad("no classes or no records") }
        for (s, size) in zip(shards, shardSizes) {
            let p = path + "/" + s
            // stat(2), not FileManager's attributes: the size of a linked shard's target.
            var st = stat()
            let actual = stat(p, &st) == 0 ? Int(st.st_size) : nil
            if actual != size {
                throw CSGDError(
                    "packed shard \(p) is \(actual.map { "\($0) bytes" } ?? "missing"), "
                        + "its index says \(size) bytes",
                    hint: "re-run `csgd-dist pack` on the image folder")
            }
        }
        return try ImageFolderDataset(
            root: path, classes: classes, records: records, shards: shards)
    }

    /// Why `name` cannot be a shard of the split folder `root` (whose resolved path is
    /// `realRoot`), or nil: shards are plain file names of regular files inside the folder.
    /// A missing file passes here; the size check reports it.
    static func shardNameProblem(_ name: String, root: String, realRoot: String) -> String? {
        if name.isEmpty || name == "." || name.contains("/") || name.contains("..")
            || name.utf8.contains(0)
        {
            return "is not a plain file name inside the packed folder"
        }
        let full = root + "/" + name
        guard let resolved = realPath(full) else { return nil }
        if !resolved.hasPrefix(realRoot.hasSuffix("/") ? realRoot : realRoot + "/") {
            return "resolves to \(resolved), outside the packed folder \(realRoot)"
        }
        var st = stat()
        if stat(resolved, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
            return "is not a regular file (a directory, pipe, socket or device)"
        }
        return nil
    }

    /// Where record `i` lives, for messages: the file, or the shard and offset with the
    /// original path.
    public func location(_ i: Int) -> String {
        let r = records[i]
        if r.shard < 0 { return root + "/" + r.path }
        return "\(root)/\(shards[r.shard])@\(r.offset) (\(r.path))"
    }

    /// The encoded bytes of record `i`. Safe to call from several threads at once.
    /// - Throws: `CSGDError` naming the file if it cannot be read.
    public func bytes(_ i: Int) throws -> [UInt8] {
        let r = records[i]
        if r.shard >= 0 {
            var out = [UInt8](repeating: 0, count: r.length)
            let n = out.withUnsafeMutableBytes {
                pread(files.fds[r.shard], $0.baseAddress, r.length, off_t(r.offset))
            }
            if n != r.length { throw CSGDError("short read of \(location(i))") }
            return out
        }
        // Non-blocking and regular files only: a FIFO named x.jpg must not block the loader,
        // and a sparse 6 GB "image" must not be allocated.
        return try readWholeFile(root + "/" + r.path, limit: Self.maxImageBytes)
    }

    /// The first `n` records (all if `n ≥ count`), sharing this dataset's files.
    public func subset(first n: Int) -> ImageFolderDataset {
        if n >= count { return self }
        return ImageFolderDataset(self, records: Array(records.prefix(max(0, n))))
    }

    /// `n` records spread evenly over the sample order (record `⌊i · count / n⌋` for
    /// `i < n`), so a limited run still sees every class; all records if `n ≥ count`.
    public func subset(evenly n: Int) -> ImageFolderDataset {
        if n >= count { return self }
        return ImageFolderDataset(self, records: (0..<max(0, n)).map { records[$0 * count / n] })
    }
}

/// Open read-only descriptors of the shard files, shared by a dataset and its subsets.
private final class ShardFiles: @unchecked Sendable {
    let fds: [Int32]

    init(root: String, names: [String]) throws {
        var fds: [Int32] = []
        for s in names {
            let fd = openFile(root + "/" + s)
            if fd < 0 {
                for f in fds { close(f) }
                throw CSGDError(
                    "cannot open packed shard \(root)/\(s): \(String(cString: strerror(errno)))")
            }
            fds.append(fd)
        }
        self.fds = fds
    }

    deinit { for fd in fds { close(fd) } }
}

/// The absolute path of `path` with every symbolic link, `.` and `..` resolved (`realpath(3)`),
/// or nil if it does not exist.
func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// `open(2)` for reading; a free function because the class has a static `open`.
func openFile(_ path: String) -> Int32 { open(path, O_RDONLY) }

/// Python's string order: code points, i.e. UTF-8 bytes.
func utf8Less(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

// MARK: - Packing

/// Writes image folders into packed record files (`csgd-dist pack`).
public enum ImageFolderPacker {
    /// What one split's packing produced.
    public struct Summary: Sendable {
        /// Split folder written.
        public let output: String
        /// Images packed.
        public let images: Int
        /// Classes.
        public let classes: Int
        /// Shard files written.
        public let shards: Int
        /// Total JPEG bytes.
        public let bytes: Int
    }

    /// Packs `source`: if it holds `train/` and/or `val/`, each into the same name under
    /// `output`; otherwise `source` itself (a folder of class folders) into `output`.
    ///
    /// The pack is written into a new temp folder beside `output` and put in place only once
    /// complete, so a pack that fails (a bad image, a full disk, a kill) leaves a previous pack
    /// at `output` exactly as it was. `output` may be absent, an empty folder, or a previous
    /// pack (a folder whose top or `train/`/`val/` holds an index); anything else — the source
    /// itself, a folder inside it or around it, a folder of other files — is refused.
    /// - Parameter shardBytes: a new shard starts once the current one reaches this size.
    /// - Throws: `CSGDError` naming the file for a bad folder, a non-JPEG file or a write error.
    public static func pack(source: String, output: String, shardBytes: Int) throws -> [Summary] {
        if shardBytes < 1 {
            throw CSGDError("shard size must be positive, got \(shardBytes) bytes")
        }
        let splits = ["train", "val"].filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: source + "/" + $0, isDirectory: &isDir)
                && isDir.boolValue
        }
        try checkPackOutput(
            output, source: source,
            scanned: splits.isEmpty ? [source] : splits.map { source + "/" + $0 })
        let parent = URL(fileURLWithPath: output).standardizedFileURL
            .deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let tmp = tempPath(beside: output)
        if mkdir(tmp, 0o755) != 0 {
            throw CSGDError("cannot create \(tmp): \(String(cString: strerror(errno)))")
        }
        var done = false
        defer { if !done { try? FileManager.default.removeItem(atPath: tmp) } }
        var summaries =
            splits.isEmpty
            ? [try packSplit(source: source, output: tmp, shardBytes: shardBytes)]
            : try splits.map {
                try packSplit(
                    source: source + "/" + $0, output: tmp + "/" + $0, shardBytes: shardBytes)
            }
        // The previous pack (or empty folder) moves aside, the new one takes its name, the old
        // one is removed: at every moment one complete pack is on disk.
        var aside: String?
        if FileManager.default.fileExists(atPath: output) {
            let suffix = ".tmp-\(getpid())"  // tempPath's ending
            let old = String(tmp.dropLast(suffix.count)) + ".old-\(getpid())"
            if rename(output, old) != 0 {
                throw CSGDError("cannot replace \(output): \(String(cString: strerror(errno)))")
            }
            aside = old
        }
        if rename(tmp, output) != 0 {
            let why = String(cString: strerror(errno))
            if let aside { _ = rename(aside, output) }
            throw CSGDError("cannot write \(output): \(why)")
        }
        done = true
        if let aside { try? FileManager.default.removeItem(atPath: aside) }
        removeStaleTemps(beside: output)
        summaries = summaries.map {
            Summary(
                output: output + String($0.output.dropFirst(tmp.count)), images: $0.images,
                classes: $0.classes, shards: $0.shards, bytes: $0.bytes)
        }
        return summaries
    }

    /// Throws unless `output` may receive a pack of `source`, whose `scanned` folders are the
    /// ones read (see `pack`).
    static func checkPackOutput(_ output: String, source: String, scanned: [String]) throws {
        // Where output is or would be: its deepest existing ancestor resolved, the rest kept.
        var existing = URL(fileURLWithPath: output).standardizedFileURL
        var rest: [String] = []
        while realPath(existing.path) == nil && existing.path != "/" {
            rest.insert(existing.lastPathComponent, at: 0)
            existing.deleteLastPathComponent()
        }
        let out = ([realPath(existing.path) ?? existing.path] + rest).joined(separator: "/")
        let src = realPath(source) ?? source
        func inside(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b + "/") }
        let read = scanned.map { realPath($0) ?? $0 }
        if inside(src, out) || read.contains(where: { inside(out, $0) }) {
            throw CSGDError(
                "pack output \(output) is \(out == src ? "the source folder" : "inside or around the source \(source)"); "
                    + "csgd-dist never writes over its input: choose another folder")
        }
        var st = stat()
        if lstat(output, &st) != 0 { return }  // absent: fine (its parent is created)
        if (st.st_mode & S_IFMT) != S_IFDIR {
            throw CSGDError(
                "pack output \(output) exists and is not a folder (a file, link or device); "
                    + "choose a new or empty folder, or a previous pack to replace")
        }
        let fm = FileManager.default
        let entries = ((try? fm.contentsOfDirectory(atPath: output)) ?? []).filter {
            !$0.hasPrefix(".")
        }
        let isPack = ["", "train/", "val/"].contains {
            fm.fileExists(atPath: output + "/" + $0 + ImageFolderDataset.indexName)
        }
        if !entries.isEmpty && !isPack {
            throw CSGDError(
                "pack output \(output) is a folder of other files (no \(ImageFolderDataset.indexName)); "
                    + "csgd-dist replaces only an empty folder or a previous pack")
        }
    }

    /// Packs one folder of class folders into `output` (shards first, the index last, each
    /// written to a temp file and renamed, so a folder with an index is always complete).
    public static func packSplit(source: String, output: String, shardBytes: Int) throws
        -> Summary
    {
        if shardBytes < 1 {
            throw CSGDError("shard size must be positive, got \(shardBytes) bytes")
        }
        let dataset = try ImageFolderDataset.scan(source)
        for name in dataset.classes + dataset.records.map(\.path)
        where name.contains("\t") || name.contains("\n") {
            throw CSGDError("cannot pack \(source)/\(name): tab or newline in the name")
        }
        // A stale index would describe shards that are about to be overwritten.
        unlink(output + "/" + ImageFolderDataset.indexName)
        let codec = JPEGCodec()
        var index = ImageFolderDataset.indexMagic + "\n"
        for c in dataset.classes { index += "class\t\(c)\n" }
        var shardLines = ""
        var recordLines = ""
        var writer: AtomicFileWriter?
        var shardCount = 0
        var total = 0
        func finishShard() throws {
            guard let w = writer else { return }
            try w.commit()
            shardLines += "shard\t\((w.path as NSString).lastPathComponent)\t\(w.count)\n"
            writer = nil
        }
        for i in 0..<dataset.count {
            let bytes = try dataset.bytes(i)
            do {
                _ = try bytes.withUnsafeBytes { try codec.header($0) }
            } catch let e as JPEGError {
                throw CSGDError("cannot pack \(dataset.location(i)): not a JPEG (\(e.message))")
            }
            if let w = writer, w.count + bytes.count > shardBytes, w.count > 0 {
                try finishShard()
            }
            if writer == nil {
                writer = try AtomicFileWriter(
                    path: output + "/" + String(format: "shard-%05d.bin", shardCount))
                shardCount += 1
            }
            let w = writer!
            let offset = w.count
            try bytes.withUnsafeBytes { try w.append($0) }
            recordLines +=
                "record\t\(shardCount - 1)\t\(offset)\t\(bytes.count)\t\(dataset.records[i].label)"
                + "\t\(dataset.records[i].path)\n"
            total += bytes.count
        }
        try finishShard()
        index += shardLines + recordLines
        try writeFileAtomically(
            Data(index.utf8), to: output + "/" + ImageFolderDataset.indexName)
        return Summary(
            output: output, images: dataset.count, classes: dataset.classes.count,
            shards: shardCount, bytes: total)
    }
}
