// Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions: forward, input gradient and weight
// gradient, with the elementwise stage as 16 OpenBLAS GEMMs (one per point of the 4×4
// transform) over channels.
//
// Forward, per 4×4 input tile d (tiles step by 2, so they overlap by 2) and filter g:
//   y(2×2) = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
// computed as V[ξ] = (Bᵀ d B)[ξ] laid out (C, T) for T tiles, U[ξ] = (G g Gᵀ)[ξ] as (K, C),
// M[ξ] = U[ξ]·V[ξ] (16 GEMMs), then y = Aᵀ M A per tile.
// Backward is the exact adjoint of that computation (not a second Winograd convolution):
//   Ỹ = A dy Aᵀ per output tile (dy zero beyond P, Q),
//   dU[ξ] = Ỹ[ξ]·V[ξ]ᵀ  → dW = Gᵀ dU G,      dV[ξ] = U[ξ]ᵀ·Ỹ[ξ] → dx += B dV Bᵀ (tiles
//   overlap, so their contributions add; entries falling on the padding are dropped).
// Both gradients share V and Ỹ, and every GEMM is a plain sgemm.
//
// Layout: each image plane is first copied into a zero-bordered scratch plane, so the tile
// loads need no bounds tests and run eight tiles at a time. The input-side transforms work on
// 16 contiguous plane columns (tile t's values land in lanes 2t and 2t + 1, see `btAcross`) and
// compact to eight tiles only when storing; the output-side ones hold eight tiles in SIMD8
// lanes and interleave when writing the plane. Splitting even/odd lanes before the arithmetic
// made LLVM scalarise the loops (perf annotate, 2026-11-26).
//
// Rounding: the transforms only add, subtract and halve, but they add up larger magnitudes
// than the direct sum: |Aᵀ|((|G||g||Gᵀ|) ⊙ (|Bᵀ||d||B|))|A| is up to (8/3)² ≈ 7.1 times
// Σ|g||d| (all magnitudes equal). KernelWinogradTests argues its tolerances from that.

import CSGDCore

/// Tile geometry and workspace layout of the Winograd path for one shape and output tile:
/// F(2×2, 3×3) (`tile` 2, 4×4 transform points) or F(4×4, 3×3) (`tile` 4, 6×6 points,
/// Winograd4.swift).
struct WinogradPlan {
    let shape: Conv2dShape
    /// Output tile side m: each tile gives m×m outputs from an (m + 2)×(m + 2) input tile.
    let tile: Int
    /// Tile rows and columns per image.
    let tilesH: Int, tilesW: Int
    /// Images per chunk (V, M, dV hold one chunk's tiles).
    let chunk: Int
    /// Scratch plane: rows, row length (zero border + room for the last 8-tile load).
    let planeH: Int, planeW: Int
    /// Tile rows one 8-lane vector holds (F(4×4) on planes four or two tiles wide: 2 or 4,
    /// see `forEachVectorGroup`; otherwise 1).
    let rowsPerVector: Int

    /// Whether the shape can run on this path (geometry only; `ConvAlgorithm` decides).
    static func supports(_ g: Conv2dShape) -> Bool {
        g.r == 3 && g.s == 3 && g.stride == 1 && g.pad <= 2
    }

    /// The plan for output tile side `tile` (2 or 4).
    init(_ g: Conv2dShape, tile: Int = 2) {
        precondition(tile == 2 || tile == 4, "Winograd output tile must be 2 or 4")
        shape = g
        self.tile = tile
        tilesH = (g.p + tile - 1) / tile
        tilesW = (g.q + tile - 1) / tile
        let blocks = (tilesW + 7) / 8
        rowsPerVector = tile == 4 && (tilesW == 4 || tilesW == 2) ? 8 / tilesW : 1
        // Room for whole groups of tile rows (the last group's loads and adds may run past
        // the last tile row).
        planeH = tile * rowsPerVector * ((tilesH + rowsPerVector - 1) / rowsPerVector) + 2
        // F(2×2): 16-wide loads at +0/+1/+2; F(4×4): 32 columns plus an 8-wide tail load.
        planeW = tile == 2 ? 16 * blocks + 2 : 32 * blocks + 8
        // V, Ỹ and dV of a chunk within 2 MiB (about an L2), at least one image.
        let perImage = (tile + 2) * (tile + 2) * tilesH * tilesW * (2 * g.c + g.k)
        chunk = max(1, min(g.n, (1 << 19) / max(1, perImage)))
    }

