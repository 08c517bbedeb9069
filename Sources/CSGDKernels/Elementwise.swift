// ReLU and the residual add. ReLU's backward reads the forward OUTPUT (y > 0 ⇔ x > 0), so a
// ReLU may run in place on its input and the graph needs no extra mask buffer.
// Every pass is element-wise: it runs in `FloatLanes` vectors (the scalar form of a masked
// select compiles to a compare-and-branch per element) over cache-line-aligned ranges split
// across `KernelThreads`, bitwise the same for any thread count.

/// `output = max(input, 0)`; `output` may equal `input` (in place).
public func reluForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int
) {
    parallelRanges(count, grain: elementwiseGrain, align: FloatLanes.scalarCount) { r in
        for i in r { output[i] = max(input[i], 0) }
    }
}

/// ReLU backward from the forward output. ACCUMULATES: `dInput += dOutput · [output > 0]`.
public func reluBackward(
    dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
    output: UnsafePointer<Float>, count: Int
) {
    parallelRanges(count, grain: elementwiseGrain, align: FloatLanes.scalarCount) { r in
        let zero = FloatLanes()
        var i = r.lowerBound
        while i + FloatLanes.scalarCount <= r.upperBound {
            let y = UnsafeRawPointer(output + i).loadUnaligned(as: FloatLanes.self)
            let g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: FloatLanes.self)
            let d = UnsafeRawPointer(dInput + i).loadUnaligned(as: FloatLanes.self)
            let masked = g.replacing(with: zero, where: .!(y .> zero))
            UnsafeMutableRawPointer(dInput + i).storeBytes(of: d + masked, as: FloatLanes.self)
            i += FloatLanes.scalarCount
        }
        while i < r.upperBound {
            if output[i] > 0 { dInput[i] += dOutput[i] }
            i += 1
        }
    }
}

/// Zeroes `dOutput` where the forward output was not positive (in-place ReLU backward, used
/// when a ReLU is fused after BatchNorm or an add and shares its tensor).
public func reluMaskInPlace(
    dOutput: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int
) {
    parallelRanges(count, grain: elementwiseGrain, align: FloatLanes.scalarCount) { r in
        let zero = FloatLanes()
        var i = r.lowerBound
        while i + FloatLanes.scalarCount <= r.upperBound {
            let y = UnsafeRawPointer(output + i).loadUnaligned(as: FloatLanes.self)
            let g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: FloatLanes.self)
            UnsafeMutableRawPointer(dOutput + i).storeBytes(
                of: g.replacing(with: zero, where: .!(y .> zero)), as: FloatLanes.self)
            i += FloatLanes.scalarCount
        }
        while i < r.upperBound {
            if !(output[i] > 0) { dOutput[i] = 0 }
            i += 1
        }
    }
}

/// Residual add: `output = a + b`, then `max(·, 0)` when `relu` (one pass).
public func addForward(
    output: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    count: Int, relu: Bool = false
) {
    parallelRanges(count, grain: elementwiseGrain, align: FloatLanes.scalarCount) { r in
        let zero = FloatLanes()
        var i = r.lowerBound
        while i + FloatLanes.scalarCount <= r.upperBound {
            var v =
                UnsafeRawPointer(a + i).loadUnaligned(as: FloatLanes.self)
                + UnsafeRawPointer(b + i).loadUnaligned(as: FloatLanes.self)
            if relu { v = v.replacing(with: zero, where: .!(v .> zero)) }
            UnsafeMutableRawPointer(output + i).storeBytes(of: v, as: FloatLanes.self)
            i += FloatLanes.scalarCount
        }
        while i < r.upperBound {
            let v = a[i] + b[i]
            output[i] = relu && !(v > 0) ? 0 : v
            i += 1
        }
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
    parallelRanges(count, grain: elementwiseGrain, align: FloatLanes.scalarCount) { r in
        let zero = FloatLanes()
        var i = r.lowerBound
        while i + FloatLanes.scalarCount <= r.upperBound {
            var g = UnsafeRawPointer(dOutput + i).loadUnaligned(as: FloatLanes.self)
            if let y = reluOutput {
                let yv = UnsafeRawPointer(y + i).loadUnaligned(as: FloatLanes.self)
                g = g.replacing(with: zero, where: .!(yv .> zero))
            }
            // Load dB only after storing dA: correct even when both are the same buffer (x + x).
            let da =
                overwriteA ? g : UnsafeRawPointer(dA + i).loadUnaligned(as: FloatLanes.self) + g
            UnsafeMutableRawPointer(dA + i).storeBytes(of: da, as: FloatLanes.self)
            let db =
                overwriteB ? g : UnsafeRawPointer(dB + i).loadUnaligned(as: FloatLanes.self) + g
            UnsafeMutableRawPointer(dB + i).storeBytes(of: db, as: FloatLanes.self)
            i += FloatLanes.scalarCount
        }
        while i < r.upperBound {
            let g = reluOutput.map { $0[i] > 0 ? dOutput[i] : 0 } ?? dOutput[i]
            dA[i] = overwriteA ? g : dA[i] + g
            dB[i] = overwriteB ? g : dB[i] + g
            i += 1
        }
    }
}
