// The lines of metrics.jsonl, defined once: the run log encodes them and `csgd-dist report`
// decodes them with these same types. One JSON object per line, keys sorted, snake_case key
// names; the "phase" key tells the kinds apart ("prune" for a prune record, the training phase
// for an epoch record). Optional fields are left out when absent, and decoding accepts the
// lines of older runs (no "round", no "method", no "layers"…) and ignores unknown keys.
//
// Non-finite numbers (a diverged loss, say) are written as the JSON strings "NaN", "Infinity"
// and "-Infinity" (strict JSON has no such numbers) and read back as the same values, so such
// a record is kept rather than dropped.

import CSGDConfig
import CSGDCore
import Foundation

/// One epoch line of metrics.jsonl: the train metrics of the epoch, and the test metrics when
/// it was evaluated.
///
/// Example: `{"data_wait_seconds":0.01,"epoch":1,"img_per_s":850.2,"lr":0.1,"phase":"train",
/// "round":1,"seconds":70.5,"test_loss":0.52,"test_top1":0.81,"test_top5":0.99,
/// "train_loss":0.61,"train_top1":0.78,"world_size":2}`
public struct EpochRecord: Codable, Equatable, Sendable {
    /// The training phase the epoch belongs to.
    public var phase: TrainPhase
    /// 1-based C-SGD round (1 outside C-SGD; 0 when an older run did not record it).
    public var round: Int
    /// 1-based epoch within its phase and round.
    public var epoch: Int
    /// Mean training cross-entropy over the epoch (all ranks).
    public var trainLoss: Double?
    /// Training top-1 accuracy over the epoch, in [0, 1].
    public var trainTop1: Double?
    /// Test cross-entropy; nil when the epoch was not evaluated.
    public var testLoss: Double?
    /// Test top-1 accuracy in [0, 1]; nil when the epoch was not evaluated.
    public var testTop1: Double?
    /// Test top-5 accuracy in [0, 1]; nil when the epoch was not evaluated.
    public var testTop5: Double?
    /// The learning rate of the epoch's last step.
    public var lr: Double?
    /// Wall-clock seconds of the epoch (training only).
    public var seconds: Double?
    /// Training images per second, all ranks together.
    public var imgPerS: Double?
    /// Number of ranks.
    public var worldSize: Int?
    /// The longest time any rank waited for its loader in the epoch.
    public var dataWaitSeconds: Double?
    /// Unreadable images replaced by others (`bad_images: skip`); nil when none.
    public var skippedImages: Int?
    /// C-SGD: mean squared distance of clustered kernels to their cluster means.
    public var deviationKernels: Double?
    /// C-SGD: the same for the BN / bias vectors.
    public var deviationVectors: Double?

    /// A record with every optional field given or left nil.
    public init(
        phase: TrainPhase, round: Int, epoch: Int, trainLoss: Double? = nil,
        trainTop1: Double? = nil, testLoss: Double? = nil, testTop1: Double? = nil,
        testTop5: Double? = nil, lr: Double? = nil, seconds: Double? = nil,
        imgPerS: Double? = nil, worldSize: Int? = nil, dataWaitSeconds: Double? = nil,
        skippedImages: Int? = nil, deviationKernels: Double? = nil,
        deviationVectors: Double? = nil
    ) {
        self.phase = phase
        self.round = round
        self.epoch = epoch
        self.trainLoss = trainLoss
        self.trainTop1 = trainTop1
        self.testLoss = testLoss
        self.testTop1 = testTop1
        self.testTop5 = testTop5
        self.lr = lr
        self.seconds = seconds
        self.imgPerS = imgPerS
        self.worldSize = worldSize
        self.dataWaitSeconds = dataWaitSeconds
        self.skippedImages = skippedImages
        self.deviationKernels = deviationKernels
        self.deviationVectors = deviationVectors
    }

    enum CodingKeys: String, CodingKey {
        case phase, round, epoch, lr, seconds
        case trainLoss = "train_loss"
        case trainTop1 = "train_top1"
        case testLoss = "test_loss"
        case testTop1 = "test_top1"
        case testTop5 = "test_top5"
        case imgPerS = "img_per_s"
        case worldSize = "world_size"
        case dataWaitSeconds = "data_wait_seconds"
        case skippedImages = "skipped_images"
        case deviationKernels = "deviation_kernels"
        case deviationVectors = "deviation_vectors"
    }

