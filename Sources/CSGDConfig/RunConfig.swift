// The experiment configuration: every knob of a run in one Equatable value, loaded from a YAML
// file, overridden from the command line (any key), validated, and serialised back to YAML so a
// checkpoint carries the exact configuration that produced it.
//
// All behaviour is driven by the key table in RunConfigKeys.swift (name, type, default, doc,
// rule): YAML parsing, `--key value` overrides, validation messages, `describeKeys()` and
// `yaml()`. Adding a key means adding a stored property here and one entry there.

import CSGDCentripetal
import CSGDCore
import CSGDData
import CSGDModels
import Foundation
import Yams

/// Everything that defines a training / C-SGD run. Defaults are the quick-start job: a short
/// Fashion-MNIST ResNet-20 C-SGD run (10k training images, 6 epochs) that fits a 2-core machine
/// in a few minutes; see `RunConfig.describeKeys()` for every key.
///
/// YAML keys and flags are the snake_case (or kebab-case) forms of the property names, e.g.
/// `batch_size:` / `--batch-size` for `batchSize`.
public struct RunConfig: Equatable {
    // Model and data.
    /// Network: resnet20/32/44/56/110 (CIFAR-style) or resnet18/34/50 (ImageNet-style).
    public var model = "resnet20"
    /// Multiplies every layer width (1 = the standard network).
    public var widthMultiplier = 1.0
    /// Dataset: Fashion-MNIST, CIFAR-10/100 or JPEG class folders (e.g. ImageNet, under
    /// `dataDir`/train and `dataDir`/val, plain or packed).
    public var dataset = DatasetKind.fashionMNIST
    /// Folder with the dataset files; "" means the dataset's default location.
    public var dataDir = ""
    /// Use only the first N training images (0 = all); for imagefolder, N images spread evenly
    /// over the sorted samples so every class keeps its share.
    public var trainLimit = 10_000
    /// Use only the first N test images (0 = all); imagefolder spreads them as `trainLimit`.
    public var testLimit = 0
    /// Random crop / flip augmentation of training images.
    public var augment = true
    /// imagefolder: side of the square crop fed to the net (224 for ImageNet); eval resizes the
    /// shorter side to round(size · 256/224) first.
    public var imageSize = 224
    /// imagefolder: JPEG decode threads per rank.
    public var loaderWorkers = 2
    /// imagefolder: batches decoded ahead of the one being trained on.
    public var prefetchBatches = 2
    /// imagefolder: fail on an unreadable image (naming it) or skip it (replaced by the next
    /// readable image, counted in the log).
    public var badImages = BadImagePolicy.fail
    /// imagefolder: largest image decoded, in pixels (header width × height); a larger one is a
    /// bad image (see `badImages`). The default is PIL's decompression-bomb limit
    /// (`JPEGCodec.defaultMaxPixels`).
    public var maxImagePixels = JPEGCodec.defaultMaxPixels

    // Optimisation.
    /// Training epochs (per C-SGD round).
    public var epochs = 6
    /// Stop after this many optimizer steps in total (0 = run all epochs); for tests and smoke runs.
    public var maxSteps = 0
    /// Global batch size, summed over ranks and micro-batches.
    public var batchSize = 64
    /// Each rank's batch is split into this many micro-batches (each its own BN batch, as a
    /// rank's share is); with `threads` > 1 they run `threads` at a time on network replicas,
    /// bitwise the same as in sequence (docs/scaling.md), else in sequence (accumulation).
    public var microBatches = 1
    /// Base learning rate.
    public var lr = 0.05
    /// SGD momentum.
    public var momentum = 0.9
    /// Nesterov momentum.
    public var nesterov = true
    /// Weight decay of kernels and FC weights (non-clustered tensors).
    public var weightDecay = 1e-4
    /// Learning-rate multiplier of bias-like tensors (conv/FC bias, BN shift).
    public var biasLrFactor = 2.0
    /// Weight decay of bias-like tensors.
    public var biasWeightDecay = 0.0
    /// Learning-rate schedule.
    public var lrSchedule = LRScheduleKind.cosine
    /// Epochs at which the multistep schedule multiplies the LR by `lrGamma`.
    public var milestones: [Int] = []
    /// Multistep decay factor.
    public var lrGamma = 0.1
    /// Linear warmup from 0, in epochs (fractions allowed).
    public var warmupEpochs = 0.0
    /// Seed of every random stream (init, shuffling, augmentation, k-means).
    public var seed: UInt64 = 1
    /// Threads per rank. With `micro_batches` > 1 they run micro-batches in parallel (one
    /// single-threaded replica each: as fast as that many ranks); otherwise they split OpenBLAS's
    /// GEMMs and our own kernels (BatchNorm, ReLU, add, im2col/col2im, pooling), which scales
    /// poorly; 0 = leave the OpenBLAS default and run our kernels on one thread.
    public var threads = 1

