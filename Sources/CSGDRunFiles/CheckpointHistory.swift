// A run's checkpoint history. Every training checkpoint is written once, atomically, to
// `<out_dir>/checkpoints/step-<global step>[-round<R>].safetensors` and then hard-linked (temp
// link, then rename: atomic, no second copy of the bytes) to the stable name
// `<out_dir>/checkpoint.safetensors`, which always holds the newest. The newest
// `keep_checkpoints` step files stay; older ones are deleted. The checkpoint at the end of a
// C-SGD round's training (the unpruned net with its clusters, what `prune --input` merges) is
// also linked as `checkpoints/round<R>-end.safetensors` and never deleted. Resume tries the
// stable name first, then the history newest first, and falls back to the next one when a
// file does not verify (checksum, truncation, unreadable metadata).

import CSGDConfig
import CSGDCore
import CSGDModels
import Foundation

/// The checkpoint files of one out_dir: the stable latest name and the history folder.
public struct CheckpointHistory {
    /// The history folder inside an out_dir.
    public static let folderName = "checkpoints"
    /// The stable name of the newest checkpoint inside an out_dir.
    public static let latestName = "checkpoint.safetensors"

    /// The out_dir.
    public let outDir: String
    /// How many step checkpoints stay in the history folder (at least 1).
    public let keep: Int

    /// The history of `outDir`, keeping the newest `keep` step checkpoints.
    public init(outDir: String, keep: Int) {
        self.outDir = outDir
        self.keep = max(1, keep)
    }

    /// `<out_dir>/checkpoint.safetensors`.
    public var latestPath: String { outDir + "/" + Self.latestName }
    /// `<out_dir>/checkpoints`.
    public var folder: String { outDir + "/" + Self.folderName }

    /// One file of the history folder, ordered by (round, global step); a round's end sorts
    /// after every step file of that round.
    public struct Entry: Comparable, Sendable {
        /// The file name inside the history folder.
        public let name: String
        /// The 1-based round (1 for runs without rounds).
        public let round: Int
        /// Optimizer steps since the run started, over all rounds (`Int.max` for a round end).
        public let step: Int
        /// Whether this is a kept end-of-round file.
        public var isRoundEnd: Bool { step == Int.max }

        /// Orders by round, then step.
        public static func < (a: Entry, b: Entry) -> Bool {
            (a.round, a.step, a.name) < (b.round, b.step, b.name)
        }

        /// Parses `step-000000123.safetensors`, `step-000000123-round2.safetensors` or
        /// `round2-end.safetensors`; nil for any other name.
        public init?(name: String) {
            let suffix = ".safetensors"
            guard name.hasSuffix(suffix) else { return nil }
            let stem = name.dropLast(suffix.count)
            if stem.hasPrefix("round"), stem.hasSuffix("-end"),
                let r = Int(stem.dropFirst("round".count).dropLast("-end".count)), r >= 1
            {
                self.name = name
                round = r
                step = Int.max
                return
            }
            guard stem.hasPrefix("step-") else { return nil }
            let parts = stem.dropFirst("step-".count).split(
                separator: "-", omittingEmptySubsequences: false)
            guard let s = Int(parts[0]), s >= 0, parts.count <= 2 else { return nil }
            var r = 1
            if parts.count == 2 {
                guard parts[1].hasPrefix("round"), let v = Int(parts[1].dropFirst(5)), v >= 1
                else { return nil }
                r = v
            }
            self.name = name
            round = r
            step = s
        }
    }

    /// The history file name of a step checkpoint: the round appears only when `round` is set.
    public static func stepName(step: Int, round: Int?) -> String {
        let digits = String(step)
        let padded = String(repeating: "0", count: max(0, 9 - digits.count)) + digits
        return "step-" + padded + (round.map { "-round\($0)" } ?? "") + ".safetensors"
    }

    /// The kept file name of round `round`'s (1-based) last checkpoint.
    public static func roundEndName(round: Int) -> String { "round\(round)-end.safetensors" }

