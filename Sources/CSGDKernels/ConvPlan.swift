// The GEMM schedule of a convolution, written once: how the batch is cut into im2col chunks,
// whether a chunk's GEMMs read and write NCHW directly or go through the staging block, and the
// sizes, transposes and leading dimensions of every GEMM. `conv2dForward` and `conv2dBackward`
// run it around their data moves (im2col, col2im, staging copies, bias, epilogue);
// `conv2dGemmsOnly` runs only its GEMMs, so the benchmark's replay is the real schedule by
// construction (ConvPlanTests checks the GEMMs each one issues against `ConvPlan.gemms`).

/// A run of images `n0..<n0+nb` whose columns are built together.
struct ConvChunk: Equatable {
    /// First image.
    let n0: Int
    /// Number of images.
    let nb: Int
    /// Whether each image gets its own GEMMs reading/writing NCHW directly; otherwise one GEMM
    /// covers the chunk and its (K, nb·P·Q) side goes through the staging block.
    let direct: Bool
}

/// One GEMM of a convolution, `C = op(A)·op(B) + beta·C` with alpha 1, its operands named by
/// buffer and offset (not pointers) so a schedule can be listed and compared.
struct ConvGemm: Equatable {
    /// The buffers a conv GEMM reads or writes.
    enum Buffer: Equatable {
        case input, weight, output, dOutput, dWeight, dInput, columns, staging
    }

    /// A position in one of the buffers, in floats.
    struct Operand: Equatable {
        let buffer: Buffer
        let offset: Int
        init(_ buffer: Buffer, _ offset: Int = 0) {
            self.buffer = buffer
            self.offset = offset
        }
    }

    let transA: Bool, transB: Bool
    let m: Int, n: Int, k: Int
    let a: Operand, lda: Int
    let b: Operand, ldb: Int
    let beta: Float
    let c: Operand, ldc: Int
}

/// The chunking and GEMMs of one conv shape (see the file comment).
struct ConvPlan {
    let shape: Conv2dShape
    /// Images per chunk; the last chunk takes the remainder.
    let chunk: Int

    init(_ g: Conv2dShape) {
        shape = g
        if g.isPointwise {
            // The input image already is its (C, P·Q) column matrix: one image at a time.
            chunk = 1
        } else {
            let budget = 1 << 18  // floats of columns per chunk (1 MiB: half an L2)
            chunk = max(1, min(g.n, budget / max(1, g.rowLength * g.p * g.q)))
        }
    }

    /// Floats of workspace: columns (C·R·S, chunk·P·Q), then staging (K, chunk·P·Q).
    var workspaceCount: Int {
        shape.isPointwise ? 0 : chunk * shape.p * shape.q * (shape.rowLength + shape.k)
    }

    /// Where the staging block starts in the workspace.
    var stagingOffset: Int { shape.rowLength * chunk * shape.p * shape.q }

    /// Calls `body` on each chunk, in batch order.
    @inline(__always)
    func forEachChunk(_ body: (ConvChunk) -> Void) {
        // Per-image GEMMs when an image's P·Q is wide enough to be efficient on its own, which
        // saves the staging copy; a chunk of one image needs no staging either.
        let wide = shape.isPointwise || shape.p * shape.q >= 256
        var n0 = 0
        while n0 < shape.n {
            let nb = min(chunk, shape.n - n0)
            body(ConvChunk(n0: n0, nb: nb, direct: wide || nb == 1))
            n0 += nb
        }
    }

    /// The column matrix of `ch`, (C·R·S, nb·P·Q): the im2col block, or the input image itself
    /// for a pointwise conv.
    func columns(_ ch: ConvChunk) -> ConvGemm.Operand {
        if shape.isPointwise { return .init(.input, ch.n0 * shape.c * shape.p * shape.q) }
        return .init(.columns)
    }

    /// Forward GEMMs of `ch` in order: `output = W · columns`. `body` also gets the image the
    /// GEMM completes in `output`, or nil when it writes the staging block.
    @inline(__always)
    func forwardGemms(_ ch: ConvChunk, _ body: (ConvGemm, _ image: Int?) -> Void) {
        let g = shape
        let pq = g.p * g.q
        let crs = g.rowLength
        let col = columns(ch)
        let ld = ch.nb * pq
        if ch.direct {
            for i in 0..<ch.nb {
                body(
                    ConvGemm(
                        transA: false, transB: false, m: g.k, n: pq, k: crs,
                        a: .init(.weight), lda: crs, b: .init(col.buffer, col.offset + i * pq),
                        ldb: ld, beta: 0, c: .init(.output, (ch.n0 + i) * g.k * pq), ldc: pq),
                    ch.n0 + i)
            }
        } else {
            body(
                ConvGemm(
                    transA: false, transB: false, m: g.k, n: ld, k: crs, a: .init(.weight),
                    lda: crs, b: col, ldb: ld, beta: 0, c: .init(.staging), ldc: ld),
                nil)
        }
    }

