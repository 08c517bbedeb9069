// Winograd F(4×4, 3×3): the same computation as Winograd.swift's F(2×2, 3×3) with 6×6 input
// tiles stepping by 4 (interpolation points 0, ±1, ±2, ∞):
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
//   G  = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1]
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
// 36 GEMMs per chunk for 16 outputs per tile, against F(2×2)'s 16 for 4: 2.25× fewer
// transform points and GEMM flops per output, at a larger rounding error (the transforms
// multiply by up to 8 and divide by 6 and 24; KernelWinogradTests bounds it exactly).
//
// Vector layout (eight tiles per 8-lane vector: of one tile row, or, on planes four or two
// tiles wide, of two or four tile rows — `forEachVectorGroup`; each layout is its own loop):
// - input side: the 1-D transform down the tile's six plane rows runs first, on contiguous
//   columns (every lane useful), then a lane gather (`phase`, `quad`) gives column k of each
//   of the eight tiles and the transform across runs lane-wise. Columns 4 and 5 of a tile are
//   columns 0 and 1 of the next (`nextTile`, `nextColumns`); the last tile of a row takes them
//   from an 8-wide tail load.
// - output side: both 1-D transforms lane-wise on eight tiles, the first pass through a small
//   stack buffer (36 live vectors would spill), then a 4-way interleave writes 32 contiguous
//   plane columns.

import CSGDCore

private typealias Six<V> = (V, V, V, V, V, V)
private typealias V8 = SIMD8<Float>
private typealias V16 = SIMD16<Float>

// The 1-D transforms are written per concrete vector type, not generically over `SIMD`: in a
// generic function the operators resolve to the protocol's element-by-element versions, which
// specialisation does not turn back into vector instructions (a generic first version ran
// 6× slower than im2col, spilling every lane through the stack; perf, 2026-11-26).

/// 1-D Bᵀ (6 → 6), lane-wise on eight lanes.
@inline(__always)
private func bt6(_ d: Six<V8>) -> Six<V8> {
    let s = d.4 - d.2
    let t = 2 * (d.3 - d.1)
    let p = d.4 + d.3
    let q = 4 * (d.1 + d.2)
    let r = d.4 - d.3
    let w = 4 * (d.1 - d.2)
    return (4 * d.0 - 5 * d.2 + d.4, p - q, r + w, s + t, s - t, 4 * d.1 - 5 * d.3 + d.5)
}

/// 1-D Bᵀ on sixteen lanes (the same arithmetic as the eight-lane form).
@inline(__always)
private func bt6(_ d: Six<V16>) -> Six<V16> {
    let s = d.4 - d.2
    let t = 2 * (d.3 - d.1)
    let p = d.4 + d.3
    let q = 4 * (d.1 + d.2)
    let r = d.4 - d.3
    let w = 4 * (d.1 - d.2)
    return (4 * d.0 - 5 * d.2 + d.4, p - q, r + w, s + t, s - t, 4 * d.1 - 5 * d.3 + d.5)
}

/// 1-D B (6 → 6), the adjoint of `bt6`.
@inline(__always)
private func b6(_ e: Six<V8>) -> Six<V8> {
    let s12 = e.1 + e.2
    let s34 = e.3 + e.4
    return (
        4 * e.0,
        4 * (e.2 - e.1) + 2 * (e.4 - e.3) + 4 * e.5,
        -5 * e.0 - 4 * s12 - s34,
        (e.1 - e.2) + 2 * (e.3 - e.4) - 5 * e.5,
        e.0 + s12 + s34,
        e.5
    )
}

/// 1-D Aᵀ (6 → 4), lane-wise.
@inline(__always)
private func at6(_ m: Six<V8>) -> (V8, V8, V8, V8) {
    let a = m.1 + m.2
    let b = m.1 - m.2
    let c = m.3 + m.4
    let d = m.3 - m.4
    return (m.0 + a + c, b + 2 * d, a + 4 * c, b + 8 * d + m.5)
}

/// 1-D A (4 → 6), the adjoint of `at6`.
@inline(__always)
private func a6(_ y0: V8, _ y1: V8, _ y2: V8, _ y3: V8) -> Six<V8> {
    let e = y0 + y2
    let o = y1 + y3
    let e4 = y0 + 4 * y2
    let o4 = 2 * y1 + 8 * y3
    return (y0, e + o, e - o, e4 + o4, e4 - o4, y3)
}

/// 1-D A on sixteen lanes (the same arithmetic as the eight-lane form).
@inline(__always)
private func a6(_ y0: V16, _ y1: V16, _ y2: V16, _ y3: V16) -> Six<V16> {
    let e = y0 + y2
    let o = y1 + y3
    let e4 = y0 + 4 * y2
    let o4 = 2 * y1 + 8 * y3
    return (y0, e + o, e - o, e4 + o4, e4 - o4, y3)
}

