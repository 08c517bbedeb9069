// Inline SVG charts for the HTML report: line charts (linear or log y) and grouped bar charts.
// Plain SVG 1.1 text, no scripts or external references, so the report opens anywhere offline.

import Foundation

/// A named series of (x, y) points drawn as one polyline.
public struct ChartSeries: Sendable {
    public var name: String
    public var color: String
    public var points: [(x: Double, y: Double)]
    public var dashed = false

    /// - Parameters: see the properties.
    public init(name: String, color: String, points: [(x: Double, y: Double)], dashed: Bool = false)
    {
        self.name = name
        self.color = color
        self.points = points
        self.dashed = dashed
    }
}

/// A vertical marker on the x axis (e.g. where a C-SGD round starts).
public struct ChartMarker: Sendable {
    public var x: Double
    public var label: String

    /// - Parameters: see the properties.
    public init(x: Double, label: String) {
        self.x = x
        self.label = label
    }
}

/// Maps data coordinates to pixels inside a plot area.
struct PlotFrame {
    let left = 64.0, right = 16.0, top = 34.0, bottom = 46.0
    let width: Double, height: Double
    let x0: Double, x1: Double, y0: Double, y1: Double
    let logY: Bool

    var plotWidth: Double { width - left - right }
    var plotHeight: Double { height - top - bottom }

    func px(_ x: Double) -> Double {
        left + (x1 == x0 ? 0.5 : (x - x0) / (x1 - x0)) * plotWidth
    }

    func py(_ y: Double) -> Double {
        let (a, b, v) = logY ? (log10(y0), log10(y1), log10(y)) : (y0, y1, y)
        return top + (1 - (b == a ? 0.5 : (v - a) / (b - a))) * plotHeight
    }
}

/// SVG chart builders.
///
/// Every size and loop is bounded whatever the data: points with a non-finite coordinate or
/// one beyond ±`maxMagnitude` are left out (gaps), a log axis spans at most the decades
/// 1e-300 … 1e15, and `niceTicks` returns at most `maxTicks + 1` ticks.
public enum SVGChart {
    /// Largest |x| or |y| a line chart draws, and the top of a bar chart; farther points are
    /// left out (callers say so in a note), taller bars are clipped to it.
    public static let maxMagnitude = 1e15
    /// Smallest positive value a log axis resolves (its lowest possible decade); smaller
    /// positive values are drawn at the floor, with the zeros.
    public static let logFloor = 1e-300
    /// Most tick intervals `niceTicks` returns.
    static let maxTicks = 50

    /// Whether a point is drawn: finite and within ±`maxMagnitude`.
    static func drawable(_ v: Double) -> Bool { v.isFinite && abs(v) <= maxMagnitude }

