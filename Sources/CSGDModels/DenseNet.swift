// DenseNet (Huang et al., CVPR 2017) for CIFAR-size inputs, the DenseNet-40 of the C-SGD paper:
// a 3×3 conv to 16 channels, three dense blocks of (depth − 4) / 3 layers separated by
// transitions, then BN-ReLU, global average pooling and a linear classifier. A layer is
// pre-activation BN-ReLU-conv3×3 producing `growth` channels, concatenated onto its input; a
// transition is BN-ReLU-conv1×1 (keeping the width, no compression) then a 2×2 average pool.
// The growth rate k is part of the name: `densenet40` is k = 12 (the paper's), `densenet40-k24`
// k = 24.
//
// Module names in torchvision's DenseNet style: `features.conv0`,
// `features.denseblockB.denselayerL.{norm1,conv1}`, `features.transitionB.{norm,conv}`,
// `features.norm_final`, `classifier`.

import CSGDCore

/// A DenseNet by depth and growth rate.
struct DenseNetKind: Equatable {
    /// Total depth: 3 blocks × layers + conv0 + 2 transitions + classifier.
    let depth: Int
    /// Channels each layer adds.
    let growth: Int

    /// The paper's growth rate, implied by a name without `-k`.
    static let defaultGrowth = 12

    /// Parses `densenet<depth>` or `densenet<depth>-k<growth>`; nil when `name` is not a
    /// DenseNet name at all.
    /// - Throws: `CSGDError` for a DenseNet name with an unusable depth or growth rate.
    init?(name: String) throws {
        let lower = name.lowercased()
        guard lower.hasPrefix("densenet") else { return nil }
        let parts = lower.dropFirst(8).split(separator: "-", omittingEmptySubsequences: false)
        let hint = "use densenet<depth>[-k<growth>], depth 3n + 4 (e.g. densenet40, densenet40-k24)"
        guard (1...2).contains(parts.count), let d = Int(parts[0]),
            d >= 7, d <= 400, (d - 4) % 3 == 0
        else { throw CSGDError("unknown model '\(name)'", hint: hint) }
        var k = Self.defaultGrowth
        if parts.count == 2 {
            guard parts[1].hasPrefix("k"), let g = Int(parts[1].dropFirst()), (1...256).contains(g)
            else {
                throw CSGDError("unknown model '\(name)': growth rate must be k1…k256", hint: hint)
            }
            k = g
        }
        depth = d
        growth = k
    }

    /// Canonical name: `densenet40`, or `densenet40-k24` for another growth rate.
    var name: String { "densenet\(depth)" + (growth == Self.defaultGrowth ? "" : "-k\(growth)") }
}

/// The DenseNet node list for the nominal widths.
func denseNetSpec(kind: DenseNetKind, numClasses: Int) -> GraphSpec {
    let layers = (kind.depth - 4) / 3
    var b = SpecBuilder()
    var x = b.conv("features.conv0", 0, 16, kernel: 3, stride: 1, pad: 1)
    var width = 16
    for block in 1...3 {
        for l in 1...layers {
            let name = "features.denseblock\(block).denselayer\(l)"
            var y = b.batchNorm(name + ".norm1", x, relu: true)
            y = b.conv(name + ".conv1", y, kind.growth, kernel: 3, stride: 1, pad: 1)
            x = b.concat([x, y])
            width += kind.growth
        }
        if block < 3 {
            let name = "features.transition\(block)"
            var y = b.batchNorm(name + ".norm", x, relu: true)
            y = b.conv(name + ".conv", y, width, kernel: 1, stride: 1, pad: 0)
            x = b.avgPool(y, kernel: 2, stride: 2)
        }
    }
    x = b.batchNorm("features.norm_final", x, relu: true)
    x = b.globalAvgPool(x)
    let logits = b.linear("classifier", x, numClasses)
    return b.finish(logits: logits)
}
