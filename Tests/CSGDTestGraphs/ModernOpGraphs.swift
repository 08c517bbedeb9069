// Small graphs that use every op of the op table beyond the ResNet/VGG/DenseNet set, shared by
// the finite-difference, pruning and export→import tests (and the every-op coverage check).

import CSGDModels

/// Hand-built specs over a 3×8×8 image (tensor numbers in the comments).
public enum ModernOpGraphs {
    static func conv(
        _ name: String, _ x: Int, _ k: Int, kernel: Int = 3, stride: Int = 1, pad: Int? = nil,
        bias: Bool? = nil
    ) -> NodeSpec {
        NodeSpec(
            op: .conv, name: name, inputs: [x], outChannels: k, kernel: kernel, stride: stride,
            pad: pad ?? kernel / 2, bias: bias)
    }
    static func bn(_ name: String, _ x: Int, relu: Bool = false) -> NodeSpec {
        NodeSpec(op: .batchNorm, name: name, inputs: [x], relu: relu ? true : nil)
    }
    static func op(_ op: NodeSpec.Op, _ xs: Int...) -> NodeSpec { NodeSpec(op: op, inputs: xs) }

    /// A MobileNetV3/EfficientNet block: expand → SiLU → depthwise → HardSwish →
    /// squeeze-excitation (global pool → 1×1 conv → LeakyReLU → 1×1 conv → HardSigmoid → gate)
    /// → project → residual add, then a second, Sigmoid-gated SE on the head and a classifier.
    public static func squeezeExcitation() -> GraphSpec {
        GraphSpec(
            nodes: [
                conv("stem", 0, 8), bn("stem.bn", 1, relu: true),  // t2 [8]
                conv("b.expand", 2, 16, kernel: 1), bn("b.bn1", 3), op(.silu, 4),  // t5 [16]
                NodeSpec(
                    op: .depthwiseConv, name: "b.dw", inputs: [5], kernel: 3, stride: 1, pad: 1),
                bn("b.bn2", 6), op(.hardSwish, 7),  // t8
                op(.globalAvgPool, 8),  // t9 [16, 1, 1]
                conv("b.se.reduce", 9, 4, kernel: 1, bias: true),  // t10
                NodeSpec(op: .leakyRelu, inputs: [10], alpha: 0.1),  // t11
                conv("b.se.expand", 11, 16, kernel: 1, bias: true),  // t12
                NodeSpec(op: .hardSigmoid, inputs: [12], alpha: 1 / 6, beta: 0.5),  // t13
                op(.channelScale, 8, 13),  // t14 [16]
                conv("b.project", 14, 8, kernel: 1), bn("b.bn3", 15),  // t16 [8]
                op(.add, 2, 16),  // t17
                conv("head", 17, 12, kernel: 1), bn("head.bn", 18), op(.gelu, 19),  // t20 [12]
                op(.globalMaxPool, 20),  // t21
                conv("head.se.reduce", 21, 6, kernel: 1, bias: true), op(.relu, 22),  // t23
                conv("head.se.expand", 23, 12, kernel: 1, bias: true), op(.sigmoid, 24),  // t25
                op(.channelScale, 20, 25),  // t26 [12]
                op(.globalAvgPool, 26),  // t27
                NodeSpec(op: .linear, name: "fc", inputs: [27], outChannels: 5),  // t28
            ], output: 28)
    }

    /// A ShuffleNetV2 unit: split in halves, one half through 1×1 → depthwise → 1×1, concat,
    /// shuffle; then ceil-mode pools and a 1×1 conv classifier (SqueezeNet style).
    public static func shuffle() -> GraphSpec {
        GraphSpec(
            nodes: [
                conv("stem", 0, 8), bn("stem.bn", 1, relu: true),  // t2 [8]
                NodeSpec(op: .channelSlice, inputs: [2], outChannels: 4, start: 0),  // t3 [4]
                NodeSpec(op: .channelSlice, inputs: [2], outChannels: 4, start: 4),  // t4 [4]
                conv("b.pw1", 4, 6, kernel: 1), bn("b.bn1", 5, relu: true),  // t6 [6]
                NodeSpec(
                    op: .depthwiseConv, name: "b.dw", inputs: [6], kernel: 3, stride: 1, pad: 1),
                bn("b.bn2", 7),  // t8
                conv("b.pw2", 8, 4, kernel: 1), bn("b.bn3", 9, relu: true),  // t10 [4]
                op(.concat, 3, 10),  // t11 [8]
                NodeSpec(op: .channelShuffle, inputs: [11], groups: 2),  // t12
                NodeSpec(
                    op: .maxPool, inputs: [12], kernel: 3, stride: 2, pad: 0, ceilMode: true),
                // t13 [8, 4, 4] (floor mode: 3×3)
                conv("head", 13, 10, kernel: 1), bn("head.bn", 14, relu: true),  // t15 [10]
                NodeSpec(
                    op: .avgPool, inputs: [15], kernel: 3, stride: 2, pad: 1,
                    countIncludePad: false, ceilMode: true),  // t16 [10, 3, 3] (floor: 2×2)
                conv("classifier", 16, 5, kernel: 1, bias: true),  // t17 [5, 3, 3]
                op(.globalAvgPool, 17),  // t18 [5, 1, 1]: the logits
            ], output: 18)
    }

