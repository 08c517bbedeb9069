// The modes of a run as enums: each is parsed once, where a config key or flag is read (a wrong
// value is an error naming the key and listing the allowed values), and switched on
// exhaustively everywhere after that, so no mode travels as a string. The raw values are the
// spellings of the YAML files, flags, checkpoints and metrics.jsonl.

import CSGDCore
import Foundation

/// Who applies the optimizer update in a data-parallel step.
public enum UpdateMode: String, CaseIterable, Codable, Sendable {
    /// Rank 0 applies the C-SGD transform and SGD, then broadcasts the weights.
    case rank0
    /// Every rank applies the identical update (as the official C-SGD code does).
    case replicated
}

/// How the summed gradients cross the ranks.
public enum AllreduceMode: String, CaseIterable, Codable, Sendable {
    /// In buckets, started during backward as soon as their gradients are final.
    case overlap
    /// One allreduce of the whole gradient block after backward.
    case blocking
}

/// The learning-rate schedule (iteration-based, warmup applied on top).
public enum LRScheduleKind: String, CaseIterable, Codable, Sendable {
    /// Half a cosine from the base LR to 0 over the phase.
    case cosine
    /// The base LR times `lr_gamma` per milestone passed.
    case multistep
    /// The base LR throughout.
    case constant
}

/// The dataset a run trains and tests on.
public enum DatasetKind: String, CaseIterable, Codable, Sendable {
    /// Fashion-MNIST (the Debian package's gzip IDX files by default).
    case fashionMNIST = "fashion-mnist"
    /// CIFAR-10 binary batches (needs `data_dir`).
    case cifar10
    /// CIFAR-100 binary batches (needs `data_dir`).
    case cifar100
    /// JPEG class folders, plain or packed (e.g. ImageNet; needs `data_dir`).
    case imagefolder
}

/// What a training loop is doing; recorded in checkpoints and metrics.
public enum TrainPhase: String, CaseIterable, Codable, Sendable {
    /// Ordinary SGD training.
    case train
    /// A C-SGD round (clusters pulled together).
    case csgd
    /// Training after a magnitude prune (the baseline).
    case finetune
}

/// How `csgd-dist prune` chooses what to remove.
public enum PruneMethod: String, CaseIterable, Codable, Sendable {
    /// Merge the clusters of a C-SGD checkpoint (exact; checked against the unpruned net).
    case csgd
    /// Keep the filters of largest L1 norm (the baseline C-SGD is compared with).
    case magnitude
}

extension CaseIterable where Self: RawRepresentable, RawValue == String {
    /// The allowed spellings, in declaration order: "a | b | c".
    public static var spellings: String { allCases.map(\.rawValue).joined(separator: " | ") }

    /// Parses `text` (surrounding spaces ignored) or throws one line naming `what` and listing
    /// the allowed values.
    public static func parse(_ text: String, for what: String) throws -> Self {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let v = Self(rawValue: t) { return v }
        throw CSGDError(
            "\(what) must be one of \(allCases.map(\.rawValue).joined(separator: ", ")), got '\(t)'"
        )
    }
}

/// A width ratio as the user wrote it ("5/8" or "0.625") with its value.
public struct WidthRatio: Equatable, Sendable {
    /// The fraction of the original width, in (0, 1].
    public let value: Double
    /// The spelling it was parsed from, kept so a resolved config reads back unchanged.
    public let text: String

    /// Parses "a/b" (e.g. "13/16") or a decimal ("0.7"); nil if malformed or not in (0, 1].
    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        let v: Double
        if parts.count == 2 {
            guard let a = Int(parts[0]), let b = Int(parts[1]), b != 0 else { return nil }
            v = Double(a) / Double(b)
        } else {
            guard let d = Double(t) else { return nil }
            v = d
        }
        guard v.isFinite, v > 0, v <= 1 else { return nil }
        value = v
        self.text = t
    }
}

/// The target of one C-SGD round, relative to the original widths.
public enum RoundTarget: Equatable, Sendable, CustomStringConvertible {
    /// Every clustered conv to ⌈ratio × original width⌉.
    case ratio(WidthRatio)
    /// Only block-internal convs shrink (the paper's ResNet-50 setting): `internal:<ratio>`.
    case internalOnly(WidthRatio)
    /// Back to the original widths after training `widen`× wider; not written in configs,
    /// the `widen` key makes it.
    case widenSqueeze
    /// The widths a FLOPs/parameter budget allocates (`target_flops`, `target_params`); not
    /// written in configs, those keys make it.
    case budget

    /// Parses a `rounds` entry: "5/8", "0.625" or "internal:0.7"; nil if malformed.
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("internal:") {
            guard let r = WidthRatio(String(t.dropFirst("internal:".count))) else { return nil }
            self = .internalOnly(r)
        } else {
            guard let r = WidthRatio(t) else { return nil }
            self = .ratio(r)
        }
    }

    /// The config spelling ("widen-squeeze" for the widen round, which has none).
    public var description: String {
        switch self {
        case .ratio(let r): return r.text
        case .internalOnly(let r): return "internal:" + r.text
        case .widenSqueeze: return "widen-squeeze"
        case .budget: return "budget"
        }
    }
}