/// 1-D G (3 → 6), lane-wise; divisions rather than multiplications by rounded reciprocals.
@inline(__always)
private func g6(_ g0: V8, _ g1: V8, _ g2: V8) -> Six<V8> {
    let even = g0 + g2
    let e24 = g0 / 24 + g2 / 6
    let o12 = g1 / 12
    return (g0 / 4, -(even + g1) / 6, -(even - g1) / 6, e24 + o12, e24 - o12, g2)
}

/// 1-D Gᵀ (6 → 3), the adjoint of `g6`.
@inline(__always)
private func gt6(_ u: Six<V8>) -> (V8, V8, V8) {
    let s12 = (u.1 + u.2) / 6
    let d12 = (u.2 - u.1) / 6
    let s34 = u.3 + u.4
    let d34 = u.3 - u.4
    return (u.0 / 4 - s12 + s34 / 24, d12 + d34 / 12, s34 / 6 - s12 + u.5)
}

/// U[ξ][k][c] = (G g Gᵀ)[ξ], ξ = 6i + j, for every filter g = weight[k, c]; eight filters at
/// a time, one per lane (U's filters are contiguous, so each point is one 8-wide store).
@inline(never)
func winograd4FilterTransform(
    _ u: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>, k: Int, c: Int
) {
    let kc = k * c
    var f0 = 0
    while f0 < kc {
        let n = min(8, kc - f0)
        let w = weight + f0 * 9
        // Entry e (= 3r + s) of the n filters, one per lane.
        func entry(_ e: Int) -> V8 {
            var v = V8()
            for l in 0..<n { v[l] = w[9 * l + e] }
            return v
        }
        // t = G g, one filter column s at a time: t_s.i = t[i][s].
        let t0 = g6(entry(0), entry(3), entry(6))
        let t1 = g6(entry(1), entry(4), entry(7))
        let t2 = g6(entry(2), entry(5), entry(8))
        // U = t Gᵀ: row i of t through G gives points (i, 0…5).
        func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) {
            let r = g6(a, b, c)
            let dst = u + 6 * i * kc + f0
            storeLanes(r.0, dst, n)
            storeLanes(r.1, dst + kc, n)
            storeLanes(r.2, dst + 2 * kc, n)
            storeLanes(r.3, dst + 3 * kc, n)
            storeLanes(r.4, dst + 4 * kc, n)
            storeLanes(r.5, dst + 5 * kc, n)
        }
        row(0, t0.0, t1.0, t2.0)
        row(1, t0.1, t1.1, t2.1)
        row(2, t0.2, t1.2, t2.2)
        row(3, t0.3, t1.3, t2.3)
        row(4, t0.4, t1.4, t2.4)
        row(5, t0.5, t1.5, t2.5)
        f0 += 8
    }
}

/// dW[k, c] += Gᵀ dU G (the adjoint of `winograd4FilterTransform`), dU laid out like U; eight
/// filters at a time.
@inline(never)
func winograd4FilterGradient(
    _ dWeight: UnsafeMutablePointer<Float>, _ du: UnsafePointer<Float>, k: Int, c: Int
) {
    let kc = k * c
    var f0 = 0
    while f0 < kc {
        let n = min(8, kc - f0)
        func point(_ xi: Int) -> V8 { loadLanes(du + xi * kc + f0, n) }
        // Gᵀ down each column j of dU: T_j.r = (Gᵀ dU)[r][j].
        func down(_ j: Int) -> (V8, V8, V8) {
            gt6(
                (point(j), point(6 + j), point(12 + j), point(18 + j), point(24 + j), point(30 + j))
            )
        }
        let t = (down(0), down(1), down(2), down(3), down(4), down(5))
        // Then across row r: dW[r][s] = (T G)[r][s].
        let w0 = gt6((t.0.0, t.1.0, t.2.0, t.3.0, t.4.0, t.5.0))
        let w1 = gt6((t.0.1, t.1.1, t.2.1, t.3.1, t.4.1, t.5.1))
        let w2 = gt6((t.0.2, t.1.2, t.2.2, t.3.2, t.4.2, t.5.2))
        for l in 0..<n {
            let g = dWeight + (f0 + l) * 9
            g[0] += w0.0[l]
            g[1] += w0.1[l]
            g[2] += w0.2[l]
            g[3] += w1.0[l]
            g[4] += w1.1[l]
            g[5] += w1.2[l]
            g[6] += w2.0[l]
            g[7] += w2.1[l]
            g[8] += w2.2[l]
        }
        f0 += 8
    }
}

