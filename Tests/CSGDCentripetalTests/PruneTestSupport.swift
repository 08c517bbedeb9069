import CSGDCentripetal
import CSGDCore
import CSGDModels
import XCTest

/// Copies member 0's rows onto every cluster member, for every tensor coupled to the group
/// (kernels, biases, BN γ/β and running statistics, depthwise filters) — the topology's own
/// list, so the tests also check that the list is complete.
func collapse(_ net: Network, _ topology: Topology, _ plan: ClusterPlan) {
    let s = net.store
    for g in topology.groups {
        for t in g.coupled {
            let base: UnsafeMutablePointer<Float>
            switch t.storage {
            case .parameter(let p): base = s.value(p)
            case .buffer(let b): base = s.buffer(b)
            }
            let d = t.rowLength
            let w = base + t.channelOffset * d
            for h in plan.groups[g.index] {
                for j in h.dropFirst() { (w + j * d).update(from: w + h[0] * d, count: d) }
            }
        }
    }
}

/// Trained-like values: BN γ, β and running statistics and conv biases differ per channel.
func randomizePerChannelTensors(_ net: Network, seed: UInt64) {
    var rng = Rng(seed: seed)
    for (i, spec) in net.store.specs.enumerated() {
        let p = net.store.value(ParameterID(i))
        for j in 0..<spec.count {
            switch spec.role {
            case .bnScale: p[j] = 0.5 + rng.nextFloat()
            case .bnShift: p[j] = rng.nextGaussian() * 0.3
            case .convBias: p[j] = rng.nextGaussian() * 0.2
            default: break
            }
        }
    }
    for (i, spec) in net.store.bufferSpecs.enumerated() {
        for j in 0..<spec.count {
            net.store.buffer(BufferID(i))[j] =
                spec.role == .bnRunningVar ? 0.5 + rng.nextFloat() : rng.nextGaussian() * 0.2
        }
    }
}

/// Random N(0, 1) images.
func randomImages(count: Int, floats: Int, seed: UInt64) -> FloatBuffer {
    var rng = Rng(seed: seed)
    let x = FloatBuffer(count: count * floats)
    for i in 0..<x.count { x[i] = rng.nextGaussian() }
    return x
}

/// Eval-mode logits of `net` on `x`, copied out.
func logits(_ net: Network, _ x: FloatBuffer, batch: Int) -> [Float] {
    Array(
        UnsafeBufferPointer(
            start: net.forward(images: x.pointer, batch: batch, training: false),
            count: batch * net.numClasses))
}

/// max |a − b| and max |a|.
func maxDiff(_ a: [Float], _ b: [Float]) -> (diff: Float, scale: Float) {
    (zip(a, b).map { abs($0 - $1) }.max()!, a.map { abs($0) }.max()!)
}
