// The table of configuration keys behind `RunConfig`: one entry per key with its name, type,
// rule and one-line doc, bound to the stored property through a key path. YAML loading,
// command-line overrides, validation, `yaml()` and `describeKeys()` all read this table, so
// adding a key is one entry here plus the stored property in RunConfig.swift.

import CSGDCentripetal
import CSGDCore
import CSGDData
import CSGDModels
import Foundation

/// One configuration key: its snake_case name, type, one-line doc, and how to parse, render and
/// check its value on a `RunConfig`. The table is `ConfigKey.all`.
public struct ConfigKey {
    /// A value as written in YAML or on the command line, before typing.
    enum RawValue {
        case scalar(String)
        case list([String])
    }

    /// Thrown by a parser: `got` describes the offending input, e.g. `'abc'` or `a list`.
    struct BadValue: Error {
        let got: String
    }

    /// The YAML key, snake_case (`--kebab-case` also accepted on the command line).
    public let name: String
    /// Type shown in `describeKeys()`: int, uint64, float, bool, string, enum, [int], [ratio].
    public let type: String
    /// One-line description.
    public let doc: String
    /// Whether the key is a boolean (so `--flag` and `--no-flag` apply).
    public let isBool: Bool
    /// "an integer", "true or false", … for type errors.
    let expects: String
    let parseInto: (inout RunConfig, RawValue) throws -> Void
    /// The value's YAML text on a config.
    let render: (RunConfig) -> String
    /// The rule's violation message on a config, or nil if the value is fine.
    let check: (RunConfig) -> String?

    /// Parses `raw` into the config, turning a bad value into a one-line `CSGDError`.
    func assign(_ config: inout RunConfig, _ raw: RawValue, source: String) throws {
        do {
            try parseInto(&config, raw)
        } catch let bad as BadValue {
            throw typeError(bad.got, source: source)
        }
    }

    /// "config key 'x' expects …, got … (from source)".
    func typeError(_ got: String, source: String) -> CSGDError {
        CSGDError("config key '\(name)' expects \(expects), got \(got) (from \(source))")
    }
}

// MARK: - The table