/// Lanes k, k + 4, k + 8, k + 12 of `lo`, then of `hi`: column k of eight 4-apart tiles
/// whose 32 plane columns are `lo` and `hi`.
@inline(__always)
private func phase(_ lo: V16, _ hi: V16, _ k: Int) -> V8 {
    V8(lo[k], lo[k + 4], lo[k + 8], lo[k + 12], hi[k], hi[k + 4], hi[k + 8], hi[k + 12])
}

/// Lanes c1, …, c7, x: tile t + 1's value for tile t, `x` for the last.
@inline(__always)
private func nextTile(_ c: V8, _ x: Float) -> V8 {
    V8(c[1], c[2], c[3], c[4], c[5], c[6], c[7], x)
}

/// Lanes a0 b0 c0 d0 a1 b1 c1 d1 … a7 b7 c7 d7 as two 16-lane halves: lane 4t + i from the
/// i-th argument's lane t.
@inline(__always)
private func interleave4(_ a: V8, _ b: V8, _ c: V8, _ d: V8) -> (V16, V16) {
    let ac = interleave(a, c)
    let bd = interleave(b, d)
    return (
        interleave(ac.lowHalf, bd.lowHalf), interleave(ac.highHalf, bd.highHalf)
    )
}

/// Stores the first `count` of the 32 lanes `lo`, `hi` at `p`, whole vectors where they fit.
@inline(__always)
private func storeColumns(
    _ v: (V16, V16), _ p: UnsafeMutablePointer<Float>, _ count: Int
) {
    let raw = UnsafeMutableRawPointer(p)
    if count >= 16 {
        raw.storeBytes(of: v.0, as: V16.self)
        if count == 32 {
            (raw + 64).storeBytes(of: v.1, as: V16.self)
        } else {
            for x in 16..<count { p[x] = v.1[x - 16] }
        }
    } else {
        for x in 0..<count { p[x] = v.0[x] }
    }
}

/// Lanes k, k + 4 of each of `a`, `b`, `c`, `d`: column k of two 4-apart tiles in each of
/// four tile rows (planes two F(4×4) tiles wide).
@inline(__always)
private func quad(_ a: V16, _ b: V16, _ c: V16, _ d: V16, _ k: Int) -> V8 {
    V8(a[k], a[k + 4], b[k], b[k + 4], c[k], c[k + 4], d[k], d[k + 4])
}

/// Columns 4 and 5 of four tiles in each of two tile rows (lanes 0…3, 4…7), from their
/// columns 0 and 1 (`c0`, `c1`): tile t's are tile t + 1's, except for the last tile of each
/// row (lanes 3 and 7), which take lanes 0 and 1 of that row's tail (`ea`, `eb`).
@inline(__always)
private func nextColumns(_ c0: V8, _ c1: V8, _ ea: V8, _ eb: V8) -> (V8, V8) {
    (
        V8(c0[1], c0[2], c0[3], ea[0], c0[5], c0[6], c0[7], eb[0]),
        V8(c1[1], c1[2], c1[3], ea[1], c1[5], c1[6], c1[7], eb[1])
    )
}

/// Stores the six transformed points (i, 0…5) of a group of tiles: point ξ to
/// `dst + ξ·stride`.
@inline(__always)
private func storePoints(
    _ o: Six<V8>, _ dst: UnsafeMutablePointer<Float>, _ stride: Int, _ i: Int, _ n: Int
) {
    storeLanes(o.0, dst + 6 * i * stride, n)
    storeLanes(o.1, dst + (6 * i + 1) * stride, n)
    storeLanes(o.2, dst + (6 * i + 2) * stride, n)
    storeLanes(o.3, dst + (6 * i + 3) * stride, n)
    storeLanes(o.4, dst + (6 * i + 4) * stride, n)
    storeLanes(o.5, dst + (6 * i + 5) * stride, n)
}

/// `p[0..<16] += v` (unaligned).
@inline(__always)
private func add16(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    let raw = UnsafeMutableRawPointer(p)
    raw.storeBytes(of: raw.loadUnaligned(as: V16.self) + v, as: V16.self)
}

/// `p[0..<8] += v` (unaligned).
@inline(__always)
private func add8(_ v: V8, _ p: UnsafeMutablePointer<Float>) {
    let raw = UnsafeMutableRawPointer(p)
    raw.storeBytes(of: raw.loadUnaligned(as: V8.self) + v, as: V8.self)
}

