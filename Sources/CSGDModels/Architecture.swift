// What a model file records about its network: the graph, the widths, the input it expects.

import CSGDCore

/// Input preprocessing the model was trained with: per-channel normalisation
/// `(x / 255 - mean) / std` after scaling pixels to [0, 1].
public struct Preprocessing: Codable, Equatable, Sendable {
    /// Per-channel mean (in [0, 1] pixel units).
    public var mean: [Float]
    /// Per-channel standard deviation (> 0).
    public var std: [Float]

    /// A normalisation.
    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// ImageNet's normalisation as torchvision's models expect it.
    public static let imageNet = Preprocessing(
        mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
}

/// Everything needed to rebuild a model: stored in checkpoints so loading needs no flags.
public struct Architecture: Codable, Equatable, Sendable {
    /// Model name, e.g. `resnet56`, or the name an imported model was given.
    public var model: String
    /// Image channels (1 for Fashion-MNIST's 1-channel stem, 3 for RGB).
    public var inputChannels: Int
    /// Square image side the net is built for (FLOPs and shapes depend on it).
    public var imageSize: Int
    /// Number of classes: the width of the classifier (the graph's output node), which may
    /// differ from the spec's when the classifier was re-initialised for another dataset.
    public var numClasses: Int
    /// Output width of every dense or grouped conv, in node order.
    public var widths: [Int]
    /// The layer graph with nominal widths. Files written before graphs were stored have
    /// none; their `model` names a built-in family, whose spec is rebuilt from the name.
    public var spec: GraphSpec?
    /// The normalisation the model expects, when recorded (imported models).
    public var preprocessing: Preprocessing?

    /// Creates an architecture with explicit widths.
    public init(
        model: String, inputChannels: Int, imageSize: Int, numClasses: Int, widths: [Int],
        spec: GraphSpec? = nil, preprocessing: Preprocessing? = nil
    ) {
        self.model = model
        self.inputChannels = inputChannels
        self.imageSize = imageSize
        self.numClasses = numClasses
        self.widths = widths
        self.spec = spec
        self.preprocessing = preprocessing
    }

    /// The original widths of built-in `model`, each multiplied by `widen` (C-SGD's
    /// train-wider mode).
    public static func standard(
        model: String, inputChannels: Int, imageSize: Int, numClasses: Int, widen: Int = 1
    ) throws -> Architecture {
        let spec = try ModelZoo.spec(
            model: model, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: numClasses)
        return Architecture(
            model: try ModelZoo.canonicalName(model), inputChannels: inputChannels,
            imageSize: imageSize, numClasses: numClasses,
            widths: spec.nominalWidths.map { $0 * widen }, spec: spec)
    }

    /// An architecture for `spec` at its nominal widths (an imported model).
    public static func from(
        spec: GraphSpec, model: String, inputChannels: Int, imageSize: Int,
        preprocessing: Preprocessing? = nil
    ) throws -> Architecture {
        try spec.validate()
        // A linear classifier names its classes; a conv classifier (+ pooling) has as many as
        // its logits tensor has channels.
        let last = spec.nodes[spec.output - 1]
        let classes: Int
        if last.op == .linear {
            classes = last.outChannels!
        } else {
            let g = try spec.build(inputChannels: inputChannels, imageSize: imageSize)
            classes = g.tensors[g.logits.index].c
        }
        let a = Architecture(
            model: model, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: classes, widths: spec.nominalWidths, spec: spec,
            preprocessing: preprocessing)
        _ = try a.graph()
        return a
    }

    /// Largest values an architecture may hold. A model file is untrusted input: these bound
    /// what its metadata can make us allocate, before anything is allocated.
    public enum Limits {
        /// Image channels.
        public static let inputChannels = 64
        /// Square image side.
        public static let imageSize = 2048
        /// Classes (FC outputs).
        public static let numClasses = 100_000
        /// Output width of one conv.
        public static let width = 65_536
        /// Trainable parameters (values, gradients and momentum are each one float per).
        public static let parameters = 1 << 30
        /// Activation floats per image, summed over every tensor of the graph.
        public static let activationsPerImage = 1 << 30
    }

    /// The spec this architecture builds: the stored one, or the built-in family's.
    /// - Throws: `CSGDError` when there is no stored graph and `model` is not built in.
    public func resolvedSpec() throws -> GraphSpec {
        if let spec { return spec }
        return try ModelZoo.spec(
            model: model, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: numClasses)
    }

    /// Checks every field against `Limits` and the model's structure, naming the field.
    /// - Throws: a one-line `CSGDError` naming the field and its value.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ value: Int, _ range: String) throws {
            if !ok { throw CSGDError("architecture field \(field) is \(value), must be \(range)") }
        }
        if spec == nil { _ = try ResNetKind(name: model) }
        if model.isEmpty || model.count > 128
            || model.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        {
            throw CSGDError("architecture field model must be 1...128 printable characters")
        }
        try check(
            (1...Limits.inputChannels).contains(inputChannels), "inputChannels", inputChannels,
            "in 1...\(Limits.inputChannels)")
        try check(
            (8...Limits.imageSize).contains(imageSize), "imageSize", imageSize,
            "in 8...\(Limits.imageSize)")
        try check(
            (1...Limits.numClasses).contains(numClasses), "numClasses", numClasses,
            "in 1...\(Limits.numClasses)")
        if let bad = widths.firstIndex(where: { !(1...Limits.width).contains($0) }) {
            try check(false, "widths[\(bad)]", widths[bad], "in 1...\(Limits.width)")
        }
        if let p = preprocessing {
            if p.mean.count != inputChannels || p.std.count != inputChannels {
                throw CSGDError(
                    "architecture preprocessing has \(p.mean.count) means and \(p.std.count) "
                        + "stds, the model has \(inputChannels) input channels")
            }
            if !p.mean.allSatisfy({ $0.isFinite && abs($0) <= 1e3 })
                || !p.std.allSatisfy({ $0.isFinite && $0 > 0 && $0 <= 1e3 })
            {
                throw CSGDError(
                    "architecture preprocessing: means must be finite, stds finite and > 0")
            }
        }
    }

    /// Builds the graph.
    /// - Throws: `CSGDError` if a field is out of bounds (`validate()`), the widths array has the
    ///   wrong length or gives convs whose outputs are added different widths, or the net would
    ///   exceed `Limits` in parameters or activations.
    public func graph() throws -> Graph {
        try validate()
        let spec = try resolvedSpec()
        let g: Graph
        do {
            g = try spec.build(
                inputChannels: inputChannels, imageSize: imageSize, widths: widths,
                numClasses: numClasses)
        } catch let e as CSGDError {
            throw CSGDError("\(model): \(e.message)", hint: e.hint)
        }
        if g.parameterCount > Limits.parameters {
            throw CSGDError(
                "\(model): \(g.parameterCount) parameters exceed the limit of \(Limits.parameters)")
        }
        let activations = g.tensors.reduce(0) { $0 + $1.count }
        if activations > Limits.activationsPerImage {
            throw CSGDError(
                "\(model) at \(imageSize)×\(imageSize): \(activations) activation floats per image "
                    + "exceed the limit of \(Limits.activationsPerImage)")
        }
        return g
    }
}
