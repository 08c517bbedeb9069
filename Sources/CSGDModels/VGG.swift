// VGG-16 with BatchNorm as the official C-SGD code trains it on CIFAR ("VCNet"): thirteen
// conv3×3 (pad 1, no bias) + BN + ReLU in five stages of 2, 2, 3, 3, 3 convs, a 2×2 max pool after
// each stage, then flatten → linear(512) → ReLU → linear(classes). On 32×32 inputs the five
// pools leave 512 × 1 × 1, so the classifier reads 512 features, as in the paper's VGG.
//
// Other sizes: a pool is skipped once the map is down to 1×1 (Fashion-MNIST's 28×28 reaches
// 1×1 after four pools), and larger inputs leave an S×S map that the first linear layer reads
// flattened (512·S·S features). Module names follow the official code's
// (`stem.convN.conv`, `stem.convN.bn`, `linear1`, `linear2`).

/// The VGG-16-BN node list for the nominal widths.
func vgg16Spec(imageSize: Int, numClasses: Int) -> GraphSpec {
    let widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    let lastOfStage: Set = [1, 3, 6, 9, 12]
    var b = SpecBuilder()
    var x = 0
    var side = imageSize
    for (i, k) in widths.enumerated() {
        let name = "stem.conv\(i + 1)"
        x = b.conv(name + ".conv", x, k, kernel: 3, stride: 1, pad: 1)
        x = b.batchNorm(name + ".bn", x, relu: true)
        if lastOfStage.contains(i) && side >= 2 {
            x = b.maxPool(x, kernel: 2, stride: 2, pad: 0)
            side /= 2
        }
    }
    x = b.linear("linear1", x, 512)
    x = b.relu(x)
    let logits = b.linear("linear2", x, numClasses)
    return b.finish(logits: logits)
}