    /// Weight-gradient GEMMs of `ch` in order: `dW += dOutput · columnsᵀ`. A staged chunk reads
    /// dOutput from the staging block, (K, nb·P·Q).
    @inline(__always)
    func weightGradientGemms(_ ch: ConvChunk, _ body: (ConvGemm) -> Void) {
        let g = shape
        let pq = g.p * g.q
        let crs = g.rowLength
        let col = columns(ch)
        let ld = ch.nb * pq
        if ch.direct {
            for i in 0..<ch.nb {
                body(
                    ConvGemm(
                        transA: false, transB: true, m: g.k, n: crs, k: pq,
                        a: .init(.dOutput, (ch.n0 + i) * g.k * pq), lda: pq,
                        b: .init(col.buffer, col.offset + i * pq), ldb: ld, beta: 1,
                        c: .init(.dWeight), ldc: crs))
            }
        } else {
            body(
                ConvGemm(
                    transA: false, transB: true, m: g.k, n: crs, k: ld, a: .init(.staging),
                    lda: ld, b: col, ldb: ld, beta: 1, c: .init(.dWeight), ldc: crs))
        }
    }

    /// Input-gradient GEMMs of `ch` in order: `columns = Wᵀ · dOutput`, for col2im to add into
    /// dInput; a pointwise conv accumulates straight into dInput instead.
    @inline(__always)
    func inputGradientGemms(_ ch: ConvChunk, _ body: (ConvGemm) -> Void) {
        let g = shape
        let pq = g.p * g.q
        let crs = g.rowLength
        let ld = ch.nb * pq
        if ch.direct {
            for i in 0..<ch.nb {
                let dOut = ConvGemm.Operand(.dOutput, (ch.n0 + i) * g.k * pq)
                if g.isPointwise {
                    body(
                        ConvGemm(
                            transA: true, transB: false, m: crs, n: pq, k: g.k,
                            a: .init(.weight), lda: crs, b: dOut, ldb: pq, beta: 1,
                            c: .init(.dInput, (ch.n0 + i) * g.c * pq), ldc: pq))
                } else {
                    body(
                        ConvGemm(
                            transA: true, transB: false, m: crs, n: pq, k: g.k,
                            a: .init(.weight), lda: crs, b: dOut, ldb: pq, beta: 0,
                            c: .init(.columns, i * pq), ldc: ld))
                }
            }
        } else {
            body(
                ConvGemm(
                    transA: true, transB: false, m: crs, n: ld, k: g.k, a: .init(.weight),
                    lda: crs, b: .init(.staging), ldb: ld, beta: 0, c: .init(.columns), ldc: ld))
        }
    }

    /// Every GEMM of a forward pass, then a backward pass, in the order the kernels issue them.
    /// `inputGradient` false leaves out the input-gradient GEMMs (the stem).
    func forEachGemm(inputGradient: Bool, _ body: (ConvGemm) -> Void) {
        forEachChunk { ch in forwardGemms(ch) { gemm, _ in body(gemm) } }
        forEachChunk { ch in
            weightGradientGemms(ch, body)
            if inputGradient { inputGradientGemms(ch, body) }
        }
    }

    /// `forEachGemm` as a list.
    func gemms(inputGradient: Bool) -> [ConvGemm] {
        var list: [ConvGemm] = []
        forEachGemm(inputGradient: inputGradient) { list.append($0) }
        return list
    }
}

/// The buffers a conv's GEMMs run on; nil for those the pass does not touch.
struct ConvTensors {
    var input: UnsafePointer<Float>
    var weight: UnsafePointer<Float>
    var output: UnsafeMutablePointer<Float>? = nil
    var dOutput: UnsafePointer<Float>? = nil
    var dWeight: UnsafeMutablePointer<Float>? = nil
    var dInput: UnsafeMutablePointer<Float>? = nil
    var workspace: UnsafeMutablePointer<Float>? = nil
    /// Sees every GEMM just before it runs (tests record the schedule with it).
    var trace: ((ConvGemm) -> Void)? = nil

    /// The address of `o`. Read-only buffers are cast to mutable only to share one switch: the
    /// plan writes (operand C) only to output, gradients and the workspace.
    @inline(__always)
    func address(_ o: ConvGemm.Operand, _ plan: ConvPlan) -> UnsafeMutablePointer<Float> {
        let base: UnsafeMutablePointer<Float>
        switch o.buffer {
        case .input: base = UnsafeMutablePointer(mutating: input)
        case .weight: base = UnsafeMutablePointer(mutating: weight)
        case .output: base = output!
        case .dOutput: base = UnsafeMutablePointer(mutating: dOutput!)
        case .dWeight: base = dWeight!
        case .dInput: base = dInput!
        case .columns: base = workspace!
        case .staging: base = workspace! + plan.stagingOffset
        }
        return base + o.offset
    }

    /// Runs one GEMM of `plan`.
    @inline(__always)
    func run(_ gemm: ConvGemm, _ plan: ConvPlan) {
        trace?(gemm)
        sgemm(
            transA: gemm.transA, transB: gemm.transB, m: gemm.m, n: gemm.n, k: gemm.k, alpha: 1,
            a: address(gemm.a, plan), lda: gemm.lda, b: address(gemm.b, plan), ldb: gemm.ldb,
            beta: gemm.beta, c: address(gemm.c, plan), ldc: gemm.ldc)
    }
}
