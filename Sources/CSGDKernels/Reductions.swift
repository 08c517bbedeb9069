// Vectorised reductions. A plain `for j in 0..<n { s += x[j] }` is a chain of dependent
// scalar adds (LLVM may not reorder float sums), ~4 cycles per element; eight lanes with two
// independent accumulators keep the FMA units busy. The summation order is fixed for a given
// n, so results are deterministic.

/// Σ x[j], j < n.
@inline(__always)
func vsum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var a = SIMD8<Float>()
    var b = SIMD8<Float>()
    var j = 0
    let raw = UnsafeRawPointer(x)
    while j + 16 <= n {
        a += raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
        b += raw.loadUnaligned(fromByteOffset: (j + 8) * 4, as: SIMD8<Float>.self)
        j += 16
    }
    var s = (a + b).sum()
    while j < n {
        s += x[j]
        j += 1
    }
    return s
}

/// (Σ x[j], Σ (x[j] − c)²), j < n.
@inline(__always)
func vsumAndCenteredSquares(_ x: UnsafePointer<Float>, _ n: Int, center c: Float) -> (Float, Float)
{
    var s1 = SIMD8<Float>()
    var s2 = SIMD8<Float>()
    let cv = SIMD8<Float>(repeating: c)
    var j = 0
    let raw = UnsafeRawPointer(x)
    while j + 8 <= n {
        let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
        s1 += v
        let d = v - cv
        s2 += d * d
        j += 8
    }
    var a = s1.sum()
    var b = s2.sum()
    while j < n {
        a += x[j]
        let d = x[j] - c
        b += d * d
        j += 1
    }
    return (a, b)
}

/// (Σ dy[j], Σ dy[j]·(x[j] − c)), j < n.
@inline(__always)
func vsumAndCenteredDot(
    _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, center c: Float
) -> (Float, Float) {
    var s1 = SIMD8<Float>()
    var s2 = SIMD8<Float>()
    let cv = SIMD8<Float>(repeating: c)
    var j = 0
    let rd = UnsafeRawPointer(dy)
    let rx = UnsafeRawPointer(x)
    while j + 8 <= n {
        let g = rd.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
        let v = rx.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
        s1 += g
        s2 += g * (v - cv)
        j += 8
    }
    var a = s1.sum()
    var b = s2.sum()
    while j < n {
        a += dy[j]
        b += dy[j] * (x[j] - c)
        j += 1
    }
    return (a, b)
}