    /// Transform points per tile: (m + 2)², one GEMM each.
    var points: Int { (tile + 2) * (tile + 2) }
    var tilesPerImage: Int { tilesH * tilesW }
    /// Tiles in a full chunk.
    var chunkTiles: Int { chunk * tilesPerImage }
    /// Offsets into the workspace, in floats.
    var uOffset: Int { 0 }
    var duOffset: Int { points * shape.k * shape.c }
    var vOffset: Int { 2 * points * shape.k * shape.c }
    var mOffset: Int { vOffset + points * shape.c * chunkTiles }
    var dvOffset: Int { mOffset + points * shape.k * chunkTiles }
    var planeOffset: Int { dvOffset + points * shape.c * chunkTiles }
    /// Floats of workspace: U, dU, V, M (= Ỹ in backward), dV, one scratch plane.
    var workspaceCount: Int { planeOffset + planeH * planeW }

    /// The filter transform U = G g Gᵀ for this tile size.
    func filterTransform(_ u: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>) {
        if tile == 4 {
            winograd4FilterTransform(u, weight, k: shape.k, c: shape.c)
        } else {
            winogradFilterTransform(u, weight, k: shape.k, c: shape.c)
        }
    }

    /// dW += Gᵀ dU G for this tile size.
    func filterGradient(_ dWeight: UnsafeMutablePointer<Float>, _ du: UnsafePointer<Float>) {
        if tile == 4 {
            winograd4FilterGradient(dWeight, du, k: shape.k, c: shape.c)
        } else {
            winogradFilterGradient(dWeight, du, k: shape.k, c: shape.c)
        }
    }
}

// MARK: - transforms

/// U[ξ][k][c] = (G g Gᵀ)[ξ] for every filter g = weight[k, c], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
@inline(never)
func winogradFilterTransform(
    _ u: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>, k: Int, c: Int
) {
    let kc = k * c
    for kk in 0..<k {
        for cc in 0..<c {
            let g = weight + (kk * c + cc) * 9
            // t = G g (4×3, as four rows of SIMD4 with lane 3 unused), then U = t Gᵀ (4×4).
            let g0 = SIMD4(g[0], g[1], g[2], 0)
            let g1 = SIMD4(g[3], g[4], g[5], 0)
            let g2 = SIMD4(g[6], g[7], g[8], 0)
            let t = (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
            let base = u + kk * c + cc
            for i in 0..<4 {
                let ti = i == 0 ? t.0 : i == 1 ? t.1 : i == 2 ? t.2 : t.3
                let t0 = ti[0], t1 = ti[1], t2 = ti[2]
                base[(4 * i + 0) * kc] = t0
                base[(4 * i + 1) * kc] = 0.5 * (t0 + t1 + t2)
                base[(4 * i + 2) * kc] = 0.5 * (t0 - t1 + t2)
                base[(4 * i + 3) * kc] = t2
            }
        }
    }
}

/// dW[k, c] += Gᵀ dU G (the adjoint of the filter transform), dU laid out like U.
@inline(never)
func winogradFilterGradient(
    _ dWeight: UnsafeMutablePointer<Float>, _ du: UnsafePointer<Float>, k: Int, c: Int
) {
    let kc = k * c
    for kk in 0..<k {
        for cc in 0..<c {
            let base = du + kk * c + cc
            // t = Gᵀ dU (3×4, rows as SIMD4), then dW = t G (3×3).
            // Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1].
            func row(_ i: Int) -> SIMD4<Float> {
                SIMD4(
                    base[4 * i * kc], base[(4 * i + 1) * kc], base[(4 * i + 2) * kc],
                    base[(4 * i + 3) * kc])
            }
            let a0 = row(0), a1 = row(1), a2 = row(2), a3 = row(3)
            let t = (a0 + 0.5 * (a1 + a2), 0.5 * (a1 - a2), 0.5 * (a1 + a2) + a3)
            let g = dWeight + (kk * c + cc) * 9
            for i in 0..<3 {
                let ti = i == 0 ? t.0 : i == 1 ? t.1 : t.2
                let t0 = ti[0], t1 = ti[1], t2 = ti[2], t3 = ti[3]
                g[3 * i] += t0 + 0.5 * (t1 + t2)
                g[3 * i + 1] += 0.5 * (t1 - t2)
                g[3 * i + 2] += 0.5 * (t1 + t2) + t3
            }
        }
    }
}

/// Stores lanes 0..<n of `v` to `p[0..<n]`.
@inline(__always)
func storeLanes(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 8 {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    } else if n == 4 {  // 8×8 planes (4 tiles a row): one half-width store
        UnsafeMutableRawPointer(p).storeBytes(of: v.lowHalf, as: SIMD4<Float>.self)
    } else {
        for t in 0..<n { p[t] = v[t] }
    }
}

/// Loads `p[0..<n]` into lanes 0..<n (zeros after).
@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ n: Int) -> SIMD8<Float> {
    if n == 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    if n == 4 {
        return SIMD8(
            lowHalf: UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self), highHalf: .zero)
    }
    var v = SIMD8<Float>()
    for t in 0..<n { v[t] = p[t] }
    return v
}

