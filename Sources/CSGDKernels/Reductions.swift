// Vectorised reductions. A plain `for j in 0..<n { s += x[j] }` is a chain of dependent
// scalar adds (LLVM may not reorder float sums), ~4 cycles per element; 16 lanes with two
// independent accumulators keep the vector units busy. The summation order is fixed for a
// given n, so results are deterministic.

/// The vector of our hand-vectorised loops: 16 floats, one AVX-512 register (LLVM splits it
/// into two AVX2 registers where the build target has no AVX-512, which is what the two
/// accumulators below did by hand before).
typealias FloatLanes = SIMD16<Float>

/// Σ x[j], j < n.
@inline(__always)
func vsum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    let w = FloatLanes.scalarCount
    var a = FloatLanes()
    var b = FloatLanes()
    var j = 0
    let raw = UnsafeRawPointer(x)
    while j + 2 * w <= n {
        a += raw.loadUnaligned(fromByteOffset: j * 4, as: FloatLanes.self)
        b += raw.loadUnaligned(fromByteOffset: (j + w) * 4, as: FloatLanes.self)
        j += 2 * w
    }
    if j + w <= n {
        a += raw.loadUnaligned(fromByteOffset: j * 4, as: FloatLanes.self)
        j += w
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
    let w = FloatLanes.scalarCount
    var s1 = FloatLanes()
    var s2 = FloatLanes()
    let cv = FloatLanes(repeating: c)
    var j = 0
    let raw = UnsafeRawPointer(x)
    while j + w <= n {
        let v = raw.loadUnaligned(fromByteOffset: j * 4, as: FloatLanes.self)
        s1 += v
        let d = v - cv
        s2 += d * d
        j += w
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
    let w = FloatLanes.scalarCount
    var s1 = FloatLanes()
    var s2 = FloatLanes()
    let cv = FloatLanes(repeating: c)
    var j = 0
    let rd = UnsafeRawPointer(dy)
    let rx = UnsafeRawPointer(x)
    while j + w <= n {
        let g = rd.loadUnaligned(fromByteOffset: j * 4, as: FloatLanes.self)
        let v = rx.loadUnaligned(fromByteOffset: j * 4, as: FloatLanes.self)
        s1 += g
        s2 += g * (v - cv)
        j += w
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

// Constant lane shuffles for the Winograd transforms (compacting 16 contiguous columns to
// eight tiles, interleaving two tile columns into a plane row), spelled lane by lane; in the
// built code each is one vpermps / vpermt2ps.

/// Lanes 0, 2, …, 14 of `v`.
@inline(__always)
func evenLanes(_ v: SIMD16<Float>) -> SIMD8<Float> {
    SIMD8(v[0], v[2], v[4], v[6], v[8], v[10], v[12], v[14])
}

/// Lanes 1, 3, …, 15 of `v`.
@inline(__always)
func oddLanes(_ v: SIMD16<Float>) -> SIMD8<Float> {
    SIMD8(v[1], v[3], v[5], v[7], v[9], v[11], v[13], v[15])
}

/// Lanes a0 b0 a1 b1 … a7 b7: even lanes from `a`, odd lanes from `b`.
@inline(__always)
func interleave(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD16<Float> {
    SIMD16(
        a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6],
        a[7], b[7])
}