extension WinogradPlan {
    /// Calls `body(ti, j0, n)` for every group of up to eight tiles that one 8-lane vector
    /// holds: tiles ti·tilesW + j0 ..< + n, consecutive in V's tile order. Planes four or two
    /// F(4×4) tiles wide put two or four tile rows in one vector (`rowsPerVector`), so their
    /// lanes are full; others take eight tiles of one tile row at a time.
    /// `rows` is `rowsPerVector`, passed as a constant so that each layout's loop is compiled
    /// on its own.
    @inline(__always)
    func forEachVectorGroup(rows: Int, _ body: (_ ti: Int, _ j0: Int, _ n: Int) -> Void) {
        if rows > 1 {
            var ti = 0
            while ti < tilesH {
                body(ti, 0, min(rows, tilesH - ti) * tilesW)
                ti += rows
            }
            return
        }
        for ti in 0..<tilesH {
            var j0 = 0
            while j0 < tilesW {
                body(ti, j0, min(8, tilesW - j0))
                j0 += 8
            }
        }
    }

    /// V for images n0..<n0+nb (F(4×4)): V[ξ][c][t], ξ = 6i + j.
    @inline(never)
    func inputTransform4(
        _ v: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
        _ plane: UnsafeMutablePointer<Float>, n0: Int, nb: Int
    ) {
        let g = shape
        let tiles = nb * tilesPerImage
        let ct = g.c * tiles
        forEachPlane(nb * g.c, scratch: plane) { ic, plane in
            let (i, c) = (ic / g.c, ic % g.c)
            fillPlane(plane, from: input + ((n0 + i) * g.c + c) * g.h * g.w)
            let vc = v + c * tiles + i * tilesPerImage
            switch rowsPerVector {
            case 4: inputPlaneQuads(vc, plane, ct)
            case 2: inputPlanePairs(vc, plane, ct)
            default: inputPlaneRows(vc, plane, ct)
            }
        }
    }

    /// `inputTransform4` of one plane, eight tiles of one tile row per vector.
    @inline(never)
    func inputPlaneRows(
        _ vc: UnsafeMutablePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ ct: Int
    ) {
        for ti in 0..<tilesH {
            var j0 = 0
            while j0 < tilesW {
                let n = min(8, tilesW - j0)
                let raw = UnsafeRawPointer(plane + 4 * ti * planeW + 4 * j0)
                func row(_ r: Int, _ x: Int) -> V16 {
                    raw.loadUnaligned(fromByteOffset: 4 * (r * planeW + x), as: V16.self)
                }
                func tail(_ r: Int) -> V8 {
                    raw.loadUnaligned(fromByteOffset: 4 * (r * planeW + 32), as: V8.self)
                }
                // Bᵀ down the six rows on 32 contiguous columns (two halves) and the
                // 2-column tail (lanes 0 and 1 of an 8-wide load).
                let lo = bt6((row(0, 0), row(1, 0), row(2, 0), row(3, 0), row(4, 0), row(5, 0)))
                let hi = bt6(
                    (row(0, 16), row(1, 16), row(2, 16), row(3, 16), row(4, 16), row(5, 16)))
                let e = bt6((tail(0), tail(1), tail(2), tail(3), tail(4), tail(5)))
                let dst = vc + ti * tilesW + j0
                // Then Bᵀ across, per transformed row: eight tiles per lane-wise step.
                func across(_ lo: V16, _ hi: V16, _ e: V8, _ r: Int) {
                    let c0 = phase(lo, hi, 0)
                    let c1 = phase(lo, hi, 1)
                    let o = bt6(
                        (
                            c0, c1, phase(lo, hi, 2), phase(lo, hi, 3), nextTile(c0, e[0]),
                            nextTile(c1, e[1])
                        ))
                    storePoints(o, dst, ct, r, n)
                }
                across(lo.0, hi.0, e.0, 0)
                across(lo.1, hi.1, e.1, 1)
                across(lo.2, hi.2, e.2, 2)
                across(lo.3, hi.3, e.3, 3)
                across(lo.4, hi.4, e.4, 4)
                across(lo.5, hi.5, e.5, 5)
                j0 += 8
            }
        }
    }

