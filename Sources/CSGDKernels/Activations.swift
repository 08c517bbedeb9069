// The element-wise activations of imported CNNs, one function each way, PyTorch's semantics
// (including its gradient at the kinks). ReLU keeps its vectorised pass in Elementwise.swift
// and ReLU6 in GraphOps.swift; every other kind is a scalar loop split across
// `KernelThreads` (these run on narrow tensors of mobile nets, never on a ResNet's hot path).
// Backward reads the forward INPUT (the graph keeps every tensor), so no kind needs a mask.

import Foundation

/// An element-wise activation.
public enum Activation: Sendable, Equatable, Hashable {
    /// max(x, 0).
    case relu
    /// min(max(x, 0), 6).
    case relu6
    /// 1 / (1 + e^(−x)).
    case sigmoid
    /// max(0, min(1, α·x + β)) (PyTorch's Hardsigmoid: α = 1/6, β = 1/2).
    case hardSigmoid(alpha: Float, beta: Float)
    /// x · sigmoid(x) (SiLU, Swish).
    case silu
    /// x · min(max(x + 3, 0), 6) / 6.
    case hardSwish
    /// x for x > 0, else α·x.
    case leakyRelu(alpha: Float)
    /// x · Φ(x), Φ the standard normal CDF (the exact, erf form).
    case gelu
    /// tanh(x).
    case tanh

    /// PyTorch's Hardsigmoid.
    public static let torchHardSigmoid = Activation.hardSigmoid(alpha: 1 / 6, beta: 0.5)
}

/// `output = act(input)` element-wise.
public func activationForward(
    _ act: Activation, output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    count: Int
) {
    switch act {
    case .relu: return reluForward(output: output, input: input, count: count)
    case .relu6: return relu6Forward(output: output, input: input, count: count)
    default: break
    }
    parallelRanges(count, grain: elementwiseGrain / 8, align: 16) { r in
        for i in r { output[i] = activationValue(act, input[i]) }
    }
}

/// Activation backward. ACCUMULATES `dInput += dOutput · act'(input)` (`output` is the forward
/// output, which ReLU and ReLU6 read instead of the input).
public func activationBackward(
    _ act: Activation, dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, output: UnsafePointer<Float>, count: Int
) {
    switch act {
    case .relu: return reluBackward(dInput: dInput, dOutput: dOutput, output: output, count: count)
    case .relu6:
        return relu6Backward(dInput: dInput, dOutput: dOutput, output: output, count: count)
    default: break
    }
    parallelRanges(count, grain: elementwiseGrain / 8, align: 16) { r in
        for i in r { dInput[i] += dOutput[i] * activationSlope(act, input[i]) }
    }
}

/// act(x) for one value.
@inline(__always)
public func activationValue(_ act: Activation, _ x: Float) -> Float {
    switch act {
    case .relu: return max(x, 0)
    case .relu6: return !(x > 0) ? 0 : (x > 6 ? 6 : x)
    case .sigmoid: return sigmoid(x)
    case .hardSigmoid(let a, let b): return min(max(a * x + b, 0), 1)
    case .silu: return x * sigmoid(x)
    case .hardSwish: return x * min(max(x + 3, 0), 6) / 6
    case .leakyRelu(let a): return x > 0 ? x : a * x
    case .gelu: return 0.5 * x * (1 + erf(x * Float(0.5).squareRoot()))
    case .tanh: return Foundation.tanh(x)
    }
}

/// d act / dx at x (PyTorch's choice at the kinks: 0 where the op is flat on either side).
@inline(__always)
func activationSlope(_ act: Activation, _ x: Float) -> Float {
    switch act {
    case .relu: return x > 0 ? 1 : 0
    case .relu6: return x > 0 && x < 6 ? 1 : 0
    case .sigmoid:
        let s = sigmoid(x)
        return s * (1 - s)
    case .hardSigmoid(let a, let b):
        let v = a * x + b
        return v > 0 && v < 1 ? a : 0
    case .silu:
        let s = sigmoid(x)
        return s * (1 + x * (1 - s))
    case .hardSwish:
        // torch's hardswish_backward: 0 below −3, x/3 + 1/2 on [−3, 3], 1 above.
        return x < -3 ? 0 : (x <= 3 ? x / 3 + 0.5 : 1)
    case .leakyRelu(let a): return x > 0 ? 1 : a
    case .gelu:
        let cdf = 0.5 * (1 + erf(x * Float(0.5).squareRoot()))
        let pdf = exp(-0.5 * x * x) / Float(2 * Double.pi).squareRoot()
        return cdf + x * pdf
    case .tanh:
        let t = Foundation.tanh(x)
        return 1 - t * t
    }
}

@inline(__always)
private func sigmoid(_ x: Float) -> Float {
    // Split by sign so e^(−|x|) never overflows: the same value both ways.
    if x >= 0 { return 1 / (1 + exp(-x)) }
    let e = exp(x)
    return e / (1 + e)
}
