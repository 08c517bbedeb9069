// Threads for our own (non-GEMM) kernels: BatchNorm, ReLU, the residual add, im2col/col2im
// and pooling. OpenBLAS threads its GEMMs itself (`BLASThreads`); with
// `threads > 1` these passes would otherwise run on one core while the GEMMs use all of them.
//
// Work is split only where the pieces are independent (channels, planes, disjoint element
// ranges), so every result is bitwise the same for any thread count: threading changes speed,
// never numbers (KernelThreadsTests checks this).

import Dispatch
import Synchronization

/// The number of threads our own kernels may use (per process; MPI ranks usually want 1).
public enum KernelThreads {
    private static let stored = Atomic<Int>(1)

    /// The largest accepted count: more threads than this is a configuration mistake.
    public static let maximum = 256

    /// Sets the thread count; `n ≤ 0` leaves it as it is, counts above `maximum` are clamped.
    public static func set(_ n: Int) {
        if n > 0 { stored.store(min(n, maximum), ordering: .relaxed) }
    }

    /// The current thread count (1 unless `set`).
    public static var count: Int { stored.load(ordering: .relaxed) }
}

/// Calls `body` on contiguous, disjoint ranges covering `0..<count`, concurrently on up to
/// `KernelThreads.count` threads, giving each range at least `grain` items (so small tensors
/// stay on the calling thread, where the dispatch would cost more than the pass).
/// `align` (≥ 1) makes every range boundary a multiple of it, e.g. 16 floats = one cache line,
/// so no two threads write the same line.
@inline(__always)
func parallelRanges(
    _ count: Int, grain: Int, align: Int = 1, _ body: (Range<Int>) -> Void
) {
    let threads = min(KernelThreads.count, count / max(grain, 1))
    if threads <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    let blocks = (count + align - 1) / align
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        let lo = min(count, blocks * t / threads * align)
        let hi = t == threads - 1 ? count : min(count, blocks * (t + 1) / threads * align)
        if lo < hi { body(lo..<hi) }
    }
}

/// Runs `body(i)` for every `i` in `0..<count` (channels, planes: items whose passes touch
/// disjoint memory), split across `KernelThreads` when the items together are worth it;
/// `elementsEach` is the number of floats one item's pass touches.
@inline(__always)
func parallelForEach(_ count: Int, elementsEach: Int, _ body: (Int) -> Void) {
    parallelRanges(count, grain: max(1, elementwiseGrain / max(1, elementsEach))) { r in
        for i in r { body(i) }
    }
}

/// Elements of an element-wise pass worth one thread: below this the dispatch costs more than
/// the pass (a few µs against ~1 ns per element).
let elementwiseGrain = 32_768
