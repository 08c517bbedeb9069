// Pruning to a budget: which width each channel group gets so that the pruned net has a given
// number (or fraction) of FLOPs or parameters, chosen from a measured sensitivity table.
//
// Allocation (docs/budget.md): start from the widest allowed net; repeatedly shrink the one
// group whose next step down the measured grid costs the least loss increase per FLOP (or
// parameter) saved, until the net is within budget; then refine by single channels — add
// channels back where they buy the most loss per unit of cost while staying under the upper
// edge, or take them away where they cost the least — until the cost lands within ±tolerance
// of the target. Costs always come from the graph built at the candidate widths (a conv's
// FLOPs depend on its input and output widths, so groups interact); ties go to the lower
// group index, so the allocation is a pure function of its inputs.

import CSGDCore
import CSGDModels
import Foundation

/// What a budget counts.
public enum BudgetMetric: String, Codable, Sendable, CaseIterable {
    /// Multiply-adds per image (convs + FC), `Graph.flopsPerImage`.
    case flops
    /// Trainable parameters, `Graph.parameterCount`.
    case params

    /// The metric of `graph`.
    public func measure(_ graph: Graph) -> Int {
        self == .flops ? graph.flopsPerImage : graph.parameterCount
    }
}

/// A FLOPs or parameter budget: a fraction of the unpruned net kept, or an absolute value.
public struct BudgetTarget: Equatable, Sendable, CustomStringConvertible {
    /// What is counted.
    public var metric: BudgetMetric
    /// A fraction in (0, 1] when `isFraction`, else an absolute count.
    public var value: Double
    /// Whether `value` is a fraction of the unpruned net.
    public var isFraction: Bool

    /// Parses `0.4` or `40%` (fraction kept) or `16M`, `1.2G`, `100k`, `250000` (absolute).
    /// - Throws: `CSGDError` naming `key` for anything else.
    public init(parsing text: String, metric: BudgetMetric, key: String) throws {
        self.metric = metric
        let t = text.trimmingCharacters(in: .whitespaces)
        let bad = CSGDError(
            "config key '\(key)': '\(text)' is neither a fraction kept (0.4, 40%) nor an "
                + "absolute value with a unit (16M, 1.2G, 100k)")
        guard let last = t.last else { throw bad }
        let units: [Character: Double] = ["%": 0.01, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9]
        if let unit = units[last] {
            guard let v = Double(t.dropLast()), v.isFinite, v > 0 else { throw bad }
            value = v * unit
            isFraction = last == "%"
        } else {
            guard let v = Double(t), v.isFinite, v > 0 else { throw bad }
            value = v
            isFraction = v <= 1
        }
        if isFraction && value > 1 {
            throw CSGDError("config key '\(key)': a fraction kept must be in (0, 1], got \(text)")
        }
    }

    /// The target count for a net whose unpruned count is `full`.
    public func absolute(full: Int) -> Double { isFraction ? value * Double(full) : value }

    /// The spelling the target was given in, normalised (e.g. `0.4` or `16000000`).
    public var description: String {
        isFraction ? "\(value)" : String(format: "%.0f", value)
    }
}

/// What the other groups look like while one group's sensitivity is measured.
public enum SensitivityContext: String, Codable, Sendable, CaseIterable {
    /// Every other group unmerged: the group is merged alone.
    case alone
    /// Merged alone, then BN statistics recalibrated: the part of the damage that is only
    /// shifted batch statistics (which training undoes within steps) is not counted.
    case recalibrated
    /// Every other free group merged to the uniform widths that meet the same budget, and BN
    /// statistics recalibrated after each merge: the group is measured at the operating point
    /// the allocation moves away from, so interactions between groups count.
    case uniform
}

/// Loss and accuracy change of each group merged to several widths (no training), alone or
/// with the other groups at a context width (`SensitivityContext`).
public struct SensitivityTable: Codable, Equatable, Sendable {
    /// One measured width of one group.
    public struct Row: Codable, Equatable, Sendable {
        /// Output channels of the group.
        public var width: Int
        /// Loss after merging minus the unmerged loss.
        public var deltaLoss: Double
        /// Top-1 after merging minus the unmerged top-1, in [−1, 1].
        public var deltaTop1: Double
        /// FLOPs per image of the net with only this group at `width`.
        public var flops: Int
        /// Parameters of that net.
        public var params: Int

