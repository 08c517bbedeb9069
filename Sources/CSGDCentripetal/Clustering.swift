// Forming clusters: k-means on the pacesetter's flattened filters (k-means++ seeding, Lloyd
// iterations, all from a seeded Rng, so the same seed gives the same clusters on every rank and
// every run — an improvement over the official code, which leaves sklearn unseeded), an
// even split into consecutive blocks (the TF code's `even`), or balanced k-means: k-means whose
// assignment step fills every cluster to exactly ⌈n/k⌉ or ⌊n/k⌋ members (a widen round, n = k·r,
// then pairs every final filter with exactly r − 1 redundant copies).

import CSGDCore
import CSGDModels

/// How filters are grouped into clusters.
public enum ClusterMethod: String, Codable, Sendable, CaseIterable {
    /// k-means on the flattened kernels.
    case kmeans
    /// Consecutive blocks; the first n mod r clusters get one extra member.
    case even
    /// k-means with capacities: every cluster gets ⌈n/r⌉ or ⌊n/r⌋ members (n mod r of them
    /// the larger size), so a k× widened layer squeezes with exactly k filters per cluster.
    case balanced
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
        let groups = topology.groups.indices.map { gi in
            clusters(
                network: network, topology: topology, group: gi, width: widths[gi],
                method: method, seed: seed)
        }
        let plan = ClusterPlan(groups: groups)
        try plan.validate(topology)
        return plan
    }

    /// The clusters of one group at width `r` (singletons when `r` is its width); the same
    /// clusters `plan` gives that group for the same seed.
    public static func clusters(
        network: Network, topology: Topology, group gi: Int, width r: Int,
        method: ClusterMethod, seed: UInt64
    ) -> [[Int]] {
        let g = topology.groups[gi]
        if r >= g.width { return (0..<g.width).map { [$0] } }
        switch method {
        case .even:
            return even(n: g.width, clusters: r)
        case .kmeans, .balanced:
            let node = topology.convs[g.pacesetter]
            let d = network.store[node.weight].rowLength
            var rng = Rng.derived(seed: seed, 0xC1, UInt64(gi))
            let rows = network.store.value(node.weight)
            return method == .kmeans
                ? kmeans(rows: rows, n: g.width, d: d, k: r, rng: &rng)
                : balancedKMeans(rows: rows, n: g.width, d: d, k: r, rng: &rng)
        }
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
        var centers = plusPlusSeeds(rows: rows, n: n, d: d, k: k, rng: &rng)
        func dist(_ i: Int, _ c: [Double]) -> Double { squaredDistance(rows + i * d, c, d) }
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

    /// k-means whose assignment step respects capacities: n mod k clusters hold ⌈n/k⌉ members,
    /// the rest ⌊n/k⌋. Each iteration assigns (filter, centre) pairs in order of increasing
    /// distance (ties by filter, then centre), skipping full centres, then moves every centre
    /// to its members' mean; it stops when the assignment repeats. The greedy assignment is not
    /// the optimal transport one, but every cluster has exactly the asked size.
    /// - Returns: clusters in canonical order.
    public static func balancedKMeans(
        rows: UnsafePointer<Float>, n: Int, d: Int, k: Int, rng: inout Rng, iterations: Int = 30
    ) -> [[Int]] {
        if k >= n { return (0..<n).map { [$0] } }
        var centers = plusPlusSeeds(rows: rows, n: n, d: d, k: k, rng: &rng)
        let small = n / k
        let bigAllowed = n % k
        var assign = [Int](repeating: -1, count: n)
        for _ in 0..<iterations {
            var pairs: [(Double, Int, Int)] = []
            pairs.reserveCapacity(n * k)
            for i in 0..<n {
                for c in 0..<k {
                    pairs.append((squaredDistance(rows + i * d, centers[c], d), i, c))
                }
            }
            pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : ($0.1 != $1.1 ? $0.1 < $1.1 : $0.2 < $1.2) }
            var next = [Int](repeating: -1, count: n)
            var counts = [Int](repeating: 0, count: k)
            var bigUsed = 0
            var placed = 0
            for (_, i, c) in pairs where next[i] < 0 {
                if counts[c] < small {
                    counts[c] += 1
                } else if counts[c] == small && bigUsed < bigAllowed {
                    counts[c] += 1
                    bigUsed += 1
                } else {
                    continue
                }
                next[i] = c
                placed += 1
                if placed == n { break }
            }
            let changed = next != assign
            assign = next
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

    /// k-means++ seeding: `k` centres, each a row drawn with probability proportional to its
    /// squared distance from the nearest centre so far.
    static func plusPlusSeeds(
        rows: UnsafePointer<Float>, n: Int, d: Int, k: Int, rng: inout Rng
    ) -> [[Double]] {
        func dist(_ i: Int, _ c: [Double]) -> Double { squaredDistance(rows + i * d, c, d) }
        func row(_ i: Int) -> [Double] { (0..<d).map { Double(rows[i * d + $0]) } }
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
        return centers
    }

    static func squaredDistance(_ r: UnsafePointer<Float>, _ c: [Double], _ d: Int) -> Double {
        var s = 0.0
        for j in 0..<d {
            let t = Double(r[j]) - c[j]
            s += t * t
        }
        return s
    }
}