extension ConfigKey {
    /// Every key, grouped into sections; this order is the order of `yaml()` and `--help`.
    public static let sections: [(title: String, keys: [ConfigKey])] = [
        (
            "model and data",
            [
                .string(
                    "model", \.model, .modelName,
                    "network: " + ModelZoo.names.joined(separator: " | ")
                        + ", or an imported model's name (with --from)"),
                .double(
                    "width_multiplier", \.widthMultiplier, .inRange(0, 64, lowOpen: true),
                    "scales every width"),
                .choice("dataset", \.dataset, "training / test data"),
                .string("data_dir", \.dataDir, nil, "dataset folder; \"\" = the default place"),
                .int(
                    "train_limit", \.trainLimit, .within(0...Limit.images),
                    "first N train images; 0 = all"),
                .int(
                    "test_limit", \.testLimit, .within(0...Limit.images),
                    "first N test images; 0 = all"),
                .bool("augment", \.augment, "random crop + horizontal flip of train images"),
                .int(
                    "image_size", \.imageSize, .within(8...2048),
                    "imagefolder: crop side (eval ×256/224)"
                ),
                .int(
                    "loader_workers", \.loaderWorkers, .within(1...256),
                    "imagefolder: decode threads"),
                .int(
                    "prefetch_batches", \.prefetchBatches, .within(1...1024),
                    "imagefolder: batches decoded ahead"),
                .choice("bad_images", \.badImages, "imagefolder: unreadable image"),
                .int(
                    "max_image_pixels", \.maxImagePixels, .within(1...1 << 32),
                    "imagefolder: larger images (w × h) are bad images"),
            ]
        ),
        (
            "optimisation",
            [
                .int(
                    "epochs", \.epochs, .within(1...Limit.epochs),
                    "epochs of training (per C-SGD round)"),
                .int(
                    "max_steps", \.maxSteps, .within(0...Limit.steps),
                    "stop after N steps; 0 = all epochs"),
                .int(
                    "batch_size", \.batchSize, .within(1...1 << 20), "GLOBAL batch, over all ranks"),
                .int(
                    "micro_batches", \.microBatches, .within(1...1 << 20),
                    "micro-batches per rank step (run `threads` at a time)"),
                .double("lr", \.lr, .positive(atMost: 1e6), "base learning rate"),
                .double("momentum", \.momentum, .fraction, "SGD momentum"),
                .bool("nesterov", \.nesterov, "Nesterov momentum"),
                .double(
                    "weight_decay", \.weightDecay, .nonNegative(atMost: 10), "decay of kernels, FC"),
                .double(
                    "bias_lr_factor", \.biasLrFactor, .nonNegative(atMost: 1e3),
                    "LR multiplier, biases"),
                .double(
                    "bias_weight_decay", \.biasWeightDecay, .nonNegative(atMost: 10),
                    "decay, biases"),
                .choice("lr_schedule", \.lrSchedule, "LR schedule"),
                .ints("milestones", \.milestones, .increasing, "multistep: epochs of LR × gamma"),
                .double("lr_gamma", \.lrGamma, .positive(atMost: 1e3), "multistep decay factor"),
                .double(
                    "warmup_epochs", \.warmupEpochs, .nonNegative(atMost: Double(Limit.epochs)),
                    "linear LR warmup"),
                .uint64("seed", \.seed, "seed of every random stream"),
                .int(
                    "threads", \.threads, .within(0...256),
                    "run micro-batches in parallel, else split kernels (0: OpenBLAS default)"),
            ]
        ),
        (
            "evaluation, checkpoints, logging",
            [
                .int(
                    "eval_every", \.evalEvery, .within(1...Limit.epochs),
                    "test-set evaluation, in epochs"),
                .int(
                    "checkpoint_every", \.checkpointEvery, .within(1...Limit.epochs),
                    "checkpoint, in epochs"),
                .int(
                    "checkpoint_every_steps", \.checkpointEverySteps, .within(0...Limit.steps),
                    "checkpoint, in steps; 0 = off"),
                .int(
                    "keep_checkpoints", \.keepCheckpoints, .within(1...100_000),
                    "step checkpoints kept in checkpoints/ (round ends are always kept)"),
                .int(
                    "log_every", \.logEvery, .within(1...Limit.steps), "training log line, in steps"
                ),
                .string("out_dir", \.outDir, .nonEmpty, "logs, checkpoints, resolved config"),
            ]
        ),
        (
            "centripetal SGD",
            [
                .double(
                    "centripetal_strength", \.centripetalStrength, .nonNegative(atMost: 1e6),
                    "ε on kernels"),
                .double(
                    "csgd_weight_decay", \.csgdWeightDecay, .nonNegative(atMost: 10),
                    "η, decay inside D"),
                .double(
                    "vector_strength_factor", \.vectorStrengthFactor, .nonNegative(atMost: 1e3),
                    "ε(BN, bias)/ε"),
                .rounds("rounds", \.rounds, "target width per round, fraction of original"),
                .choice("cluster_method", \.clusterMethod, "clustering"),
                .int(
                    "widen", \.widen, .within(1...64), "train widen× wider, squeeze back; 1 = off"),
                .double(
                    "prune_tolerance", \.pruneTolerance, .positive(atMost: 1e30),
                    "max |Δlogit| on prune"),
                .int(
                    "finetune_epochs", \.finetuneEpochs, .within(0...Limit.epochs),
                    "magnitude baseline: finetune epochs after pruning"),
            ]
        ),
        (
            "budgets and per-layer control",
            [
                .string(
                    "target_flops", \.targetFlops, nil,
                    "FLOPs budget: fraction kept (0.4) or absolute (16M); \"\" = off"),
                .string(
                    "target_params", \.targetParams, nil,
                    "parameter budget: fraction kept (0.4) or absolute (100k); \"\" = off"),
                .strings(
                    "layer_widths", \.layerWidths, "explicit widths: [pattern=width, …]"),
                .strings("exclude", \.exclude, "convs (names or globs) never pruned"),
                .int("min_width", \.minWidth, .within(1...1 << 20), "no group pruned below this"),
                .int(
                    "sensitivity_images", \.sensitivityImages, .within(1...Limit.images),
                    "budget: training images sensitivity is measured on"),
                .int(
                    "sensitivity_steps", \.sensitivitySteps, .within(2...64),
                    "budget: widths 1/steps … of each group measured"),
                .choice(
                    "sensitivity_context", \.sensitivityContext,
                    "budget: what the other groups do while one is measured"),
                .choice("merge", \.merge, "how a prune merges clusters"),
                .int(
                    "recalibrate_batches", \.recalibrateBatches, .within(0...Limit.steps),
                    "merge mean: BN statistics recomputed over N train batches"),
                .int(
                    "round_end_bn_batches", \.roundEndBnBatches, .within(0...Limit.steps),
                    "C-SGD: BN statistics recomputed over N train batches at each round's end"),
            ]
        ),
        (
            "distributed",
            [
                .choice("update", \.update, "who applies the SGD step"),
                .choice("allreduce", \.allreduce, "gradient allreduce during or after backward"),
                .double(
                    "bucket_mb", \.bucketMb, .positive(atMost: 65536),
                    "overlap: MiB of gradients per allreduce"),
                .int(
                    "bn_group_size", \.bnGroupSize, .within(1...1 << 20),
                    "SyncBN: BN batch statistics pooled over g consecutive ranks; 1 = per rank"),
                .int(
                    "verify_every", \.verifyEvery, .within(0...Limit.steps),
                    "replica check; 0 = never"),
                .double(
                    "collective_timeout_s", \.collectiveTimeoutS, .positive(atMost: 1e6),
                    "seconds a collective may wait; then abort the job"),
                .bool("debug", \.debug, "extra checks and logging"),
            ]
        ),
    ]