        /// A row.
        public init(width: Int, deltaLoss: Double, deltaTop1: Double, flops: Int, params: Int) {
            self.width = width
            self.deltaLoss = deltaLoss
            self.deltaTop1 = deltaTop1
            self.flops = flops
            self.params = params
        }
    }

    /// One channel group.
    public struct Group: Codable, Equatable, Sendable {
        /// Position in `Topology.groups`.
        public var index: Int
        /// The pacesetter conv's name.
        public var name: String
        /// Every conv writing the group (residual streams have several).
        public var convs: [String]
        /// Current width.
        public var width: Int
        /// Rows by ascending width; the last is the current width (Δ 0).
        public var rows: [Row]

        /// A group.
        public init(index: Int, name: String, convs: [String], width: Int, rows: [Row]) {
            self.index = index
            self.name = name
            self.convs = convs
            self.width = width
            self.rows = rows
        }

        /// Δloss at any width in the measured range, linear between measured widths.
        public func deltaLoss(at w: Int) -> Double {
            guard let hi = rows.firstIndex(where: { $0.width >= w }) else {
                return rows.last?.deltaLoss ?? 0
            }
            if rows[hi].width == w || hi == 0 { return rows[hi].deltaLoss }
            let a = rows[hi - 1]
            let b = rows[hi]
            let t = Double(w - a.width) / Double(b.width - a.width)
            return a.deltaLoss + t * (b.deltaLoss - a.deltaLoss)
        }
    }

    /// Model name.
    public var model: String
    /// Images the losses were measured on.
    public var images: Int
    /// Loss of the unmerged net on them.
    public var baseLoss: Double
    /// Top-1 of the unmerged net on them.
    public var baseTop1: Double
    /// FLOPs per image of the unmerged net.
    public var flops: Int
    /// Parameters of the unmerged net.
    public var params: Int
    /// Measured groups, by group index.
    public var groups: [Group]
    /// Width of every group (by group index) while the others were measured; nil = alone.
    /// With a context, `baseLoss`/`baseTop1` are the context net's, and a group's Δ is
    /// relative to the context with that group unmerged.
    public var context: [Int]?

    /// A table.
    public init(
        model: String, images: Int, baseLoss: Double, baseTop1: Double, flops: Int, params: Int,
        groups: [Group], context: [Int]? = nil
    ) {
        self.model = model
        self.images = images
        self.baseLoss = baseLoss
        self.baseTop1 = baseTop1
        self.flops = flops
        self.params = params
        self.groups = groups
        self.context = context
    }

    /// The table as fixed-width text: one block per group, one line per width.
    public func text() -> String {
        var out = String(
            format: "%@: %d images, unmerged loss %.4f, top-1 %.2f%%; %.2f MFLOPs, %d params\n",
            model, images, baseLoss, 100 * baseTop1, Double(flops) / 1e6, params)
        if let c = context {
            out +=
                "measured with the other groups at widths "
                + c.map(String.init).joined(separator: "/")
                + " (BN recalibrated); the line above is that net\n"
        }
        out += "group (convs)                         width      Δloss   Δtop-1 pt   MFLOPs\n"
        for g in groups {
            let label = g.name + (g.convs.count > 1 ? " (+\(g.convs.count - 1))" : "")
            for (i, r) in g.rows.enumerated() {
                let name = i == 0 ? label : ""
                out +=
                    name.padding(toLength: 36, withPad: " ", startingAt: 0)
                    + String(
                        format: " %6d %10.4f %11.2f %8.2f\n", r.width, r.deltaLoss,
                        100 * r.deltaTop1, Double(r.flops) / 1e6)
            }
        }
        return out
    }
}

/// Per-group constraints from the config (see `LayerControls`): a fixed width or a range.
public struct GroupBounds: Equatable, Sendable {
    /// Smallest width each group may get.
    public var lower: [Int]
    /// Largest width each group may get (its current width, or a fixed width).
    public var upper: [Int]
    /// Lines worth logging about how the controls were applied (e.g. groups that keep their
    /// width because they are narrower than `min_width`).
    public var notes: [String] = []

    /// Bounds; `lower[g] == upper[g]` fixes group g.
    public init(lower: [Int], upper: [Int], notes: [String] = []) {
        self.lower = lower
        self.upper = upper
        self.notes = notes
    }

    /// Whether group `g` has no choice.
    public func isFixed(_ g: Int) -> Bool { lower[g] == upper[g] }
}

