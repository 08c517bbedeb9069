import CSGDCentripetal
import CSGDCore
import CSGDModels
import XCTest

final class CentripetalUpdateTests: XCTestCase {
    func randomRows(_ n: Int, _ d: Int, seed: UInt64) -> FloatBuffer {
        var rng = Rng(seed: seed)
        let b = FloatBuffer(count: n * d)
        for i in 0..<b.count { b[i] = rng.nextGaussian() }
        return b
    }

    func testContractionMatchesTheClosedForm() {
        // Plain SGD, any gradient: W_j − W_k ← (1 − τ(η+ε))·(W_j − W_k), csgd.md §3.3.
        let (n, d) = (6, 10)
        let clusters = [[0, 2, 5], [1], [3, 4]]
        let (tau, eta, eps): (Float, Float, Float) = (0.1, 1e-2, 0.3)
        let w = randomRows(n, d, seed: 1)
        var rng = Rng(seed: 2)
        let d0 = w[0 * d + 3] - w[5 * d + 3]
        let d1 = w[3 * d + 7] - w[4 * d + 7]
        let steps = 20
        for _ in 0..<steps {
            let g = FloatBuffer(count: n * d)
            for i in 0..<g.count { g[i] = rng.nextGaussian() * 5 }
            CentripetalUpdate.transform(
                grad: g.pointer, weight: w.pointer, rowLength: d, clusters: clusters, decay: eta,
                strength: eps)
            for i in 0..<w.count { w[i] -= tau * g[i] }
        }
        let factor = pow(Double(1 - tau * (eta + eps)), Double(steps))
        XCTAssertEqual(Double(w[0 * d + 3] - w[5 * d + 3]) / Double(d0), factor, accuracy: 1e-4)
        XCTAssertEqual(Double(w[3 * d + 7] - w[4 * d + 7]) / Double(d1), factor, accuracy: 1e-4)
        // The singleton only sees plain weight decay: no contraction toward anything.
    }

    func testMergedGradientRowsAreBitwiseEqual() {
        let (n, d) = (7, 5)
        let clusters = [[0, 3], [1, 2, 6], [4], [5]]
        let g = randomRows(n, d, seed: 3)
        let w = randomRows(n, d, seed: 4)
        // With no decay and no pull, g̃ = M·G: members get the very same floats.
        CentripetalUpdate.transform(
            grad: g.pointer, weight: w.pointer, rowLength: d, clusters: clusters, decay: 0,
            strength: 0)
        for h in clusters {
            for j in h.dropFirst() {
                for i in 0..<d {
                    XCTAssertEqual(g[j * d + i].bitPattern, g[h[0] * d + i].bitPattern)
                }
            }
        }
        // With identical weights inside clusters, the full transform keeps rows bitwise equal.
        for h in clusters {
            for j in h.dropFirst() { for i in 0..<d { w[j * d + i] = w[h[0] * d + i] } }
        }
        let g2 = randomRows(n, d, seed: 5)
        CentripetalUpdate.transform(
            grad: g2.pointer, weight: w.pointer, rowLength: d, clusters: clusters, decay: 1e-4,
            strength: 3e-3)
        for h in clusters {
            for j in h.dropFirst() {
                for i in 0..<d {
                    XCTAssertEqual(g2[j * d + i].bitPattern, g2[h[0] * d + i].bitPattern)
                }
            }
        }
    }

    func testTransformEqualsTheMatrixForm() {
        // g̃ = M·G + (η·I + ε·(I − M))·W computed with explicit n×n matrices in Double.
        let (n, d) = (5, 3)
        let clusters = [[0, 4], [1, 2, 3]]
        let g = randomRows(n, d, seed: 6)
        let w = randomRows(n, d, seed: 7)
        let (eta, eps) = (0.01, 0.2)
        var m = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for h in clusters { for a in h { for b in h { m[a][b] = 1 / Double(h.count) } } }
        var expected = [Double](repeating: 0, count: n * d)
        for a in 0..<n {
            for i in 0..<d {
                var s = 0.0
                for b in 0..<n {
                    let dab = (a == b ? eta + eps : 0) - eps * m[a][b]
                    s += m[a][b] * Double(g[b * d + i]) + dab * Double(w[b * d + i])
                }
                expected[a * d + i] = s
            }
        }
        CentripetalUpdate.transform(
            grad: g.pointer, weight: w.pointer, rowLength: d, clusters: clusters,
            decay: Float(eta), strength: Float(eps))
        for i in 0..<(n * d) { XCTAssertEqual(Double(g[i]), expected[i], accuracy: 1e-6) }
    }

    func testPlansAreDeterministicValidatedAndFollowersSharePacesetterClusters() throws {
        let arch = try Architecture.standard(
            model: "resnet20", inputChannels: 1, imageSize: 32, numClasses: 10)
        let net = try Network(architecture: arch)
        net.initialize(seed: 1)
        let t = try Topology(graph: net.graph)
        let a = try Clustering.plan(
            network: net, topology: t, target: .ratio(5.0 / 8), method: .kmeans, seed: 9)
        let b = try Clustering.plan(
            network: net, topology: t, target: .ratio(5.0 / 8), method: .kmeans, seed: 9)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.prunedWidths(t).prefix(3), [10, 10, 10])
        let byConv = a.clustersByConv(t)
        for g in t.groups {
            for f in g.followers { XCTAssertEqual(byConv[f], byConv[g.pacesetter]) }
        }
        XCTAssertEqual(
            Clustering.even(n: 10, clusters: 4), [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]])
        var broken = a
        broken.groups[0][0].append(broken.groups[0][1][0])
        XCTAssertThrowsError(try broken.validate(t))
        var empty = a
        empty.groups[1][0] = []
        XCTAssertThrowsError(try empty.validate(t))
        XCTAssertThrowsError(try PruneTarget(parsing: "9/8"))
        XCTAssertThrowsError(
            try Clustering.plan(
                network: net, topology: t, target: .widthMap([16: 17]), method: .even, seed: 1))
        XCTAssertEqual(try PruneTarget(parsing: "13/16"), .ratio(13.0 / 16))
        XCTAssertEqual(try PruneTarget(parsing: "16:10,32:20"), .widthMap([16: 10, 32: 20]))
    }
}