/// `dst[0..<n] = src[0..<n]` for one short plane row, inline: a libc memmove call per row of
/// 8–56 floats cost 3 % of a ResNet-56 step (perf, 2026-11-26).
@inline(__always)
func copyRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    var x = 0
    while x + 16 <= n {
        UnsafeMutableRawPointer(dst + x).storeBytes(
            of: UnsafeRawPointer(src + x).loadUnaligned(as: SIMD16<Float>.self),
            as: SIMD16<Float>.self)
        x += 16
    }
    while x < n {
        dst[x] = src[x]
        x += 1
    }
}

/// 1-D B (the adjoint of Bᵀ, `bt16`).
@inline(__always)
private func b(
    _ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>, _ v3: SIMD8<Float>
) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    (v0, v1 - v2 + v3, v1 + v2 - v0, -v3)
}

typealias Quad = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

typealias Quad16 = (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)

/// Bᵀ across one row of eight tiles starting at `p` (tile t covers p[2t..<2t+4]), on
/// contiguous lanes: with x = p[0..<16], x₁ = p[1..<17], x₂ = p[2..<18], lane 2t of x − x₂ is
/// d0 − d2 and lane 2t + 1 is d1 − d3 (the first and fourth results), lane 2t of x₁ + x₂ is
/// d1 + d2 and of x₂ − x₁ is d2 − d1.
@inline(__always)
private func btAcross(_ p: UnsafePointer<Float>) -> (
    SIMD16<Float>, SIMD16<Float>, SIMD16<Float>
) {
    let raw = UnsafeRawPointer(p)
    let x = raw.loadUnaligned(as: SIMD16<Float>.self)
    let x1 = raw.loadUnaligned(fromByteOffset: 4, as: SIMD16<Float>.self)
    let x2 = raw.loadUnaligned(fromByteOffset: 8, as: SIMD16<Float>.self)
    return (x - x2, x1 + x2, x2 - x1)
}

/// 1-D Bᵀ down four rows, lane-wise on 16 lanes.
@inline(__always)
private func bt16(
    _ d0: SIMD16<Float>, _ d1: SIMD16<Float>, _ d2: SIMD16<Float>, _ d3: SIMD16<Float>
) -> Quad16 {
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
}

/// Stores row `i` of eight transformed tiles (points 4i … 4i + 3) from `btAcross`'s three
/// outputs after `bt16`: points (i, 0), (i, 1), (i, 2) are the even lanes of `a`, `b`, `c`,
/// point (i, 3) the odd lanes of `a`.
@inline(__always)
private func storeTransformedRow(
    _ a: SIMD16<Float>, _ b: SIMD16<Float>, _ c: SIMD16<Float>, _ dst: UnsafeMutablePointer<Float>,
    _ stride: Int, _ i: Int, _ n: Int
) {
    storeLanes(evenLanes(a), dst + 4 * i * stride, n)
    storeLanes(evenLanes(b), dst + (4 * i + 1) * stride, n)
    storeLanes(evenLanes(c), dst + (4 * i + 2) * stride, n)
    storeLanes(oddLanes(a), dst + (4 * i + 3) * stride, n)
}