    /// The parsed files of the history folder, oldest first (none when it does not exist).
    public func entries() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap(Entry.init(name:)).sorted()
    }

    /// Writes a training checkpoint into the history, makes it the stable latest, links it as
    /// its round's end when asked, and deletes step files beyond the newest `keep`.
    /// - Parameters:
    ///   - step: optimizer steps since the run started, over all rounds.
    ///   - round: the 1-based round, for runs with rounds (nil otherwise).
    ///   - roundEnd: also keep it as `round<round>-end.safetensors`.
    ///   - write: writes the checkpoint atomically to the path it is given.
    /// - Throws: `CSGDError` naming the file that could not be written or linked.
    public func save(step: Int, round: Int?, roundEnd: Bool, write: (String) throws -> Void)
        throws
    {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/" + Self.stepName(step: step, round: round)
        try write(path)
        try Self.linkAtomically(path, to: latestPath)
        if roundEnd {
            try Self.linkAtomically(
                path, to: folder + "/" + Self.roundEndName(round: round ?? 1))
        }
        let steps = entries().filter { !$0.isRoundEnd }
        for old in steps.dropLast(keep) { unlink(folder + "/" + old.name) }
    }

    /// Makes `to` name the same file as `from`: a hard link under a temp name, renamed over `to`
    /// (so `to` is always a whole file). Falls back to a copy where hard links are refused.
    static func linkAtomically(_ from: String, to: String) throws {
        try checkReplaceable(to)
        let url = URL(fileURLWithPath: to)
        let tmp =
            url.deletingLastPathComponent().path + "/." + url.lastPathComponent
            + ".tmp-\(getpid())"
        unlink(tmp)
        if link(from, tmp) != 0 {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: from))
            } catch {
                throw CSGDError("cannot read \(from) to copy it to \(to): \(error)")
            }
            try writeFileAtomically(data, to: to)
            return
        }
        if rename(tmp, to) != 0 {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw CSGDError("cannot write \(to): \(why)")
        }
    }

    /// Files a resume may start from, in the order tried: the stable latest name (the newest,
    /// or whatever the user put there), then the history (step files and round ends) newest
    /// first; a file linked under several names appears once, under the first.
    public func resumeCandidates() -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        let paths = [latestPath] + entries().reversed().map { folder + "/" + $0.name }
        for p in paths {
            var st = stat()
            guard stat(p, &st) == 0 else { continue }
            let id = "\(st.st_dev):\(st.st_ino)"
            if seen.insert(id).inserted { out.append(p) }
        }
        return out
    }

    /// Whether the out_dir holds any checkpoint a resume could start from.
    public var hasCheckpoint: Bool { !resumeCandidates().isEmpty }

    /// Loads the newest checkpoint that verifies. A file that does not load (bad checksum,
    /// truncated, unreadable metadata or tensors) is reported through `warn` and the next
    /// older one is tried.
    /// - Returns: the checkpoint and its path.
    /// - Throws: `CSGDError` when there is no checkpoint, or none of them loads (the newest
    ///   file's error, with how many were tried).
    public func loadNewestValid(warn: (String) -> Void) throws -> (
        checkpoint: LoadedCheckpoint, path: String
    ) {
        let candidates = resumeCandidates()
        guard !candidates.isEmpty else {
            throw CSGDError(
                "cannot resume: \(latestPath) does not exist",
                hint: "start the run without --resume")
        }
        var firstError: CSGDError?
        for (i, path) in candidates.enumerated() {
            do {
                return (try Checkpoint.load(path: path), path)
            } catch let e as CSGDError {
                if firstError == nil { firstError = e }
                if i + 1 < candidates.count {
                    warn(
                        "warning: \(path) does not verify (\(e.message)); falling back to "
                            + candidates[i + 1])
                }
            }
        }
        let e = firstError!
        if candidates.count == 1 { throw e }
        throw CSGDError(
            e.message + " (and none of the \(candidates.count - 1) older checkpoint(s) in "
                + "\(folder) verifies either)", hint: e.hint)
    }
}
