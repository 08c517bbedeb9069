// MobileNetV2 (Sandler et al., CVPR 2018) in torchvision's layout and module names, so a
// torchvision state_dict's keys are this graph's parameter names: `features.0` is the stem
// (conv 3×3, BN, ReLU6), `features.1 … 17` the inverted residual blocks (`features.N.conv.M`:
// expand 1×1 conv-BN-ReLU6 when the expansion t ≠ 1, depthwise 3×3 conv-BN-ReLU6, project 1×1
// conv-BN with no activation), with an identity Add when stride is 1 and the block keeps its
// width; `features.18` the 1×1 conv to 1280 + BN + ReLU6; then global average pooling and
// `classifier.1` (torchvision's `classifier.0` is the dropout, not a node here).
//
// CIFAR-size inputs (side ≤ 64): the stem and the first strided stage (24 channels) use
// stride 1, so a 32×32 image reaches the last stage at 4×4 instead of 1×1 — the usual CIFAR
// adaptation of MobileNetV2 (e.g. the widely used pytorch-cifar definition). Larger inputs get
// torchvision's strides (224 → 7×7).

/// The MobileNetV2 node list for the nominal widths (width multiplier 1).
func mobileNetV2Spec(imageSize: Int, numClasses: Int) -> GraphSpec {
    let cifar = imageSize <= 64
    // (expansion t, output channels c, blocks n, stride s of the first block), torchvision's.
    let settings: [(t: Int, c: Int, n: Int, s: Int)] = [
        (1, 16, 1, 1), (6, 24, 2, cifar ? 1 : 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
        (6, 160, 3, 2), (6, 320, 1, 1),
    ]
    var b = SpecBuilder()
    var x = b.conv("features.0.0", 0, 32, kernel: 3, stride: cifar ? 1 : 2, pad: 1)
    x = b.relu6(b.batchNorm("features.0.1", x, relu: false))
    var inputWidth = 32
    var index = 1
    for stage in settings {
        for i in 0..<stage.n {
            let stride = i == 0 ? stage.s : 1
            let name = "features.\(index).conv"
            let hidden = inputWidth * stage.t
            var y = x
            var m = 0
            if stage.t != 1 {
                y = b.conv("\(name).\(m).0", y, hidden, kernel: 1, stride: 1, pad: 0)
                y = b.relu6(b.batchNorm("\(name).\(m).1", y, relu: false))
                m += 1
            }
            y = b.depthwiseConv("\(name).\(m).0", y, kernel: 3, stride: stride, pad: 1)
            y = b.relu6(b.batchNorm("\(name).\(m).1", y, relu: false))
            y = b.conv("\(name).\(m + 1)", y, stage.c, kernel: 1, stride: 1, pad: 0)
            y = b.batchNorm("\(name).\(m + 2)", y, relu: false)
            x = stride == 1 && inputWidth == stage.c ? b.add(y, x, relu: false) : y
            inputWidth = stage.c
            index += 1
        }
    }
    x = b.conv("features.\(index).0", x, 1280, kernel: 1, stride: 1, pad: 0)
    x = b.relu6(b.batchNorm("features.\(index).1", x, relu: false))
    x = b.globalAvgPool(x)
    let logits = b.linear("classifier.1", x, numClasses)
    return b.finish(logits: logits)
}
