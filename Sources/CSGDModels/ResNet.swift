// ResNet definitions as graph specs (GraphSpec.swift); `Architecture.widths` (the "deps" array
// of the C-SGD code) sets the channel counts, so one definition builds the thin, the original
// and the wide nets.
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

/// The ResNet node list for the nominal widths.
func resNetSpec(kind: ResNetKind, numClasses: Int) -> GraphSpec {
    var b = SpecBuilder()
    var x = 0
    switch kind {
    case .cifar(let depth):
        let blocks = (depth - 2) / 6
        x = b.conv("conv1", x, 16, kernel: 3, stride: 1, pad: 1)
        x = b.batchNorm("bn1", x, relu: true)
        for (stage, planes) in [16, 32, 64].enumerated() {
            for i in 0..<blocks {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                x = basicBlock(
                    &b, "layer\(stage + 1).\(i)", x, planes: planes, stride: stride,
                    project: stride != 1)
            }
        }
    case .imagenet(let depth):
        x = b.conv("conv1", x, 64, kernel: 7, stride: 2, pad: 3)
        x = b.batchNorm("bn1", x, relu: true)
        x = b.maxPool(x, kernel: 3, stride: 2, pad: 1)
        let counts = depth == 18 ? [2, 2, 2, 2] : [3, 4, 6, 3]
        let bottleneck = depth == 50
        var inPlanes = 64
        for (stage, planes) in [64, 128, 256, 512].enumerated() {
            for i in 0..<counts[stage] {
                let stride = (stage > 0 && i == 0) ? 2 : 1
                let name = "layer\(stage + 1).\(i)"
                if bottleneck {
                    let project = stride != 1 || inPlanes != planes * 4
                    x = bottleneckBlock(
                        &b, name, x, planes: planes, stride: stride, project: project)
                    inPlanes = planes * 4
                } else {
                    let project = stride != 1 || inPlanes != planes
                    x = basicBlock(&b, name, x, planes: planes, stride: stride, project: project)
                    inPlanes = planes
                }
            }
        }
    }
    x = b.globalAvgPool(x)
    let logits = b.linear("fc", x, numClasses)
    return b.finish(logits: logits)
}

/// conv3×3-BN-ReLU-conv3×3-BN, plus identity or 1×1-conv-BN shortcut, add, ReLU.
private func basicBlock(
    _ b: inout SpecBuilder, _ name: String, _ x: Int, planes: Int, stride: Int, project: Bool
) -> Int {
    var y = b.conv(name + ".conv1", x, planes, kernel: 3, stride: stride, pad: 1)
    y = b.batchNorm(name + ".bn1", y, relu: true)
    y = b.conv(name + ".conv2", y, planes, kernel: 3, stride: 1, pad: 1)
    y = b.batchNorm(name + ".bn2", y, relu: false)
    var shortcut = x
    if project {
        shortcut = b.conv(name + ".downsample.0", x, planes, kernel: 1, stride: stride, pad: 0)
        shortcut = b.batchNorm(name + ".downsample.1", shortcut, relu: false)
    }
    return b.add(y, shortcut, relu: true)
}

/// 1×1 → 3×3 (stride here, torchvision v1.5) → 1×1 (×4), plus shortcut, add, ReLU.
private func bottleneckBlock(
    _ b: inout SpecBuilder, _ name: String, _ x: Int, planes: Int, stride: Int, project: Bool
) -> Int {
    var y = b.conv(name + ".conv1", x, planes, kernel: 1, stride: 1, pad: 0)
    y = b.batchNorm(name + ".bn1", y, relu: true)
    y = b.conv(name + ".conv2", y, planes, kernel: 3, stride: stride, pad: 1)
    y = b.batchNorm(name + ".bn2", y, relu: true)
    y = b.conv(name + ".conv3", y, planes * 4, kernel: 1, stride: 1, pad: 0)
    y = b.batchNorm(name + ".bn3", y, relu: false)
    var shortcut = x
    if project {
        shortcut = b.conv(
            name + ".downsample.0", x, planes * 4, kernel: 1, stride: stride, pad: 0)
        shortcut = b.batchNorm(name + ".downsample.1", shortcut, relu: false)
    }
    return b.add(y, shortcut, relu: true)
}