/// Aᵀ down column `col` of eight tiles of M: the column's two output rows.
@inline(__always)
private func atColumn(
    _ src: UnsafePointer<Float>, _ stride: Int, _ col: Int, _ n: Int
) -> (SIMD8<Float>, SIMD8<Float>) {
    let a0 = loadLanes(src + col * stride, n)
    let a1 = loadLanes(src + (4 + col) * stride, n)
    let a2 = loadLanes(src + (8 + col) * stride, n)
    let a3 = loadLanes(src + (12 + col) * stride, n)
    return (a0 + a1 + a2, a1 - a2 - a3)
}

/// Stores row `r` of Ỹ = (A dy) Aᵀ from the row's two columns of A·dy, eight tiles held in the
/// even lanes of `a` and `c`.
@inline(__always)
private func storeRow(
    _ a: SIMD16<Float>, _ c: SIMD16<Float>, _ dst: UnsafeMutablePointer<Float>, _ stride: Int,
    _ r: Int, _ n: Int
) {
    storeLanes(evenLanes(a), dst + 4 * r * stride, n)
    storeLanes(evenLanes(a + c), dst + (4 * r + 1) * stride, n)
    storeLanes(evenLanes(a - c), dst + (4 * r + 2) * stride, n)
    storeLanes(evenLanes(-c), dst + (4 * r + 3) * stride, n)
}

/// B down column `col` of eight tiles of dV: the column's four rows.
@inline(__always)
private func bColumn(
    _ src: UnsafePointer<Float>, _ stride: Int, _ col: Int, _ n: Int
) -> Quad {
    b(
        loadLanes(src + col * stride, n), loadLanes(src + (4 + col) * stride, n),
        loadLanes(src + (8 + col) * stride, n), loadLanes(src + (12 + col) * stride, n))
}

/// Lanes 0, x0, …, x6: `x` moved up one lane (one shuffle).
@inline(__always)
func shiftUp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8(0, x[0], x[1], x[2], x[3], x[4], x[5], x[6])
}

/// Adds one row of eight 4-wide tiles (overlapping by 2) into the plane row at `p`: tile t
/// covers p[2t..<2t+4]. For a full row of tiles, p[2t] gets x.0[t] + x.2[t − 1] and p[2t + 1]
/// gets x.1[t] + x.3[t − 1], one 16-wide add; the last tile's right half spills to p[16], p[17].
@inline(__always)
private func addRow(_ x: Quad, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 8 {
        let sum = interleave(x.0 + shiftUp(x.2), x.1 + shiftUp(x.3))
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: raw.loadUnaligned(as: SIMD16<Float>.self) + sum, as: SIMD16<Float>.self)
        p[16] += x.2[7]
        p[17] += x.3[7]
        return
    }
    for t in 0..<n {
        p[2 * t] += x.0[t]
        p[2 * t + 1] += x.1[t]
        p[2 * t + 2] += x.2[t]
        p[2 * t + 3] += x.3[t]
    }
}

extension WinogradPlan {
    /// Copies one H×W plane into the scratch plane at offset (pad, pad); the rest stays zero.
    func fillPlane(_ plane: UnsafeMutablePointer<Float>, from src: UnsafePointer<Float>) {
        let g = shape
        for y in 0..<g.h {
            copyRow(plane + (y + g.pad) * planeW + g.pad, src + y * g.w, g.w)
        }
    }

    /// Copies one P×Q output-gradient plane to the scratch plane's top-left corner; the rest
    /// stays zero (dy is zero beyond P×Q).
    func fillOutputGradientPlane(
        _ plane: UnsafeMutablePointer<Float>, from src: UnsafePointer<Float>
    ) {
        let g = shape
        for y in 0..<g.p { copyRow(plane + y * planeW, src + y * g.q, g.q) }
    }

    /// `dst[H×W] +=` the scratch plane's interior at offset (pad, pad): the input-gradient
    /// transforms' summed tiles, with what fell on the padding dropped.
    func addPlaneInterior(_ plane: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>) {
        let g = shape
        for y in 0..<g.h {
            let s = plane + (y + g.pad) * planeW + g.pad
            let d = dst + y * g.w
            for x in 0..<g.w { d[x] += s[x] }
        }
    }

