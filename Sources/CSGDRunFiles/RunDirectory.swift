// Ownership of a job's out_dir. Rank 0 creates the folder, takes an exclusive flock(2) on
// `<out_dir>/.lock` for the life of the job (a second job on the same folder is refused with
// one line naming the holder), refuses to reuse a folder that holds another run's records
// unless told (--resume continues it, --overwrite moves its records aside), removes temp files
// left by killed jobs, and appends the command line to command.txt. Other ranks receive rank
// 0's verdict, so every rank stops with the same error.

import CSGDCore
import CSGDDistributed
import Foundation

/// Rank 0's claim on a job's out_dir: the folder exists, this process holds its lock, and the
/// resume/overwrite rules were applied. The lock is held until `release()` or the process
/// exits (the kernel drops it then, so a killed job never leaves a stale lock).
public final class RunDirectory {
    /// The out_dir as given (checked: no `..` after a folder name).
    public let path: String
    /// Lines worth logging: records moved aside, stale temp files removed or kept.
    public let notes: [String]
    private var lockFD: Int32

    /// Files whose presence means the folder holds a run: refused without --resume or
    /// --overwrite. (`--overwrite` also moves the `checkpoints/` history folder aside.)
    public static let recordNames = ["checkpoint.safetensors", "metrics.jsonl", "config.yaml"]

    /// The lock file inside an out_dir.
    public static let lockName = ".lock"

    /// How a job wants to use its out_dir.
    public struct Intent: Sendable {
        /// The job continues the run in the folder (`--resume`): its checkpoint must exist.
        public var resume: Bool
        /// The job starts over in a folder that may hold a run (`--overwrite`): that run's
        /// records and models are moved to `<out_dir>/overwritten-<UTC time>/`.
        public var overwrite: Bool
        /// Whether the job has a `--resume` flag (named in the refusal hint).
        public var canResume: Bool
        /// Files the job still has to read (e.g. `--from`): moved aside as a hard link, so
        /// they stay readable under their name until the job replaces them.
        public var keep: [String]

        /// Describes the job's flags.
        public init(resume: Bool, overwrite: Bool, canResume: Bool, keep: [String] = []) {
            self.resume = resume
            self.overwrite = overwrite
            self.canResume = canResume
            self.keep = keep
        }
    }

    private init(path: String, lockFD: Int32, notes: [String]) {
        self.path = path
        self.lockFD = lockFD
        self.notes = notes
    }

    /// Rank 0 claims `path` (see `claim(_:intent:command:)`); the other ranks wait for its
    /// verdict, so every rank throws the same error when the claim is refused.
    /// - Returns: the claim on rank 0, nil on the other ranks.
    /// - Throws: rank 0's `CSGDError`, on every rank.
    public static func claim(comm: Communicator, path: String, intent: Intent) throws
        -> RunDirectory?
    {
        var claimed: RunDirectory?
        var verdict: [UInt8] = []
        if comm.isRoot {
            let argv = CommandLine.arguments.map(shellQuoted).joined(separator: " ")
            let launch = comm.size > 1 ? "(\(comm.size) MPI ranks) " : ""
            do {
                claimed = try claim(path, intent: intent, command: launch + argv)
            } catch let e as CSGDError {
                verdict = Array((e.message + "\n" + (e.hint ?? "")).utf8)
            }
        }
        if comm.size > 1 { comm.broadcast(bytes: &verdict, root: 0) }
        if !verdict.isEmpty {
            let parts = String(decoding: verdict, as: UTF8.self)
                .split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            let hint = parts.count > 1 && !parts[1].isEmpty ? String(parts[1]) : nil
            throw CSGDError(String(parts[0]), hint: hint)
        }
        return claimed
    }

