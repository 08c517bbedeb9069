// What a run directory says about itself: the per-epoch and per-prune records of
// metrics.jsonl (decoded with the types the run log writes them with, CSGDTraining's
// `MetricsRecord`), the resolved config.yaml, the command line (command.txt), and the per-layer
// widths before and after pruning (from the prune records, or from the checkpoints of runs that
// predate those fields).
//
// The files are untrusted input, so every step is bounded: metrics.jsonl is at most
// `maxMetricsBytes` (checked before reading; a FIFO or device is refused), each line at most
// `maxLineBytes` (checked before decoding), at most `maxRecords` records, `maxLayers` layers per
// prune record. Values are checked per field before they reach chart geometry:
// - train/test top-1 and top-5, test top-1 before/after a prune: a finite value outside [0, 1]
//   is an error naming metrics.jsonl:line and the field (the run log writes fractions);
//   a non-finite one is a gap / "–".
// - seconds: outside [0, `maxEpochSeconds`] (or non-finite) is an error: the summary sums them
//   and converts to an integer.
// - flops_before, params_before ≤ 0 is an error (the size cut divides by them); a negative
//   flops_after, params_after or layer width is an error (counts cannot be negative).
// - losses and C-SGD deviations: non-finite or beyond ±`HTMLReport.maxDrawnMagnitude` (a
//   diverged run can log huge losses) are left out of the chart, with a note under the charts
//   saying how many and at which epochs; a negative deviation (a mean square) is an error.
// - lr, img_per_s, world_size, skipped_images, data_wait_seconds, max_logit_diff, epoch and
//   round are printed or not shown at all, never used as geometry, and are not checked.

import CSGDCentripetal
import CSGDCore
import CSGDModels
import CSGDRunFiles
import Foundation

/// Everything `csgd-dist report` shows about one run directory.
public struct RunRecords: Sendable {
    public var directory: String
    public var epochs: [EpochRecord] = []
    public var prunes: [PruneRecord] = []
    /// The resolved config.yaml, if present.
    public var configYAML: String?
    /// The command line recorded at start (command.txt), if present.
    public var command: String?
    /// Per-layer widths: the first prune's "before", the last prune's "after".
    public var layers: [PruneRecord.Layer] = []
    /// The budget allocation and its sensitivity table (allocation.json), if present.
    public var budget: BudgetRecord?