    /// V for images n0..<n0+nb: V[ξ][c][t], t = (image − n0)·tilesPerImage + i·tilesW + j.
    @inline(never)
    func inputTransform(
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
            for ti in 0..<tilesH {
                let row = plane + 2 * ti * planeW
                var j0 = 0
                while j0 < tilesW {
                    let n = min(8, tilesW - j0)
                    // Bᵀ across each of the tile's 4 rows, on 16 contiguous columns (x, x+1,
                    // x+2 loads): tile t's results sit in lane 2t (and lane 2t+1 for the
                    // fourth), so no shuffle comes before the arithmetic; then Bᵀ down the
                    // rows, lane-wise; then one compaction per stored point.
                    let p = UnsafePointer(row + 2 * j0)
                    let r0 = btAcross(p)
                    let r1 = btAcross(p + planeW)
                    let r2 = btAcross(p + 2 * planeW)
                    let r3 = btAcross(p + 3 * planeW)
                    let dst = vc + ti * tilesW + j0
                    let a = bt16(r0.0, r1.0, r2.0, r3.0)  // points (i, 0) even, (i, 3) odd
                    let b = bt16(r0.1, r1.1, r2.1, r3.1)  // points (i, 1) even
                    let c = bt16(r0.2, r1.2, r2.2, r3.2)  // points (i, 2) even
                    storeTransformedRow(a.0, b.0, c.0, dst, ct, 0, n)
                    storeTransformedRow(a.1, b.1, c.1, dst, ct, 1, n)
                    storeTransformedRow(a.2, b.2, c.2, dst, ct, 2, n)
                    storeTransformedRow(a.3, b.3, c.3, dst, ct, 3, n)
                    j0 += 8
                }
            }
        }
    }

    /// output[n0..<n0+nb] = Aᵀ M A per tile (Aᵀ = [1 1 1 0; 0 1 −1 −1]), cropped to P×Q.
    @inline(never)
    func outputTransform(
        _ output: UnsafeMutablePointer<Float>, _ m: UnsafePointer<Float>, n0: Int, nb: Int
    ) {
        let g = shape
        let tiles = nb * tilesPerImage
        let kt = g.k * tiles
        parallelForEach(nb * g.k, elementsEach: 16 * tilesPerImage) { ik in
            let (i, k) = (ik / g.k, ik % g.k)
            let out = output + ((n0 + i) * g.k + k) * g.p * g.q
            let mk = m + k * tiles + i * tilesPerImage
            for ti in 0..<tilesH {
                var j0 = 0
                while j0 < tilesW {
                    let n = min(8, tilesW - j0)
                    let src = mk + ti * tilesW + j0
                    // Aᵀ down the columns (rows of the tile), then across.
                    let c0 = atColumn(src, kt, 0, n)
                    let c1 = atColumn(src, kt, 1, n)
                    let c2 = atColumn(src, kt, 2, n)
                    let c3 = atColumn(src, kt, 3, n)
                    let r0 = (c0.0, c1.0, c2.0, c3.0)
                    let r1 = (c0.1, c1.1, c2.1, c3.1)
                    let y00 = r0.0 + r0.1 + r0.2, y01 = r0.1 - r0.2 - r0.3
                    let y10 = r1.0 + r1.1 + r1.2, y11 = r1.1 - r1.2 - r1.3
                    let y = 2 * ti
                    let row0 = out + y * g.q + 2 * j0
                    let twoRows = y + 1 < g.p
                    if n == 8 && 2 * j0 + 16 <= g.q && twoRows {
                        // Sixteen whole output columns in both rows: two interleaved stores.
                        let raw = UnsafeMutableRawPointer(row0)
                        raw.storeBytes(of: interleave(y00, y01), as: SIMD16<Float>.self)
                        (raw + 4 * g.q).storeBytes(of: interleave(y10, y11), as: SIMD16<Float>.self)
                        j0 += 8
                        continue
                    }
                    for t in 0..<n {
                        let x = 2 * (j0 + t)
                        row0[2 * t] = y00[t]
                        if twoRows { row0[g.q + 2 * t] = y10[t] }
                        if x + 1 < g.q {
                            row0[2 * t + 1] = y01[t]
                            if twoRows { row0[g.q + 2 * t + 1] = y11[t] }
                        }
                    }
                    j0 += 8
                }
            }
        }
    }

    /// Ỹ[ξ][k][t] = (A dy Aᵀ)[ξ] for images n0..<n0+nb (dy zero beyond P×Q).
    @inline(never)
    func outputGradientTransform(
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
            for ti in 0..<tilesH {
                var j0 = 0
                while j0 < tilesW {
                    let n = min(8, tilesW - j0)
                    // Contiguous lanes again: lane 2t of y0 / y0₁ is dy[y][2t] / dy[y][2t+1]
                    // (y0₁ loaded one column on); compaction only at the stores.
                    let raw = UnsafeRawPointer(plane + 2 * ti * planeW + 2 * j0)
                    let y00 = raw.loadUnaligned(as: SIMD16<Float>.self)
                    let y01 = raw.loadUnaligned(fromByteOffset: 4, as: SIMD16<Float>.self)
                    let y10 = raw.loadUnaligned(fromByteOffset: 4 * planeW, as: SIMD16<Float>.self)
                    let y11 = raw.loadUnaligned(
                        fromByteOffset: 4 * planeW + 4, as: SIMD16<Float>.self)
                    // A = [1 0; 1 1; 1 −1; 0 −1]: rows first, then columns.
                    let dst = mk + ti * tilesW + j0
                    storeRow(y00, y01, dst, kt, 0, n)
                    storeRow(y00 + y10, y01 + y11, dst, kt, 1, n)
                    storeRow(y00 - y10, y01 - y11, dst, kt, 2, n)
                    storeRow(-y10, -y11, dst, kt, 3, n)
                    j0 += 8
                }
            }
            // Rows P..<planeH and columns Q..< were never written: still zero.
        }
    }

    /// dInput[n0..<n0+nb] += B dV Bᵀ per tile, overlapping tiles summed, padding dropped.
    @inline(never)
    func inputGradientTransform(
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
            for ti in 0..<tilesH {
                var j0 = 0
                while j0 < tilesW {
                    let n = min(8, tilesW - j0)
                    let src = vc + ti * tilesW + j0
                    // B down each column, then across each row, added into the plane.
                    let e0 = bColumn(src, ct, 0, n)
                    let e1 = bColumn(src, ct, 1, n)
                    let e2 = bColumn(src, ct, 2, n)
                    let e3 = bColumn(src, ct, 3, n)
                    let p = plane + 2 * ti * planeW + 2 * j0
                    addRow(b(e0.0, e1.0, e2.0, e3.0), p, n)
                    addRow(b(e0.1, e1.1, e2.1, e3.1), p + planeW, n)
                    addRow(b(e0.2, e1.2, e2.2, e3.2), p + 2 * planeW, n)
                    addRow(b(e0.3, e1.3, e2.3, e3.3), p + 3 * planeW, n)
                    j0 += 8
                }
            }
            addPlaneInterior(plane, to: dInput + ((n0 + i) * g.c + c) * g.h * g.w)
        }
    }

    /// Runs `body(index, plane)` for every (image, channel) plane index `0..<count`, split
    /// across `KernelThreads`; each range of indices gets its own zeroed scratch plane (the
    /// workspace's `scratch` for one of them, a fresh allocation for the others), so the planes'
    /// arithmetic, and so the result, is the same for any thread count.
    func forEachPlane(
        _ count: Int, scratch: UnsafeMutablePointer<Float>,
        _ body: (Int, UnsafeMutablePointer<Float>) -> Void
    ) {
        let size = planeH * planeW
        parallelRanges(count, grain: max(1, elementwiseGrain / (points * tilesPerImage))) { r in
            if r.lowerBound == 0 {
                scratch.update(repeating: 0, count: size)
                for index in r { body(index, scratch) }
                return
            }
            let own = UnsafeMutablePointer<Float>.allocate(capacity: size)
            defer { own.deallocate() }
            own.initialize(repeating: 0, count: size)
            for index in r { body(index, own) }
        }
    }

    /// Calls `body(n0, nb)` per chunk of images, in batch order.
    func forEachChunk(_ body: (Int, Int) -> Void) {
        var n0 = 0
        while n0 < shape.n {
            let nb = min(chunk, shape.n - n0)
            body(n0, nb)
            n0 += nb
        }
    }
}

