// Per-layer control of pruning from the config: explicit widths per conv (or glob), layers
// excluded from pruning, and a width floor. Patterns name convs (`layer2.0.conv1`,
// `layer3.*.conv1`); a conv stands for its channel group, so naming any conv of a residual
// stream constrains the whole stream (its convs share one clustering and must keep one
// width). Every pattern must match some conv: a typo is an error naming the pattern and the
// key, not a silently unpruned layer.

import CSGDCore
import CSGDModels

/// `layer_widths`, `exclude` and `min_width` from the config.
public struct LayerControls: Equatable, Sendable {
    /// `pattern=width` entries: convs matching the pattern end at that width.
    public var widths: [String]
    /// Patterns of convs whose groups keep their width.
    public var exclude: [String]
    /// No group shrinks below this (or below its width, if narrower).
    public var minWidth: Int

    /// Controls.
    public init(widths: [String] = [], exclude: [String] = [], minWidth: Int = 1) {
        self.widths = widths
        self.exclude = exclude
        self.minWidth = minWidth
    }

    /// Whether nothing is constrained.
    public var isEmpty: Bool { widths.isEmpty && exclude.isEmpty && minWidth <= 1 }

    /// Parses one `pattern=width` entry.
    /// - Returns: nil if malformed.
    public static func parseWidth(_ entry: String) -> (pattern: String, width: Int)? {
        let parts = entry.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let p = parts[0].trimmingCharacters(in: .whitespaces)
        guard !p.isEmpty, let w = Int(parts[1].trimmingCharacters(in: .whitespaces)), w >= 1
        else { return nil }
        return (p, w)
    }

    /// Per-group bounds for `topology`: excluded groups fixed at their width, explicit widths
    /// fixed at theirs, every other group in min(min_width, width)...width.
    /// - Throws: `CSGDError` naming the key and pattern when a pattern matches no conv, an
    ///   explicit width is out of range, or two patterns disagree on one group.
    public func bounds(_ topology: Topology, model: String) throws -> GroupBounds {
        let groups = topology.groups
        // Spaces the topology fixes (the image, a grouped conv's channels, the logits) keep
        // their width whatever the config says.
        var lower = groups.map { $0.isFixed ? $0.width : min($0.width, max(1, minWidth)) }
        var upper = groups.map(\.width)
        var fixedBy = groups.map { g in g.fixedReason.map { "the topology (\($0))" } }
        func matched(_ pattern: String, key: String) throws -> [Int] {
            let hits = topology.convs.filter { LayerControls.glob(pattern, matches: $0.name) }
            if hits.isEmpty {
                let names = topology.convs.prefix(4).map(\.name).joined(separator: ", ")
                throw CSGDError(
                    "config key '\(key)': '\(pattern)' matches no conv of \(model) "
                        + "(convs are named like \(names), …)")
            }
            return Array(Set(hits.map(\.groupIndex))).sorted()
        }
        for pattern in exclude {
            for g in try matched(pattern, key: "exclude") {
                lower[g] = groups[g].width
                upper[g] = groups[g].width
                fixedBy[g] = "exclude '\(pattern)'"
            }
        }
        for entry in widths {
            guard let (pattern, width) = LayerControls.parseWidth(entry) else {
                throw CSGDError(
                    "config key 'layer_widths': '\(entry)' is not pattern=width (e.g. "
                        + "layer1.0.conv1=8)")
            }
            for g in try matched(pattern, key: "layer_widths") {
                let name = topology.convs[groups[g].pacesetter].name
                if width > groups[g].width {
                    throw CSGDError(
                        "config key 'layer_widths': '\(entry)' asks \(width) channels of "
                            + "\(name), which has \(groups[g].width)")
                }
                if let by = fixedBy[g], upper[g] != width {
                    throw CSGDError(
                        "config key 'layer_widths': '\(entry)' conflicts with \(by) on \(name)"
                            + (groups[g].isResidual ? " (one residual stream, one width)" : ""))
                }
                lower[g] = width
                upper[g] = width
                fixedBy[g] = "layer_widths '\(entry)'"
            }
        }
        // Groups narrower than min_width keep their width: the intent is clear, say it once.
        let narrow = groups.indices.filter {
            fixedBy[$0] == nil && minWidth > 1 && groups[$0].width <= minWidth
        }
        var notes: [String] = []
        if !narrow.isEmpty {
            let names = narrow.prefix(4).map {
                "\(topology.convs[groups[$0].pacesetter].name) \(groups[$0].width)"
            }
            notes.append(
                "min_width \(minWidth): \(narrow.count) group(s) at most that wide keep their "
                    + "width (\(names.joined(separator: ", "))\(narrow.count > 4 ? ", …" : ""))")
        }
        return GroupBounds(lower: lower, upper: upper, notes: notes)
    }

    /// The check a job makes once, before it trains: `bounds` of the unpruned net, refusing
    /// controls that leave nothing to prune (a later round may well find every group at its
    /// floor; a job that could never prune anything is a mistake to say at once).
    /// - Returns: the lines to log about how the controls apply.
    /// - Throws: `CSGDError` naming the keys when every prunable group keeps its full width.
    public func check(_ topology: Topology, model: String) throws -> [String] {
        let bounds = try bounds(topology, model: model)
        let groups = topology.groups
        let free = groups.indices.filter { !groups[$0].isFixed }
        if !free.isEmpty, free.allSatisfy({ bounds.lower[$0] == groups[$0].width }) {
            var keys: [String] = []
            if !exclude.isEmpty { keys.append("exclude") }
            if minWidth > 1 { keys.append("min_width \(minWidth)") }
            if !widths.isEmpty { keys.append("layer_widths") }
            throw CSGDError(
                "config key(s) \(keys.joined(separator: ", ")) leave nothing to prune in "
                    + "\(model): every one of its \(free.count) prunable groups keeps its full "
                    + "width",
                hint: "exclude fewer convs, or set min_width below the widest group's "
                    + "\(free.map { groups[$0].width }.max()!) channels")
        }
        return bounds.notes
    }

    /// Shell-style match of a whole name: `*` any run of characters (dots included), `?` one.
    public static func glob(_ pattern: String, matches name: String) -> Bool {
        let p = Array(pattern)
        let s = Array(name)
        var pi = 0
        var si = 0
        var star = -1
        var mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == s[si]) {
                pi += 1
                si += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
