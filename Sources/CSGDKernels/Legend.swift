// CSGDKernels: stateless forward/backward kernels on raw Float buffers, NCHW, PyTorch semantics.
//
// Dimension letters, package-wide:
//   N batch · C input channels · K output channels (filters) · H W input size ·
//   P Q output size · R S kernel size.
// Conventions (llm.c): arguments go outputs first, then inputs, then sizes. Every `…Backward`
// ACCUMULATES (`+=`) into its gradient outputs, so callers zero gradients once per step and
// branches of the graph (residual adds) sum naturally. Forward kernels overwrite their output.
// This is the only target that imports CBLAS.

import CBLAS

/// OpenBLAS threading control (per process; MPI ranks usually want 1).
public enum BLASThreads {
    /// Sets the number of OpenBLAS threads; `n ≤ 0` leaves the library default.
    public static func set(_ n: Int) {
        if n > 0 { openblas_set_num_threads(Int32(n)) }
    }
    /// The number of threads OpenBLAS will use.
    public static var current: Int { Int(openblas_get_num_threads()) }
    /// The CPU kernel family OpenBLAS picked (e.g. "Haswell", "Zen").
    public static var coreName: String { String(cString: openblas_get_corename()) }
}

/// Row-major single-precision GEMM: `C = alpha·op(A)·op(B) + beta·C`, `op(A)` is M×Kd,
/// `op(B)` is Kd×N (a thin wrapper over `cblas_sgemm` so callers never see CBLAS types).
@inline(__always)
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