    /// HRNet / TF-"same" pieces: an asymmetric zero pad before an unpadded conv, a stride-2
    /// branch brought back by nearest upsampling and added to the full-resolution one; a Tanh
    /// on the pooled features.
    public static func multiResolution() -> GraphSpec {
        GraphSpec(
            nodes: [
                NodeSpec(op: .pad, inputs: [0], pads: [0, 0, 1, 1]),  // t1 [3, 9, 9]
                NodeSpec(
                    op: .conv, name: "stem", inputs: [1], outChannels: 8, kernel: 2, stride: 1,
                    pad: 0),  // t2 [8, 8, 8]
                bn("stem.bn", 2, relu: true),  // t3
                NodeSpec(
                    op: .conv, name: "down", inputs: [3], outChannels: 6, kernel: 3, stride: 2,
                    pad: 1),  // t4 [6, 4, 4]
                bn("down.bn", 4, relu: true),  // t5
                conv("fuse", 5, 8, kernel: 1), bn("fuse.bn", 6),  // t7 [8, 4, 4]
                NodeSpec(op: .upsample, inputs: [7], stride: 2),  // t8 [8, 8, 8]
                op(.add, 3, 8),  // t9
                conv("head", 9, 10, kernel: 3), bn("head.bn", 10, relu: true),  // t11
                op(.globalAvgPool, 11),  // t12
                op(.tanh, 12),  // t13
                NodeSpec(op: .linear, name: "fc", inputs: [13], outChannels: 5),  // t14
            ], output: 14)
    }

    /// An ECA-ResNet bottleneck (timm's EcaModule): a 1×1 → 3×3 branch whose output is gated
    /// by Sigmoid(Conv1d over its pooled channels), added to the stem; then a 1×1 head, pooled,
    /// and a classifier. The Conv1d has a bias here (timm's has none) so both paths are checked.
    public static func efficientChannelAttention() -> GraphSpec {
        GraphSpec(
            nodes: [
                conv("stem", 0, 8), bn("stem.bn", 1, relu: true),  // t2 [8]
                conv("b.conv1", 2, 6, kernel: 1), bn("b.bn1", 3, relu: true),  // t4 [6]
                conv("b.conv2", 4, 8), bn("b.bn2", 5),  // t6 [8]
                op(.globalAvgPool, 6),  // t7 [8, 1, 1]
                NodeSpec(op: .channelConv, name: "b.eca.conv", inputs: [7], kernel: 3, bias: true),
                // t8 [8, 1, 1]
                op(.sigmoid, 8),  // t9
                op(.channelScale, 6, 9),  // t10 [8]
                NodeSpec(op: .add, inputs: [2, 10], relu: true),  // t11
                conv("head", 11, 10, kernel: 1), bn("head.bn", 12, relu: true),  // t13 [10]
                op(.globalAvgPool, 13),  // t14
                NodeSpec(op: .linear, name: "fc", inputs: [14], outChannels: 5),  // t15
            ], output: 15)
    }

    /// A ConvNeXt stage (torchvision's CNBlock, LayerNorm2d): patchify stem + LayerNorm, a
    /// block (depthwise 7×7, LayerNorm over channels, 1×1 up to 4C, GELU, 1×1 back, layer
    /// scale, residual add), a head LayerNorm on the pooled [N, C] features.
    public static func convNeXt() -> GraphSpec {
        GraphSpec(
            nodes: [
                conv("stem", 0, 8, kernel: 2, stride: 2, pad: 0, bias: true),  // t1 [8, 4, 4]
                NodeSpec(op: .channelNorm, name: "stem.norm", inputs: [1], bias: true, eps: 1e-6),
                // t2
                NodeSpec(
                    op: .depthwiseConv, name: "b.dw", inputs: [2], kernel: 3, stride: 1, pad: 1,
                    bias: true),  // t3
                NodeSpec(op: .channelNorm, name: "b.norm", inputs: [3], bias: true, eps: 1e-6),
                // t4
                conv("b.pw1", 4, 16, kernel: 1, bias: true),  // t5 [16]
                op(.gelu, 5),  // t6
                conv("b.pw2", 6, 8, kernel: 1, bias: true),  // t7 [8]
                NodeSpec(
                    op: .depthwiseConv, name: "b.layer_scale", inputs: [7], kernel: 1, stride: 1,
                    pad: 0),  // t8
                op(.add, 2, 8),  // t9
                op(.globalAvgPool, 9),  // t10 [8, 1, 1]
                NodeSpec(op: .channelNorm, name: "head.norm", inputs: [10], bias: false),  // t11
                NodeSpec(op: .linear, name: "fc", inputs: [11], outChannels: 5),  // t12
            ], output: 12)
    }

    /// All the graphs.
    public static var all: [(name: String, spec: GraphSpec)] {
        [
            ("squeeze-excitation", squeezeExcitation()), ("shuffle", shuffle()),
            ("multi-resolution", multiResolution()),
            ("efficient-channel-attention", efficientChannelAttention()),
            ("convnext", convNeXt()),
        ]
    }
}