    /// Decodes a line; a missing "round" (older runs) reads as 0.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        phase = try c.decode(TrainPhase.self, forKey: .phase)
        round = try c.decodeIfPresent(Int.self, forKey: .round) ?? 0
        epoch = try c.decode(Int.self, forKey: .epoch)
        trainLoss = try c.decodeIfPresent(Double.self, forKey: .trainLoss)
        trainTop1 = try c.decodeIfPresent(Double.self, forKey: .trainTop1)
        testLoss = try c.decodeIfPresent(Double.self, forKey: .testLoss)
        testTop1 = try c.decodeIfPresent(Double.self, forKey: .testTop1)
        testTop5 = try c.decodeIfPresent(Double.self, forKey: .testTop5)
        lr = try c.decodeIfPresent(Double.self, forKey: .lr)
        seconds = try c.decodeIfPresent(Double.self, forKey: .seconds)
        imgPerS = try c.decodeIfPresent(Double.self, forKey: .imgPerS)
        worldSize = try c.decodeIfPresent(Int.self, forKey: .worldSize)
        dataWaitSeconds = try c.decodeIfPresent(Double.self, forKey: .dataWaitSeconds)
        skippedImages = try c.decodeIfPresent(Int.self, forKey: .skippedImages)
        deviationKernels = try c.decodeIfPresent(Double.self, forKey: .deviationKernels)
        deviationVectors = try c.decodeIfPresent(Double.self, forKey: .deviationVectors)
    }
}

/// One prune line of metrics.jsonl: the equivalence check and the size change, overall and
/// per layer. Encoded with `"phase":"prune"`.
///
/// Example: `{"flops_after":2000000,"flops_before":5000000,"layers":[{"after":12,"before":16,
/// "name":"conv1"}],"max_logit_diff":2e-06,"method":"csgd","params_after":400,
/// "params_before":1000,"phase":"prune","round":1,"test_top1_after":0.75,
/// "test_top1_before":0.75}`
public struct PruneRecord: Codable, Equatable, Sendable {
    /// A conv (or the FC) and its output width before → after.
    public struct Layer: Codable, Equatable, Sendable {
        /// The layer's name in the graph.
        public var name: String
        /// Output channels before the prune.
        public var before: Int
        /// Output channels after the prune.
        public var after: Int

        /// A layer's widths.
        public init(name: String, before: Int, after: Int) {
            self.name = name
            self.before = before
            self.after = after
        }
    }

    /// 1-based C-SGD round of the prune (1 for a standalone prune; 1 when an older run did not
    /// record it).
    public var round: Int
    /// How the filters to remove were chosen (`csgd` when an older run did not record it).
    public var method: PruneMethod
    /// Largest |logit difference| between the unpruned and the pruned net on the test set.
    public var maxLogitDiff: Double?
    /// Test top-1 of the unpruned net, in [0, 1].
    public var testTop1Before: Double?
    /// Test top-1 of the pruned net, in [0, 1].
    public var testTop1After: Double?
    /// FLOPs per image before the prune.
    public var flopsBefore: Int?
    /// FLOPs per image after the prune.
    public var flopsAfter: Int?
    /// Parameters before the prune.
    public var paramsBefore: Int?
    /// Parameters after the prune.
    public var paramsAfter: Int?
    /// Every conv's (and the FC's) width; empty in runs written before widths were recorded.
    public var layers: [Layer]

    /// A record with every optional field given or left nil.
    public init(
        round: Int, method: PruneMethod, maxLogitDiff: Double? = nil,
        testTop1Before: Double? = nil, testTop1After: Double? = nil, flopsBefore: Int? = nil,
        flopsAfter: Int? = nil, paramsBefore: Int? = nil, paramsAfter: Int? = nil,
        layers: [Layer] = []
    ) {
        self.round = round
        self.method = method
        self.maxLogitDiff = maxLogitDiff
        self.testTop1Before = testTop1Before
        self.testTop1After = testTop1After
        self.flopsBefore = flopsBefore
        self.flopsAfter = flopsAfter
        self.paramsBefore = paramsBefore
        self.paramsAfter = paramsAfter
        self.layers = layers
    }

    /// The value of the "phase" key of every prune record.
    public static let phase = "prune"

    enum CodingKeys: String, CodingKey {
        case phase, round, method, layers
        case maxLogitDiff = "max_logit_diff"
        case testTop1Before = "test_top1_before"
        case testTop1After = "test_top1_after"
        case flopsBefore = "flops_before"
        case flopsAfter = "flops_after"
        case paramsBefore = "params_before"
        case paramsAfter = "params_after"
    }