/// The widths a budget chose, with what they cost.
public struct Allocation: Codable, Equatable, Sendable {
    /// One group's choice.
    public struct Entry: Codable, Equatable, Sendable {
        /// The pacesetter conv's name.
        public var name: String
        /// Width before.
        public var width: Int
        /// Width chosen.
        public var allocated: Int
        /// Whether the config fixed it (exclude / explicit width).
        public var fixed: Bool
        /// Interpolated Δloss of this group alone at `allocated` (0 for fixed groups).
        public var deltaLoss: Double
    }

    /// What the budget counts.
    public var metric: BudgetMetric
    /// The target, absolute.
    public var target: Double
    /// The unpruned net's count.
    public var full: Int
    /// The allocated net's count, from its built graph.
    public var achieved: Int
    /// One entry per group, by group index.
    public var groups: [Entry]

    /// Chosen width of every group.
    public var groupWidths: [Int] { groups.map(\.allocated) }

    /// Relative miss, (achieved − target) / target.
    public var relativeError: Double { (Double(achieved) - target) / target }

    /// The allocation as text: a summary line and one line per group.
    public func table() -> String {
        let unit = metric == .flops ? 1e6 : 1e3
        let u = metric == .flops ? "MFLOPs" : "k params"
        var out = String(
            format: "budget %@: target %.3f %@ (%.1f%% of %.3f), allocated %.3f (%+.2f%%)\n",
            metric.rawValue, target / unit, u, 100 * target / Double(full), Double(full) / unit,
            Double(achieved) / unit, 100 * relativeError)
        for e in groups {
            out +=
                e.name.padding(toLength: 36, withPad: " ", startingAt: 0)
                + String(format: " %5d → %5d", e.width, e.allocated)
                + (e.fixed ? "  (fixed)" : String(format: "  Δloss %.4f", e.deltaLoss)) + "\n"
        }
        return out
    }
}

/// Chooses one width per group to meet a budget.
public enum BudgetAllocator {
    /// The uniform widths that meet `target`: every free group at ⌈r·width⌉ (clamped to its
    /// bounds, fixed groups at their width) for the largest r whose net does not exceed the
    /// target (bisection on r; the net's count only grows with r).
    public static func uniformWidths(
        architecture: Architecture, topology: Topology, target: BudgetTarget,
        bounds: GroupBounds
    ) throws -> [Int] {
        let groups = topology.groups
        let goal = target.absolute(full: target.metric.measure(try architecture.graph()))
        func widths(_ r: Double) -> [Int] {
            groups.indices.map { g in
                if bounds.isFixed(g) { return bounds.upper[g] }
                let w = Int((r * Double(groups[g].width)).rounded(.up))
                return min(bounds.upper[g], max(bounds.lower[g], w))
            }
        }
        func cost(_ w: [Int]) throws -> Double {
            var a = architecture
            a.widths = topology.convs.map { w[$0.groupIndex] }
            return Double(target.metric.measure(try a.graph()))
        }
        var lo = 0.0
        var hi = 1.0
        for _ in 0..<40 {
            let mid = (lo + hi) / 2
            if try cost(widths(mid)) <= goal { lo = mid } else { hi = mid }
        }
        return widths(lo)
    }

