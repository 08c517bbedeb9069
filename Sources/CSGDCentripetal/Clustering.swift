// Forming clusters: k-means on the pacesetter's flattened filters (k-means++ seeding, Lloyd
// iterations, all from a seeded Rng, so the same seed gives the same clusters on every rank and
// every run — an improvement over the official code, which leaves sklearn unseeded), or an
// even split into consecutive blocks (the TF code's `even`).

import CSGDCore
import CSGDModels

/// How filters are grouped into clusters.
public enum ClusterMethod: String, Codable, Sendable, CaseIterable {
    /// k-means on the flattened kernels.
    case kmeans
    /// Consecutive blocks; the first n mod r clusters get one extra member.
    case even
}

/// Builds cluster plans.
public enum Clustering {
    /// Clusters every group of `network` to the widths `target` asks for.
    /// - Parameters:
    ///   - seed: k-means seed; each group derives its own stream from it.
    /// - Returns: a validated plan.
    public static func plan(
        network: Network, topology: Topology, target: PruneTarget, method: ClusterMethod,
        seed: UInt64
    ) throws -> ClusterPlan {
        let widths = try target.groupWidths(topology)
        var groups: [[[Int]]] = []
        for (gi, g) in topology.groups.enumerated() {
            let r = widths[gi]
            if r == g.width {
                groups.append((0..<g.width).map { [$0] })
                continue
            }
            switch method {
            case .even:
                groups.append(even(n: g.width, clusters: r))
            case .kmeans:
                let node = topology.convs[g.pacesetter]
                let spec = network.store[node.weight]
                var rng = Rng.derived(seed: seed, 0xC1, UInt64(gi))
                groups.append(
                    kmeans(
                        rows: network.store.value(node.weight), n: g.width, d: spec.rowLength,
                        k: r, rng: &rng))
            }
        }
        let plan = ClusterPlan(groups: groups)
        try plan.validate(topology)
        return plan
    }

    /// Consecutive blocks: sizes ⌈n/r⌉ for the first n mod r clusters, ⌊n/r⌋ after.
    public static func even(n: Int, clusters r: Int) -> [[Int]] {
        var out: [[Int]] = []
        var start = 0
        for i in 0..<r {
            let size = n / r + (i < n % r ? 1 : 0)
            out.append(Array(start..<(start + size)))
            start += size
        }
        return out
    }

    /// k-means of `n` rows of length `d` into `k` non-empty clusters.
    /// - Returns: clusters in canonical order (members ascending, clusters by first member).
    public static func kmeans(
        rows: UnsafePointer<Float>, n: Int, d: Int, k: Int, rng: inout Rng, iterations: Int = 50
    ) -> [[Int]] {
        if k >= n { return (0..<n).map { [$0] } }
        func dist(_ i: Int, _ c: [Double]) -> Double {
            var s = 0.0
            let r = rows + i * d
            for j in 0..<d {
                let t = Double(r[j]) - c[j]
                s += t * t
            }
            return s
        }
        func row(_ i: Int) -> [Double] { (0..<d).map { Double(rows[i * d + $0]) } }
        // k-means++ seeding.
        var centers: [[Double]] = [row(rng.nextInt(below: n))]
        var best = (0..<n).map { dist($0, centers[0]) }
        while centers.count < k {
            let total = best.reduce(0, +)
            var pick = 0
            if total > 0 {
                var u = rng.nextDouble() * total
                for i in 0..<n {
                    u -= best[i]
                    if u <= 0 {
                        pick = i
                        break
                    }
                    pick = i
                }
            } else {
                pick = rng.nextInt(below: n)
            }
            centers.append(row(pick))
            for i in 0..<n { best[i] = min(best[i], dist(i, centers[centers.count - 1])) }
        }
        var assign = [Int](repeating: -1, count: n)
        for _ in 0..<iterations {
            var changed = false
            for i in 0..<n {
                var bi = 0
                var bd = Double.infinity
                for c in 0..<k {
                    let dd = dist(i, centers[c])
                    if dd < bd {
                        bd = dd
                        bi = c
                    }
                }
                if assign[i] != bi {
                    assign[i] = bi
                    changed = true
                }
            }
            // An empty cluster takes the point farthest from its own center (keeps k non-empty).
            var counts = [Int](repeating: 0, count: k)
            for a in assign { counts[a] += 1 }
            for c in 0..<k where counts[c] == 0 {
                var far = -1
                var fd = -1.0
                for i in 0..<n where counts[assign[i]] > 1 {
                    let dd = dist(i, centers[assign[i]])
                    if dd > fd {
                        fd = dd
                        far = i
                    }
                }
                counts[assign[far]] -= 1
                assign[far] = c
                counts[c] = 1
                changed = true
            }
            var sums = [[Double]](repeating: [Double](repeating: 0, count: d), count: k)
            for i in 0..<n {
                let r = rows + i * d
                for j in 0..<d { sums[assign[i]][j] += Double(r[j]) }
            }
            for c in 0..<k { centers[c] = sums[c].map { $0 / Double(counts[c]) } }
            if !changed { break }
        }
        var clusters = [[Int]](repeating: [], count: k)
        for i in 0..<n { clusters[assign[i]].append(i) }
        return ClusterPlan.canonical(clusters)
    }
}