    /// Claims `path` in this process: checks the path, creates the folder, takes the lock,
    /// applies the resume/overwrite rules, removes stale temp files and appends `command`
    /// (with a UTC timestamp) to command.txt. Nothing in the folder changes when it throws,
    /// except that the folder and its `.lock` file may have been created.
    /// - Throws: `CSGDError` naming the path: `..` after a folder name, a folder that cannot
    ///   be created, a lock held by another job (its pid and host), a run that would be
    ///   reused without --resume or --overwrite, --resume without a checkpoint.
    public static func claim(_ path: String, intent: Intent, command: String) throws
        -> RunDirectory
    {
        if intent.resume && intent.overwrite {
            throw CSGDError("--resume and --overwrite exclude each other")
        }
        try checkPath(path)
        try makeFolder(path)
        let lockPath = path + "/" + lockName
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if fd < 0 { throw CSGDError("cannot create \(lockPath): \(errnoText())") }
        let previous = readAll(fd)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let busy = errno == EWOULDBLOCK
            let why = errnoText()
            let holder = describeHolder(readAll(fd))
            close(fd)
            if busy { throw CSGDError("\(path) is in use by another job (\(holder))") }
            throw CSGDError("cannot lock \(lockPath): \(why)")
        }
        do {
            let moveAside = try checkRules(path, intent: intent)
            let record = Array("\(getpid()) \(hostName()) \(timestamp())\n".utf8)
            if ftruncate(fd, 0) != 0 || pwrite(fd, record, record.count, 0) != record.count {
                throw CSGDError("cannot write \(lockPath): \(errnoText())")
            }
            var notes: [String] = []
            if moveAside { notes.append(try self.moveAside(path, keep: intent.keep)) }
            notes += cleanTempFiles(path, previousHolder: previous)
            let history = path + "/" + CheckpointHistory.folderName
            if !moveAside && FileManager.default.fileExists(atPath: history) {
                notes += cleanTempFiles(history, previousHolder: previous)
            }
            try appendLine(timestamp() + " " + command, to: path + "/command.txt")
            return RunDirectory(path: path, lockFD: fd, notes: notes)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Releases the lock (the job is over). Called implicitly when the process exits.
    public func release() {
        if lockFD >= 0 { close(lockFD) }
        lockFD = -1
    }

    // MARK: - rules

    /// `..` after a folder name would create that folder and then leave it: refused.
    static func checkPath(_ path: String) throws {
        var seenName = false
        for part in path.split(separator: "/") {
            if part == ".." && seenName {
                throw CSGDError(
                    "out_dir \(path): '..' after a folder name is not accepted",
                    hint: "write the folder it means directly: \(lexicallyNormalized(path))")
            }
            if part != ".." && part != "." { seenName = true }
        }
    }

    /// `path` with `.` and `name/..` pairs removed (for the hint only).
    static func lexicallyNormalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == "..", let last = parts.last, last != ".." {
                parts.removeLast()
            } else {
                parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    /// `mkdir -p` that names the component at fault in one plain line.
    static func makeFolder(_ path: String) throws {
        let parts = path.split(separator: "/")
        var prefix = path.hasPrefix("/") ? "/" : ""
        for (i, part) in parts.enumerated() {
            prefix += part
            if mkdir(prefix, 0o755) != 0 {
                let code = errno
                if code != EEXIST {
                    throw CSGDError(
                        "cannot create out_dir \(path): \(prefix): \(String(cString: strerror(code)))"
                    )
                }
            }
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: prefix, isDirectory: &isDir)
                || !isDir.boolValue
            {
                throw CSGDError(
                    i == parts.count - 1
                        ? "out_dir \(path) is a file, not a folder"
                        : "cannot create out_dir \(path): \(prefix) is a file, not a folder")
            }
            prefix += "/"
        }
    }

    /// The resume/overwrite rules (nothing changes here).
    /// - Returns: whether an old run must be moved aside (`--overwrite` on a used folder).
    static func checkRules(_ path: String, intent: Intent) throws -> Bool {
        let fm = FileManager.default
        let present = recordNames.filter { fm.fileExists(atPath: path + "/" + $0) }
        if intent.resume {
            if !CheckpointHistory(outDir: path, keep: 1).hasCheckpoint {
                throw CSGDError(
                    "cannot resume: \(path)/checkpoint.safetensors does not exist",
                    hint: "start the run without --resume")
            }
            return false
        }
        if present.isEmpty { return false }
        if !intent.overwrite {
            let resume =
                intent.canResume
                ? "--resume continues it, "
                : "a prune writes its records next to --output unless --out-dir is given; "
            throw CSGDError(
                "\(path) already holds a run (\(present.joined(separator: ", "))); not touching it",
                hint: resume + "--overwrite starts over (moving its records to "
                    + "\(path)/overwritten-<time>/), or choose another --out-dir")
        }
        return true
    }

    /// Moves the old run's records and models into `<path>/overwritten-<UTC time>/`.
    static func moveAside(_ path: String, keep: [String]) throws -> String {
        let fm = FileManager.default
        let names = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { name in
            recordNames.contains(name)
                || ["model.safetensors", "pruned.safetensors", "report.html", "steps.jsonl", "tb"]
                    .contains(name)
                || name == CheckpointHistory.folderName
                || (name.hasPrefix("round") && name.hasSuffix("-pruned.safetensors"))
        }.sorted()
        let stamp = timestamp().replacingOccurrences(of: ":", with: "")
            .replacingOccurrences(of: "-", with: "")
        var aside = path + "/overwritten-" + stamp
        var n = 2
        while fm.fileExists(atPath: aside) {
            aside = path + "/overwritten-\(stamp)-\(n)"
            n += 1
        }
        if mkdir(aside, 0o755) != 0 { throw CSGDError("cannot create \(aside): \(errnoText())") }
        let kept = Set(keep.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
        for name in names {
            let from = path + "/" + name
            let to = aside + "/" + name
            let stays = kept.contains(URL(fileURLWithPath: from).standardizedFileURL.path)
            let ok = stays ? link(from, to) == 0 : rename(from, to) == 0
            if !ok { throw CSGDError("cannot move \(from) to \(to): \(errnoText())") }
        }
        return "--overwrite: the previous run's \(names.joined(separator: ", ")) moved to \(aside)"
    }

    /// Removes `.<name>.<random>.tmp-<pid>` files (AtomicFile's temp files) whose writer is gone: its
    /// pid is not alive on this host and the last lock holder ran on this host. Others stay.
    static func cleanTempFiles(_ path: String, previousHolder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let lastHost = previousHolder.split(separator: " ").dropFirst().first.map(String.init)
        let sameHost = lastHost == nil || lastHost == hostName()
        var removed: [String] = []
        var kept: [String] = []
        for name in names.sorted() where name.hasPrefix(".") {
            guard let r = name.range(of: ".tmp-", options: .backwards),
                let pid = Int32(name[r.upperBound...]), pid > 0
            else { continue }
            let gone = pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH
            if sameHost && gone && unlink(path + "/" + name) == 0 {
                removed.append(name)
            } else {
                kept.append(name)
            }
        }
        var notes: [String] = []
        if !removed.isEmpty {
            notes.append(
                "removed \(removed.count) temp file(s) left in \(path) by a killed job: "
                    + removed.joined(separator: ", "))
        }
        if !kept.isEmpty {
            notes.append(
                "left \(kept.count) temp file(s) in \(path) whose writer may still be alive "
                    + "(on this or another host): " + kept.joined(separator: ", "))
        }
        return notes
    }

    // MARK: - small helpers

    static func readAll(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 512)
        let n = pread(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }

    /// `pid 123 on host h, started T` from the lock file's `pid host time` line.
    static func describeHolder(_ record: String) -> String {
        let f = record.split(whereSeparator: { $0 == " " || $0 == "\n" })
        if f.count < 3 { return "holder unknown: its lock file is being written" }
        return "pid \(f[0]) on host \(f[1]), started \(f[2])"
    }

    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count - 1) != 0 { return "localhost" }
        return String(
            decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func timestamp() -> String { ISO8601DateFormatter().string(from: Date()) }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// `s` as one shell word (command.txt lines can be pasted back into a shell).
func shellQuoted(_ s: String) -> String {
    let plain = s.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }
    return plain && !s.isEmpty ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
