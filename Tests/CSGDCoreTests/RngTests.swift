import CSGDCore
import XCTest

final class RngTests: XCTestCase {
    func testSameSeedSameStreamAndRestoreFromState() {
        var a = Rng(seed: 42)
        var b = Rng(seed: 42)
        for _ in 0..<100 { XCTAssertEqual(a.next(), b.next()) }
        let saved = a.state
        let x = (0..<10).map { _ in a.next() }
        var c = Rng(state: saved)
        XCTAssertEqual(x, (0..<10).map { _ in c.next() })
        var d = Rng(seed: 43)
        XCTAssertNotEqual(Rng(seed: 42).state, d.state)
        _ = d.next()
    }

    func testKnownFirstOutputsArePortable() {
        // Pinned values: any change to the generator breaks reproducibility of old runs.
        var r = Rng(seed: 0)
        let first = r.next()
        var r2 = Rng(seed: 0)
        XCTAssertEqual(first, r2.next())
        XCTAssertEqual(Rng(seed: 0).state[0], 0xE220_A839_7B1D_CDAF)
    }

    func testPermutationIsAPermutationAndGaussianMoments() {
        var r = Rng(seed: 7)
        let p = r.permutation(1000)
        XCTAssertEqual(Set(p).count, 1000)
        XCTAssertNotEqual(p, Array(0..<1000))
        var sum = 0.0
        var sq = 0.0
        let n = 200_000
        for _ in 0..<n {
            let g = Double(r.nextGaussian())
            sum += g
            sq += g * g
        }
        XCTAssertEqual(sum / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(sq / Double(n), 1, accuracy: 0.01)
    }

    func testParameterStoreLayoutAndChecksum() {
        var b = ParameterStoreBuilder()
        let w = b.addParameter("conv.weight", shape: [4, 3, 3, 3], role: .convWeight)
        let g = b.addParameter("bn.weight", shape: [4], role: .bnScale)
        let m = b.addBuffer("bn.running_mean", shape: [4], role: .bnRunningMean)
        let s = b.build()
        XCTAssertEqual(s.parameterCount, 112)
        XCTAssertEqual(s[w].rowLength, 27)
        XCTAssertEqual(s.value(g) - s.values.pointer, 108)
        XCTAssertEqual(s.parameterID(named: "bn.weight"), g)
        XCTAssertEqual(s.bufferID(named: "bn.running_mean"), m)
        let c0 = s.checksum()
        s.buffer(m)[2] = 1
        XCTAssertNotEqual(c0, s.checksum())
    }
}
