// A seeded, portable random number generator: xoshiro256** seeded through SplitMix64.
//
// Same seed → same stream on every platform and every rank (no Foundation, no libc rand), so
// initialisation, shuffling, augmentation and k-means are reproducible and resumable.
// References: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2018).

import Foundation

/// Deterministic 64-bit PRNG (xoshiro256**) whose whole state can be saved and restored.
public struct Rng: RandomNumberGenerator, Equatable, Codable {
    /// The four 64-bit state words; save them to resume the stream exactly.
    public var state: [UInt64]

    /// Seeds the generator; equal seeds give equal streams.
    public init(seed: UInt64) {
        var s = seed
        var words: [UInt64] = []
        for _ in 0..<4 { words.append(Rng.splitMix64(&s)) }
        state = words
    }

    /// Restores a generator from saved state words.
    public init(state: [UInt64]) { self.state = state }

    /// Derives an independent generator for a sub-stream (e.g. per epoch, per rank, per layer).
    public static func derived(seed: UInt64, _ keys: UInt64...) -> Rng {
        var s = seed
        for k in keys { s = splitMix64Value(s ^ (k &* 0x9E37_79B9_7F4A_7C15)) }
        return Rng(seed: s)
    }

    static func splitMix64(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        return splitMix64Value(x)
    }

    static func splitMix64Value(_ v: UInt64) -> UInt64 {
        var z = v
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always) static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = Rng.rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = Rng.rotl(state[3], 45)
        return result
    }

    /// Uniform in [0, 1) with 24 bits of precision (exactly representable as Float).
    public mutating func nextFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in 0..<bound (Lemire's method, unbiased).
    public mutating func nextInt(below bound: Int) -> Int {
        Int(truncatingIfNeeded: next(upperBound: UInt64(bound)))
    }

    /// Standard normal sample (Box–Muller in Double, rounded to Float).
    public mutating func nextGaussian() -> Float {
        var u1 = nextDouble()
        while u1 <= 0 { u1 = nextDouble() }
        let u2 = nextDouble()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// Fisher–Yates permutation of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = nextInt(below: i + 1)
            p.swapAt(i, j)
        }
        return p
    }
}
