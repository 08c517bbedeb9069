// The split-phase BatchNorm of BatchNorm groups (SyncBN): with an identity group sum it is the
// fused kernel bit for bit; with a fake group of several "ranks" (slices of one batch, their
// statistics summed in process) it is BatchNorm of the whole batch, and its gradients pass a
// finite-difference check, which also pins that dγ and dβ are each rank's share (summed once
// over ranks), not the group's sum (which every rank would add again).

import CSGDCore
import CSGDKernels
import XCTest

final class BatchNormGroupTests: XCTestCase {
    /// BN inputs with per-channel offsets and spreads (mean ≠ 0, var ≠ 1, |mean| > std on
    /// some channels so the variance merge has cancellation to survive).
    func input(n: Int, c: Int, hw: Int, seed: UInt64) -> FloatBuffer {
        var rng = Rng(seed: seed)
        return FloatBuffer(
            (0..<(n * c * hw)).map { i in
                let ch = Float((i / hw) % c)
                return (0.5 + ch) * (2 * rng.nextFloat() - 1) + 3 * ch - 2
            })
    }

    func random(_ count: Int, seed: UInt64) -> FloatBuffer {
        var rng = Rng(seed: seed)
        return FloatBuffer((0..<count).map { _ in 2 * rng.nextFloat() - 1 })
    }

    /// State of one BN layer on one "rank": its slice of the batch and what forward saves.
    final class Slice {
        let n: Int
        let offset: Int  // first float of the slice in the whole batch
        let saveMean: FloatBuffer
        let saveInvStd: FloatBuffer
        let runMean: FloatBuffer
        let runVar: FloatBuffer
        var pooledCount = 0
        init(n: Int, offset: Int, c: Int, runMean: [Float], runVar: [Float]) {
            self.n = n
            self.offset = offset
            saveMean = FloatBuffer(count: c)
            saveInvStd = FloatBuffer(count: c)
            self.runMean = FloatBuffer(runMean)
            self.runVar = FloatBuffer(runVar)
        }
    }

    /// Forward of `slices` as one group: statistics per slice, summed over the slices (what
    /// the group allreduce does), then each slice normalised with the pooled statistics.
    func groupForward(
        _ slices: [Slice], y: FloatBuffer, x: FloatBuffer, scale: FloatBuffer,
        shift: FloatBuffer, c: Int, hw: Int, relu: Bool
    ) {
        let count = batchNormStatisticsCount(channels: c)
        var stats = slices.map { _ in [Double](repeating: 0, count: count) }
        for (k, s) in slices.enumerated() {
            stats[k].withUnsafeMutableBufferPointer { p in
                batchNormStatistics(
                    stats: p.baseAddress!, input: x.pointer + s.offset, n: s.n, c: c, hw: hw)
            }
        }
        let total = (0..<count).map { i in stats.reduce(0) { $0 + $1[i] } }
        for s in slices {
            s.pooledCount = Int(total[3 * c])
            batchNormNormalize(
                output: y.pointer + s.offset, saveMean: s.saveMean.pointer,
                saveInvStd: s.saveInvStd.pointer, runningMean: s.runMean.pointer,
                runningVar: s.runVar.pointer, input: x.pointer + s.offset, stats: total,
                scale: scale.pointer, shift: shift.pointer, n: s.n, c: c, hw: hw, relu: relu)
        }
    }

    /// Backward of `slices` as one group: every slice adds its own dγ, dβ share into the one
    /// `dScale`/`dShift` (as the gradient allreduce over ranks sums them), the Σdy, Σdy·x̂ are
    /// summed over the slices, then each slice's input gradient.
    func groupBackward(
        _ slices: [Slice], dx: FloatBuffer, dScale: FloatBuffer, dShift: FloatBuffer,
        dy: UnsafePointer<Float>, x: FloatBuffer, scale: FloatBuffer, c: Int, hw: Int,
        overwrite: Bool
    ) {
        var sums = slices.map { _ in [Double](repeating: 0, count: 2 * c) }
        for (k, s) in slices.enumerated() {
            sums[k].withUnsafeMutableBufferPointer { p in
                batchNormBackwardSums(
                    sums: p.baseAddress!, dScale: dScale.pointer, dShift: dShift.pointer,
                    dOutput: dy + s.offset, input: x.pointer + s.offset,
                    saveMean: s.saveMean.pointer, saveInvStd: s.saveInvStd.pointer, n: s.n,
                    c: c, hw: hw)
            }
        }
        let total = (0..<(2 * c)).map { i in sums.reduce(0) { $0 + $1[i] } }
        for s in slices {
            batchNormBackwardInput(
                dInput: dx.pointer + s.offset, dOutput: dy + s.offset,
                input: x.pointer + s.offset, scale: scale.pointer, saveMean: s.saveMean.pointer,
                saveInvStd: s.saveInvStd.pointer, sums: total, count: s.pooledCount, n: s.n,
                c: c, hw: hw, overwriteInput: overwrite)
        }
    }