    /// Allocates widths so the net built from `architecture` lands within ±`tolerance` of
    /// `target`.
    /// - Parameters:
    ///   - architecture: the unpruned net (its widths are the groups' current widths).
    ///   - sensitivity: Δloss per width for every group that is not fixed by `bounds`.
    ///   - bounds: per-group width range; widths below a group's smallest measured width are
    ///     not considered.
    /// - Throws: `CSGDError` when the budget cannot be met within the bounds and tolerance.
    public static func allocate(
        architecture: Architecture, topology: Topology, sensitivity: SensitivityTable,
        target: BudgetTarget, bounds: GroupBounds, tolerance: Double = 0.01
    ) throws -> Allocation {
        let groups = topology.groups
        let fullGraph = try architecture.graph()
        let full = target.metric.measure(fullGraph)
        let goal = target.absolute(full: full)
        var table: [Int: SensitivityTable.Group] = [:]
        for g in sensitivity.groups { table[g.index] = g }
        var lower = bounds.lower
        let upper = bounds.upper
        for g in groups.indices where !bounds.isFixed(g) {
            guard let t = table[g], let first = t.rows.first else {
                throw CSGDError(
                    "budget: no sensitivity measured for \(groups[g].producers.map { topology.convs[$0].name }[0])"
                )
            }
            lower[g] = max(lower[g], first.width)
        }
        var cache: [[Int]: Int] = [:]
        func cost(_ w: [Int]) throws -> Int {
            if let c = cache[w] { return c }
            var a = architecture
            a.widths = topology.convs.map { w[$0.groupIndex] }
            let c = target.metric.measure(try a.graph())
            cache[w] = c
            return c
        }
        func loss(_ g: Int, _ w: Int) -> Double { table[g]?.deltaLoss(at: w) ?? 0 }
        let unit = target.metric == .flops ? "FLOPs" : "params"
        let smallest = try cost(lower)
        if Double(smallest) > goal * (1 + tolerance) {
            throw CSGDError(
                "budget: target \(Int(goal)) \(unit) is below the smallest net the constraints "
                    + "allow (\(smallest) \(unit) with min_width, exclude and explicit widths)")
        }
        if Double(try cost(upper)) < goal * (1 - tolerance) {
            throw CSGDError(
                "budget: target \(Int(goal)) \(unit) is above the unpruned net's "
                    + "\(try cost(upper)) \(unit)")
        }
        var w = upper
        // Coarse: steps down each group's measured grid.
        func nextDown(_ g: Int) -> Int? {
            guard let t = table[g] else { return nil }
            return t.rows.last(where: { $0.width < w[g] && $0.width >= lower[g] })?.width
        }
        var c = try cost(w)
        while Double(c) > goal {
            var best: (score: Double, g: Int, width: Int, cost: Int)?
            for g in groups.indices where !bounds.isFixed(g) {
                guard let down = nextDown(g) else { continue }
                var t = w
                t[g] = down
                let ct = try cost(t)
                let saved = c - ct
                guard saved > 0 else { continue }
                let score = (loss(g, down) - loss(g, w[g])) / Double(saved)
                if best == nil || score < best!.score { best = (score, g, down, ct) }
            }
            guard let b = best else { break }
            w[b.g] = b.width
            c = b.cost
        }
        // Fine: single channels. Take away while above the target...
        while Double(c) > goal {
            var best: (score: Double, g: Int, cost: Int)?
            for g in groups.indices where !bounds.isFixed(g) && w[g] > lower[g] {
                var t = w
                t[g] -= 1
                let ct = try cost(t)
                let saved = c - ct
                guard saved > 0 else { continue }
                let score = (loss(g, w[g] - 1) - loss(g, w[g])) / Double(saved)
                if best == nil || score < best!.score { best = (score, g, ct) }
            }
            guard let b = best else { break }
            w[b.g] -= 1
            c = b.cost
        }
        // ...then add back while well below it, never past the upper edge of the window.
        let edge = goal * (1 + tolerance / 2)
        while Double(c) < goal * (1 - tolerance / 2) {
            var best: (score: Double, g: Int, cost: Int)?
            for g in groups.indices where !bounds.isFixed(g) && w[g] < upper[g] {
                var t = w
                t[g] += 1
                let ct = try cost(t)
                let added = ct - c
                guard added > 0, Double(ct) <= edge else { continue }
                let score = (loss(g, w[g]) - loss(g, w[g] + 1)) / Double(added)
                if best == nil || score > best!.score { best = (score, g, ct) }
            }
            guard let b = best else { break }
            w[b.g] += 1
            c = b.cost
        }
        var arch = architecture
        arch.widths = topology.convs.map { w[$0.groupIndex] }
        let achieved = target.metric.measure(try arch.graph())
        if abs(Double(achieved) - goal) > tolerance * goal {
            throw CSGDError(
                "budget: could not land within ±\(100 * tolerance)% of \(Int(goal)) \(unit) "
                    + "(closest: \(achieved)); single-channel steps are too coarse here",
                hint: "loosen min_width / exclude, or pick another target")
        }
        return Allocation(
            metric: target.metric, target: goal, full: full, achieved: achieved,
            groups: groups.indices.map { g in
                Allocation.Entry(
                    name: topology.convs[groups[g].pacesetter].name, width: groups[g].width,
                    allocated: w[g], fixed: bounds.isFixed(g),
                    deltaLoss: bounds.isFixed(g) ? 0 : loss(g, w[g]))
            })
    }
}