    /// Reads `directory`; throws a one-line error naming the file at fault.
    public init(directory: String) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir),
            isDir.boolValue
        else {
            throw CSGDError("\(directory): no such run directory")
        }
        let metricsPath = directory + "/metrics.jsonl"
        guard FileManager.default.fileExists(atPath: metricsPath) else {
            throw CSGDError(
                "\(metricsPath): cannot read (is \(directory) the out_dir of a train/csgd run?)")
        }
        // Bounded and non-blocking: a FIFO or device is refused, an over-large file is refused
        // before any of it is read.
        let bytes = try readWholeFile(metricsPath, limit: Self.maxMetricsBytes)
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            defer { start = end + 1 }
            let line = bytes[start..<end]
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            func bad(_ why: String) -> CSGDError {
                CSGDError("\(metricsPath):\(lineNumber): \(why)")
            }
            if line.count > Self.maxLineBytes {
                throw bad(
                    "a line of \(line.count) bytes, more than the \(Self.maxLineBytes) accepted")
            }
            if epochs.count + prunes.count >= Self.maxRecords {
                throw bad("more than the \(Self.maxRecords) records the report reads")
            }
            let record: MetricsRecord
            do {
                record = try MetricsRecord(jsonLine: String(decoding: line, as: UTF8.self))
            } catch let e as CSGDError {
                throw bad(e.message)
            }
            if let why = Self.outOfRange(record) { throw bad(why) }
            switch record {
            case .epoch(let r): epochs.append(r)
            case .prune(let r): prunes.append(r)
            }
        }
        if epochs.isEmpty && prunes.isEmpty {
            throw CSGDError("\(metricsPath): no epoch or prune records")
        }
        configYAML = try Self.readOptionalText(directory + "/config.yaml")
        command = try Self.readOptionalText(directory + "/command.txt")?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        layers = try perLayerWidths()
        budget = try BudgetRecord.read(directory: directory)
    }

    /// Largest metrics.jsonl read, in bytes: a 600-epoch run of 8 C-SGD rounds with prune
    /// records of ResNet-110's widths is well under 10 MiB.
    public static let maxMetricsBytes = 64 << 20
    /// Longest line of metrics.jsonl, in bytes, checked before the line is decoded: an epoch
    /// line is ~300 bytes, a prune line with 200 layers ~10 KiB.
    public static let maxLineBytes = 1 << 20
    /// Most records (epoch and prune lines together) read and drawn.
    public static let maxRecords = 100_000
    /// Most layers a prune record may list (a bar each in the widths chart).
    public static let maxLayers = 4096
    /// Largest config.yaml or command.txt shown, in bytes (as `RunConfig.maxYAMLBytes`).
    public static let maxTextBytes = 1 << 20
    /// Longest epoch the report accepts, in seconds (~32 years): the summary adds the
    /// epochs' seconds up and converts the sum to an integer.
    public static let maxEpochSeconds = 1e9

    /// Why `record` cannot be shown, or nil. Per field (see the file comment): fractions
    /// outside [0, 1], negative deviations, seconds, sizes and widths out of range are errors;
    /// non-finite or huge losses and deviations are left to the charts (drawn as gaps).
    static func outOfRange(_ record: MetricsRecord) -> String? {
        func fraction(_ v: Double?, _ key: String) -> String? {
            guard let v, v.isFinite, !(0...1).contains(v) else { return nil }
            return "\"\(key)\" is \(v), outside [0, 1]"
        }
        switch record {
        case .epoch(let r):
            if let why = fraction(r.trainTop1, "train_top1") ?? fraction(r.testTop1, "test_top1")
                ?? fraction(r.testTop5, "test_top5")
            {
                return why
            }
            if let s = r.seconds, !(s >= 0 && s <= maxEpochSeconds) {
                return "\"seconds\" is \(s), outside [0, \(maxEpochSeconds)]"
            }
            for (v, key) in [
                (r.deviationKernels, "deviation_kernels"),
                (r.deviationVectors, "deviation_vectors"),
            ] {
                if let v, v < 0 { return "\"\(key)\" is \(v), a mean square below 0" }
            }
        case .prune(let p):
            if let why = fraction(p.testTop1Before, "test_top1_before")
                ?? fraction(p.testTop1After, "test_top1_after")
            {
                return why
            }
            for (v, key) in [(p.flopsBefore, "flops_before"), (p.paramsBefore, "params_before")] {
                if let v, v <= 0 { return "\"\(key)\" is \(v), not a positive count" }
            }
            for (v, key) in [(p.flopsAfter, "flops_after"), (p.paramsAfter, "params_after")] {
                if let v, v < 0 { return "\"\(key)\" is \(v), a negative count" }
            }
            if p.layers.count > maxLayers {
                return "\(p.layers.count) layers, more than the \(maxLayers) the report draws"
            }
            for (i, l) in p.layers.enumerated() where l.before < 0 || l.after < 0 {
                return "\"layers.\(i)\" (\(l.name)) has a negative width \(min(l.before, l.after))"
            }
        }
        return nil
    }

    /// The text of `path`, nil if there is no such file; at most `maxTextBytes`, and a FIFO or
    /// device is refused rather than waited on.
    /// - Throws: a one-line `CSGDError` naming `path`.
    static func readOptionalText(_ path: String) throws -> String? {
        var st = stat()
        if lstat(path, &st) != 0 { return nil }
        return String(decoding: try readWholeFile(path, limit: maxTextBytes), as: UTF8.self)
    }

    /// Widths from the prune records; for older runs, from the unpruned training checkpoint and
    /// the pruned model beside it.
    private func perLayerWidths() throws -> [PruneRecord.Layer] {
        if let first = prunes.first, let last = prunes.last, !first.layers.isEmpty,
            first.layers.count == last.layers.count
        {
            return zip(first.layers, last.layers).map {
                PruneRecord.Layer(name: $0.name, before: $0.before, after: $1.after)
            }
        }
        let fm = FileManager.default
        let before = ["checkpoint.safetensors", "model.safetensors"].map { directory + "/" + $0 }
            .first { fm.fileExists(atPath: $0) }
        let after = directory + "/pruned.safetensors"
        guard !prunes.isEmpty, let before, fm.fileExists(atPath: after) else { return [] }
        let a = try Checkpoint.load(path: before).network.graph
        let b = try Checkpoint.load(path: after).network.graph
        guard a.layers.count == b.layers.count else { return [] }
        return PruneReport(before: a, after: b).rows.map {
            PruneRecord.Layer(name: $0.name, before: $0.widthBefore, after: $0.widthAfter)
        }
    }
}