    /// Decodes a line whose "phase" is "prune"; a missing "round", "method" or "layers" (older
    /// runs) reads as 1, `csgd` and none.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let phase = try c.decode(String.self, forKey: .phase)
        guard phase == Self.phase else {
            throw DecodingError.dataCorruptedError(
                forKey: .phase, in: c, debugDescription: "a prune record has phase \"prune\"")
        }
        round = try c.decodeIfPresent(Int.self, forKey: .round) ?? 1
        method = try c.decodeIfPresent(PruneMethod.self, forKey: .method) ?? .csgd
        maxLogitDiff = try c.decodeIfPresent(Double.self, forKey: .maxLogitDiff)
        testTop1Before = try c.decodeIfPresent(Double.self, forKey: .testTop1Before)
        testTop1After = try c.decodeIfPresent(Double.self, forKey: .testTop1After)
        flopsBefore = try c.decodeIfPresent(Int.self, forKey: .flopsBefore)
        flopsAfter = try c.decodeIfPresent(Int.self, forKey: .flopsAfter)
        paramsBefore = try c.decodeIfPresent(Int.self, forKey: .paramsBefore)
        paramsAfter = try c.decodeIfPresent(Int.self, forKey: .paramsAfter)
        layers = try c.decodeIfPresent([Layer].self, forKey: .layers) ?? []
    }

    /// Encodes the record with `"phase":"prune"`; nil fields are left out.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.phase, forKey: .phase)
        try c.encode(round, forKey: .round)
        try c.encode(method, forKey: .method)
        try c.encodeIfPresent(maxLogitDiff, forKey: .maxLogitDiff)
        try c.encodeIfPresent(testTop1Before, forKey: .testTop1Before)
        try c.encodeIfPresent(testTop1After, forKey: .testTop1After)
        try c.encodeIfPresent(flopsBefore, forKey: .flopsBefore)
        try c.encodeIfPresent(flopsAfter, forKey: .flopsAfter)
        try c.encodeIfPresent(paramsBefore, forKey: .paramsBefore)
        try c.encodeIfPresent(paramsAfter, forKey: .paramsAfter)
        try c.encode(layers, forKey: .layers)
    }
}

/// One line of metrics.jsonl, of any kind, told apart by its "phase" key.
public enum MetricsRecord: Codable, Equatable, Sendable {
    /// The end of a training epoch ("phase" is a `TrainPhase`).
    case epoch(EpochRecord)
    /// A prune ("phase" is "prune").
    case prune(PruneRecord)

    private enum Discriminator: String, CodingKey { case phase }

