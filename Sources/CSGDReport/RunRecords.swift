// What a run directory says about itself: the per-epoch and per-prune records of
// metrics.jsonl (decoded with the types the run log writes them with, CSGDTraining's
// `MetricsRecord`), the resolved config.yaml, the command line (command.txt), and the per-layer
// widths before and after pruning (from the prune records, or from the checkpoints of runs that
// predate those fields).

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
        guard let text = try? String(contentsOfFile: metricsPath, encoding: .utf8) else {
            throw CSGDError(
                "\(metricsPath): cannot read (is \(directory) the out_dir of a train/csgd run?)")
        }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let record: MetricsRecord
            do {
                record = try MetricsRecord(jsonLine: line)
            } catch let e as CSGDError {
                throw CSGDError("\(metricsPath):\(i + 1): \(e.message)")
            }
            switch record {
            case .epoch(let r): epochs.append(r)
            case .prune(let r): prunes.append(r)
            }
        }
        if epochs.isEmpty && prunes.isEmpty {
            throw CSGDError("\(metricsPath): no epoch or prune records")
        }
        configYAML = try? String(contentsOfFile: directory + "/config.yaml", encoding: .utf8)
        command = (try? String(contentsOfFile: directory + "/command.txt", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        layers = try perLayerWidths()
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