    // Evaluation, checkpoints, logging.
    /// Evaluate on the test set every N epochs.
    public var evalEvery = 1
    /// Write a checkpoint every N epochs.
    public var checkpointEvery = 1
    /// Also write a checkpoint every N steps (0 = off).
    public var checkpointEverySteps = 0
    /// Step checkpoints kept in `<out_dir>/checkpoints/` (the newest k; end-of-round ones are
    /// always kept); `checkpoint.safetensors` is the newest.
    public var keepCheckpoints = 3
    /// Log training loss every N steps.
    public var logEvery = 50
    /// Output folder for logs, checkpoints and the resolved config.
    public var outDir = "runs/quickstart"

    // Centripetal SGD.
    /// Centripetal strength ε on kernels. The per-step pull is about lr·ε/(1 − momentum), so
    /// short runs need a larger ε than the paper's 3e-3 (tuned for 600 epochs); 0.3 collapses
    /// clusters within the default 6 epochs.
    public var centripetalStrength = 0.3
    /// Weight decay η of clustered kernels (carried by the decay matrix D).
    public var csgdWeightDecay = 1e-4
    /// ε for per-channel vectors (bias, BN) = `vectorStrengthFactor` × `centripetalStrength`.
    public var vectorStrengthFactor = 0.1
    /// Target width of each C-SGD round as a fraction of the original width ("a/b" or decimal,
    /// optionally `internal:<ratio>`).
    public var rounds: [RoundTarget] = [.ratio(WidthRatio("5/8")!)]
    /// How filters are clustered.
    public var clusterMethod = ClusterMethod.kmeans
    /// Train this many times wider, then squeeze back with C-SGD (1 = off).
    public var widen = 1
    /// Largest |logit difference| the pruned-vs-unpruned equivalence check accepts.
    public var pruneTolerance = 1e-3
    /// Epochs of finetuning after magnitude pruning (the baseline C-SGD is compared with).
    public var finetuneEpochs = 0

    // Budgets and per-layer control (docs/budget.md).
    /// FLOPs budget: a fraction kept (`0.4`, `40%`) or an absolute value (`16M`, `1.2G`); the
    /// widths come from measured sensitivity; "" = off. A csgd run then has one round.
    public var targetFlops = ""
    /// Parameter budget, spelled as `targetFlops`; "" = off.
    public var targetParams = ""
    /// Explicit widths: `pattern=width` entries (`layer1.0.conv1=8`, `layer3.*.conv1=40`).
    public var layerWidths: [String] = []
    /// Convs (names or globs) whose channel groups are not pruned.
    public var exclude: [String] = []
    /// No group is pruned below this many channels.
    public var minWidth = 1
    /// Training images (un-augmented) the sensitivity of a budget is measured on.
    public var sensitivityImages = 512
    /// Sensitivity grid: widths 1/steps … (steps−1)/steps of each group are measured.
    public var sensitivitySteps = 8
    /// Budget sensitivity: each group merged `alone`, alone with BN statistics recomputed
    /// after the merge (`recalibrated`), or with the others at the `uniform` widths of the
    /// same budget (BN recalibrated too).
    public var sensitivityContext = SensitivityContext.alone
    /// How a prune merges clusters: `exact` (they must already be identical) or `mean`
    /// (cluster means, for a round that has not fully converged).
    public var merge = MergeMode.exact
    /// After a `mean` merge, recompute BN running statistics over this many training batches
    /// (0 = keep the averaged ones).
    public var recalibrateBatches = 0
    /// At each C-SGD round's end, before collapsed clusters' statistics are merged, recompute
    /// every BN's running statistics over this many training batches of `batch_size`
    /// (un-augmented, the same images on every rank) with the round's final weights; 0 keeps
    /// the running averages. A short round on small batches leaves averages of batch
    /// statistics taken under moving weights, and the eval-mode net then sees statistics its
    /// weights never produced.
    public var roundEndBnBatches = 0