    /// `inputTransform4` of one plane four tiles wide: four tiles in each of two tile rows per
    /// vector (16 columns and a tail from column 16 of each).
    @inline(never)
    func inputPlanePairs(
        _ vc: UnsafeMutablePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ ct: Int
    ) {
        var ti = 0
        while ti < tilesH {
            let n = min(2, tilesH - ti) * tilesW
            let raw = UnsafeRawPointer(plane + 4 * ti * planeW)
            func row(_ r: Int) -> V16 {
                raw.loadUnaligned(fromByteOffset: 4 * r * planeW, as: V16.self)
            }
            func tail(_ r: Int) -> V8 {
                raw.loadUnaligned(fromByteOffset: 4 * (r * planeW + 16), as: V8.self)
            }
            let a = bt6((row(0), row(1), row(2), row(3), row(4), row(5)))
            let b = bt6((row(4), row(5), row(6), row(7), row(8), row(9)))
            let ea = bt6((tail(0), tail(1), tail(2), tail(3), tail(4), tail(5)))
            let eb = bt6((tail(4), tail(5), tail(6), tail(7), tail(8), tail(9)))
            let dst = vc + ti * tilesW
            func across(_ a: V16, _ b: V16, _ ea: V8, _ eb: V8, _ r: Int) {
                let c0 = phase(a, b, 0)
                let c1 = phase(a, b, 1)
                let (c4, c5) = nextColumns(c0, c1, ea, eb)
                storePoints(bt6((c0, c1, phase(a, b, 2), phase(a, b, 3), c4, c5)), dst, ct, r, n)
            }
            across(a.0, b.0, ea.0, eb.0, 0)
            across(a.1, b.1, ea.1, eb.1, 1)
            across(a.2, b.2, ea.2, eb.2, 2)
            across(a.3, b.3, ea.3, eb.3, 3)
            across(a.4, b.4, ea.4, eb.4, 4)
            across(a.5, b.5, ea.5, eb.5, 5)
            ti += 2
        }
    }

    /// `inputTransform4` of one plane two tiles wide: two tiles in each of four tile rows per
    /// vector (columns 0…9 of each, in one 16-wide load).
    @inline(never)
    func inputPlaneQuads(
        _ vc: UnsafeMutablePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ ct: Int
    ) {
        var ti = 0
        while ti < tilesH {
            let n = min(4, tilesH - ti) * tilesW
            let raw = UnsafeRawPointer(plane + 4 * ti * planeW)
            func down(_ y: Int) -> Six<V16> {
                func row(_ r: Int) -> V16 {
                    raw.loadUnaligned(fromByteOffset: 4 * (y + r) * planeW, as: V16.self)
                }
                return bt6((row(0), row(1), row(2), row(3), row(4), row(5)))
            }
            let a = down(0)
            let b = down(4)
            let c = down(8)
            let d = down(12)
            let dst = vc + ti * tilesW
            func across(_ a: V16, _ b: V16, _ c: V16, _ d: V16, _ r: Int) {
                let o = bt6(
                    (
                        quad(a, b, c, d, 0), quad(a, b, c, d, 1), quad(a, b, c, d, 2),
                        quad(a, b, c, d, 3), quad(a, b, c, d, 4), quad(a, b, c, d, 5)
                    ))
                storePoints(o, dst, ct, r, n)
            }
            across(a.0, b.0, c.0, d.0, 0)
            across(a.1, b.1, c.1, d.1, 1)
            across(a.2, b.2, c.2, d.2, 2)
            across(a.3, b.3, c.3, d.3, 3)
            across(a.4, b.4, c.4, d.4, 4)
            across(a.5, b.5, c.5, d.5, 5)
            ti += 4
        }
    }

    /// output[n0..<n0+nb] = Aᵀ M A per tile (F(4×4)), cropped to P×Q.
    @inline(never)
    func outputTransform4(
        _ output: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, n0: Int, nb: Int
    ) {
        let g = shape
        let tiles = nb * tilesPerImage
        let kt = g.k * tiles
        parallelForEach(nb * g.k, elementsEach: points * tilesPerImage) { ik in
            let (i, k) = (ik / g.k, ik % g.k)
            let out = output + ((n0 + i) * g.k + k) * g.p * g.q
            let mk = m + k * tiles + i * tilesPerImage
            switch rowsPerVector {
            case 4: outputPlane4(out, mk, kt)
            case 2: outputPlane2(out, mk, kt)
            default: outputPlane1(out, mk, kt)
            }
        }
    }

