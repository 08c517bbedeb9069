// What a run directory says about itself: the per-epoch and per-prune records of
// metrics.jsonl, the resolved config.yaml, the command line (command.txt), and the per-layer
// widths before and after pruning (from the prune records, or from the checkpoints of runs that
// predate those fields).

import CSGDCentripetal
import CSGDCore
import CSGDModels
import CSGDTraining
import Foundation

/// One epoch line of metrics.jsonl.
public struct EpochRecord: Sendable {
    /// "train", "csgd" or "finetune".
    public var phase: String
    /// 1-based C-SGD round (0 or 1 outside C-SGD).
    public var round: Int
    /// 1-based epoch within its phase.
    public var epoch: Int
    public var trainLoss: Double?, testLoss: Double?
    public var trainTop1: Double?, testTop1: Double?
    /// C-SGD's mean squared distance of clustered kernels / BN vectors to their cluster means.
    public var deviationKernels: Double?, deviationVectors: Double?
    public var lr: Double?, seconds: Double?
}

/// One prune line of metrics.jsonl: the equivalence check and the size change.
public struct PruneRecord: Sendable {
    /// A conv (or the FC) and its output width before → after.
    public struct Layer: Sendable, Equatable {
        public var name: String
        public var before: Int, after: Int
    }
    public var round: Int
    /// "csgd" or "magnitude".
    public var method: String
    public var maxLogitDiff: Double?
    public var top1Before: Double?, top1After: Double?
    public var paramsBefore: Int?, paramsAfter: Int?
    public var flopsBefore: Int?, flopsAfter: Int?
    /// Empty in runs written before per-layer widths were recorded.
    public var layers: [Layer]
}

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
            guard let data = line.data(using: .utf8),
                let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else {
                throw CSGDError("\(metricsPath):\(i + 1): not a JSON object")
            }
            try add(obj, at: "\(metricsPath):\(i + 1)")
        }
        if epochs.isEmpty && prunes.isEmpty {
            throw CSGDError("\(metricsPath): no epoch or prune records")
        }
        configYAML = try? String(contentsOfFile: directory + "/config.yaml", encoding: .utf8)
        command = (try? String(contentsOfFile: directory + "/command.txt", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        layers = try perLayerWidths()
    }

    private mutating func add(_ o: [String: Any], at place: String) throws {
        guard let phase = o["phase"] as? String else {
            throw CSGDError("\(place): record has no \"phase\"")
        }
        let num = { (k: String) in (o[k] as? NSNumber)?.doubleValue }
        let int = { (k: String) in (o[k] as? NSNumber)?.intValue }
        if phase == "prune" {
            let layers = (o["layers"] as? [[String: Any]] ?? []).compactMap {
                l -> PruneRecord.Layer? in
                guard let n = l["name"] as? String, let b = (l["before"] as? NSNumber)?.intValue,
                    let a = (l["after"] as? NSNumber)?.intValue
                else { return nil }
                return PruneRecord.Layer(name: n, before: b, after: a)
            }
            prunes.append(
                PruneRecord(
                    round: int("round") ?? 1, method: o["method"] as? String ?? "csgd",
                    maxLogitDiff: num("max_logit_diff"), top1Before: num("test_top1_before"),
                    top1After: num("test_top1_after"), paramsBefore: int("params_before"),
                    paramsAfter: int("params_after"), flopsBefore: int("flops_before"),
                    flopsAfter: int("flops_after"), layers: layers))
        } else {
            guard let epoch = int("epoch") else { throw CSGDError("\(place): record has no epoch") }
            epochs.append(
                EpochRecord(
                    phase: phase, round: int("round") ?? 0, epoch: epoch,
                    trainLoss: num("train_loss"), testLoss: num("test_loss"),
                    trainTop1: num("train_top1"), testTop1: num("test_top1"),
                    deviationKernels: num("deviation_kernels"),
                    deviationVectors: num("deviation_vectors"), lr: num("lr"),
                    seconds: num("seconds")))
        }
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