// MARK: - forward / backward

/// Winograd forward (`WinogradPlan.supports(shape)` must hold) with output tile `tile` (2 or
/// 4); same contract as `conv2dForward`, `workspace` at least
/// `WinogradPlan(shape, tile: tile).workspaceCount` floats.
func winogradForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, shape g: Conv2dShape,
    tile: Int = 2, workspace ws: UnsafeMutablePointer<Float>, epilogue: ChannelAffine?
) {
    let plan = WinogradPlan(g, tile: tile)
    let u = ws + plan.uOffset
    let v = ws + plan.vOffset
    let m = ws + plan.mOffset
    let plane = ws + plan.planeOffset
    plan.filterTransform(u, weight)
    let pq = g.p * g.q
    plan.forEachChunk { n0, nb in
        let tiles = nb * plan.tilesPerImage
        if tile == 4 {
            plan.inputTransform4(v, input, plane, n0: n0, nb: nb)
        } else {
            plan.inputTransform(v, input, plane, n0: n0, nb: nb)
        }
        for xi in 0..<plan.points {
            sgemm(
                transA: false, transB: false, m: g.k, n: tiles, k: g.c, alpha: 1,
                a: u + xi * g.k * g.c, lda: g.c, b: v + xi * g.c * tiles, ldb: tiles, beta: 0,
                c: m + xi * g.k * tiles, ldc: tiles)
        }
        if tile == 4 {
            plan.outputTransform4(output, m, n0: n0, nb: nb)
        } else {
            plan.outputTransform(output, m, n0: n0, nb: nb)
        }
        addBiasAndEpilogue(output, bias: bias, epilogue: epilogue, n0: n0, nb: nb, k: g.k, pq: pq)
    }
}