    /// One group of one rank (the identity sum) is the fused kernel bit for bit: outputs, saved
    /// statistics, running statistics over two steps, and the gradients, both when backward
    /// stores and when it accumulates. Widths not a multiple of 8 exercise the SIMD tails.
    func testSplitPhasesWithIdentitySumEqualFusedBitwise() {
        for (n, c, hw, relu) in [(4, 3, 6, false), (3, 5, 19, true), (8, 2, 64, true)] {
            let count = n * c * hw
            let x = input(n: n, c: c, hw: hw, seed: UInt64(n * 100 + hw))
            let scale = random(c, seed: 1)
            let shift = random(c, seed: 2)
            let dy = random(count, seed: 3)
            let fusedY = FloatBuffer(count: count)
            let fused = Slice(
                n: n, offset: 0, c: c, runMean: [Float](repeating: 0.1, count: c),
                runVar: [Float](repeating: 0.9, count: c))
            let split = Slice(
                n: n, offset: 0, c: c, runMean: fused.runMean.array, runVar: fused.runVar.array)
            let splitY = FloatBuffer(count: count)
            for step in 0..<2 {
                if step == 1 { for i in 0..<count { x[i] = 1.5 * x[i] - 0.25 } }
                batchNormForwardTraining(
                    output: fusedY.pointer, saveMean: fused.saveMean.pointer,
                    saveInvStd: fused.saveInvStd.pointer, runningMean: fused.runMean.pointer,
                    runningVar: fused.runVar.pointer, input: x.pointer, scale: scale.pointer,
                    shift: shift.pointer, n: n, c: c, hw: hw, relu: relu)
                groupForward(
                    [split], y: splitY, x: x, scale: scale, shift: shift, c: c, hw: hw, relu: relu)
                let what = "n \(n) c \(c) hw \(hw) step \(step)"
                XCTAssertEqual(splitY.array, fusedY.array, "output, " + what)
                XCTAssertEqual(split.saveMean.array, fused.saveMean.array, "mean, " + what)
                XCTAssertEqual(split.saveInvStd.array, fused.saveInvStd.array, "invstd, " + what)
                XCTAssertEqual(split.runMean.array, fused.runMean.array, "running mean, " + what)
                XCTAssertEqual(split.runVar.array, fused.runVar.array, "running var, " + what)
                XCTAssertEqual(split.pooledCount, n * hw)
            }
            for overwrite in [false, true] {
                let (dxF, dsF, dbF) = (
                    random(count, seed: 4), random(c, seed: 5), random(c, seed: 6)
                )
                let (dxS, dsS, dbS) = (
                    random(count, seed: 4), random(c, seed: 5), random(c, seed: 6)
                )
                batchNormBackward(
                    dInput: dxF.pointer, dScale: dsF.pointer, dShift: dbF.pointer,
                    dOutput: dy.pointer, input: x.pointer, scale: scale.pointer,
                    saveMean: fused.saveMean.pointer, saveInvStd: fused.saveInvStd.pointer, n: n,
                    c: c, hw: hw, overwriteInput: overwrite)
                groupBackward(
                    [split], dx: dxS, dScale: dsS, dShift: dbS, dy: dy.pointer, x: x,
                    scale: scale, c: c, hw: hw, overwrite: overwrite)
                let what = "n \(n) c \(c) hw \(hw) overwrite \(overwrite)"
                XCTAssertEqual(dxS.array, dxF.array, "dx, " + what)
                XCTAssertEqual(dsS.array, dsF.array, "dγ, " + what)
                XCTAssertEqual(dbS.array, dbF.array, "dβ, " + what)
            }
        }
    }