    /// Every key in table order.
    public static let all: [ConfigKey] = sections.flatMap(\.keys)

    private static let index: [String: ConfigKey] = Dictionary(
        uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// The key with this snake_case name.
    public static func named(_ name: String) -> ConfigKey? { index[name] }

    /// kebab-case → snake_case.
    static func normalize(_ name: String) -> String {
        name.replacingOccurrences(of: "-", with: "_")
    }

    /// The key for a user-typed name (either spelling), or the "unknown key" error.
    static func lookup(_ typed: String, source: String) throws -> ConfigKey {
        let name = normalize(typed)
        if let key = index[name] { return key }
        let near = all.map { ($0.name, editDistance($0.name, name)) }.min { $0.1 < $1.1 }
        let guess = near.map { $0.1 <= max(2, name.count / 4) ? "; did you mean '\($0.0)'?" : "" }
        throw CSGDError(
            "unknown config key '\(typed)' (from \(source))\(guess ?? "")",
            hint: "run `csgd-dist config --list` to see the keys")
    }
}

// MARK: - Rules

/// A constraint on a value: a predicate plus the phrase used in the error message.
struct Rule<T> {
    let text: String
    let ok: (T) -> Bool
}

/// Upper bounds shared by several keys. Every number has one, so the step arithmetic
/// (epochs × steps per epoch × rounds) stays far inside Int64 and a typo cannot ask for a
/// job of 10^18 epochs.
enum Limit {
    /// Epochs, and epoch counts such as milestones and warmup.
    static let epochs = 100_000
    /// Steps and step intervals.
    static let steps = 1 << 40
    /// Images in a dataset or a sample of it.
    static let images = 1 << 32
}

extension Rule where T == Int {
    static func within(_ r: ClosedRange<Int>) -> Rule {
        Rule(text: "in \(r.lowerBound)...\(r.upperBound)") { r.contains($0) }
    }
}

extension Rule where T == Double {
    static func positive(atMost hi: Double) -> Rule {
        Rule(text: "in (0, \(hi)]") { $0 > 0 && $0 <= hi }
    }
    static func nonNegative(atMost hi: Double) -> Rule {
        Rule(text: "in [0, \(hi)]") { $0 >= 0 && $0 <= hi }
    }
    static var fraction: Rule { Rule(text: "in [0, 1)") { $0 >= 0 && $0 < 1 } }
    static func inRange(_ lo: Double, _ hi: Double, lowOpen: Bool) -> Rule {
        Rule(text: "in \(lowOpen ? "(" : "[")\(lo), \(hi)]") {
            (lowOpen ? $0 > lo : $0 >= lo) && $0 <= hi
        }
    }
}

extension Rule where T == String {
    static func oneOf(_ values: [String]) -> Rule {
        Rule(text: "one of " + values.joined(separator: ", ")) { values.contains($0) }
    }
    static var nonEmpty: Rule { Rule(text: "non-empty") { !$0.isEmpty } }
    /// A built-in model, or the label of an imported one (which only a `--from` file can
    /// supply; a fresh run with an unknown name fails where the network is built).
    static var modelName: Rule {
        Rule(text: "a built-in model (\(ModelZoo.names.joined(separator: ", "))) or a model name") {
            name in
            ModelZoo.isBuiltIn(name)
                || (1...128).contains(name.count)
                    && name.unicodeScalars.allSatisfy {
                        $0.isASCII
                            && ($0.properties.isAlphabetic || $0.properties.numericType != nil
                                || "._-".unicodeScalars.contains($0))
                    }
        }
    }
}

extension Rule where T == [Int] {
    static var increasing: Rule {
        Rule(text: "strictly increasing epochs in 1...\(Limit.epochs)") { list in
            zip([0] + list, list).allSatisfy { $0 < $1 } && list.allSatisfy { $0 <= Limit.epochs }
        }
    }
}

// MARK: - Key constructors (one per value type)

extension ConfigKey {
    private static func scalar<T>(
        _ name: String, _ path: WritableKeyPath<RunConfig, T>, type: String, expects: String,
        isBool: Bool = false, rule: Rule<T>?, doc: String,
        parse: @escaping (String) -> T?, render: @escaping (T) -> String
    ) -> ConfigKey {
        ConfigKey(
            name: name, type: type, doc: doc, isBool: isBool, expects: expects,
            parseInto: { config, raw in
                guard case .scalar(let text) = raw else { throw BadValue(got: "a list") }
                guard let v = parse(text) else { throw BadValue(got: "'\(text)'") }
                config[keyPath: path] = v
            },
            render: { render($0[keyPath: path]) },
            check: { config in
                let v = config[keyPath: path]
                guard let rule, !rule.ok(v) else { return nil }
                return "config key '\(name)' must be \(rule.text) (got \(render(v)))"
            })
    }

    private static func list<E>(
        _ name: String, _ path: WritableKeyPath<RunConfig, [E]>, type: String, expects: String,
        rule: Rule<[E]>?, doc: String,
        parse: @escaping (String) -> E?, render: @escaping (E) -> String
    ) -> ConfigKey {
        let renderList = { (v: [E]) in "[" + v.map(render).joined(separator: ", ") + "]" }
        return ConfigKey(
            name: name, type: type, doc: doc, isBool: false, expects: expects,
            parseInto: { config, raw in
                let items: [String]
                switch raw {
                case .list(let l): items = l
                case .scalar(let s): items = splitList(s)
                }
                var out: [E] = []
                for item in items {
                    guard let v = parse(item) else { throw BadValue(got: "'\(item)'") }
                    out.append(v)
                }
                config[keyPath: path] = out
            },
            render: { renderList($0[keyPath: path]) },
            check: { config in
                let v = config[keyPath: path]
                guard let rule, !rule.ok(v) else { return nil }
                return "config key '\(name)' must hold \(rule.text) (got \(renderList(v)))"
            })
    }

    static func int(
        _ name: String, _ path: WritableKeyPath<RunConfig, Int>, _ rule: Rule<Int>,
        _ doc: String
    ) -> ConfigKey {
        scalar(
            name, path, type: "int", expects: "an integer", rule: rule, doc: doc,
            parse: { Int(trim($0)) }, render: { String($0) })
    }

    static func uint64(_ name: String, _ path: WritableKeyPath<RunConfig, UInt64>, _ doc: String)
        -> ConfigKey
    {
        scalar(
            name, path, type: "uint64", expects: "an integer in 0...2^64-1", rule: nil, doc: doc,
            parse: { text in
                let t = trim(text)
                if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
                return UInt64(t)
            },
            render: { String($0) })
    }

    static func double(
        _ name: String, _ path: WritableKeyPath<RunConfig, Double>, _ rule: Rule<Double>,
        _ doc: String
    ) -> ConfigKey {
        scalar(
            name, path, type: "float", expects: "a finite number", rule: rule, doc: doc,
            parse: { Double(trim($0)).flatMap { $0.isFinite ? $0 : nil } },
            render: { "\($0)" })
    }

    static func bool(_ name: String, _ path: WritableKeyPath<RunConfig, Bool>, _ doc: String)
        -> ConfigKey
    {
        scalar(
            name, path, type: "bool", expects: "true or false", isBool: true, rule: nil,
            doc: doc, parse: parseBool, render: { $0 ? "true" : "false" })
    }

    static func string(
        _ name: String, _ path: WritableKeyPath<RunConfig, String>, _ rule: Rule<String>?,
        _ doc: String
    ) -> ConfigKey {
        scalar(
            name, path, type: "string", expects: "a string", rule: rule, doc: doc,
            parse: { $0 }, render: yamlString)
    }

    /// A mode key: any `CaseIterable` string enum; a value outside its cases is an error naming
    /// the key and listing the allowed spellings.
    static func choice<E: CaseIterable & RawRepresentable>(
        _ name: String, _ path: WritableKeyPath<RunConfig, E>, _ doc: String
    ) -> ConfigKey where E.RawValue == String {
        scalar(
            name, path, type: "enum",
            expects: "one of " + E.allCases.map(\.rawValue).joined(separator: ", "), rule: nil,
            doc: doc + ": " + E.spellings, parse: { E(rawValue: trim($0)) },
            render: { yamlString($0.rawValue) })
    }

    static func ints(
        _ name: String, _ path: WritableKeyPath<RunConfig, [Int]>, _ rule: Rule<[Int]>,
        _ doc: String
    ) -> ConfigKey {
        list(
            name, path, type: "[int]", expects: "a list of integers", rule: rule, doc: doc,
            parse: { Int(trim($0)) }, render: { String($0) })
    }

    static func strings(
        _ name: String, _ path: WritableKeyPath<RunConfig, [String]>, _ doc: String
    ) -> ConfigKey {
        list(
            name, path, type: "[string]", expects: "a list of strings", rule: nil, doc: doc,
            parse: { $0.isEmpty ? nil : $0 }, render: yamlString)
    }

    static func rounds(
        _ name: String, _ path: WritableKeyPath<RunConfig, [RoundTarget]>, _ doc: String
    ) -> ConfigKey {
        list(
            name, path, type: "[ratio]",
            expects: "a list of ratios a/b or decimals in (0, 1], optionally internal:<ratio>",
            rule: Rule(text: "at most 64 rounds") { $0.count <= 64 }, doc: doc,
            parse: RoundTarget.init(parsing:),
            render: { yamlString($0.description) })
    }

    /// Command-line / YAML spellings of booleans.
    static func parseBool(_ text: String) -> Bool? {
        switch trim(text).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: return nil
        }
    }
}

// MARK: - Text helpers

private func trim(_ s: String) -> String { s.trimmingCharacters(in: .whitespaces) }

/// "2,3" / "[2, 3]" / "" → items; empty means an empty list.
private func splitList(_ text: String) -> [String] {
    var t = trim(text)
    if t.hasPrefix("[") && t.hasSuffix("]") { t = trim(String(t.dropFirst().dropLast())) }
    if t.isEmpty { return [] }
    return t.split(separator: ",", omittingEmptySubsequences: false).map { trim(String($0)) }
}

/// A string as a YAML scalar: plain when that reads back identically, else double-quoted.
private func yamlString(_ s: String) -> String {
    let safe = s.unicodeScalars.allSatisfy {
        ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
            || "._/-+".unicodeScalars.contains($0)
    }
    let nullish = ["~", "null", "Null", "NULL"].contains(s)
    if let first = s.unicodeScalars.first, safe, !nullish,
        first.properties.isAlphabetic || ("0"..."9").contains(first) || first == "."
            || first == "/"
    {
        return s
    }
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case _ where u.value < 0x20 || u.value == 0x7F:
            let hex = String(u.value, radix: 16)
            out += "\\x" + (hex.count < 2 ? "0" : "") + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

/// Levenshtein distance, for "did you mean" suggestions.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var prev = row[0]
        row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let cur = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
            prev = cur
        }
    }
    return row[b.count]
}