    /// A line chart. On a log axis, values ≤ 0 (and positive values below `logFloor`) are
    /// drawn at the axis floor (`floorNote` says what that means for the data). Points that
    /// are not `drawable` are left out.
    public static func lines(
        title: String, xLabel: String, yLabel: String, series: [ChartSeries],
        markers: [ChartMarker] = [], logY: Bool = false, yRange: ClosedRange<Double>? = nil,
        floorNote: String? = nil, width: Double = 640, height: Double = 300
    ) -> String {
        let series = series.map { se in
            var se = se
            se.points = se.points.filter { drawable($0.x) && drawable($0.y) }
            return se
        }
        let xs = series.flatMap { $0.points.map(\.x) }
        let ys = series.flatMap { $0.points.map(\.y) }
        guard let xMin = xs.min(), let xMax = xs.max(), !ys.isEmpty else {
            return emptyChart(title: title, width: width, height: height)
        }
        var yTicks: [Double]
        var yLo: Double, yHi: Double
        var floorValue = 0.0
        if logY {
            // Decades within [log10(logFloor), log10(maxMagnitude)]: at most ~316 of them.
            let positive = ys.filter { $0 >= logFloor }
            let lo = floor(log10(positive.min() ?? 1e-12))
            let hi = ceil(log10(positive.max() ?? 1))
            // One extra decade below the smallest positive value holds the exact zeros.
            let bottom = max(
                log10(logFloor), ys.contains { $0 < logFloor } ? lo - 1 : lo)
            yLo = pow(10, bottom)
            yHi = pow(10, max(hi, bottom + 1))
            floorValue = yLo
            let step = max(1, Int(((log10(yHi) - bottom) / 6).rounded(.up)))
            yTicks = stride(from: Int(bottom), through: Int(log10(yHi)), by: step).map {
                pow(10, Double($0))
            }
        } else {
            let r = yRange ?? (ys.min()!...ys.max()!)
            let t = niceTicks(r.lowerBound, r.upperBound)
            yTicks = t
            yLo = min(t.first!, r.lowerBound)
            yHi = max(t.last!, r.upperBound)
        }
        let f = PlotFrame(
            width: width, height: height, x0: xMin, x1: xMax, y0: yLo, y1: yHi, logY: logY)
        var s = header(title: title, width: width, height: height)
        s += axes(f, xTicks: niceTicks(xMin, xMax, integers: true), yTicks: yTicks, logY: logY)
        s += axisLabels(f, x: xLabel, y: yLabel)
        for m in markers {
            let x = f.px(m.x)
            s += line(x, f.top, x, f.top + f.plotHeight, stroke: "#888", dash: "4 3")
            s += text(x + 3, f.top + 11, m.label, size: 10, fill: "#555")
        }
        var legend = ""
        for (i, se) in series.enumerated() {
            let pts = se.points.map { p -> String in
                let y = logY && p.y < floorValue ? floorValue : p.y
                return fmt(f.px(p.x)) + "," + fmt(f.py(y))
            }
            s +=
                "<polyline class=\"series\" data-name=\"\(escapeXML(se.name))\" fill=\"none\" "
                + "stroke=\"\(se.color)\" stroke-width=\"2\""
                + (se.dashed ? " stroke-dasharray=\"6 3\"" : "")
                + " points=\"\(pts.joined(separator: " "))\"/>\n"
            if se.points.count <= 60 {
                for p in pts {
                    let c = p.split(separator: ",")
                    s += "<circle cx=\"\(c[0])\" cy=\"\(c[1])\" r=\"2.5\" fill=\"\(se.color)\"/>\n"
                }
            }
            // Legend, top right, one row per series, on white so curves do not hide it.
            let ly = f.top + 14 + Double(i) * 16
            let lx = f.left + f.plotWidth - 150
            legend +=
                "<rect x=\"\(fmt(lx - 4))\" y=\"\(fmt(ly - 11))\" width=\"150\" height=\"16\" "
                + "fill=\"white\" fill-opacity=\"0.85\"/>\n"
            legend += line(lx, ly - 4, lx + 22, ly - 4, stroke: se.color, width: 2.5)
            legend += text(lx + 28, ly, se.name, size: 11)
        }
        s += legend  // drawn last: above every curve
        if let floorNote, logY, ys.contains(where: { $0 < floorValue }) {
            s += text(f.left + 4, f.top + f.plotHeight - 6, floorNote, size: 10, fill: "#555")
        }
        return s + "</svg>\n"
    }

    /// Grouped vertical bars: for each category, one bar per value set (e.g. width before and
    /// after pruning), with category names written below at an angle. Bars are drawn from 0
    /// to the value clipped to [0, `maxMagnitude`] (a non-finite value as 0); the tooltip shows
    /// the value itself.
    public static func bars(
        title: String, yLabel: String, categories: [String],
        sets: [(name: String, color: String, values: [Double])], minWidth: Double = 640,
        height: Double = 340
    ) -> String {
        let slot = 16.0 + 6.0 * Double(sets.count)
        // Wide enough for the bars, and for the title plus the legend beside it.
        let titleEnd = 64 + 8.5 * Double(title.count)
        let width = max(
            minWidth, 64 + 16 + Double(categories.count) * slot,
            titleEnd + 16 + 80 * Double(sets.count) + 16)
        func clipped(_ v: Double) -> Double { v.isFinite ? min(max(v, 0), maxMagnitude) : 0 }
        let maxV = sets.flatMap(\.values).map(clipped).max() ?? 1
        let ticks = niceTicks(0, max(maxV, 1))
        let f = PlotFrame(
            width: width, height: height, x0: 0, x1: Double(max(categories.count, 1)), y0: 0,
            y1: ticks.last!, logY: false)
        var s = header(title: title, width: width, height: height + 60)
        s += axes(f, xTicks: [], yTicks: ticks, logY: false)
        s += text(14, f.top + f.plotHeight / 2, yLabel, size: 12, rotate: -90)
        let barW = (f.plotWidth / Double(max(categories.count, 1)) - 4) / Double(sets.count)
        for (c, name) in categories.enumerated() {
            let x0 = f.px(Double(c)) + 2
            for (k, set) in sets.enumerated() where c < set.values.count {
                let v = set.values[c]
                let y = f.py(clipped(v))
                s +=
                    "<rect class=\"bar\" data-set=\"\(escapeXML(set.name))\" x=\"\(fmt(x0 + Double(k) * barW))\" "
                    + "y=\"\(fmt(y))\" width=\"\(fmt(max(barW - 1, 1)))\" "
                    + "height=\"\(fmt(f.top + f.plotHeight - y))\" fill=\"\(set.color)\">"
                    + "<title>\(escapeXML(name)) \(escapeXML(set.name)): \(fmt(v))</title></rect>\n"
            }
            let lx = x0 + barW * Double(sets.count) / 2
            let ly = f.top + f.plotHeight + 10
            s += text(lx, ly, name, size: 9, rotate: 60, anchor: "start")
        }
        // Legend on the title's line, right-aligned, clear of the title text.
        for (k, set) in sets.enumerated() {
            let lx = f.left + f.plotWidth - Double(sets.count - k) * 80
            s +=
                "<rect x=\"\(fmt(lx))\" y=\"11\" width=\"12\" height=\"10\" "
                + "fill=\"\(set.color)\"/>\n"
            s += text(lx + 16, 20, set.name, size: 11)
        }
        return s + "</svg>\n"
    }