/// Winograd weight and input gradients (`dInput` nil skips the latter) with output tile
/// `tile`; ACCUMULATES like `conv2dBackward`. The bias gradient is the caller's.
func winogradBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    shape g: Conv2dShape, tile: Int = 2, workspace ws: UnsafeMutablePointer<Float>
) {
    let plan = WinogradPlan(g, tile: tile)
    let u = ws + plan.uOffset
    let du = ws + plan.duOffset
    let v = ws + plan.vOffset
    let m = ws + plan.mOffset
    let dv = ws + plan.dvOffset
    let plane = ws + plan.planeOffset
    if dInput != nil { plan.filterTransform(u, weight) }
    var first = true
    plan.forEachChunk { n0, nb in
        let tiles = nb * plan.tilesPerImage
        if tile == 4 {
            plan.inputTransform4(v, input, plane, n0: n0, nb: nb)
            plan.outputGradientTransform4(m, dOutput, plane, n0: n0, nb: nb)
        } else {
            plan.inputTransform(v, input, plane, n0: n0, nb: nb)
            plan.outputGradientTransform(m, dOutput, plane, n0: n0, nb: nb)
        }
        for xi in 0..<plan.points {
            sgemm(
                transA: false, transB: true, m: g.k, n: g.c, k: tiles, alpha: 1,
                a: m + xi * g.k * tiles, lda: tiles, b: v + xi * g.c * tiles, ldb: tiles,
                beta: first ? 0 : 1, c: du + xi * g.k * g.c, ldc: g.c)
        }
        first = false
        if let dInput {
            for xi in 0..<plan.points {
                sgemm(
                    transA: true, transB: false, m: g.c, n: tiles, k: g.k, alpha: 1,
                    a: u + xi * g.k * g.c, lda: g.c, b: m + xi * g.k * tiles, ldb: tiles,
                    beta: 0, c: dv + xi * g.c * tiles, ldc: tiles)
            }
            if tile == 4 {
                plan.inputGradientTransform4(dInput, dv, plane, n0: n0, nb: nb)
            } else {
                plan.inputGradientTransform(dInput, dv, plane, n0: n0, nb: nb)
            }
        }
    }
    plan.filterGradient(dWeight, du)
}
