// Softmax cross-entropy with integer labels, mean over the batch (PyTorch CrossEntropyLoss
// with reduction="mean"). Computed with the max-shift for stability; the loss sums in Double.

import Foundation

/// Loss, gradient and top-k hits of softmax cross-entropy.
/// - Parameters:
///   - dLogits: `[N, classes]` or nil; when given it is OVERWRITTEN (not accumulated: the loss
///     is where the chain rule begins) with `scale · (softmax − onehot) / N`.
///   - logits: `[N, classes]`.
///   - labels: `[N]`, each in 0..<classes.
///   - scale: multiplies the gradient (1/micro-batches under gradient accumulation).
/// - Returns: mean loss over the batch, and how many rows have the label in the top 1 and top 5.
@discardableResult
public func softmaxCrossEntropy(
    dLogits: UnsafeMutablePointer<Float>?, logits: UnsafePointer<Float>,
    labels: UnsafePointer<Int32>, n: Int, classes: Int, scale: Float = 1
) -> (loss: Double, top1: Int, top5: Int) {
    var total = 0.0
    var top1 = 0
    var top5 = 0
    let gradScale = scale / Float(n)
    for i in 0..<n {
        let z = logits + i * classes
        let y = Int(labels[i])
        var mx = z[0]
        for j in 1..<classes where z[j] > mx { mx = z[j] }
        var sum = 0.0
        for j in 0..<classes { sum += Double(Foundation.exp(z[j] - mx)) }
        let logSum = Double(mx) + Foundation.log(sum)
        total += logSum - Double(z[y])
        // Rank of the true class: how many logits beat it (ties go to the lower index).
        var better = 0
        for j in 0..<classes where z[j] > z[y] || (z[j] == z[y] && j < y) { better += 1 }
        // A NaN or infinite logit makes logSum non-finite; such a row is never counted correct
        // (every comparison with NaN is false, so it would otherwise rank first).
        if !logSum.isFinite || !z[y].isFinite { better = classes }
        if better < 1 { top1 += 1 }
        if better < 5 { top5 += 1 }
        if let dLogits {
            let d = dLogits + i * classes
            for j in 0..<classes {
                let pj = Float(Foundation.exp(Double(z[j]) - logSum))
                d[j] = gradScale * (pj - (j == y ? 1 : 0))
            }
        }
    }
    return (total / Double(n), top1, top5)
}