    // One copy of `outputPlane` per layout (see `forEachVectorGroup`).
    @inline(never)
    func outputPlane1(_ out: UnsafeMutablePointer<Float>, _ mk: UnsafePointer<Float>, _ kt: Int) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 24) { tmp in
            outputPlane(out, mk, kt, tmp.baseAddress!, rows: 1)
        }
    }
    @inline(never)
    func outputPlane2(_ out: UnsafeMutablePointer<Float>, _ mk: UnsafePointer<Float>, _ kt: Int) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 24) { tmp in
            outputPlane(out, mk, kt, tmp.baseAddress!, rows: 2)
        }
    }
    @inline(never)
    func outputPlane4(_ out: UnsafeMutablePointer<Float>, _ mk: UnsafePointer<Float>, _ kt: Int) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 24) { tmp in
            outputPlane(out, mk, kt, tmp.baseAddress!, rows: 4)
        }
    }

    /// `outputTransform4` of one output plane `out` from its tiles' M at `mk`.
    @inline(__always)
    fileprivate func outputPlane(
        _ out: UnsafeMutablePointer<Float>, _ mk: UnsafePointer<Float>, _ kt: Int,
        _ tmp: UnsafeMutablePointer<V8>, rows: Int
    ) {
        let g = shape
        forEachVectorGroup(rows: rows) { ti, j0, n in
            let src = mk + ti * tilesW + j0
            // Aᵀ down each column j of the tiles: tmp[4j + a] = row a.
            for j in 0..<6 {
                let s = at6(
                    (
                        loadLanes(src + j * kt, n), loadLanes(src + (6 + j) * kt, n),
                        loadLanes(src + (12 + j) * kt, n), loadLanes(src + (18 + j) * kt, n),
                        loadLanes(src + (24 + j) * kt, n), loadLanes(src + (30 + j) * kt, n)
                    ))
                tmp[4 * j] = s.0
                tmp[4 * j + 1] = s.1
                tmp[4 * j + 2] = s.2
                tmp[4 * j + 3] = s.3
            }
            // Then across each output row, written as 4n contiguous columns (or, for
            // grouped tile rows, 16 or 8 columns in each of their rows).
            for a in 0..<4 {
                let r = at6(
                    (
                        tmp[a], tmp[4 + a], tmp[8 + a], tmp[12 + a], tmp[16 + a],
                        tmp[20 + a]
                    ))
                let cols = interleave4(r.0, r.1, r.2, r.3)
                // Output row a of tile row ti + ρ, or nil past the tiles or P.
                func row(_ rho: Int) -> UnsafeMutablePointer<Float>? {
                    let y = 4 * (ti + rho) + a
                    return ti + rho < tilesH && y < g.p ? out + y * g.q + 4 * j0 : nil
                }
                switch rows {
                case 4:
                    let width = min(8, g.q)
                    if let p = row(0) { storeLanes(cols.0.lowHalf, p, width) }
                    if let p = row(1) { storeLanes(cols.0.highHalf, p, width) }
                    if let p = row(2) { storeLanes(cols.1.lowHalf, p, width) }
                    if let p = row(3) { storeLanes(cols.1.highHalf, p, width) }
                case 2:
                    let width = min(16, g.q)
                    if let p = row(0) { storeColumns((cols.0, cols.0), p, width) }
                    if let p = row(1) { storeColumns((cols.1, cols.1), p, width) }
                default:
                    if let p = row(0) {
                        storeColumns(cols, p, min(4 * n, g.q - 4 * j0))
                    }
                }
            }
        }
    }

    /// Ỹ[ξ][k][t] = (A dy Aᵀ)[ξ] for images n0..<n0+nb (F(4×4); dy zero beyond P×Q).
    @inline(never)
    func outputGradientTransform4(
        _ m: UnsafeMutablePointer<Float>, _ dOutput: UnsafePointer<Float>,
        _ plane: UnsafeMutablePointer<Float>, n0: Int, nb: Int
    ) {
        let g = shape
        let tiles = nb * tilesPerImage
        let kt = g.k * tiles
        forEachPlane(nb * g.k, scratch: plane) { ik, plane in
            let (i, k) = (ik / g.k, ik % g.k)
            let src = dOutput + ((n0 + i) * g.k + k) * g.p * g.q
            fillOutputGradientPlane(plane, from: src)
            let mk = m + k * tiles + i * tilesPerImage
            switch rowsPerVector {
            case 4: outputGradientPlaneQuads(mk, plane, kt)
            default: outputGradientPlaneRows(mk, plane, kt)
            }
        }
    }

    /// `outputGradientTransform4` of one plane: eight tiles of one tile row per vector, or
    /// four in each of two tile rows (planes four tiles wide).
    @inline(never)
    func outputGradientPlaneRows(
        _ mk: UnsafeMutablePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ kt: Int
    ) {
        let pairs = rowsPerVector == 2
        forEachVectorGroup(rows: pairs ? 2 : 1) { ti, j0, n in
            // Tiles do not overlap here: A down the four rows on 32 contiguous
            // columns (or 16 columns of two tile rows), then a 4-way gather and A across.
            let raw = UnsafeRawPointer(plane + 4 * ti * planeW + 4 * j0)
            func row(_ r: Int, _ x: Int) -> V16 {
                raw.loadUnaligned(fromByteOffset: 4 * (r * planeW + x), as: V16.self)
            }
            let lo = a6(row(0, 0), row(1, 0), row(2, 0), row(3, 0))
            let hi =
                pairs
                ? a6(row(4, 0), row(5, 0), row(6, 0), row(7, 0))
                : a6(row(0, 16), row(1, 16), row(2, 16), row(3, 16))
            let dst = mk + ti * tilesW + j0
            func across(_ lo: V16, _ hi: V16, _ r: Int) {
                let o = a6(
                    phase(lo, hi, 0), phase(lo, hi, 1), phase(lo, hi, 2), phase(lo, hi, 3))
                storePoints(o, dst, kt, r, n)
            }
            across(lo.0, hi.0, 0)
            across(lo.1, hi.1, 1)
            across(lo.2, hi.2, 2)
            across(lo.3, hi.3, 3)
            across(lo.4, hi.4, 4)
            across(lo.5, hi.5, 5)
        }
    }

    /// `outputGradientTransform4` of one plane two tiles wide: two tiles in each of four tile
    /// rows per vector.
    @inline(never)
    func outputGradientPlaneQuads(
        _ mk: UnsafeMutablePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ kt: Int
    ) {
        var ti = 0
        while ti < tilesH {
            let n = min(4, tilesH - ti) * tilesW
            let raw = UnsafeRawPointer(plane + 4 * ti * planeW)
            func down(_ y: Int) -> Six<V16> {
                func row(_ r: Int) -> V16 {
                    raw.loadUnaligned(fromByteOffset: 4 * (y + r) * planeW, as: V16.self)
                }
                return a6(row(0), row(1), row(2), row(3))
            }
            let a = down(0)
            let b = down(4)
            let c = down(8)
            let d = down(12)
            let dst = mk + ti * tilesW
            func across(_ a: V16, _ b: V16, _ c: V16, _ d: V16, _ r: Int) {
                let o = a6(
                    quad(a, b, c, d, 0), quad(a, b, c, d, 1), quad(a, b, c, d, 2),
                    quad(a, b, c, d, 3))
                storePoints(o, dst, kt, r, n)
            }
            across(a.0, b.0, c.0, d.0, 0)
            across(a.1, b.1, c.1, d.1, 1)
            across(a.2, b.2, c.2, d.2, 2)
            across(a.3, b.3, c.3, d.3, 3)
            across(a.4, b.4, c.4, d.4, 4)
            across(a.5, b.5, c.5, d.5, 5)
            ti += 4
        }
    }

    /// dInput[n0..<n0+nb] += B dV Bᵀ per tile (F(4×4)), overlapping tiles summed, padding
    /// dropped.
    @inline(never)
    func inputGradientTransform4(
        _ dInput: UnsafeMutablePointer<Float>, _ dv: UnsafePointer<Float>,
        _ plane: UnsafeMutablePointer<Float>, n0: Int, nb: Int
    ) {
        let g = shape
        let tiles = nb * tilesPerImage
        let ct = g.c * tiles
        forEachPlane(nb * g.c, scratch: plane) { ic, plane in
            let (i, c) = (ic / g.c, ic % g.c)
            plane.update(repeating: 0, count: planeH * planeW)
            let vc = dv + c * tiles + i * tilesPerImage
            switch rowsPerVector {
            case 4: inputGradientPlane4(plane, vc, ct)
            case 2: inputGradientPlane2(plane, vc, ct)
            default: inputGradientPlane1(plane, vc, ct)
            }
            addPlaneInterior(plane, to: dInput + ((n0 + i) * g.c + c) * g.h * g.w)
        }
    }

    // One copy of `inputGradientPlane` per layout (see `forEachVectorGroup`).
    @inline(never)
    func inputGradientPlane1(
        _ plane: UnsafeMutablePointer<Float>, _ vc: UnsafePointer<Float>, _ ct: Int
    ) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 36) { tmp in
            inputGradientPlane(plane, vc, ct, tmp.baseAddress!, rows: 1)
        }
    }
    @inline(never)
    func inputGradientPlane2(
        _ plane: UnsafeMutablePointer<Float>, _ vc: UnsafePointer<Float>, _ ct: Int
    ) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 36) { tmp in
            inputGradientPlane(plane, vc, ct, tmp.baseAddress!, rows: 2)
        }
    }
    @inline(never)
    func inputGradientPlane4(
        _ plane: UnsafeMutablePointer<Float>, _ vc: UnsafePointer<Float>, _ ct: Int
    ) {
        withUnsafeTemporaryAllocation(of: V8.self, capacity: 36) { tmp in
            inputGradientPlane(plane, vc, ct, tmp.baseAddress!, rows: 4)
        }
    }

    /// `inputGradientTransform4`'s B dV Bᵀ of one plane's tiles (dV at `vc`), added into the
    /// zeroed scratch `plane`.
    @inline(__always)
    fileprivate func inputGradientPlane(
        _ plane: UnsafeMutablePointer<Float>, _ vc: UnsafePointer<Float>, _ ct: Int,
        _ tmp: UnsafeMutablePointer<V8>, rows: Int
    ) {
        forEachVectorGroup(rows: rows) { ti, j0, n in
            let src = vc + ti * tilesW + j0
            // B down each column j: tmp[6r + j] = row r.
            for j in 0..<6 {
                let s = b6(
                    (
                        loadLanes(src + j * ct, n), loadLanes(src + (6 + j) * ct, n),
                        loadLanes(src + (12 + j) * ct, n), loadLanes(src + (18 + j) * ct, n),
                        loadLanes(src + (24 + j) * ct, n), loadLanes(src + (30 + j) * ct, n)
                    ))
                tmp[j] = s.0
                tmp[6 + j] = s.1
                tmp[12 + j] = s.2
                tmp[18 + j] = s.3
                tmp[24 + j] = s.4
                tmp[30 + j] = s.5
            }
            // Then B across each of the six rows, added into the plane.
            for r in 0..<6 {
                let s = b6(
                    (
                        tmp[6 * r], tmp[6 * r + 1], tmp[6 * r + 2], tmp[6 * r + 3],
                        tmp[6 * r + 4], tmp[6 * r + 5]
                    ))
                let p = plane + (4 * ti + r) * planeW + 4 * j0
                switch rows {
                case 4: addRows4(s, p, planeW, n)
                case 2: addRows2(s, p, planeW, n)
                default: addRow4(s, p, n)
                }
            }
        }
    }
}

