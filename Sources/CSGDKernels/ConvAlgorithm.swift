// Which algorithm a 3×3 stride-1 convolution runs on: im2col + sgemm (Conv2d.swift),
// Winograd F(2×2, 3×3) (Winograd.swift) or F(4×4, 3×3) (Winograd4.swift). Every other shape
// always runs im2col.
//
// `auto` picks per shape from `ConvAlgorithm.winogradWins`, a table measured with
// `csgd-dist bench kernels --winograd` (fwd + bwd, 1 thread, this repository's machine, see
// docs/performance.md). A committed table rather than a first-use measurement: a timing taken
// inside a training run on a shared machine is as noisy as the bench rows are, would make two
// ranks of one job pick different algorithms for the same layer (different rounding, so 1 rank
// vs N ranks would no longer agree bitwise), and would make runs irreproducible. Shapes not
// in the table run im2col.

import Foundation

/// The algorithm for 3×3 stride-1 convolutions.
public enum Conv3x3Algorithm: String, CaseIterable, Sendable {
    /// Always im2col + sgemm.
    case im2col
    /// Always Winograd F(2×2, 3×3) where the geometry allows (3×3, stride 1, pad ≤ 2).
    case winograd
    /// Always Winograd F(4×4, 3×3) where the geometry allows.
    case winograd4
    /// Per shape from `ConvAlgorithm.winogradWins`: the tile it lists, im2col otherwise.
    case auto
}

/// Process-wide choice of convolution algorithm.
public enum ConvAlgorithm {
    /// Set before building networks or starting threads; read on every conv call. The default
    /// comes from the environment variable `CSGD_CONV3X3` (im2col, winograd, winograd4 or
    /// auto), else `defaultConv3x3`.
    nonisolated(unsafe) public static var conv3x3: Conv3x3Algorithm = {
        if let name = getenvString("CSGD_CONV3X3"), let a = Conv3x3Algorithm(rawValue: name) {
            return a
        }
        return defaultConv3x3
    }()

    /// The built-in default: the measured table (docs/performance.md, "Winograd F(2×2, 3×3)").
    public static let defaultConv3x3 = Conv3x3Algorithm.auto

    /// A shape key of the measured table: input channels, filters, input side (square).
    public struct Key: Hashable, Sendable {
        public let c: Int, k: Int, side: Int
        /// A key.
        public init(c: Int, k: Int, side: Int) {
            self.c = c
            self.k = k
            self.side = side
        }
    }

    /// 3×3 stride-1 pad-1 shapes where a Winograd tile's fwd + bwd beat im2col's by more than
    /// the noise in `bench kernels --winograd` (thread CPU time, 1 thread; docs/performance.md,
    /// measured 2026-11-26 with F(4×4) beside F(2×2)), mapped to the faster tile. Measured on
    /// both OpenBLAS cores this machine can run, since im2col's GEMMs are OpenBLAS's (its
    /// AVX-512 Cooperlake kernels run the 16-channel im2col GEMMs at ~35 GFLOP/s, its AVX2
    /// Haswell ones at ~52). Until F(4×4) the two needed different tables; now they pick the
    /// same tile for every shape: F(4×4) everywhere on ResNet-56 and its 5/8-pruned widths,
    /// F(2×2) at ResNet-50's 14×14, im2col at 512 @7×7 (F(2×2) 0.79–0.89). If a core ever
    /// ranks them differently, key the table by `BLASThreads.coreName` again.
    public static let winogradWins: [Key: Int] = [
        // im2col ÷ the chosen tile, Cooperlake / Haswell.
        // ResNet-50 @224: F(4×4) 2.34 / 2.04 at 56×56, 2.19 / 1.82 at 28×28; F(2×2) 1.47 /
        // 1.33 at 14×14 (F(4×4) 1.09 / 0.94).
        Key(c: 64, k: 64, side: 56): 4, Key(c: 128, k: 128, side: 28): 4,
        Key(c: 256, k: 256, side: 14): 2,
        // ResNet-56: F(4×4) 2.18 / 1.31, 1.91 / 1.61, 1.50 / 1.36.
        Key(c: 16, k: 16, side: 32): 4, Key(c: 32, k: 32, side: 16): 4,
        Key(c: 64, k: 64, side: 8): 4,
        // 5/8-pruned ResNet-56: F(4×4) 1.11 / 1.43, 1.59 / 1.51, 1.49 / 1.43.
        Key(c: 10, k: 10, side: 32): 4, Key(c: 20, k: 20, side: 16): 4,
        Key(c: 40, k: 40, side: 8): 4,
    ]

    /// The Winograd output tile (2 or 4) `shape` runs on under the current setting, nil for
    /// im2col.
    public static func winogradTile(_ g: Conv2dShape) -> Int? {
        guard WinogradPlan.supports(g) else { return nil }
        switch conv3x3 {
        case .im2col: return nil
        case .winograd: return 2
        case .winograd4: return 4
        case .auto:
            guard g.pad == 1 && g.h == g.w else { return nil }
            return winogradWins[Key(c: g.c, k: g.k, side: g.h)]
        }
    }

    /// Whether `shape` runs on a Winograd path under the current setting.
    public static func usesWinograd(_ g: Conv2dShape) -> Bool { winogradTile(g) != nil }
}

private func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}