    // Distributed.
    /// Who applies the update: rank 0 (then broadcasts the weights) or every rank.
    public var update = UpdateMode.rank0
    /// Gradient allreduce: overlapped with backward in buckets, or one blocking allreduce after
    /// backward. Steps with `microBatches` > 1 always block. Blocking by default: on shared
    /// memory overlap measured no faster (docs/performance.md).
    public var allreduce = AllreduceMode.blocking
    /// Target bucket size of the overlapped allreduce, in MiB.
    public var bucketMb = 1.0
    /// BatchNorm groups (SyncBN): training-mode BatchNorm pools its batch statistics over
    /// groups of this many consecutive ranks, so each BN sees `bnGroupSize` × the per-rank
    /// micro-batch. 1 (the default) keeps per-rank statistics and communicates nothing extra.
    /// Must divide the number of ranks.
    public var bnGroupSize = 1
    /// Verify replica checksums every N steps.
    public var verifyEvery = 100
    /// Seconds any collective may wait for the other ranks before the waiting rank names it
    /// (and the step) and aborts the job: a stuck or dead rank ends the job instead of hanging
    /// it. Above the longest rank-0-only work (clustering, checkpoint writes).
    public var collectiveTimeoutS = 300.0
    /// Extra checks and logging.
    public var debug = false

    /// The defaults.
    public init() {}

    /// The C-SGD rounds this config runs: `rounds`, or one squeeze back to the original widths
    /// when `widen` > 1.
    public var effectiveRounds: [RoundTarget] {
        widen > 1 ? [.widenSqueeze] : budget != nil ? [.budget] : rounds
    }

    /// The FLOPs or parameter budget, if one is set (validated by `validate()`).
    public var budget: BudgetTarget? {
        if !targetFlops.isEmpty {
            return try? BudgetTarget(parsing: targetFlops, metric: .flops, key: "target_flops")
        }
        if !targetParams.isEmpty {
            return try? BudgetTarget(parsing: targetParams, metric: .params, key: "target_params")
        }
        return nil
    }

    /// `layer_widths`, `exclude` and `min_width`.
    public var layerControls: LayerControls {
        LayerControls(widths: layerWidths, exclude: exclude, minWidth: minWidth)
    }

    // MARK: - Loading