/// Adds one row of n 6-wide tiles (overlapping by 2) into the plane row at `p`: tile t covers
/// p[4t..<4t+6], so p[4t] gets s.0[t] + s.4[t − 1] and p[4t + 1] gets s.1[t] + s.5[t − 1];
/// the last tile's columns 4 and 5 spill past the 4n columns.
@inline(__always)
private func addRow4(_ s: Six<V8>, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 8 || n == 4 {
        let sum = interleave4(s.0 + shiftUp(s.4), s.1 + shiftUp(s.5), s.2, s.3)
        add16(sum.0, p)
        if n == 8 { add16(sum.1, p + 16) }
        p[4 * n] += s.4[n - 1]
        p[4 * n + 1] += s.5[n - 1]
        return
    }
    for t in 0..<n {
        p[4 * t] += s.0[t]
        p[4 * t + 1] += s.1[t]
        p[4 * t + 2] += s.2[t]
        p[4 * t + 3] += s.3[t]
        p[4 * t + 4] += s.4[t]
        p[4 * t + 5] += s.5[t]
    }
}

/// `addRow4` for four tiles in each of two tile rows (lanes 0…3 and 4…7): the same row of
/// both tile rows, `rowStride`·4 floats apart; n = 4 leaves the second alone.
@inline(__always)
private func addRows2(_ s: Six<V8>, _ p: UnsafeMutablePointer<Float>, _ rowStride: Int, _ n: Int) {
    // Tile t + 1's columns 4, 5 overlap tile t's 0, 1 only within a tile row.
    func shift(_ x: V8) -> V8 { V8(0, x[0], x[1], x[2], 0, x[4], x[5], x[6]) }
    let sum = interleave4(s.0 + shift(s.4), s.1 + shift(s.5), s.2, s.3)
    add16(sum.0, p)
    p[16] += s.4[3]
    p[17] += s.5[3]
    if n > 4 {
        let q = p + 4 * rowStride
        add16(sum.1, q)
        q[16] += s.4[7]
        q[17] += s.5[7]
    }
}

/// `addRow4` for two tiles in each of four tile rows (lanes 2ρ, 2ρ + 1): the same row of each
/// tile row ρ present (2ρ < n), `rowStride`·4 floats apart.
@inline(__always)
private func addRows4(_ s: Six<V8>, _ p: UnsafeMutablePointer<Float>, _ rowStride: Int, _ n: Int) {
    func shift(_ x: V8) -> V8 { V8(0, x[0], 0, x[2], 0, x[4], 0, x[6]) }
    let sum = interleave4(s.0 + shift(s.4), s.1 + shift(s.5), s.2, s.3)
    let pieces = (sum.0.lowHalf, sum.0.highHalf, sum.1.lowHalf, sum.1.highHalf)
    for rho in 0..<4 where 2 * rho < n {
        let q = p + 4 * rho * rowStride
        add8(rho == 0 ? pieces.0 : rho == 1 ? pieces.1 : rho == 2 ? pieces.2 : pieces.3, q)
        q[8] += s.4[2 * rho + 1]
        q[9] += s.5[2 * rho + 1]
    }
}
