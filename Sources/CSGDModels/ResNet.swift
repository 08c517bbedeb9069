// ResNet definitions with per-conv widths as data (the "deps" array of the C-SGD code), so the
// same code builds the thin, the original and the wide nets.
//
// - CIFAR-style ResNet-(6n+2): He et al., "Deep Residual Learning for Image Recognition"
//   (CVPR 2016) §4.2, three stages of basic blocks, 16/32/64 channels, stride 2 at stages 2–3,
//   with a 1×1 conv + BN projection shortcut where the shape changes (the variant the official
//   C-SGD code trains).
// - ImageNet ResNet-18/34/50 in torchvision's layout (7×7 stem, max pool, bottleneck blocks for
//   50 with the stride on the 3×3).
//
// The block STRUCTURE (where projections sit) always comes from the original architecture; the
// widths array only sets channel counts. Widths are listed in conv order, which is torchvision's
// module order: conv1, layerX.Y.conv1, conv2, (conv3), downsample.0, …

import CSGDCore

/// Which family of ResNet and how deep.
public enum ResNetKind: Equatable, Sendable {
    /// CIFAR-style ResNet-(6n+2) with basic blocks.
    case cifar(depth: Int)
    /// torchvision ResNet-18/34 (basic) or 50 (bottleneck).
    case imagenet(depth: Int)

    /// Parses `resnet20` … `resnet110` (CIFAR) and `resnet18/34/50` (ImageNet).
    public init(name: String) throws {
        let lower = name.lowercased()
        guard lower.hasPrefix("resnet"), let d = Int(lower.dropFirst(6)) else {
            throw CSGDError(
                "unknown model '\(name)'", hint: "use resnet20/32/44/56/110 or 18/34/50")
        }
        switch d {
        case 18, 34, 50: self = .imagenet(depth: d)
        // ResNet-1202 is the deepest CIFAR ResNet in the literature; deeper is a typo.
        case _ where d >= 8 && d <= 1202 && (d - 2) % 6 == 0: self = .cifar(depth: d)
        default:
            throw CSGDError(
                "unknown model '\(name)'", hint: "use resnet20/32/44/56/110 or 18/34/50")
        }
    }

    /// The built-in networks by name, in `--help` order: the CIFAR-style ResNets the papers
    /// use, then torchvision's (any other 6n+2 depth also parses as a CIFAR-style ResNet).
    public static let builtInNames = [
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "resnet34",
        "resnet50",
    ]

    /// Canonical name, e.g. `resnet56`.
    public var name: String {
        switch self {
        case .cifar(let d), .imagenet(let d): return "resnet\(d)"
        }
    }
}

/// Everything needed to rebuild a model: stored in checkpoints so loading needs no flags.
public struct Architecture: Codable, Equatable, Sendable {
    /// Model name, e.g. `resnet56`.
    public var model: String
    /// Image channels (1 for Fashion-MNIST's 1-channel stem, 3 for RGB).
    public var inputChannels: Int
    /// Square image side the net is built for (FLOPs and shapes depend on it).
    public var imageSize: Int
    /// Number of classes (FC outputs).
    public var numClasses: Int
    /// Output width of every conv, in conv order.
    public var widths: [Int]

    /// Creates an architecture with explicit widths.
    public init(model: String, inputChannels: Int, imageSize: Int, numClasses: Int, widths: [Int]) {
        self.model = model
        self.inputChannels = inputChannels
        self.imageSize = imageSize
        self.numClasses = numClasses
        self.widths = widths
    }

