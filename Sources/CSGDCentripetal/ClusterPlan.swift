// Cluster plans: which filters of every conv are pulled together by C-SGD.
//
// Clusters are kept per channel GROUP (Topology.swift): the convs whose outputs are added into
// one residual stream share one clustering by construction — the pacesetter's — so followers
// can never drift from it. A group whose target equals its width gets singletons and is left
// to plain SGD. Ding et al., "Centripetal SGD for Pruning Very Deep Convolutional Networks with
// Complicated Structure", CVPR 2019, §3; shared/docs/csgd.md §4–5.

import CSGDCore
import CSGDModels
import Foundation

/// How wide each layer should end up.
public enum PruneTarget: Equatable, Sendable {
    /// Every group keeps ⌈ratio · width⌉ channels (e.g. 5/8).
    case ratio(Double)
    /// Only block-internal groups shrink, to ⌈ratio · width⌉ (the paper's ImageNet setting);
    /// residual streams and the stem keep their width.
    case internalRatio(Double)
    /// Maps a current width to a target width (per-stage widths, e.g. 16:10,32:20,64:40);
    /// widths not listed are kept.
    case widthMap([Int: Int])
    /// An explicit target width per conv, in conv order (tied convs must agree).
    case perConv([Int])

    /// Parses `5/8`, `0.625`, `internal:0.7`, `16:10,32:20,64:40` or `w1,w2,…` (per conv).
    public init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        func ratio(_ s: Substring) throws -> Double {
            let parts = s.split(separator: "/")
            let v: Double?
            if parts.count == 2, let a = Double(parts[0]), let b = Double(parts[1]), b != 0 {
                v = a / b
            } else if parts.count == 1 {
                v = Double(parts[0])
            } else {
                v = nil
            }
            guard let r = v, r > 0, r <= 1 else {
                throw CSGDError(
                    "prune target '\(text)': ratio must be in (0, 1], e.g. 5/8 or 0.625")
            }
            return r
        }
        if t.hasPrefix("internal:") {
            self = .internalRatio(try ratio(t.dropFirst("internal:".count)))
        } else if t.contains(":") {
            var map: [Int: Int] = [:]
            for pair in t.split(separator: ",") {
                let kv = pair.split(separator: ":")
                guard kv.count == 2, let a = Int(kv[0]), let b = Int(kv[1]), b >= 1 else {
                    throw CSGDError(
                        "prune target '\(text)': expected width:target pairs, e.g. 16:10")
                }
                map[a] = b
            }
            self = .widthMap(map)
        } else if t.contains(",") {
            let ws = t.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            if ws.contains(where: { $0 == nil }) {
                throw CSGDError("prune target '\(text)': per-conv widths must be integers")
            }
            self = .perConv(ws.map { $0! })
        } else {
            self = .ratio(try ratio(Substring(t)))
        }
    }

    /// Target width of every group of `topology`. Fixed groups (`ChannelGroup.isFixed`) keep
    /// their width under ratios and width maps.
    /// - Throws: `CSGDError` when a target exceeds a width, is < 1, tied convs disagree, or an
    ///   explicit width would shrink a fixed group.
    public func groupWidths(_ topology: Topology) throws -> [Int] {
        try topology.groups.map { g in
            let w = g.width
            var target: Int
            switch self {
            case .ratio(let r): target = Int((Double(w) * r - 1e-9).rounded(.up))
            case .internalRatio(let r):
                target = g.isBlockInternal ? Int((Double(w) * r - 1e-9).rounded(.up)) : w
            case .widthMap(let m): target = m[w] ?? w
            case .perConv(let ws):
                if ws.count != topology.convs.count {
                    throw CSGDError(
                        "prune target: \(ws.count) widths given, the model has "
                            + "\(topology.convs.count) convs")
                }
                let asked = Set(g.producers.map { ws[$0] })
                if asked.count != 1 {
                    let names = g.producers.map { topology.convs[$0].name }.joined(separator: ", ")
                    throw CSGDError(
                        "prune target: convs added into one residual stream (\(names)) must get "
                            + "one width, got \(asked.sorted())")
                }
                target = asked.first!
            }
            if let why = g.fixedReason {
                if case .perConv = self, target != w {
                    throw CSGDError(
                        "prune target: \(topology.convs[g.pacesetter].name) cannot change width: "
                            + "its channels are \(why)")
                }
                target = w
            }
            if target < 1 || target > w {
                throw CSGDError(
                    "prune target: \(topology.convs[g.pacesetter].name) has width \(w), "
                        + "target \(target) must be in 1...\(w)")
            }
            return target
        }
    }
}

/// The clusters of every channel group, saved in checkpoints and reused on resume.
public struct ClusterPlan: Codable, Equatable, Sendable {
    /// `groups[g]` is a partition of 0..<width(g) into clusters, each ascending, ordered by
    /// first member.
    public var groups: [[[Int]]]

    /// Wraps validated clusters.
    public init(groups: [[[Int]]]) { self.groups = groups }

    /// Whether group `g` is actually clustered (some cluster has more than one member).
    public func isClustered(group g: Int) -> Bool { groups[g].contains { $0.count > 1 } }

    /// The clusters each conv uses: its group's (followers share the pacesetter's).
    public func clustersByConv(_ topology: Topology) -> [[[Int]]] {
        topology.convs.map { groups[$0.groupIndex] }
    }

    /// Width each conv has after pruning, in conv order.
    public func prunedWidths(_ topology: Topology) -> [Int] {
        topology.convs.map { groups[$0.groupIndex].count }
    }

    /// Checks that every group is a partition of 0..<width with no empty cluster, that fixed
    /// groups are all singletons, and that every coupled tensor holds the group's channels.
    /// - Throws: `CSGDError` naming the first offending conv.
    public func validate(_ topology: Topology) throws {
        if groups.count != topology.groups.count {
            throw CSGDError(
                "cluster plan has \(groups.count) groups, the model has \(topology.groups.count)")
        }
        for (gi, g) in topology.groups.enumerated() {
            let name = topology.convs[g.pacesetter].name
            if let why = g.fixedReason, groups[gi].count != g.width {
                throw CSGDError("clusters of \(name): its channels are \(why) and cannot merge")
            }
            for t in g.coupled where t.channelOffset < 0 || t.channelOffset + g.width > t.rows {
                throw CSGDError(
                    "clusters of \(name): \(t.name) has \(t.rows) channels, the group needs "
                        + "\(t.channelOffset)..<\(t.channelOffset + g.width)")
            }
            var seen = [Bool](repeating: false, count: g.width)
            for cluster in groups[gi] {
                if cluster.isEmpty { throw CSGDError("clusters of \(name): empty cluster") }
                for j in cluster {
                    if j < 0 || j >= g.width || seen[j] {
                        throw CSGDError(
                            "clusters of \(name): index \(j) is out of 0..<\(g.width) or repeated")
                    }
                    seen[j] = true
                }
            }
            if let missing = seen.firstIndex(of: false) {
                throw CSGDError("clusters of \(name): filter \(missing) is in no cluster")
            }
        }
    }

    /// Sorts members and clusters into the canonical order.
    static func canonical(_ clusters: [[Int]]) -> [[Int]] {
        clusters.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    }
}