    /// Decodes a prune record if "phase" is "prune", an epoch record otherwise.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Discriminator.self)
        if try c.decode(String.self, forKey: .phase) == PruneRecord.phase {
            self = .prune(try PruneRecord(from: decoder))
        } else {
            self = .epoch(try EpochRecord(from: decoder))
        }
    }

    /// Encodes the record's fields (with its "phase") as one flat object.
    public func encode(to encoder: Encoder) throws {
        switch self {
        case .epoch(let r): try r.encode(to: encoder)
        case .prune(let r): try r.encode(to: encoder)
        }
    }

    /// The encoder of metrics.jsonl: keys sorted; NaN and ±infinity as the strings "NaN",
    /// "Infinity" and "-Infinity".
    public static func makeEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }

    /// The decoder of metrics.jsonl: reads "NaN", "Infinity" and "-Infinity" back as numbers.
    public static func makeDecoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return d
    }

    /// The record as one line of metrics.jsonl (no trailing newline).
    /// - Throws: `CSGDError` if it cannot be encoded.
    public func jsonLine() throws -> String {
        let data: Data
        do {
            data = try Self.makeEncoder().encode(self)
        } catch {
            throw CSGDError("cannot encode a metrics record: \(Self.oneLine(error))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Parses one line of metrics.jsonl.
    /// - Throws: `CSGDError` with a one-line message saying what is wrong (e.g. `not a JSON
    ///   object`, `record has no "epoch"`); the caller adds the file and line.
    public init(jsonLine line: some StringProtocol) throws {
        do {
            self = try Self.makeDecoder().decode(MetricsRecord.self, from: Data(line.utf8))
        } catch let DecodingError.keyNotFound(key, _) {
            throw CSGDError("record has no \"\(key.stringValue)\"")
        } catch let DecodingError.dataCorrupted(ctx) where ctx.codingPath.isEmpty {
            throw CSGDError("not a JSON object")
        } catch let DecodingError.typeMismatch(_, ctx) where ctx.codingPath.isEmpty {
            throw CSGDError("not a JSON object")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw CSGDError("\"\(Self.path(ctx))\" is not of type \(type)")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw CSGDError("\"\(Self.path(ctx))\" is null, expected \(type)")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw CSGDError("\"\(Self.path(ctx))\": " + Self.oneLine(ctx.debugDescription))
        } catch {
            throw CSGDError("unreadable record: \(Self.oneLine(error))")
        }
    }

    /// A decoding error's key path, e.g. `layers.0.before`.
    private static func path(_ ctx: DecodingError.Context) -> String {
        ctx.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            .joined(separator: ".")
    }

    private static func oneLine(_ error: Any) -> String {
        "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// One line of steps.jsonl, written by rank 0 every `log_every` steps: where the run is, how
/// fast it goes, and how far C-SGD has pulled the clusters together. Loss, top-1, img/s and
/// the two fractions are over the epoch so far, summed over every rank; the time fractions are
/// rank 0's. Same encoding as metrics.jsonl (sorted keys, NaN/±inf as strings).
///
/// Example: `{"comm_fraction":0.02,"data_wait_fraction":0.001,"deviation_kernels":3.1e-07,
/// "deviation_vectors":0,"elapsed_seconds":93.4,"epoch":2,"img_per_s":187.5,"loss":0.64,
/// "lr":0.044,"phase":"csgd","round":1,"step":250,"time":"2026-11-26T12:40:01Z","top1":0.75}`
public struct StepRecord: Codable, Equatable, Sendable {
    /// Optimizer steps since the run started, over all rounds (1-based: the step just done).
    public var step: Int
    /// Wall-clock time, ISO 8601 UTC.
    public var time: String
    /// Seconds since the job started training.
    public var elapsedSeconds: Double
    /// 1-based epoch within the phase or round.
    public var epoch: Int
    /// 1-based C-SGD round (1 outside C-SGD).
    public var round: Int
    public var phase: TrainPhase
    public var lr: Double
    /// Mean training loss and top-1 of the epoch so far.
    public var loss: Double, top1: Double
    /// Images per second over the epoch so far (all ranks).
    public var imgPerS: Double
    /// Share of the epoch's time spent waiting for data / in communication not hidden by
    /// compute (rank 0).
    public var dataWaitFraction: Double, commFraction: Double
    /// C-SGD's deviation of clustered kernels / BN vectors from their cluster means.
    public var deviationKernels: Double?, deviationVectors: Double?

    /// Creates a record.
    public init(
        step: Int, time: String, elapsedSeconds: Double, epoch: Int, round: Int,
        phase: TrainPhase, lr: Double, loss: Double, top1: Double, imgPerS: Double,
        dataWaitFraction: Double, commFraction: Double, deviationKernels: Double? = nil,
        deviationVectors: Double? = nil
    ) {
        self.step = step
        self.time = time
        self.elapsedSeconds = elapsedSeconds
        self.epoch = epoch
        self.round = round
        self.phase = phase
        self.lr = lr
        self.loss = loss
        self.top1 = top1
        self.imgPerS = imgPerS
        self.dataWaitFraction = dataWaitFraction
        self.commFraction = commFraction
        self.deviationKernels = deviationKernels
        self.deviationVectors = deviationVectors
    }

    enum CodingKeys: String, CodingKey {
        case step, time, epoch, round, phase, lr, loss, top1
        case elapsedSeconds = "elapsed_seconds"
        case imgPerS = "img_per_s"
        case dataWaitFraction = "data_wait_fraction"
        case commFraction = "comm_fraction"
        case deviationKernels = "deviation_kernels"
        case deviationVectors = "deviation_vectors"
    }

    /// The record as one line of steps.jsonl (no trailing newline).
    /// - Throws: `CSGDError` if it cannot be encoded.
    public func jsonLine() throws -> String {
        do {
            return String(decoding: try MetricsRecord.makeEncoder().encode(self), as: UTF8.self)
        } catch {
            throw CSGDError("cannot encode a step record: \(error)")
        }
    }

    /// Parses one line of steps.jsonl.
    /// - Throws: `CSGDError` saying what is wrong; the caller adds the file and line.
    public init(jsonLine line: some StringProtocol) throws {
        do {
            self = try MetricsRecord.makeDecoder().decode(StepRecord.self, from: Data(line.utf8))
        } catch {
            throw CSGDError("not a step record: \(error)")
        }
    }
}