    /// The original widths of `model`, each multiplied by `widen` (C-SGD's train-wider mode).
    public static func standard(
        model: String, inputChannels: Int, imageSize: Int, numClasses: Int, widen: Int = 1
    ) throws -> Architecture {
        let kind = try ResNetKind(name: model)
        var widths: [Int] = []
        _ = try buildResNet(
            kind: kind, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: numClasses,
            width: { nominal in
                widths.append(nominal * widen)
                return nominal * widen
            })
        return Architecture(
            model: kind.name, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: numClasses, widths: widths)
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

    /// Checks every field against `Limits` and the model's structure, naming the field.
    /// - Throws: a one-line `CSGDError` naming the field and its value.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ value: Int, _ range: String) throws {
            if !ok { throw CSGDError("architecture field \(field) is \(value), must be \(range)") }
        }
        _ = try ResNetKind(name: model)
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
    }

    /// Builds the graph.
    /// - Throws: `CSGDError` if a field is out of bounds (`validate()`), the widths array has the
    ///   wrong length or gives convs whose outputs are added different widths, or the net would
    ///   exceed `Limits` in parameters or activations.
    public func graph() throws -> Graph {
        try validate()
        let kind = try ResNetKind(name: model)
        var next = 0
        var overflow = false
        let g = try buildResNet(
            kind: kind, inputChannels: inputChannels, imageSize: imageSize,
            numClasses: numClasses,
            width: { _ in
                defer { next += 1 }
                if next < widths.count { return widths[next] }
                overflow = true
                return 1
            })
        if overflow || next != widths.count {
            throw CSGDError(
                "\(model): widths array has \(widths.count) entries, the model has \(next) convs")
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

/// Builds a ResNet graph; `width(nominal)` returns the actual width of the next conv in conv
/// order (given its original width), which is how one definition serves every width array.
func buildResNet(
    kind: ResNetKind, inputChannels: Int, imageSize: Int, numClasses: Int,
    width: (Int) -> Int
) throws -> Graph {
    var b = GraphBuilder(input: ActivationShape(c: inputChannels, h: imageSize, w: imageSize))
    var x = b.input
    switch kind {
    case .cifar(let depth):
        let blocks = (depth - 2) / 6
        x = try b.conv("conv1", x, outChannels: width(16), kernel: 3, stride: 1, pad: 1)
        x = b.batchNorm("bn1", x, relu: true)
        for (stage, planes) in [16, 32, 64].enumerated() {
            for i in 0..<blocks {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                x = try basicBlock(
                    &b, "layer\(stage + 1).\(i)", x, planes: planes, stride: stride,
                    project: stride != 1, width: width)
            }
        }
    case .imagenet(let depth):
        x = try b.conv("conv1", x, outChannels: width(64), kernel: 7, stride: 2, pad: 3)
        x = b.batchNorm("bn1", x, relu: true)
        x = try b.maxPool(x, kernel: 3, stride: 2, pad: 1)
        let counts = depth == 18 ? [2, 2, 2, 2] : [3, 4, 6, 3]
        let bottleneck = depth == 50
        var inPlanes = 64
        for (stage, planes) in [64, 128, 256, 512].enumerated() {
            for i in 0..<counts[stage] {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                let name = "layer\(stage + 1).\(i)"
                if bottleneck {
                    let project = stride != 1 || inPlanes != planes * 4
                    x = try bottleneckBlock(
                        &b, name, x, planes: planes, stride: stride, project: project,
                        width: width)
                    inPlanes = planes * 4
                } else {
                    let project = stride != 1 || inPlanes != planes
                    x = try basicBlock(
                        &b, name, x, planes: planes, stride: stride, project: project,
                        width: width)
                    inPlanes = planes
                }
            }
        }
    }
    x = b.globalAvgPool(x)
    let logits = b.linear("fc", x, outFeatures: numClasses)
    return b.finish(logits: logits)
}

/// conv3×3-BN-ReLU-conv3×3-BN, plus identity or 1×1-conv-BN shortcut, add, ReLU.
private func basicBlock(
    _ b: inout GraphBuilder, _ name: String, _ x: TensorID, planes: Int, stride: Int,
    project: Bool, width: (Int) -> Int
) throws -> TensorID {
    var y = try b.conv(
        name + ".conv1", x, outChannels: width(planes), kernel: 3, stride: stride, pad: 1)
    y = b.batchNorm(name + ".bn1", y, relu: true)
    y = try b.conv(name + ".conv2", y, outChannels: width(planes), kernel: 3, stride: 1, pad: 1)
    y = b.batchNorm(name + ".bn2", y, relu: false)
    var shortcut = x
    if project {
        shortcut = try b.conv(
            name + ".downsample.0", x, outChannels: width(planes), kernel: 1, stride: stride,
            pad: 0)
        shortcut = b.batchNorm(name + ".downsample.1", shortcut, relu: false)
    }
    return try b.add(y, shortcut, relu: true)
}

/// 1×1 → 3×3 (stride here, torchvision v1.5) → 1×1 (×4), plus shortcut, add, ReLU.
private func bottleneckBlock(
    _ b: inout GraphBuilder, _ name: String, _ x: TensorID, planes: Int, stride: Int,
    project: Bool, width: (Int) -> Int
) throws -> TensorID {
    var y = try b.conv(name + ".conv1", x, outChannels: width(planes), kernel: 1, stride: 1, pad: 0)
    y = b.batchNorm(name + ".bn1", y, relu: true)
    y = try b.conv(
        name + ".conv2", y, outChannels: width(planes), kernel: 3, stride: stride, pad: 1)
    y = b.batchNorm(name + ".bn2", y, relu: true)
    y = try b.conv(
        name + ".conv3", y, outChannels: width(planes * 4), kernel: 1, stride: 1, pad: 0)
    y = b.batchNorm(name + ".bn3", y, relu: false)
    var shortcut = x
    if project {
        shortcut = try b.conv(
            name + ".downsample.0", x, outChannels: width(planes * 4), kernel: 1, stride: stride,
            pad: 0)
        shortcut = b.batchNorm(name + ".downsample.1", shortcut, relu: false)
    }
    return try b.add(y, shortcut, relu: true)
}