    /// A group of 2 or 3 slices (unequal ones too) gives BatchNorm of the whole batch: the same
    /// outputs, statistics, running statistics on every slice, and gradients (dγ, dβ as the
    /// sum of the slices' shares). Not bitwise: each slice sums its own rows, then the slices
    /// are added (Double, so ≈ 1e-16 relative), and the merged variance goes through the
    /// parallel-variance identity instead of one centred pass; every Float result then
    /// differs from the fused one by at most a rounding or two (≤ 1e-6 relative; measured
    /// ≤ 2.4e-7). A dropped merge term or a wrong count is off by ≥ 1e-2.
    func testGroupOfSlicesEqualsWholeBatch() {
        let (n, c, hw) = (6, 4, 13)
        let count = n * c * hw
        let x = input(n: n, c: c, hw: hw, seed: 7)
        let scale = random(c, seed: 8)
        let shift = random(c, seed: 9)
        let dy = random(count, seed: 10)
        let y = FloatBuffer(count: count)
        let whole = Slice(
            n: n, offset: 0, c: c, runMean: [Float](repeating: 0, count: c),
            runVar: [Float](repeating: 1, count: c))
        batchNormForwardTraining(
            output: y.pointer, saveMean: whole.saveMean.pointer,
            saveInvStd: whole.saveInvStd.pointer, runningMean: whole.runMean.pointer,
            runningVar: whole.runVar.pointer, input: x.pointer, scale: scale.pointer,
            shift: shift.pointer, n: n, c: c, hw: hw)
        let (dx, ds, db) = (FloatBuffer(count: count), FloatBuffer(count: c), FloatBuffer(count: c))
        batchNormBackward(
            dInput: dx.pointer, dScale: ds.pointer, dShift: db.pointer, dOutput: dy.pointer,
            input: x.pointer, scale: scale.pointer, saveMean: whole.saveMean.pointer,
            saveInvStd: whole.saveInvStd.pointer, n: n, c: c, hw: hw)

        func close(_ a: [Float], _ b: [Float], _ what: String) {
            XCTAssertEqual(a.count, b.count)
            let scale = b.map { abs($0) }.max() ?? 1
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-6 * max(scale, 1), what)
        }
        for sizes in [[3, 3], [2, 2, 2], [1, 5]] {
            var offset = 0
            let slices = sizes.map { k -> Slice in
                defer { offset += k * c * hw }
                return Slice(
                    n: k, offset: offset, c: c, runMean: [Float](repeating: 0, count: c),
                    runVar: [Float](repeating: 1, count: c))
            }
            let gy = FloatBuffer(count: count)
            groupForward(slices, y: gy, x: x, scale: scale, shift: shift, c: c, hw: hw, relu: false)
            let what = "slices \(sizes)"
            close(gy.array, y.array, "output, " + what)
            for s in slices {
                XCTAssertEqual(s.pooledCount, n * hw)
                XCTAssertEqual(s.saveMean.array, slices[0].saveMean.array, "same on every rank")
                XCTAssertEqual(s.runVar.array, slices[0].runVar.array, "same on every rank")
                close(s.saveMean.array, whole.saveMean.array, "mean, " + what)
                close(s.saveInvStd.array, whole.saveInvStd.array, "invstd, " + what)
                close(s.runMean.array, whole.runMean.array, "running mean, " + what)
                close(s.runVar.array, whole.runVar.array, "running var, " + what)
            }
            let (gdx, gds, gdb) = (
                FloatBuffer(count: count), FloatBuffer(count: c), FloatBuffer(count: c)
            )
            groupBackward(
                slices, dx: gdx, dScale: gds, dShift: gdb, dy: dy.pointer, x: x, scale: scale,
                c: c, hw: hw, overwrite: true)
            close(gdx.array, dx.array, "dx, " + what)
            close(gds.array, ds.array, "dγ, " + what)
            close(gdb.array, db.array, "dβ, " + what)
        }
    }

    /// Finite differences through the split path with a fake group of two half-batches:
    /// L = Σ r·y over both halves, differentiated in every input entry, γ and β. dγ and dβ are
    /// the two halves' shares added into one buffer (the gradient allreduce); adding the
    /// group's sums instead would double them and fail here. Tolerances as the fused check.
    func testGroupBatchNormGradients() {
        let (n, c, hw) = (4, 3, 7)
        let count = n * c * hw
        let x = input(n: n, c: c, hw: hw, seed: 13)
        let scale = FloatBuffer([0.7, -1.3, 1.1])
        let shift = FloatBuffer([0.2, -0.4, 1.0])
        let (dx, dScale, dShift) = (
            FloatBuffer(count: count), FloatBuffer(count: c), FloatBuffer(count: c)
        )
        let y = FloatBuffer(count: count)
        let half = n / 2
        let slices = [0, 1].map { k in
            Slice(
                n: half, offset: k * half * c * hw, c: c, runMean: [0, 0, 0], runVar: [1, 1, 1])
        }
        checkGradients(
            "group batchnorm (2 half-batches)",
            inputs: [
                GradInput("input", x, dx), GradInput("scale", scale, dScale),
                GradInput("shift", shift, dShift),
            ], state: slices.flatMap { [$0.runMean, $0.runVar] }, h: Step.batchNorm, rtol: 1e-2,
            seed: 14,
            forward: { [self] in
                groupForward(
                    slices, y: y, x: x, scale: scale, shift: shift, c: c, hw: hw, relu: false)
                return (UnsafePointer(y.pointer), count)
            },
            backward: { [self] dy in
                groupBackward(
                    slices, dx: dx, dScale: dScale, dShift: dShift, dy: dy, x: x, scale: scale,
                    c: c, hw: hw, overwrite: false)
            })
    }
}