    /// Reads a YAML config file on top of the defaults.
    /// - Throws: `CSGDError` naming the file for a missing file, bad YAML, an unknown key or a
    ///   value of the wrong type. Does not `validate()`; overrides may still follow.
    public static func load(yamlPath: String) throws -> RunConfig {
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(yamlPath, limit: maxYAMLBytes)
        } catch let e as CSGDError {
            let exists = FileManager.default.fileExists(atPath: yamlPath)
            throw CSGDError(
                exists
                    ? "cannot read config " + e.message.dropFirst("cannot read ".count)
                    : "cannot read config \(yamlPath): no such file")
        }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw CSGDError("cannot read config \(yamlPath): not UTF-8 text")
        }
        return try load(yamlText: text, source: yamlPath)
    }

    /// Parses YAML text on top of the defaults; `source` names it in error messages.
    public static func load(yamlText: String, source: String) throws -> RunConfig {
        var config = RunConfig()
        try config.apply(yamlText: yamlText, source: source)
        return config
    }

    /// Applies the keys present in YAML text (a mapping of `key: value`) to this config.
    /// Unknown keys, duplicate keys and values of the wrong type are errors; on error the
    /// config is unchanged.
    public mutating func apply(yamlText: String, source: String) throws {
        try checkShape(yamlText, source: source)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yamlText)
        } catch let error as YamlError {
            throw CSGDError(describe(error, source: source))
        }
        guard let root else { return }
        guard case .mapping(let mapping) = root else {
            throw CSGDError("\(source): expected a mapping of `key: value` lines at the top level")
        }
        var copy = self
        var seen: Set<String> = []
        for (keyNode, valueNode) in mapping {
            let origin = keyNode.mark.map { "\(source):\($0.line)" } ?? source
            guard case .scalar(let keyScalar) = keyNode else {
                throw CSGDError("\(origin): config keys must be plain names")
            }
            let key = try ConfigKey.lookup(keyScalar.string, source: origin)
            if !seen.insert(key.name).inserted {
                throw CSGDError("config key '\(key.name)' is given twice (from \(origin))")
            }
            let raw: ConfigKey.RawValue
            switch valueNode {
            case .scalar(let s):
                let isNull =
                    s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
                raw = .scalar(isNull ? "" : s.string)
            case .sequence(let seq):
                var items: [String] = []
                for item in seq {
                    guard case .scalar(let s) = item else {
                        throw key.typeError("a nested value", source: origin)
                    }
                    items.append(s.string)
                }
                raw = .list(items)
            case .mapping:
                throw key.typeError("a mapping", source: origin)
            }
            try key.assign(&copy, raw, source: origin)
        }
        self = copy
    }

    /// Applies command-line words: `--key value`, `--key=value`, `--flag` / `--no-flag` for
    /// booleans (`--flag false` also works), keys in kebab-case or snake_case, lists
    /// comma-separated (`--milestones 2,3`, `--rounds 13/16,11/16`, `--milestones=` for empty).
    /// On error the config is unchanged.
    /// - Throws: `CSGDError` for an unknown key, a missing value, a stray word or a bad value.
    public mutating func apply(overrides words: [String], source: String = "command line")
        throws
    {
        var copy = self
        var i = 0
        while i < words.count {
            let word = words[i]
            i += 1
            guard word.hasPrefix("--"), word.count > 2 else {
                throw CSGDError(
                    "unexpected argument '\(word)' (from \(source)); overrides are --key value")
            }
            var flag = String(word.dropFirst(2))
            var value: String?
            if let eq = flag.firstIndex(of: "=") {
                value = String(flag[flag.index(after: eq)...])
                flag = String(flag[..<eq])
            }
            let normalized = ConfigKey.normalize(flag)
            if ConfigKey.named(normalized) == nil, normalized.hasPrefix("no_"),
                let key = ConfigKey.named(String(normalized.dropFirst(3))), key.isBool
            {
                if value != nil {
                    throw CSGDError("--\(flag) takes no value (from \(source))")
                }
                try key.assign(&copy, .scalar("false"), source: source)
                continue
            }
            let key = try ConfigKey.lookup(flag, source: source)
            if value == nil, key.isBool {
                if i < words.count, ConfigKey.parseBool(words[i]) != nil {
                    value = words[i]
                    i += 1
                } else {
                    value = "true"
                }
            }
            if value == nil {
                guard i < words.count, !words[i].hasPrefix("--") else {
                    throw CSGDError("--\(flag) needs a value (from \(source))")
                }
                value = words[i]
                i += 1
            }
            try key.assign(&copy, .scalar(value!), source: source)
        }
        self = copy
    }

    /// Largest config file read, in bytes (a config is a few dozen lines).
    public static let maxYAMLBytes = 1 << 20

    /// Refuses text whose nesting could only be an attack or an accident before the YAML parser
    /// sees it: the parser recurses per level, and a config is a flat mapping of scalars and
    /// short lists, so deep brackets or indentation would only overflow its stack.
    private func checkShape(_ text: String, source: String) throws {
        if text.utf8.count > RunConfig.maxYAMLBytes {
            throw CSGDError("\(source): \(text.utf8.count) bytes; a config is at most 1 MiB")
        }
        var depth = 0
        var line = 1
        var indent = 0
        var atLineStart = true
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            case UInt8(ascii: "\n"):
                line += 1
                indent = 0
                atLineStart = true
                continue
            case UInt8(ascii: " ") where atLineStart: indent += 1
            default: break
            }
            if c != UInt8(ascii: " ") { atLineStart = false }
            if depth > 8 || indent > 64 {
                throw CSGDError(
                    "\(source):\(line): nested too deeply for a config (flat `key: value` lines "
                        + "with scalars or short lists)")
            }
        }
    }

    /// Sets one key from its text form (as on the command line; lists comma-separated).
    public mutating func set(_ key: String, to value: String, source: String = "command line")
        throws
    {
        try ConfigKey.lookup(key, source: source).assign(&self, .scalar(value), source: source)
    }

    /// The YAML text of one key's current value, or nil for an unknown key.
    public func value(of key: String) -> String? {
        ConfigKey.named(ConfigKey.normalize(key))?.render(self)
    }

    // MARK: - Validation

    /// Checks every key's rule and the cross-key constraints.
    /// - Parameter worldSize: number of MPI ranks, or nil when not known yet (then the checks
    ///   that need it assume one rank, except `bn_group_size`, which is checked only when
    ///   known); the global batch must split evenly into `worldSize × microBatches`
    ///   micro-batches, and `bn_group_size` must divide `worldSize`.
    /// - Throws: a one-line `CSGDError` naming the first offending key and its value.
    public func validate(worldSize: Int? = nil) throws {
        for key in ConfigKey.all {
            if let problem = key.check(self) { throw CSGDError(problem) }
        }
        let ranks = max(worldSize ?? 1, 1)
        let parts = microBatches * ranks
        if batchSize % parts != 0 {
            let by =
                ranks > 1
                ? "micro_batches × ranks (\(microBatches) × \(ranks) = \(parts))"
                : "micro_batches (\(microBatches))"
            throw CSGDError("config key 'batch_size' (\(batchSize)) must be divisible by \(by)")
        }
        if !targetFlops.isEmpty {
            _ = try BudgetTarget(parsing: targetFlops, metric: .flops, key: "target_flops")
        }
        if !targetParams.isEmpty {
            _ = try BudgetTarget(parsing: targetParams, metric: .params, key: "target_params")
        }
        if !targetFlops.isEmpty && !targetParams.isEmpty {
            throw CSGDError("config keys 'target_flops' and 'target_params': set one, not both")
        }
        for entry in layerWidths where LayerControls.parseWidth(entry) == nil {
            throw CSGDError(
                "config key 'layer_widths': '\(entry)' is not pattern=width (e.g. layer1.0.conv1=8)"
            )
        }
        if widen > 1 && (budget != nil || !layerControls.isEmpty) {
            throw CSGDError(
                "config key 'widen' squeezes back to the original widths: it cannot be combined "
                    + "with target_flops/target_params, layer_widths, exclude or min_width")
        }
        if let worldSize, worldSize % bnGroupSize != 0 {
            throw CSGDError(
                "config key 'bn_group_size' (\(bnGroupSize)) must divide the number of ranks "
                    + "(\(worldSize))")
        }
        if nesterov && momentum == 0 {
            throw CSGDError(
                "config key 'nesterov' requires momentum > 0 (got momentum 0)",
                hint: "set --momentum 0.9 or --no-nesterov")
        }
    }

    // MARK: - Serialisation and docs

    /// The full resolved configuration as YAML, every key included, in table order; loading it
    /// back gives an equal config: `RunConfig.load(yamlText: c.yaml(), source: …) == c`.
    public func yaml() -> String {
        var out = "# csgd-dist run configuration: every key, fully resolved.\n"
        for section in ConfigKey.sections {
            out += "\n# \(section.title)\n"
            for key in section.keys { out += "\(key.name): \(key.render(self))\n" }
        }
        return out
    }

    /// A table of every key: name, type, default and one-line description, grouped by section.
    public static func describeKeys() -> String {
        let defaults = RunConfig()
        let rows = ConfigKey.all.map { ($0.name, $0.type, $0.render(defaults)) }
        let w0 = rows.map(\.0.count).max()! + 2
        let w1 = rows.map(\.1.count).max()! + 2
        let w2 = min(rows.map(\.2.count).max()!, 14) + 2
        func pad(_ s: String, _ w: Int) -> String {
            s + String(repeating: " ", count: max(w - s.count, 1))
        }
        var out = "Config keys (YAML `key: value`, or `--key value` / `--key=value` on the "
        out += "command line;\nkebab-case works too; booleans also `--flag` / `--no-flag`; "
        out += "lists comma-separated).\n"
        for section in ConfigKey.sections {
            out += "\n\(section.title):\n"
            for key in section.keys {
                out += "  " + pad(key.name, w0) + pad(key.type, w1)
                out += pad(key.render(defaults), w2) + key.doc + "\n"
            }
        }
        return out
    }
}

/// A Yams error as one line, `<source>:<line>:<column>: invalid YAML: <problem>` (Yams' own
/// description spans several lines and quotes the source).
private func describe(_ error: YamlError, source: String) -> String {
    switch error {
    case .scanner(let context, let problem, let mark, _),
        .parser(let context, let problem, let mark, _),
        .composer(let context, let problem, let mark, _):
        let during = context.map { " (\($0.text))" } ?? ""
        return "\(source):\(mark.line):\(mark.column): invalid YAML: \(problem)\(during)"
    default:
        let text = error.description.split(separator: "\n").first.map(String.init) ?? ""
        return "\(source): invalid YAML: \(text)"
    }
}