    /// Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]; at most `maxTicks + 1` of
    /// them whatever the input (just `[lo, hi]` when no round step fits, e.g. a non-finite
    /// bound or a range too wide or too narrow for Double).
    static func niceTicks(_ lo: Double, _ hi: Double, integers: Bool = false) -> [Double] {
        guard lo.isFinite, hi.isFinite else { return [0, 1] }
        var (a, b) = (lo, hi)
        if b <= a {
            // ±1 around ordinary values; relative far from 0, where a ± 1 == a.
            let pad = max(1, abs(a) * 1e-6)
            (a, b) = (a - pad, a + pad)
        }
        let raw = (b - a) / 5
        guard raw.isFinite, raw > 0 else { return [a, b] }
        let mag = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        if integers { step = max(1, step.rounded()) }
        guard step.isFinite, step > 0 else { return [a, b] }
        let start = floor(a / step) * step
        let end = ceil(b / step) * step
        // A count, not a float loop: `start + step` may equal `start` at large magnitudes.
        let intervals = ((end - start) / step).rounded()
        guard intervals.isFinite, intervals >= 0, intervals <= Double(maxTicks) else {
            return [a, b]
        }
        return (0...Int(intervals)).map { start + Double($0) * step }
    }

    // MARK: - SVG pieces

    private static func header(title: String, width: Double, height: Double) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" "
            + "viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + text(64, 20, title, size: 14, weight: "bold")
    }

    private static func axes(_ f: PlotFrame, xTicks: [Double], yTicks: [Double], logY: Bool)
        -> String
    {
        var s = ""
        let bottom = f.top + f.plotHeight
        for t in yTicks where t >= f.y0 * (1 - 1e-9) && t <= f.y1 * (1 + 1e-9) {
            let y = f.py(t)
            s += line(f.left, y, f.left + f.plotWidth, y, stroke: "#e4e4e4")
            let label = logY ? "1e\(Int(log10(t).rounded()))" : shortNumber(t)
            s += text(f.left - 6, y + 4, label, size: 10, anchor: "end")
        }
        for t in xTicks where t >= f.x0 && t <= f.x1 {
            let x = f.px(t)
            s += line(x, bottom, x, bottom + 4, stroke: "#333")
            s += text(x, bottom + 16, shortNumber(t), size: 10, anchor: "middle")
        }
        s += line(f.left, f.top, f.left, bottom, stroke: "#333")
        s += line(f.left, bottom, f.left + f.plotWidth, bottom, stroke: "#333")
        return s
    }

    private static func axisLabels(_ f: PlotFrame, x: String, y: String) -> String {
        text(f.left + f.plotWidth / 2, f.height - 8, x, size: 12, anchor: "middle")
            + text(14, f.top + f.plotHeight / 2, y, size: 12, rotate: -90, anchor: "middle")
    }

    private static func emptyChart(title: String, width: Double, height: Double) -> String {
        header(title: title, width: width, height: height)
            + text(width / 2, height / 2, "no data in this run", size: 12, anchor: "middle")
            + "</svg>\n"
    }

    private static func line(
        _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String,
        width: Double = 1, dash: String? = nil
    ) -> String {
        "<line x1=\"\(fmt(x1))\" y1=\"\(fmt(y1))\" x2=\"\(fmt(x2))\" y2=\"\(fmt(y2))\" "
            + "stroke=\"\(stroke)\" stroke-width=\"\(fmt(width))\""
            + (dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>\n"
    }

    private static func text(
        _ x: Double, _ y: Double, _ s: String, size: Double, fill: String = "#222",
        rotate: Double? = nil, anchor: String = "start", weight: String = "normal"
    ) -> String {
        let transform = rotate.map { " transform=\"rotate(\(fmt($0)) \(fmt(x)) \(fmt(y)))\"" } ?? ""
        return
            "<text x=\"\(fmt(x))\" y=\"\(fmt(y))\" font-size=\"\(fmt(size))\" fill=\"\(fill)\" "
            + "text-anchor=\"\(anchor)\" font-weight=\"\(weight)\"\(transform)>\(escapeXML(s))</text>\n"
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    private static func shortNumber(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        return String(format: "%.3g", v)
    }
}

/// Escapes text for XML/HTML content and attribute values.
public func escapeXML(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}
