// ReLU and the residual add. ReLU's backward reads the forward OUTPUT (y > 0 ⇔ x > 0), so a
// ReLU may run in place on its input and the graph needs no extra mask buffer.

/// `output = max(input, 0)`; `output` may equal `input` (in place).
public func reluForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count { output[i] = max(input[i], 0) }
}

/// ReLU backward from the forward output. ACCUMULATES: `dInput += dOutput · [output > 0]`.
public func reluBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    output: UnsafePointer<Float>, count: Int
) {
    let zero = SIMD8<Float>()
    var i = 0
    while i + 8 <= count {
        let y = UnsafeRawPointer(output + i).loadUnaligned(as: SIMD8<Float>.self)
        let g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: SIMD8<Float>.self)
        let d = UnsafeRawPointer(dInput + i).loadUnaligned(as: SIMD8<Float>.self)
        let masked = g.replacing(with: zero, where: .!(y .> zero))
        UnsafeMutableRawPointer(dInput + i).storeBytes(of: d + masked, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        if output[i] > 0 { dInput[i] += dOutput[i] }
        i += 1
    }
}

/// Zeroes `dOutput` where the forward output was not positive (in-place ReLU backward, used
/// when a ReLU is fused after BatchNorm or an add and shares its tensor).
public func reluMaskInPlace(
    dOutput: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int
) {
    // Explicit SIMD: the scalar form compiles to a compare-and-branch per element.
    let zero = SIMD8<Float>()
    var i = 0
    while i + 8 <= count {
        let y = UnsafeRawPointer(output + i).loadUnaligned(as: SIMD8<Float>.self)
        let g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dOutput + i).storeBytes(
            of: g.replacing(with: zero, where: .!(y .> zero)), as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        if !(output[i] > 0) { dOutput[i] = 0 }
        i += 1
    }
}

/// Residual add: `output = a + b`, then `max(·, 0)` when `relu` (one pass).
public func addForward(
    output: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    count: Int, relu: Bool = false
) {
    let zero = SIMD8<Float>()
    var i = 0
    while i + 8 <= count {
        var v =
            UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            + UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        if relu { v = v.replacing(with: zero, where: .!(v .> zero)) }
        UnsafeMutableRawPointer(output + i).storeBytes(of: v, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        let v = a[i] + b[i]
        output[i] = relu && !(v > 0) ? 0 : v
        i += 1
    }
}

/// Residual add backward. ACCUMULATES `dOutput` into both `dA` and `dB` (STORES into those
/// flagged `overwriteA`/`overwriteB`: buffers that hold nothing yet; never set both when `dA`
/// and `dB` are the same buffer); with `reluOutput` (the forward output of a fused add → ReLU)
/// the gradient is first masked by `output > 0`, in the same pass.
public func addBackward(
    dA: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
    dOutput: UnsafePointer<Float>, count: Int, reluOutput: UnsafePointer<Float>? = nil,
    overwriteA: Bool = false, overwriteB: Bool = false
) {
    let zero = SIMD8<Float>()
    var i = 0
    while i + 8 <= count {
        var g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: SIMD8<Float>.self)
        if let y = reluOutput {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            g = g.replacing(with: zero, where: .!(yv .> zero))
        }
        // Load dB only after storing dA: correct even when both are the same buffer (x + x).
        let da = overwriteA ? g : UnsafeRawPointer(dA + i).loadUnaligned(as: SIMD8<Float>.self) + g
        UnsafeMutableRawPointer(dA + i).storeBytes(of: da, as: SIMD8<Float>.self)
        let db = overwriteB ? g : UnsafeRawPointer(dB + i).loadUnaligned(as: SIMD8<Float>.self) + g
        UnsafeMutableRawPointer(dB + i).storeBytes(of: db, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        let g = reluOutput.map { $0[i] > 0 ? dOutput[i] : 0 } ?? dOutput[i]
        dA[i] = overwriteA ? g : dA[i] + g
        dB[i] = overwriteB ? g : dB[i] + g
        i += 1
    }
}
